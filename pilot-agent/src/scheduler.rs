//! The agent's core-packing scheduler: which cores, GPUs and memory of the allocation a task
//! gets. Pure: no I/O, no clock; the agent loop calls [`Scheduler::place`] when a task is
//! ready and [`Scheduler::release`] when it ends.
//!
//! Per node it keeps a bitmap of free cores, a bitmap of free GPUs and the free memory, plus
//! per-node free counts so that full nodes are skipped without touching their bitmaps.
//! Placement is continuous first-fit from a rotating offset: the search for the next task
//! starts at the node after the one that took the previous task, so consecutive small tasks
//! rotate over the nodes instead of piling onto node 0 and rescanning it every time.
//!
//! A single-node task stays on one node. A `multi_node` task that no single node can ever
//! hold takes whole, completely free nodes (all their cores, GPUs and memory) until its
//! cores, GPUs and memory are covered: `ceil(cores / node.cores)` nodes on a uniform
//! allocation.

/// One node of the allocation, as discovery found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSpec {
    pub name: String,
    pub cores: u32,
    pub gpus: u32,
    pub mem_mb: u64,
}

/// What one task asks for. `cores`, `gpus` and `mem_mb` are totals for the task;
/// `processes` is the number of ranks (`cores` is divisible by it); `multi_node` says the task
/// may span nodes (MPI).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub cores: u32,
    pub gpus: u32,
    pub mem_mb: u64,
    pub processes: u32,
    pub multi_node: bool,
}

impl Request {
    /// A one-process, single-node request for `cores` cores and nothing else.
    pub fn cores(cores: u32) -> Request {
        Request {
            cores,
            gpus: 0,
            mem_mb: 0,
            processes: 1,
            multi_node: false,
        }
    }
}

/// The part of a placement on one node: node index (into [`Scheduler::nodes`]), core and
/// GPU indices on that node, and the memory taken there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSlots {
    pub node: usize,
    pub cores: Vec<u32>,
    pub gpus: Vec<u32>,
    pub mem_mb: u64,
}

/// Where a task runs: one entry per node it uses (one for a single-node task).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slots {
    pub nodes: Vec<NodeSlots>,
}

impl Slots {
    /// All core indices, node after node (for a single-node task: its affinity list).
    pub fn core_list(&self) -> Vec<u32> {
        self.nodes
            .iter()
            .flat_map(|n| n.cores.iter().copied())
            .collect()
    }

    /// All GPU indices, node after node (for a single-node task: `CUDA_VISIBLE_DEVICES`).
    pub fn gpu_list(&self) -> Vec<u32> {
        self.nodes
            .iter()
            .flat_map(|n| n.gpus.iter().copied())
            .collect()
    }

    /// Number of cores held.
    pub fn core_count(&self) -> u32 {
        self.nodes.iter().map(|n| n.cores.len() as u32).sum()
    }

    /// Number of GPUs held.
    pub fn gpu_count(&self) -> u32 {
        self.nodes.iter().map(|n| n.gpus.len() as u32).sum()
    }

    /// True when the placement spans more than one node (launch with srun/mpirun).
    pub fn is_multi_node(&self) -> bool {
        self.nodes.len() > 1
    }
}

/// A fixed-size set of indices `0..len` stored as bits in u64 words; a set bit is free.
#[derive(Clone, Debug)]
struct FreeBits {
    words: Vec<u64>,
}

impl FreeBits {
    fn all_free(len: u32) -> FreeBits {
        let len = len as usize;
        let mut words = vec![u64::MAX; len.div_ceil(64)];
        if !len.is_multiple_of(64) {
            if let Some(last) = words.last_mut() {
                *last = (1u64 << (len % 64)) - 1;
            }
        }
        FreeBits { words }
    }

    /// Takes the `count` lowest free indices into `out`; the caller has checked they exist.
    fn take(&mut self, count: u32, out: &mut Vec<u32>) {
        let mut left = count;
        for (w, word) in self.words.iter_mut().enumerate() {
            while left > 0 && *word != 0 {
                let bit = word.trailing_zeros();
                *word &= *word - 1;
                out.push(w as u32 * 64 + bit);
                left -= 1;
            }
            if left == 0 {
                return;
            }
        }
        debug_assert_eq!(left, 0, "free count and bitmap disagree");
    }

    /// Frees `index`; returns false (and changes nothing) if it was not taken.
    fn give_back(&mut self, index: u32) -> bool {
        let (w, bit) = ((index / 64) as usize, index % 64);
        match self.words.get_mut(w) {
            Some(word) if *word & (1 << bit) == 0 => {
                *word |= 1 << bit;
                true
            }
            _ => false,
        }
    }
}

/// Free resources of one node.
#[derive(Clone, Debug)]
struct NodeFree {
    cores: FreeBits,
    gpus: FreeBits,
    mem_mb: u64,
}

/// The packing scheduler over one pilot's nodes.
#[derive(Clone, Debug)]
pub struct Scheduler {
    nodes: Vec<NodeSpec>,
    free: Vec<NodeFree>,
    /// Free cores / GPUs per node, kept apart from the bitmaps so a scan over full nodes
    /// touches one small contiguous array.
    free_cores_per_node: Vec<u32>,
    free_gpus_per_node: Vec<u32>,
    free_cores: u32,
    free_gpus: u32,
    total_cores: u32,
    /// The node where the next search starts.
    offset: usize,
    max_cores: u32,
    max_gpus: u32,
    max_mem_mb: u64,
}

impl Scheduler {
    /// A scheduler with every core, GPU and byte of memory of `nodes` free.
    pub fn new(nodes: Vec<NodeSpec>) -> Self {
        let free = nodes
            .iter()
            .map(|n| NodeFree {
                cores: FreeBits::all_free(n.cores),
                gpus: FreeBits::all_free(n.gpus),
                mem_mb: n.mem_mb,
            })
            .collect();
        let total_cores = nodes.iter().map(|n| n.cores).sum();
        let total_gpus = nodes.iter().map(|n| n.gpus).sum();
        Scheduler {
            free,
            free_cores_per_node: nodes.iter().map(|n| n.cores).collect(),
            free_gpus_per_node: nodes.iter().map(|n| n.gpus).collect(),
            free_cores: total_cores,
            free_gpus: total_gpus,
            total_cores,
            offset: 0,
            max_cores: nodes.iter().map(|n| n.cores).max().unwrap_or(0),
            max_gpus: nodes.iter().map(|n| n.gpus).max().unwrap_or(0),
            max_mem_mb: nodes.iter().map(|n| n.mem_mb).max().unwrap_or(0),
            nodes,
        }
    }

    /// The nodes, in the order [`NodeSlots::node`] indexes them.
    pub fn nodes(&self) -> &[NodeSpec] {
        &self.nodes
    }

    /// The names of the nodes a placement uses, in order (for host lists of srun/mpirun).
    pub fn node_names<'a>(&'a self, slots: &Slots) -> Vec<&'a str> {
        slots
            .nodes
            .iter()
            .map(|n| self.nodes[n.node].name.as_str())
            .collect()
    }

    pub fn free_cores(&self) -> u32 {
        self.free_cores
    }

    pub fn total_cores(&self) -> u32 {
        self.total_cores
    }

    pub fn free_gpus(&self) -> u32 {
        self.free_gpus
    }

    /// Whether `req` could be placed on this allocation when it is empty; `Err` says why not
    /// in words a user can act on.
    pub fn can_ever_fit(&self, req: &Request) -> Result<(), String> {
        if req.cores == 0 {
            return Err("task asks for 0 cores; it needs at least 1".into());
        }
        if req.processes == 0 {
            return Err("task asks for 0 processes; it needs at least 1".into());
        }
        if !req.cores.is_multiple_of(req.processes) {
            return Err(format!(
                "task asks for {} cores in {} processes; cores must be a multiple of processes",
                req.cores, req.processes
            ));
        }
        if self.fits_one_node(req) {
            return Ok(());
        }
        if req.multi_node {
            let cores: u64 = self.nodes.iter().map(|n| u64::from(n.cores)).sum();
            let gpus: u64 = self.nodes.iter().map(|n| u64::from(n.gpus)).sum();
            let mem: u64 = self.nodes.iter().map(|n| n.mem_mb).sum();
            let n = self.nodes.len();
            if u64::from(req.cores) > cores {
                return Err(format!(
                    "task asks for {} cores; the whole allocation ({n} nodes) has {cores}",
                    req.cores
                ));
            }
            if u64::from(req.gpus) > gpus {
                return Err(format!(
                    "task asks for {} GPUs; the whole allocation ({n} nodes) has {gpus}",
                    req.gpus
                ));
            }
            if req.mem_mb > mem {
                return Err(format!(
                    "task asks for {} MB of memory; the whole allocation ({n} nodes) has {mem}",
                    req.mem_mb
                ));
            }
            return Ok(());
        }
        Err(if req.cores > self.max_cores {
            format!(
                "task asks for {} cores on one node; the largest node has {}",
                req.cores, self.max_cores
            )
        } else if req.gpus > self.max_gpus {
            format!(
                "task asks for {} GPUs on one node; the node with most GPUs has {}",
                req.gpus, self.max_gpus
            )
        } else if req.mem_mb > self.max_mem_mb {
            format!(
                "task asks for {} MB of memory on one node; the largest node has {} MB",
                req.mem_mb, self.max_mem_mb
            )
        } else {
            format!(
                "task asks for {} cores, {} GPUs and {} MB on one node; no node has all three",
                req.cores, req.gpus, req.mem_mb
            )
        })
    }

    fn fits_one_node(&self, req: &Request) -> bool {
        self.nodes
            .iter()
            .any(|n| req.cores <= n.cores && req.gpus <= n.gpus && req.mem_mb <= n.mem_mb)
    }

    /// Places `req` now, or returns `None` when it does not fit at the moment (or ever: ask
    /// [`Scheduler::can_ever_fit`] first to tell the two apart).
    pub fn place(&mut self, req: &Request) -> Option<Slots> {
        if req.cores == 0 || req.processes == 0 || !req.cores.is_multiple_of(req.processes) {
            return None;
        }
        if req.cores > self.free_cores || req.gpus > self.free_gpus {
            return None;
        }
        if req.cores <= self.max_cores
            && req.gpus <= self.max_gpus
            && req.mem_mb <= self.max_mem_mb
            && (!req.multi_node || self.fits_one_node(req))
        {
            self.place_on_one_node(req)
        } else if req.multi_node {
            self.place_on_whole_nodes(req)
        } else {
            None
        }
    }

    fn place_on_one_node(&mut self, req: &Request) -> Option<Slots> {
        let n = self.nodes.len();
        let start = self.offset;
        let node = (start..n).chain(0..start).find(|&i| {
            self.free_cores_per_node[i] >= req.cores
                && self.free_gpus_per_node[i] >= req.gpus
                && self.free[i].mem_mb >= req.mem_mb
        })?;
        self.offset = if node + 1 == n { 0 } else { node + 1 };
        Some(Slots {
            nodes: vec![self.take(node, req.cores, req.gpus, req.mem_mb)],
        })
    }

    fn place_on_whole_nodes(&mut self, req: &Request) -> Option<Slots> {
        let n = self.nodes.len();
        let start = self.offset;
        let (mut cores, mut gpus, mut mem) = (0u64, 0u64, 0u64);
        let mut chosen = Vec::new();
        for i in (start..n).chain(0..start) {
            if !self.is_whole_node_free(i) {
                continue;
            }
            chosen.push(i);
            cores += u64::from(self.nodes[i].cores);
            gpus += u64::from(self.nodes[i].gpus);
            mem += self.nodes[i].mem_mb;
            if cores >= u64::from(req.cores) && gpus >= u64::from(req.gpus) && mem >= req.mem_mb {
                let last = *chosen.last().unwrap_or(&0);
                self.offset = if last + 1 == n { 0 } else { last + 1 };
                let nodes = chosen
                    .into_iter()
                    .map(|i| {
                        let spec = &self.nodes[i];
                        let (c, g, m) = (spec.cores, spec.gpus, spec.mem_mb);
                        self.take(i, c, g, m)
                    })
                    .collect();
                return Some(Slots { nodes });
            }
        }
        None
    }

    fn is_whole_node_free(&self, i: usize) -> bool {
        let spec = &self.nodes[i];
        self.free_cores_per_node[i] == spec.cores
            && self.free_gpus_per_node[i] == spec.gpus
            && self.free[i].mem_mb == spec.mem_mb
    }

    /// Takes resources on node `i`; the caller has checked the free counts.
    fn take(&mut self, i: usize, cores: u32, gpus: u32, mem_mb: u64) -> NodeSlots {
        let free = &mut self.free[i];
        let mut core_ids = Vec::with_capacity(cores as usize);
        free.cores.take(cores, &mut core_ids);
        let mut gpu_ids = Vec::with_capacity(gpus as usize);
        free.gpus.take(gpus, &mut gpu_ids);
        free.mem_mb -= mem_mb;
        self.free_cores_per_node[i] -= cores;
        self.free_gpus_per_node[i] -= gpus;
        self.free_cores -= cores;
        self.free_gpus -= gpus;
        NodeSlots {
            node: i,
            cores: core_ids,
            gpus: gpu_ids,
            mem_mb,
        }
    }

    /// Gives back what [`Scheduler::place`] handed out. Releasing a core or GPU that is
    /// already free, or a node index out of range, is ignored (and asserted in debug builds)
    /// so the free counts always match the bitmaps.
    pub fn release(&mut self, slots: &Slots) {
        for ns in &slots.nodes {
            let Some(free) = self.free.get_mut(ns.node) else {
                debug_assert!(false, "release on unknown node {}", ns.node);
                continue;
            };
            let mut cores = 0;
            for &c in &ns.cores {
                if free.cores.give_back(c) {
                    cores += 1;
                } else {
                    debug_assert!(false, "core {c} of node {} released twice", ns.node);
                }
            }
            let mut gpus = 0;
            for &g in &ns.gpus {
                if free.gpus.give_back(g) {
                    gpus += 1;
                } else {
                    debug_assert!(false, "GPU {g} of node {} released twice", ns.node);
                }
            }
            let cap = self.nodes[ns.node].mem_mb;
            free.mem_mb = (free.mem_mb + ns.mem_mb).min(cap);
            self.free_cores_per_node[ns.node] += cores;
            self.free_gpus_per_node[ns.node] += gpus;
            self.free_cores += cores;
            self.free_gpus += gpus;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn node(name: &str, cores: u32, gpus: u32, mem_mb: u64) -> NodeSpec {
        NodeSpec {
            name: name.into(),
            cores,
            gpus,
            mem_mb,
        }
    }

    fn uniform(n: usize, cores: u32, gpus: u32, mem_mb: u64) -> Scheduler {
        Scheduler::new(
            (0..n)
                .map(|i| node(&format!("n{i}"), cores, gpus, mem_mb))
                .collect(),
        )
    }

    fn req(cores: u32, gpus: u32, mem_mb: u64, multi_node: bool) -> Request {
        Request {
            cores,
            gpus,
            mem_mb,
            processes: 1,
            multi_node,
        }
    }

    #[test]
    fn exact_fit_takes_the_whole_node_then_nothing_more() {
        let mut s = uniform(1, 8, 2, 1000);
        let slots = s.place(&req(8, 2, 1000, false)).expect("exact fit");
        assert_eq!(slots.core_list(), (0..8).collect::<Vec<_>>());
        assert_eq!(slots.gpu_list(), vec![0, 1]);
        assert_eq!((s.free_cores(), s.free_gpus()), (0, 0));
        assert!(s.place(&Request::cores(1)).is_none());
    }

    #[test]
    fn gpus_are_bound_to_distinct_devices() {
        let mut s = uniform(1, 16, 4, 0);
        let a = s.place(&req(2, 2, 0, false)).unwrap();
        let b = s.place(&req(2, 2, 0, false)).unwrap();
        assert_eq!(a.gpu_list(), vec![0, 1]);
        assert_eq!(b.gpu_list(), vec![2, 3]);
        assert!(s.place(&req(1, 1, 0, false)).is_none());
        assert!(s.place(&req(1, 0, 0, false)).is_some());
    }

    #[test]
    fn memory_limits_placement_even_with_free_cores() {
        let mut s = uniform(1, 8, 0, 1000);
        let a = s.place(&req(1, 0, 600, false)).unwrap();
        assert!(s.place(&req(1, 0, 600, false)).is_none());
        s.release(&a);
        assert!(s.place(&req(1, 0, 600, false)).is_some());
    }

    #[test]
    fn single_node_task_never_spans_nodes() {
        let mut s = uniform(2, 4, 0, 0);
        s.place(&req(3, 0, 0, false)).unwrap();
        s.place(&req(3, 0, 0, false)).unwrap();
        assert_eq!(s.free_cores(), 2);
        assert!(s.place(&req(2, 0, 0, false)).is_none());
    }

    #[test]
    fn multi_node_task_takes_ceil_cores_over_node_cores_whole_nodes() {
        let mut s = uniform(4, 128, 0, 1000);
        let r = Request {
            cores: 200,
            gpus: 0,
            mem_mb: 0,
            processes: 200,
            multi_node: true,
        };
        let slots = s.place(&r).expect("two whole nodes");
        assert_eq!(slots.nodes.len(), 2);
        assert!(slots.is_multi_node());
        assert_eq!(slots.core_count(), 256);
        assert_eq!(s.free_cores(), 256);
        assert_eq!(s.node_names(&slots), vec!["n0", "n1"]);
    }

    #[test]
    fn multi_node_task_waits_for_whole_free_nodes() {
        let mut s = uniform(2, 4, 0, 0);
        let small = s.place(&Request::cores(1)).unwrap();
        assert!(s.place(&req(8, 0, 0, true)).is_none());
        s.release(&small);
        assert!(s.place(&req(8, 0, 0, true)).is_some());
    }

    #[test]
    fn multi_node_task_that_fits_one_node_stays_on_one() {
        let mut s = uniform(2, 8, 0, 0);
        let slots = s.place(&req(6, 0, 0, true)).unwrap();
        assert_eq!(slots.nodes.len(), 1);
        assert_eq!(s.free_cores(), 10);
    }

    #[test]
    fn release_restores_every_count() {
        let mut s = uniform(3, 16, 2, 4000);
        let a = s.place(&req(5, 1, 1000, false)).unwrap();
        let b = s.place(&req(32, 0, 0, true)).unwrap();
        s.release(&a);
        s.release(&b);
        assert_eq!((s.free_cores(), s.free_gpus()), (48, 6));
        assert!((0..3).all(|i| s.is_whole_node_free(i)));
        assert!(s.place(&req(48, 6, 12000, true)).is_some());
    }

    #[test]
    fn consecutive_small_tasks_rotate_over_nodes() {
        let mut s = uniform(3, 4, 0, 0);
        let used: Vec<usize> = (0..4)
            .map(|_| s.place(&Request::cores(1)).unwrap().nodes[0].node)
            .collect();
        assert_eq!(used, vec![0, 1, 2, 0]);
    }

    #[test]
    fn can_ever_fit_names_the_limit() {
        let s = uniform(2, 128, 4, 1000);
        assert_eq!(
            s.can_ever_fit(&req(256, 0, 0, false)),
            Err("task asks for 256 cores on one node; the largest node has 128".into())
        );
        assert!(s.can_ever_fit(&req(256, 0, 0, true)).is_ok());
        assert!(s
            .can_ever_fit(&req(257, 0, 0, true))
            .unwrap_err()
            .contains("has 256"));
        assert!(s
            .can_ever_fit(&req(1, 5, 0, false))
            .unwrap_err()
            .contains("GPUs"));
        assert!(s
            .can_ever_fit(&req(1, 0, 2000, false))
            .unwrap_err()
            .contains("MB"));
        let bad_ranks = Request {
            processes: 3,
            ..req(4, 0, 0, false)
        };
        assert!(s.can_ever_fit(&bad_ranks).unwrap_err().contains("multiple"));
        assert!(s.can_ever_fit(&req(0, 0, 0, false)).is_err());
    }

    #[test]
    fn no_node_with_everything_together_is_reported() {
        let s = Scheduler::new(vec![node("cpu", 64, 0, 100), node("gpu", 8, 4, 100)]);
        let err = s.can_ever_fit(&req(32, 2, 0, false)).unwrap_err();
        assert!(err.contains("no node has all three"), "{err}");
    }

    #[test]
    fn core_bitmaps_beyond_one_word_work() {
        let mut s = uniform(1, 130, 0, 0);
        let a = s.place(&req(129, 0, 0, false)).unwrap();
        assert_eq!(a.core_list().last(), Some(&128));
        let b = s.place(&Request::cores(1)).unwrap();
        assert_eq!(b.core_list(), vec![129]);
        assert!(s.place(&Request::cores(1)).is_none());
    }

    // ---- property tests -------------------------------------------------------------

    fn arb_nodes() -> impl Strategy<Value = Vec<NodeSpec>> {
        prop::collection::vec((1u32..=140, 0u32..=4, 0u64..=4000), 1..6).prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (c, g, m))| node(&format!("n{i}"), c, g, m))
                .collect()
        })
    }

    fn arb_request() -> impl Strategy<Value = Request> {
        (1u32..=300, 0u32..=6, 0u64..=6000, 1u32..=4, any::<bool>()).prop_map(
            |(cores, gpus, mem_mb, procs, multi_node)| {
                let processes = if cores % procs == 0 { procs } else { 1 };
                Request {
                    cores,
                    gpus,
                    mem_mb,
                    processes,
                    multi_node,
                }
            },
        )
    }

    /// Checks the scheduler's counts and bitmaps against the placements the test holds.
    fn check_consistent(s: &Scheduler, held: &[Slots]) {
        let mut used_cores = std::collections::HashSet::new();
        let mut used_gpus = std::collections::HashSet::new();
        let mut used_mem = vec![0u64; s.nodes.len()];
        for slots in held {
            for ns in &slots.nodes {
                for &c in &ns.cores {
                    assert!(c < s.nodes[ns.node].cores);
                    assert!(used_cores.insert((ns.node, c)), "core handed out twice");
                }
                for &g in &ns.gpus {
                    assert!(g < s.nodes[ns.node].gpus);
                    assert!(used_gpus.insert((ns.node, g)), "GPU handed out twice");
                }
                used_mem[ns.node] += ns.mem_mb;
            }
        }
        for (i, spec) in s.nodes.iter().enumerate() {
            assert!(used_mem[i] <= spec.mem_mb, "memory over-committed");
            assert_eq!(s.free[i].mem_mb, spec.mem_mb - used_mem[i]);
            let bits: u32 = s.free[i].cores.words.iter().map(|w| w.count_ones()).sum();
            assert_eq!(bits, s.free_cores_per_node[i]);
            let gbits: u32 = s.free[i].gpus.words.iter().map(|w| w.count_ones()).sum();
            assert_eq!(gbits, s.free_gpus_per_node[i]);
        }
        assert_eq!(
            s.free_cores() as usize,
            s.total_cores() as usize - used_cores.len()
        );
        let total_gpus: u32 = s.nodes.iter().map(|n| n.gpus).sum();
        assert_eq!(
            s.free_gpus() as usize,
            total_gpus as usize - used_gpus.len()
        );
    }

    proptest! {
        #[test]
        fn random_place_release_keeps_every_invariant(
            nodes in arb_nodes(),
            ops in prop::collection::vec((arb_request(), any::<bool>(), any::<prop::sample::Index>()), 1..80),
        ) {
            let mut s = Scheduler::new(nodes);
            let mut held: Vec<Slots> = Vec::new();
            for (r, release, pick) in ops {
                if release && !held.is_empty() {
                    let slots = held.swap_remove(pick.index(held.len()));
                    s.release(&slots);
                } else if let Some(slots) = s.place(&r) {
                    prop_assert!(s.can_ever_fit(&r).is_ok());
                    prop_assert!(slots.core_count() >= r.cores);
                    prop_assert!(slots.gpu_count() >= r.gpus);
                    prop_assert!(slots.nodes.iter().map(|n| n.mem_mb).sum::<u64>() >= r.mem_mb);
                    if !r.multi_node {
                        prop_assert_eq!(slots.nodes.len(), 1);
                    }
                    held.push(slots);
                }
                check_consistent(&s, &held);
            }
            for slots in held.drain(..) {
                s.release(&slots);
            }
            check_consistent(&s, &held);
            prop_assert_eq!(s.free_cores(), s.total_cores());
        }

        #[test]
        fn a_request_that_can_ever_fit_places_on_an_empty_scheduler(
            nodes in arb_nodes(),
            r in arb_request(),
        ) {
            let mut s = Scheduler::new(nodes);
            let fits = s.can_ever_fit(&r).is_ok();
            prop_assert_eq!(fits, s.place(&r).is_some());
        }
    }
}
