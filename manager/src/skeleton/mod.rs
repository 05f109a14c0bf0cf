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
mod cli;
pub mod diag;
pub mod dist;
pub mod interleave;
pub mod native;
pub mod plan;
pub mod synth;
pub mod writer;

use crate::workflow::Workflow;
use anyhow::Context;
use build::{BuildOptions, Built};
pub use cli::{run, summary, SkeletonArgs, Summary};
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
                line: native::locate(text, &m),
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
