//! Skeletons: synthetic many-task workflows generated from a short description, whose tasks
//! really run (`emanager-synth` reads its inputs, computes, writes its outputs).
//!
//! Two input formats: EManager's own TOML/JSON skeleton ([`native`]) and the original
//! Application Skeleton input format ([`classic`], issue 11), told apart by content. Both
//! expand into a [`plan::Plan`], which [`build`] turns into a [`Workflow`].
//!
//! Wiring: `emanager skeleton` calls [`run`] with [`SkeletonArgs`]; `emanager run` calls
//! [`load_skeleton`] for a skeleton file.

pub mod build;
pub mod classic;
pub mod diag;
pub mod dist;
pub mod native;
pub mod plan;
pub mod synth;
pub mod writer;

use crate::workflow::Workflow;
use anyhow::Context;
use build::{BuildOptions, Built};
pub use diag::Diagnostic;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::path::{Path, PathBuf};

/// Input formats of a skeleton file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    /// EManager skeleton, TOML.
    Toml,
    /// EManager skeleton, JSON.
    Json,
    /// The original Application Skeleton input format (`Num_Stage = ...`).
    #[value(name = "skeleton-input")]
    SkeletonInput,
}

impl InputFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            InputFormat::Toml => "toml",
            InputFormat::Json => "json",
            InputFormat::SkeletonInput => "skeleton-input",
        }
    }
}

/// `emanager skeleton`: generate a workflow from a skeleton file.
#[derive(clap::Args, Clone, Debug)]
pub struct SkeletonArgs {
    /// Skeleton file: an EManager skeleton (TOML/JSON) or an original Application Skeleton input.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Write the generated workflow to this file (`.json`: JSON, otherwise TOML).
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
    /// Input format; detected from the content when not given.
    #[arg(long, value_enum)]
    pub format: Option<InputFormat>,
    /// Seed of the random draws (default: the file's `seed`, else 0).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Tasks sleep instead of keeping a core busy.
    #[arg(long)]
    pub sleep: bool,
    /// Multiply every task length by F (e.g. 0.01 for a quick trial run).
    #[arg(long, value_name = "F", default_value_t = 1.0)]
    pub time_scale: f64,
    /// The `emanager-synth` program tasks run (default: next to this executable).
    #[arg(long, value_name = "PATH")]
    pub synth: Option<PathBuf>,
    /// Where task files live (default: ./emanager-data/<workflow name>; relative paths
    /// resolve against $EMANAGER_WORKDIR if set, else the current directory).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Also print the tasks as the original tool's `task ...` lines (original format only).
    #[arg(long)]
    pub print_shell: bool,
    /// Write no `[[stages]]` / `stage =` (stages are barriers in the workflow language);
    /// tasks are then ordered by their file dependencies alone, the stage kept as a tag.
    #[arg(long)]
    pub no_stage_barriers: bool,
}

impl SkeletonArgs {
    pub fn options(&self) -> SkeletonOptions {
        SkeletonOptions {
            format: self.format,
            sleep: self.sleep,
            time_scale: self.time_scale,
            synth: self.synth.clone(),
            data_dir: self.data_dir.clone(),
        }
    }
}

/// How a skeleton becomes runnable tasks (everything but the file and the seed).
#[derive(Clone, Debug, PartialEq)]
pub struct SkeletonOptions {
    pub format: Option<InputFormat>,
    pub sleep: bool,
    pub time_scale: f64,
    pub synth: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
}

impl Default for SkeletonOptions {
    fn default() -> Self {
        SkeletonOptions {
            format: None,
            sleep: false,
            time_scale: 1.0,
            synth: None,
            data_dir: None,
        }
    }
}

/// A generated skeleton: the workflow with its stages, and what the generator warned about.
#[derive(Clone, Debug)]
pub struct Generated {
    pub built: Built,
    pub warnings: Vec<Diagnostic>,
    pub format: InputFormat,
    /// Original format only: the original tool's `as_shell()` and `getSetup()` lines.
    pub shell: Option<Vec<String>>,
    pub setup: Option<Vec<String>>,
}

/// Picks the format: the override, else `.json`, else the content (`Num_Stage` first).
pub fn detect_format(path: &Path, text: &str, forced: Option<InputFormat>) -> InputFormat {
    if let Some(f) = forced {
        return f;
    }
    if classic::parse::looks_like_skeleton_input(text) {
        return InputFormat::SkeletonInput;
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => InputFormat::Json,
        _ => InputFormat::Toml,
    }
}

fn default_synth() -> PathBuf {
    std::env::current_exe()
        .map(|p| p.with_file_name("emanager-synth"))
        .unwrap_or_else(|_| PathBuf::from("emanager-synth"))
}

/// A workflow name usable as one directory name.
fn safe_dir_name(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.chars().all(|c| c == '.') {
        "skeleton".into()
    } else {
        s
    }
}

/// The line of the stage (or iteration) a native-format message is about: messages start
/// with "stage `NAME`" (an iteration copy `NAME.i` points at `NAME`) or "iteration".
fn locate_native(text: &str, message: &str) -> Option<usize> {
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

/// The absolute data directory: relative paths resolve against `$EMANAGER_WORKDIR` if set,
/// else the current directory.
pub fn data_dir(given: Option<&Path>, workflow: &str) -> PathBuf {
    let dir = given
        .map(Path::to_path_buf)
        .unwrap_or_else(|| Path::new("emanager-data").join(safe_dir_name(workflow)));
    if dir.is_absolute() {
        return dir;
    }
    let base = std::env::var_os("EMANAGER_WORKDIR")
        .map(PathBuf::from)
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_default();
    base.join(dir)
}

/// Generates from text; `origin` names the file in messages, `name` is the default
/// workflow name and `base_dir` where relative mapping scripts are looked up.
pub fn generate_str(
    text: &str,
    origin: &str,
    name: &str,
    base_dir: &Path,
    format: InputFormat,
    seed: Option<u64>,
    opts: &SkeletonOptions,
) -> Result<Generated, Diagnostic> {
    let mut warnings = Vec::new();
    let (plan, shell, setup) = match format {
        InputFormat::SkeletonInput => {
            let mut rng = StdRng::seed_from_u64(seed.unwrap_or(0));
            let stages = classic::expand(text, origin, base_dir, &mut rng, &mut warnings)?;
            let plan = classic::to_plan(name, &stages, origin, &mut warnings);
            (
                plan,
                Some(classic::shell_lines(&stages)),
                Some(classic::setup_lines(&stages)),
            )
        }
        InputFormat::Toml | InputFormat::Json => {
            let doc: native::SkeletonDoc = if format == InputFormat::Json {
                serde_json::from_str(text).map_err(|e| Diagnostic::file(origin, e.to_string()))?
            } else {
                toml::from_str(text)
                    .map_err(|e| Diagnostic::file(origin, e.to_string().trim_end().to_string()))?
            };
            let mut rng = StdRng::seed_from_u64(seed.or(doc.seed).unwrap_or(0));
            let wf_name = doc.name.clone().unwrap_or_else(|| name.to_string());
            let plan = native::expand(&doc, &wf_name, &mut rng).map_err(|m| Diagnostic {
                origin: origin.to_string(),
                line: locate_native(text, &m),
                message: m,
            })?;
            (plan, None, None)
        }
    };
    let build_opts = BuildOptions {
        synth: opts.synth.clone().unwrap_or_else(default_synth),
        data_dir: data_dir(opts.data_dir.as_deref(), &plan.name),
        sleep: opts.sleep,
        time_scale: opts.time_scale,
    };
    let built = build::build(&plan, &build_opts).map_err(|m| Diagnostic::file(origin, m))?;
    Ok(Generated {
        built,
        warnings,
        format,
        shell,
        setup,
    })
}

/// Reads, detects and generates a skeleton file.
pub fn generate(
    path: &Path,
    seed: Option<u64>,
    opts: &SkeletonOptions,
) -> anyhow::Result<Generated> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read skeleton file {}", path.display()))?;
    let format = detect_format(path, &text, opts.format);
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("skeleton")
        .to_string();
    let base = path.parent().unwrap_or(Path::new("."));
    anyhow::ensure!(
        opts.time_scale.is_finite() && opts.time_scale >= 0.0,
        "--time-scale must be a number >= 0"
    );
    Ok(generate_str(
        &text,
        &path.display().to_string(),
        &name,
        base,
        format,
        seed,
        opts,
    )?)
}

/// The workflow of a skeleton file, for `emanager run`. Warnings go to stderr.
pub fn load_skeleton(
    path: &Path,
    seed: Option<u64>,
    opts: &SkeletonOptions,
) -> anyhow::Result<Workflow> {
    let g = generate(path, seed, opts)?;
    for w in &g.warnings {
        eprintln!("warning: {w}");
    }
    Ok(g.built.workflow)
}

/// True when `path` holds a skeleton rather than a workflow: an original-format file, or a
/// TOML/JSON document with `[[stages]]` that declare `tasks = <count>`.
pub fn is_skeleton_file(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    match detect_format(path, &text, None) {
        InputFormat::SkeletonInput => true,
        InputFormat::Toml => toml::from_str::<native::SkeletonDoc>(&text).is_ok(),
        InputFormat::Json => serde_json::from_str::<native::SkeletonDoc>(&text).is_ok(),
    }
}

/// Totals printed by `emanager skeleton`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    pub stages: usize,
    pub tasks: usize,
    pub core_seconds: f64,
    pub bytes_read: u64,
    pub bytes_written: u64,
}

pub fn summary(built: &Built) -> Summary {
    let tasks = &built.workflow.tasks;
    Summary {
        stages: built.stages.len(),
        tasks: tasks.len(),
        core_seconds: tasks
            .iter()
            .map(|t| t.spec.cores as f64 * t.spec.est_duration_s)
            .sum(),
        bytes_read: tasks
            .iter()
            .flat_map(|t| &t.spec.input_files)
            .filter_map(|f| f.size_bytes)
            .sum(),
        bytes_written: tasks
            .iter()
            .flat_map(|t| &t.spec.output_files)
            .filter_map(|f| f.size_bytes)
            .sum(),
    }
}

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `emanager skeleton FILE [--out PATH]`: prints a summary, writes the workflow file.
pub fn run(args: &SkeletonArgs) -> anyhow::Result<()> {
    let g = generate(&args.file, args.seed, &args.options())?;
    for w in &g.warnings {
        eprintln!("warning: {w}");
    }
    let s = summary(&g.built);
    let wf = &g.built.workflow;
    println!(
        "skeleton {} ({}): {} stages, {} tasks",
        wf.name,
        g.format.as_str(),
        s.stages,
        s.tasks
    );
    for st in &g.built.stages {
        let ts = &wf.tasks[st.tasks.clone()];
        let mean = ts.iter().map(|t| t.spec.est_duration_s).sum::<f64>() / ts.len().max(1) as f64;
        let cores = ts.first().map_or(0, |t| t.spec.cores);
        println!(
            "  {:<24} {:>7} tasks  {:>4} cores  mean {:.1} s",
            st.name,
            ts.len(),
            cores,
            mean
        );
    }
    println!(
        "  total {:.0} core-seconds ({:.2} core-hours), reads {}, writes {}",
        s.core_seconds,
        s.core_seconds / 3600.0,
        human_bytes(s.bytes_read),
        human_bytes(s.bytes_written)
    );
    if args.print_shell {
        for l in g.shell.iter().flatten() {
            println!("{l}");
        }
    }
    if let Some(out) = &args.out {
        let stages = if args.no_stage_barriers {
            writer::StageMode::Tags
        } else {
            writer::StageMode::Stages
        };
        let text = writer::render(&g.built, writer::OutFormat::from_path(out), stages)?;
        std::fs::write(out, text).with_context(|| format!("cannot write {}", out.display()))?;
        println!("wrote {}", out.display());
    }
    Ok(())
}
