//! Repairs a searched plan that the simulator says leaves tasks unfinished. The search ranks
//! pilots with the fluid model, which does not see every interplay of timing and capability
//! (GPU tasks only one resource can run, whose pilot's queue ends before their parents are
//! done). The simulator does: while it leaves tasks unfinished, try moving a pilot to a
//! queue with a longer walltime, doubling a pilot, or adding one on an unused resource, and
//! keep the change that leaves the fewest tasks unfinished (then the lowest TTC).

use super::estimate::Profile;
use super::sim::{simulate_prepared, SimOptions, SimResult};
use super::summary::{Prepared, WorkflowSummary};
use super::{Plan, PlannedPilot, ResourceOffer, Strategy};

/// Rounds of repair at most; each round tries every candidate once.
const ROUNDS: usize = 3;

/// What a repair simulates with.
pub(crate) struct Context<'a> {
    pub strategy: Strategy,
    pub summary: &'a WorkflowSummary,
    pub prep: &'a Prepared,
    pub offers: &'a [ResourceOffer],
    pub profile: &'a Profile,
}

/// `pilots` (at their queues' maximum walltimes, simulated as `first` with predicted waits)
/// changed until the simulation finishes every task or no candidate helps; `None` when
/// nothing left fewer tasks unfinished. Returns the pilots and their simulation.
pub(crate) fn repair(
    ctx: &Context,
    pilots: &[PlannedPilot],
    first: &SimResult,
) -> Option<(Vec<PlannedPilot>, SimResult)> {
    let simulate = |pilots: &[PlannedPilot]| {
        let draft = Plan {
            strategy: ctx.strategy,
            pilots: pilots.to_vec(),
            predicted_ttc_s: 0.0,
            core_hours_requested: 0.0,
            expected_idle_core_hours: 0.0,
        };
        simulate_prepared(
            &draft,
            ctx.summary,
            ctx.prep,
            ctx.offers,
            &SimOptions::expected(),
        )
    };
    let key = |r: &SimResult| (r.unfinished_tasks, r.ttc_s);
    let mut best: Option<(Vec<PlannedPilot>, SimResult)> = None;
    for _ in 0..ROUNDS {
        let (current, result) = best.as_ref().map_or((pilots, first), |(p, r)| (p, r));
        if result.unfinished_tasks == 0 {
            break;
        }
        let found = candidates(current, ctx.offers, ctx.profile)
            .into_iter()
            .map(|c| {
                let r = simulate(&c);
                (c, r)
            })
            .filter(|(_, r)| r.unfinished_tasks < result.unfinished_tasks)
            .min_by(|a, b| {
                key(&a.1)
                    .partial_cmp(&key(&b.1))
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
        let Some(found) = found else { break };
        best = Some(found);
    }
    best
}

/// One change each: a pilot in a queue with a longer walltime, a pilot twice as large, a
/// pilot on a resource the plan does not use yet (its longest queue).
fn candidates(
    pilots: &[PlannedPilot],
    offers: &[ResourceOffer],
    profile: &Profile,
) -> Vec<Vec<PlannedPilot>> {
    let index = |name: &str| offers.iter().position(|o| o.name == name);
    let mut out = Vec::new();
    for (i, p) in pilots.iter().enumerate() {
        let Some(o) = index(&p.resource) else {
            continue;
        };
        let offer = &offers[o];
        let Some(queue) = offer.queue(&p.queue) else {
            continue;
        };
        for q in offer
            .queues
            .iter()
            .filter(|q| q.max_walltime_s > queue.max_walltime_s)
        {
            if let Some(nodes) = fit_nodes(offer, q, p.nodes) {
                let mut c = pilots.to_vec();
                c[i] = pilot(offer, q, nodes, format!("moved from queue `{}`", p.queue));
                out.push(c);
            }
        }
        let doubled = p.nodes.saturating_mul(2).min(offer.node_limit(queue));
        if doubled > p.nodes {
            let mut c = pilots.to_vec();
            c[i] = pilot(
                offer,
                queue,
                doubled,
                format!("doubled from {} nodes", p.nodes),
            );
            out.push(c);
        }
    }
    for (o, offer) in offers.iter().enumerate() {
        if profile.runnable_share[o] <= 0.0 || pilots.iter().any(|p| p.resource == offer.name) {
            continue;
        }
        let longest = offer
            .queues
            .iter()
            .filter(|q| fit_nodes(offer, q, 1).is_some())
            .max_by(|a, b| a.max_walltime_s.total_cmp(&b.max_walltime_s));
        if let Some(q) = longest {
            let nodes = fit_nodes(offer, q, profile.wave_nodes[o]).unwrap_or(1);
            let mut c = pilots.to_vec();
            c.push(pilot(offer, q, nodes, "added".into()));
            out.push(c);
        }
    }
    out
}

/// `nodes` moved into the queue's [min, max] range, if it has one.
fn fit_nodes(offer: &ResourceOffer, q: &super::QueueOffer, nodes: u32) -> Option<u32> {
    let (min, max) = (ResourceOffer::node_minimum(q), offer.node_limit(q));
    (min <= max).then(|| nodes.clamp(min, max))
}

fn pilot(offer: &ResourceOffer, q: &super::QueueOffer, nodes: u32, change: String) -> PlannedPilot {
    PlannedPilot {
        resource: offer.name.clone(),
        queue: q.name.clone(),
        nodes,
        walltime_s: q.max_walltime_s,
        predicted_wait_s: offer.predicted_wait_s(q, nodes, q.max_walltime_s),
        why: format!(
            "{nodes} nodes in `{}`, {change}: without it the simulated campaign left tasks unfinished",
            q.name
        ),
    }
}
