//! What the planner needs to know about a workflow: task shapes, durations, dependencies and
//! their aggregates (histograms, critical path, stage widths, data volume).

use super::PlanError;
use crate::workflow::Workflow;
use pilot_agent::scheduler::Request;
use std::collections::{BTreeMap, HashMap};

/// One task as the planner sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskShape {
    pub cores: u32,
    pub gpus: u32,
    pub mem_mb: u64,
    pub processes: u32,
    /// May span nodes (MPI).
    pub multi_node: bool,
    pub est_s: f64,
    /// Indices of the tasks that must finish first.
    pub depends_on: Vec<usize>,
}

impl TaskShape {
    /// A single-node, one-process task of `cores` cores for `est_s` seconds.
    pub fn new(cores: u32, est_s: f64) -> TaskShape {
        TaskShape {
            cores,
            gpus: 0,
            mem_mb: 0,
            processes: 1,
            multi_node: false,
            est_s,
            depends_on: Vec::new(),
        }
    }

    /// The agent scheduler's request for this task.
    pub fn request(&self) -> Request {
        Request {
            cores: self.cores,
            gpus: self.gpus,
            mem_mb: self.mem_mb,
            processes: self.processes,
            multi_node: self.multi_node,
        }
    }
}

/// A set of tasks that other tasks wait for as a whole: the barrier before a stage, or an
/// array or stage named in `depends_on`. It is one virtual node of the dependency graph, so
/// "all of A before all of B" costs |A| + |B| edges, not |A| x |B| (as in the driver's DAG).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Join {
    /// Tasks that must all finish ...
    pub members: Vec<usize>,
    /// ... before these may start.
    pub dependents: Vec<usize>,
}

/// Aggregates of a workflow plus its tasks.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkflowSummary {
    pub task_count: usize,
    /// Cores per task -> number of tasks.
    pub core_histogram: BTreeMap<u32, u64>,
    /// GPUs per task -> number of tasks.
    pub gpu_histogram: BTreeMap<u32, u64>,
    pub total_core_seconds: f64,
    pub longest_task_s: f64,
    /// Longest chain of estimated durations through the dependencies.
    pub critical_path_s: f64,
    /// Tasks per dependency level (level 0 = tasks without parents).
    pub stage_widths: Vec<u64>,
    /// Input plus output bytes of all tasks.
    pub data_bytes: u64,
    pub tasks: Vec<TaskShape>,
    /// Dependencies on whole sets of tasks (stage barriers, arrays); `TaskShape::depends_on`
    /// holds the task-to-task ones.
    pub joins: Vec<Join>,
}

impl WorkflowSummary {
    /// Summarises a parsed workflow: explicit dependencies, dependencies on arrays and
    /// stages, and the barriers between consecutive stages, as the driver's DAG sees them.
    pub fn from_workflow(wf: &Workflow) -> Result<WorkflowSummary, PlanError> {
        let mut data_bytes = 0u64;
        let tasks = wf
            .tasks
            .iter()
            .map(|t| {
                let s = &t.spec;
                data_bytes += s
                    .input_files
                    .iter()
                    .chain(&s.output_files)
                    .filter_map(|f| f.size_bytes)
                    .sum::<u64>();
                TaskShape {
                    cores: s.cores,
                    gpus: s.gpus,
                    mem_mb: s.mem_mb,
                    processes: s.processes.max(1),
                    multi_node: s.mpi,
                    est_s: s.est_duration_s.max(0.0),
                    depends_on: t.depends_on.clone(),
                }
            })
            .collect();
        WorkflowSummary::from_parts(tasks, joins_of(wf), data_bytes)
    }

    /// Summarises tasks given directly (tests, benchmarks, skeletons).
    pub fn from_tasks(
        tasks: Vec<TaskShape>,
        data_bytes: u64,
    ) -> Result<WorkflowSummary, PlanError> {
        WorkflowSummary::from_parts(tasks, Vec::new(), data_bytes)
    }

    /// Summarises tasks and the sets of them that others wait for.
    pub fn from_parts(
        tasks: Vec<TaskShape>,
        joins: Vec<Join>,
        data_bytes: u64,
    ) -> Result<WorkflowSummary, PlanError> {
        let graph = children(&tasks, &joins);
        let levels = levels_with(&tasks, &graph)?;
        let mut core_histogram = BTreeMap::new();
        let mut gpu_histogram = BTreeMap::new();
        // Earliest start and finish of every node (joins take no time).
        let mut start = vec![0.0f64; graph.nodes()];
        let mut finish = vec![0.0f64; graph.nodes()];
        let mut stage_widths = Vec::new();
        for &i in &levels.order {
            finish[i] = start[i] + tasks.get(i).map_or(0.0, |t| t.est_s);
            for &c in graph.of(i) {
                start[c as usize] = start[c as usize].max(finish[i]);
            }
            if i >= tasks.len() {
                continue;
            }
            let l = levels.level[i] as usize;
            if stage_widths.len() <= l {
                stage_widths.resize(l + 1, 0);
            }
            stage_widths[l] += 1;
        }
        for t in &tasks {
            *core_histogram.entry(t.cores).or_insert(0) += 1;
            *gpu_histogram.entry(t.gpus).or_insert(0) += 1;
        }
        Ok(WorkflowSummary {
            task_count: tasks.len(),
            core_histogram,
            gpu_histogram,
            total_core_seconds: tasks.iter().map(|t| f64::from(t.cores) * t.est_s).sum(),
            longest_task_s: tasks.iter().map(|t| t.est_s).fold(0.0, f64::max),
            critical_path_s: finish.iter().copied().fold(0.0, f64::max),
            stage_widths,
            data_bytes,
            tasks,
            joins,
        })
    }

    /// Sum of all tasks' cores (the AIMES "cores of the workload").
    pub fn total_task_cores(&self) -> u64 {
        self.core_histogram
            .iter()
            .map(|(&c, &n)| u64::from(c) * n)
            .sum()
    }
}

/// The workflow's joins as the driver's DAG has them: one per array or stage that a task
/// depends on or that a stage barrier waits for (empty ones are left out, as there).
fn joins_of(wf: &Workflow) -> Vec<Join> {
    let barriers = crate::workflow::dag::stage_barriers(wf);
    let mut join_of_group: Vec<Option<usize>> = vec![None; wf.groups.len()];
    let mut joins: Vec<Join> = Vec::new();
    for (i, t) in wf.tasks.iter().enumerate() {
        let barrier = t.stage.and_then(|s| barriers[s]);
        for g in t.depends_on_groups.iter().copied().chain(barrier) {
            let members = &wf.groups[g].members;
            if members.is_empty() {
                continue;
            }
            let j = *join_of_group[g].get_or_insert_with(|| {
                joins.push(Join {
                    members: members.clone(),
                    dependents: Vec::new(),
                });
                joins.len() - 1
            });
            joins[j].dependents.push(i);
        }
    }
    joins
}

/// Nodes (tasks, then joins) in a topological order and the dependency level of each. A
/// join sits at the level its dependents start at: one past its deepest member.
pub(crate) struct Levels {
    pub order: Vec<usize>,
    pub level: Vec<u32>,
}

pub(crate) fn levels_with(tasks: &[TaskShape], children: &Children) -> Result<Levels, PlanError> {
    let n = tasks.len();
    let mut missing = children.in_degrees();
    let mut level = vec![0u32; children.nodes()];
    let mut order: Vec<usize> = (0..children.nodes()).filter(|&i| missing[i] == 0).collect();
    let mut next = 0;
    while next < order.len() {
        let i = order[next];
        next += 1;
        let step = u32::from(i < n);
        for &c in children.of(i) {
            level[c as usize] = level[c as usize].max(level[i] + step);
            missing[c as usize] -= 1;
            if missing[c as usize] == 0 {
                order.push(c as usize);
            }
        }
    }
    if order.len() < children.nodes() {
        let task = (0..n).find(|&i| missing[i] > 0).unwrap_or(0);
        return Err(PlanError::Cycle { task });
    }
    Ok(Levels { order, level })
}

/// What the estimator and the simulator derive from the tasks, computed once per `plan`.
pub(crate) struct Prepared {
    pub shapes: Vec<Shape>,
    pub shape_of: Vec<u32>,
    pub children: Children,
}

impl Prepared {
    pub fn new(summary: &WorkflowSummary) -> Prepared {
        let (shapes, shape_of) = shapes(&summary.tasks);
        Prepared {
            shapes,
            shape_of,
            children: children(&summary.tasks, &summary.joins),
        }
    }
}

/// Child lists of every node in one flat array (compressed rows). Nodes `0..tasks` are the
/// tasks, then one per [`Join`].
pub(crate) struct Children {
    start: Vec<u32>,
    list: Vec<u32>,
}

impl Children {
    pub fn of(&self, i: usize) -> &[u32] {
        &self.list[self.start[i] as usize..self.start[i + 1] as usize]
    }

    /// Tasks plus joins.
    pub fn nodes(&self) -> usize {
        self.start.len() - 1
    }

    /// Parents of every node.
    pub fn in_degrees(&self) -> Vec<u32> {
        let mut d = vec![0u32; self.nodes()];
        for &c in &self.list {
            d[c as usize] += 1;
        }
        d
    }
}

pub(crate) fn children(tasks: &[TaskShape], joins: &[Join]) -> Children {
    let n = tasks.len();
    // Every edge `parent -> child`, visited twice: to count, then to fill.
    let for_each_edge = |f: &mut dyn FnMut(usize, usize)| {
        for (i, t) in tasks.iter().enumerate() {
            for &p in &t.depends_on {
                f(p, i);
            }
        }
        for (j, join) in joins.iter().enumerate() {
            for &m in &join.members {
                f(m, n + j);
            }
            for &d in &join.dependents {
                f(n + j, d);
            }
        }
    };
    let nodes = n + joins.len();
    let mut start = vec![0u32; nodes + 1];
    for_each_edge(&mut |p, _| start[p + 1] += 1);
    for i in 0..nodes {
        start[i + 1] += start[i];
    }
    let mut fill = start.clone();
    let mut list = vec![0u32; start[nodes] as usize];
    for_each_edge(&mut |p, c| {
        list[fill[p] as usize] = c as u32;
        fill[p] += 1;
    });
    Children { start, list }
}

/// A distinct task shape (resources and duration); identical tasks share one.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Shape {
    pub request: Request,
    pub est_s: f64,
    pub count: u64,
    /// Index of the first task with this shape (for error messages).
    pub first_task: usize,
}

/// Interns the tasks' shapes: the distinct shapes and, per task, the index of its shape.
pub(crate) fn shapes(tasks: &[TaskShape]) -> (Vec<Shape>, Vec<u32>) {
    let mut index: HashMap<(u32, u32, u64, u32, bool, u64), u32, BuildFnv> = HashMap::default();
    let mut shapes: Vec<Shape> = Vec::new();
    let of_task = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let key = (
                t.cores,
                t.gpus,
                t.mem_mb,
                t.processes,
                t.multi_node,
                t.est_s.to_bits(),
            );
            let id = *index.entry(key).or_insert_with(|| {
                shapes.push(Shape {
                    request: t.request(),
                    est_s: t.est_s,
                    count: 0,
                    first_task: i,
                });
                shapes.len() as u32 - 1
            });
            shapes[id as usize].count += 1;
            id
        })
        .collect();
    (shapes, of_task)
}

/// FNV-1a: shape keys are a few small integers, so SipHash's DoS resistance buys nothing and
/// costs a third of the summary time at a million tasks.
#[derive(Default)]
pub(crate) struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

pub(crate) type BuildFnv = std::hash::BuildHasherDefault<Fnv>;
