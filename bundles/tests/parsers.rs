//! Parsers against captured real outputs: squeue job sizes, the RabbitMQ management API,
//! SGE/SLURM queues merged with the catalog (down nodes, empty queues), and wait traces.

use emanager_bundles::probe::{merge_queues, parse_mgmt_queues, pilot_queue_name};
use emanager_bundles::slurm_jobs::parse_squeue_sizes;
use emanager_bundles::traces::{parse_swf, parse_xsede_pilot, xsede_file_size};
use emanager_shared::access::{sge, slurm, JobState};
use emanager_shared::catalog::Catalog;

fn fixture(path: &str) -> String {
    let p = format!("{}/tests/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn dev_catalog() -> Catalog {
    Catalog::load(format!(
        "{}/../examples/resources.toml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

#[test]
fn squeue_sizes_reads_running_and_pending_jobs() {
    let jobs = parse_squeue_sizes(&fixture(
        "../../shared/tests/fixtures/slurm/squeue_sizes_running_pending.stdout",
    ));
    assert_eq!(jobs.len(), 2);
    let pending = &jobs[0];
    assert_eq!(pending.state, JobState::Queued);
    assert_eq!((pending.nodes, pending.walltime_s), (1, 180));
    assert_eq!(pending.wait_s(), None, "a pending job has not waited yet");
    let running = &jobs[1];
    assert_eq!(running.state, JobState::Running);
    assert_eq!(running.name, "emanager-localhost-slurm");
    assert_eq!(running.wait_s(), Some(1));
    let size = running.size(running.start_s.unwrap() + 30);
    assert_eq!((size.elapsed_s, size.remaining_s()), (30, 90));
}

#[test]
fn squeue_sizes_of_an_idle_cluster_is_empty() {
    assert!(parse_squeue_sizes(&fixture(
        "../../shared/tests/fixtures/slurm/squeue_sizes_empty.stdout"
    ))
    .is_empty());
}

#[test]
fn slurm_queues_merge_with_catalog_and_job_sizes() {
    let catalog = dev_catalog();
    let entry = catalog.get("localhost-slurm").unwrap();
    let mut info = slurm::parse_sinfo(&fixture("fixtures/slurm/sinfo_drained.stdout")).unwrap();
    let jobs = parse_squeue_sizes(&fixture(
        "../../shared/tests/fixtures/slurm/squeue_sizes_running_pending.stdout",
    ));
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
