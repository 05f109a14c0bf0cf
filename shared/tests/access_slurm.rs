//! SLURM output parsing against outputs captured from a real slurmctld 22.05
//! (`deploy/dev/slurm-up.sh`; see tests/fixtures/README.md).

/// Named `access` so `cargo test -p emanager-shared access` selects these tests.
mod access {

    use emanager_shared::access::runner::CommandOutput;
    use emanager_shared::access::slurm::{
        add_job_counts, is_invalid_job, parse_sbatch, parse_scontrol_job, parse_sinfo,
        parse_squeue_job,
    };
    use emanager_shared::access::{AccessError, JobId, JobState};

    fn fixture(name: &str) -> String {
        let path = format!("{}/tests/fixtures/slurm/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn failed_with_stderr(name: &str) -> CommandOutput {
        CommandOutput {
            code: Some(1),
            stdout: String::new(),
            stderr: fixture(name),
        }
    }

    #[test]
    fn sbatch_parsable_gives_the_job_id() {
        let out = CommandOutput {
            code: Some(0),
            stdout: fixture("sbatch_parsable.stdout"),
            stderr: String::new(),
        };
        assert_eq!(parse_sbatch(&out).unwrap(), JobId("2".into()));
        let federated = CommandOutput {
            code: Some(0),
            stdout: "123;cluster1\n".into(),
            stderr: String::new(),
        };
        assert_eq!(parse_sbatch(&federated).unwrap(), JobId("123".into()));
    }

    #[test]
    fn sbatch_rejection_of_a_bad_partition_is_verbatim() {
        match parse_sbatch(&failed_with_stderr("sbatch_bad_partition.stderr")) {
            Err(AccessError::Rejected {
                system: "slurm",
                message,
            }) => {
                assert!(
                    message.starts_with("sbatch: error: invalid partition specified: nope"),
                    "{message}"
                );
                assert!(message.contains("Invalid partition name specified"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sbatch_rejection_of_a_walltime_above_the_limit_is_verbatim() {
        let err = parse_sbatch(&failed_with_stderr("sbatch_walltime_exceeded.stderr")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("Requested time limit is invalid (missing or exceeds some limit)"),
            "{text}"
        );
        let err = parse_sbatch(&failed_with_stderr("sbatch_too_many_nodes.stderr")).unwrap_err();
        assert!(err
            .to_string()
            .contains("More processors requested than permitted"));
    }

    #[test]
    fn squeue_shows_running_and_pending_jobs_with_epoch_times() {
        let out = fixture("squeue_epoch_running_pending.stdout");
        let running = parse_squeue_job(&out, &JobId("10".into())).unwrap();
        assert_eq!(running.state, JobState::Running);
        assert_eq!(running.start_time, Some(1_795_581_633_000));
        assert_eq!(running.end_time, None);
        let pending = parse_squeue_job(&out, &JobId("11".into())).unwrap();
        assert_eq!(pending.state, JobState::Queued);
        assert_eq!(
            pending.start_time, None,
            "a pending job's StartTime is only an estimate"
        );
        assert_eq!(pending.reason.as_deref(), Some("Resources"));
        assert!(
            parse_squeue_job(&out, &JobId("1".into())).is_none(),
            "ids match exactly"
        );
    }

    #[test]
    fn squeue_all_states_shows_finished_jobs() {
        let done = parse_squeue_job(
            &fixture("squeue_epoch_completed.stdout"),
            &JobId("12".into()),
        )
        .unwrap();
        assert_eq!(done.state, JobState::Done);
        assert_eq!(done.end_time, Some(1_795_581_638_000));
        let out = fixture("squeue_epoch_cancelled.stdout");
        assert_eq!(
            parse_squeue_job(&out, &JobId("10".into())).unwrap().state,
            JobState::Canceled
        );
        let failed =
            parse_squeue_job(&fixture("squeue_failed.stdout"), &JobId("6".into())).unwrap();
        assert_eq!(failed.state, JobState::Failed);
        assert_eq!(failed.reason.as_deref(), Some("NonZeroExitCode"));
    }

    #[test]
    fn squeue_iso_times_are_read_too() {
        let out = fixture("squeue_running_pending.stdout");
        let running = parse_squeue_job(&out, &JobId("2".into())).unwrap();
        assert_eq!(running.state, JobState::Running);
        assert!(running.start_time.is_some());
    }

    #[test]
    fn unknown_job_is_recognised_in_squeue_scontrol_and_scancel() {
        assert!(is_invalid_job(&fixture("squeue_unknown_job.stderr")));
        assert!(is_invalid_job(&fixture("scontrol_show_job_unknown.stderr")));
        assert!(is_invalid_job(&fixture("scancel_unknown.stderr")));
        assert!(parse_squeue_job(
            &fixture("squeue_unknown_job.stdout"),
            &JobId("99999".into())
        )
        .is_none());
        assert!(parse_scontrol_job(&fixture("scontrol_show_job_unknown.stdout")).is_none());
    }

    #[test]
    fn scontrol_show_job_gives_state_times_and_exit_code() {
        let running =
            parse_scontrol_job(&fixture("scontrol_show_job_epoch_running.stdout")).unwrap();
        assert_eq!(running.state, JobState::Running);
        assert_eq!(running.start_time, Some(1_795_581_633_000));
        let done =
            parse_scontrol_job(&fixture("scontrol_show_job_epoch_completed.stdout")).unwrap();
        assert_eq!(done.state, JobState::Done);
        assert_eq!(done.end_time, Some(1_795_581_638_000));
        let failed = parse_scontrol_job(&fixture("scontrol_show_job_failed.stdout")).unwrap();
        assert_eq!(failed.state, JobState::Failed);
        assert_eq!(
            failed.reason.as_deref(),
            Some("FAILED: NonZeroExitCode (exit code 3:0)")
        );
        let pending = parse_scontrol_job(&fixture("scontrol_show_job_pending.stdout")).unwrap();
        assert_eq!(
            (pending.state, pending.reason.as_deref()),
            (JobState::Queued, Some("Resources"))
        );
        let canceled =
            parse_scontrol_job(&fixture("scontrol_show_job_cancelled_running.stdout")).unwrap();
        assert_eq!(canceled.state, JobState::Canceled);
    }

    #[test]
    fn sinfo_gives_partitions_with_limits_and_node_counts() {
        let mut queues = parse_sinfo(&fixture("sinfo_partitions.stdout")).unwrap();
        assert_eq!(queues.len(), 2);
        let debug = &queues[0];
        assert_eq!(debug.name, "debug");
        assert_eq!(debug.max_walltime_s, Some(3600));
        assert_eq!(debug.max_nodes, Some(1));
        assert_eq!(
            (
                debug.nodes_total,
                debug.nodes_free,
                debug.nodes_busy,
                debug.nodes_down
            ),
            (1, 1, 0, 0)
        );
        assert_eq!(queues[1].max_walltime_s, Some(60));
        add_job_counts(&mut queues, &fixture("squeue_partition_states.stdout"));
        assert_eq!((queues[0].jobs_running, queues[0].jobs_queued), (1, 2));
        assert_eq!((queues[1].jobs_running, queues[1].jobs_queued), (0, 1));
    }

    #[test]
    fn sinfo_sums_state_groups_and_reads_unlimited_sizes() {
        let out = "batch|12:00:00|1-infinite|10/5/1/16|up\nbatch|12:00:00|1-infinite|0/0/2/2|up\nextended|1-00:00:00|64|0/4/0/4|up\n";
        let queues = parse_sinfo(out).unwrap();
        assert_eq!(queues.len(), 2);
        assert_eq!((queues[0].nodes_total, queues[0].nodes_down), (18, 3));
        assert_eq!(queues[0].max_nodes, None);
        assert_eq!(queues[1].max_walltime_s, Some(86_400));
        assert_eq!(queues[1].max_nodes, Some(64));
    }
}
