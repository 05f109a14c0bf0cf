//! Expansion of a checked skeleton document: iterations unrolled into stage copies, values
//! drawn, inputs mapped to earlier outputs.

use super::check::{check, split_ref};
use super::{FeedbackDoc, MappingKind, Mode, SkeletonDoc, StageDoc, TaskKind};
use crate::skeleton::build::DEFAULT_BUFFER;
use crate::skeleton::dist::PolyContext;
use crate::skeleton::plan::{first_combinations, Plan, PlanFile, PlanStage, PlanTask, Work};
use rand::Rng;
use std::collections::HashMap;

/// One stage as generated: an iteration copy is named `<stage>.<i>` (1-based).
struct Instance<'a> {
    doc: &'a StageDoc,
    name: String,
    /// An input (0-based) read from another instance instead of its declared source.
    feedback: Option<Feedback<'a>>,
}

struct Feedback<'a> {
    input: usize,
    from: String,
    output: usize,
    doc: &'a FeedbackDoc,
}

fn instances(doc: &SkeletonDoc) -> Vec<Instance<'_>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < doc.stages.len() {
        let s = &doc.stages[i];
        let Some(it) = doc
            .iterations
            .iter()
            .find(|it| it.stages.first() == Some(&s.name))
        else {
            out.push(Instance {
                doc: s,
                name: s.name.clone(),
                feedback: None,
            });
            i += 1;
            continue;
        };
        let group = &doc.stages[i..i + it.stages.len()];
        for iter in 1..=it.count {
            for g in group {
                let feedback = it.feedback.as_ref().filter(|_| iter > 1).and_then(|fb| {
                    let (is, ii) = split_ref(&fb.input)?;
                    let (os, oo) = split_ref(&fb.output)?;
                    (is == g.name).then(|| Feedback {
                        input: ii - 1,
                        from: format!("{os}.{}", iter - 1),
                        output: oo,
                        doc: fb,
                    })
                });
                out.push(Instance {
                    doc: g,
                    name: format!("{}.{iter}", g.name),
                    feedback,
                });
            }
        }
        i += group.len();
    }
    out
}

/// Expands a skeleton into a plan, drawing every random value from `rng`.
pub fn expand<R: Rng>(doc: &SkeletonDoc, name: &str, rng: &mut R) -> Result<Plan, String> {
    check(doc)?;
    let mut stages: Vec<PlanStage> = Vec::new();
    // original stage name -> index (into `stages`) of its latest generated copy
    let mut latest: HashMap<&str, usize> = HashMap::new();
    let mut by_instance: HashMap<String, usize> = HashMap::new();
    for inst in instances(doc) {
        let s = inst.doc;
        let n = s.tasks;
        let task_name = |t: usize| format!("{}-{t}", inst.name);
        let mut inputs: Vec<Vec<PlanFile>> = vec![Vec::new(); n];
        for (k, inp) in s.inputs.iter().enumerate() {
            let what = format!("stage `{}` input {}", inst.name, k + 1);
            let from = inp.from.as_deref().unwrap_or("filesystem");
            if from == "filesystem" {
                let size = inp.size.as_ref().expect("checked");
                for (t, list) in inputs.iter_mut().enumerate() {
                    let v = size.sample(rng, PolyContext::default())?;
                    list.push(PlanFile {
                        path: format!("{}/{}.in{}", inst.name, task_name(t), k + 1),
                        size: v.round() as u64,
                        create: true,
                    });
                }
                continue;
            }
            let (src, output, mapping, group) = match &inst.feedback {
                Some(fb) if fb.input == k => (
                    by_instance[&fb.from],
                    fb.output,
                    fb.doc.mapping.or(inp.mapping),
                    fb.doc.group.or(inp.group),
                ),
                _ => (
                    latest[from],
                    inp.output.unwrap_or(1),
                    inp.mapping,
                    inp.group,
                ),
            };
            let flist: Vec<PlanFile> = stages[src]
                .tasks
                .iter()
                .map(|t| PlanFile {
                    create: false,
                    ..t.outputs[output - 1].clone()
                })
                .collect();
            let len = flist.len();
            match mapping.unwrap_or(MappingKind::OneToOne) {
                MappingKind::OneToOne => {
                    if len != n {
                        return Err(format!(
                            "{what}: one-to-one needs as many tasks ({n}) as `{}` has files ({len}); set mapping to \"all-to-all\", \"chunks\" or \"combinations\"",
                            stages[src].name
                        ));
                    }
                    for (list, f) in inputs.iter_mut().zip(flist) {
                        list.push(f);
                    }
                }
                MappingKind::AllToAll => {
                    for list in &mut inputs {
                        list.extend(flist.iter().cloned());
                    }
                }
                MappingKind::Chunks => {
                    if n > len {
                        return Err(format!(
                            "{what}: {n} tasks cannot each get a chunk of {len} files"
                        ));
                    }
                    for (t, list) in inputs.iter_mut().enumerate() {
                        list.extend(flist[t * len / n..(t + 1) * len / n].iter().cloned());
                    }
                }
                MappingKind::Combinations => {
                    let Some(m) = group else {
                        return Err(format!(
                            "{what}: `mapping = \"combinations\"` needs `group = <files per task>`"
                        ));
                    };
                    if m > len {
                        return Err(format!(
                            "{what}: cannot choose {m} of the {len} files of `{}`",
                            stages[src].name
                        ));
                    }
                    let combos = first_combinations(len, m, n);
                    for (t, list) in inputs.iter_mut().enumerate() {
                        list.extend(combos[t % combos.len()].iter().map(|&i| flist[i].clone()));
                    }
                }
            }
        }
        let mut tasks = Vec::with_capacity(n);
        for (t, ins) in inputs.into_iter().enumerate() {
            let sizes: Vec<f64> = ins.iter().map(|f| f.size as f64).collect();
            let ctx = PolyContext {
                input_sizes: &sizes,
                length: None,
            };
            let what = |e: String| format!("stage `{}` task {t}: {e}", inst.name);
            // lengths are kept to the millisecond so argv and estimate read cleanly
            let length = (s.length.sample(rng, ctx).map_err(what)? * 1000.0).round() / 1000.0;
            let ctx = PolyContext {
                length: Some(length),
                ..ctx
            };
            let mut outputs = Vec::with_capacity(s.outputs.len());
            for (o, out) in s.outputs.iter().enumerate() {
                outputs.push(PlanFile {
                    path: format!("{}/{}.out{}", inst.name, task_name(t), o + 1),
                    size: out.size.sample(rng, ctx).map_err(what)?.round() as u64,
                    create: false,
                });
            }
            let mpi = s.kind == TaskKind::Parallel;
            tasks.push(PlanTask {
                name: task_name(t),
                mpi,
                cores: s.processes * s.cores_per_process,
                processes: s.processes,
                work: match s.mode {
                    Mode::Time => Work::Seconds(length),
                    Mode::Flops => Work::Flops(length.round()),
                },
                read_buffer: s.read_buffer.unwrap_or(DEFAULT_BUFFER),
                write_buffer: s.write_buffer.unwrap_or(DEFAULT_BUFFER),
                interleave: 0,
                inputs: ins,
                outputs,
            });
        }
        latest.insert(s.name.as_str(), stages.len());
        by_instance.insert(inst.name.clone(), stages.len());
        stages.push(PlanStage {
            name: inst.name,
            tasks,
        });
    }
    Ok(Plan {
        name: name.to_string(),
        stages,
    })
}
