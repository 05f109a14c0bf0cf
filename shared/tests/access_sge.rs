//! Grid Engine output parsing against outputs captured from Debian's gridengine 8.1.9
//! (`deploy/dev/sge-up.sh`; see tests/fixtures/README.md).

/// Named `access` so `cargo test -p emanager-shared access` selects these tests.
mod access {

    use emanager_shared::access::runner::CommandOutput;
    use emanager_shared::access::sge::{
        is_unknown_job, parse_qacct, parse_qconf_h_rt, parse_qstat_f, parse_qstat_job, parse_qsub,
    };
    use emanager_shared::access::{AccessError, JobId, JobState};

    fn fixture(name: &str) -> String {
        let path = format!("{}/tests/fixtures/sge/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn qsub_terse_gives_the_job_id() {
        let out = CommandOutput {
            code: Some(0),
            stdout: fixture("qsub_terse.stdout"),
            stderr: String::new(),
        };
        assert_eq!(parse_qsub(&out).unwrap(), JobId("2".into()));
    }

    #[test]
    fn qsub_rejections_are_verbatim() {
        let bad_queue = CommandOutput {
            code: Some(1),
            stdout: String::new(),
            stderr: fixture("qsub_bad_queue.stderr"),
        };
        match parse_qsub(&bad_queue) {
            Err(AccessError::Rejected {
                system: "sge",
                message,
            }) => {
                assert!(message.starts_with("Unable to run job: Job was rejected because job requests unknown queue \"nope\""), "{message}")
            }
            other => panic!("{other:?}"),
        }
        let walltime = CommandOutput {
            code: Some(1),
            stdout: String::new(),
            stderr: fixture("qsub_walltime_exceeded.stderr"),
        };
        assert!(parse_qsub(&walltime)
            .unwrap_err()
            .to_string()
            .contains("no suitable queues"));
    }

    #[test]
    fn qstat_rows_give_running_and_queued_jobs() {
        let out = fixture("qstat_running_pending.stdout");
        let running = parse_qstat_job(&out, &JobId("2".into())).unwrap();
        assert_eq!(running.state, JobState::Running);
        assert!(running.start_time.is_some());
        let queued = parse_qstat_job(&out, &JobId("3".into())).unwrap();
        assert_eq!(queued.state, JobState::Queued);
        assert_eq!(queued.start_time, None);
        assert!(parse_qstat_job(&out, &JobId("99".into())).is_none());
    }

    #[test]
    fn qacct_tells_done_failed_and_deleted_jobs_apart() {
        let done = parse_qacct(&fixture("qacct_done.stdout"), false).unwrap();
        assert_eq!(done.state, JobState::Done);
        assert_eq!(done.start_time, Some(1_795_580_562_000));
        assert_eq!(done.end_time, Some(1_795_580_564_000));
        let failed = parse_qacct(&fixture("qacct_failed.stdout"), false).unwrap();
        assert_eq!(failed.state, JobState::Failed);
        assert_eq!(failed.reason.as_deref(), Some("exit_status 3"));
        let killed = parse_qacct(&fixture("qacct_deleted_running.stdout"), false).unwrap();
        assert_eq!(killed.state, JobState::Failed);
        assert!(killed.reason.unwrap().contains("137"));
        let deleted = parse_qacct(&fixture("qacct_deleted_running.stdout"), true).unwrap();
        assert_eq!(deleted.state, JobState::Canceled);
        assert!(parse_qacct(&fixture("qacct_unknown.stdout"), false).is_none());
    }

    #[test]
    fn unknown_jobs_are_recognised() {
        assert!(is_unknown_job(&fixture("qacct_unknown.stderr")));
        assert!(is_unknown_job(&fixture("qdel_unknown.stdout")));
        assert!(is_unknown_job(&fixture("qstat_j_unknown.stderr")));
        assert!(!is_unknown_job(&fixture("qdel.stdout")));
    }

    #[test]
    fn qstat_f_gives_queues_with_node_and_job_counts() {
        let queues = parse_qstat_f(&fixture("qstat_f.stdout"));
        assert_eq!(queues.len(), 2);
        let all = &queues[0];
        assert_eq!(all.name, "all.q");
        assert_eq!(
            (
                all.nodes_total,
                all.nodes_busy,
                all.nodes_free,
                all.nodes_down
            ),
            (1, 1, 0, 0)
        );
        assert_eq!((all.jobs_running, all.jobs_queued), (1, 1));
        let short = &queues[1];
        assert_eq!(
            (short.name.as_str(), short.nodes_free, short.jobs_running),
            ("short.q", 1, 0)
        );
    }

    #[test]
    fn qstat_f_counts_disabled_and_unreachable_hosts_as_down() {
        let out =
            "queuename                      qtype resv/used/tot. load_avg arch          states\n\
               ---------------------------------------------------------------------------------\n\
               all.q@n1                       BIP   0/0/8          0.01     lx-amd64      d\n\
               ---------------------------------------------------------------------------------\n\
               all.q@n2                       BIP   0/0/8          -NA-     lx-amd64      au\n";
        let q = &parse_qstat_f(out)[0];
        assert_eq!((q.nodes_total, q.nodes_down, q.nodes_free), (2, 2, 0));
    }

    #[test]
    fn qconf_sq_gives_the_walltime_limit() {
        assert_eq!(
            parse_qconf_h_rt(&fixture("qconf_sq_short.stdout")),
            Some(60)
        );
        assert_eq!(
            parse_qconf_h_rt("qname all.q\nh_rt                  INFINITY\n"),
            None
        );
    }
}
