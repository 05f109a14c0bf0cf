//! The `ttc` and `budget` strategies: a greedy search over (resource, queue, nodes) that adds
//! the pilot cutting the predicted TTC most while any does, keeps the fewest pilots whose TTC
//! is within a small gain of the best seen (so several pilots that each add a little but
//! together add much are kept), then shrinks each pilot to the fewest core-hours that keep
//! the TTC within 2 %.

use super::estimate::{Candidate, Profile, INFEASIBLE_S};
use super::{pilot_core_hours, PlanError, PlannedPilot, ResourceOffer};

/// Pilots beyond the first are kept only if together they cut the predicted TTC by at least
/// this share ...
const MIN_GAIN_SHARE: f64 = 0.01;
/// ... and by at least this many seconds.
const MIN_GAIN_S: f64 = 60.0;
/// When shrinking, a pilot may cost this share of TTC to save core-hours.
const RESIZE_SLACK: f64 = 0.02;
/// Walltime = time from the pilot's start to the predicted end, times this, plus the margin.
const WALLTIME_FACTOR: f64 = 1.2;
const WALLTIME_MARGIN_S: f64 = 600.0;

/// Caps for the `budget` strategy (infinite = no cap).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Budget {
    pub core_hours: f64,
    pub cost: f64,
}

/// One possible pilot: offer, queue (index into the offer's queues), nodes.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Choice {
    offer: usize,
    queue: usize,
    nodes: u32,
}

/// A set of choices with walltimes fixed and its predicted outcome.
#[derive(Clone, Debug)]
struct Evaluated {
    choices: Vec<Choice>,
    walltimes: Vec<f64>,
    ttc_s: f64,
    uncovered: usize,
    core_hours: f64,
    cost: f64,
}

impl Evaluated {
    fn within(&self, budget: Option<Budget>) -> bool {
        budget.is_none_or(|b| self.core_hours <= b.core_hours && self.cost <= b.cost)
    }

    /// Fewer uncovered shapes first, then shorter TTC, then fewer core-hours.
    fn better_than(&self, other: &Evaluated) -> bool {
        (self.uncovered, self.ttc_s, self.core_hours).partial_cmp(&(
            other.uncovered,
            other.ttc_s,
            other.core_hours,
        )) == Some(std::cmp::Ordering::Less)
    }
}

pub(crate) fn pilots(
    offers: &[ResourceOffer],
    profile: &Profile,
    budget: Option<Budget>,
) -> Result<Vec<PlannedPilot>, PlanError> {
    let choices = all_choices(offers, profile);
    let eval = |set: &[Choice]| evaluate(offers, profile, set);
    let mut current: Option<Evaluated> = None;
    let mut cheapest: Option<Evaluated> = None;
    // Every set the search went through, one pilot more each.
    let mut path: Vec<Evaluated> = Vec::new();
    loop {
        let used: Vec<usize> = current
            .as_ref()
            .map_or(Vec::new(), |c| c.choices.iter().map(|c| c.offer).collect());
        let mut best: Option<Evaluated> = None;
        for &choice in choices.iter().filter(|c| !used.contains(&c.offer)) {
            let mut set = current.as_ref().map_or(Vec::new(), |c| c.choices.clone());
            set.push(choice);
            let ev = eval(&set);
            if cheapest
                .as_ref()
                .is_none_or(|c| ev.core_hours < c.core_hours)
            {
                cheapest = Some(ev.clone());
            }
            if ev.within(budget) && best.as_ref().is_none_or(|b| ev.better_than(b)) {
                best = Some(ev);
            }
        }
        let Some(best) = best else { break };
        let accept = match &current {
            None => true,
            Some(cur) => {
                best.uncovered < cur.uncovered
                    || (best.uncovered == cur.uncovered
                        && cur.ttc_s >= INFEASIBLE_S
                        && best.ttc_s < cur.ttc_s)
                    || (best.uncovered == cur.uncovered && best.ttc_s < cur.ttc_s - 1.0)
            }
        };
        if !accept {
            break;
        }
        path.push(best.clone());
        current = Some(best);
    }
    // The fewest pilots whose TTC is within the minimum gain of the best set seen: a pilot
    // that adds little is left out, several that add much together are kept.
    if let Some(last) = path.last() {
        let (uncovered, best_ttc) = (last.uncovered, last.ttc_s);
        current = path
            .iter()
            .find(|ev| {
                ev.uncovered == uncovered
                    && (ev.ttc_s <= best_ttc * (1.0 + MIN_GAIN_SHARE)
                        || ev.ttc_s - best_ttc <= MIN_GAIN_S)
            })
            .cloned()
            .or(current);
    }
    let Some(mut current) = current else {
        let c = cheapest.map_or((0.0, 0.0), |c| (c.core_hours, c.cost));
        return Err(PlanError::OverBudget {
            core_hours: c.0,
            cost: c.1,
        });
    };
    shrink(&mut current, &choices, &eval, budget);
    if current.uncovered > 0 {
        return Err(uncovered_error(offers, profile, &current));
    }
    Ok(planned(offers, profile, &current))
}

/// For each pilot in turn, the choice on the same resource with the fewest core-hours among
/// those within `RESIZE_SLACK` of the best TTC.
fn shrink(
    current: &mut Evaluated,
    choices: &[Choice],
    eval: &dyn Fn(&[Choice]) -> Evaluated,
    budget: Option<Budget>,
) {
    let start_ttc = current.ttc_s;
    for i in 0..current.choices.len() {
        let offer = current.choices[i].offer;
        let tried: Vec<Evaluated> = choices
            .iter()
            .filter(|c| c.offer == offer)
            .map(|&c| {
                let mut set = current.choices.clone();
                set[i] = c;
                eval(&set)
            })
            .filter(|ev| ev.uncovered <= current.uncovered && ev.within(budget))
            .collect();
        let best_ttc = tried.iter().map(|e| e.ttc_s).fold(f64::INFINITY, f64::min);
        // The slack is over the TTC before any shrinking: applied pilot after pilot to the
        // TTC so far, it compounded (ten pilots gave up 5 % where 2 % was meant).
        let limit = best_ttc.min(start_ttc) * (1.0 + RESIZE_SLACK);
        if let Some(pick) = tried
            .into_iter()
            .filter(|e| e.ttc_s <= limit)
            .min_by(|a, b| a.core_hours.total_cmp(&b.core_hours))
        {
            if pick.core_hours < current.core_hours || pick.ttc_s < current.ttc_s {
                *current = pick;
            }
        }
    }
}

/// Every (offer, queue, nodes) worth trying: powers of two up to the size that runs the
/// widest level in one wave, that size itself, the idle nodes, the queue's minimum, and the
/// whole-node sizes multi-node tasks need; never outside a queue's limits.
fn all_choices(offers: &[ResourceOffer], profile: &Profile) -> Vec<Choice> {
    let mut out = Vec::new();
    for (o, offer) in offers.iter().enumerate() {
        if profile.runnable_share[o] <= 0.0 {
            continue; // its nodes fit none of the tasks
        }
        for (q, queue) in offer.queues.iter().enumerate() {
            let limit = offer.node_limit(queue);
            let minimum = ResourceOffer::node_minimum(queue);
            if limit == 0 || minimum > limit {
                continue;
            }
            let cap = profile.wave_nodes[o].clamp(minimum, limit);
            let mut sizes: Vec<u32> = std::iter::successors(Some(1u32), |n| n.checked_mul(2))
                .take_while(|&n| n < cap)
                .chain([minimum, cap, offer.idle_nodes(queue).clamp(minimum, cap)])
                .chain(profile.fit[o].iter().filter_map(|f| match f {
                    super::estimate::Fit::WholeNodes { nodes } if *nodes <= limit => Some(*nodes),
                    _ => None,
                }))
                .filter(|&n| n >= minimum)
                .collect();
            sizes.sort_unstable();
            sizes.dedup();
            out.extend(sizes.into_iter().map(|nodes| Choice {
                offer: o,
                queue: q,
                nodes,
            }));
        }
    }
    out
}

/// The predicted TTC of `set`: the fluid model with each pilot starting at its queue's
/// predicted wait for its size and walltime. Walltimes come from a first pass with the
/// queues' maximum walltimes (and their waits); the waits of those walltimes then give the
/// TTC (a shorter walltime may backfill, so start sooner).
fn evaluate(offers: &[ResourceOffer], profile: &Profile, set: &[Choice]) -> Evaluated {
    let candidate = |c: &Choice, walltime_s: f64| {
        let offer = &offers[c.offer];
        Candidate {
            offer: c.offer,
            cores: f64::from(c.nodes) * f64::from(offer.cores_per_node),
            start_s: offer.predicted_wait_s(&offer.queues[c.queue], c.nodes, walltime_s),
            walltime_s,
        }
    };
    let max_wall = |c: &Choice| offers[c.offer].queues[c.queue].max_walltime_s;
    let first: Vec<Candidate> = set.iter().map(|c| candidate(c, max_wall(c))).collect();
    let rough = profile.fluid_ttc(&first);
    let walltimes: Vec<f64> = set
        .iter()
        .zip(&first)
        .map(|(c, cand)| {
            let longest = profile.longest_fitting(c.offer, c.nodes, max_wall(c));
            let need = (rough - cand.start_s).max(longest) * WALLTIME_FACTOR + WALLTIME_MARGIN_S;
            if rough < INFEASIBLE_S {
                need.min(max_wall(c)).ceil()
            } else {
                max_wall(c)
            }
        })
        .collect();
    let sized: Vec<Candidate> = set
        .iter()
        .zip(&walltimes)
        .map(|(c, &w)| candidate(c, w))
        .collect();
    let uncovered = (0..profile.shapes.len())
        .filter(|&s| {
            !set.iter()
                .zip(&walltimes)
                .any(|(c, &w)| profile.fits_pilot(c.offer, s, c.nodes, w))
        })
        .count();
    let core_hours: Vec<f64> = set
        .iter()
        .zip(&walltimes)
        .map(|(c, &w)| pilot_core_hours(&offers[c.offer], c.nodes, w))
        .collect();
    Evaluated {
        ttc_s: profile.fluid_ttc(&sized),
        uncovered,
        cost: set
            .iter()
            .zip(&core_hours)
            .map(|(c, h)| h * offers[c.offer].cost_per_core_hour)
            .sum(),
        core_hours: core_hours.iter().sum(),
        choices: set.to_vec(),
        walltimes,
    }
}

fn uncovered_error(offers: &[ResourceOffer], profile: &Profile, ev: &Evaluated) -> PlanError {
    let s = (0..profile.shapes.len())
        .find(|&s| {
            !ev.choices
                .iter()
                .zip(&ev.walltimes)
                .any(|(c, &w)| profile.fits_pilot(c.offer, s, c.nodes, w))
        })
        .unwrap_or(0);
    let longest_queue = offers
        .iter()
        .flat_map(|o| o.queues.iter().map(|q| q.max_walltime_s))
        .fold(0.0, f64::max);
    PlanError::TaskFitsNowhere {
        task: profile.longest_task[s],
        reasons: format!(
            "it runs {:.0} s and the longest queue allows {longest_queue:.0} s, or no planned pilot has room for it",
            profile.shapes[s].est_s
        ),
    }
}

/// The chosen pilots; `why` says why this size (the plan's final wait and TTC are added
/// when it is completed).
fn planned(offers: &[ResourceOffer], profile: &Profile, ev: &Evaluated) -> Vec<PlannedPilot> {
    ev.choices
        .iter()
        .zip(&ev.walltimes)
        .map(|(c, &walltime_s)| {
            let offer = &offers[c.offer];
            let queue = &offer.queues[c.queue];
            PlannedPilot {
                resource: offer.name.clone(),
                queue: queue.name.clone(),
                nodes: c.nodes,
                walltime_s,
                predicted_wait_s: offer.predicted_wait_s(queue, c.nodes, walltime_s),
                why: format!(
                    "{} nodes ({} run the widest level in one wave)",
                    c.nodes, profile.wave_nodes[c.offer]
                ),
            }
        })
        .collect()
}
