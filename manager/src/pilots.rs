//! Starting pilots: in this process (embedded mode), as local `pilot-agent` processes, and
//! (through the resource access layer) as batch jobs.

use crate::campaign::{CampaignOptions, PilotRequest};
use anyhow::Context;
use emanager_shared::access::{
    job_service_for, AccessError, JobDescription, JobId, JobService, JobState,
};
use emanager_shared::broker::Broker;
use emanager_shared::catalog::{AccessKind, Catalog, ResourceEntry};
use emanager_shared::store::StateStore;
use emanager_shared::{CampaignId, PilotId};
use pilot_agent::scheduler::NodeSpec;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod batch;

pub use batch::{pilot_job, AgentTarget, PilotJob, Sites};

/// How often the manager asks a batch system about a pilot job that has not registered.
const JOB_POLL: Duration = Duration::from_secs(3);

/// Where a launched pilot runs, so the manager can notice it died before registering.
pub enum LaunchedPilot {
    InProcess(tokio::task::JoinHandle<anyhow::Result<pilot_agent::AgentSummary>>),
    Process(tokio::process::Child),
    /// A pilot job being submitted (`sbatch` over SSH may take seconds: the manager does
    /// not wait for it).
    Submitting(Submission),
    /// A pilot job in a batch system.
    Batch(BatchJob),
    /// Nothing runs any more (its submission failed), with why.
    Ended(String),
}

/// A submission in flight.
pub struct Submission {
    handle: tokio::task::JoinHandle<Result<BatchJob, AccessError>>,
    resource: String,
}

/// A submitted pilot job and what the batch system last said of it.
pub struct BatchJob {
    pub service: Arc<dyn JobService>,
    pub job: JobId,
    pub resource: String,
    pub state: JobState,
    /// When the batch system first reported it running.
    pub started: Option<Instant>,
    last_poll: Option<Instant>,
    /// Stdout of the job script, when the batch system writes it where we can read it.
    pub output: Option<String>,
}

/// Where a launched pilot is, as far as the manager can tell without its agent.
#[derive(Clone, Debug, PartialEq)]
pub enum LaunchState {
    /// Starting (a process, or a job the batch system has not reported on yet).
    Starting,
    /// Waiting in a batch queue.
    Queued,
    /// Running since this instant (its agent should register soon).
    Running(Instant),
    /// Its job was just submitted with this id (reported once, to be recorded).
    Submitted(String),
    /// The batch system refused its job, with the scheduler's message: asking again would
    /// be refused again.
    Refused(String),
    /// Gone before its agent registered, with why.
    Gone(String),
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
    /// What a batch pilot job needs to reach this campaign; `None` in embedded mode, whose
    /// services live in this process.
    pub fn agent_target(&self) -> Option<AgentTarget<'_>> {
        match self {
            Launcher::InProcess { .. } => None,
            Launcher::LocalProcess {
                agent_bin,
                amqp_url,
                redis_url,
            } => Some(AgentTarget {
                agent_bin,
                amqp_url,
                redis_url,
            }),
        }
    }

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
                if opts.agent_log_json {
                    cmd.arg("--log-format").arg("json");
                }
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
    /// Where the pilot is; a batch system is asked at most every few seconds.
    pub async fn poll(&mut self) -> LaunchState {
        match self {
            LaunchedPilot::InProcess(h) => {
                if h.is_finished() {
                    LaunchState::Gone("agent task ended".into())
                } else {
                    LaunchState::Starting
                }
            }
            LaunchedPilot::Process(c) => match c.try_wait() {
                Ok(Some(status)) => LaunchState::Gone(format!("agent process exited ({status})")),
                Ok(None) => LaunchState::Starting,
                Err(e) => LaunchState::Gone(format!("cannot watch the agent process: {e}")),
            },
            LaunchedPilot::Batch(b) => b.poll().await,
            LaunchedPilot::Ended(why) => LaunchState::Gone(why.clone()),
            LaunchedPilot::Submitting(sub) => {
                if !sub.handle.is_finished() {
                    return LaunchState::Starting;
                }
                let resource = sub.resource.clone();
                match (&mut sub.handle).await {
                    Ok(Ok(job)) => {
                        let id = job.job.to_string();
                        *self = LaunchedPilot::Batch(job);
                        LaunchState::Submitted(id)
                    }
                    Ok(Err(e)) => {
                        let why = format!("pilot job refused by {resource}: {e}");
                        *self = LaunchedPilot::Ended(why.clone());
                        LaunchState::Refused(why)
                    }
                    Err(e) => {
                        let why = format!("submission to {resource} failed: {e}");
                        *self = LaunchedPilot::Ended(why.clone());
                        LaunchState::Gone(why)
                    }
                }
            }
        }
    }

    /// Whether the pilot may still hold resources, without asking a batch system.
    pub fn may_be_alive(&mut self) -> bool {
        match self {
            LaunchedPilot::InProcess(h) => !h.is_finished(),
            LaunchedPilot::Process(c) => matches!(c.try_wait(), Ok(None)),
            LaunchedPilot::Submitting(_) => true,
            LaunchedPilot::Batch(b) => !b.state.is_final(),
            LaunchedPilot::Ended(_) => false,
        }
    }

    /// Stops the pilot: kills the agent, or cancels the batch job. A batch system is told in
    /// the background (over SSH to a site that is down, that takes seconds): await the
    /// handle to know it was told.
    pub fn kill(&mut self) -> Option<tokio::task::JoinHandle<()>> {
        match self {
            LaunchedPilot::InProcess(h) => {
                h.abort();
                None
            }
            LaunchedPilot::Process(c) => {
                let _ = c.start_kill();
                None
            }
            LaunchedPilot::Ended(_) => None,
            LaunchedPilot::Submitting(_) => {
                let LaunchedPilot::Submitting(sub) =
                    std::mem::replace(self, LaunchedPilot::Ended("canceled".into()))
                else {
                    unreachable!("matched above")
                };
                // Let the submission finish, then cancel what it made.
                Some(tokio::spawn(async move {
                    if let Ok(Ok(job)) = sub.handle.await {
                        let _ = job.cancel_in_background().await;
                    }
                }))
            }
            LaunchedPilot::Batch(b) => {
                if b.state.is_final() {
                    return None;
                }
                b.state = JobState::Canceled;
                Some(b.cancel_in_background())
            }
        }
    }
}

impl BatchJob {
    fn cancel_in_background(&self) -> tokio::task::JoinHandle<()> {
        let (service, job, resource) = (
            self.service.clone(),
            self.job.clone(),
            self.resource.clone(),
        );
        tokio::spawn(async move {
            if let Err(e) = service.cancel(&job).await {
                tracing::warn!(%job, %resource, error = %e, "cannot cancel the pilot job");
            }
        })
    }

    pub fn new(service: Arc<dyn JobService>, job: JobId, resource: &str) -> BatchJob {
        BatchJob {
            service,
            job,
            resource: resource.to_string(),
            state: JobState::Queued,
            started: None,
            last_poll: None,
            output: None,
        }
    }

    async fn poll(&mut self) -> LaunchState {
        if self.state.is_final() {
            return LaunchState::Gone(format!("batch job {} ended", self.job));
        }
        if self.last_poll.is_none_or(|t| t.elapsed() >= JOB_POLL) {
            self.last_poll = Some(Instant::now());
            match self.service.state(&self.job).await {
                Ok(st) => {
                    if st.state == JobState::Running && self.started.is_none() {
                        self.started = Some(Instant::now());
                    }
                    self.state = st.state;
                    if st.state.is_final() || st.state == JobState::Unknown {
                        let said = st.reason.map(|r| format!(": {r}")).unwrap_or_default();
                        let out = match &self.output {
                            Some(p) => self.service.tail(p, 5).await.map(|t| (p, t)),
                            None => None,
                        };
                        let out = out
                            .filter(|(_, t)| !t.trim().is_empty())
                            .map(|(p, t)| format!("; job output {p}: {}", t.trim()))
                            .unwrap_or_default();
                        if !st.state.is_final() {
                            self.state = JobState::Done; // no record left: it ended
                        }
                        return LaunchState::Gone(format!(
                            "batch job {} on {} is {:?}{said}{out}",
                            self.job, self.resource, st.state
                        ));
                    }
                }
                Err(e) => {
                    tracing::warn!(job = %self.job, resource = %self.resource, error = %e, "cannot ask the batch system about the pilot job");
                }
            }
        }
        match (self.state, self.started) {
            (_, Some(t)) => LaunchState::Running(t),
            (JobState::Queued, None) => LaunchState::Queued,
            _ => LaunchState::Starting,
        }
    }
}

/// `p` from the current directory.
fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
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

/// How long before its walltime a pilot stops taking work: the agent's default of 30 s, but
/// at most a quarter of the allocation, so a short pilot does not drain the moment it starts.
fn drain_margin_s(walltime_s: u64) -> u64 {
    (walltime_s / 4).min(30)
}
