//! The workflow language: tasks and task arrays, stages and dependencies, parsed from TOML
//! or JSON into a validated [`Workflow`] whose tasks refer to each other by index.
//!
//! `doc` is the file's shape (serde + JSON Schema), `build` checks it and expands arrays,
//! `locate` says where an error is, `dag` keeps the dependency bookkeeping, `fits` checks
//! tasks against the nodes of the configured resources. The language is described in
//! `docs/workflow.md`.

mod build;
pub mod dag;
#[cfg(test)]
mod dag_tests;
pub mod doc;
mod fits;
mod locate;
mod read;
#[cfg(test)]
mod tests;

pub use fits::{check_fits, NodeShape};

use emanager_shared::{CampaignId, TaskId, TaskSpec};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// A validated workflow.
#[derive(Clone, Debug, PartialEq)]
pub struct Workflow {
    pub name: String,
    pub tasks: Vec<TaskDef>,
    /// Declared stages, in order: a barrier separates consecutive non-empty stages.
    pub stages: Vec<Stage>,
    /// Sets of tasks that tasks depend on as a whole (a stage, an array): the DAG gives each
    /// one virtual node, so "all of A before all of B" costs |A| + |B| edges, not |A| x |B|.
    pub groups: Vec<Group>,
    /// The `[[tasks]]` entries the tasks were expanded from (for messages).
    pub entries: Vec<Entry>,
}

/// One concrete task (arrays are already expanded).
#[derive(Clone, Debug, PartialEq)]
pub struct TaskDef {
    /// The spec, with a nil id: `to_spec` gives the campaign's deterministic id.
    pub spec: TaskSpec,
    /// Indices (into `Workflow::tasks`) of single tasks that must be DONE first. Only the
    /// explicit task-to-task dependencies: whole arrays and stages are in `depends_on_groups`
    /// and stage barriers follow from `stage`; [`dag::Dag`] combines all three.
    pub depends_on: Vec<usize>,
    /// Indices (into `Workflow::groups`) of arrays and stages that must be DONE first.
    pub depends_on_groups: Vec<usize>,
    /// Index (into `Workflow::stages`) of the task's stage.
    pub stage: Option<usize>,
    /// Index (into `Workflow::entries`) of the entry the task comes from.
    pub entry: usize,
    /// The member's index when the task belongs to an array (`count`).
    pub index: Option<u32>,
    /// The entry's environment, shared by all members of an array (a map per task would cost
    /// ~600 bytes each at a million tasks); `{index}` in values is substituted by `env()` and
    /// `to_spec`. The parser leaves `spec.env` empty: read `env()` for the task's variables.
    pub env: Arc<BTreeMap<String, String>>,
}

/// A `[[stages]]` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Stage {
    pub name: String,
    pub description: Option<String>,
    /// Its members as a group (`Workflow::groups`).
    pub group: usize,
}

/// A named set of tasks: a stage (`stage:NAME`) or an array (`sim-{index}`).
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    pub name: String,
    pub members: Vec<usize>,
}

/// A `[[tasks]]` entry: its name as written (the template for arrays) and where it and its
/// resource fields are, so later checks (`check_fits`) point into the file.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub name: String,
    /// `Some(count)` for arrays.
    pub count: Option<u32>,
    pub location: String,
    pub cores_location: String,
    pub gpus_location: String,
    pub mem_location: String,
}

impl TaskDef {
    /// A task built by hand (not from a file): no groups, stage, entry or shared env.
    pub fn new(spec: TaskSpec, depends_on: Vec<usize>) -> TaskDef {
        TaskDef {
            spec,
            depends_on,
            depends_on_groups: Vec::new(),
            stage: None,
            entry: 0,
            index: None,
            env: Arc::default(),
        }
    }

    /// The full spec to run: the campaign's deterministic id and the environment filled in.
    pub fn to_spec(&self, campaign: &CampaignId) -> TaskSpec {
        let mut spec = self.spec.clone();
        spec.id = TaskId::for_name(campaign, &spec.name);
        spec.env.extend(self.env());
        spec
    }

    /// The task's environment variables from the workflow (`spec.env` not included), with
    /// `{index}` substituted for array members.
    pub fn env(&self) -> BTreeMap<String, String> {
        let index = self.index.map(|i| i.to_string());
        self.env
            .iter()
            .map(|(k, v)| {
                let v = match &index {
                    Some(ix) if v.contains("{index}") => v.replace("{index}", ix),
                    _ => v.clone(),
                };
                (k.clone(), v)
            })
            .collect()
    }
}

impl Workflow {
    /// A workflow built by hand (skeletons, tests): tasks with explicit dependencies only.
    pub fn new(name: impl Into<String>, tasks: Vec<TaskDef>) -> Workflow {
        Workflow {
            name: name.into(),
            tasks,
            stages: Vec::new(),
            groups: Vec::new(),
            entries: Vec::new(),
        }
    }
}

/// Input formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Toml,
    Json,
}

impl Format {
    pub fn from_path(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some("json") => Format::Json,
            _ => Format::Toml,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Toml => "toml",
            Format::Json => "json",
        }
    }

    pub fn parse_name(s: &str) -> Option<Format> {
        match s {
            "toml" => Some(Format::Toml),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// One problem found in a workflow file, with where it is and how to fix it.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkflowError {
    /// `file:line:col` or `file` when no position is known.
    pub location: String,
    pub message: String,
}

/// Every problem found (validation reports all of them, not only the first).
#[derive(Clone, Debug, PartialEq)]
pub struct WorkflowErrors(pub Vec<WorkflowError>);

impl fmt::Display for WorkflowErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {}", e.location, e.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for WorkflowErrors {}

/// Reads and validates a workflow file.
pub fn load(path: &Path) -> Result<Workflow, WorkflowErrors> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        WorkflowErrors(vec![WorkflowError {
            location: origin.clone(),
            message: format!("cannot read the workflow file: {e}"),
        }])
    })?;
    parse_str(&text, Format::from_path(path), &origin)
}

/// Parses and validates workflow text; `origin` names it in errors.
///
/// Every problem is reported, each at its `file:line:column`: a syntax error stops reading
/// (one error); otherwise each top-level key, `[defaults]`, `[[stages]]` and `[[tasks]]`
/// entry is read on its own (its first type error or unknown field), every entry that reads
/// is checked (names, numbers, dependencies), and the cycle check runs on those.
pub fn parse_str(text: &str, format: Format, origin: &str) -> Result<Workflow, WorkflowErrors> {
    let locator = match format {
        Format::Toml => locate::Locator::toml(origin, text),
        Format::Json => locate::Locator::json(origin, text),
    };
    let read = read::read(&locator, format).map_err(|e| WorkflowErrors(vec![e]))?;
    build::build(read, &locator)
}

/// The JSON Schema of the workflow format (TOML files follow the same schema), generated from
/// the Rust types; `docs/workflow.schema.json` is this text.
pub fn json_schema() -> String {
    let schema = schemars::generate::SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<doc::WorkflowDoc>();
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema is valid JSON");
    text.push('\n');
    text
}
