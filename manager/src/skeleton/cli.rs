//! `emanager skeleton`: the command line, its summary and the workflow file it writes.

use super::build::Built;
use super::{generate, writer, InputFormat, SkeletonOptions};
use anyhow::Context;
use std::path::PathBuf;

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
