//! `emanager-synth`: the synthetic task every skeleton task runs. It reads its input files,
//! computes for the task length (busy CPU, or sleep), then writes its output files with the
//! given sizes; `--interleave` mixes the three as the original tool's `Interleave_Option`
//! does (`interleave::schedule`). Outputs appear atomically (written aside, then renamed),
//! so a dependent task never reads half a file.

use super::interleave::{schedule, Step};
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
    /// The original tool's `Interleave_Option`: 0 read, compute, write; 1 compute a share
    /// after each read; 2 compute a share before each write; 3 both.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=3))]
    pub interleave: u32,
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

/// `path` with `size` zero bytes, written in `buf_size` chunks (a pre-existing input).
fn write_file(path: &Path, size: u64, buf_size: usize) -> anyhow::Result<()> {
    let mut out = Output::create(path)?;
    let mut left = size;
    while left > 0 {
        let n = left.min(buf_size.max(1) as u64);
        out.write(n)?;
        left -= n;
    }
    out.finish()
}

/// An output being written: a temporary file beside it, renamed when complete.
struct Output {
    path: PathBuf,
    tmp: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
}

impl Output {
    fn create(path: &Path) -> anyhow::Result<Output> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let tmp = path.with_file_name(format!(
            ".{}.tmp-{}",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("out"),
            std::process::id()
        ));
        let file = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        Ok(Output {
            path: path.to_path_buf(),
            tmp,
            file: std::io::BufWriter::new(file),
        })
    }

    /// One write of `bytes` zero bytes.
    fn write(&mut self, bytes: u64) -> anyhow::Result<()> {
        static ZEROS: [u8; 65536] = [0; 65536];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(ZEROS.len() as u64) as usize;
            self.file
                .write_all(&ZEROS[..n])
                .with_context(|| format!("cannot write {}", self.tmp.display()))?;
            left -= n as u64;
        }
        Ok(())
    }

    fn finish(self) -> anyhow::Result<()> {
        self.file
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_all())
            .with_context(|| format!("cannot write {}", self.tmp.display()))?;
        std::fs::rename(&self.tmp, &self.path).with_context(|| {
            format!(
                "cannot rename {} to {}",
                self.tmp.display(),
                self.path.display()
            )
        })
    }
}

/// An input being read, one `read_buffer` at a time.
struct Input {
    path: PathBuf,
    file: Option<std::fs::File>,
}

impl Input {
    /// Reads `bytes` (one step of the schedule).
    fn read(&mut self, bytes: u64, buf: &mut [u8]) -> anyhow::Result<u64> {
        let what = || format!("cannot read input {}", self.path.display());
        if self.file.is_none() {
            let f = std::fs::File::open(&self.path)
                .with_context(|| format!("cannot open input {}", self.path.display()))?;
            self.file = Some(f);
        }
        let f = self.file.as_mut().expect("opened above");
        let n = (bytes as usize).min(buf.len());
        f.read_exact(&mut buf[..n]).with_context(what)?;
        Ok(n as u64)
    }
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

/// Computes `share` of the task's work.
fn compute(args: &SynthArgs, share: f64) -> anyhow::Result<()> {
    match args.flops {
        Some(n) => flops(n * args.time_scale * share),
        None => {
            let d = Duration::try_from_secs_f64(args.length * args.time_scale * share)
                .context("--length x --time-scale is too large")?;
            if args.sleep {
                std::thread::sleep(d);
            } else {
                busy_for(d);
            }
        }
    }
    Ok(())
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
    let start = Instant::now();
    let mut report = SynthReport::default();
    if mpi_rank() != 0 {
        // Under MPI only rank 0 does file I/O; every rank computes.
        compute(args, 1.0)?;
        report.seconds = start.elapsed().as_secs_f64();
        return Ok(report);
    }
    // Pre-existing inputs are made first; then every input is read as the schedule says.
    let mut inputs = Vec::with_capacity(makes.len() + args.inputs.len());
    for (p, size) in &makes {
        let path = resolve(p);
        let ok = std::fs::metadata(&path)
            .map(|m| m.len() == *size)
            .unwrap_or(false);
        if !ok {
            write_file(&path, *size, args.write_buffer)?;
        }
        inputs.push(path);
    }
    inputs.extend(args.inputs.iter().map(|p| resolve(&p.to_string_lossy())));
    let sizes = inputs
        .iter()
        .map(|p| {
            std::fs::metadata(p)
                .map(|m| m.len())
                .with_context(|| format!("cannot open input {}", p.display()))
        })
        .collect::<anyhow::Result<Vec<u64>>>()?;
    let out_sizes: Vec<u64> = outs.iter().map(|(_, s)| *s).collect();
    let steps = schedule(
        args.interleave,
        &sizes,
        args.read_buffer as u64,
        &out_sizes,
        args.write_buffer as u64,
    );
    let mut inputs: Vec<Input> = inputs
        .into_iter()
        .map(|path| Input { path, file: None })
        .collect();
    // Every output is created at once (task.c opens them before writing, too).
    let mut outputs = outs
        .iter()
        .map(|(p, _)| Output::create(&resolve(p)))
        .collect::<anyhow::Result<Vec<Output>>>()?;
    let mut buf = vec![0u8; args.read_buffer.max(1)];
    for step in steps {
        match step {
            Step::Read { input, bytes } => {
                report.bytes_read += inputs[input].read(bytes, &mut buf)?;
            }
            Step::Compute(share) => compute(args, share)?,
            Step::Write { output, bytes } => {
                outputs[output].write(bytes)?;
                report.bytes_written += bytes;
            }
        }
    }
    for out in outputs {
        out.finish()?;
    }
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}
