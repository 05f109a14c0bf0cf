//! The fast TTC estimate the search ranks candidate plans with: how each task shape packs on
//! each resource's nodes (with the agent scheduler), and a fluid model of late-bound work
//! flowing into pilots as they leave their queues. The chosen plan's reported TTC comes from
//! the simulator, not from here.

use super::summary::{self, BuildFnv, Prepared, Shape, WorkflowSummary};
use super::{PlanError, ResourceOffer};
use pilot_agent::scheduler::{NodeSpec, Scheduler};
use std::collections::HashMap;

/// Added to the fluid TTC of a set of pilots that cannot finish the work in their walltimes.
pub(crate) const INFEASIBLE_S: f64 = 1e9;

/// How one task shape fits one resource.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Fit {
    /// Never: the reason is reported if no resource fits.
    Never,
    /// On one node, `per_node` at once.
    OneNode { per_node: u32 },
    /// On `nodes` whole nodes (multi-node task larger than a node).
    WholeNodes { nodes: u32 },
}

/// Level groups the fluid model keeps at most (deep DAGs are merged into this many).
const MAX_LEVEL_GROUPS: usize = 512;

/// Per-workflow facts the strategies share, computed once per `plan` call.
pub(crate) struct Profile {
    /// Resource classes: tasks asking for the same cores, GPUs, memory, processes and
    /// multi-node flag, whatever their duration. `est_s` is the class's longest task.
    pub shapes: Vec<Shape>,
    /// `fit[offer][class]`.
    pub fit: Vec<Vec<Fit>>,
    /// Core-seconds of the workload on each offer, counting the cores a task makes unusable
    /// on its node (a 48-core task on a 128-core node leaves 32 idle) as used. Only the
    /// tasks the offer can run count.
    pub packed_work: Vec<f64>,
    /// Share of the workload's core-seconds each offer can run at all (1 when its nodes fit
    /// every task, 0 when they fit none).
    pub runnable_share: Vec<f64>,
    /// Per group of consecutive dependency levels: (sum of the levels' longest tasks, share of
    /// the workload's core-seconds).
    pub level_profile: Vec<(f64, f64)>,
    /// Nodes one pilot of each offer needs to run the widest level in one wave.
    pub wave_nodes: Vec<u32>,
    /// Per class, a task with the class's longest duration (for error messages: the task
    /// that no queue's walltime may hold).
    pub longest_task: Vec<usize>,
}

impl Profile {
    pub fn new(
        summary: &WorkflowSummary,
        prep: &Prepared,
        offers: &[ResourceOffer],
    ) -> Result<Profile, PlanError> {
        // Classes: shapes without their duration.
        let mut index: HashMap<(u32, u32, u64, u32, bool), u32, BuildFnv> = HashMap::default();
        let mut classes: Vec<Shape> = Vec::new();
        let mut class_work: Vec<f64> = Vec::new();
        let mut longest_task: Vec<usize> = Vec::new();
        let class_of_shape: Vec<u32> = prep
            .shapes
            .iter()
            .map(|s| {
                let r = &s.request;
                let key = (r.cores, r.gpus, r.mem_mb, r.processes, r.multi_node);
                let c = *index.entry(key).or_insert_with(|| {
                    classes.push(Shape {
                        est_s: 0.0,
                        count: 0,
                        ..s.clone()
                    });
                    class_work.push(0.0);
                    longest_task.push(s.first_task);
                    classes.len() as u32 - 1
                });
                let class = &mut classes[c as usize];
                if s.est_s > class.est_s {
                    longest_task[c as usize] = s.first_task;
                }
                class.est_s = class.est_s.max(s.est_s);
                class.count += s.count;
                class.first_task = class.first_task.min(s.first_task);
                class_work[c as usize] += s.count as f64 * s.est_s;
                c
            })
            .collect();
        let fit: Vec<Vec<Fit>> = offers
            .iter()
            .map(|o| classes.iter().map(|s| fit_of(o, s)).collect())
            .collect();
        for (ci, class) in classes.iter().enumerate() {
            if fit.iter().all(|f| f[ci] == Fit::Never) {
                let reasons = offers
                    .iter()
                    .map(|o| format!("{}: {}", o.name, why_not(o, class)))
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(PlanError::TaskFitsNowhere {
                    task: class.first_task,
                    reasons,
                });
            }
        }
        // packed[offer][class]: cores a task of the class keeps busy there.
        let packed: Vec<Vec<f64>> = offers
            .iter()
            .zip(&fit)
            .map(|(o, f)| {
                classes
                    .iter()
                    .zip(f)
                    .map(|(c, f)| packed_cores(o, c, *f))
                    .collect()
            })
            .collect();
        let packed_work = packed
            .iter()
            .map(|p| p.iter().zip(&class_work).map(|(c, w)| c * w).sum())
            .collect();
        let core_work: Vec<f64> = classes
            .iter()
            .zip(&class_work)
            .map(|(c, w)| f64::from(c.request.cores.max(1)) * w)
            .collect();
        let all_work: f64 = core_work.iter().sum();
        let runnable_share = fit
            .iter()
            .map(|f| {
                let can: f64 = f
                    .iter()
                    .zip(&core_work)
                    .filter(|(f, _)| **f != Fit::Never)
                    .map(|(_, w)| w)
                    .sum();
                if all_work > 0.0 {
                    can / all_work
                } else if f.iter().any(|f| *f != Fit::Never) {
                    1.0 // only zero-length tasks
                } else {
                    0.0
                }
            })
            .collect();
        // Walk the tasks level by level (the topological order is sorted by level).
        let levels = summary::levels_with(&summary.tasks, &prep.children)?;
        let total = summary.total_core_seconds.max(f64::MIN_POSITIVE);
        let mut per_level: Vec<(f64, f64)> = Vec::new();
        let mut widest = vec![0.0f64; offers.len()];
        let mut level_cores = vec![0.0f64; offers.len()];
        for &i in &levels.order {
            if i >= summary.tasks.len() {
                continue; // a join: its dependents carry its level
            }
            let l = levels.level[i] as usize;
            while per_level.len() <= l {
                per_level.push((0.0, 0.0));
                for (w, c) in widest.iter_mut().zip(level_cores.iter_mut()) {
                    *w = w.max(*c);
                    *c = 0.0;
                }
            }
            let t = &summary.tasks[i];
            let lp = &mut per_level[l];
            lp.0 = lp.0.max(t.est_s);
            lp.1 += f64::from(t.cores) * t.est_s / total;
            let c = class_of_shape[prep.shape_of[i] as usize] as usize;
            for (lc, p) in level_cores.iter_mut().zip(&packed) {
                *lc += p[c];
            }
        }
        for (w, c) in widest.iter_mut().zip(&level_cores) {
            *w = w.max(*c);
        }
        let group = per_level.len().div_ceil(MAX_LEVEL_GROUPS).max(1);
        let level_profile = per_level
            .chunks(group)
            .map(|g| g.iter().fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1)))
            .collect();
        let wave_nodes = offers
            .iter()
            .zip(&widest)
            .map(|(o, w)| ((w / f64::from(o.cores_per_node.max(1))).ceil() as u32).max(1))
            .collect();
        Ok(Profile {
            shapes: classes,
            fit,
            packed_work,
            runnable_share,
            level_profile,
            wave_nodes,
            longest_task,
        })
    }

    /// Whether shape `s` can run on a pilot of `nodes` nodes of offer `o` with `walltime_s`.
    pub fn fits_pilot(&self, o: usize, s: usize, nodes: u32, walltime_s: f64) -> bool {
        self.shapes[s].est_s <= walltime_s
            && match self.fit[o][s] {
                Fit::Never => false,
                Fit::OneNode { .. } => nodes >= 1,
                Fit::WholeNodes { nodes: need } => nodes >= need,
            }
    }

    /// Longest task that can run on a pilot of `nodes` nodes of offer `o`.
    pub fn longest_fitting(&self, o: usize, nodes: u32, max_walltime_s: f64) -> f64 {
        (0..self.shapes.len())
            .filter(|&s| self.fits_pilot(o, s, nodes, max_walltime_s))
            .map(|s| self.shapes[s].est_s)
            .fold(0.0, f64::max)
    }

    /// Predicted completion time of the workload on `pilots`, by the fluid model: each pilot
    /// does its share of the packed work from its start to its walltime end, never more than
    /// the share of the work its resource can run; no level can finish before its longest
    /// task, nor faster than all pilots together.
    pub fn fluid_ttc(&self, pilots: &[Candidate]) -> f64 {
        // Share of the whole workload per second, and the most each pilot can do.
        let speed: Vec<f64> = pilots
            .iter()
            .map(|p| {
                let work = self.packed_work[p.offer];
                if work > 0.0 {
                    self.runnable_share[p.offer] * p.cores / work
                } else {
                    0.0
                }
            })
            .collect();
        let done_by = |t: f64| -> f64 {
            pilots
                .iter()
                .zip(&speed)
                .map(|(p, v)| {
                    (v * (t - p.start_s).clamp(0.0, p.walltime_s)).min(self.runnable_share[p.offer])
                })
                .sum()
        };
        let horizon = pilots
            .iter()
            .map(|p| p.start_s + p.walltime_s)
            .fold(0.0, f64::max);
        if pilots.is_empty() {
            return f64::INFINITY;
        }
        let all_speed: f64 = speed.iter().sum();
        let done = done_by(horizon);
        if done < 1.0 - 1e-9 {
            // Infeasible: rank by when the rest would be done if the pilots ran on, so that
            // adding capacity still shows as progress.
            return INFEASIBLE_S + horizon + (1.0 - done) / all_speed.max(1e-12);
        }
        let (mut lo, mut hi) = (0.0, horizon);
        for _ in 0..60 {
            let mid = 0.5 * (lo + hi);
            if done_by(mid) >= 1.0 {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        let first = pilots
            .iter()
            .map(|p| p.start_s)
            .fold(f64::INFINITY, f64::min);
        let by_levels: f64 = self
            .level_profile
            .iter()
            .map(|&(longest, share)| longest.max(share / all_speed))
            .sum();
        let ttc = hi.max(first + by_levels);
        if ttc > horizon {
            // The dependency levels end after every pilot has: no task runs then.
            return INFEASIBLE_S + ttc;
        }
        ttc
    }
}

/// A pilot being considered: offer index, usable cores, predicted start and walltime.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Candidate {
    pub offer: usize,
    pub cores: f64,
    pub start_s: f64,
    pub walltime_s: f64,
}

fn node_of(o: &ResourceOffer) -> NodeSpec {
    NodeSpec {
        name: o.name.clone(),
        cores: o.cores_per_node,
        gpus: o.gpus_per_node,
        mem_mb: o.mem_mb_per_node,
    }
}

/// How shape `s` fits offer `o`, found by packing it with the agent scheduler.
fn fit_of(o: &ResourceOffer, s: &Shape) -> Fit {
    let mut one = Scheduler::new(vec![node_of(o)]);
    if one.can_ever_fit(&s.request).is_ok() {
        let mut per_node = 0;
        while one.place(&s.request).is_some() {
            per_node += 1;
        }
        return Fit::OneNode { per_node };
    }
    if !s.request.multi_node {
        return Fit::Never;
    }
    let need = |want: f64, per: f64| {
        if want <= 0.0 {
            0.0
        } else {
            (want / per).ceil()
        }
    };
    let nodes = need(f64::from(s.request.cores), f64::from(o.cores_per_node))
        .max(need(f64::from(s.request.gpus), f64::from(o.gpus_per_node)))
        .max(need(s.request.mem_mb as f64, o.mem_mb_per_node as f64));
    let limit = o.queues.iter().map(|q| o.node_limit(q)).max().unwrap_or(0);
    if nodes.is_finite() && nodes <= f64::from(limit) {
        Fit::WholeNodes {
            nodes: nodes as u32,
        }
    } else {
        Fit::Never
    }
}

fn why_not(o: &ResourceOffer, s: &Shape) -> String {
    let limit = o.queues.iter().map(|q| o.node_limit(q)).max().unwrap_or(0);
    let nodes = (0..limit.clamp(1, 4096)).map(|_| node_of(o)).collect();
    match Scheduler::new(nodes).can_ever_fit(&s.request) {
        Err(reason) => reason,
        Ok(()) => format!("its queues allow at most {limit} nodes"),
    }
}

/// Cores a task of shape `s` keeps busy on offer `o`, counting what packing leaves idle.
fn packed_cores(o: &ResourceOffer, s: &Shape, fit: Fit) -> f64 {
    let cores = match fit {
        Fit::Never => return 0.0,
        Fit::OneNode { per_node } => f64::from(o.cores_per_node) / f64::from(per_node.max(1)),
        Fit::WholeNodes { nodes } => f64::from(nodes) * f64::from(o.cores_per_node),
    };
    cores.max(f64::from(s.request.cores.min(o.cores_per_node)))
}
