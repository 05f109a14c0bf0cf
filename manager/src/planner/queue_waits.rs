//! The waits of one queue per pilot: what the bundle estimator predicts for a pilot of N
//! nodes asking for T of walltime, from the queue's probe (backlog and backfill) and our own
//! pilots' recorded waits there, or from an assumed wait moved toward those. Each (nodes,
//! walltime class) is estimated once and remembered, so the search can ask freely.

use super::WaitEstimate;
use emanager_bundles::estimator::{
    estimate_assumed, estimate_prepared, QueueBacklog, WaitHistory, WaitRequest,
};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

/// Walltime classes grow by this ratio from one minute. A pilot's wait is that of the
/// longest walltime of its class, so never shorter than its own (waits grow with the
/// walltime), and at most 4 % longer in walltime.
const WALLTIME_CLASS_RATIO: f64 = 1.04;
const FIRST_CLASS_S: f64 = 60.0;

/// What the estimate of a queue rests on.
#[derive(Clone, Debug, PartialEq)]
enum Basis {
    /// The queue's last probe.
    Probe(QueueBacklog),
    /// No probe: an assumed wait (moved toward our observed waits, if any).
    Assumed(WaitEstimate),
}

/// Predicted waits of one queue, per pilot size and walltime.
pub struct QueueWaitModel {
    resource: String,
    queue: String,
    basis: Basis,
    free_nodes: u32,
    /// Our pilots' recorded waits (shared by the queues of a plan).
    history: Arc<WaitHistory>,
    cache: Mutex<HashMap<(u32, u32), WaitEstimate>>,
}

impl QueueWaitModel {
    /// Waits from the queue's probe, with `free_nodes` idle now.
    pub fn probed(
        resource: &str,
        queue: &str,
        backlog: QueueBacklog,
        free_nodes: u32,
        history: Arc<WaitHistory>,
    ) -> QueueWaitModel {
        QueueWaitModel::new(resource, queue, Basis::Probe(backlog), free_nodes, history)
    }

    /// `assumed` for every pilot (a queue no bundle service probes), moved toward our
    /// pilots' waits in the queue as they accumulate.
    pub fn assumed(
        resource: &str,
        queue: &str,
        assumed: WaitEstimate,
        history: Arc<WaitHistory>,
    ) -> QueueWaitModel {
        QueueWaitModel::new(resource, queue, Basis::Assumed(assumed), 0, history)
    }

    fn new(
        resource: &str,
        queue: &str,
        basis: Basis,
        free_nodes: u32,
        history: Arc<WaitHistory>,
    ) -> QueueWaitModel {
        QueueWaitModel {
            resource: resource.into(),
            queue: queue.into(),
            basis,
            free_nodes,
            history,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Nodes idle in the queue at the probe (0 without one).
    pub fn free_nodes(&self) -> u32 {
        self.free_nodes
    }

    /// The wait of a pilot of `nodes` nodes asking for `walltime_s`.
    pub fn estimate(&self, nodes: u32, walltime_s: f64) -> WaitEstimate {
        let class = walltime_class(walltime_s);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        *cache
            .entry((nodes, class))
            .or_insert_with(|| self.compute(nodes, class_walltime_s(class)))
    }

    fn compute(&self, nodes: u32, walltime_s: u64) -> WaitEstimate {
        let req = WaitRequest { nodes, walltime_s };
        let (r, q, h) = (&self.resource, &self.queue, &*self.history);
        let e = match &self.basis {
            Basis::Probe(backlog) => estimate_prepared(h, r, q, req, Some(backlog), None),
            Basis::Assumed(w) => estimate_assumed(h, r, q, req, [w.p10_s, w.p50_s, w.p90_s]),
        };
        WaitEstimate {
            p10_s: e.p10_s as f64,
            p50_s: e.p50_s as f64,
            p90_s: e.p90_s as f64,
        }
    }
}

/// The class of `walltime_s`: the smallest `k` with `60 s x 1.04^k >= walltime_s`.
fn walltime_class(walltime_s: f64) -> u32 {
    if walltime_s.is_nan() || walltime_s <= FIRST_CLASS_S {
        return 0;
    }
    let mut k = ((walltime_s / FIRST_CLASS_S).ln() / WALLTIME_CLASS_RATIO.ln()).floor() as u32;
    while class_walltime_s(k) < walltime_s.ceil() as u64 {
        k += 1;
    }
    k
}

/// The longest walltime of class `k`, whole seconds.
fn class_walltime_s(k: u32) -> u64 {
    (FIRST_CLASS_S * WALLTIME_CLASS_RATIO.powi(k as i32)).ceil() as u64
}

impl PartialEq for QueueWaitModel {
    /// Same inputs (the cache is only a cache).
    fn eq(&self, other: &QueueWaitModel) -> bool {
        (
            &self.resource,
            &self.queue,
            &self.basis,
            self.free_nodes,
            &*self.history,
        ) == (
            &other.resource,
            &other.queue,
            &other.basis,
            other.free_nodes,
            &*other.history,
        )
    }
}

impl fmt::Debug for QueueWaitModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueWaitModel")
            .field("resource", &self.resource)
            .field("queue", &self.queue)
            .field("basis", &self.basis)
            .field("free_nodes", &self.free_nodes)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use emanager_bundles::estimator::WaitSample;
    use emanager_bundles::model::{JobSize, QueueSnapshot};

    #[test]
    fn a_walltime_class_holds_its_walltime_and_is_at_most_4_percent_longer() {
        for w in [1.0, 60.0, 61.0, 599.5, 3600.0, 3601.0, 43_200.0, 172_800.0] {
            let top = class_walltime_s(walltime_class(w)) as f64;
            assert!(top >= w && top <= (w * 1.04).max(60.0) + 1.0, "{w}: {top}");
        }
        assert_eq!(walltime_class(30.0), 0);
    }

    /// One running 2-node job with 1 h left and a 4-node job queued: a 2-node pilot of up
    /// to 1 h backfills into the free nodes, a longer one waits for the backlog.
    #[test]
    fn a_probed_queue_answers_per_walltime_and_remembers() {
        let q = QueueSnapshot {
            max_walltime_s: Some(86_400),
            nodes_total: 4,
            nodes_free: 2,
            jobs_running: 1,
            jobs_queued: 1,
            queued_jobs: Some(vec![JobSize {
                nodes: 4,
                cores: 0,
                walltime_s: 7200,
                elapsed_s: 0,
            }]),
            running_jobs: Some(vec![JobSize {
                nodes: 2,
                cores: 0,
                walltime_s: 7200,
                elapsed_s: 3600,
            }]),
            reported: true,
            ..Default::default()
        };
        let m = QueueWaitModel::probed(
            "r",
            "q",
            QueueBacklog::of(&q),
            2,
            Arc::new(WaitHistory::new()),
        );
        // 3,400 s is in a class whose longest walltime stays under the 1 h reservation.
        assert_eq!(m.estimate(2, 3400.0).p50_s, 30.0);
        assert_eq!(m.estimate(2, 7200.0).p50_s, 7200.0);
        assert_eq!(m.cache.lock().unwrap().len(), 2);
        m.estimate(2, 7300.0);
        assert_eq!(m.cache.lock().unwrap().len(), 2, "same class, remembered");
    }

    #[test]
    fn an_assumed_wait_moves_toward_our_observed_waits() {
        let assumed = WaitEstimate {
            p10_s: 60.0,
            p50_s: 1800.0,
            p90_s: 14_400.0,
        };
        let mut h = WaitHistory::new();
        let plain = QueueWaitModel::assumed("r", "q", assumed, Arc::new(h.clone()));
        assert_eq!(plain.estimate(4, 3600.0), assumed);
        for _ in 0..3 {
            h.observe(
                "r",
                "q",
                WaitSample {
                    nodes: 4,
                    walltime_s: 3600,
                    wait_s: 7200.0,
                },
            );
        }
        let m = QueueWaitModel::assumed("r", "q", assumed, Arc::new(h));
        // Three observations weigh half.
        assert_eq!(m.estimate(4, 3600.0).p50_s, 4500.0);
        // Other size buckets keep the assumption.
        assert_eq!(m.estimate(1, 3600.0), assumed);
    }
}
