//! Where things are in a workflow file: `file:line:col` for TOML (from `toml_edit` spans),
//! `file:line:col` of syntax errors and `file:tasks[3].cores` paths for JSON; and the
//! rewording of serde's messages into ones that say the field and the fix.

use super::WorkflowError;
use std::ops::Range;
use toml_edit::{ImDocument, Item, TableLike, Value};

/// A part of the document a semantic error points into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Place {
    Defaults,
    Stage(usize),
    Task(usize),
}

/// Turns a [`Place`] and field into a location string.
pub(super) struct Locator<'a> {
    origin: &'a str,
    toml: Option<TomlSpans<'a>>,
}

struct TomlSpans<'a> {
    doc: ImDocument<&'a str>,
    lines: LineIndex<'a>,
}

impl<'a> Locator<'a> {
    /// A locator for TOML text; gives `origin` alone if the text does not parse.
    pub fn toml(origin: &'a str, text: &'a str) -> Locator<'a> {
        let toml = ImDocument::parse(text).ok().map(|doc| TomlSpans {
            doc,
            lines: LineIndex::new(text),
        });
        Locator { origin, toml }
    }

    /// A locator for JSON text: paths such as `tasks[3].cores`.
    pub fn json(origin: &'a str) -> Locator<'a> {
        Locator { origin, toml: None }
    }

    /// The location of `field` in `place` (or of `place` itself when the field is absent).
    pub fn at(&self, place: Place, field: Option<&str>) -> String {
        match &self.toml {
            Some(spans) => match spans.span(place, field) {
                Some(span) => {
                    let (line, col) = spans.lines.line_col(span.start);
                    format!("{}:{line}:{col}", self.origin)
                }
                None => self.origin.to_string(),
            },
            None => {
                let mut path = match place {
                    Place::Defaults => "defaults".to_string(),
                    Place::Stage(i) => format!("stages[{i}]"),
                    Place::Task(i) => format!("tasks[{i}]"),
                };
                if let Some(f) = field {
                    path.push('.');
                    path.push_str(f);
                }
                format!("{}:{path}", self.origin)
            }
        }
    }

    /// An error at `place`/`field`.
    pub fn error(&self, place: Place, field: Option<&str>, message: String) -> WorkflowError {
        WorkflowError {
            location: self.at(place, field),
            message,
        }
    }
}

impl TomlSpans<'_> {
    fn span(&self, place: Place, field: Option<&str>) -> Option<Range<usize>> {
        let (table, table_span): (&dyn TableLike, Option<Range<usize>>) = match place {
            Place::Defaults => {
                let item = self.doc.get("defaults")?;
                (item.as_table_like()?, item.span())
            }
            Place::Stage(i) => element(self.doc.get("stages")?, i)?,
            Place::Task(i) => element(self.doc.get("tasks")?, i)?,
        };
        let found = field.and_then(|f| table.get_key_value(f));
        match found {
            Some((key, item)) => item.span().or_else(|| key.span()),
            None => table_span,
        }
    }
}

/// Entry `i` of an array of tables (`[[tasks]]`) or of an inline array (`tasks = [{..}]`).
fn element(item: &Item, i: usize) -> Option<(&dyn TableLike, Option<Range<usize>>)> {
    match item {
        Item::ArrayOfTables(a) => {
            let t = a.get(i)?;
            Some((t, t.span()))
        }
        Item::Value(Value::Array(a)) => {
            let v = a.get(i)?;
            Some((v.as_inline_table()?, v.span()))
        }
        _ => None,
    }
}

/// Byte offset to 1-based line and column (in characters).
struct LineIndex<'a> {
    starts: Vec<usize>,
    text: &'a str,
}

impl<'a> LineIndex<'a> {
    fn new(text: &'a str) -> LineIndex<'a> {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts, text }
    }

    fn line_col(&self, offset: usize) -> (usize, usize) {
        let line = self.starts.partition_point(|&s| s <= offset) - 1;
        let start = self.starts[line];
        let col = self.text[start..offset.min(self.text.len())]
            .chars()
            .count()
            + 1;
        (line + 1, col)
    }
}

/// A TOML syntax or type error from serde, reworded, at its line:column.
pub(super) fn toml_error(origin: &str, text: &str, e: &toml::de::Error) -> WorkflowError {
    let Some(span) = e.span() else {
        return WorkflowError {
            location: origin.to_string(),
            message: explain(e.message(), None),
        };
    };
    let (line, col) = LineIndex::new(text).line_col(span.start);
    let line_text = text.lines().nth(line - 1).unwrap_or("");
    let prefix: String = line_text.chars().take(col - 1).collect();
    WorkflowError {
        location: format!("{origin}:{line}:{col}"),
        message: explain(e.message(), toml_key_before(&prefix)),
    }
}

/// A JSON syntax or type error from serde_json, reworded, at its line:column.
pub(super) fn json_error(origin: &str, text: &str, e: &serde_json::Error) -> WorkflowError {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let message = full.strip_suffix(&suffix).unwrap_or(&full);
    let line_text = text.lines().nth(e.line().saturating_sub(1)).unwrap_or("");
    let prefix: String = line_text.chars().take(e.column()).collect();
    WorkflowError {
        location: format!("{origin}:{}:{}", e.line(), e.column()),
        message: explain(message, json_key_before(&prefix)),
    }
}

/// The key of `key = value` whose value starts where `prefix` ends.
fn toml_key_before(prefix: &str) -> Option<&str> {
    let (before, _) = prefix.rsplit_once('=')?;
    let key = before
        .trim_end()
        .rsplit(|c: char| c.is_whitespace() || c == '{' || c == ',' || c == '.')
        .next()?;
    let key = key.trim_matches('"');
    (!key.is_empty()).then_some(key)
}

/// The key of `"key": value` whose value ends where `prefix` ends.
fn json_key_before(prefix: &str) -> Option<&str> {
    let mut rest = prefix;
    while let Some((before, _)) = rest.rsplit_once(':') {
        let before = before.trim_end();
        if let Some(quoted) = before.strip_suffix('"') {
            let (_, key) = quoted.rsplit_once('"')?;
            return (!key.is_empty()).then_some(key);
        }
        rest = before;
    }
    None
}

/// serde's message with the field named and a fix added.
fn explain(message: &str, key: Option<&str>) -> String {
    if let Some(rest) = message.strip_prefix("unknown field ") {
        let names: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
        let Some((unknown, valid)) = names.split_first() else {
            return message.to_string();
        };
        let hint = super::build::closest(unknown, valid.iter().copied())
            .map(|c| format!("did you mean `{c}`? "))
            .unwrap_or_default();
        return format!(
            "unknown field `{unknown}`; {hint}valid fields here: {}",
            valid.join(", ")
        );
    }
    if message.starts_with("missing field `name`") {
        return "missing field `name`; every [[tasks]] and [[stages]] entry needs name = \"...\""
            .to_string();
    }
    let fix = if ["i64", "u32", "u64", "i32"]
        .iter()
        .any(|t| message.ends_with(&format!("expected {t}")))
    {
        "; write a whole number without quotes"
    } else if message.ends_with("expected f64") {
        "; write a number without quotes"
    } else if message.ends_with("expected a boolean") {
        "; write true or false"
    } else if message.ends_with("expected a string") {
        "; write it in quotes"
    } else if message.ends_with("expected a sequence") {
        "; write a list: [\"a\", \"b\"]"
    } else {
        ""
    };
    match key {
        Some(k) if message.starts_with("invalid") => format!("field `{k}`: {message}{fix}"),
        _ => format!("{message}{fix}"),
    }
}
