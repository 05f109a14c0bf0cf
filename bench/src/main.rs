//! EManager benchmarks: task throughput (distributed and embedded), makespan of a
//! sleep workload, and start-up latency. Run in release:
//!
//!   cargo run --release -p emanager-bench -- throughput --mode distributed
//!   cargo run --release -p emanager-bench -- throughput --mode embedded
//!   cargo run --release -p emanager-bench -- makespan
//!   cargo run --release -p emanager-bench -- startup
//!
//! Machines here are shared and noisy: report figures next to the machine's spawn ceiling
//! measured in the same minute.

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use emanager::campaign::{self, CampaignOptions, PilotRequest};
use emanager::driver::{self, RunContext};
use emanager::pilots::{find_agent_bin, Launcher};
use emanager::progress::{Progress, ProgressMode};
use emanager::workflow::{self, Format};
use emanager_shared::broker::{AmqpBroker, Broker, MemoryBroker};
use emanager_shared::store::{MemoryStore, RedisStore, StateStore};
use emanager_shared::CampaignId;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(version, about = "EManager benchmarks (run with --release)")]
struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Mode {
    Distributed,
    Embedded,
}

#[derive(Subcommand)]
enum What {
    /// N x /bin/true (1 core each) on one pilot: tasks/s from first binding to last DONE.
    Throughput {
        #[arg(long, value_enum, default_value = "distributed")]
        mode: Mode,
        #[arg(long, default_value_t = 2000)]
        tasks: u32,
        #[arg(long, default_value_t = 2)]
        cores: u32,
        #[arg(long, default_value_t = 3)]
        repeat: u32,
    },
    /// Start-up to first task: `emanager run` (the binary beside this one, embedded mode) of a
    /// one-task workflow, from spawning the process to the task's first action (the task prints
    /// its own clock, `date +%s.%N`). Median and worst of N runs.
    Startup {
        #[arg(long, default_value_t = 10)]
        runs: u32,
    },
    /// 200 x `sleep 1` on one pilot declaring 32 cores (ideal makespan 7 s).
    Makespan {
        #[arg(long, value_enum, default_value = "embedded")]
        mode: Mode,
        #[arg(long, default_value_t = 200)]
        tasks: u32,
        #[arg(long, default_value_t = 32)]
        cores: u32,
    },
}

fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

struct Run {
    tasks_per_s: f64,
    makespan_s: f64,
    first_task_s: f64,
    manager_rss_mb: f64,
    agent_rss_mb: f64,
}

async fn one_run(mode: Mode, toml: &str, cores: u32) -> anyhow::Result<Run> {
    let (broker, store, launcher): (Arc<dyn Broker>, Arc<dyn StateStore>, Launcher) = match mode {
        Mode::Embedded => {
            let b: Arc<dyn Broker> = Arc::new(MemoryBroker::new());
            let s: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
            (
                b.clone(),
                s.clone(),
                Launcher::InProcess {
                    broker: b,
                    store: s,
                },
            )
        }
        Mode::Distributed => {
            let amqp = std::env::var("EMANAGER_AMQP_URL")
                .unwrap_or_else(|_| emanager_shared::DEFAULT_AMQP_URL.into());
            let redis = std::env::var("EMANAGER_REDIS_URL")
                .unwrap_or_else(|_| emanager_shared::DEFAULT_REDIS_URL.into());
            let b: Arc<dyn Broker> = Arc::new(AmqpBroker::connect(&amqp).await?);
            let s: Arc<dyn StateStore> = Arc::new(RedisStore::connect(&redis).await?);
            let agent_bin = find_agent_bin();
            anyhow::ensure!(
                agent_bin.is_file(),
                "build the agent first: cargo build --release -p pilot-agent"
            );
            (
                b,
                s,
                Launcher::LocalProcess {
                    agent_bin,
                    amqp_url: amqp,
                    redis_url: redis,
                },
            )
        }
    };
    let wf =
        workflow::parse_str(toml, Format::Toml, "bench").map_err(|e| anyhow::anyhow!("{e}"))?;
    let workdir = tempfile_dir()?;
    let opts = CampaignOptions {
        pilots: vec![PilotRequest::local(cores)],
        lookahead_s: 2.0,
        heartbeat_ms: 1000,
        workdir: workdir.clone(),
        max_pilot_replacements: 0,
        pilot_start_timeout_s: 60,
        ..CampaignOptions::default()
    };
    let id = CampaignId::random();
    campaign::create(store.as_ref(), id, &wf, toml, Format::Toml, &opts).await?;
    // Sample the agent's peak RSS while it lives.
    let agent_peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (store, peak) = (store.clone(), agent_peak.clone());
        tokio::spawn(async move {
            loop {
                for v in store.pilots(&id).await.unwrap_or_default() {
                    if v.record.agent_pid > 0 && v.record.agent_pid != std::process::id() {
                        if let Some(kb) = vm_hwm_kb(v.record.agent_pid) {
                            peak.fetch_max(kb, Ordering::Relaxed);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let out = driver::drive(RunContext {
        campaign: id,
        store: store.clone(),
        broker: broker.clone(),
        launcher,
        workflow: wf,
        opts,
        progress: Progress::new(ProgressMode::Quiet, 0),
        interrupt: None,
    })
    .await?;
    sampler.abort();
    anyhow::ensure!(
        out.counts.done == out.counts.total,
        "not every task is DONE: {:?}",
        out.counts
    );
    let recs = store.task_records(&id).await?;
    let first = recs.iter().map(|(_, r)| r.ts).min().unwrap_or(0);
    let last = recs.iter().map(|(_, r)| r.t1).max().unwrap_or(0);
    let makespan = (last.saturating_sub(first)) as f64 / 1000.0;
    store.delete_campaign(&id).await?;
    broker.delete_campaign(&id).await?;
    let _ = std::fs::remove_dir_all(&workdir);
    Ok(Run {
        tasks_per_s: recs.len() as f64 / makespan.max(1e-6),
        makespan_s: makespan,
        first_task_s: out
            .first_task_after
            .map(|d| d.as_secs_f64())
            .unwrap_or(f64::NAN),
        manager_rss_mb: vm_hwm_kb(std::process::id()).unwrap_or(0) as f64 / 1024.0,
        agent_rss_mb: agent_peak.load(Ordering::Relaxed) as f64 / 1024.0,
    })
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir =
        std::env::temp_dir().join(format!("emanager-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).context("create bench workdir")?;
    Ok(dir)
}

fn report(label: &str, r: &Run) {
    println!(
        "{label}: {:.0} tasks/s, makespan {:.2} s, first task after {:.3} s, manager peak RSS {:.1} MiB, agent peak RSS {}",
        r.tasks_per_s,
        r.makespan_s,
        r.first_task_s,
        r.manager_rss_mb,
        if r.agent_rss_mb > 0.0 { format!("{:.1} MiB", r.agent_rss_mb) } else { "(in process)".into() }
    );
}

/// Seconds from spawning `emanager run` to its one task's first action: the task prints the
/// time (`date +%s.%N`, nanoseconds; file times have only the kernel's coarse clock), so the
/// figure includes starting `date` itself and is an upper bound.
fn startup_once(bin: &std::path::Path) -> anyhow::Result<f64> {
    let dir = tempfile_dir()?;
    std::fs::write(
        dir.join("wf.toml"),
        "name = \"startup\"\n[[tasks]]\nname = \"first\"\ncommand = [\"/bin/date\", \"+%s.%N\"]\n",
    )?;
    let spawned = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs_f64();
    let status = std::process::Command::new(bin)
        .args([
            "run",
            "--quiet",
            "--embedded",
            "--pilots",
            "1",
            "--cores-per-pilot",
            "1",
        ])
        .arg(dir.join("wf.toml"))
        .env("EMANAGER_WORKDIR", &dir)
        .env_remove("EMANAGER_CONFIG")
        .current_dir(&dir)
        .status()?;
    anyhow::ensure!(status.success(), "emanager run failed: {status}");
    // <workdir>/<campaign>/first.1/stdout
    let out = std::fs::read_dir(&dir)?
        .flatten()
        .map(|e| e.path().join("first.1").join("stdout"))
        .find(|p| p.is_file())
        .context("the task's stdout")?;
    let started: f64 = std::fs::read_to_string(&out)?.trim().parse()?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(started - spawned)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Args::parse().what {
        What::Throughput {
            mode,
            tasks,
            cores,
            repeat,
        } => {
            let toml = format!("name = \"true\"\n[[tasks]]\nname = \"t-{{index}}\"\ncount = {tasks}\ncommand = [\"/bin/true\"]\n");
            let label = if mode == Mode::Embedded {
                "embedded"
            } else {
                "distributed"
            };
            let mut best = 0.0f64;
            for i in 0..repeat {
                let r = one_run(mode, &toml, cores).await?;
                report(
                    &format!(
                        "{label} {tasks} x /bin/true on {cores} cores, run {}",
                        i + 1
                    ),
                    &r,
                );
                best = best.max(r.tasks_per_s);
            }
            println!("{label}: best {best:.0} tasks/s");
        }
        What::Startup { runs } => {
            let bin = std::env::current_exe()?
                .parent()
                .map(|d| d.join("emanager"))
                .context("no folder beside this binary")?;
            anyhow::ensure!(
                bin.is_file(),
                "{} is missing: cargo build --release --bins",
                bin.display()
            );
            let mut seen = Vec::new();
            for _ in 0..runs {
                seen.push(startup_once(&bin)?);
            }
            seen.sort_by(|a, b| a.total_cmp(b));
            println!(
                "start-up to first task (process spawn to the task's first action, embedded): median {:.3} s, worst {:.3} s over {runs} runs",
                seen[seen.len() / 2],
                seen[seen.len() - 1]
            );
        }
        What::Makespan { mode, tasks, cores } => {
            let toml = format!("name = \"sleep\"\n[[tasks]]\nname = \"s-{{index}}\"\ncount = {tasks}\ncommand = [\"/bin/sleep\", \"1\"]\nest_duration_s = 1.0\n");
            let r = one_run(mode, &toml, cores).await?;
            let ideal = (tasks as f64 / cores as f64).ceil();
            report(
                &format!("{tasks} x sleep 1 on {cores} declared cores (ideal {ideal:.0} s)"),
                &r,
            );
        }
    }
    Ok(())
}
