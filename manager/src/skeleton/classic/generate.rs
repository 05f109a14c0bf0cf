//! Task generation of the original format (FORMAT.md §6, generate_tasks): file names,
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
    let mut out: Vec<GenStage> = Vec::new();
    let mut by_name: HashMap<String, usize> = HashMap::new();
    for def in stages {
        if let Some(&prev) = by_name.get(&def.name) {
            return Err(Diagnostic::at(
                origin,
                def.line,
                format!(
                    "stage name `{}` is used twice (first on line {})",
                    def.name, out[prev].def.line
                ),
            ));
        }
        let g = stage(def, &out, &by_name, stages, rng, origin, base_dir, warnings)?;
        by_name.insert(def.name.clone(), out.len());
        out.push(g);
    }
    Ok(out)
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

#[allow(clippy::too_many_arguments)]
fn stage<R: Rng>(
    def: &StageDef,
    done: &[GenStage],
    by_name: &HashMap<String, usize>,
    all: &[StageDef],
    rng: &mut R,
    origin: &str,
    base_dir: &Path,
    warnings: &mut Vec<Diagnostic>,
) -> Result<GenStage, Diagnostic> {
    let n = def.num_tasks;
    let n_blocks = def.inputs.len();
    let err = |line: usize, m: String| Diagnostic::at(origin, line, m);
    // The files of `r` over the referenced stage's tasks, in task order.
    let files_of = |r: &FileRef, line: usize, key: &str| -> Result<Vec<GenFile>, Diagnostic> {
        let Some(&si) = by_name.get(&r.stage) else {
            let later = all.iter().any(|s| s.name == r.stage);
            let why = if r.stage == def.name {
                "is this stage; a stage can only read from earlier stages"
            } else if later {
                "comes later in the file; a stage can only read from earlier stages"
            } else {
                "is not a stage of this file"
            };
            return Err(err(
                line,
                format!("`{key}` refers to `{r}`, but stage `{}` {why}", r.stage),
            ));
        };
        let src = &done[si];
        let count = match r.kind {
            FileKind::Input => src.tasks.first().map_or(0, |t| t.inputs.len()),
            FileKind::Output => src.def.outputs.len(),
        };
        if r.index > count && !src.tasks.is_empty() {
            return Err(err(
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
    };

    let mut inputs: Vec<Vec<GenFile>> = vec![Vec::new(); n];
    let mut setup_files = Vec::new();
    for (k, input) in def.inputs.iter().enumerate() {
        match &input.source {
            None => {}
            Some((Source::Filesystem, line)) => {
                let Some((size, _)) = &input.size else {
                    return Err(err(
                        *line,
                        format!("`Input_{}.Source = filesystem` needs an `Input_{}.Size` line with the file size", k + 1, k + 1),
                    ));
                };
                for (t, list) in inputs.iter_mut().enumerate() {
                    let size = draw(size, rng, |_| Ok(0.0)).map_err(|m| err(*line, m))?;
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
                let key = format!("Input_{}.Source", k + 1);
                let flist = files_of(r, *line, &key)?;
                for (t, list) in inputs.iter_mut().enumerate() {
                    let idx = t * n_blocks;
                    let Some(f) = flist.get(idx) else {
                        return Err(err(
                            *line,
                            format!(
                                "task {t} of `{}` reads file {} of `{r}`, which has only {} (the original tool gives task t file t x Input_Files_Each_Task, FORMAT.md §6a); use `Input_Task_Mapping = combination {r} 1` to wrap around",
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
    let refs = def
        .inputs
        .iter()
        .filter(|i| matches!(i.source, Some((Source::File(_), _))))
        .count();
    if refs > 1 && n > 0 {
        let line = def
            .inputs
            .iter()
            .find_map(|i| i.source.as_ref().map(|s| s.1))
            .unwrap_or(def.line);
        warnings.push(Diagnostic::at(
            origin,
            line,
            format!(
                "stage `{}`: each task gets file t x {n_blocks} of every referenced source, as the original tool does (so task 0 reads `{}` for each of its {refs} referenced inputs)",
                def.name,
                inputs[0].first().map_or("", |f| f.name.as_str())
            ),
        ));
    }
    if let Some((mapping, line)) = &def.mapping {
        match mapping {
            Mapping::Combination { from, m } => {
                let flist = files_of(from, *line, "Input_Task_Mapping")?;
                if *m > flist.len() {
                    return Err(err(
                        *line,
                        format!("`combination {from} {m}`: cannot choose {m} of the {} files of `{from}`", flist.len()),
                    ));
                }
                let combos = first_combinations(flist.len(), *m, n);
                for (t, list) in inputs.iter_mut().enumerate() {
                    *list = combos[t % combos.len()]
                        .iter()
                        .map(|&i| flist[i].clone())
                        .collect();
                }
            }
            Mapping::External { script } => {
                let mut known: HashMap<&str, &GenFile> = HashMap::new();
                for s in done {
                    for t in &s.tasks {
                        for f in t.inputs.iter().chain(&t.outputs) {
                            known.insert(f.name.as_str(), f);
                        }
                    }
                }
                let lines = run_script(script, base_dir).map_err(|m| err(*line, m))?;
                let mut mapped = Vec::with_capacity(n);
                for t in 0..n {
                    let Some(l) = lines.get(t) else {
                        return Err(err(
                            *line,
                            format!("mapping script `{script}` printed {} line(s) for the {n} tasks of `{}`", lines.len(), def.name),
                        ));
                    };
                    let mut list = Vec::new();
                    for name in l.split_whitespace() {
                        let f = known.get(name).ok_or_else(|| {
                            err(
                                *line,
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
                inputs = mapped;
            }
        }
    }
    let mut tasks = Vec::with_capacity(n);
    for (t, ins) in inputs.into_iter().enumerate() {
        let (spec, line) = &def.length;
        let length = draw(spec, rng, |src| match src {
            PolySrc::Input(k) => ins.get(k - 1).map(|f| f.size.num).ok_or_else(|| {
                format!(
                    "`Task_Length` depends on `Input_{k}` but task {t} of `{}` has {} input(s)",
                    def.name,
                    ins.len()
                )
            }),
            PolySrc::Length => Err("`Task_Length` cannot depend on itself".into()),
        })
        .map_err(|m| err(*line, m))?;
        let mut outs = Vec::with_capacity(def.outputs.len());
        for (o, (spec, line)) in def.outputs.iter().enumerate() {
            let size = draw(spec, rng, |src| match src {
                PolySrc::Input(k) => ins.get(k - 1).map(|f| f.size.num).ok_or_else(|| {
                    format!("`Output_{}.Size` depends on `Input_{k}` but task {t} of `{}` has {} input(s)", o + 1, def.name, ins.len())
                }),
                PolySrc::Length => Ok(length.num),
            })
            .map_err(|m| err(*line, m))?;
            outs.push(GenFile {
                name: format!("{}_Output_{o}_{}", def.name, t + 1),
                size,
                created: false,
            });
        }
        tasks.push(GenTask {
            id: format!("{}_{t}", def.name),
            length,
            inputs: ins,
            outputs: outs,
        });
    }
    Ok(GenStage {
        def: def.clone(),
        tasks,
        setup_files,
    })
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
