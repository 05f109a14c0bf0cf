//! Turns a [`Plan`] into a runnable [`Workflow`]: every task runs `emanager-synth` with its
//! length and files in argv, files live under one absolute data directory, and a task
//! depends on the tasks that write (or create) the files it reads.

use super::plan::{Plan, PlanFile, PlanTask, Work};
use crate::workflow::{TaskDef, Workflow};
use emanager_shared::model::FileSpec;
use emanager_shared::{TaskId, TaskSpec};
use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// The speed assumed to turn a `flops` task length into an estimated duration.
pub const FLOPS_PER_SECOND: f64 = 1e9;

/// The read/write buffer `emanager-synth` uses unless told otherwise.
pub const DEFAULT_BUFFER: u64 = 65536;

/// How generated tasks are made runnable.
#[derive(Clone, Debug, PartialEq)]
pub struct BuildOptions {
    /// The `emanager-synth` program every task runs.
    pub synth: PathBuf,
    /// Absolute directory all task files live under.
    pub data_dir: PathBuf,
    /// Sleep instead of keeping a core busy.
    pub sleep: bool,
    /// Multiplies every task length (and flop count).
    pub time_scale: f64,
}

/// A stage of the built workflow: its name and the indices of its tasks.
#[derive(Clone, Debug, PartialEq)]
pub struct StageInfo {
    pub name: String,
    pub tasks: Range<usize>,
}

/// The workflow plus what the workflow model does not carry (yet): the stages.
#[derive(Clone, Debug, PartialEq)]
pub struct Built {
    pub workflow: Workflow,
    pub stages: Vec<StageInfo>,
}

fn abs(dir: &Path, f: &PlanFile) -> String {
    dir.join(&f.path).to_string_lossy().into_owned()
}

/// The argv of one task.
pub fn synth_command(t: &PlanTask, opts: &BuildOptions) -> Vec<String> {
    let mut argv = vec![opts.synth.to_string_lossy().into_owned()];
    match t.work {
        Work::Seconds(s) => argv.extend(["--length".into(), s.to_string()]),
        Work::Flops(n) => argv.extend(["--flops".into(), n.to_string()]),
    }
    if opts.sleep {
        argv.push("--sleep".into());
    }
    if opts.time_scale != 1.0 {
        argv.extend(["--time-scale".into(), opts.time_scale.to_string()]);
    }
    if t.read_buffer != DEFAULT_BUFFER {
        argv.extend(["--read-buffer".into(), t.read_buffer.to_string()]);
    }
    if t.write_buffer != DEFAULT_BUFFER {
        argv.extend(["--write-buffer".into(), t.write_buffer.to_string()]);
    }
    if t.interleave != 0 {
        argv.extend(["--interleave".into(), t.interleave.to_string()]);
    }
    for f in &t.inputs {
        if f.create {
            argv.extend([
                "--make-in".into(),
                format!("{}:{}", abs(&opts.data_dir, f), f.size),
            ]);
        } else {
            argv.extend(["--in".into(), abs(&opts.data_dir, f)]);
        }
    }
    for f in &t.outputs {
        argv.extend([
            "--out".into(),
            format!("{}:{}", abs(&opts.data_dir, f), f.size),
        ]);
    }
    argv
}

/// Builds the workflow; fails only if two tasks would get the same name.
pub fn build(plan: &Plan, opts: &BuildOptions) -> Result<Built, String> {
    let mut producer: HashMap<String, usize> = HashMap::new();
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut stages = Vec::with_capacity(plan.stages.len());
    let mut index = 0;
    for s in &plan.stages {
        let start = index;
        for t in &s.tasks {
            if names.insert(&t.name, index).is_some() {
                return Err(format!("two tasks are named `{}`; rename a stage", t.name));
            }
            for f in t.outputs.iter().chain(t.inputs.iter().filter(|f| f.create)) {
                producer.insert(abs(&opts.data_dir, f), index);
            }
            index += 1;
        }
        stages.push(StageInfo {
            name: s.name.clone(),
            tasks: start..index,
        });
    }
    let mut tasks = Vec::with_capacity(index);
    for s in &plan.stages {
        for t in &s.tasks {
            let me = tasks.len();
            let mut spec = TaskSpec::new(
                TaskId(uuid::Uuid::nil()),
                t.name.clone(),
                synth_command(t, opts),
            );
            spec.cores = t.cores;
            spec.processes = t.processes;
            spec.mpi = t.mpi;
            spec.est_duration_s = match t.work {
                Work::Seconds(s) => s * opts.time_scale,
                Work::Flops(n) => n * opts.time_scale / FLOPS_PER_SECOND,
            };
            let file = |f: &PlanFile| FileSpec {
                path: abs(&opts.data_dir, f),
                size_bytes: Some(f.size),
            };
            spec.input_files = t.inputs.iter().map(file).collect();
            spec.output_files = t.outputs.iter().map(file).collect();
            spec.tags = vec!["skeleton".into(), format!("stage:{}", s.name)];
            let mut deps: Vec<usize> = spec
                .input_files
                .iter()
                .filter_map(|f| producer.get(&f.path).copied())
                .filter(|&p| p != me)
                .collect();
            deps.sort_unstable();
            deps.dedup();
            tasks.push((spec, deps));
        }
    }
    Ok(Built {
        workflow: assemble(&plan.name, tasks, &stages),
        stages,
    })
}

/// The workflow model's value. The only place that names its fields, so a change of the
/// model touches this function alone. Dependencies are the file dependencies (dataflow);
/// stages are kept in `Built::stages` and in the `stage:NAME` tags, not as barriers.
fn assemble(name: &str, tasks: Vec<(TaskSpec, Vec<usize>)>, _stages: &[StageInfo]) -> Workflow {
    Workflow::new(
        name,
        tasks
            .into_iter()
            .map(|(spec, depends_on)| TaskDef::new(spec, depends_on))
            .collect(),
    )
}
