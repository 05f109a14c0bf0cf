//! The stage definitions of the original format, as written in the file (before
//! iterations are unrolled and tasks generated).

/// Where an input file comes from, or what a mapping or substitution refers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRef {
    pub stage: String,
    pub kind: FileKind,
    /// 1-based index of the input/output of the referenced stage.
    pub index: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Input,
    Output,
}

impl FileKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::Input => "Input",
            FileKind::Output => "Output",
        }
    }
}

impl std::fmt::Display for FileRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}_{}", self.stage, self.kind.as_str(), self.index)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    Filesystem,
    File(FileRef),
}

/// What a polynomial value depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolySrc {
    /// The task's input k (1-based).
    Input(usize),
    Length,
}

/// A value spec: a statistical distribution or a polynomial.
#[derive(Clone, Debug, PartialEq)]
pub enum ValueSpec {
    /// `uniform P`: the literal text P for every item; `num` is what task.c makes of it.
    Uniform { text: String, num: f64 },
    /// `normal`/`gauss [A, B]U`.
    Normal { mean: f64, stdev: f64, unit: String },
    /// `lognorm [A, B]U`: A, B are mu and sigma of the underlying normal.
    LogNorm { mu: f64, sigma: f64, unit: String },
    /// `triangular [A, B]U`: low, high, mode at the midpoint.
    Triangular { low: f64, high: f64, unit: String },
    /// `polynomial [a, b] SRC`: `int(a * x^b)`.
    Polynomial { a: f64, b: f64, src: PolySrc },
}

#[derive(Clone, Debug, PartialEq)]
pub struct InputDef {
    pub source: Option<(Source, usize)>,
    pub size: Option<(ValueSpec, usize)>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Mapping {
    Combination { from: FileRef, m: usize },
    External { script: String },
}

#[derive(Clone, Debug, PartialEq)]
pub struct IterationDef {
    pub line: usize,
    pub num: usize,
    pub stages: Vec<String>,
    /// Input of the group's first stage fed, from the 2nd iteration on, by `target`.
    pub substitute_input: usize,
    pub target: FileRef,
}

/// One `Stage_Name` block, as written.
#[derive(Clone, Debug, PartialEq)]
pub struct StageDef {
    pub line: usize,
    pub name: String,
    pub task_type: String,
    pub task_mode: String,
    pub num_tasks: usize,
    pub length: (ValueSpec, usize),
    pub processes: u32,
    pub read_buffer: u64,
    pub write_buffer: u64,
    pub inputs: Vec<InputDef>,
    pub mapping: Option<(Mapping, usize)>,
    pub outputs: Vec<(ValueSpec, usize)>,
    pub interleave: u32,
    pub iteration: Option<IterationDef>,
}
