//! Resource access: submit, watch and cancel pilot jobs on a machine, and ask it about its
//! queues. This is the role SAGA played for RADICAL-Pilot.
//!
//! One trait, [`JobService`], with an adapter per batch system (`local`, `slurm`, `sge`,
//! `pbs`, `lsf`). Every adapter runs its commands through a [`runner::CommandRunner`]
//! (argv, never a shell with user strings) that is either this host or a login node over a
//! multiplexed SSH connection. Output parsing is pure and lives in each adapter's `parse`
//! functions, tested against captured real outputs in `shared/tests/fixtures/`.
//!
//! [`listing`] parses what the systems say about everyone's hosts and jobs (`queues`,
//! `jobs`), for the bundle service.
//!
//! The manager needs three things: [`crate::catalog::Catalog`] to find a resource,
//! [`job_service_for`] to get its service, and [`JobDescription`] / [`JobStatus`]. A
//! resource's `batch_env` (e.g. `SLURM_CONF` for one of several clusters on one host) goes
//! to every command its runner ([`command_runner_for`]) runs.

pub mod allocation;
mod batch;
mod error;
pub mod hostlist;
pub mod listing;
pub mod local;
pub mod lsf;
pub mod pbs;
pub mod runner;
pub mod sge;
pub mod slurm;
pub mod template;
pub mod timefmt;

pub use error::AccessError;
pub use listing::JobInfo;

use crate::catalog::{AccessKind, ResourceEntry};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// The batch system's own identifier of a submitted job (`"12345"`, `"12345.pbs01"`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct JobId(pub String);

impl JobId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What to run in an allocation: the pilot job. Batch adapters turn it into a job script
/// from their template; the local adapter runs `command` directly.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JobDescription {
    /// Job name shown by the batch system (sanitised by each adapter).
    pub name: String,
    pub nodes: u32,
    pub cores_per_node: u32,
    pub gpus_per_node: u32,
    pub walltime_s: u64,
    /// Queue (SGE, PBS, LSF) or partition (SLURM).
    pub queue: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    /// Advance reservation the job runs in (SLURM `--reservation`, PBS `-q` in place of the
    /// queue, LSF `-U`, SGE `-ar`); the local adapter has none.
    pub reservation: Option<String>,
    /// Site directives added verbatim after the generated ones, without the prefix
    /// (`"--constraint=gpu"` for SLURM, `"-l filesystems=grand:home"` for PBS).
    pub extra_directives: Vec<String>,
    pub environment: BTreeMap<String, String>,
    /// Shell lines from the catalog run before the command (`module load ...`).
    pub pre_commands: Vec<String>,
    pub working_dir: Option<String>,
    /// The agent command (argv) run once inside the allocation.
    pub command: Vec<String>,
    pub stdout: Option<String>,
    pub stderr: Option<String>,
}

impl JobDescription {
    /// The pilot job for `resource`: its queue (or the default one), `nodes` whole nodes
    /// for `walltime_s`, running the resource's agent with `agent_args`, in the queue's or
    /// else the resource's reservation. Checks the queue's limits first so an impossible
    /// request fails here, naming the limit.
    pub fn for_pilot(
        resource: &ResourceEntry,
        queue: Option<&str>,
        nodes: u32,
        walltime_s: u64,
        agent_args: &[String],
    ) -> Result<JobDescription, AccessError> {
        let invalid =
            |m: String| AccessError::InvalidJob(format!("resource `{}`: {m}", resource.name));
        let spec = match queue.or(resource.default_queue.as_deref()) {
            Some(name) => Some(resource.queue(Some(name)).ok_or_else(|| {
                let known: Vec<&str> = resource.queues.iter().map(|q| q.name.as_str()).collect();
                invalid(format!(
                    "unknown queue `{name}`; known: {}",
                    known.join(", ")
                ))
            })?),
            None => None,
        };
        if let Some(q) = spec {
            if nodes > q.max_nodes || nodes < q.min_nodes {
                return Err(invalid(format!(
                    "queue `{}` takes {}..={} nodes, asked for {nodes}",
                    q.name, q.min_nodes, q.max_nodes
                )));
            }
            if walltime_s > q.max_walltime_s {
                return Err(invalid(format!(
                    "queue `{}` allows at most {} s of walltime, asked for {walltime_s} s",
                    q.name, q.max_walltime_s
                )));
            }
        }
        if nodes > resource.nodes {
            return Err(invalid(format!(
                "has {} nodes, asked for {nodes}",
                resource.nodes
            )));
        }
        let mut command = vec![resource.agent.path.clone()];
        command.extend(agent_args.iter().cloned());
        Ok(JobDescription {
            name: format!("emanager-{}", resource.name),
            nodes,
            cores_per_node: resource.cores_per_node,
            gpus_per_node: resource.gpus_per_node,
            walltime_s,
            queue: spec.and_then(|q| q.submit_queue()),
            account: resource.account.clone(),
            qos: spec.and_then(|q| q.qos.clone()),
            reservation: resource.reservation_for(spec).map(str::to_string),
            extra_directives: resource.extra_directives.clone(),
            environment: resource.agent.environment.clone(),
            pre_commands: resource.agent_pre_commands(),
            working_dir: resource.agent.workdir.clone(),
            command,
            stdout: None,
            stderr: None,
        })
    }
}

/// Where a job is in its life, as far as the batch system tells.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobState {
    Queued,
    Running,
    Done,
    Failed,
    Canceled,
    /// The batch system has no (more) record of it, or said something not understood.
    #[default]
    Unknown,
}

impl JobState {
    /// Done, Failed or Canceled: the job will not change again.
    pub fn is_final(self) -> bool {
        matches!(self, JobState::Done | JobState::Failed | JobState::Canceled)
    }
}

/// A job's state with the times and the reason the batch system gives (ms since epoch).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    pub state: JobState,
    pub start_time: Option<u64>,
    pub end_time: Option<u64>,
    /// The scheduler's words: pending reason, exit code, failure.
    pub reason: Option<String>,
}

impl JobStatus {
    pub fn new(state: JobState) -> JobStatus {
        JobStatus {
            state,
            start_time: None,
            end_time: None,
            reason: None,
        }
    }
}

/// One queue / partition as the batch system reports it now.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueInfo {
    pub name: String,
    pub max_walltime_s: Option<u64>,
    pub max_nodes: Option<u32>,
    pub nodes_total: u32,
    pub nodes_free: u32,
    pub nodes_busy: u32,
    pub nodes_down: u32,
    pub jobs_running: u32,
    pub jobs_queued: u32,
}

/// Submit, watch and cancel pilot jobs on one resource; ask it about its queues.
#[async_trait]
pub trait JobService: Send + Sync {
    /// Submits the job; a refusal by the batch system is [`AccessError::Rejected`] with
    /// the scheduler's message verbatim.
    async fn submit(&self, job: &JobDescription) -> Result<JobId, AccessError>;
    async fn state(&self, id: &JobId) -> Result<JobStatus, AccessError>;
    async fn cancel(&self, id: &JobId) -> Result<(), AccessError>;
    async fn queues(&self) -> Result<Vec<QueueInfo>, AccessError>;
    /// Every user's queued and running jobs with their sizes, as far as the batch system
    /// tells them (the bundle service's backlog; see [`listing`]).
    async fn jobs(&self) -> Result<Vec<JobInfo>, AccessError>;
    /// The last `lines` lines of a text file where the jobs run (a job's output), for
    /// messages about a job that failed; `None` when it cannot be read.
    async fn tail(&self, path: &str, lines: usize) -> Option<String>;
}

/// The job service for a catalog entry: its adapter over a local or SSH runner. Nothing
/// connects until the first call. Keep the service for as long as its jobs live: the
/// `local` adapter holds its children, and every adapter remembers the jobs it canceled.
pub fn job_service_for(resource: &ResourceEntry) -> Box<dyn JobService> {
    job_service_with_runner(resource, command_runner_for(resource))
}

/// Where the batch commands of a catalog entry run: on its `ssh` login node or on this
/// host, with its `batch_env` added to every command. The bundle service's probes use it
/// too, so they see the same cluster as the job service.
pub fn command_runner_for(resource: &ResourceEntry) -> Arc<dyn runner::CommandRunner> {
    let env = resource.batch_env.clone();
    match &resource.ssh {
        Some(dest) => Arc::new(runner::SshRunner::new(dest).with_env(env)),
        None => Arc::new(runner::LocalRunner::with_env(env)),
    }
}

/// The job service for a catalog entry over a given runner (share one runner between the
/// service and other commands on the same host; see [`command_runner_for`]).
pub fn job_service_with_runner(
    resource: &ResourceEntry,
    runner: Arc<dyn runner::CommandRunner>,
) -> Box<dyn JobService> {
    let template = resource.template.clone();
    match resource.access {
        AccessKind::Local => Box::new(local::LocalJobService::new()),
        AccessKind::Slurm => Box::new(slurm::SlurmJobService::new(runner, template)),
        AccessKind::Sge => Box::new(sge::SgeJobService::new(runner, template)),
        AccessKind::Pbs => Box::new(pbs::PbsJobService::new(runner, template)),
        AccessKind::Lsf => Box::new(lsf::LsfJobService::new(runner, template)),
    }
}
