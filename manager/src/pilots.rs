//! Starting pilots: in this process (embedded mode), as local `pilot-agent` processes, and
//! (through the resource access layer) as batch jobs.

use crate::campaign::{CampaignOptions, PilotRequest};
use anyhow::Context;
use emanager_shared::broker::Broker;
use emanager_shared::store::StateStore;
use emanager_shared::{CampaignId, PilotId};
use pilot_agent::scheduler::NodeSpec;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Where a launched pilot runs, so the manager can notice it died before registering.
pub enum LaunchedPilot {
    InProcess(tokio::task::JoinHandle<anyhow::Result<pilot_agent::AgentSummary>>),
    Process(tokio::process::Child),
}

/// How this manager starts pilots.
pub enum Launcher {
    /// Agents run as tasks of this process on the given services (embedded mode).
    InProcess {
        broker: Arc<dyn Broker>,
        store: Arc<dyn StateStore>,
    },
    /// Agents run as `pilot-agent` processes on this host, connected to the real services.
    LocalProcess {
        agent_bin: PathBuf,
        amqp_url: String,
        redis_url: String,
    },
}

impl Launcher {
    /// Where the agent of `pilot` writes its log.
    pub fn log_path(
        &self,
        campaign: &CampaignId,
        pilot: &PilotId,
        opts: &CampaignOptions,
    ) -> String {
        match self {
            Launcher::InProcess { .. } => "(embedded: in the manager's log)".into(),
            Launcher::LocalProcess { .. } => opts
                .workdir
                .join(campaign.to_string())
                .join(format!("pilot-{}.log", pilot.short()))
                .display()
                .to_string(),
        }
    }

    /// Starts the agent of `pilot` for `req`; returns a handle and the agent's log file.
    pub async fn launch(
        &self,
        campaign: &CampaignId,
        pilot: PilotId,
        req: &PilotRequest,
        opts: &CampaignOptions,
    ) -> anyhow::Result<(LaunchedPilot, String)> {
        let log = PathBuf::from(self.log_path(campaign, &pilot, opts));
        match self {
            Launcher::InProcess { broker, store } => {
                let nodes = vec![NodeSpec {
                    name: pilot_agent::discovery::hostname(),
                    cores: req.cores,
                    gpus: req.gpus,
                    mem_mb: if req.mem_mb > 0 {
                        req.mem_mb
                    } else {
                        pilot_agent::discovery::local_mem_mb()
                    },
                }];
                let mut cfg =
                    pilot_agent::AgentConfig::new(*campaign, pilot, nodes, opts.workdir.clone());
                cfg.heartbeat = Duration::from_millis(opts.heartbeat_ms);
                cfg.walltime_end_ms = req.walltime_s.map(|w| emanager_shared::now_ms() + w * 1000);
                if let Some(w) = req.walltime_s {
                    cfg.drain_margin = Duration::from_secs(drain_margin_s(w));
                }
                cfg.log_path = "(embedded: in the manager's log)".into();
                let (b, s) = (broker.clone(), store.clone());
                let handle = tokio::spawn(async move {
                    pilot_agent::run(cfg, b, s, std::future::pending()).await
                });
                Ok((LaunchedPilot::InProcess(handle), String::new()))
            }
            Launcher::LocalProcess {
                agent_bin,
                amqp_url,
                redis_url,
            } => {
                if let Some(dir) = log.parent() {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("cannot create {}", dir.display()))?;
                }
                let mut cmd = tokio::process::Command::new(agent_bin);
                cmd.arg("--campaign")
                    .arg(campaign.to_string())
                    .arg("--pilot")
                    .arg(pilot.to_string())
                    .arg("--cores")
                    .arg(req.cores.to_string())
                    .arg("--amqp-url")
                    .arg(amqp_url)
                    .arg("--redis-url")
                    .arg(redis_url)
                    .arg("--workdir")
                    .arg(&opts.workdir)
                    .arg("--heartbeat-ms")
                    .arg(opts.heartbeat_ms.to_string())
                    .arg("--log-file")
                    .arg(&log)
                    .arg("--idle-timeout-s")
                    .arg("600");
                if req.gpus > 0 {
                    cmd.arg("--gpus").arg(req.gpus.to_string());
                }
                if req.mem_mb > 0 {
                    cmd.arg("--mem-mb").arg(req.mem_mb.to_string());
                }
                if let Some(w) = req.walltime_s {
                    cmd.arg("--walltime-s")
                        .arg(w.to_string())
                        .arg("--drain-margin-s")
                        .arg(drain_margin_s(w).to_string());
                }
                // Own process group: a Ctrl-C of the manager leaves agents running, so the
                // campaign can be resumed.
                cmd.process_group(0)
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .kill_on_drop(false);
                let child = cmd.spawn().with_context(|| {
                    format!(
                        "cannot start the pilot agent {}; build it with `cargo build --release` or set EMANAGER_AGENT_BIN",
                        agent_bin.display()
                    )
                })?;
                Ok((LaunchedPilot::Process(child), log.display().to_string()))
            }
        }
    }
}

impl LaunchedPilot {
    /// `Some(reason)` once the agent is gone.
    pub fn exited(&mut self) -> Option<String> {
        match self {
            LaunchedPilot::InProcess(h) => h.is_finished().then(|| "agent task ended".to_string()),
            LaunchedPilot::Process(c) => match c.try_wait() {
                Ok(Some(status)) => Some(format!("agent process exited ({status})")),
                Ok(None) => None,
                Err(e) => Some(format!("cannot watch the agent process: {e}")),
            },
        }
    }

    pub async fn kill(&mut self) {
        match self {
            LaunchedPilot::InProcess(h) => h.abort(),
            LaunchedPilot::Process(c) => {
                let _ = c.start_kill();
            }
        }
    }
}

/// The `pilot-agent` binary: `$EMANAGER_AGENT_BIN`, next to this executable (or one level
/// up, as for test binaries in `target/debug/deps`), else from `PATH`.
pub fn find_agent_bin() -> PathBuf {
    if let Ok(p) = std::env::var("EMANAGER_AGENT_BIN") {
        return PathBuf::from(p);
    }
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1).take(2) {
            let candidate = dir.join("pilot-agent");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    PathBuf::from("pilot-agent")
}

/// Tail of a log file, for error messages about pilots that died.
pub fn log_tail(path: &Path, lines: usize) -> String {
    std::fs::read_to_string(path)
        .map(|s| {
            let v: Vec<&str> = s.lines().collect();
            v[v.len().saturating_sub(lines)..].join("\n")
        })
        .unwrap_or_default()
}

/// Launch bookkeeping for pilots that have not registered yet.
#[derive(Default)]
pub struct Launched {
    pub handles: HashMap<PilotId, LaunchedPilot>,
}

/// How long before its walltime a pilot stops taking work: the agent's default of 30 s, but
/// at most a quarter of the allocation, so a short pilot does not drain the moment it starts.
fn drain_margin_s(walltime_s: u64) -> u64 {
    (walltime_s / 4).min(30)
}
