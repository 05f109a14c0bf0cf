//! What a batch system lists about everyone's work: its hosts and all users' jobs with
//! their sizes. [`super::JobService::queues`] counts from these; [`super::JobService::jobs`]
//! returns the jobs for the bundle service's backlog model and for the waits of our own
//! pilots.
//!
//! Parsing is pure, one module per system, tested against captured real outputs in
//! `shared/tests/fixtures/` (see its README for where each came from).

pub mod lsf;
pub mod pbs;
pub mod sge;
pub mod slurm;

use super::JobState;
use serde::{Deserialize, Serialize};

/// One job of any user as the batch system lists it now: where it waits or runs and how big
/// it is. Sizes the system does not tell are 0; the reader fills them from the catalog
/// ([`JobInfo::nodes_on`]) or the queue's limit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobInfo {
    pub id: String,
    pub name: String,
    /// The queues (partitions) it is in or may start in; empty when any queue may take it
    /// (a pending SGE job that named none).
    pub queues: Vec<String>,
    /// `Queued` or `Running` (held jobs count as queued, suspended ones as running).
    pub state: JobState,
    /// Whole nodes, when the system counts them (SLURM, PBS `nodect`, LSF execution hosts);
    /// 0 when it counts only cores.
    pub nodes: u32,
    /// Cores or slots, when the system tells them (SGE slots, PBS `ncpus`, LSF slots); 0
    /// when unknown.
    pub cores: u32,
    /// Requested walltime in seconds; 0 when not known (the queue's limit applies).
    pub walltime_s: u64,
    /// When it was submitted (ms since epoch).
    pub submit_ms: Option<u64>,
    /// When it started (ms); for pending SLURM jobs the expected start.
    pub start_ms: Option<u64>,
}

impl JobInfo {
    /// Whether the job waits in (or may start from) `queue`.
    pub fn in_queue(&self, queue: &str) -> bool {
        self.queues.is_empty() || self.queues.iter().any(|q| q == queue)
    }

    /// Nodes it takes on a machine of `cores_per_node` cores: the nodes the system reports,
    /// else its cores rounded up to whole nodes, else one node.
    pub fn nodes_on(&self, cores_per_node: u32) -> u32 {
        if self.nodes > 0 {
            self.nodes
        } else if self.cores > 0 {
            self.cores.div_ceil(cores_per_node.max(1))
        } else {
            1
        }
    }

    /// Seconds from submission to start, for a running job whose times are known.
    pub fn wait_s(&self) -> Option<u64> {
        match (self.state, self.submit_ms, self.start_ms) {
            (JobState::Running, Some(submit), Some(start)) => {
                Some(start.saturating_sub(submit) / 1000)
            }
            _ => None,
        }
    }
}

/// Node states of one queue, summed over its hosts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeCounts {
    pub total: u32,
    pub free: u32,
    pub busy: u32,
    pub down: u32,
}

impl NodeCounts {
    /// Adds one host: down wins over busy, busy over free.
    pub fn add(&mut self, down: bool, busy: bool) {
        self.total += 1;
        if down {
            self.down += 1;
        } else if busy {
            self.busy += 1;
        } else {
            self.free += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_sized_in_cores_takes_whole_nodes() {
        let job = JobInfo {
            cores: 3,
            ..Default::default()
        };
        assert_eq!(job.nodes_on(2), 2);
        assert_eq!(job.nodes_on(0), 3);
        let unknown = JobInfo::default();
        assert_eq!(unknown.nodes_on(64), 1);
        let counted = JobInfo {
            nodes: 4,
            cores: 8,
            ..Default::default()
        };
        assert_eq!(counted.nodes_on(128), 4);
    }

    #[test]
    fn a_job_that_named_no_queue_may_start_in_any() {
        let any = JobInfo::default();
        assert!(any.in_queue("all.q"));
        let short = JobInfo {
            queues: vec!["short.q".into()],
            ..Default::default()
        };
        assert!(short.in_queue("short.q") && !short.in_queue("all.q"));
    }
}
