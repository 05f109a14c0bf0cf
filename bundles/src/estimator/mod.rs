//! Queue-wait estimator: how long a job of N nodes x T walltime would wait on a queue.
//!
//! Pure: it takes the recorded waits ([`WaitHistory`]) and the probed queue
//! ([`QueueSnapshot`]) and returns a [`QueueWaitEstimate`] naming the evidence it used.
//! Three sources, blended per quantile:
//! - **observed** submit-to-start waits of this resource's own pilots in the same queue and
//!   size bucket; their weight `n / (n + k)` grows with the count `n`, so the estimate moves
//!   toward what the queue actually did as observations accumulate;
//! - **backlog** ([`backlog`]): a request that can backfill before the head job's
//!   reservation starts at once (or when enough nodes free up); any other waits for the
//!   queued node-seconds drained by the queue's usable nodes, plus the time until enough
//!   running jobs end when it does not fit the free nodes;
//! - **prior**: waits from a workload log (SWF) or the XSEDE pilot traces for the size
//!   bucket and, when the trace gives requested walltimes, the walltime class.
//!
//! A longer walltime never gets a shorter estimate, other things equal. A stale probe is not
//! used as backlog evidence; the estimate says so.

mod backlog;
mod history;

pub use backlog::{QueueBacklog, BACKFILL_PASS_S};
pub use history::{WaitHistory, MIN_PRIOR_CLASS_SAMPLES};

use crate::model::QueueSnapshot;
use serde::{Deserialize, Serialize};

/// Observations at which observed waits weigh as much as the other evidence.
pub const OBSERVED_HALF_WEIGHT: f64 = 3.0;
/// Observations kept per resource, queue and bucket (oldest dropped first).
pub const MAX_OBSERVATIONS: usize = 200;

/// The job a wait is predicted for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitRequest {
    pub nodes: u32,
    pub walltime_s: u64,
}

/// Size bucket of a job: `0` for 1 node, `k` for `2^(k-1) < nodes <= 2^k`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SizeBucket(pub u32);

impl SizeBucket {
    pub fn of(nodes: u32) -> SizeBucket {
        SizeBucket(nodes.max(1).next_power_of_two().trailing_zeros())
    }

    /// `"1"`, `"2"`, `"3-4"`, `"5-8"`, ...
    pub fn label(self) -> String {
        match self.0 {
            0 => "1".into(),
            1 => "2".into(),
            k => format!("{}-{}", (1u64 << (k - 1)) + 1, 1u64 << k),
        }
    }
}

/// One recorded wait.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct WaitSample {
    pub nodes: u32,
    pub walltime_s: u64,
    pub wait_s: f64,
}

/// What an estimate was made from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Evidence {
    /// Waits of this resource's own pilots in this queue and size bucket.
    Observed {
        samples: usize,
        bucket: String,
        weight: f64,
    },
    /// Queued work ahead from the last probe.
    Backlog {
        queued_node_hours: f64,
        usable_nodes: u32,
        free_nodes: u32,
        /// True when the queued jobs' sizes were known; false when guessed from counts.
        sizes_known: bool,
        /// Seconds until the head job's nodes are free (its reservation), when a job is
        /// queued.
        shadow_s: Option<u64>,
    },
    /// The request can start before the head job's reservation (it ends by then, or fits
    /// the nodes the head job leaves spare): at `start_s`, plus a backfill pass.
    Backfill {
        start_s: u64,
        shadow_s: u64,
        head_nodes: u32,
    },
    /// The request fits the free nodes and nothing is queued.
    FitsFreeNodes { free_nodes: u32 },
    /// Waits from a trace or workload log, of the size bucket and walltime class (`any`
    /// when the trace does not tell walltimes apart).
    Prior {
        source: String,
        samples: usize,
        bucket: String,
        walltime: String,
    },
    /// The last probe failed: backlog not used.
    StaleProbe { error: String, age_s: u64 },
    /// The queue was not probed or not reported by the batch system.
    QueueNotProbed,
    /// Nothing to go on: the numbers are zero.
    NoData,
}

/// Predicted wait in seconds, with the evidence it rests on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueueWaitEstimate {
    pub p10_s: u64,
    pub p50_s: u64,
    pub p90_s: u64,
    pub evidence: Vec<Evidence>,
}

/// Three quantiles of a wait distribution in seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Quantiles([f64; 3]);

impl Quantiles {
    fn of(samples: &[f64]) -> Option<Quantiles> {
        if samples.is_empty() {
            return None;
        }
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let q = |p: f64| {
            let x = p * (s.len() - 1) as f64;
            let (lo, hi) = (x.floor() as usize, x.ceil() as usize);
            s[lo] + (s[hi] - s[lo]) * (x - lo as f64)
        };
        Some(Quantiles([q(0.1), q(0.5), q(0.9)]))
    }

    fn blend(a: Quantiles, wa: f64, b: Quantiles) -> Quantiles {
        let mut out = [0.0; 3];
        for (i, o) in out.iter_mut().enumerate() {
            *o = wa * a.0[i] + (1.0 - wa) * b.0[i];
        }
        Quantiles(out)
    }
}

/// Where a probe failure stands, for [`estimate`].
#[derive(Clone, Debug, PartialEq)]
pub struct Staleness {
    pub error: String,
    pub age_s: u64,
}

/// Predicts the wait of `req` on `queue` of `resource`.
///
/// `probed` is the queue's last probe (`None` when the batch system did not report it);
/// `stale` is set when the resource's last probe failed.
pub fn estimate(
    history: &WaitHistory,
    resource: &str,
    queue: &str,
    req: WaitRequest,
    probed: Option<&QueueSnapshot>,
    stale: Option<&Staleness>,
) -> QueueWaitEstimate {
    // A stale probe is not used: no need to prepare it.
    let backlog = probed.filter(|_| stale.is_none()).map(QueueBacklog::of);
    estimate_prepared(history, resource, queue, req, backlog.as_ref(), stale)
}

/// [`estimate`] with the probe prepared once ([`QueueBacklog::of`]), for callers that ask
/// about many requests on one queue (the planner).
pub fn estimate_prepared(
    history: &WaitHistory,
    resource: &str,
    queue: &str,
    req: WaitRequest,
    probed: Option<&QueueBacklog>,
    stale: Option<&Staleness>,
) -> QueueWaitEstimate {
    let bucket = SizeBucket::of(req.nodes);
    let mut evidence = Vec::new();

    let backlog = match (probed, stale) {
        (_, Some(s)) => {
            evidence.push(Evidence::StaleProbe {
                error: s.error.clone(),
                age_s: s.age_s,
            });
            None
        }
        (None, None) => {
            evidence.push(Evidence::QueueNotProbed);
            None
        }
        (Some(b), None) => Some(b.wait(req, &mut evidence)),
    };

    let prior = history.prior_for(bucket, req.walltime_s).map(|m| {
        evidence.push(Evidence::Prior {
            source: history.prior_source().to_string(),
            samples: m.samples,
            bucket: m.bucket.label(),
            walltime: m.walltime,
        });
        m.quantiles
    });

    let base = match (backlog, prior) {
        (Some(b), Some(p)) => Some(Quantiles::blend(b, 0.6, p)),
        (b, p) => b.or(p),
    };
    finish(history, resource, queue, bucket, base, evidence)
}

/// What a caller assumes without evidence (`assumed`: p10, p50, p90 in seconds; e.g. the
/// planner's default wait for a queue no bundle service probes), moved toward our pilots'
/// observed waits in this queue and size bucket as [`estimate`] moves its evidence.
pub fn estimate_assumed(
    history: &WaitHistory,
    resource: &str,
    queue: &str,
    req: WaitRequest,
    assumed: [f64; 3],
) -> QueueWaitEstimate {
    let evidence = vec![Evidence::QueueNotProbed];
    let base = Some(Quantiles(assumed));
    finish(
        history,
        resource,
        queue,
        SizeBucket::of(req.nodes),
        base,
        evidence,
    )
}

/// `base` blended with the observed waits of the bucket (their weight grows with their
/// count), in whole seconds and ordered.
fn finish(
    history: &WaitHistory,
    resource: &str,
    queue: &str,
    bucket: SizeBucket,
    base: Option<Quantiles>,
    mut evidence: Vec<Evidence>,
) -> QueueWaitEstimate {
    let waits = history.observed(resource, queue, bucket);
    let observed = Quantiles::of(waits).map(|q| (q, waits.len()));
    let q = match (observed, base) {
        (Some((obs, n)), base) => {
            let weight = match base {
                Some(_) => n as f64 / (n as f64 + OBSERVED_HALF_WEIGHT),
                None => 1.0,
            };
            evidence.push(Evidence::Observed {
                samples: n,
                bucket: bucket.label(),
                weight: (weight * 1000.0).round() / 1000.0,
            });
            match base {
                Some(b) => Quantiles::blend(obs, weight, b),
                None => obs,
            }
        }
        (None, Some(b)) => b,
        (None, None) => {
            evidence.push(Evidence::NoData);
            Quantiles([0.0; 3])
        }
    };
    let mut p = q.0.map(|x| x.max(0.0).round() as u64);
    p.sort_unstable();
    QueueWaitEstimate {
        p10_s: p[0],
        p50_s: p[1],
        p90_s: p[2],
        evidence,
    }
}
