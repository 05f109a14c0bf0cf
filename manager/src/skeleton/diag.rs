//! Errors and warnings that name the file and line they are about.

use std::fmt;

/// One problem (error or warning) in a skeleton file: `origin:line: message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file as the user named it (or any label for in-memory text).
    pub origin: String,
    /// 1-based line, when the problem has one.
    pub line: Option<usize>,
    pub message: String,
}

impl Diagnostic {
    pub fn at(origin: &str, line: usize, message: impl Into<String>) -> Self {
        Diagnostic {
            origin: origin.to_string(),
            line: Some(line),
            message: message.into(),
        }
    }

    pub fn file(origin: &str, message: impl Into<String>) -> Self {
        Diagnostic {
            origin: origin.to_string(),
            line: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: {}", self.origin, l, self.message),
            None => write!(f, "{}: {}", self.origin, self.message),
        }
    }
}

impl std::error::Error for Diagnostic {}
