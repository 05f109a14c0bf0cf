//! Queue waits as distributions: a lognormal fitted to an estimate's median and p90, or an
//! empirical distribution replayed from measured waits (a trace).

use super::WaitEstimate;
use rand::Rng;
use rand_distr::{Distribution, LogNormal};

/// z-score of the 90th percentile of a standard normal.
const Z90: f64 = 1.281_551_565_5;

/// A distribution of queue waits to draw from.
#[derive(Clone, Debug)]
pub enum WaitDistribution {
    /// Always the same wait.
    Fixed(f64),
    /// Lognormal with the given median and p90.
    LogNormal(LogNormal<f64>),
    /// Measured waits, each equally likely.
    Trace(Vec<f64>),
}

impl WaitDistribution {
    /// A lognormal with median `p50_s` and 90th percentile `p90_s`; a fixed wait when the
    /// estimate has no spread.
    pub fn fitted(p50_s: f64, p90_s: f64) -> WaitDistribution {
        if p50_s <= 0.0 || p90_s <= p50_s {
            return WaitDistribution::Fixed(p50_s.max(0.0));
        }
        let sigma = (p90_s / p50_s).ln() / Z90;
        match LogNormal::new(p50_s.ln(), sigma) {
            Ok(d) => WaitDistribution::LogNormal(d),
            Err(_) => WaitDistribution::Fixed(p50_s),
        }
    }

    /// Replays `samples` (seconds; negative or non-finite ones are dropped).
    pub fn trace(samples: &[f64]) -> WaitDistribution {
        let kept: Vec<f64> = samples
            .iter()
            .copied()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .collect();
        if kept.is_empty() {
            WaitDistribution::Fixed(0.0)
        } else {
            WaitDistribution::Trace(kept)
        }
    }

    pub fn sample<R: Rng>(&self, rng: &mut R) -> f64 {
        match self {
            WaitDistribution::Fixed(w) => *w,
            WaitDistribution::LogNormal(d) => d.sample(rng),
            WaitDistribution::Trace(v) => v[rng.gen_range(0..v.len())],
        }
    }
}

/// The queue waits (`Tq`, seconds) of a RADICAL-Pilot queue measurement log: lines like
/// `Session: <file>, Tx: <s>, Tq: <s>` (the XSEDE 2016 pilot traces in
/// `shared/reference/traces/xsede-pilot-queue-2016/raw_data/`). Other lines are skipped.
pub fn parse_pilot_queue_log(text: &str) -> Vec<f64> {
    text.lines()
        .filter_map(|line| {
            let (_, tq) = line.rsplit_once("Tq:")?;
            tq.trim().parse::<f64>().ok()
        })
        .filter(|w| w.is_finite() && *w >= 0.0)
        .collect()
}

/// The p10/p50/p90 of measured waits (nearest rank), e.g. to build an offer from a trace.
pub fn estimate_from_samples(samples: &[f64]) -> Option<WaitEstimate> {
    let mut v: Vec<f64> = samples.iter().copied().filter(|s| s.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    Some(WaitEstimate {
        p10_s: at(0.1),
        p50_s: at(0.5),
        p90_s: at(0.9),
    })
}
