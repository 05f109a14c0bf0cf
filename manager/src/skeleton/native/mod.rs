//! EManager's own skeleton format (TOML or JSON, see docs/skeleton.md): stages of serial or
//! MPI tasks whose lengths and file sizes are constants, distributions or polynomials,
//! inputs mapped from earlier stages' outputs, and iterations of a group of stages.

mod check;
mod expand;

use super::dist::Dist;
pub use expand::expand;
use serde::Deserialize;

/// A whole skeleton file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkeletonDoc {
    /// Workflow name (default: the file name without extension).
    pub name: Option<String>,
    /// Default seed; `--seed` overrides it.
    pub seed: Option<u64>,
    pub stages: Vec<StageDoc>,
    #[serde(default)]
    pub iterations: Vec<IterationDoc>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    #[default]
    Serial,
    #[serde(alias = "mpi")]
    Parallel,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `length` is seconds.
    #[default]
    Time,
    /// `length` is a number of floating-point additions.
    Flops,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageDoc {
    pub name: String,
    #[serde(default, rename = "type")]
    pub kind: TaskKind,
    /// Number of tasks.
    pub tasks: usize,
    /// Processes (MPI ranks) per task; 1 for serial tasks.
    #[serde(default = "one")]
    pub processes: u32,
    /// Cores given to each process (threads).
    #[serde(default = "one")]
    pub cores_per_process: u32,
    #[serde(default)]
    pub mode: Mode,
    /// Task length: seconds (mode `time`) or additions (mode `flops`).
    pub length: Dist,
    #[serde(default)]
    pub inputs: Vec<InputDoc>,
    #[serde(default)]
    pub outputs: Vec<OutputDoc>,
    pub read_buffer: Option<u64>,
    pub write_buffer: Option<u64>,
}

fn one() -> u32 {
    1
}

/// How a stage's tasks share the files of an earlier stage's output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MappingKind {
    /// Task t reads file t (both stages have the same number of tasks).
    OneToOne,
    /// Every task reads every file.
    AllToAll,
    /// The files are split into contiguous, near-equal chunks, one per task.
    Chunks,
    /// Task t reads the t-th `group`-combination of the files (lexicographic, wrapping).
    Combinations,
}

/// One input of every task: a pre-existing file, or files produced by an earlier stage.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputDoc {
    /// `"filesystem"` (default) or the name of an earlier stage.
    pub from: Option<String>,
    /// Which output of that stage (1-based, default 1).
    pub output: Option<usize>,
    pub mapping: Option<MappingKind>,
    /// Files per task for `combinations`.
    pub group: Option<usize>,
    /// Size in bytes of each file (filesystem inputs only).
    pub size: Option<Dist>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputDoc {
    /// Size in bytes; may be a polynomial of the task's inputs or length.
    pub size: Dist,
}

/// Repeat a run of consecutive stages `count` times.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IterationDoc {
    pub stages: Vec<String>,
    pub count: usize,
    pub feedback: Option<FeedbackDoc>,
}

/// From the 2nd iteration on, input `input` (`"stage.N"`) reads output `output`
/// (`"stage.M"`) of the previous iteration instead of its declared source.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackDoc {
    pub input: String,
    pub output: String,
    /// Mapping of the fed input (default: the input's own mapping).
    pub mapping: Option<MappingKind>,
    pub group: Option<usize>,
}

/// The line of the stage (or iteration) a native-format message is about: messages start
/// with "stage `NAME`" (an iteration copy `NAME.i` points at `NAME`) or "iteration".
pub(super) fn locate(text: &str, message: &str) -> Option<usize> {
    let line_of =
        |pred: &dyn Fn(&str) -> bool| text.lines().position(|l| pred(l.trim())).map(|i| i + 1);
    if message.starts_with("iteration") || message.starts_with("an iteration") {
        return line_of(&|l| l.starts_with("[[iterations]]") || l.starts_with("\"iterations\""));
    }
    let rest = message
        .strip_prefix("stage name `")
        .or_else(|| message.strip_prefix("stage `"))?;
    let name = rest.split('`').next()?;
    let name = match name.rsplit_once('.') {
        Some((base, i)) if i.chars().all(|c| c.is_ascii_digit()) => base,
        _ => name,
    };
    let quoted = format!("\"{name}\"");
    let hits: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| {
            let l = l.trim().trim_start_matches(['{', ',', ' ']);
            (l.starts_with("name") || l.starts_with("\"name\"")) && l.contains(&quoted)
        })
        .map(|(i, _)| i + 1)
        .collect();
    // "used twice" is about the second declaration
    if message.contains("used twice") {
        hits.get(1).copied()
    } else {
        hits.first().copied()
    }
}
