//! The queue-wait estimator on recorded submit/start histories and probed backlogs.

use emanager_bundles::estimator::{
    estimate, Evidence, SizeBucket, Staleness, WaitHistory, WaitRequest, WaitSample,
};
use emanager_bundles::model::{JobSize, QueueSnapshot};
use emanager_bundles::traces::parse_xsede_pilot;

const REQ: WaitRequest = WaitRequest {
    nodes: 1,
    walltime_s: 1800,
};

fn sample(wait_s: f64) -> WaitSample {
    WaitSample {
        nodes: 1,
        walltime_s: 1800,
        wait_s,
    }
}

fn busy_queue() -> QueueSnapshot {
    QueueSnapshot {
        name: "batch".into(),
        max_walltime_s: Some(7200),
        max_nodes: Some(10),
        nodes_total: 10,
        nodes_free: 0,
        nodes_busy: 10,
        jobs_running: 2,
        jobs_queued: 2,
        // 2 x 5 nodes x 1 h queued = 10 node-hours over 10 nodes: 1 h to drain.
        queued_jobs: Some(vec![
            JobSize {
                nodes: 5,
                cores: 0,
                walltime_s: 3600,
                elapsed_s: 0,
            },
            JobSize {
                nodes: 5,
                cores: 0,
                walltime_s: 3600,
                elapsed_s: 0,
            },
        ]),
        running_jobs: Some(vec![
            JobSize {
                nodes: 4,
                cores: 0,
                walltime_s: 3600,
                elapsed_s: 3000,
            },
            JobSize {
                nodes: 6,
                cores: 0,
                walltime_s: 3600,
                elapsed_s: 600,
            },
        ]),
        reported: true,
        ..Default::default()
    }
}

fn kinds(e: &[Evidence]) -> Vec<&'static str> {
    e.iter()
        .map(|e| match e {
            Evidence::Observed { .. } => "observed",
            Evidence::Backlog { .. } => "backlog",
            Evidence::FitsFreeNodes { .. } => "fits",
            Evidence::Prior { .. } => "prior",
            Evidence::StaleProbe { .. } => "stale",
            Evidence::QueueNotProbed => "not_probed",
            Evidence::NoData => "no_data",
        })
        .collect()
}

#[test]
fn no_evidence_says_so() {
    let est = estimate(&WaitHistory::new(), "r", "q", REQ, None, None);
    assert_eq!(kinds(&est.evidence), ["not_probed", "no_data"]);
    assert_eq!((est.p10_s, est.p50_s, est.p90_s), (0, 0, 0));
}

#[test]
fn backlog_drains_queued_node_hours_and_waits_for_running_jobs() {
    let est = estimate(
        &WaitHistory::new(),
        "r",
        "batch",
        REQ,
        Some(&busy_queue()),
        None,
    );
    assert_eq!(kinds(&est.evidence), ["backlog"]);
    // 1 h of backlog + 600 s until the 4-node job ends.
    assert_eq!(est.p50_s, 3600 + 600);
    assert!(est.p10_s < est.p50_s && est.p50_s < est.p90_s);
}

#[test]
fn request_that_fits_free_nodes_of_an_empty_queue_starts_at_once() {
    let q = QueueSnapshot {
        nodes_total: 4,
        nodes_free: 2,
        queued_jobs: Some(vec![]),
        running_jobs: Some(vec![]),
        reported: true,
        ..Default::default()
    };
    let est = estimate(&WaitHistory::new(), "r", "q", REQ, Some(&q), None);
    assert_eq!(kinds(&est.evidence), ["fits"]);
    assert_eq!(est.p50_s, 0);
}

#[test]
fn counts_without_sizes_are_flagged_as_guessed() {
    let q = QueueSnapshot {
        max_walltime_s: Some(3600),
        nodes_total: 2,
        jobs_queued: 4,
        reported: true,
        ..Default::default()
    };
    let est = estimate(&WaitHistory::new(), "r", "q", REQ, Some(&q), None);
    match &est.evidence[0] {
        Evidence::Backlog { sizes_known, .. } => assert!(!sizes_known),
        e => panic!("{e:?}"),
    }
    // 4 jobs x 1 node x 1800 s / 2 nodes + 1800 s until a node frees.
    assert_eq!(est.p50_s, 3600 + 1800);
}

/// Grid Engine's queue as the probe builds it from the captured `qhost -q` and
/// `qstat -u '*' -r` (two pending jobs of 300 s and 600 s in all.q, whose only host is
/// busy): the backlog uses the job sizes, as for SLURM.
#[test]
fn sge_job_sizes_feed_the_backlog_like_slurm() {
    use emanager_shared::access::listing::sge::{parse_qhost_queues, parse_qstat_r};
    let shared = format!(
        "{}/../shared/tests/fixtures/sge",
        env!("CARGO_MANIFEST_DIR")
    );
    let read = |f: &str| std::fs::read_to_string(format!("{shared}/{f}")).unwrap();
    let catalog = emanager_shared::catalog::Catalog::load(format!(
        "{}/../examples/resources.toml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let entry = catalog.get("localhost-sge").unwrap();
    let info = parse_qhost_queues(&read("qhost_q_busy.stdout"));
    let jobs = parse_qstat_r(&read("qstat_r_running_pending.stdout"));
    let queues = emanager_bundles::probe::merge_queues(entry, &info, &jobs, true, 0);
    let all_q = queues.iter().find(|q| q.name == "all.q").unwrap();
    let est = estimate(
        &WaitHistory::new(),
        "localhost-sge",
        "all.q",
        REQ,
        Some(all_q),
        None,
    );
    match &est.evidence[0] {
        Evidence::Backlog {
            sizes_known,
            queued_node_hours,
            usable_nodes,
            ..
        } => {
            assert!(sizes_known);
            assert_eq!((*queued_node_hours, *usable_nodes), (0.25, 1));
        }
        e => panic!("{e:?}"),
    }
    assert!(
        est.p50_s >= 900,
        "the queued 900 node-seconds at least: {est:?}"
    );
}

#[test]
fn stale_probe_is_flagged_and_its_backlog_not_used() {
    let stale = Staleness {
        error: "sinfo: command not found".into(),
        age_s: 300,
    };
    let est = estimate(
        &WaitHistory::new(),
        "r",
        "batch",
        REQ,
        Some(&busy_queue()),
        Some(&stale),
    );
    assert_eq!(kinds(&est.evidence), ["stale", "no_data"]);
    match &est.evidence[0] {
        Evidence::StaleProbe { error, age_s } => {
            assert!(error.contains("sinfo"));
            assert_eq!(*age_s, 300);
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn estimate_moves_toward_observed_waits_as_they_accumulate() {
    // Backlog says ~70 min; the queue actually starts our pilots after ~2 min.
    let mut h = WaitHistory::new();
    let q = busy_queue();
    let before = estimate(&h, "r", "batch", REQ, Some(&q), None).p50_s;
    let mut previous_gap = before.abs_diff(120);
    for n in 1..=30 {
        h.observe("r", "batch", sample(110.0 + f64::from(n % 3) * 10.0));
        let est = estimate(&h, "r", "batch", REQ, Some(&q), None);
        let gap = est.p50_s.abs_diff(120);
        assert!(
            gap <= previous_gap,
            "after {n} observations: {} (gap {gap} > {previous_gap})",
            est.p50_s
        );
        previous_gap = gap;
        assert!(kinds(&est.evidence).contains(&"observed"));
    }
    assert!(
        previous_gap < before.abs_diff(120) / 8,
        "still {previous_gap} s off after 30"
    );
    assert_eq!(h.observed_count("r", "batch", 1), 30);
}

#[test]
fn observations_of_other_queues_and_sizes_do_not_count() {
    let mut h = WaitHistory::new();
    h.observe("r", "other", sample(5.0));
    h.observe("r2", "batch", sample(5.0));
    h.observe(
        "r",
        "batch",
        WaitSample {
            nodes: 64,
            walltime_s: 60,
            wait_s: 5.0,
        },
    );
    let est = estimate(&h, "r", "batch", REQ, Some(&busy_queue()), None);
    assert!(!kinds(&est.evidence).contains(&"observed"));
}

#[test]
fn observed_alone_gives_their_quantiles() {
    let mut h = WaitHistory::new();
    for w in [10.0, 20.0, 30.0, 40.0, 50.0] {
        h.observe("r", "q", sample(w));
    }
    let stale = Staleness {
        error: "x".into(),
        age_s: 1,
    };
    let est = estimate(&h, "r", "q", REQ, None, Some(&stale));
    assert_eq!(est.p50_s, 30);
    assert_eq!((est.p10_s, est.p90_s), (14, 46));
}

#[test]
fn trace_prior_is_used_for_the_nearest_bucket() {
    let text = std::fs::read_to_string(format!(
        "{}/tests/data/xsede_comet_16c_30m.txt",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let mut h = WaitHistory::new();
    h.add_prior("xsede comet 16c", parse_xsede_pilot(&text, 16, 1800, 24));
    let req = WaitRequest {
        nodes: 2,
        walltime_s: 1800,
    };
    let est = estimate(&h, "comet", "compute", req, None, None);
    assert_eq!(kinds(&est.evidence), ["not_probed", "prior"]);
    match &est.evidence[1] {
        Evidence::Prior {
            samples,
            bucket,
            source,
        } => {
            assert_eq!((*samples, bucket.as_str()), (40, "1"));
            assert!(source.contains("comet"));
        }
        e => panic!("{e:?}"),
    }
    assert!(est.p10_s < est.p50_s && est.p50_s < est.p90_s);
}

#[test]
fn size_buckets_are_powers_of_two() {
    let labels: Vec<String> = [1, 2, 3, 4, 5, 8, 9, 100]
        .iter()
        .map(|&n| SizeBucket::of(n).label())
        .collect();
    assert_eq!(
        labels,
        ["1", "2", "3-4", "3-4", "5-8", "5-8", "9-16", "65-128"]
    );
}

proptest::proptest! {
    /// Whatever the evidence, quantiles are ordered, and the blended p50 lies between the
    /// observed median and the estimate without observations.
    #[test]
    fn quantiles_are_ordered_and_blend_between_sources(
        waits in proptest::collection::vec(0.0f64..100_000.0, 0..40),
        free in 0u32..10,
        queued in proptest::collection::vec((1u32..10, 60u64..7200), 0..8),
        nodes in 1u32..10,
    ) {
        let q = QueueSnapshot {
            max_walltime_s: Some(7200),
            nodes_total: 10,
            nodes_free: free,
            queued_jobs: Some(queued.iter().map(|&(n, w)| JobSize { nodes: n, cores: 0, walltime_s: w, elapsed_s: 0 }).collect()),
            reported: true,
            ..Default::default()
        };
        let req = WaitRequest { nodes, walltime_s: 600 };
        let base = estimate(&WaitHistory::new(), "r", "q", req, Some(&q), None);
        let mut h = WaitHistory::new();
        for &w in &waits {
            h.observe("r", "q", WaitSample { nodes, walltime_s: 600, wait_s: w });
        }
        let est = estimate(&h, "r", "q", req, Some(&q), None);
        proptest::prop_assert!(est.p10_s <= est.p50_s && est.p50_s <= est.p90_s, "{est:?}");
        if !waits.is_empty() {
            let mut s = waits.clone();
            s.sort_by(f64::total_cmp);
            let x = 0.5 * (s.len() - 1) as f64;
            let med = s[x.floor() as usize] + (s[x.ceil() as usize] - s[x.floor() as usize]) * (x - x.floor());
            let (lo, hi) = (med.min(base.p50_s as f64), med.max(base.p50_s as f64));
            proptest::prop_assert!(est.p50_s as f64 >= lo.floor() - 1.0 && est.p50_s as f64 <= hi.ceil() + 1.0, "{est:?} med {med} base {base:?}");
        }
    }
}
