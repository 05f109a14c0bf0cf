//! The generator's intermediate form: concrete stages and tasks with file names relative to
//! the data directory. Both skeleton formats produce a [`Plan`]; `build` turns it into a
//! runnable [`Workflow`](crate::workflow::Workflow).

/// A fully expanded skeleton: iterations unrolled, distributions drawn, inputs mapped.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub name: String,
    pub stages: Vec<PlanStage>,
}

/// One concrete stage (an iteration copy is a stage of its own).
#[derive(Clone, Debug, PartialEq)]
pub struct PlanStage {
    pub name: String,
    pub tasks: Vec<PlanTask>,
}

/// What a task computes for: seconds of time, or a number of floating-point additions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Work {
    Seconds(f64),
    Flops(f64),
}

/// One concrete task.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanTask {
    pub name: String,
    /// An MPI task (`processes` ranks) rather than a serial one.
    pub mpi: bool,
    /// Total cores of the task.
    pub cores: u32,
    /// Processes (ranks) the task starts.
    pub processes: u32,
    pub work: Work,
    /// Bytes per read()/write() call of the synthetic program.
    pub read_buffer: u64,
    pub write_buffer: u64,
    /// How reads, computation and writes are mixed (`Interleave_Option`, 0..=3; see
    /// `skeleton::interleave`).
    pub interleave: u32,
    pub inputs: Vec<PlanFile>,
    pub outputs: Vec<PlanFile>,
}

/// A file read or written by a task; `path` is relative to the data directory.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanFile {
    pub path: String,
    pub size: u64,
    /// A pre-existing ("filesystem") input that this task creates before reading it.
    pub create: bool,
}

impl Plan {
    pub fn task_count(&self) -> usize {
        self.stages.iter().map(|s| s.tasks.len()).sum()
    }
}

/// The first `limit` `m`-combinations of `0..n` in lexicographic order (as Python's
/// `itertools.combinations` yields them), or all of them when there are fewer.
pub fn first_combinations(n: usize, m: usize, limit: usize) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    if m > n || limit == 0 {
        return out;
    }
    let mut idx: Vec<usize> = (0..m).collect();
    loop {
        out.push(idx.clone());
        if out.len() >= limit {
            return out;
        }
        // Rightmost position that can still move forward.
        let Some(i) = (0..m).rev().find(|&i| idx[i] != i + n - m) else {
            return out;
        };
        idx[i] += 1;
        for j in i + 1..m {
            idx[j] = idx[j - 1] + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combinations_are_lexicographic_like_itertools() {
        let c = first_combinations(4, 2, usize::MAX);
        let want: Vec<Vec<usize>> = vec![
            vec![0, 1],
            vec![0, 2],
            vec![0, 3],
            vec![1, 2],
            vec![1, 3],
            vec![2, 3],
        ];
        assert_eq!(c, want);
        assert_eq!(first_combinations(4, 4, 10), vec![vec![0, 1, 2, 3]]);
        assert_eq!(first_combinations(3, 0, 10), vec![Vec::<usize>::new()]);
        assert!(first_combinations(3, 4, 10).is_empty());
        assert_eq!(first_combinations(1000, 2, 3).len(), 3);
    }
}
