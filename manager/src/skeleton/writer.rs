//! Writes a built skeleton as a workflow-language file (TOML or JSON): concrete tasks with
//! their stage and the names of the tasks they depend on, and the stages in order.
//!
//! In the workflow language a stage is also a barrier (every task of a stage waits for the
//! whole previous stage). The skeleton's file dependencies are finer; [`StageMode::Tags`]
//! keeps them alone and records the stage only as a `stage:NAME` tag.

use super::build::Built;
use emanager_shared::model::FileSpec;
use serde::Serialize;
use std::path::Path;

#[derive(Serialize)]
struct FileDoc<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stages: Vec<StageDoc<'a>>,
    tasks: Vec<TaskDoc<'a>>,
}

#[derive(Serialize)]
struct StageDoc<'a> {
    name: &'a str,
}

#[derive(Serialize)]
struct TaskDoc<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    stage: Option<&'a str>,
    command: &'a [String],
    cores: u32,
    processes: u32,
    mpi: bool,
    est_duration_s: f64,
    depends_on: Vec<&'a str>,
    tags: &'a [String],
    input_files: &'a [FileSpec],
    output_files: &'a [FileSpec],
}

/// Output formats of the writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutFormat {
    Toml,
    Json,
}

impl OutFormat {
    /// `.json` gives JSON, anything else TOML.
    pub fn from_path(path: &Path) -> OutFormat {
        match path.extension().and_then(|e| e.to_str()) {
            Some("json") => OutFormat::Json,
            _ => OutFormat::Toml,
        }
    }
}

/// How stages appear in the written file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StageMode {
    /// `[[stages]]` and `stage = "NAME"` on every task (stages become barriers).
    #[default]
    Stages,
    /// Only the `stage:NAME` tag: the file dependencies alone order the tasks.
    Tags,
}

/// The workflow file text.
pub fn render(built: &Built, format: OutFormat, stages: StageMode) -> anyhow::Result<String> {
    let with_stages = stages == StageMode::Stages;
    let wf = &built.workflow;
    let mut stage_of = vec![""; wf.tasks.len()];
    for s in &built.stages {
        for i in s.tasks.clone() {
            stage_of[i] = &s.name;
        }
    }
    let doc = FileDoc {
        name: &wf.name,
        stages: built
            .stages
            .iter()
            .filter(|_| with_stages)
            .map(|s| StageDoc { name: &s.name })
            .collect(),
        tasks: wf
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| TaskDoc {
                name: &t.spec.name,
                stage: with_stages.then_some(stage_of[i]),
                command: &t.spec.command,
                cores: t.spec.cores,
                processes: t.spec.processes,
                mpi: t.spec.mpi,
                est_duration_s: t.spec.est_duration_s,
                depends_on: t
                    .depends_on
                    .iter()
                    .map(|&d| wf.tasks[d].spec.name.as_str())
                    .collect(),
                tags: &t.spec.tags,
                input_files: &t.spec.input_files,
                output_files: &t.spec.output_files,
            })
            .collect(),
    };
    Ok(match format {
        OutFormat::Toml => toml::to_string(&doc)?,
        OutFormat::Json => serde_json::to_string_pretty(&doc)? + "\n",
    })
}
