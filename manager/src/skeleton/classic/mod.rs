//! The original Application Skeleton input format (issue 11): `Num_Stage = ...` files read
//! as docs/skeleton.md#classic-format describes, expanded exactly as the original tool
//! expands them, and turned into a [`Plan`].

pub mod defs;
pub mod expand;
pub mod generate;
pub mod parse;
pub mod render;
pub mod values;

use super::diag::Diagnostic;
use super::plan::{Plan, PlanFile, PlanStage, PlanTask, Work};
pub use generate::GenStage;
use rand::Rng;
pub use render::{setup_lines, shell_lines};
use std::path::Path;

/// Parses, unrolls iterations and generates the tasks of an original-format file.
/// `base_dir` is where a relative `external` mapping script is looked up first.
pub fn expand<R: Rng>(
    text: &str,
    origin: &str,
    base_dir: &Path,
    rng: &mut R,
    warnings: &mut Vec<Diagnostic>,
) -> Result<Vec<GenStage>, Diagnostic> {
    let stages = parse::parse(text, origin, warnings)?;
    let stages = expand::expand_iterations(stages, origin)?;
    generate::generate(&stages, rng, origin, base_dir, warnings)
}

/// The runnable form of generated stages: task type `parallel` becomes an MPI task with
/// `Num_Processes` ranks; a `flops` mode task computes that many additions.
pub fn to_plan(
    name: &str,
    stages: &[GenStage],
    origin: &str,
    warnings: &mut Vec<Diagnostic>,
) -> Plan {
    let mut plan_stages = Vec::with_capacity(stages.len());
    for s in stages {
        let d = &s.def;
        let mpi = match d.task_type.to_ascii_lowercase().as_str() {
            "parallel" | "mpi" => true,
            "serial" => false,
            other => {
                warnings.push(Diagnostic::at(
                    origin,
                    d.line,
                    format!(
                        "stage `{}`: unknown `Task_Type = {other}`, run as serial",
                        d.name
                    ),
                ));
                false
            }
        };
        if !mpi && d.processes > 1 {
            warnings.push(Diagnostic::at(
                origin,
                d.line,
                format!(
                    "stage `{}`: a serial task with `Num_Processes = {}` gets {} cores and one process",
                    d.name, d.processes, d.processes
                ),
            ));
        }
        let flops = d.task_mode.starts_with("flops");
        if !flops && d.task_mode != "time" {
            warnings.push(Diagnostic::at(
                origin,
                d.line,
                format!(
                    "stage `{}`: unknown `Task_Mode = {}`, read as `time` (as task.c does)",
                    d.name, d.task_mode
                ),
            ));
        }
        let interleave = if super::interleave::MODES.contains(&d.interleave) {
            d.interleave
        } else {
            warnings.push(Diagnostic::at(
                origin,
                d.line,
                format!(
                    "stage `{}`: `Interleave_Option = {}` makes the original task.c neither read, compute nor write; run as 0 (read, compute, write)",
                    d.name, d.interleave
                ),
            ));
            0
        };
        let file = |f: &generate::GenFile| PlanFile {
            path: f.path(),
            size: f.size.num.max(0.0) as u64,
            create: f.created,
        };
        let tasks = s
            .tasks
            .iter()
            .map(|t| PlanTask {
                name: t.id.clone(),
                mpi,
                cores: d.processes.max(1),
                processes: if mpi { d.processes.max(1) } else { 1 },
                work: if flops {
                    Work::Flops(t.length.num)
                } else {
                    Work::Seconds(t.length.num)
                },
                read_buffer: d.read_buffer,
                write_buffer: d.write_buffer,
                interleave,
                inputs: t.inputs.iter().map(file).collect(),
                outputs: t.outputs.iter().map(file).collect(),
            })
            .collect();
        plan_stages.push(PlanStage {
            name: d.name.clone(),
            tasks,
        });
    }
    Plan {
        name: name.to_string(),
        stages: plan_stages,
    }
}
