//! Many simulated runs of one plan, summarised: what `emanager plan --simulate N` prints for
//! each strategy side by side.

use super::{simulate_with, Plan, ResourceOffer, SimOptions, WorkflowSummary};

/// A distribution over runs: nearest-rank percentiles and the mean. Infinite values (runs
/// that never finished) sort last and make the mean infinite.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Distribution {
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub max: f64,
    pub mean: f64,
}

impl Distribution {
    /// `None` for no values.
    pub fn of(values: &[f64]) -> Option<Distribution> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let rank = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Some(Distribution {
            min: v[0],
            p50: rank(0.5),
            p90: rank(0.9),
            max: v[v.len() - 1],
            mean: v.iter().sum::<f64>() / v.len() as f64,
        })
    }
}

/// What `runs` simulations of a plan did.
#[derive(Clone, Debug, PartialEq)]
pub struct Runs {
    pub runs: u32,
    /// Time to completion over the runs.
    pub ttc_s: Distribution,
    /// Runs in which some task never finished (their TTC is infinite).
    pub unfinished_runs: u32,
    pub busy_core_hours_mean: f64,
    pub idle_core_hours_mean: f64,
}

/// Simulates `plan` `runs` times (at least once) with queue waits drawn around each
/// resource's estimate, run `i` with seed `seed + i`: deterministic for a seed.
pub fn simulate_runs(
    plan: &Plan,
    summary: &WorkflowSummary,
    offers: &[ResourceOffer],
    runs: u32,
    seed: u64,
) -> Runs {
    simulate_runs_with(plan, summary, offers, runs, &SimOptions::sampled(seed))
}

/// As [`simulate_runs`], with the waits and pilot failures of `base` (run `i` with seed
/// `base.seed + i`).
pub fn simulate_runs_with(
    plan: &Plan,
    summary: &WorkflowSummary,
    offers: &[ResourceOffer],
    runs: u32,
    base: &SimOptions,
) -> Runs {
    let runs = runs.max(1);
    let results: Vec<_> = (0..runs)
        .map(|i| {
            let opts = SimOptions {
                seed: base.seed.wrapping_add(u64::from(i)),
                ..base.clone()
            };
            simulate_with(plan, summary, offers, &opts)
        })
        .collect();
    let ttc: Vec<f64> = results.iter().map(|r| r.ttc_s).collect();
    let mean =
        |f: &dyn Fn(&super::SimResult) -> f64| results.iter().map(f).sum::<f64>() / f64::from(runs);
    Runs {
        runs,
        ttc_s: Distribution::of(&ttc).expect("at least one run"),
        unfinished_runs: results.iter().filter(|r| r.unfinished_tasks > 0).count() as u32,
        busy_core_hours_mean: mean(&|r| r.busy_core_hours),
        idle_core_hours_mean: mean(&|r| r.idle_core_hours),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        let d = Distribution::of(&v).unwrap();
        assert_eq!(
            (d.min, d.p50, d.p90, d.max, d.mean),
            (1.0, 5.0, 9.0, 10.0, 5.5)
        );
        let one = Distribution::of(&[7.0]).unwrap();
        assert_eq!((one.min, one.p50, one.p90, one.max), (7.0, 7.0, 7.0, 7.0));
        assert!(Distribution::of(&[]).is_none());
    }

    #[test]
    fn a_run_that_never_finishes_sorts_last_and_makes_the_mean_infinite() {
        let d = Distribution::of(&[f64::INFINITY, 2.0, 1.0]).unwrap();
        assert_eq!((d.min, d.p50), (1.0, 2.0));
        assert!(d.max.is_infinite() && d.mean.is_infinite());
    }
}
