//! Weighted fair sharing of an agent's cores between the campaigns of a pool. Pure: no I/O
//! and no clock (the caller passes the time, in seconds from any fixed origin).
//!
//! A campaign's *usage* is its recent core-seconds (the core-seconds its tasks used, decayed
//! exponentially with time constant `window_s`) plus `IN_USE_S` core-seconds for each core
//! its tasks hold right now, over `window_s` (so: a recent average in cores). When cores free up and several campaigns have
//! tasks waiting, the next task comes from the campaign with the lowest `usage / weight`.
//!
//! - The history term is an integrator: a campaign below its share has the lowest
//!   normalised usage and gets the next core until it catches up, so over time core-seconds
//!   follow the weights whatever the task lengths and however few the cores (a 1-core
//!   agent alternates 2:1).
//! - The in-use term decides between campaigns whose histories are alike (a fresh start,
//!   several cores freeing at once). It is worth one second of a core, a fixed amount of
//!   history rather than a fraction of the window: as a fraction of a 60 s window (it was
//!   6 s), a 2-core agent kept two campaigns of weights 2:1 at one core each for the first
//!   minute, since the history of a few seconds could not outweigh it.
//! - A campaign alone gets every core: a weight orders starts, it never caps a campaign
//!   (work-conserving).
//! - A campaign that joins starts level with the least-used campaign already there, so it
//!   neither waits for the others' history to fade nor hoards the agent; history fades
//!   within a few windows, so a campaign that was idle gets a bounded catch-up at most.
//! - Every start also costs `START_CHARGE_S` core-seconds per core, so even instant tasks
//!   are shared by weight, and a waiting campaign's usage ends below the others': nobody
//!   starves.

/// Core-seconds charged per core at each start (on top of the time the task really runs).
pub const START_CHARGE_S: f64 = 0.01;

/// How much one core held right now counts, in core-seconds of history.
pub const IN_USE_S: f64 = 1.0;

/// The default decay time constant of the usage history, in seconds.
pub const DEFAULT_WINDOW_S: f64 = 60.0;

/// Per-campaign usage and weights; `K` names a campaign.
#[derive(Clone, Debug)]
pub struct FairShare<K> {
    window_s: f64,
    entries: Vec<Entry<K>>,
    starts: u64,
}

#[derive(Clone, Debug)]
struct Entry<K> {
    key: K,
    weight: f64,
    in_use: u32,
    /// Decayed core-seconds, as of `at`.
    history: f64,
    at: f64,
    /// Ordinal of the last start (0: never), for ties.
    last_start: u64,
}

impl<K> Entry<K> {
    /// The history at `now`: the old value decayed plus what `in_use` cores added since.
    fn history_at(&self, now: f64, window_s: f64) -> f64 {
        let dt = (now - self.at).max(0.0);
        let keep = (-dt / window_s).exp();
        self.history * keep + self.in_use as f64 * window_s * (1.0 - keep)
    }

    fn advance(&mut self, now: f64, window_s: f64) {
        self.history = self.history_at(now, window_s);
        self.at = self.at.max(now);
    }

    fn usage(&self, now: f64, window_s: f64) -> f64 {
        (IN_USE_S * self.in_use as f64 + self.history_at(now, window_s)) / window_s / self.weight
    }
}

impl<K: Copy + PartialEq> FairShare<K> {
    /// Shares with a usage history that decays with time constant `window_s` seconds.
    pub fn new(window_s: f64) -> Self {
        FairShare {
            window_s: if window_s.is_finite() && window_s > 0.0 {
                window_s
            } else {
                DEFAULT_WINDOW_S
            },
            entries: Vec::new(),
            starts: 0,
        }
    }

    fn entry(&mut self, key: K) -> &mut Entry<K> {
        let i = match self.entries.iter().position(|e| e.key == key) {
            Some(i) => i,
            None => {
                self.entries.push(Entry {
                    key,
                    weight: 1.0,
                    in_use: 0,
                    history: 0.0,
                    at: 0.0,
                    last_start: 0,
                });
                self.entries.len() - 1
            }
        };
        &mut self.entries[i]
    }

    /// Adds a campaign that joins at `now` with `weight`, level with the least-used campaign
    /// already here (same usage / weight); for a known campaign, only changes its weight.
    /// Weights are clamped to `[1e-6, 1e6]`.
    pub fn join(&mut self, key: K, weight: f64, now: f64) {
        let w = if weight.is_finite() {
            weight.clamp(1e-6, 1e6)
        } else {
            1.0
        };
        if let Some(e) = self.entries.iter_mut().find(|e| e.key == key) {
            e.weight = w;
            return;
        }
        let window_s = self.window_s;
        let level = self
            .entries
            .iter()
            .map(|e| e.history_at(now, window_s) / e.weight)
            .fold(f64::INFINITY, f64::min);
        let e = self.entry(key);
        e.weight = w;
        e.at = now;
        e.history = if level.is_finite() { level * w } else { 0.0 };
    }

    /// Forgets a campaign (it left the agent).
    pub fn remove(&mut self, key: K) {
        self.entries.retain(|e| e.key != key);
    }

    /// A task of `key` holding `cores` started at `now`.
    pub fn started(&mut self, key: K, cores: u32, now: f64) {
        let window_s = self.window_s;
        self.starts += 1;
        let starts = self.starts;
        let e = self.entry(key);
        e.advance(now, window_s);
        e.in_use += cores;
        e.history += cores as f64 * START_CHARGE_S;
        e.last_start = starts;
    }

    /// A task of `key` holding `cores` ended at `now`.
    pub fn finished(&mut self, key: K, cores: u32, now: f64) {
        let window_s = self.window_s;
        let e = self.entry(key);
        e.advance(now, window_s);
        e.in_use = e.in_use.saturating_sub(cores);
    }

    /// `key`'s usage divided by its weight at `now` (0 for a campaign never seen).
    pub fn usage(&self, key: K, now: f64) -> f64 {
        self.entries
            .iter()
            .find(|e| e.key == key)
            .map(|e| e.usage(now, self.window_s))
            .unwrap_or(0.0)
    }

    /// Cores `key`'s tasks hold.
    pub fn in_use(&self, key: K) -> u32 {
        self.entries
            .iter()
            .find(|e| e.key == key)
            .map(|e| e.in_use)
            .unwrap_or(0)
    }

    /// Of the campaigns with work waiting, the one whose next task should start: the lowest
    /// `usage / weight`, then the one that started least recently, then the first given.
    pub fn pick(&self, waiting: impl IntoIterator<Item = K>, now: f64) -> Option<K> {
        let mut best: Option<(K, f64, u64)> = None;
        for key in waiting {
            let (usage, last) = match self.entries.iter().find(|e| e.key == key) {
                Some(e) => (e.usage(now, self.window_s), e.last_start),
                None => (0.0, 0),
            };
            let better = match best {
                None => true,
                Some((_, u, l)) => usage < u || (usage == u && last < l),
            };
            if better {
                best = Some((key, usage, last));
            }
        }
        best.map(|(k, _, _)| k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Simulates `cores` cores over `horizon` seconds where every campaign always has tasks
    /// waiting (campaign i's tasks hold one core for `durations[i]` seconds); returns the
    /// core-seconds each campaign got.
    fn simulate(weights: &[f64], durations: &[f64], cores: u32, horizon: f64) -> Vec<f64> {
        let mut fs = FairShare::new(DEFAULT_WINDOW_S);
        for (i, w) in weights.iter().enumerate() {
            fs.join(i, *w, 0.0);
        }
        // (end time, campaign) of the running tasks.
        let mut running: Vec<(f64, usize)> = Vec::new();
        let mut got = vec![0.0; weights.len()];
        let mut now = 0.0;
        while now < horizon {
            while running.len() < cores as usize {
                let k = fs.pick(0..weights.len(), now).expect("someone waits");
                fs.started(k, 1, now);
                running.push((now + durations[k], k));
            }
            let (i, &(end, k)) = running
                .iter()
                .enumerate()
                .min_by(|a, b| a.1 .0.total_cmp(&b.1 .0))
                .expect("running");
            running.swap_remove(i);
            now = end;
            fs.finished(k, 1, now);
            got[k] += durations[k];
        }
        got
    }

    fn shares(got: &[f64]) -> Vec<f64> {
        let total: f64 = got.iter().sum();
        got.iter().map(|g| g / total).collect()
    }

    #[test]
    fn two_to_one_weights_get_two_thirds_of_three_cores_within_twenty_seconds() {
        let got = simulate(&[2.0, 1.0], &[1.0, 1.0], 3, 20.0);
        let s = shares(&got);
        assert!((s[0] - 2.0 / 3.0).abs() < 0.01, "{s:?}");
    }

    #[test]
    fn two_to_one_weights_hold_on_two_cores_and_on_one_from_the_first_seconds() {
        // Two cores: a start-up tie (one core each) must not stick for the first minute.
        for (cores, horizon) in [(2, 10.0), (1, 10.0), (2, 300.0)] {
            let got = simulate(&[2.0, 1.0], &[0.5, 0.5], cores, horizon);
            let s = shares(&got);
            assert!(
                (s[0] - 2.0 / 3.0).abs() < 0.04,
                "{cores} core(s) over {horizon} s: {s:?}"
            );
        }
    }

    #[test]
    fn a_campaign_alone_gets_everything() {
        let mut fs = FairShare::new(DEFAULT_WINDOW_S);
        fs.join("a", 1.0, 0.0);
        fs.join("b", 1000.0, 0.0);
        // a already holds a lot; b waits for nothing: a still gets the next core.
        for t in 0..10 {
            fs.started("a", 4, t as f64);
        }
        assert_eq!(fs.pick(["a"], 10.0), Some("a"));
        assert_eq!(fs.pick(Vec::<&str>::new(), 10.0), None);
    }

    #[test]
    fn a_campaign_joins_level_with_the_least_used_one() {
        let mut fs = FairShare::new(DEFAULT_WINDOW_S);
        fs.join("a", 1.0, 0.0);
        fs.started("a", 4, 0.0);
        fs.join("b", 2.0, 120.0);
        let (a, b) = (fs.usage("a", 120.0), fs.usage("b", 120.0));
        // b has the same history per weight as a, and holds no core.
        assert!(
            (a - b - IN_USE_S * 4.0 / DEFAULT_WINDOW_S).abs() < 1e-9,
            "{a} {b}"
        );
        assert_eq!(fs.pick(["a", "b"], 120.0), Some("b"));
    }

    #[test]
    fn a_newcomer_gets_the_next_core() {
        let mut fs = FairShare::new(DEFAULT_WINDOW_S);
        fs.started("a", 1, 0.0);
        assert_eq!(fs.pick(["a", "b"], 1.0), Some("b"));
    }

    #[test]
    fn ties_go_to_the_campaign_that_started_least_recently() {
        let mut fs = FairShare::new(DEFAULT_WINDOW_S);
        fs.started("a", 1, 0.0);
        fs.finished("a", 1, 0.0);
        fs.started("b", 1, 0.0);
        fs.finished("b", 1, 0.0);
        // Equal usage: a started longer ago.
        assert_eq!(fs.pick(["b", "a"], 0.0), Some("a"));
    }

    #[test]
    fn history_fades_so_an_idle_campaign_does_not_hoard_on_return() {
        let mut fs = FairShare::new(10.0);
        // b ran alone on 4 cores for a long time, then stopped; a never ran.
        fs.started("b", 4, 0.0);
        fs.finished("b", 4, 1000.0);
        assert!(fs.usage("b", 1000.0) > 3.9);
        // Ten windows later its history is gone.
        assert!(fs.usage("b", 1100.0) < 0.01, "{}", fs.usage("b", 1100.0));
    }

    #[test]
    fn usage_counts_cores_in_use_over_the_weight() {
        let mut fs = FairShare::new(DEFAULT_WINDOW_S);
        fs.join("a", 2.0, 0.0);
        fs.started("a", 3, 0.0);
        // Three cores held for a whole window: ~0.63 of them in the history, and a second of
        // each held core.
        let u = fs.usage("a", 60.0);
        let want = (3.0 * IN_USE_S / 60.0 + 3.0 * (1.0 - (-1.0f64).exp())) / 2.0;
        assert!((u - want).abs() < 0.01, "{u} vs {want}");
        assert_eq!(fs.in_use("a"), 3);
        fs.remove("a");
        assert_eq!(fs.in_use("a"), 0);
    }

    proptest! {
        /// Over a long run where everyone has backlog, core-seconds converge to the weights,
        /// whatever the task lengths and the number of cores.
        #[test]
        fn core_seconds_converge_to_the_weights(
            weights in proptest::collection::vec(0.5f64..8.0, 2..5),
            durations in proptest::collection::vec(0.2f64..4.0, 4),
            cores in 1u32..12,
        ) {
            let durations = &durations[..weights.len()];
            let horizon = 3000.0;
            let got = simulate(&weights, durations, cores, horizon);
            let s = shares(&got);
            let total_w: f64 = weights.iter().sum();
            for (i, w) in weights.iter().enumerate() {
                let want = w / total_w;
                prop_assert!(
                    (s[i] - want).abs() < 0.05,
                    "campaign {i}: share {:.3}, weight share {:.3} (shares {s:?}, weights {weights:?}, durations {durations:?}, cores {cores})",
                    s[i], want
                );
            }
        }

        /// Instant tasks (start and end at the same moment): starts follow the weights, and
        /// every campaign starts something within a bounded number of picks.
        #[test]
        fn instant_tasks_are_shared_by_weight_and_nobody_starves(
            weights in proptest::collection::vec(0.1f64..10.0, 1..6),
            picks in 50usize..400,
        ) {
            let mut fs = FairShare::new(DEFAULT_WINDOW_S);
            for (i, w) in weights.iter().enumerate() {
                fs.join(i, *w, 0.0);
            }
            let total_w: f64 = weights.iter().sum();
            let mut count = vec![0usize; weights.len()];
            let mut last = vec![0usize; weights.len()];
            for n in 1..=picks {
                let k = fs.pick(0..weights.len(), 0.0).unwrap();
                fs.started(k, 1, 0.0);
                fs.finished(k, 1, 0.0);
                count[k] += 1;
                for (i, w) in weights.iter().enumerate() {
                    // Between two of its starts, every other campaign j starts at most
                    // w_j / w_i + 1 times.
                    let bound = (total_w / w).ceil() as usize + weights.len();
                    if i == k { last[i] = n; }
                    prop_assert!(n - last[i] <= bound, "campaign {i} (weight {w}) waited {} picks (bound {bound})", n - last[i]);
                }
            }
            for (i, w) in weights.iter().enumerate() {
                let want = picks as f64 * w / total_w;
                prop_assert!(
                    (count[i] as f64 - want).abs() <= weights.len() as f64,
                    "campaign {i}: {} starts, want {want:.2} ({count:?}, weights {weights:?})",
                    count[i]
                );
            }
        }
    }
}
