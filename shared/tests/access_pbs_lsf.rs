//! PBS Pro and LSF output parsing. These fixtures are written by hand in the documented
//! formats (no PBS or LSF can run here; see tests/fixtures/README.md).

/// Named `access` so `cargo test -p emanager-shared access` selects these tests.
mod access {

    use emanager_shared::access::runner::CommandOutput;
    use emanager_shared::access::{lsf, pbs, AccessError, JobId, JobState};

    fn fixture(path: &str) -> String {
        let path = format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn ok(stdout: String) -> CommandOutput {
        CommandOutput {
            code: Some(0),
            stdout,
            stderr: String::new(),
        }
    }

    fn failed(stderr: String) -> CommandOutput {
        CommandOutput {
            code: Some(1),
            stdout: String::new(),
            stderr,
        }
    }

    #[test]
    fn pbs_qsub_gives_the_full_job_id() {
        let id = pbs::parse_qsub(&ok(fixture("pbs/qsub.stdout"))).unwrap();
        assert_eq!(
            id.as_str(),
            "1234.polaris-pbs-01.hsn.cm.polaris.alcf.anl.gov"
        );
    }

    #[test]
    fn pbs_qsub_rejections_are_verbatim() {
        for (file, words) in [
            ("pbs/qsub_unknown_queue.stderr", "qsub: Unknown queue"),
            (
                "pbs/qsub_walltime_exceeded.stderr",
                "qsub: Job exceeds queue resource limits",
            ),
        ] {
            match pbs::parse_qsub(&failed(fixture(file))) {
                Err(AccessError::Rejected {
                    system: "pbs",
                    message,
                }) => assert_eq!(message, words),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn pbs_qstat_xf_gives_queued_running_done_and_failed() {
        let queued = pbs::parse_qstat_job(&fixture("pbs/qstat_xf_queued.stdout"), false).unwrap();
        assert_eq!(queued.state, JobState::Queued);
        assert!(queued
            .reason
            .unwrap()
            .starts_with("Not Running: Insufficient amount of resource"));
        let running = pbs::parse_qstat_job(&fixture("pbs/qstat_xf_running.stdout"), false).unwrap();
        assert_eq!(running.state, JobState::Running);
        assert_eq!(running.start_time, Some(1_795_580_462_000));
        let done = pbs::parse_qstat_job(&fixture("pbs/qstat_xf_finished.stdout"), false).unwrap();
        assert_eq!(done.state, JobState::Done);
        assert_eq!(done.end_time, Some(1_795_580_980_000));
        assert!(
            done.reason.unwrap().ends_with("and finished"),
            "continuation lines are joined"
        );
        let failed = pbs::parse_qstat_job(&fixture("pbs/qstat_xf_failed.stdout"), false).unwrap();
        assert_eq!(failed.state, JobState::Failed);
        assert!(failed.reason.unwrap().starts_with("Exit_status 271"));
        let canceled = pbs::parse_qstat_job(&fixture("pbs/qstat_xf_failed.stdout"), true).unwrap();
        assert_eq!(canceled.state, JobState::Canceled);
    }

    #[test]
    fn pbs_unknown_job_is_recognised() {
        assert!(pbs::is_unknown_job(&fixture("pbs/qstat_unknown.stderr")));
        assert!(pbs::is_unknown_job(&fixture("pbs/qdel_unknown.stderr")));
        assert!(pbs::parse_qstat_job("", false).is_none());
    }

    #[test]
    fn pbs_queues_skip_routing_queues_and_read_limits() {
        let queues = pbs::parse_qstat_queues(&fixture("pbs/qstat_Qf.stdout"));
        let names: Vec<&str> = queues.iter().map(|q| q.name.as_str()).collect();
        assert_eq!(names, ["debug", "small"]);
        assert_eq!(queues[0].max_walltime_s, Some(3600));
        assert_eq!(queues[0].max_nodes, Some(2));
        assert_eq!((queues[0].jobs_running, queues[0].jobs_queued), (4, 10));
        assert_eq!(queues[1].max_walltime_s, Some(3 * 3600));
    }

    #[test]
    fn pbs_nodes_are_counted_by_state() {
        assert_eq!(
            pbs::parse_pbsnodes(&fixture("pbs/pbsnodes_a.stdout")),
            (3, 1, 1, 1)
        );
    }

    #[test]
    fn lsf_bsub_gives_the_job_id_and_rejections_verbatim() {
        assert_eq!(
            lsf::parse_bsub(&ok(fixture("lsf/bsub.stdout"))).unwrap(),
            JobId("12345".into())
        );
        for (file, words) in [
            (
                "lsf/bsub_unknown_queue.stderr",
                "nope: No such queue. Job not submitted.",
            ),
            (
                "lsf/bsub_walltime_exceeded.stderr",
                "RUNLIMIT: Cannot exceed queue's hard limit(s). Job not submitted.",
            ),
        ] {
            match lsf::parse_bsub(&failed(fixture(file))) {
                Err(AccessError::Rejected {
                    system: "lsf",
                    message,
                }) => assert_eq!(message, words),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn lsf_bjobs_gives_each_state() {
        let running = lsf::parse_bjobs(
            &fixture("lsf/bjobs_running.stdout"),
            &JobId("12345".into()),
            false,
        )
        .unwrap();
        assert_eq!(running.state, JobState::Running);
        assert!(running.start_time.is_some());
        assert_eq!(
            running.end_time, None,
            "an estimated finish time is not an end"
        );
        let pending = lsf::parse_bjobs(
            &fixture("lsf/bjobs_pending.stdout"),
            &JobId("12346".into()),
            false,
        )
        .unwrap();
        assert_eq!(pending.state, JobState::Queued);
        assert_eq!(pending.reason.as_deref(), Some("Job slot limit reached;"));
        let done = lsf::parse_bjobs(
            &fixture("lsf/bjobs_done.stdout"),
            &JobId("12345".into()),
            false,
        )
        .unwrap();
        assert_eq!(done.state, JobState::Done);
        assert!(done.end_time.is_some());
        let exit = lsf::parse_bjobs(
            &fixture("lsf/bjobs_exit.stdout"),
            &JobId("12347".into()),
            false,
        )
        .unwrap();
        assert_eq!(
            (exit.state, exit.reason.as_deref()),
            (JobState::Failed, Some("EXIT (exit code 3)"))
        );
        let killed = lsf::parse_bjobs(
            &fixture("lsf/bjobs_exit.stdout"),
            &JobId("12347".into()),
            true,
        )
        .unwrap();
        assert_eq!(killed.state, JobState::Canceled);
    }

    #[test]
    fn lsf_unknown_job_and_queues() {
        assert!(lsf::is_unknown_job(&fixture("lsf/bjobs_unknown.stderr")));
        assert!(lsf::is_unknown_job(&fixture("lsf/bkill_unknown.stderr")));
        let queues = lsf::parse_bqueues(&fixture("lsf/bqueues_w.stdout"));
        assert_eq!(queues.len(), 3);
        assert_eq!(
            (
                queues[1].name.as_str(),
                queues[1].jobs_queued,
                queues[1].jobs_running
            ),
            ("batch", 80, 40)
        );
    }
}
