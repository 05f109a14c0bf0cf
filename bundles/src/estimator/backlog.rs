//! The backlog model of a probed queue: how long a request waits behind the queued work, and
//! whether it can start sooner by backfilling.
//!
//! Batch schedulers start a lower-priority job early only when it does not delay the job at
//! the head of the queue (EASY backfilling; SLURM's backfill scheduler, PBS, LSF and Grid
//! Engine reservations work alike): the head job is promised the *shadow time*, when enough
//! running jobs have reached their time limit to free its nodes. A request of `n` nodes and
//! walltime `T` can start at a moment `t` before then when `n` nodes are free at `t` and it
//! either ends by the shadow time (`t + T <= shadow`) or fits the nodes the head job leaves
//! spare at the shadow time. Any other request waits behind the head job and the backlog.
//! So a longer walltime never waits less than a shorter one, other things equal.

use super::{Evidence, Quantiles, WaitRequest};
use crate::model::QueueSnapshot;

/// Seconds until a backfill pass starts a job that can backfill (SLURM's default
/// `bf_interval`).
pub const BACKFILL_PASS_S: u64 = 30;

/// A probed queue prepared for many predictions: its queued work, when running jobs free
/// their nodes, and the head job's reservation.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueBacklog {
    usable_nodes: u32,
    free_nodes: u32,
    queued_node_s: u64,
    jobs_queued: u32,
    /// True when the queued jobs' sizes were known; false when guessed from counts.
    sizes_known: bool,
    /// Half the queue's walltime limit: how long a job of unknown length runs.
    typical_walltime_s: u64,
    /// `(t, free)`: at `t` s from now a running job reaches its time limit, and `free`
    /// nodes are free from then on; in time order. `None` when running jobs are unknown.
    frees: Option<Vec<(u64, u32)>>,
    /// The head job's reservation, when a job is queued.
    shadow: Option<Shadow>,
}

/// When the head of the queue is promised its nodes.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Shadow {
    head_nodes: u32,
    /// Seconds from now (half the walltime limit when the running jobs are unknown).
    at_s: u64,
    /// Nodes free at that moment beyond the head job's.
    spare_nodes: u32,
}

impl QueueBacklog {
    /// Prepares the probe `q`. The head of the queue is its first queued job (the batch
    /// systems list pending jobs by priority), or a 1-node job when only counts are known.
    pub fn of(q: &QueueSnapshot) -> QueueBacklog {
        let typical_walltime_s = q.max_walltime_s.unwrap_or(3600) / 2;
        let (queued_node_s, sizes_known) = match q.queued_node_s() {
            Some(ns) => (ns, true),
            None => (u64::from(q.jobs_queued) * typical_walltime_s, false),
        };
        let frees = q.running_jobs.as_ref().map(|running| {
            let mut ends: Vec<(u64, u32)> =
                running.iter().map(|j| (j.remaining_s(), j.nodes)).collect();
            ends.sort_unstable();
            let mut free = q.nodes_free;
            ends.into_iter()
                .map(|(t, n)| {
                    free = free.saturating_add(n);
                    (t, free)
                })
                .collect()
        });
        let head_nodes = match &q.queued_jobs {
            Some(jobs) => jobs.first().map(|j| j.nodes.max(1)),
            None => (q.jobs_queued > 0).then_some(1),
        };
        let mut backlog = QueueBacklog {
            usable_nodes: q.nodes_total.saturating_sub(q.nodes_down).max(1),
            free_nodes: q.nodes_free,
            queued_node_s,
            jobs_queued: q.jobs_queued,
            sizes_known,
            typical_walltime_s,
            frees,
            shadow: None,
        };
        backlog.shadow = head_nodes.map(|head_nodes| match backlog.free_at(head_nodes) {
            Some((at_s, free)) => Shadow {
                head_nodes,
                at_s,
                spare_nodes: free - head_nodes,
            },
            None => Shadow {
                head_nodes,
                at_s: typical_walltime_s,
                spare_nodes: 0,
            },
        });
        backlog
    }

    /// The first moment `nodes` nodes are free, and how many are free then; `None` when the
    /// running jobs are unknown or never free that many.
    fn free_at(&self, nodes: u32) -> Option<(u64, u32)> {
        if self.free_nodes >= nodes {
            return Some((0, self.free_nodes));
        }
        self.frees
            .as_ref()?
            .iter()
            .find(|(_, f)| *f >= nodes)
            .copied()
    }

    /// When `req` can start by backfilling, if it can: a moment before the head job's
    /// reservation when enough nodes are free, and it ends by the reservation or fits the
    /// nodes the head job leaves spare. (At the reservation itself the queued jobs start in
    /// their order, so that is no backfill.)
    fn backfill_start(&self, req: WaitRequest) -> Option<u64> {
        let shadow = self.shadow?;
        let fits = |t: u64, free: u32| {
            free >= req.nodes
                && (t.saturating_add(req.walltime_s) <= shadow.at_s
                    || req.nodes <= shadow.spare_nodes)
        };
        std::iter::once((0, self.free_nodes))
            .chain(self.frees.iter().flatten().copied())
            .take_while(|&(t, _)| t < shadow.at_s)
            .find(|&(t, free)| fits(t, free))
            .map(|(t, _)| t)
    }

    /// The wait of `req`, with the evidence used. Nothing queued and room in the free nodes:
    /// at once. A request that can backfill: its start plus one backfill pass. Else the
    /// queued node-seconds drained by the usable nodes, plus the time until enough running
    /// jobs end when it does not fit the free nodes, and never before the head job starts.
    /// p10 = p50 / 4 (jobs end before their limit), p90 = 2 p50 + 60 s.
    pub(super) fn wait(&self, req: WaitRequest, evidence: &mut Vec<Evidence>) -> Quantiles {
        if self.queued_node_s == 0 && self.jobs_queued == 0 && req.nodes <= self.free_nodes {
            evidence.push(Evidence::FitsFreeNodes {
                free_nodes: self.free_nodes,
            });
            return Quantiles([0.0, 0.0, 5.0]);
        }
        evidence.push(Evidence::Backlog {
            queued_node_hours: (self.queued_node_s as f64 / 3600.0 * 100.0).round() / 100.0,
            usable_nodes: self.usable_nodes,
            free_nodes: self.free_nodes,
            sizes_known: self.sizes_known,
            shadow_s: self.shadow.map(|s| s.at_s),
        });
        let p50 = match (self.backfill_start(req), self.shadow) {
            (Some(start_s), Some(shadow)) => {
                evidence.push(Evidence::Backfill {
                    start_s,
                    shadow_s: shadow.at_s,
                    head_nodes: shadow.head_nodes,
                });
                (start_s + BACKFILL_PASS_S) as f64
            }
            _ => {
                let drain = self.queued_node_s as f64 / f64::from(self.usable_nodes);
                let gap = match self.free_at(req.nodes) {
                    Some((t, _)) => t,
                    None => self.typical_walltime_s,
                };
                let behind_head = self
                    .shadow
                    .map_or(0, |s| s.at_s.saturating_add(BACKFILL_PASS_S));
                (drain + gap as f64).max(behind_head as f64)
            }
        };
        Quantiles([0.25 * p50, p50, 2.0 * p50 + 60.0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::JobSize;

    fn job(nodes: u32, walltime_s: u64, elapsed_s: u64) -> JobSize {
        JobSize {
            nodes,
            cores: 0,
            walltime_s,
            elapsed_s,
        }
    }

    /// 10 nodes, 2 free; running jobs free 3 nodes in 1,000 s and 5 in 4,000 s; the head
    /// job wants 6 nodes: its reservation is at 4,000 s with 4 nodes spare.
    fn queue() -> QueueSnapshot {
        QueueSnapshot {
            max_walltime_s: Some(86_400),
            nodes_total: 10,
            nodes_free: 2,
            jobs_running: 2,
            jobs_queued: 1,
            queued_jobs: Some(vec![job(6, 7200, 0)]),
            running_jobs: Some(vec![job(5, 5000, 1000), job(3, 2000, 1000)]),
            reported: true,
            ..Default::default()
        }
    }

    fn req(nodes: u32, walltime_s: u64) -> WaitRequest {
        WaitRequest { nodes, walltime_s }
    }

    #[test]
    fn the_head_job_is_promised_the_nodes_when_enough_running_jobs_end() {
        let b = QueueBacklog::of(&queue());
        assert_eq!(
            b.shadow,
            Some(Shadow {
                head_nodes: 6,
                at_s: 4000,
                spare_nodes: 4
            })
        );
        assert_eq!(b.frees, Some(vec![(1000, 5), (4000, 10)]));
    }

    #[test]
    fn a_short_request_in_the_free_nodes_backfills_now() {
        let b = QueueBacklog::of(&queue());
        assert_eq!(b.backfill_start(req(2, 4000)), Some(0));
        // 5 nodes are free after 1,000 s: a 5-node job of 3,000 s ends by the reservation.
        assert_eq!(b.backfill_start(req(5, 3000)), Some(1000));
        assert_eq!(b.backfill_start(req(5, 3001)), None);
    }

    #[test]
    fn a_long_request_backfills_only_into_the_spare_nodes() {
        let b = QueueBacklog::of(&queue());
        // Runs past the reservation, but 4 nodes are spare then.
        assert_eq!(b.backfill_start(req(2, 100_000)), Some(0));
        assert_eq!(b.backfill_start(req(4, 100_000)), Some(1000));
        assert_eq!(b.backfill_start(req(5, 100_000)), None);
    }

    #[test]
    fn without_running_jobs_the_reservation_is_half_the_walltime_limit_away() {
        let mut q = queue();
        q.running_jobs = None;
        let b = QueueBacklog::of(&q);
        assert_eq!(b.shadow.map(|s| (s.at_s, s.spare_nodes)), Some((43_200, 0)));
        assert_eq!(b.backfill_start(req(2, 43_200)), Some(0));
        assert_eq!(b.backfill_start(req(2, 43_201)), None);
    }

    #[test]
    fn nothing_queued_means_no_reservation() {
        let mut q = queue();
        q.queued_jobs = Some(vec![]);
        q.jobs_queued = 0;
        let b = QueueBacklog::of(&q);
        assert_eq!(b.shadow, None);
        assert_eq!(b.backfill_start(req(1, 60)), None);
    }
}
