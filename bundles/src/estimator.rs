//! Queue-wait estimator: how long a job of N nodes x T walltime would wait on a queue.
//!
//! Pure: it takes the recorded waits ([`WaitHistory`]) and the probed queue
//! ([`QueueSnapshot`]) and returns a [`QueueWaitEstimate`] naming the evidence it used.
//! Three sources, blended per quantile:
//! - **observed** submit-to-start waits of this resource's own pilots in the same queue and
//!   size bucket; their weight `n / (n + k)` grows with the count `n`, so the estimate moves
//!   toward what the queue actually did as observations accumulate;
//! - **backlog**: the queued node-seconds ahead drained by the queue's usable nodes, plus the
//!   time until enough running jobs end when the request does not fit the free nodes;
//! - **prior**: waits from a workload log (SWF) or the XSEDE pilot traces for the bucket.
//!
//! A stale probe is not used as backlog evidence; the estimate says so.

use crate::model::{JobSize, QueueSnapshot};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
    },
    /// The request fits the free nodes and nothing is queued.
    FitsFreeNodes { free_nodes: u32 },
    /// Waits from a trace or workload log.
    Prior {
        source: String,
        samples: usize,
        bucket: String,
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

/// Recorded waits: own observations per (resource, queue, bucket), priors per bucket.
#[derive(Clone, Debug, Default)]
pub struct WaitHistory {
    observed: BTreeMap<(String, String, SizeBucket), Vec<f64>>,
    prior: BTreeMap<SizeBucket, Vec<f64>>,
    prior_source: String,
}

impl WaitHistory {
    pub fn new() -> WaitHistory {
        WaitHistory::default()
    }

    /// Records a wait of one of our own pilots.
    pub fn observe(&mut self, resource: &str, queue: &str, sample: WaitSample) {
        let key = (
            resource.to_string(),
            queue.to_string(),
            SizeBucket::of(sample.nodes),
        );
        let waits = self.observed.entry(key).or_default();
        waits.push(sample.wait_s.max(0.0));
        if waits.len() > MAX_OBSERVATIONS {
            waits.remove(0);
        }
    }

    /// Number of own observations for the request's bucket.
    pub fn observed_count(&self, resource: &str, queue: &str, nodes: u32) -> usize {
        self.observed
            .get(&(resource.into(), queue.into(), SizeBucket::of(nodes)))
            .map_or(0, Vec::len)
    }

    /// Adds trace samples as the prior (`source` names the file for the evidence).
    pub fn add_prior(&mut self, source: &str, samples: impl IntoIterator<Item = WaitSample>) {
        for s in samples {
            self.prior
                .entry(SizeBucket::of(s.nodes))
                .or_default()
                .push(s.wait_s.max(0.0));
        }
        if !self.prior_source.is_empty() {
            self.prior_source.push_str(", ");
        }
        self.prior_source.push_str(source);
    }

    /// Prior samples of the bucket, or of the nearest bucket that has some.
    fn prior_for(&self, bucket: SizeBucket) -> Option<(SizeBucket, &[f64])> {
        self.prior
            .iter()
            .min_by_key(|(b, _)| b.0.abs_diff(bucket.0))
            .map(|(b, v)| (*b, v.as_slice()))
    }
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
        (Some(q), None) => Some(backlog_wait(q, req, &mut evidence)),
    };

    let prior = history.prior_for(bucket).and_then(|(b, samples)| {
        let q = Quantiles::of(samples)?;
        evidence.push(Evidence::Prior {
            source: history.prior_source.clone(),
            samples: samples.len(),
            bucket: b.label(),
        });
        Some(q)
    });

    let base = match (backlog, prior) {
        (Some(b), Some(p)) => Some(Quantiles::blend(b, 0.6, p)),
        (b, p) => b.or(p),
    };

    let observed = history
        .observed
        .get(&(resource.into(), queue.into(), bucket))
        .and_then(|w| Quantiles::of(w).map(|q| (q, w.len())));
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

/// The backlog model: queued work drained by the usable nodes, plus the time until enough
/// nodes are free for the request. Backfill can start a job sooner (p10), a busy machine
/// later (p90).
fn backlog_wait(q: &QueueSnapshot, req: WaitRequest, evidence: &mut Vec<Evidence>) -> Quantiles {
    let usable = q.nodes_total.saturating_sub(q.nodes_down).max(1);
    let typical_walltime = q.max_walltime_s.unwrap_or(3600) / 2;
    let (queued_node_s, sizes_known) = match q.queued_node_s() {
        Some(ns) => (ns, true),
        None => (u64::from(q.jobs_queued) * typical_walltime, false),
    };
    if queued_node_s == 0 && q.jobs_queued == 0 && req.nodes <= q.nodes_free {
        evidence.push(Evidence::FitsFreeNodes {
            free_nodes: q.nodes_free,
        });
        return Quantiles([0.0, 0.0, 5.0]);
    }
    evidence.push(Evidence::Backlog {
        queued_node_hours: (queued_node_s as f64 / 3600.0 * 100.0).round() / 100.0,
        usable_nodes: usable,
        free_nodes: q.nodes_free,
        sizes_known,
    });
    let drain = queued_node_s as f64 / f64::from(usable);
    let gap = if req.nodes <= q.nodes_free {
        0.0
    } else {
        time_until_free(q, req.nodes, typical_walltime) as f64
    };
    let p50 = drain + gap;
    Quantiles([0.25 * p50, p50, 2.0 * p50 + 60.0])
}

/// Seconds until `nodes` nodes are free, from the running jobs' remaining walltime when
/// known, else half the queue's walltime limit.
fn time_until_free(q: &QueueSnapshot, nodes: u32, typical: u64) -> u64 {
    let Some(running) = &q.running_jobs else {
        return typical;
    };
    let mut ends: Vec<JobSize> = running.clone();
    ends.sort_by_key(JobSize::remaining_s);
    let mut free = q.nodes_free;
    for job in ends {
        free += job.nodes;
        if free >= nodes {
            return job.remaining_s();
        }
    }
    typical
}
