//! EManager's own skeleton format (TOML or JSON, see docs/skeleton.md): stages of serial or
//! MPI tasks whose lengths and file sizes are constants, distributions or polynomials,
//! inputs mapped from earlier stages' outputs, and iterations of a group of stages.

use super::build::DEFAULT_BUFFER;
use super::dist::{Dist, PolyContext};
use super::plan::{first_combinations, Plan, PlanFile, PlanStage, PlanTask, Work};
use rand::Rng;
use serde::Deserialize;
use std::collections::HashMap;

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

fn split_ref(s: &str) -> Option<(&str, usize)> {
    let (stage, n) = s.rsplit_once('.')?;
    Some((stage, n.parse().ok().filter(|n| *n >= 1)?))
}

fn check(doc: &SkeletonDoc) -> Result<(), String> {
    let mut seen = HashMap::new();
    for (i, s) in doc.stages.iter().enumerate() {
        let ok = !s.name.is_empty()
            && s.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !ok {
            return Err(format!(
                "stage name `{}`: use letters, digits, `_` and `-` only",
                s.name
            ));
        }
        if seen.insert(s.name.as_str(), i).is_some() {
            return Err(format!("stage name `{}` is used twice", s.name));
        }
        if s.processes == 0 || s.cores_per_process == 0 {
            return Err(format!(
                "stage `{}`: processes and cores_per_process must be at least 1",
                s.name
            ));
        }
        if s.kind == TaskKind::Serial && s.processes > 1 {
            return Err(format!(
                "stage `{}`: a serial task has one process; use type = \"parallel\" for {} MPI ranks, or cores_per_process for threads",
                s.name, s.processes
            ));
        }
        if matches!(
            s.length,
            Dist::Polynomial {
                of: super::dist::PolyVar::Length,
                ..
            }
        ) {
            return Err(format!(
                "stage `{}`: `length` cannot be a polynomial of the length",
                s.name
            ));
        }
        for (k, inp) in s.inputs.iter().enumerate() {
            let what = format!("stage `{}` input {}", s.name, k + 1);
            match inp.from.as_deref().unwrap_or("filesystem") {
                "filesystem" => {
                    if inp.size.is_none() {
                        return Err(format!("{what}: a filesystem input needs `size`"));
                    }
                    if matches!(inp.size, Some(Dist::Polynomial { .. })) {
                        return Err(format!(
                            "{what}: a filesystem input size cannot be a polynomial"
                        ));
                    }
                    if inp.mapping.is_some() || inp.output.is_some() || inp.group.is_some() {
                        return Err(format!(
                            "{what}: `mapping`, `output` and `group` need `from = \"<stage>\"`"
                        ));
                    }
                }
                from => {
                    let Some(&j) = seen.get(from).filter(|&&j| j < i) else {
                        return Err(format!(
                            "{what}: `from = \"{from}\"` must name an earlier stage"
                        ));
                    };
                    let outs = doc.stages[j].outputs.len();
                    let o = inp.output.unwrap_or(1);
                    if o == 0 || o > outs {
                        return Err(format!(
                            "{what}: stage `{from}` has {outs} output(s), there is no output {o}"
                        ));
                    }
                    if inp.size.is_some() {
                        return Err(format!(
                            "{what}: `size` is taken from stage `{from}`; remove it"
                        ));
                    }
                    match (inp.mapping, inp.group) {
                        (Some(MappingKind::Combinations), None) => {
                            return Err(format!(
                            "{what}: `mapping = \"combinations\"` needs `group = <files per task>`"
                        ))
                        }
                        (Some(MappingKind::Combinations), Some(_)) | (_, None) => {}
                        (_, Some(_)) => {
                            return Err(format!(
                                "{what}: `group` only goes with `mapping = \"combinations\"`"
                            ))
                        }
                    }
                }
            }
        }
    }
    for it in &doc.iterations {
        let Some(first) = it.stages.first() else {
            return Err("an iteration needs at least one stage".into());
        };
        let Some(&start) = seen.get(first.as_str()) else {
            return Err(format!("iteration: unknown stage `{first}`"));
        };
        for (off, name) in it.stages.iter().enumerate() {
            if doc.stages.get(start + off).map(|s| &s.name) != Some(name) {
                return Err(format!(
                    "iteration over [{}]: the stages must be consecutive in the file, in order",
                    it.stages.join(", ")
                ));
            }
        }
        if it.count == 0 {
            return Err(format!(
                "iteration over [{}]: count must be at least 1",
                it.stages.join(", ")
            ));
        }
        if let Some(fb) = &it.feedback {
            let bad =
                |s: &str| format!("iteration feedback `{s}`: use \"<stage of the group>.<n>\"");
            let (is, ii) = split_ref(&fb.input).ok_or_else(|| bad(&fb.input))?;
            let (os, oo) = split_ref(&fb.output).ok_or_else(|| bad(&fb.output))?;
            for s in [is, os] {
                if !it.stages.iter().any(|n| n == s) {
                    return Err(bad(s));
                }
            }
            let st = &doc.stages[seen[is]];
            if ii > st.inputs.len()
                || st.inputs[ii - 1].from.as_deref().unwrap_or("filesystem") == "filesystem"
            {
                return Err(format!(
                    "iteration feedback: input {ii} of `{is}` must be an input read from a stage"
                ));
            }
            if oo > doc.stages[seen[os]].outputs.len() {
                return Err(format!("iteration feedback: `{os}` has no output {oo}"));
            }
        }
    }
    for (a, ia) in doc.iterations.iter().enumerate() {
        for ib in &doc.iterations[a + 1..] {
            if ia.stages.iter().any(|s| ib.stages.contains(s)) {
                return Err("a stage belongs to two iterations".into());
            }
        }
    }
    Ok(())
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
            let length = s.length.sample(rng, ctx).map_err(what)?;
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
