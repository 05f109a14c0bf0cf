//! How a placed task's processes start: `fork` on the agent's own node, or a launcher
//! (`srun`, `mpirun`, `mpiexec`) for a task on other nodes of the allocation or with several
//! MPI ranks. Pure: a task, its slots and the node names in, an argv out.
//!
//! The rules, in order:
//! - a task placed only on the agent's node (node 0) that is not a multi-rank MPI task is
//!   forked as it is: no launcher cost for the common case;
//! - otherwise the first launcher of the resource's `launch_methods` (catalog order) wraps
//!   the command with the task's nodes, ranks and cores per rank;
//! - with no launcher, a multi-rank task on the agent's node is forked as it is (its command
//!   may start its own `mpirun`), and a task on another node is refused with the fix.

use crate::scheduler::Slots;
use emanager_shared::catalog::LaunchMethod;
use emanager_shared::TaskSpec;

/// The launch methods of this pilot and the names of its nodes (index = scheduler node).
#[derive(Clone, Debug, PartialEq)]
pub struct Launch {
    methods: Vec<LaunchMethod>,
    nodes: Vec<String>,
}

impl Launch {
    /// `nodes[0]` must be the node the agent runs on.
    pub fn new(methods: Vec<LaunchMethod>, nodes: Vec<String>) -> Launch {
        Launch { methods, nodes }
    }

    /// Only `fork` on this node: a single-node agent with no launcher.
    pub fn fork_only(nodes: Vec<String>) -> Launch {
        Launch::new(vec![LaunchMethod::Fork], nodes)
    }

    /// The launcher that reaches other nodes, if this pilot has one.
    pub fn launcher(&self) -> Option<LaunchMethod> {
        self.methods
            .iter()
            .copied()
            .find(|m| *m != LaunchMethod::Fork)
    }

    /// The argv that starts `argv` (the task's own command) on `slots`, and the method.
    pub fn wrap(
        &self,
        spec: &TaskSpec,
        slots: &Slots,
        argv: Vec<String>,
    ) -> Result<(LaunchMethod, Vec<String>), String> {
        let off_node = slots.nodes.iter().any(|n| n.node != 0);
        let multi_rank = spec.mpi && spec.processes > 1;
        if !off_node && !multi_rank {
            return Ok((LaunchMethod::Fork, argv));
        }
        let Some(method) = self.launcher() else {
            if !off_node {
                return Ok((LaunchMethod::Fork, argv));
            }
            return Err(format!(
                "task `{}` was placed on node(s) other than the agent's, but this pilot can only fork on its own node; add srun, mpirun or mpiexec to the resource's launch_methods",
                spec.name
            ));
        };
        let hosts: Vec<&str> = slots
            .nodes
            .iter()
            .map(|n| self.nodes.get(n.node).map(String::as_str).unwrap_or("?"))
            .collect();
        let ranks = if spec.mpi { spec.processes.max(1) } else { 1 };
        let cores_per_rank = (spec.cores / ranks).max(1);
        // Ranks per node follow the cores the scheduler gave each node.
        let per_node: Vec<u32> = slots
            .nodes
            .iter()
            .map(|n| (n.cores.len() as u32 / cores_per_rank).max(1))
            .collect();
        let mut out: Vec<String> = match method {
            LaunchMethod::Srun => vec![
                "srun".into(),
                format!("--nodes={}", hosts.len()),
                format!("--ntasks={ranks}"),
                format!("--cpus-per-task={cores_per_rank}"),
                format!("--nodelist={}", hosts.join(",")),
                "--exact".into(),
                "--kill-on-bad-exit=1".into(),
                "--export=ALL".into(),
                "--".into(),
            ],
            LaunchMethod::Mpirun => {
                let host_slots: Vec<String> = hosts
                    .iter()
                    .zip(&per_node)
                    .map(|(h, n)| format!("{h}:{n}"))
                    .collect();
                vec![
                    "mpirun".into(),
                    "-np".into(),
                    ranks.to_string(),
                    "--host".into(),
                    host_slots.join(","),
                    "--bind-to".into(),
                    "none".into(),
                ]
            }
            LaunchMethod::Mpiexec => vec![
                "mpiexec".into(),
                "-n".into(),
                ranks.to_string(),
                "--ppn".into(),
                per_node.iter().copied().max().unwrap_or(1).to_string(),
                "--hosts".into(),
                hosts.join(","),
            ],
            LaunchMethod::Fork => unreachable!("launcher() never returns fork"),
        };
        out.extend(argv);
        Ok((method, out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::NodeSlots;
    use emanager_shared::TaskId;

    fn on(nodes: &[(usize, u32)]) -> Slots {
        Slots {
            nodes: nodes
                .iter()
                .map(|&(node, cores)| NodeSlots {
                    node,
                    cores: (0..cores).collect(),
                    gpus: vec![],
                    mem_mb: 0,
                })
                .collect(),
        }
    }

    fn task(cores: u32, processes: u32, mpi: bool) -> TaskSpec {
        let mut t = TaskSpec::new(TaskId::random(), "sim-1", vec!["./sim".into(), "-x".into()]);
        t.cores = cores;
        t.processes = processes;
        t.mpi = mpi;
        t
    }

    fn names() -> Vec<String> {
        vec!["nid001".into(), "nid002".into(), "nid003".into()]
    }

    fn argv() -> Vec<String> {
        vec!["./sim".into(), "-x".into()]
    }

    #[test]
    fn a_task_on_the_agents_node_is_forked_even_when_srun_exists() {
        let l = Launch::new(vec![LaunchMethod::Fork, LaunchMethod::Srun], names());
        let (m, a) = l.wrap(&task(4, 1, false), &on(&[(0, 4)]), argv()).unwrap();
        assert_eq!((m, a), (LaunchMethod::Fork, argv()));
    }

    #[test]
    fn a_task_on_another_node_goes_through_srun_with_its_node_and_cores() {
        let l = Launch::new(vec![LaunchMethod::Fork, LaunchMethod::Srun], names());
        let (m, a) = l.wrap(&task(4, 1, false), &on(&[(2, 4)]), argv()).unwrap();
        assert_eq!(m, LaunchMethod::Srun);
        assert_eq!(
            a.join(" "),
            "srun --nodes=1 --ntasks=1 --cpus-per-task=4 --nodelist=nid003 --exact --kill-on-bad-exit=1 --export=ALL -- ./sim -x"
        );
    }

    #[test]
    fn an_mpi_task_over_two_nodes_gets_its_ranks_from_each_launcher() {
        let t = task(16, 8, true); // 2 cores per rank
        let slots = on(&[(0, 8), (1, 8)]);
        let srun = Launch::new(vec![LaunchMethod::Srun], names());
        assert_eq!(
            srun.wrap(&t, &slots, argv()).unwrap().1.join(" "),
            "srun --nodes=2 --ntasks=8 --cpus-per-task=2 --nodelist=nid001,nid002 --exact --kill-on-bad-exit=1 --export=ALL -- ./sim -x"
        );
        let mpirun = Launch::new(vec![LaunchMethod::Fork, LaunchMethod::Mpirun], names());
        assert_eq!(
            mpirun.wrap(&t, &slots, argv()).unwrap().1.join(" "),
            "mpirun -np 8 --host nid001:4,nid002:4 --bind-to none ./sim -x"
        );
        let mpiexec = Launch::new(vec![LaunchMethod::Mpiexec], names());
        assert_eq!(
            mpiexec.wrap(&t, &slots, argv()).unwrap().1.join(" "),
            "mpiexec -n 8 --ppn 4 --hosts nid001,nid002 ./sim -x"
        );
    }

    #[test]
    fn a_multi_rank_task_on_one_node_uses_the_launcher_when_there_is_one() {
        let t = task(2, 2, true);
        let l = Launch::new(vec![LaunchMethod::Fork, LaunchMethod::Srun], names());
        let (m, a) = l.wrap(&t, &on(&[(0, 2)]), argv()).unwrap();
        assert_eq!(m, LaunchMethod::Srun);
        assert!(a
            .join(" ")
            .starts_with("srun --nodes=1 --ntasks=2 --cpus-per-task=1 --nodelist=nid001"));
        // Without one, the command runs as it is (it may call mpirun itself).
        let (m, a) = Launch::fork_only(names())
            .wrap(&t, &on(&[(0, 2)]), argv())
            .unwrap();
        assert_eq!((m, a), (LaunchMethod::Fork, argv()));
    }

    #[test]
    fn a_task_on_another_node_without_a_launcher_is_refused_with_the_fix() {
        let e = Launch::fork_only(names())
            .wrap(&task(1, 1, false), &on(&[(1, 1)]), argv())
            .unwrap_err();
        assert!(e.contains("task `sim-1`"), "{e}");
        assert!(e.contains("add srun, mpirun or mpiexec"), "{e}");
    }
}
