//! The task graph: which tasks are ready, which become ready when one finishes, and which
//! must be canceled when one fails. Pure: indices in, indices out.
//!
//! Nodes `0..tasks` are the workflow's tasks; after them comes one virtual node per
//! [`Group`](super::Group) (a stage or an array that something depends on). A group node
//! waits for all its members and releases its dependents when the last one is DONE, so a
//! stage barrier between stages of N and M tasks costs N + M edges, not N x M. Group nodes
//! never appear in what the methods return.

use super::Workflow;

/// Dependency bookkeeping over a workflow's task indices.
#[derive(Clone, Debug)]
pub struct Dag {
    /// Number of real (task) nodes.
    tasks: usize,
    /// Children of node `v` are `children[offsets[v]..offsets[v + 1]]` (CSR).
    offsets: Vec<usize>,
    children: Vec<u32>,
    /// Parents not yet DONE, per node.
    missing: Vec<u32>,
    /// Nodes already completed (a repeated `complete` is ignored).
    done: Vec<bool>,
    /// Nodes already canceled through `fail` (their dependents are too).
    doomed: Vec<bool>,
}

/// The reason given to a task canceled because `parent` failed for good.
pub fn parent_failed_reason(parent: &str) -> String {
    format!("parent `{parent}` failed")
}

/// The reason given to a task canceled because `parent` was canceled.
pub fn parent_canceled_reason(parent: &str) -> String {
    format!("parent `{parent}` was canceled")
}

impl Dag {
    pub fn new(wf: &Workflow) -> Dag {
        let n = wf.tasks.len();
        let nodes = n + wf.groups.len();
        assert!(nodes <= u32::MAX as usize, "more than 2^32 DAG nodes");
        let barriers = stage_barriers(wf);
        let mut used = vec![false; wf.groups.len()];
        for t in &wf.tasks {
            for &g in &t.depends_on_groups {
                used[g] = true;
            }
        }
        for b in barriers.iter().flatten() {
            used[*b] = true;
        }
        // Every edge `parent -> child`, visited twice: to count, then to fill.
        let for_each_edge = |f: &mut dyn FnMut(usize, usize)| {
            for (i, t) in wf.tasks.iter().enumerate() {
                for &p in &t.depends_on {
                    f(p, i);
                }
                for &g in &t.depends_on_groups {
                    if !wf.groups[g].members.is_empty() {
                        f(n + g, i);
                    }
                }
                if let Some(b) = t.stage.and_then(|s| barriers[s]) {
                    f(n + b, i);
                }
            }
            for (g, group) in wf.groups.iter().enumerate() {
                if used[g] {
                    for &m in &group.members {
                        f(m, n + g);
                    }
                }
            }
        };
        let mut offsets = vec![0usize; nodes + 1];
        let mut missing = vec![0u32; nodes];
        for_each_edge(&mut |p, c| {
            offsets[p + 1] += 1;
            missing[c] += 1;
        });
        for v in 0..nodes {
            offsets[v + 1] += offsets[v];
        }
        let mut fill = offsets.clone();
        let mut children = vec![0u32; offsets[nodes]];
        for_each_edge(&mut |p, c| {
            children[fill[p]] = c as u32;
            fill[p] += 1;
        });
        Dag {
            tasks: n,
            offsets,
            children,
            missing,
            done: vec![false; nodes],
            doomed: vec![false; nodes],
        }
    }

    fn children_of(&self, v: usize) -> &[u32] {
        &self.children[self.offsets[v]..self.offsets[v + 1]]
    }

    /// Tasks with no parents.
    pub fn roots(&self) -> Vec<usize> {
        (0..self.tasks).filter(|&i| self.missing[i] == 0).collect()
    }

    /// Whether task `i` still waits for parents.
    pub fn is_waiting(&self, i: usize) -> bool {
        self.missing[i] > 0
    }

    /// Records that `i` is DONE; returns the children that became ready (through completed
    /// stage or array groups too). Completing a task twice releases nothing the second time.
    pub fn complete(&mut self, i: usize) -> Vec<usize> {
        let mut ready = Vec::new();
        if std::mem::replace(&mut self.done[i], true) {
            return ready;
        }
        let mut stack = vec![i];
        while let Some(v) = stack.pop() {
            for k in self.offsets[v]..self.offsets[v + 1] {
                let c = self.children[k] as usize;
                self.missing[c] = self.missing[c].saturating_sub(1);
                if self.missing[c] == 0 {
                    if c < self.tasks {
                        ready.push(c);
                    } else {
                        self.done[c] = true;
                        stack.push(c);
                    }
                }
            }
        }
        ready
    }

    /// Every task that (transitively) depends on `i`: canceled when `i` failed for good.
    pub fn dependents(&self, i: usize) -> Vec<usize> {
        let mut seen = std::collections::HashSet::new();
        let mut stack = vec![i];
        let mut out = Vec::new();
        while let Some(v) = stack.pop() {
            for &c in self.children_of(v) {
                let c = c as usize;
                if seen.insert(c) {
                    if c < self.tasks {
                        out.push(c);
                    }
                    stack.push(c);
                }
            }
        }
        out
    }

    /// Records that `i` failed for good; returns its dependents not already canceled by an
    /// earlier `fail`. Many failures in one stage then cost one walk of the later stages in
    /// total, not one per failure.
    pub fn fail(&mut self, i: usize) -> Vec<usize> {
        let mut stack = vec![i];
        let mut out = Vec::new();
        while let Some(v) = stack.pop() {
            for k in self.offsets[v]..self.offsets[v + 1] {
                let c = self.children[k] as usize;
                if !std::mem::replace(&mut self.doomed[c], true) {
                    if c < self.tasks {
                        out.push(c);
                    }
                    stack.push(c);
                }
            }
        }
        out
    }

    /// The tasks to cancel because `failed` failed for good, each with its reason.
    pub fn cancellations(&self, wf: &Workflow, failed: usize) -> Vec<(usize, String)> {
        let reason = parent_failed_reason(&wf.tasks[failed].spec.name);
        self.dependents(failed)
            .into_iter()
            .map(|t| (t, reason.clone()))
            .collect()
    }

    /// A dependency cycle as node indices in `depends_on` direction (each node depends on the
    /// next, the last on the first), or `None`. Nodes `>= tasks` are groups
    /// (`wf.groups[v - tasks]`).
    pub fn find_cycle(&self) -> Option<Vec<usize>> {
        const NEW: u8 = 0;
        const OPEN: u8 = 1;
        const CLOSED: u8 = 2;
        let nodes = self.done.len();
        let mut color = vec![NEW; nodes];
        // (node, next child position) and the open path.
        let mut stack: Vec<(usize, usize)> = Vec::new();
        for root in 0..nodes {
            if color[root] != NEW {
                continue;
            }
            color[root] = OPEN;
            stack.push((root, self.offsets[root]));
            while let Some(&mut (v, ref mut next)) = stack.last_mut() {
                if *next == self.offsets[v + 1] {
                    color[v] = CLOSED;
                    stack.pop();
                    continue;
                }
                let c = self.children[*next] as usize;
                *next += 1;
                match color[c] {
                    NEW => {
                        color[c] = OPEN;
                        stack.push((c, self.offsets[c]));
                    }
                    OPEN => {
                        // The path c -> ... -> v runs parent to child; reverse it.
                        let from = stack.iter().position(|&(u, _)| u == c).expect("open node");
                        let mut cycle: Vec<usize> = stack[from..].iter().map(|&(u, _)| u).collect();
                        cycle.reverse();
                        return Some(cycle);
                    }
                    _ => {}
                }
            }
        }
        None
    }
}

/// Per stage, the group its tasks wait for: the closest earlier stage that has tasks.
pub(crate) fn stage_barriers(wf: &Workflow) -> Vec<Option<usize>> {
    let mut previous = None;
    wf.stages
        .iter()
        .map(|s| {
            let barrier = previous;
            if !wf.groups[s.group].members.is_empty() {
                previous = Some(s.group);
            }
            barrier
        })
        .collect()
}
