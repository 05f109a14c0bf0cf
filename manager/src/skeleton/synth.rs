//! `emanager-synth`: the synthetic task every skeleton task runs. It reads its input files,
//! computes for the task length (busy CPU, or sleep), then writes its output files with the
//! given sizes. Outputs appear atomically (written aside, then renamed), so a dependent
//! task never reads half a file.

use anyhow::{bail, Context};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Command line of `emanager-synth`.
#[derive(clap::Parser, Clone, Debug)]
#[command(
    name = "emanager-synth",
    about = "Synthetic skeleton task: read inputs, compute, write outputs"
)]
pub struct SynthArgs {
    /// Seconds to compute.
    #[arg(long, default_value_t = 0.0)]
    pub length: f64,
    /// Compute this many floating-point additions instead of a time.
    #[arg(long)]
    pub flops: Option<f64>,
    /// Sleep instead of keeping a core busy.
    #[arg(long)]
    pub sleep: bool,
    /// Multiply the length (or flop count) by F.
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    /// An input file that must exist; read completely.
    #[arg(long = "in", value_name = "PATH")]
    pub inputs: Vec<PathBuf>,
    /// A pre-existing input: created with SIZE zero bytes unless it already has that size.
    #[arg(long = "make-in", value_name = "PATH:SIZE")]
    pub make_inputs: Vec<String>,
    /// An output file written with SIZE bytes.
    #[arg(long = "out", value_name = "PATH:SIZE")]
    pub outputs: Vec<String>,
    #[arg(long, default_value_t = 65536)]
    pub read_buffer: usize,
    #[arg(long, default_value_t = 65536)]
    pub write_buffer: usize,
}

/// What one run did, for tests and logs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SynthReport {
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub seconds: f64,
}

/// `PATH:SIZE` (the last `:` separates, so paths may contain colons).
pub fn parse_sized(s: &str) -> anyhow::Result<(String, u64)> {
    let (p, n) = s
        .rsplit_once(':')
        .with_context(|| format!("`{s}`: expected PATH:SIZE"))?;
    let n: u64 = n
        .parse()
        .with_context(|| format!("`{s}`: SIZE must be a number of bytes"))?;
    if p.is_empty() {
        bail!("`{s}`: empty path");
    }
    Ok((p.to_string(), n))
}

/// Relative paths resolve against `$EMANAGER_WORKDIR` when set.
fn resolve(p: &str) -> PathBuf {
    let path = PathBuf::from(p);
    match std::env::var_os("EMANAGER_WORKDIR") {
        Some(dir) if path.is_relative() => PathBuf::from(dir).join(path),
        _ => path,
    }
}

/// MPI rank from the usual launcher variables; only rank 0 does I/O.
fn mpi_rank() -> u64 {
    [
        "OMPI_COMM_WORLD_RANK",
        "PMI_RANK",
        "PMIX_RANK",
        "MV2_COMM_WORLD_RANK",
        "SLURM_PROCID",
    ]
    .iter()
    .find_map(|v| std::env::var(v).ok()?.parse().ok())
    .unwrap_or(0)
}

fn read_all(path: &Path, buf: &mut [u8]) -> anyhow::Result<u64> {
    let mut f = std::fs::File::open(path)
        .with_context(|| format!("cannot open input {}", path.display()))?;
    let mut total = 0u64;
    loop {
        let n = f
            .read(buf)
            .with_context(|| format!("cannot read input {}", path.display()))?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}

fn write_file(path: &Path, size: u64, buf_size: usize) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("out"),
        std::process::id()
    ));
    let mut f = std::io::BufWriter::new(
        std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?,
    );
    let chunk = vec![0u8; buf_size.max(1)];
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n])
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        left -= n as u64;
    }
    f.into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
}

/// Keeps one core busy for `d`.
fn busy_for(d: Duration) {
    let start = Instant::now();
    let mut x = 0.0f64;
    while start.elapsed() < d {
        for _ in 0..10_000 {
            x = std::hint::black_box(x + 1.0);
        }
    }
    std::hint::black_box(x);
}

/// `n` floating-point additions.
fn flops(n: f64) {
    let mut x = 0.0f64;
    let mut i = 0.0;
    while i < n {
        x = std::hint::black_box(x + 1.0);
        i += 1.0;
    }
    std::hint::black_box(x);
}

/// Runs the synthetic task.
pub fn run(args: &SynthArgs) -> anyhow::Result<SynthReport> {
    if !(args.time_scale.is_finite() && args.time_scale >= 0.0) {
        bail!("--time-scale must be a number >= 0");
    }
    if !(args.length.is_finite() && args.length >= 0.0) {
        bail!("--length must be a number of seconds >= 0");
    }
    let makes = args
        .make_inputs
        .iter()
        .map(|s| parse_sized(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let outs = args
        .outputs
        .iter()
        .map(|s| parse_sized(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let io = mpi_rank() == 0;
    let start = Instant::now();
    let mut report = SynthReport::default();
    let mut buf = vec![0u8; args.read_buffer.max(1)];
    if io {
        for (p, size) in &makes {
            let path = resolve(p);
            let ok = std::fs::metadata(&path)
                .map(|m| m.len() == *size)
                .unwrap_or(false);
            if !ok {
                write_file(&path, *size, args.write_buffer)?;
            }
            report.bytes_read += read_all(&path, &mut buf)?;
        }
        for p in &args.inputs {
            report.bytes_read += read_all(&resolve(&p.to_string_lossy()), &mut buf)?;
        }
    }
    match args.flops {
        Some(n) => flops(n * args.time_scale),
        None => {
            let d = Duration::try_from_secs_f64(args.length * args.time_scale)
                .context("--length x --time-scale is too large")?;
            if args.sleep {
                std::thread::sleep(d);
            } else {
                busy_for(d);
            }
        }
    }
    if io {
        for (p, size) in &outs {
            write_file(&resolve(p), *size, args.write_buffer)?;
            report.bytes_written += size;
        }
    }
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}
