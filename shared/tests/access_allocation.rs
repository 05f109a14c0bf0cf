//! Allocation discovery from environment maps and node files, one test per batch system.

/// Named `access` so `cargo test -p emanager-shared access` selects these tests.
mod access {

    use emanager_shared::access::allocation::{detect, Allocation, BatchSystem};
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn fixture(path: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/tests/fixtures/{path}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn no_files(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn slurm_allocation_expands_the_nodelist() {
        let e = env(&[
            ("SLURM_JOB_ID", "4242"),
            ("SLURM_JOB_NODELIST", "nid[001-003,007],login1"),
            ("SLURM_CPUS_ON_NODE", "56"),
            ("SLURM_GPUS_ON_NODE", "8"),
            ("SLURM_JOB_END_TIME", "1795585000"),
        ]);
        let a = detect(&e, &no_files).unwrap();
        assert_eq!(
            a,
            Allocation {
                batch_system: BatchSystem::Slurm,
                job_id: "4242".into(),
                nodes: vec![
                    "nid001".into(),
                    "nid002".into(),
                    "nid003".into(),
                    "nid007".into(),
                    "login1".into()
                ],
                cores_per_node: 56,
                gpus_per_node: 8,
                end_time_ms: Some(1_795_585_000_000),
            }
        );
    }

    #[test]
    fn slurm_allocation_from_a_real_job_environment() {
        // Captured inside a job on the dev cluster (Slurm 22.05 sets no SLURM_JOB_END_TIME);
        // the end time comes from the template's EMANAGER_JOB_END_TIME.
        let mut e: HashMap<String, String> = fixture("slurm/job_env.txt")
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        e.insert("EMANAGER_JOB_END_TIME".into(), "1795581000".into());
        let a = detect(&e, &no_files).unwrap();
        assert_eq!(a.batch_system, BatchSystem::Slurm);
        assert_eq!(a.job_id, "1");
        assert_eq!(a.nodes, ["vm"]);
        assert_eq!(a.cores_per_node, 1);
        assert_eq!(a.end_time_ms, Some(1_795_581_000_000));
    }

    #[test]
    fn slurm_cores_fall_back_to_job_cpus_per_node() {
        let e = env(&[
            ("SLURM_JOB_ID", "1"),
            ("SLURM_JOB_NODELIST", "n[1-2]"),
            ("SLURM_JOB_CPUS_PER_NODE", "64(x2)"),
        ]);
        assert_eq!(detect(&e, &no_files).unwrap().cores_per_node, 64);
    }

    #[test]
    fn pbs_allocation_reads_the_node_file() {
        let e = env(&[
            ("PBS_JOBID", "1234.polaris-pbs-01"),
            ("PBS_NODEFILE", "/var/spool/pbs/aux/1234"),
            ("NCPUS", "32"),
            ("NGPUS", "4"),
        ]);
        let files = |p: &str| (p == "/var/spool/pbs/aux/1234").then(|| fixture("pbs/nodefile"));
        let a = detect(&e, &files).unwrap();
        assert_eq!(a.batch_system, BatchSystem::Pbs);
        assert_eq!(
            a.nodes,
            [
                "x3005c0s7b0n0.hsn.cm.polaris.alcf.anl.gov",
                "x3005c0s13b0n0.hsn.cm.polaris.alcf.anl.gov"
            ]
        );
        assert_eq!((a.cores_per_node, a.gpus_per_node), (32, 4));
    }

    #[test]
    fn lsf_allocation_drops_the_launch_node() {
        let e = env(&[
            ("LSB_JOBID", "777"),
            ("LSB_DJOB_HOSTFILE", "/tmp/777.hosts"),
        ]);
        let files = |_: &str| Some(fixture("lsf/djob_hostfile"));
        let a = detect(&e, &files).unwrap();
        assert_eq!(a.batch_system, BatchSystem::Lsf);
        assert_eq!(a.nodes, ["h41n01", "h41n02"]);
        assert_eq!(a.cores_per_node, 3);
    }

    #[test]
    fn lsf_allocation_from_lsb_hosts() {
        let e = env(&[("LSB_JOBID", "9"), ("LSB_HOSTS", "a a b b")]);
        let a = detect(&e, &no_files).unwrap();
        assert_eq!(
            (a.nodes.clone(), a.cores_per_node),
            (vec!["a".to_string(), "b".to_string()], 2)
        );
    }

    #[test]
    fn sge_allocation_reads_the_pe_hostfile() {
        let e = env(&[
            ("JOB_ID", "1"),
            ("PE_HOSTFILE", "/var/spool/gridengine/pe_hostfile"),
            ("EMANAGER_JOB_END_TIME", "1795581000"),
        ]);
        let files = |_: &str| Some(fixture("sge/pe_hostfile"));
        let a = detect(&e, &files).unwrap();
        assert_eq!(a.batch_system, BatchSystem::Sge);
        assert_eq!(
            (a.nodes.clone(), a.cores_per_node),
            (vec!["vm".to_string()], 2)
        );
        assert_eq!(a.end_time_ms, Some(1_795_581_000_000));
    }

    #[test]
    fn sge_without_parallel_environment_is_one_host() {
        let e = env(&[("JOB_ID", "5"), ("HOSTNAME", "node7"), ("NSLOTS", "1")]);
        let a = detect(&e, &no_files).unwrap();
        assert_eq!(
            (a.nodes.clone(), a.cores_per_node),
            (vec!["node7".to_string()], 1)
        );
    }

    #[test]
    fn no_batch_system_is_none() {
        assert!(detect(&env(&[("HOME", "/root")]), &no_files).is_none());
        // A PBS job id with an unreadable node file is not an allocation.
        assert!(detect(
            &env(&[("PBS_JOBID", "1"), ("PBS_NODEFILE", "/nope")]),
            &no_files
        )
        .is_none());
    }
}
