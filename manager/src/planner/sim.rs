//! The discrete-event simulator: pilots wait in their queues, start, and run the workflow's
//! tasks through the agent scheduler with late binding (ready tasks, longest first, go to
//! whichever active pilot has room and enough walltime left); a pilot that reaches its
//! walltime or fails gives its unfinished tasks back to be rebound. Deterministic for a seed.

use super::summary::{Children, Prepared, Shape, WorkflowSummary};
use super::wait::WaitDistribution;
use super::{Plan, ResourceOffer};
use pilot_agent::scheduler::{NodeSpec, Request, Scheduler, Slots};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};

/// Where pilot queue waits come from.
#[derive(Clone, Debug)]
pub enum WaitDraw {
    /// Each pilot starts at its plan's `predicted_wait_s` (the planner's prediction).
    Predicted,
    /// Drawn from a lognormal with the pilot's predicted wait as median and the spread of
    /// its queue's estimate for it (p90 / p50).
    Sampled,
    /// Replayed from measured waits per resource name (resources without a trace are
    /// sampled as in `Sampled`).
    Trace(HashMap<String, Vec<f64>>),
}

/// Knobs of one simulation.
#[derive(Clone, Debug)]
pub struct SimOptions {
    pub seed: u64,
    pub waits: WaitDraw,
    /// Chance that a pilot fails at a uniformly drawn moment of its walltime.
    pub pilot_failure_prob: f64,
}

impl SimOptions {
    /// Every pilot starts at its predicted wait; nothing fails.
    pub fn expected() -> SimOptions {
        SimOptions {
            seed: 0,
            waits: WaitDraw::Predicted,
            pilot_failure_prob: 0.0,
        }
    }

    /// Waits drawn from each resource's estimate with `seed`; nothing fails.
    pub fn sampled(seed: u64) -> SimOptions {
        SimOptions {
            seed,
            waits: WaitDraw::Sampled,
            pilot_failure_prob: 0.0,
        }
    }
}

/// What a simulated campaign did.
#[derive(Clone, Debug, PartialEq)]
pub struct SimResult {
    /// When the last task finished (infinite if some never did).
    pub ttc_s: f64,
    /// When each pilot (in plan order) left its queue.
    pub per_pilot_start: Vec<f64>,
    /// When the last task bound to each pilot was due to end (`None`: it ran nothing).
    pub per_pilot_last_end: Vec<Option<f64>>,
    /// Core-seconds spent running tasks, in hours.
    pub busy_core_hours: f64,
    /// Busy core-seconds / core-seconds held by started pilots until the campaign ended.
    pub utilisation: f64,
    pub idle_core_hours: f64,
    pub unfinished_tasks: usize,
    /// Task starts lost to a pilot's end or failure and bound again.
    pub rebound_tasks: usize,
    pub failed_pilots: usize,
}

/// Simulates `plan` with waits drawn from the offers' estimates with `seed`.
pub fn simulate(
    plan: &Plan,
    summary: &WorkflowSummary,
    offers: &[ResourceOffer],
    seed: u64,
) -> SimResult {
    simulate_with(plan, summary, offers, &SimOptions::sampled(seed))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    PilotStart(usize),
    PilotEnd(usize),
    BatchDone(usize),
}

/// Tasks of one shape placed on one pilot at one moment; they finish together.
struct Batch {
    pilot: usize,
    started_s: f64,
    est_s: f64,
    tasks: Vec<(u32, Slots)>,
}

struct Pilot {
    sched: Scheduler,
    active: bool,
    start_s: f64,
    /// When the pilot ends: its walltime, or earlier if it fails.
    end_s: f64,
    /// When its walltime ends: what the agent knows and sizes tasks against.
    walltime_end_s: f64,
    /// `can_run[shape]`: the shape ever fits this pilot's nodes.
    can_run: Vec<bool>,
    batches: Vec<usize>,
    last_end_s: Option<f64>,
}

struct Sim<'a> {
    shapes: Vec<Shape>,
    shape_of: &'a [u32],
    /// Shapes, longest estimate first.
    order: Vec<usize>,
    /// Position of each shape in `order`, and the estimate at each position.
    rank_of: Vec<u32>,
    est_by_rank: Vec<f64>,
    /// Ranks of the shapes with ready tasks.
    nonempty: BTreeSet<u32>,
    /// Ready tasks per shape.
    ready: Vec<Vec<u32>>,
    /// Unfinished parents per node (tasks, then joins).
    missing: Vec<u32>,
    /// Number of tasks: nodes from here on are joins.
    tasks: usize,
    children: &'a Children,
    pilots: Vec<Pilot>,
    batches: Vec<Option<Batch>>,
    events: BinaryHeap<Reverse<(u64, u64, Event)>>,
    seq: u64,
    done: usize,
    busy_core_s: f64,
    rebound: usize,
}

/// Simulates `plan` with explicit options.
pub fn simulate_with(
    plan: &Plan,
    summary: &WorkflowSummary,
    offers: &[ResourceOffer],
    opts: &SimOptions,
) -> SimResult {
    let prep = Prepared::new(summary);
    simulate_prepared(plan, summary, &prep, offers, opts)
}

/// [`simulate_with`] over shapes and child lists computed once by the caller.
pub(crate) fn simulate_prepared(
    plan: &Plan,
    summary: &WorkflowSummary,
    prep: &Prepared,
    offers: &[ResourceOffer],
    opts: &SimOptions,
) -> SimResult {
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let (shapes, shape_of) = (prep.shapes.clone(), &prep.shape_of);
    let mut order: Vec<usize> = (0..shapes.len()).collect();
    order.sort_by(|&a, &b| shapes[b].est_s.total_cmp(&shapes[a].est_s));
    let mut rank_of = vec![0u32; shapes.len()];
    for (rank, &s) in order.iter().enumerate() {
        rank_of[s] = rank as u32;
    }
    let est_by_rank = order.iter().map(|&s| shapes[s].est_s).collect();
    let mut sim = Sim {
        ready: vec![Vec::new(); shapes.len()],
        missing: prep.children.in_degrees(),
        tasks: summary.tasks.len(),
        children: &prep.children,
        pilots: Vec::with_capacity(plan.pilots.len()),
        batches: Vec::new(),
        events: BinaryHeap::new(),
        seq: 0,
        done: 0,
        busy_core_s: 0.0,
        rebound: 0,
        shapes,
        shape_of,
        order,
        rank_of,
        est_by_rank,
        nonempty: BTreeSet::new(),
    };
    for i in 0..summary.tasks.len() {
        if sim.missing[i] == 0 {
            sim.make_ready(i as u32);
        }
    }
    // (Joins always have members, so none is satisfied before any task has run.)
    let mut failed_pilots = 0;
    for (pi, p) in plan.pilots.iter().enumerate() {
        let offer = offers.iter().find(|o| o.name == p.resource);
        let wait = match (offer, &opts.waits) {
            (_, WaitDraw::Predicted) | (None, _) => p.predicted_wait_s,
            (Some(o), WaitDraw::Trace(t)) if t.contains_key(&o.name) => {
                WaitDistribution::trace(&t[&o.name]).sample(&mut rng)
            }
            (Some(o), _) => {
                let e = o.planned_wait(p);
                let spread = if e.p50_s > 0.0 {
                    e.p90_s / e.p50_s
                } else {
                    1.0
                };
                WaitDistribution::fitted(p.predicted_wait_s, p.predicted_wait_s * spread)
                    .sample(&mut rng)
            }
        }
        .max(0.0);
        let walltime_end = wait + p.walltime_s.max(0.0);
        let mut end = walltime_end;
        if opts.pilot_failure_prob > 0.0 && rng.gen::<f64>() < opts.pilot_failure_prob {
            end = wait + rng.gen::<f64>() * p.walltime_s.max(0.0);
            failed_pilots += 1;
        }
        let nodes: Vec<NodeSpec> = match offer {
            Some(o) => (0..p.nodes)
                .map(|n| NodeSpec {
                    name: format!("{}-{n}", o.name),
                    cores: o.cores_per_node,
                    gpus: o.gpus_per_node,
                    mem_mb: o.mem_mb_per_node,
                })
                .collect(),
            None => Vec::new(),
        };
        let sched = Scheduler::new(nodes);
        let can_run = sim
            .shapes
            .iter()
            .map(|s| sched.can_ever_fit(&s.request).is_ok())
            .collect();
        sim.pilots.push(Pilot {
            sched,
            active: false,
            start_s: wait,
            end_s: end,
            walltime_end_s: walltime_end,
            can_run,
            batches: Vec::new(),
            last_end_s: None,
        });
        sim.push(wait, Event::PilotStart(pi));
        sim.push(end, Event::PilotEnd(pi));
    }
    let total = summary.tasks.len();
    let mut now = 0.0;
    while sim.done < total {
        let Some(Reverse((t, _, ev))) = sim.events.pop() else {
            break;
        };
        now = f64::from_bits(t);
        match ev {
            Event::PilotStart(p) => {
                if sim.pilots[p].end_s > now {
                    sim.pilots[p].active = true;
                    sim.bind(p, now);
                }
            }
            Event::PilotEnd(p) => sim.end_pilot(p, now),
            Event::BatchDone(b) => sim.finish_batch(b, now),
        }
    }
    let ttc_s = if sim.done == total {
        now
    } else {
        f64::INFINITY
    };
    let held_core_s: f64 = sim
        .pilots
        .iter()
        .map(|p| {
            let until = p.end_s.min(if ttc_s.is_finite() { ttc_s } else { p.end_s });
            f64::from(p.sched.total_cores()) * (until - p.start_s).max(0.0)
        })
        .sum();
    SimResult {
        ttc_s,
        per_pilot_start: sim.pilots.iter().map(|p| p.start_s).collect(),
        per_pilot_last_end: sim.pilots.iter().map(|p| p.last_end_s).collect(),
        busy_core_hours: sim.busy_core_s / 3600.0,
        utilisation: if held_core_s > 0.0 {
            (sim.busy_core_s / held_core_s).min(1.0)
        } else {
            0.0
        },
        idle_core_hours: (held_core_s - sim.busy_core_s).max(0.0) / 3600.0,
        unfinished_tasks: total - sim.done,
        rebound_tasks: sim.rebound,
        failed_pilots,
    }
}

impl Sim<'_> {
    fn push(&mut self, at: f64, ev: Event) {
        self.seq += 1;
        self.events
            .push(Reverse((at.max(0.0).to_bits(), self.seq, ev)));
    }

    /// Makes `task` ready to bind.
    fn make_ready(&mut self, task: u32) {
        let s = self.shape_of[task as usize] as usize;
        if self.ready[s].is_empty() {
            self.nonempty.insert(self.rank_of[s]);
        }
        self.ready[s].push(task);
    }

    /// Counts node `i` as finished for its children; a child with no parent left becomes
    /// ready (a task) or is finished in turn (a join). True when some task became ready.
    fn release_children(&mut self, i: usize) -> bool {
        let children = self.children;
        let mut released = false;
        for &c in children.of(i) {
            self.missing[c as usize] -= 1;
            if self.missing[c as usize] > 0 {
                continue;
            }
            if (c as usize) < self.tasks {
                self.make_ready(c);
                released = true;
            } else {
                // A join's children are tasks: this recursion is one level deep.
                released |= self.release_children(c as usize);
            }
        }
        released
    }

    /// Places ready tasks on pilot `p`, longest first, while it has room and time. Like an
    /// agent with bounded look-ahead it gives up after `MAX_MISSES` shapes that do not fit
    /// now (and skips at most `MAX_SKIPS` shapes this pilot can never run), so a workload of
    /// a million distinct durations stays linear.
    fn bind(&mut self, p: usize, now: f64) {
        const MAX_MISSES: usize = 64;
        const MAX_SKIPS: usize = 10_000;
        if self.pilots[p].sched.free_cores() == 0 {
            return;
        }
        let left = self.pilots[p].walltime_end_s - now;
        // Ranks are sorted longest first: skip those longer than the time left.
        let mut next = self.est_by_rank.partition_point(|&e| e > left) as u32;
        let (mut misses, mut skips) = (0, 0);
        let mut missed: Vec<Request> = Vec::new();
        while let Some(&rank) = self.nonempty.range(next..).next() {
            next = rank + 1;
            let s = self.order[rank as usize];
            if !self.pilots[p].can_run[s] {
                skips += 1;
                if skips > MAX_SKIPS {
                    break;
                }
                continue;
            }
            let shape = &self.shapes[s];
            let free = self.pilots[p].sched.free_cores();
            if shape.request.cores > free || missed.contains(&shape.request) {
                misses += 1;
                if misses >= MAX_MISSES {
                    break;
                }
                continue;
            }
            let pilot = &mut self.pilots[p];
            let mut tasks = Vec::new();
            while let Some(&task) = self.ready[s].last() {
                let Some(slots) = pilot.sched.place(&shape.request) else {
                    break;
                };
                self.ready[s].pop();
                self.busy_core_s += f64::from(slots.core_count()) * shape.est_s;
                tasks.push((task, slots));
            }
            if self.ready[s].is_empty() {
                self.nonempty.remove(&rank);
            }
            if tasks.is_empty() {
                missed.push(shape.request.clone());
                misses += 1;
                if misses >= MAX_MISSES {
                    break;
                }
                continue;
            }
            let id = self.batches.len();
            let est_s = shape.est_s;
            self.batches.push(Some(Batch {
                pilot: p,
                started_s: now,
                est_s,
                tasks,
            }));
            let pilot = &mut self.pilots[p];
            pilot.batches.push(id);
            pilot.last_end_s = Some(pilot.last_end_s.unwrap_or(0.0).max(now + est_s));
            self.push(now + est_s, Event::BatchDone(id));
            if self.pilots[p].sched.free_cores() == 0 {
                break;
            }
        }
    }

    fn finish_batch(&mut self, b: usize, now: f64) {
        let Some(batch) = self.batches[b].take() else {
            return; // its pilot ended first
        };
        let p = batch.pilot;
        let mut released = false;
        for (task, slots) in &batch.tasks {
            self.pilots[p].sched.release(slots);
            self.done += 1;
            released |= self.release_children(*task as usize);
        }
        if released {
            for q in 0..self.pilots.len() {
                if self.pilots[q].active {
                    self.bind(q, now);
                }
            }
        } else {
            self.bind(p, now);
        }
    }

    fn end_pilot(&mut self, p: usize, now: f64) {
        self.pilots[p].active = false;
        let batches = std::mem::take(&mut self.pilots[p].batches);
        for b in batches {
            if let Some(batch) = self.batches[b].take() {
                let lost = (batch.started_s + batch.est_s - now).max(0.0);
                for (task, slots) in batch.tasks {
                    self.busy_core_s -= f64::from(slots.core_count()) * lost;
                    self.pilots[p].sched.release(&slots);
                    self.make_ready(task);
                    self.rebound += 1;
                }
            }
        }
        for q in 0..self.pilots.len() {
            if self.pilots[q].active {
                self.bind(q, now);
            }
        }
    }
}
