//! The data a bundle service publishes: per resource and queue what the batch system says,
//! per pilot queue what RabbitMQ says, per pilot what Redis says. Plain serde values, the
//! same in the HTTP API, the Redis snapshot and `--once`.

use serde::{Deserialize, Serialize};

/// One bundle service's view of its site at one moment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The `--site` the service was started with.
    pub site: String,
    /// When the snapshot was taken (ms since epoch).
    pub taken_ms: u64,
    pub resources: Vec<ResourceSnapshot>,
    /// Pilot queues on the broker (`em.<campaign>.pilot.<pilot>`); empty when not probed.
    pub pilot_queues: Vec<PilotQueueDepth>,
    /// Pilot load from the state store; empty when not probed.
    pub pilots: Vec<PilotLoadView>,
    /// Errors of the broker and state-store probes of the last round (resource errors
    /// live on the resource).
    pub errors: Vec<String>,
    /// Milliseconds between the service's rounds (0 in snapshots of older services).
    #[serde(default)]
    pub interval_ms: u64,
    /// Set by readers when the service stopped updating the snapshot: seconds since it last
    /// did. Its resources are then stale, with the reason as their error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_updating_s: Option<u64>,
}

impl Snapshot {
    pub fn resource(&self, name: &str) -> Option<&ResourceSnapshot> {
        self.resources.iter().find(|r| r.name == name)
    }

    /// How old a snapshot may get before its service counts as stopped: three rounds, at
    /// least 60 s.
    pub fn stale_after_ms(&self) -> u64 {
        (self.interval_ms * 3).max(60_000)
    }

    /// At `now_ms`, a snapshot older than [`Snapshot::stale_after_ms`] is from a service
    /// that stopped updating: every resource becomes stale, its error says since when (and
    /// keeps the last probe's error), and `stopped_updating_s` is set. Returns whether it
    /// was.
    pub fn mark_if_service_stopped(&mut self, now_ms: u64) -> bool {
        let age_ms = now_ms.saturating_sub(self.taken_ms);
        if age_ms <= self.stale_after_ms() {
            return false;
        }
        let age_s = age_ms / 1000;
        let why = format!(
            "bundle service of site `{}` stopped updating: last snapshot {age_s} s ago (expected every {} s)",
            self.site,
            self.interval_ms.div_ceil(1000)
        );
        for r in &mut self.resources {
            r.stale = true;
            r.error = Some(match r.error.take() {
                Some(last) => format!("{why}; last probe error: {last}"),
                None => why.clone(),
            });
        }
        self.stopped_updating_s = Some(age_s);
        true
    }
}

/// A catalog resource with the result of its last probe.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceSnapshot {
    pub name: String,
    /// `slurm`, `sge`, `pbs`, `lsf`, `local`.
    pub access: String,
    /// `localhost` or the SSH destination the probe ran on.
    pub host: String,
    pub site: String,
    /// Nodes in the catalog.
    pub catalog_nodes: u32,
    pub cores_per_node: u32,
    pub queues: Vec<QueueSnapshot>,
    /// When the last successful probe ended (ms), 0 when none has.
    pub probed_ms: u64,
    /// How long the last successful probe took.
    pub probe_latency_ms: u64,
    /// True when the last probe failed (the queues are those of the last good probe).
    pub stale: bool,
    /// The last probe's error, verbatim.
    pub error: Option<String>,
}

/// One queue / partition: catalog limits merged with what the batch system reports.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueSnapshot {
    pub name: String,
    pub max_walltime_s: Option<u64>,
    pub max_nodes: Option<u32>,
    pub nodes_total: u32,
    pub nodes_free: u32,
    pub nodes_busy: u32,
    pub nodes_down: u32,
    pub jobs_running: u32,
    pub jobs_queued: u32,
    /// Sizes of the queued jobs (every batch system but `local`); `None` when only counts
    /// are known.
    pub queued_jobs: Option<Vec<JobSize>>,
    /// Sizes of the running jobs, same rule.
    pub running_jobs: Option<Vec<JobSize>>,
    /// Whether the batch system reported this queue (false: catalog-only entry).
    pub reported: bool,
}

impl QueueSnapshot {
    /// Node-seconds of the queued jobs, when their sizes are known.
    pub fn queued_node_s(&self) -> Option<u64> {
        self.queued_jobs
            .as_ref()
            .map(|jobs| jobs.iter().map(JobSize::node_s).sum())
    }
}

/// A job's size: nodes x requested walltime (and time used so far for running jobs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSize {
    /// Whole nodes: as the batch system reports them, else its cores (SGE slots, LSF slots)
    /// over the catalog's cores per node, rounded up.
    pub nodes: u32,
    /// Cores or slots when the batch system tells them, else 0.
    #[serde(default)]
    pub cores: u32,
    /// Requested walltime, else the queue's limit (0: neither known).
    pub walltime_s: u64,
    /// Seconds it has run (0 for queued jobs).
    #[serde(default)]
    pub elapsed_s: u64,
}

impl JobSize {
    pub fn node_s(&self) -> u64 {
        u64::from(self.nodes) * self.walltime_s
    }

    /// Walltime left, at most.
    pub fn remaining_s(&self) -> u64 {
        self.walltime_s.saturating_sub(self.elapsed_s)
    }
}

/// A pilot's RabbitMQ queue.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PilotQueueDepth {
    pub queue: String,
    pub campaign: String,
    pub pilot: String,
    /// Messages ready for delivery.
    pub ready: u64,
    /// Delivered, not yet acknowledged.
    pub unacked: u64,
    pub consumers: u64,
}

/// A pilot's load from its heartbeats.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PilotLoadView {
    pub campaign: String,
    pub pilot: String,
    pub resource: String,
    pub job_id: String,
    pub state: String,
    pub cores: u32,
    pub busy_cores: u32,
    pub tasks_running: u32,
    pub alive: bool,
    pub heartbeat_age_ms: Option<u64>,
    pub registered_ms: u64,
}
