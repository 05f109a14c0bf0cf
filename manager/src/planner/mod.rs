//! The planner: how many pilots, where, how large and for how long, with a predicted time to
//! completion (TTC) and core-hours; and the discrete-event simulator that predicts and
//! replays campaigns. Pure: values in, decisions out (see `docs/planner.md`).
//!
//! Inputs are this module's own types ([`ResourceOffer`], [`WorkflowSummary`]); `offers`
//! maps the catalog and the bundle snapshot onto them.

mod aimes;
mod estimate;
pub mod offers;
pub mod planning;
pub mod queue_waits;
mod repair;
pub mod runs;
mod search;
pub mod sim;
pub mod summary;
pub mod wait;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod wait_tests;

pub use offers::Observations;
pub use planning::{
    pilot_request, pilot_requests, plan_pilots, Budget, PlanPilotsError, Planning, StrategyName,
};
pub use queue_waits::QueueWaitModel;
pub use runs::{simulate_runs, simulate_runs_with, Distribution, Runs};
pub use sim::{simulate, simulate_with, SimOptions, SimResult, WaitDraw};
pub use summary::{Join, TaskShape, WorkflowSummary};

use std::sync::Arc;
use thiserror::Error;

/// Predicted batch-queue wait (seconds), as the bundle estimator reports it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WaitEstimate {
    pub p50_s: f64,
    pub p10_s: f64,
    pub p90_s: f64,
}

/// One batch queue of a resource and its limits.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueOffer {
    pub name: String,
    pub max_walltime_s: f64,
    pub max_nodes: u32,
    /// Smallest job the queue accepts (e.g. a `prod` queue of 10 nodes and up); 1 for most.
    pub min_nodes: u32,
    /// The queue's own waits per pilot size and walltime (the bundle estimator's); `None`:
    /// the resource's `queue_wait` and `free_nodes` stand for every queue.
    pub waits: Option<Arc<QueueWaitModel>>,
}

impl QueueOffer {
    /// A queue that takes 1 to `max_nodes` nodes for up to `max_walltime_s`.
    pub fn new(name: impl Into<String>, max_walltime_s: f64, max_nodes: u32) -> QueueOffer {
        QueueOffer {
            name: name.into(),
            max_walltime_s,
            max_nodes,
            min_nodes: 1,
            waits: None,
        }
    }
}

/// What a resource offers right now: node shape, queues, load and predicted wait.
#[derive(Clone, Debug, PartialEq)]
pub struct ResourceOffer {
    pub name: String,
    pub cores_per_node: u32,
    pub gpus_per_node: u32,
    pub mem_mb_per_node: u64,
    pub queues: Vec<QueueOffer>,
    pub default_queue: String,
    /// Nodes idle now (in the default queue): without a queue's own waits, a job that fits
    /// in them is predicted to start at the p10 wait.
    pub free_nodes: u32,
    pub total_nodes: u32,
    /// The default queue's wait, standing for the queues without their own waits.
    pub queue_wait: WaitEstimate,
    pub cost_per_core_hour: f64,
}

impl ResourceOffer {
    /// The queue named `name`, if the resource has it.
    pub fn queue(&self, name: &str) -> Option<&QueueOffer> {
        self.queues.iter().find(|q| q.name == name)
    }

    /// Largest pilot (nodes) a queue of this resource accepts.
    pub(crate) fn node_limit(&self, queue: &QueueOffer) -> u32 {
        queue.max_nodes.min(self.total_nodes)
    }

    /// Smallest pilot (nodes) a queue of this resource accepts.
    pub(crate) fn node_minimum(queue: &QueueOffer) -> u32 {
        queue.min_nodes.max(1)
    }

    /// Nodes idle now in `queue`.
    pub fn idle_nodes(&self, queue: &QueueOffer) -> u32 {
        queue
            .waits
            .as_ref()
            .map_or(self.free_nodes, |w| w.free_nodes().min(self.total_nodes))
    }

    /// The wait of a pilot of `nodes` nodes asking for `walltime_s` in `queue`: its median is
    /// when the planner expects it to start, p90 / p50 its spread. From the queue's own
    /// waits when it has them (the bundle estimator's for that size and walltime: backlog,
    /// backfill, our pilots' recorded waits); else the resource's: the p10 when the pilot
    /// fits in the idle nodes (it starts at the next scheduling cycle or backfills), the
    /// median otherwise.
    pub fn pilot_wait(&self, queue: &QueueOffer, nodes: u32, walltime_s: f64) -> WaitEstimate {
        if let Some(w) = &queue.waits {
            return w.estimate(nodes, walltime_s);
        }
        let w = self.queue_wait;
        if nodes > self.free_nodes {
            return w;
        }
        let spread = if w.p50_s > 0.0 {
            w.p90_s / w.p50_s
        } else {
            1.0
        };
        WaitEstimate {
            p10_s: w.p10_s,
            p50_s: w.p10_s,
            p90_s: w.p10_s * spread,
        }
    }

    /// The predicted wait (median) of a pilot of `nodes` x `walltime_s` in `queue`.
    pub fn predicted_wait_s(&self, queue: &QueueOffer, nodes: u32, walltime_s: f64) -> f64 {
        self.pilot_wait(queue, nodes, walltime_s).p50_s
    }

    /// [`ResourceOffer::pilot_wait`] of a planned pilot (the resource's wait when it names
    /// a queue the offer does not have).
    pub fn planned_wait(&self, p: &PlannedPilot) -> WaitEstimate {
        match self.queue(&p.queue) {
            Some(q) => self.pilot_wait(q, p.nodes, p.walltime_s),
            None => self.queue_wait,
        }
    }
}

/// How the planner chooses pilots.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Strategy {
    /// The AIMES baseline (see `docs/planner.md`): late binding puts one pilot on every
    /// resource that can run the workload, early binding one pilot on the first such.
    Aimes { late_binding: bool },
    /// Minimise the predicted TTC (default).
    Ttc,
    /// Minimise the predicted TTC with requested core-hours and/or cost under a cap.
    Budget {
        max_core_hours: Option<f64>,
        max_cost: Option<f64>,
    },
}

impl Strategy {
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::Aimes { late_binding: true } => "aimes",
            Strategy::Aimes {
                late_binding: false,
            } => "aimes-early",
            Strategy::Ttc => "ttc",
            Strategy::Budget { .. } => "budget",
        }
    }
}

/// One pilot job to submit.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedPilot {
    pub resource: String,
    pub queue: String,
    pub nodes: u32,
    pub walltime_s: f64,
    pub predicted_wait_s: f64,
    /// One line on why this pilot is in the plan, for `emanager plan`.
    pub why: String,
}

/// The planner's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub strategy: Strategy,
    pub pilots: Vec<PlannedPilot>,
    /// Simulated with every pilot starting at its predicted wait.
    pub predicted_ttc_s: f64,
    pub core_hours_requested: f64,
    /// Core-hours the pilots hold without running a task, until the campaign ends (the pilot
    /// manager cancels pilots once no work is left).
    pub expected_idle_core_hours: f64,
}

impl Plan {
    /// Requested cost: core-hours of each pilot times its resource's price.
    pub fn cost(&self, offers: &[ResourceOffer]) -> f64 {
        self.pilots
            .iter()
            .map(|p| {
                let o = offers.iter().find(|o| o.name == p.resource);
                o.map_or(0.0, |o| {
                    pilot_core_hours(o, p.nodes, p.walltime_s) * o.cost_per_core_hour
                })
            })
            .sum()
    }
}

pub(crate) fn pilot_core_hours(offer: &ResourceOffer, nodes: u32, walltime_s: f64) -> f64 {
    f64::from(nodes) * f64::from(offer.cores_per_node) * walltime_s / 3600.0
}

/// Why no plan could be made.
#[derive(Clone, Debug, PartialEq, Error)]
pub enum PlanError {
    #[error("the workflow has no tasks")]
    NoTasks,
    #[error("no resources were offered")]
    NoResources,
    #[error("the workflow's dependencies form a cycle through task {task}")]
    Cycle { task: usize },
    #[error("task {task} fits on no offered resource: {reasons}")]
    TaskFitsNowhere { task: usize, reasons: String },
    #[error("resource `{resource}` names default queue `{queue}`, which it does not list")]
    UnknownQueue { resource: String, queue: String },
    #[error("no plan fits the budget: the cheapest plan found needs {core_hours:.1} core-hours and costs {cost:.2}")]
    OverBudget { core_hours: f64, cost: f64 },
    #[error("no plan within the budget finishes every task: the plans under it ({core_hours:.1} core-hours, cost {cost:.2}) leave tasks unfinished within the queues' limits")]
    NoFinishingPlanInBudget { core_hours: f64, cost: f64 },
}

/// Plans `summary` over `offers` with `strategy`.
pub fn plan(
    strategy: Strategy,
    summary: &WorkflowSummary,
    offers: &[ResourceOffer],
) -> Result<Plan, PlanError> {
    if summary.task_count == 0 {
        return Err(PlanError::NoTasks);
    }
    if offers.is_empty() {
        return Err(PlanError::NoResources);
    }
    let prep = summary::Prepared::new(summary);
    let profile = estimate::Profile::new(summary, &prep, offers)?;
    let (pilots, sized_by_search) = match strategy {
        Strategy::Aimes { late_binding } => (
            aimes::pilots(summary, offers, &profile, late_binding)?,
            false,
        ),
        Strategy::Ttc => (search::pilots(offers, &profile, None)?, true),
        Strategy::Budget { .. } => (Vec::new(), true),
    };
    let Strategy::Budget {
        max_core_hours,
        max_cost,
    } = strategy
    else {
        let searched = sized_by_search.then_some(&profile);
        let mut plans = finish(strategy, pilots, summary, &prep, offers, searched);
        return Ok(plans.swap_remove(0));
    };
    // The search checks the caps with its own walltimes; the final ones come from the
    // simulator. Search again under a tighter cap while they disagree.
    let caps = (
        max_core_hours.unwrap_or(f64::INFINITY),
        max_cost.unwrap_or(f64::INFINITY),
    );
    let mut scale = 1.0;
    // The cheapest plan found that finishes (for the error), and the last that does not.
    let mut cheapest: Option<(f64, f64)> = None;
    let mut unfinished = None;
    for _ in 0..4 {
        let budget = search::Budget {
            core_hours: caps.0 * scale,
            cost: caps.1 * scale,
        };
        let pilots = search::pilots(offers, &profile, Some(budget))?;
        let plans = finish(strategy, pilots, summary, &prep, offers, Some(&profile));
        let within = |p: &Plan| {
            p.predicted_ttc_s.is_finite()
                && p.core_hours_requested <= caps.0
                && p.cost(offers) <= caps.1
        };
        if let Some(plan) = plans.iter().find(|p| within(p)) {
            return Ok(plan.clone());
        }
        for p in plans.iter().filter(|p| p.predicted_ttc_s.is_finite()) {
            if cheapest.is_none_or(|(h, _)| p.core_hours_requested < h) {
                cheapest = Some((p.core_hours_requested, p.cost(offers)));
            }
        }
        let plan = plans.last().expect("finish returns a plan");
        let cost = plan.cost(offers);
        if !plan.predicted_ttc_s.is_finite() {
            // Too small already: a tighter cap would leave more unfinished.
            unfinished = Some((plan.core_hours_requested, cost));
            break;
        }
        scale *= (caps.0 / plan.core_hours_requested)
            .min(caps.1 / cost)
            .clamp(0.5, 0.95);
    }
    Err(match (cheapest, unfinished) {
        (Some((core_hours, cost)), _) => PlanError::OverBudget { core_hours, cost },
        (None, Some((core_hours, cost))) => PlanError::NoFinishingPlanInBudget { core_hours, cost },
        (None, None) => PlanError::OverBudget {
            core_hours: f64::INFINITY,
            cost: f64::INFINITY,
        },
    })
}

/// How walltimes of searched plans are cut.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Sizing {
    /// Margin for other pilots starting late (ttc).
    Robust,
    /// Only the simulated need plus 10 % and 600 s (budget, when robust is over the cap).
    Tight,
}

/// Completes a plan: predicted TTC and idle core-hours from a simulation in which every
/// pilot starts at its predicted wait.
///
/// When the search sized the pilots (`resize`), that simulation runs with the
/// queues' maximum walltimes, and each pilot's walltime is then cut to the end of the last
/// task it ran, times 1.1, plus 600 s; pilots that ran nothing are dropped. Cutting changes no
/// decision of that run (a walltime-aware agent took each task only if it would end before
/// the walltime, and every task it took still does), so the simulated TTC stands for the cut
/// plan. `Sizing::Robust` adds, per pilot, the largest lateness (p90 minus prediction) of the
/// other pilots: when they start late, this one has to run their share. A shorter walltime
/// may start sooner (backfill): each pilot's wait is then estimated again for its final
/// walltime, and the plan simulated again when one changed (see [`with_final_waits`]).
///
/// When that run leaves tasks unfinished, a searched plan is repaired first (`repair.rs`).
/// The `why` of a searched plan's pilots states the final wait and predicted TTC.
fn finish(
    strategy: Strategy,
    mut pilots: Vec<PlannedPilot>,
    summary: &WorkflowSummary,
    prep: &summary::Prepared,
    offers: &[ResourceOffer],
    searched: Option<&estimate::Profile>,
) -> Vec<Plan> {
    let offer_of = |p: &PlannedPilot| offers.iter().find(|o| o.name == p.resource);
    let resize = searched.is_some();
    if resize {
        for p in &mut pilots {
            if let Some(q) = offer_of(p).and_then(|o| o.queue(&p.queue)) {
                p.walltime_s = q.max_walltime_s;
            }
        }
    }
    let mut draft = Plan {
        strategy,
        pilots,
        predicted_ttc_s: 0.0,
        core_hours_requested: 0.0,
        expected_idle_core_hours: 0.0,
    };
    let mut result = sim::simulate_prepared(&draft, summary, prep, offers, &SimOptions::expected());
    if let (Some(profile), true) = (searched, result.unfinished_tasks > 0) {
        let ctx = repair::Context {
            strategy,
            summary,
            prep,
            offers,
            profile,
        };
        if let Some((pilots, repaired)) = repair::repair(&ctx, &draft.pilots, &result) {
            draft.pilots = pilots;
            result = repaired;
        }
    }
    let finals = |pilots: Vec<PlannedPilot>, result: &SimResult| {
        let (pilots, result) = with_final_waits(strategy, pilots, result, summary, prep, offers);
        let mut plan = complete(strategy, pilots, &result, offers);
        if resize {
            explain(&mut plan);
        }
        plan
    };
    if !resize || result.unfinished_tasks > 0 {
        return vec![finals(draft.pilots, &result)];
    }
    [Sizing::Robust, Sizing::Tight]
        .into_iter()
        .map(|sizing| {
            finals(
                cut_walltimes(&draft.pilots, &result, offers, sizing),
                &result,
            )
        })
        .collect()
}

/// Each pilot's wait estimated for its final size and walltime, and the simulation that
/// goes with them. When a wait changed (a cut walltime that now backfills), the plan is
/// simulated again with the new waits; should that run leave tasks unfinished that `result`
/// finished, the waits `result` used are kept (they belong to longer walltimes, so they are
/// no shorter than the pilots' own).
fn with_final_waits(
    strategy: Strategy,
    mut pilots: Vec<PlannedPilot>,
    result: &SimResult,
    summary: &WorkflowSummary,
    prep: &summary::Prepared,
    offers: &[ResourceOffer],
) -> (Vec<PlannedPilot>, SimResult) {
    let before: Vec<f64> = pilots.iter().map(|p| p.predicted_wait_s).collect();
    for p in &mut pilots {
        if let Some(o) = offers.iter().find(|o| o.name == p.resource) {
            p.predicted_wait_s = o.planned_wait(p).p50_s;
        }
    }
    if pilots
        .iter()
        .zip(&before)
        .all(|(p, w)| p.predicted_wait_s == *w)
    {
        return (pilots, result.clone());
    }
    let plan = Plan {
        strategy,
        pilots,
        predicted_ttc_s: 0.0,
        core_hours_requested: 0.0,
        expected_idle_core_hours: 0.0,
    };
    let again = sim::simulate_prepared(&plan, summary, prep, offers, &SimOptions::expected());
    let mut pilots = plan.pilots;
    if again.unfinished_tasks > result.unfinished_tasks {
        for (p, w) in pilots.iter_mut().zip(before) {
            p.predicted_wait_s = w;
        }
        return (pilots, result.clone());
    }
    (pilots, again)
}

/// Puts the plan's final numbers into each pilot's `why`: its predicted start, and the
/// predicted TTC the plan prints (both from the final simulation).
fn explain(plan: &mut Plan) {
    let end = if plan.predicted_ttc_s.is_finite() {
        format!("plan predicted to finish at {:.0} s", plan.predicted_ttc_s)
    } else {
        "the plan leaves tasks unfinished".to_string()
    };
    for p in &mut plan.pilots {
        p.why = format!(
            "predicted start after {:.0} s; {}; {end}",
            p.predicted_wait_s, p.why
        );
    }
}

/// Walltimes cut to the simulated need (see [`finish`]); pilots that ran nothing dropped.
fn cut_walltimes(
    pilots: &[PlannedPilot],
    result: &SimResult,
    offers: &[ResourceOffer],
    sizing: Sizing,
) -> Vec<PlannedPilot> {
    let offer_of = |p: &PlannedPilot| offers.iter().find(|o| o.name == p.resource);
    // How much later than predicted each pilot may start (p90 of its sampled wait).
    let lateness: Vec<f64> = pilots
        .iter()
        .zip(&result.per_pilot_last_end)
        .map(
            |(p, last)| match (last, offer_of(p).map(|o| o.planned_wait(p))) {
                (Some(_), Some(w)) if w.p50_s > 0.0 => {
                    p.predicted_wait_s * (w.p90_s / w.p50_s - 1.0).max(0.0)
                }
                _ => 0.0,
            },
        )
        .collect();
    pilots
        .iter()
        .enumerate()
        .zip(&result.per_pilot_last_end)
        .filter_map(|((i, p), last)| {
            let ran = last.map(|end| end - p.predicted_wait_s)?;
            let slack = match sizing {
                Sizing::Robust => lateness
                    .iter()
                    .enumerate()
                    .filter(|&(j, _)| j != i)
                    .map(|(_, l)| *l)
                    .fold(0.0, f64::max),
                Sizing::Tight => 0.0,
            };
            let mut p = p.clone();
            p.walltime_s = (ran * 1.1 + 600.0 + slack)
                .ceil()
                .min(p.walltime_s)
                .max(ran);
            Some(p)
        })
        .collect()
}

/// The plan with its core-hours and the idle core-hours of `result` under its walltimes.
fn complete(
    strategy: Strategy,
    pilots: Vec<PlannedPilot>,
    result: &SimResult,
    offers: &[ResourceOffer],
) -> Plan {
    let offer_of = |p: &PlannedPilot| offers.iter().find(|o| o.name == p.resource);
    let held_core_s: f64 = pilots
        .iter()
        .map(|p| {
            let cores =
                offer_of(p).map_or(0.0, |o| f64::from(p.nodes) * f64::from(o.cores_per_node));
            let until = (p.predicted_wait_s + p.walltime_s).min(result.ttc_s);
            cores * (until - p.predicted_wait_s).max(0.0)
        })
        .sum();
    Plan {
        strategy,
        core_hours_requested: pilots
            .iter()
            .map(|p| offer_of(p).map_or(0.0, |o| pilot_core_hours(o, p.nodes, p.walltime_s)))
            .sum(),
        pilots,
        predicted_ttc_s: result.ttc_s,
        expected_idle_core_hours: (held_core_s / 3600.0 - result.busy_core_hours).max(0.0),
    }
}
