//! Parsers against captured real outputs: the RabbitMQ management API, queues of every
//! batch system merged with the catalog and the job listings (down nodes, empty queues,
//! sizes), and wait traces. The batch outputs are shared's fixtures
//! (`shared/tests/fixtures/`, see its README).

use emanager_bundles::probe::{merge_queues, parse_mgmt_queues, pilot_queue_name};
use emanager_bundles::traces::{parse_swf, parse_xsede_pilot, xsede_file_size};
use emanager_shared::access::listing::slurm::parse_squeue_jobs;
use emanager_shared::access::listing::{
    lsf as lsf_listing, pbs as pbs_listing, sge as sge_listing,
};
use emanager_shared::access::{lsf, sge, slurm, QueueInfo};
use emanager_shared::catalog::Catalog;

fn fixture(path: &str) -> String {
    let p = format!("{}/tests/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn batch_fixture(path: &str) -> String {
    fixture(&format!("../../shared/tests/fixtures/{path}"))
}

fn dev_catalog() -> Catalog {
    Catalog::load(format!(
        "{}/../examples/resources.toml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[test]
fn slurm_queues_merge_with_catalog_and_job_sizes() {
    let catalog = dev_catalog();
    let entry = catalog.get("localhost-slurm").unwrap();
    let mut info = slurm::parse_sinfo(&fixture("fixtures/slurm/sinfo_drained.stdout")).unwrap();
    let jobs = parse_squeue_jobs(&batch_fixture("slurm/squeue_sizes_running_pending.stdout"));
    slurm::add_job_counts(&mut info, "debug|PENDING\ndebug|RUNNING\n");
    let queues = merge_queues(entry, &info, &jobs, true, 1_795_584_139);
    let debug = queues.iter().find(|q| q.name == "debug").unwrap();
    assert!(debug.reported);
    assert_eq!(
        (debug.nodes_total, debug.nodes_free, debug.nodes_down),
        (1, 0, 1)
    );
    assert_eq!((debug.jobs_running, debug.jobs_queued), (1, 1));
    assert_eq!(debug.queued_node_s(), Some(180));
    assert_eq!(debug.running_jobs.as_ref().unwrap()[0].elapsed_s, 1);
    let short = queues.iter().find(|q| q.name == "short").unwrap();
    assert_eq!(
        short.queued_jobs.as_deref(),
        Some(&[][..]),
        "empty queue, sizes known"
    );
    assert_eq!(short.max_walltime_s, Some(60));
}

#[test]
fn sge_host_down_shows_as_down_nodes_without_sizes() {
    let catalog = dev_catalog();
    let entry = catalog.get("localhost-sge").unwrap();
    let info = sge::parse_qstat_f(&fixture("fixtures/sge/qstat_f_host_down.stdout"));
    let queues = merge_queues(entry, &info, &[], false, 0);
    assert_eq!(queues.len(), 2);
    for q in &queues {
        assert!(q.reported);
        assert_eq!(q.nodes_free, 0, "{q:?}");
        assert_eq!(q.nodes_down, 1, "{q:?}");
        assert_eq!(q.queued_jobs, None, "SGE gives counts, not sizes");
    }
}

/// SGE as the probe sees it: node states from `qhost -q` (short.q@vm disabled), the
/// jobs of `qstat -u '*' -r` counted and sized per queue (slots over 2 cores per node).
#[test]
fn sge_queues_get_job_sizes_from_qstat_r_and_disabled_hosts_from_qhost() {
    let catalog = dev_catalog();
    let entry = catalog.get("localhost-sge").unwrap();
    let mut info = sge_listing::parse_qhost_queues(&batch_fixture("sge/qhost_q_disabled.stdout"));
    let jobs = sge_listing::parse_qstat_r(&batch_fixture("sge/qstat_r_running_pending.stdout"));
    for q in &mut info {
        q.jobs_running = jobs
            .iter()
            .filter(|j| j.in_queue(&q.name) && j.start_ms.is_some())
            .count() as u32;
    }
    let queues = merge_queues(entry, &info, &jobs, true, 0);
    let all_q = queues.iter().find(|q| q.name == "all.q").unwrap();
    assert_eq!((all_q.nodes_busy, all_q.nodes_down), (1, 0));
    let queued = all_q.queued_jobs.as_ref().unwrap();
    assert_eq!(queued.len(), 2, "{queued:?}");
    assert_eq!(
        (queued[0].nodes, queued[0].cores, queued[0].walltime_s),
        (1, 2, 300)
    );
    assert_eq!(all_q.queued_node_s(), Some(300 + 600));
    assert_eq!(all_q.running_jobs.as_ref().unwrap()[0].walltime_s, 120);
    let short_q = queues.iter().find(|q| q.name == "short.q").unwrap();
    assert_eq!(short_q.nodes_down, 1, "disabled instance");
    let running = short_q.running_jobs.as_ref().unwrap();
    assert_eq!(running[0].walltime_s, 60, "no h_rt: the queue's limit");
    assert_eq!(
        short_q.queued_node_s(),
        Some(30),
        "the held job asked for short.q"
    );
}

#[test]
fn pbs_jobs_feed_the_backlog_with_nodect_and_walltime() {
    let catalog = Catalog::parse(
        r#"
[resources.gadi]
access = "pbs"
nodes = 100
cores_per_node = 48
[[resources.gadi.queues]]
name = "normal"
partition = "normal-exec"
max_walltime = "48:00:00"
max_nodes = 100
"#,
    )
    .unwrap();
    let entry = catalog.get("gadi").unwrap();
    let jobs = pbs_listing::parse_qstat_f_jobs(&batch_fixture("pbs/qstat_f_queued.stdout"));
    let info = [QueueInfo {
        name: "normal-exec".into(),
        nodes_total: 100,
        jobs_queued: 1,
        ..Default::default()
    }];
    let queues = merge_queues(entry, &info, &jobs, true, 0);
    assert_eq!(
        queues.len(),
        1,
        "the catalog queue matched by its batch name"
    );
    assert_eq!(queues[0].queued_node_s(), Some(36_000), "1 node x 10 h");
}

#[test]
fn lsf_hosts_and_jobs_give_states_and_sizes() {
    let catalog = Catalog::parse(
        r#"
[resources.lxplus]
access = "lsf"
nodes = 5
cores_per_node = 8
[[resources.lxplus.queues]]
name = "test"
max_walltime = "01:00:00"
max_nodes = 1
[[resources.lxplus.queues]]
name = "8nm"
max_walltime = "00:08:00"
max_nodes = 1
"#,
    )
    .unwrap();
    let entry = catalog.get("lxplus").unwrap();
    let hosts = lsf_listing::parse_bhosts(&batch_fixture("lsf/bhosts_w_unavail.stdout"));
    let mut info = lsf::parse_bqueues(&batch_fixture("lsf/bqueues_empty_queues.stdout"));
    for q in &mut info {
        (q.nodes_total, q.nodes_free, q.nodes_busy, q.nodes_down) =
            (hosts.total, hosts.free, hosts.busy, hosts.down);
    }
    let jobs = lsf_listing::parse_bjobs_jobs(&batch_fixture("lsf/bjobs_u_all_o.stdout"));
    let queues = merge_queues(entry, &info, &jobs, true, 0);
    let test = queues.iter().find(|q| q.name == "test").unwrap();
    assert!(!test.reported, "the IBM example has no queue `test`");
    assert_eq!(test.running_jobs.as_ref().unwrap().len(), 3);
    assert_eq!(
        test.queued_node_s(),
        Some(3600),
        "pending, size unknown: 1 node x limit"
    );
    let eight = queues.iter().find(|q| q.name == "8nm").unwrap();
    assert_eq!(eight.queued_node_s(), Some(480));
    let normal = queues.iter().find(|q| q.name == "normal").unwrap();
    assert!(normal.reported && normal.jobs_queued == 0, "empty queue");
    assert_eq!(
        (normal.nodes_total, normal.nodes_down),
        (5, 2),
        "unavail + closed_Adm"
    );
}

#[test]
fn catalog_queue_not_reported_is_kept_and_marked() {
    let catalog = dev_catalog();
    let entry = catalog.get("localhost-slurm").unwrap();
    let queues = merge_queues(entry, &[], &[], true, 0);
    assert_eq!(queues.len(), 2);
    assert!(queues.iter().all(|q| !q.reported));
}

#[test]
fn mgmt_api_keeps_only_pilot_queues_with_depths() {
    let queues = parse_mgmt_queues(&fixture("fixtures/rabbitmq/api_queues.json")).unwrap();
    assert_eq!(queues.len(), 1, "dead-letter queues are not pilot queues");
    let q = &queues[0];
    assert_eq!(
        (q.campaign.as_str(), q.pilot.as_str()),
        ("fixture-camp", "p-0001")
    );
    assert_eq!((q.ready, q.unacked, q.consumers), (1, 0, 0));
    assert!(
        parse_mgmt_queues(&fixture("fixtures/rabbitmq/api_queues_empty.json"))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn mgmt_api_error_body_is_an_error_not_an_empty_list() {
    let err = parse_mgmt_queues(r#"{"error":"not_authorized"}"#).unwrap_err();
    assert!(err.contains("management API"), "{err}");
}

#[test]
fn pilot_queue_names_split_campaign_and_pilot() {
    assert_eq!(pilot_queue_name("em.c1.pilot.p2"), Some(("c1", "p2")));
    assert_eq!(pilot_queue_name("em.a.b.pilot.p"), Some(("a.b", "p")));
    assert_eq!(pilot_queue_name("em.c1.dead"), None);
    assert_eq!(pilot_queue_name("other.c.pilot.p"), None);
}

#[test]
fn swf_log_gives_waits_by_size() {
    let samples = parse_swf(&fixture("data/kth_sp2_head.swf"), 1);
    assert_eq!(samples.len(), 300, "24 header lines skipped, 300 jobs");
    let first = samples[0];
    assert_eq!(
        (first.nodes, first.walltime_s, first.wait_s),
        (4, 53_940, 192_180.0)
    );
    let by_node = parse_swf(&fixture("data/kth_sp2_head.swf"), 4);
    assert_eq!(by_node[0].nodes, 1);
    assert_eq!(by_node[1].nodes, 7, "25 procs on 4-proc nodes");
}

#[test]
fn swf_without_wait_times_gives_no_samples() {
    assert!(parse_swf(&fixture("data/nasa_ipsc_head.swf"), 1).is_empty());
}

#[test]
fn xsede_pilot_trace_gives_every_tq() {
    let (cores, wall) = xsede_file_size("exp_16c_30m_sleep.txt").unwrap();
    assert_eq!((cores, wall), (16, 1800));
    let samples = parse_xsede_pilot(&fixture("data/xsede_comet_16c_30m.txt"), cores, wall, 24);
    assert_eq!(samples.len(), 40);
    assert_eq!(samples[0].nodes, 1);
    assert!((samples[0].wait_s - 441.792161942).abs() < 1e-6);
}
