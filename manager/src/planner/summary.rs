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
}

impl WorkflowSummary {
    /// Summarises a parsed workflow.
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
        WorkflowSummary::from_tasks(tasks, data_bytes)
    }

    /// Summarises tasks given directly (tests, benchmarks, skeletons).
    pub fn from_tasks(
        tasks: Vec<TaskShape>,
        data_bytes: u64,
    ) -> Result<WorkflowSummary, PlanError> {
        let levels = levels(&tasks)?;
        let mut core_histogram = BTreeMap::new();
        let mut gpu_histogram = BTreeMap::new();
        let mut finish = vec![0.0f64; tasks.len()];
        let mut stage_widths = Vec::new();
        for &i in &levels.order {
            let t = &tasks[i];
            let start = t.depends_on.iter().map(|&p| finish[p]).fold(0.0, f64::max);
            finish[i] = start + t.est_s;
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

/// Tasks in a topological order and the dependency level of each.
pub(crate) struct Levels {
    pub order: Vec<usize>,
    pub level: Vec<u32>,
}

pub(crate) fn levels(tasks: &[TaskShape]) -> Result<Levels, PlanError> {
    levels_with(tasks, &children(tasks))
}

pub(crate) fn levels_with(tasks: &[TaskShape], children: &Children) -> Result<Levels, PlanError> {
    let n = tasks.len();
    let mut missing: Vec<u32> = tasks.iter().map(|t| t.depends_on.len() as u32).collect();
    let mut level = vec![0u32; n];
    let mut order: Vec<usize> = (0..n).filter(|&i| missing[i] == 0).collect();
    let mut next = 0;
    while next < order.len() {
        let i = order[next];
        next += 1;
        for &c in children.of(i) {
            level[c as usize] = level[c as usize].max(level[i] + 1);
            missing[c as usize] -= 1;
            if missing[c as usize] == 0 {
                order.push(c as usize);
            }
        }
    }
    if order.len() < n {
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
    pub fn new(tasks: &[TaskShape]) -> Prepared {
        let (shapes, shape_of) = shapes(tasks);
        Prepared {
            shapes,
            shape_of,
            children: children(tasks),
        }
    }
}

/// Child lists of every task in one flat array (compressed rows).
pub(crate) struct Children {
    start: Vec<u32>,
    list: Vec<u32>,
}

impl Children {
    pub fn of(&self, i: usize) -> &[u32] {
        &self.list[self.start[i] as usize..self.start[i + 1] as usize]
    }
}

pub(crate) fn children(tasks: &[TaskShape]) -> Children {
    let mut start = vec![0u32; tasks.len() + 1];
    for t in tasks {
        for &p in &t.depends_on {
            start[p + 1] += 1;
        }
    }
    for i in 0..tasks.len() {
        start[i + 1] += start[i];
    }
    let mut fill = start.clone();
    let mut list = vec![0u32; start[tasks.len()] as usize];
    for (i, t) in tasks.iter().enumerate() {
        for &p in &t.depends_on {
            list[fill[p] as usize] = i as u32;
            fill[p] += 1;
        }
    }
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
