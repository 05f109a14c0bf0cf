//! Task generation of the original format (docs/skeleton.md#classic-mapping, generate_tasks): file names,
//! input mappings and drawn values, kept as the original's strings so the result can be
//! printed exactly as the original tool prints it.

use super::super::diag::Diagnostic;
use super::super::dist::{lognormal, normal, triangular};
use super::super::plan::first_combinations;
use super::defs::{FileKind, FileRef, Mapping, PolySrc, Source, StageDef, ValueSpec};
use super::values::c_number;
use rand::Rng;
use std::collections::HashMap;
use std::path::Path;

/// A drawn value: the text the original tool would print, and its number.
#[derive(Clone, Debug, PartialEq)]
pub struct Val {
    pub text: String,
    pub num: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct GenFile {
    pub name: String,
    pub size: Val,
    /// Generated here as a `filesystem` input of this very task.
    pub created: bool,
}

impl GenFile {
    /// `<dir>/<name>` as the original's `setdir` derives the directory from the name.
    pub fn path(&self) -> String {
        format!("{}/{}", file_dir(&self.name), self.name)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct GenTask {
    pub id: String,
    pub length: Val,
    pub inputs: Vec<GenFile>,
    pub outputs: Vec<GenFile>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct GenStage {
    pub def: StageDef,
    pub tasks: Vec<GenTask>,
    /// The `filesystem` input files the setup script creates, input-major.
    pub setup_files: Vec<GenFile>,
}

/// The directory of a file (setdir, l.175-195): the first 5 `_` parts when there are more
/// than 5, else the first 3.
pub fn file_dir(name: &str) -> String {
    let parts: Vec<&str> = name.split('_').collect();
    let n = if parts.len() > 5 {
        5
    } else {
        3.min(parts.len())
    };
    parts[..n].join("_")
}

/// Generates the tasks of the (already iteration-expanded) stages in order.
pub fn generate<R: Rng>(
    stages: &[StageDef],
    rng: &mut R,
    origin: &str,
    base_dir: &Path,
    warnings: &mut Vec<Diagnostic>,
) -> Result<Vec<GenStage>, Diagnostic> {
    let mut g = Generator {
        all: stages,
        done: Vec::new(),
        by_name: HashMap::new(),
        rng,
        origin,
        base_dir,
        warnings,
    };
    for def in stages {
        if let Some(&prev) = g.by_name.get(&def.name) {
            return Err(g.err(
                def.line,
                format!(
                    "stage name `{}` is used twice (first on line {})",
                    def.name, g.done[prev].def.line
                ),
            ));
        }
        let stage = g.stage(def)?;
        g.by_name.insert(def.name.clone(), g.done.len());
        g.done.push(stage);
    }
    Ok(g.done)
}

/// The state of one generation: the stages done so far and where draws come from.
struct Generator<'a, R> {
    all: &'a [StageDef],
    done: Vec<GenStage>,
    by_name: HashMap<String, usize>,
    rng: &'a mut R,
    origin: &'a str,
    base_dir: &'a Path,
    warnings: &'a mut Vec<Diagnostic>,
}

fn draw<R: Rng>(
    spec: &ValueSpec,
    rng: &mut R,
    x: impl Fn(PolySrc) -> Result<f64, String>,
) -> Result<Val, String> {
    let fmt2 = |v: f64, unit: &str| {
        let text = format!("{:.2}{unit}", v.max(0.0));
        Val {
            num: c_number(&text).0,
            text,
        }
    };
    Ok(match spec {
        ValueSpec::Uniform { text, num } => Val {
            text: text.clone(),
            num: *num,
        },
        ValueSpec::Normal { mean, stdev, unit } => fmt2(normal(*mean, *stdev, rng), unit),
        ValueSpec::LogNorm { mu, sigma, unit } => fmt2(lognormal(*mu, *sigma, rng), unit),
        ValueSpec::Triangular { low, high, unit } => {
            fmt2(triangular(*low, (low + high) / 2.0, *high, rng), unit)
        }
        ValueSpec::Polynomial { a, b, src } => {
            let v = (a * x(*src)?.powf(*b)).trunc();
            Val {
                text: format!("{v:.0}"),
                num: v,
            }
        }
    })
}

impl<R: Rng> Generator<'_, R> {
    fn err(&self, line: usize, message: String) -> Diagnostic {
        Diagnostic::at(self.origin, line, message)
    }

    /// Inputs, then the mapping override, then per task the length and outputs (l.326-468).
    fn stage(&mut self, def: &StageDef) -> Result<GenStage, Diagnostic> {
        let (mut inputs, setup_files) = self.declared_inputs(def)?;
        if let Some((mapping, line)) = &def.mapping {
            inputs = self.mapped_inputs(def, mapping, *line, &inputs)?;
        }
        let tasks = self.tasks(def, inputs)?;
        Ok(GenStage {
            def: def.clone(),
            tasks,
            setup_files,
        })
    }

    /// The files of `r` over the referenced stage's tasks, in task order.
    fn files_of(
        &self,
        def: &StageDef,
        r: &FileRef,
        line: usize,
        key: &str,
    ) -> Result<Vec<GenFile>, Diagnostic> {
        let Some(&si) = self.by_name.get(&r.stage) else {
            let why = if r.stage == def.name {
                "is this stage; a stage can only read from earlier stages"
            } else if self.all.iter().any(|s| s.name == r.stage) {
                "comes later in the file; a stage can only read from earlier stages"
            } else {
                "is not a stage of this file"
            };
            return Err(self.err(
                line,
                format!("`{key}` refers to `{r}`, but stage `{}` {why}", r.stage),
            ));
        };
        let src = &self.done[si];
        let count = match r.kind {
            FileKind::Input => src.tasks.first().map_or(0, |t| t.inputs.len()),
            FileKind::Output => src.def.outputs.len(),
        };
        if r.index > count && !src.tasks.is_empty() {
            return Err(self.err(
                line,
                format!(
                    "`{key}` refers to `{r}`, but the tasks of `{}` have {count} {} file(s)",
                    r.stage,
                    r.kind.as_str().to_lowercase()
                ),
            ));
        }
        Ok(src
            .tasks
            .iter()
            .filter_map(|t| match r.kind {
                FileKind::Input => t.inputs.get(r.index - 1),
                FileKind::Output => t.outputs.get(r.index - 1),
            })
            .map(|f| GenFile {
                created: false,
                ..f.clone()
            })
            .collect())
    }

    /// The inputs the `Input_k` blocks declare, and the filesystem files among them.
    fn declared_inputs(
        &mut self,
        def: &StageDef,
    ) -> Result<(Vec<Vec<GenFile>>, Vec<GenFile>), Diagnostic> {
        let n = def.num_tasks;
        let n_blocks = def.inputs.len();
        let mut inputs: Vec<Vec<GenFile>> = vec![Vec::new(); n];
        let mut setup_files = Vec::new();
        for (k, input) in def.inputs.iter().enumerate() {
            match &input.source {
                None => {}
                Some((Source::Filesystem, line)) => {
                    let Some((size, _)) = &input.size else {
                        return Err(self.err(
                            *line,
                            format!("`Input_{}.Source = filesystem` needs an `Input_{}.Size` line with the file size", k + 1, k + 1),
                        ));
                    };
                    for (t, list) in inputs.iter_mut().enumerate() {
                        let size =
                            draw(size, self.rng, |_| Ok(0.0)).map_err(|m| self.err(*line, m))?;
                        let f = GenFile {
                            name: format!("{}_Input_{k}_{}", def.name, t + 1),
                            size,
                            created: true,
                        };
                        setup_files.push(f.clone());
                        list.push(f);
                    }
                }
                Some((Source::File(r), line)) => {
                    let flist = self.files_of(def, r, *line, &format!("Input_{}.Source", k + 1))?;
                    // HEAD quirk (docs/skeleton.md#classic-direct-references): task t reads file t x N of every source
                    for (t, list) in inputs.iter_mut().enumerate() {
                        let idx = t * n_blocks;
                        let Some(f) = flist.get(idx) else {
                            return Err(self.err(
                                *line,
                                format!(
                                    "task {t} of `{}` reads file {} of `{r}`, which has only {} (the original tool gives task t file t x Input_Files_Each_Task, docs/skeleton.md#classic-direct-references); use `Input_Task_Mapping = combination {r} 1` to wrap around",
                                    def.name,
                                    idx + 1,
                                    flist.len()
                                ),
                            ));
                        };
                        list.push(f.clone());
                    }
                }
            }
        }
        let refs: Vec<usize> = def
            .inputs
            .iter()
            .filter_map(|i| match &i.source {
                Some((Source::File(_), line)) => Some(*line),
                _ => None,
            })
            .collect();
        if refs.len() > 1 && n > 0 {
            self.warnings.push(Diagnostic::at(
                self.origin,
                refs[0],
                format!(
                    "stage `{}`: each task gets file t x {n_blocks} of every referenced source, as the original tool does (so task 0 reads `{}` for each of its {} referenced inputs)",
                    def.name,
                    inputs[0].first().map_or("", |f| f.name.as_str()),
                    refs.len()
                ),
            ));
        }
        Ok((inputs, setup_files))
    }

    /// `Input_Task_Mapping`: replaces every task's whole input list.
    fn mapped_inputs(
        &mut self,
        def: &StageDef,
        mapping: &Mapping,
        line: usize,
        declared: &[Vec<GenFile>],
    ) -> Result<Vec<Vec<GenFile>>, Diagnostic> {
        let n = def.num_tasks;
        match mapping {
            Mapping::Combination { from, m } => {
                let flist = self.files_of(def, from, line, "Input_Task_Mapping")?;
                if *m > flist.len() {
                    return Err(self.err(
                        line,
                        format!("`combination {from} {m}`: cannot choose {m} of the {} files of `{from}`", flist.len()),
                    ));
                }
                let combos = first_combinations(flist.len(), *m, n);
                Ok((0..n)
                    .map(|t| {
                        combos[t % combos.len()]
                            .iter()
                            .map(|&i| flist[i].clone())
                            .collect()
                    })
                    .collect())
            }
            Mapping::External { script } => {
                let mut known: HashMap<&str, &GenFile> = HashMap::new();
                let earlier = self
                    .done
                    .iter()
                    .flat_map(|s| &s.tasks)
                    .flat_map(|t| t.inputs.iter().chain(&t.outputs));
                for f in earlier.chain(declared.iter().flatten()) {
                    known.insert(f.name.as_str(), f);
                }
                let lines = run_script(script, self.base_dir).map_err(|m| self.err(line, m))?;
                let mut mapped = Vec::with_capacity(n);
                for t in 0..n {
                    let Some(l) = lines.get(t) else {
                        return Err(self.err(
                            line,
                            format!("mapping script `{script}` printed {} line(s) for the {n} tasks of `{}`", lines.len(), def.name),
                        ));
                    };
                    let mut list = Vec::new();
                    for name in l.split_whitespace() {
                        let f = known.get(name).ok_or_else(|| {
                            self.err(
                                line,
                                format!("File {name} declared in script {script} does not exist"),
                            )
                        })?;
                        list.push(GenFile {
                            created: false,
                            ..(*f).clone()
                        });
                    }
                    mapped.push(list);
                }
                Ok(mapped)
            }
        }
    }

    /// Per task: the length (may depend on an input size), then the outputs (may depend on
    /// an input size or the length).
    fn tasks(
        &mut self,
        def: &StageDef,
        inputs: Vec<Vec<GenFile>>,
    ) -> Result<Vec<GenTask>, Diagnostic> {
        let mut tasks = Vec::with_capacity(inputs.len());
        for (t, ins) in inputs.into_iter().enumerate() {
            let input_size = |what: &str, k: usize| {
                ins.get(k - 1).map(|f| f.size.num).ok_or_else(|| {
                    format!(
                        "`{what}` depends on `Input_{k}` but task {t} of `{}` has {} input(s)",
                        def.name,
                        ins.len()
                    )
                })
            };
            let (spec, line) = &def.length;
            let length = draw(spec, self.rng, |src| match src {
                PolySrc::Input(k) => input_size("Task_Length", k),
                PolySrc::Length => Err("`Task_Length` cannot depend on itself".into()),
            })
            .map_err(|m| self.err(*line, m))?;
            let mut outputs = Vec::with_capacity(def.outputs.len());
            for (o, (spec, line)) in def.outputs.iter().enumerate() {
                let key = format!("Output_{}.Size", o + 1);
                let size = draw(spec, self.rng, |src| match src {
                    PolySrc::Input(k) => input_size(&key, k),
                    PolySrc::Length => Ok(length.num),
                })
                .map_err(|m| self.err(*line, m))?;
                outputs.push(GenFile {
                    name: format!("{}_Output_{o}_{}", def.name, t + 1),
                    size,
                    created: false,
                });
            }
            tasks.push(GenTask {
                id: format!("{}_{t}", def.name),
                length,
                inputs: ins,
                outputs,
            });
        }
        Ok(tasks)
    }
}

/// Runs an `external` mapping script (through `sh -c`, as `getstatusoutput` does) and
/// returns its stdout lines. A relative path is looked up next to the skeleton file first.
fn run_script(script: &str, base_dir: &Path) -> Result<Vec<String>, String> {
    let beside = base_dir.join(script);
    let path = if Path::new(script).is_relative() && beside.exists() {
        beside
    } else {
        std::path::absolute(script).map_err(|e| format!("mapping script `{script}`: {e}"))?
    };
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(path.as_os_str())
        .output()
        .map_err(|e| format!("cannot run mapping script `{script}`: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "mapping script `{}` failed ({}): {}{}",
            path.display(),
            out.status,
            stdout.trim_end(),
            stderr.trim_end()
        ));
    }
    Ok(stdout
        .trim_end_matches('\n')
        .split('\n')
        .map(str::to_string)
        .collect())
}
