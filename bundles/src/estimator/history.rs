//! Recorded waits: our own pilots' per (resource, queue, size bucket), and the prior from
//! traces per size bucket and, when the trace says what walltime each job asked for, per
//! walltime class.

use super::{Quantiles, SizeBucket, WaitSample, MAX_OBSERVATIONS};
use std::collections::BTreeMap;

/// Prior samples a walltime class needs to stand on its own (fewer are pooled with the next
/// longer class).
pub const MIN_PRIOR_CLASS_SAMPLES: usize = 10;

/// Walltime classes double from this.
const FIRST_CLASS_S: u64 = 900;

/// Recorded waits: own observations per (resource, queue, bucket), priors per bucket.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WaitHistory {
    observed: BTreeMap<(String, String, SizeBucket), Vec<f64>>,
    prior: BTreeMap<SizeBucket, PriorBucket>,
    prior_source: String,
}

/// The prior waits of one size bucket.
#[derive(Clone, Debug, Default, PartialEq)]
struct PriorBucket {
    samples: Vec<WaitSample>,
    all: Option<Quantiles>,
    /// By requested walltime, shortest first, each class's quantiles raised to at least the
    /// shorter classes' (a longer request does not wait less); empty when fewer than two
    /// classes have enough samples with a known walltime.
    classes: Vec<WalltimeClass>,
}

/// Prior waits of jobs that asked for up to `up_to_s` of walltime (and more than the
/// previous class).
#[derive(Clone, Debug, PartialEq)]
struct WalltimeClass {
    up_to_s: u64,
    samples: usize,
    quantiles: Quantiles,
}

/// The prior used for a request: its size bucket, walltime class and quantiles.
pub(super) struct PriorMatch {
    pub bucket: SizeBucket,
    pub samples: usize,
    /// `"any"`, `"<= 30m"`, `"30m-2h"`, `"> 2h"`.
    pub walltime: String,
    pub quantiles: Quantiles,
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

    /// Own observations of the request's bucket.
    pub(super) fn observed(&self, resource: &str, queue: &str, bucket: SizeBucket) -> &[f64] {
        self.observed
            .get(&(resource.into(), queue.into(), bucket))
            .map_or(&[], Vec::as_slice)
    }

    /// Adds trace samples as the prior (`source` names the file for the evidence).
    pub fn add_prior(&mut self, source: &str, samples: impl IntoIterator<Item = WaitSample>) {
        let mut touched = Vec::new();
        for s in samples {
            let bucket = SizeBucket::of(s.nodes);
            self.prior
                .entry(bucket)
                .or_default()
                .samples
                .push(WaitSample {
                    wait_s: s.wait_s.max(0.0),
                    ..s
                });
            touched.push(bucket);
        }
        touched.sort_unstable();
        touched.dedup();
        for b in touched {
            if let Some(p) = self.prior.get_mut(&b) {
                p.index();
            }
        }
        if !self.prior_source.is_empty() {
            self.prior_source.push_str(", ");
        }
        self.prior_source.push_str(source);
    }

    /// Where the priors came from.
    pub(super) fn prior_source(&self) -> &str {
        &self.prior_source
    }

    /// The prior of the bucket, or of the nearest bucket that has some, for a request of
    /// `walltime_s`.
    pub(super) fn prior_for(&self, bucket: SizeBucket, walltime_s: u64) -> Option<PriorMatch> {
        let (b, p) = self
            .prior
            .iter()
            .filter(|(_, p)| p.all.is_some())
            .min_by_key(|(b, _)| b.0.abs_diff(bucket.0))?;
        let Some(i) = p.class_of(walltime_s) else {
            return Some(PriorMatch {
                bucket: *b,
                samples: p.samples.len(),
                walltime: "any".into(),
                quantiles: p.all?,
            });
        };
        let c = &p.classes[i];
        let walltime = match i {
            0 => format!("<= {}", label(c.up_to_s)),
            _ if i + 1 == p.classes.len() => format!("> {}", label(p.classes[i - 1].up_to_s)),
            _ => format!("{}-{}", label(p.classes[i - 1].up_to_s), label(c.up_to_s)),
        };
        Some(PriorMatch {
            bucket: *b,
            samples: c.samples,
            walltime,
            quantiles: c.quantiles,
        })
    }
}

impl PriorBucket {
    /// Recomputes the quantiles, overall and per walltime class.
    fn index(&mut self) {
        let waits: Vec<f64> = self.samples.iter().map(|s| s.wait_s).collect();
        self.all = Quantiles::of(&waits);
        let mut known: Vec<(u64, f64)> = self
            .samples
            .iter()
            .filter(|s| s.walltime_s > 0)
            .map(|s| (s.walltime_s, s.wait_s))
            .collect();
        known.sort_by_key(|k| k.0);
        // Consecutive doubling classes, pooled until each has enough samples; what is left
        // over joins the last one.
        let mut pooled: Vec<(u64, Vec<f64>)> = Vec::new();
        let mut current = Vec::new();
        let mut i = 0;
        while i < known.len() {
            let edge = class_edge(known[i].0);
            while i < known.len() && known[i].0 <= edge {
                current.push(known[i].1);
                i += 1;
            }
            if current.len() >= MIN_PRIOR_CLASS_SAMPLES {
                pooled.push((edge, std::mem::take(&mut current)));
            } else if i == known.len() {
                if let Some(last) = pooled.last_mut() {
                    last.0 = edge;
                    last.1.append(&mut current);
                }
            }
        }
        self.classes.clear();
        if pooled.len() < 2 {
            return;
        }
        let mut floor = [0.0f64; 3];
        for (up_to_s, waits) in pooled {
            let Some(q) = Quantiles::of(&waits) else {
                continue;
            };
            for (f, x) in floor.iter_mut().zip(q.0) {
                *f = f.max(x);
            }
            self.classes.push(WalltimeClass {
                up_to_s,
                samples: waits.len(),
                quantiles: Quantiles(floor),
            });
        }
    }

    /// The class a request of `walltime_s` falls in (the last for longer ones); `None` when
    /// the prior is not split by walltime.
    fn class_of(&self, walltime_s: u64) -> Option<usize> {
        if self.classes.is_empty() {
            return None;
        }
        Some(
            self.classes
                .iter()
                .position(|c| walltime_s <= c.up_to_s)
                .unwrap_or(self.classes.len() - 1),
        )
    }
}

/// The upper edge of the walltime class of `walltime_s`: 15 min, 30 min, 1 h, 2 h, ...
fn class_edge(walltime_s: u64) -> u64 {
    let mut edge = FIRST_CLASS_S;
    while edge < walltime_s {
        edge = edge.saturating_mul(2);
    }
    edge
}

/// `15m`, `1h`, `32h`.
fn label(s: u64) -> String {
    if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else {
        format!("{}m", s / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(walltime_s: u64, wait_s: f64) -> WaitSample {
        WaitSample {
            nodes: 1,
            walltime_s,
            wait_s,
        }
    }

    #[test]
    fn the_prior_is_split_by_walltime_when_the_trace_says_it() {
        let mut h = WaitHistory::new();
        let short = (0..20).map(|_| sample(600, 100.0));
        let long = (0..20).map(|_| sample(7200, 5000.0));
        h.add_prior("t", short.chain(long));
        let at = |w: u64| h.prior_for(SizeBucket(0), w).unwrap();
        assert_eq!(at(600).quantiles.0[1], 100.0);
        assert_eq!(at(600).walltime, "<= 15m");
        assert_eq!(at(7200).quantiles.0[1], 5000.0);
        assert_eq!(at(7200).walltime, "> 15m");
        assert_eq!(at(86_400).quantiles.0[1], 5000.0);
    }

    #[test]
    fn a_longer_class_never_waits_less_than_a_shorter_one() {
        let mut h = WaitHistory::new();
        let short = (0..20).map(|_| sample(600, 900.0));
        let middle = (0..20).map(|_| sample(3600, 100.0));
        let long = (0..20).map(|_| sample(20_000, 2000.0));
        h.add_prior("t", short.chain(middle).chain(long));
        let p50 = |w: u64| h.prior_for(SizeBucket(0), w).unwrap().quantiles.0[1];
        assert_eq!((p50(600), p50(3600), p50(20_000)), (900.0, 900.0, 2000.0));
        assert_eq!(h.prior_for(SizeBucket(0), 3600).unwrap().walltime, "15m-1h");
    }

    #[test]
    fn sparse_classes_are_pooled_and_unknown_walltimes_are_not_split() {
        let mut h = WaitHistory::new();
        // 5 jobs of each class: pooled in twos.
        let s: Vec<WaitSample> = [600, 1200, 2400, 4800]
            .iter()
            .flat_map(|&w| (0..5).map(move |_| sample(w, w as f64)))
            .collect();
        h.add_prior("t", s);
        let m = h.prior_for(SizeBucket(0), 600).unwrap();
        assert_eq!((m.samples, m.walltime.as_str()), (10, "<= 30m"));
        let mut unknown = WaitHistory::new();
        unknown.add_prior("t", (0..40).map(|i| sample(0, f64::from(i))));
        assert_eq!(
            unknown.prior_for(SizeBucket(0), 600).unwrap().walltime,
            "any"
        );
    }
}
