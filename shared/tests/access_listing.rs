//! Host and job listings (`access::listing`) on captured real outputs: SLURM and Grid
//! Engine from the dev clusters, PBS Pro and LSF from public captures (see
//! tests/fixtures/README.md for each file's source).

/// Named `access` so `cargo test -p emanager-shared access` selects these tests.
mod access {

    use emanager_shared::access::listing::{lsf, pbs, sge, slurm};
    use emanager_shared::access::{self as access_layer, JobState};

    fn fixture(path: &str) -> String {
        let path = format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn squeue_lists_running_and_pending_jobs_with_nodes_and_limits() {
        let jobs = slurm::parse_squeue_jobs(&fixture("slurm/squeue_sizes_running_pending.stdout"));
        assert_eq!(jobs.len(), 2);
        let pending = &jobs[0];
        assert_eq!(pending.state, JobState::Queued);
        assert_eq!((pending.nodes, pending.walltime_s), (1, 180));
        assert_eq!(pending.queues, ["debug"]);
        assert_eq!(pending.wait_s(), None, "a pending job has not waited yet");
        let running = &jobs[1];
        assert_eq!(running.state, JobState::Running);
        assert_eq!(running.name, "emanager-localhost-slurm");
        assert_eq!(running.wait_s(), Some(1));
        assert!(slurm::parse_squeue_jobs(&fixture("slurm/squeue_sizes_empty.stdout")).is_empty());
    }

    #[test]
    fn qhost_gives_each_queue_its_hosts_free_busy_or_disabled() {
        let idle = sge::parse_qhost_queues(&fixture("sge/qhost_q_idle.stdout"));
        let names: Vec<&str> = idle.iter().map(|q| q.name.as_str()).collect();
        assert_eq!(
            names,
            ["all.q", "short.q"],
            "the global pseudo-host has no queues"
        );
        assert!(idle
            .iter()
            .all(|q| (q.nodes_total, q.nodes_free, q.nodes_busy, q.nodes_down) == (1, 1, 0, 0)));

        let busy = sge::parse_qhost_queues(&fixture("sge/qhost_q_busy.stdout"));
        assert!(busy.iter().all(|q| q.nodes_busy == 1 && q.nodes_free == 0));

        // short.q@vm disabled with `qmod -d` while a job ran in it.
        let disabled = sge::parse_qhost_queues(&fixture("sge/qhost_q_disabled.stdout"));
        let all_q = disabled.iter().find(|q| q.name == "all.q").unwrap();
        let short_q = disabled.iter().find(|q| q.name == "short.q").unwrap();
        assert_eq!((all_q.nodes_busy, all_q.nodes_down), (1, 0));
        assert_eq!((short_q.nodes_total, short_q.nodes_down), (1, 1));
        // qhost without -q names hosts only: no queues.
        assert!(sge::parse_qhost_queues(&fixture("sge/qhost.stdout")).is_empty());
        assert!(sge::parse_qhost_queues(&fixture("sge/qhost_host_down.stdout")).is_empty());
    }

    #[test]
    fn qhost_gives_a_host_whose_execd_is_gone_as_down_in_every_queue() {
        // Load `-` and instance state `u`: sge_execd had died.
        let down = sge::parse_qhost_queues(&fixture("sge/qhost_q_host_down.stdout"));
        assert_eq!(down.len(), 2);
        assert!(down
            .iter()
            .all(|q| (q.nodes_total, q.nodes_free, q.nodes_down) == (1, 0, 1)));
    }

    #[test]
    fn qstat_r_gives_slots_walltime_and_queues_of_every_job() {
        let jobs = sge::parse_qstat_r(&fixture("sge/qstat_r_running_pending.stdout"));
        let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(ids, ["18", "21", "19", "20", "22"]);
        let by_id = |id: &str| jobs.iter().find(|j| j.id == id).unwrap();

        let running = by_id("18");
        assert_eq!(running.state, JobState::Running);
        assert_eq!(running.queues, ["all.q"], "master queue");
        assert_eq!((running.cores, running.walltime_s), (2, 120));
        assert!(running.start_ms.is_some() && running.submit_ms.is_none());

        let anywhere = by_id("21");
        assert_eq!(anywhere.queues, ["short.q"], "runs where SGE put it");
        assert_eq!(
            (anywhere.cores, anywhere.walltime_s),
            (1, 0),
            "no h_rt asked"
        );

        let pending = by_id("19");
        assert_eq!(pending.state, JobState::Queued);
        assert_eq!(
            pending.name, "emfix-pend2",
            "the full name, not the 10 columns"
        );
        assert_eq!(pending.queues, ["all.q"]);
        assert_eq!((pending.cores, pending.walltime_s), (2, 300));
        assert!(pending.submit_ms.is_some());

        assert_eq!(
            by_id("20").walltime_s,
            600,
            "h_rt=0:10:0 is printed in seconds"
        );
        let held = by_id("22");
        assert_eq!(
            (held.state, held.queues.clone()),
            (JobState::Queued, vec!["short.q".to_string()])
        );

        assert!(sge::parse_qstat_r(&fixture("sge/qstat_r_empty.stdout")).is_empty());
    }

    #[test]
    fn qstat_s_p_and_s_r_give_slots_without_details() {
        let pending = sge::parse_qstat_r(&fixture("sge/qstat_s_p.stdout"));
        assert_eq!(pending.len(), 3);
        assert!(pending
            .iter()
            .all(|j| j.state == JobState::Queued && j.queues.is_empty()));
        assert_eq!(pending[0].cores, 2);
        let running = sge::parse_qstat_r(&fixture("sge/qstat_s_r.stdout"));
        assert_eq!(running.len(), 2);
        assert_eq!(
            (running[1].queues.clone(), running[1].cores),
            (vec!["short.q".to_string()], 1)
        );
    }

    #[test]
    fn qstat_f_marks_a_disabled_instance_down() {
        let queues = access_layer::sge::parse_qstat_f(&fixture("sge/qstat_f_disabled.stdout"));
        let short_q = queues.iter().find(|q| q.name == "short.q").unwrap();
        assert_eq!((short_q.nodes_down, short_q.jobs_running), (1, 1));
    }

    #[test]
    fn pbs_qstat_f_gives_nodes_cores_and_walltime_of_queued_and_running_jobs() {
        let text =
            fixture("pbs/qstat_f_queued.stdout") + "\n" + &fixture("pbs/qstat_f_running.stdout");
        let jobs = pbs::parse_qstat_f_jobs(&text);
        assert_eq!(jobs.len(), 2);
        let (queued, running) = (&jobs[0], &jobs[1]);
        assert_eq!(queued.id, "171390152.mycluster");
        assert_eq!(queued.state, JobState::Queued);
        assert_eq!(queued.queues, ["normal-exec"]);
        assert_eq!(
            (queued.nodes, queued.cores, queued.walltime_s),
            (1, 1, 36_000)
        );
        assert!(queued.submit_ms.is_some() && queued.start_ms.is_none());
        assert_eq!(running.state, JobState::Running);
        // qtime 04:56:36, stime 04:57:53.
        assert_eq!(running.wait_s(), Some(77));
    }

    #[test]
    fn bhosts_counts_ok_closed_and_unavailable_hosts() {
        // IBM's example: hostA ok with 2 jobs, hostB closed with 16 of 20 slots used.
        let ibm = lsf::parse_bhosts(&fixture("lsf/bhosts_ok_closed.stdout"));
        assert_eq!((ibm.total, ibm.free, ibm.busy, ibm.down), (2, 0, 1, 1));
        // ok with jobs, closed_Full, unavail, closed_Adm, closed_Busy.
        let wide = lsf::parse_bhosts(&fixture("lsf/bhosts_w_unavail.stdout"));
        assert_eq!((wide.total, wide.free, wide.busy, wide.down), (5, 0, 3, 2));
    }

    #[test]
    fn bqueues_reads_empty_and_busy_queues() {
        let queues = access_layer::lsf::parse_bqueues(&fixture("lsf/bqueues_empty_queues.stdout"));
        assert_eq!(queues.len(), 7);
        let normal = queues.iter().find(|q| q.name == "normal").unwrap();
        assert_eq!((normal.jobs_queued, normal.jobs_running), (0, 0));
        let priority = queues.iter().find(|q| q.name == "priority").unwrap();
        assert_eq!((priority.jobs_queued, priority.jobs_running), (4, 11));
    }

    #[test]
    fn bjobs_lists_unfinished_jobs_with_slots_hosts_and_run_limits() {
        let jobs = lsf::parse_bjobs_jobs(&fixture("lsf/bjobs_u_all_o.stdout"));
        let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "764220165",
                "764220167",
                "764254593",
                "764255172",
                "764245175"
            ],
            "DONE and EXIT jobs are left out"
        );
        let pending = &jobs[0];
        assert_eq!(pending.state, JobState::Queued);
        assert_eq!(pending.queues, ["8nm"]);
        assert_eq!(
            (pending.nodes, pending.cores, pending.walltime_s),
            (0, 0, 0)
        );
        assert!(pending.submit_ms.is_some());
        let running = &jobs[2];
        assert_eq!(running.state, JobState::Running);
        assert_eq!((running.nodes, running.cores), (1, 1));
        assert_eq!(running.walltime_s, 60, "finish 07:40 - start 07:39");
        assert_eq!(running.wait_s(), Some(0));
        let over_new_year = &jobs[4];
        assert_eq!(over_new_year.walltime_s, 5 * 3600 + 19 * 60);
        assert!(lsf::no_jobs("No unfinished job found\n"));
    }
}
