//! The workflow language: tasks and task arrays, stages and dependencies, parsed from TOML
//! or JSON into a validated [`Workflow`] whose tasks refer to each other by index.
//!
//! This first version reads `[[tasks]]` with `name`, `command`, `cores`, `count`,
//! `est_duration_s`, `retries`; the full language (issue 5) grows from here.

pub mod dag;

use emanager_shared::{CampaignId, TaskId, TaskSpec};
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::path::Path;

/// A validated workflow.
#[derive(Clone, Debug, PartialEq)]
pub struct Workflow {
    pub name: String,
    pub tasks: Vec<TaskDef>,
}

/// One concrete task (arrays are already expanded).
#[derive(Clone, Debug, PartialEq)]
pub struct TaskDef {
    /// The spec, with a nil id: `to_spec` gives the campaign's deterministic id.
    pub spec: TaskSpec,
    /// Indices (into `Workflow::tasks`) of the tasks that must be DONE first.
    pub depends_on: Vec<usize>,
}

impl TaskDef {
    pub fn to_spec(&self, campaign: &CampaignId) -> TaskSpec {
        let mut spec = self.spec.clone();
        spec.id = TaskId::for_name(campaign, &spec.name);
        spec
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    tasks: Vec<TaskDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskDoc {
    name: String,
    command: Vec<String>,
    #[serde(default = "one")]
    cores: u32,
    #[serde(default)]
    count: Option<u32>,
    #[serde(default)]
    est_duration_s: f64,
    #[serde(default)]
    walltime_s: Option<f64>,
    #[serde(default = "two")]
    retries: u32,
}

fn one() -> u32 {
    1
}
fn two() -> u32 {
    2
}

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
pub fn parse_str(text: &str, format: Format, origin: &str) -> Result<Workflow, WorkflowErrors> {
    let err = |message: String| {
        WorkflowErrors(vec![WorkflowError {
            location: origin.to_string(),
            message,
        }])
    };
    let doc: FileDoc = match format {
        Format::Toml => toml::from_str(text).map_err(|e| err(e.to_string()))?,
        Format::Json => serde_json::from_str(text).map_err(|e| err(e.to_string()))?,
    };
    let mut tasks = Vec::new();
    let mut errors = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for t in doc.tasks {
        if t.command.is_empty() {
            errors.push(WorkflowError {
                location: origin.to_string(),
                message: format!("task `{}` has an empty `command`; give the program and its arguments, e.g. command = [\"/bin/echo\", \"hi\"]", t.name),
            });
            continue;
        }
        if t.cores == 0 {
            errors.push(WorkflowError {
                location: origin.to_string(),
                message: format!("task `{}` asks for 0 cores; use cores = 1 or more", t.name),
            });
            continue;
        }
        let count = t.count.unwrap_or(1);
        for index in 0..count {
            let subst = |s: &str| s.replace("{index}", &index.to_string());
            let name = if t.count.is_some() && !t.name.contains("{index}") {
                format!("{}-{index}", t.name)
            } else {
                subst(&t.name)
            };
            let mut spec = TaskSpec::new(
                TaskId(uuid::Uuid::nil()),
                name.clone(),
                t.command.iter().map(|a| subst(a)).collect(),
            );
            spec.cores = t.cores;
            spec.est_duration_s = t.est_duration_s;
            spec.walltime_s = t.walltime_s;
            spec.retries = t.retries;
            if seen.insert(name.clone(), tasks.len()).is_some() {
                errors.push(WorkflowError {
                    location: origin.to_string(),
                    message: format!("task name `{name}` is used twice; task names must be unique"),
                });
            }
            tasks.push(TaskDef {
                spec,
                depends_on: Vec::new(),
            });
        }
    }
    if !errors.is_empty() {
        return Err(WorkflowErrors(errors));
    }
    Ok(Workflow {
        name: doc.name.unwrap_or_else(|| "workflow".into()),
        tasks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_expand_with_index_substitution() {
        let wf = parse_str(
            "[[tasks]]\nname = \"t-{index}\"\ncommand = [\"echo\", \"{index}\"]\ncount = 3\n",
            Format::Toml,
            "wf.toml",
        )
        .unwrap();
        assert_eq!(wf.tasks.len(), 3);
        assert_eq!(wf.tasks[2].spec.name, "t-2");
        assert_eq!(wf.tasks[2].spec.command, vec!["echo", "2"]);
    }

    #[test]
    fn duplicate_names_are_refused() {
        let e = parse_str(
            "[[tasks]]\nname = \"a\"\ncommand = [\"x\"]\n[[tasks]]\nname = \"a\"\ncommand = [\"y\"]\n",
            Format::Toml,
            "wf.toml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("`a` is used twice"), "{e}");
    }
}
