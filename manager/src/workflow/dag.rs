//! The task graph: which tasks are ready, which become ready when one finishes, and which
//! must be canceled when one fails. Pure: indices in, indices out.

use super::Workflow;

/// Dependency bookkeeping over a workflow's task indices.
#[derive(Clone, Debug)]
pub struct Dag {
    children: Vec<Vec<usize>>,
    /// Parents not yet DONE, per task.
    missing: Vec<u32>,
}

impl Dag {
    pub fn new(wf: &Workflow) -> Dag {
        let n = wf.tasks.len();
        let mut children = vec![Vec::new(); n];
        let mut missing = vec![0u32; n];
        for (i, t) in wf.tasks.iter().enumerate() {
            for &p in &t.depends_on {
                children[p].push(i);
                missing[i] += 1;
            }
        }
        Dag { children, missing }
    }

    /// Tasks with no parents.
    pub fn roots(&self) -> Vec<usize> {
        (0..self.missing.len())
            .filter(|&i| self.missing[i] == 0)
            .collect()
    }

    /// Whether task `i` still waits for parents.
    pub fn is_waiting(&self, i: usize) -> bool {
        self.missing[i] > 0
    }

    /// Records that `i` is DONE; returns the children that became ready.
    pub fn complete(&mut self, i: usize) -> Vec<usize> {
        let mut ready = Vec::new();
        for &c in &self.children[i] {
            self.missing[c] = self.missing[c].saturating_sub(1);
            if self.missing[c] == 0 {
                ready.push(c);
            }
        }
        ready
    }

    /// Every task that (transitively) depends on `i`: canceled when `i` failed for good.
    pub fn dependents(&self, i: usize) -> Vec<usize> {
        let mut seen = vec![false; self.children.len()];
        let mut stack = vec![i];
        let mut out = Vec::new();
        while let Some(n) = stack.pop() {
            for &c in &self.children[n] {
                if !seen[c] {
                    seen[c] = true;
                    out.push(c);
                    stack.push(c);
                }
            }
        }
        out
    }
}
