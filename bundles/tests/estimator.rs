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
            Evidence::Backfill { .. } => "backfill",
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
    // 5 nodes: only 4 are free before the head job's reservation at 3,000 s, and none
    // spare after it, so it cannot backfill.
    let req = WaitRequest {
        nodes: 5,
        walltime_s: 1800,
    };
    let est = estimate(
        &WaitHistory::new(),
        "r",
        "batch",
        req,
        Some(&busy_queue()),
        None,
    );
    assert_eq!(kinds(&est.evidence), ["backlog"]);
    // 1 h of backlog + 3,000 s until both running jobs end.
    assert_eq!(est.p50_s, 3600 + 3000);
    assert!(est.p10_s < est.p50_s && est.p50_s < est.p90_s);
    match &est.evidence[0] {
        Evidence::Backlog { shadow_s, .. } => assert_eq!(*shadow_s, Some(3000)),
        e => panic!("{e:?}"),
    }
}

/// The head job (5 nodes) is promised the nodes at 3,000 s, when the 6-node job ends. A
/// 1-node job of 30 min fits the 4 nodes the other job frees at 600 s and ends before then:
/// it backfills. A 6-node job waits behind the head job and the backlog.
#[test]
fn a_short_job_backfills_before_the_head_jobs_reservation() {
    let q = busy_queue();
    let est = |nodes: u32, walltime_s: u64| {
        let req = WaitRequest { nodes, walltime_s };
        estimate(&WaitHistory::new(), "r", "batch", req, Some(&q), None)
    };
    let short = est(1, 1800);
    assert_eq!(kinds(&short.evidence), ["backlog", "backfill"]);
    assert_eq!(
        short.evidence[1],
        Evidence::Backfill {
            start_s: 600,
            shadow_s: 3000,
            head_nodes: 5
        }
    );
    assert_eq!(
        short.p50_s,
        600 + emanager_bundles::estimator::BACKFILL_PASS_S
    );
    let wide = est(6, 1800);
    assert_eq!(kinds(&wide.evidence), ["backlog"]);
    assert_eq!(wide.p50_s, 3600 + 3000);
}

/// Two free nodes, a 2-node head job that needs the 2 nodes the running job frees in 1 h
/// (no node spare then): a 2-node request of up to 1 h backfills now, a longer one waits.
#[test]
fn the_requested_walltime_decides_whether_a_job_backfills() {
    let q = QueueSnapshot {
        max_walltime_s: Some(86_400),
        nodes_total: 4,
        nodes_free: 2,
        nodes_busy: 2,
        jobs_running: 1,
        jobs_queued: 1,
        queued_jobs: Some(vec![JobSize {
            nodes: 4,
            cores: 0,
            walltime_s: 7200,
            elapsed_s: 0,
        }]),
        running_jobs: Some(vec![JobSize {
            nodes: 2,
            cores: 0,
            walltime_s: 7200,
            elapsed_s: 3600,
        }]),
        reported: true,
        ..Default::default()
    };
    let est = |walltime_s: u64| {
        let req = WaitRequest {
            nodes: 2,
            walltime_s,
        };
        estimate(&WaitHistory::new(), "r", "q", req, Some(&q), None)
    };
    let fits = est(3600);
    assert!(kinds(&fits.evidence).contains(&"backfill"), "{fits:?}");
    assert_eq!(fits.p50_s, 30);
    let long = est(3601);
    assert!(!kinds(&long.evidence).contains(&"backfill"), "{long:?}");
    // Behind the head job: its 8 node-hours drained by 4 nodes, at least.
    assert_eq!(long.p50_s, 7200);
}

/// The head job needs all 10 nodes for 20 s, so little work is queued (20 s of drain), but
/// it starts only when the 5-node job ends in 5,000 s: a 4-node job of 1,000 s backfills when
/// the 3-node job ends, one of 10,000 s starts after the head job, not before.
#[test]
fn a_job_that_cannot_backfill_starts_after_the_head_job() {
    let q = QueueSnapshot {
        max_walltime_s: Some(86_400),
        nodes_total: 10,
        nodes_free: 2,
        jobs_running: 2,
        jobs_queued: 1,
        queued_jobs: Some(vec![job(10, 20, 0)]),
        running_jobs: Some(vec![job(3, 1000, 900), job(5, 6000, 1000)]),
        reported: true,
        ..Default::default()
    };
    let est = |walltime_s: u64| {
        let req = WaitRequest {
            nodes: 4,
            walltime_s,
        };
        estimate(&WaitHistory::new(), "r", "q", req, Some(&q), None).p50_s
    };
    assert_eq!(est(1000), 100 + 30);
    assert_eq!(est(10_000), 5000 + 30);
}

/// SWF logs give each job's requested time (field 9): the prior of a short request comes
/// from short jobs, that of a long one from long jobs (which waited far longer on KTH-SP2).
#[test]
fn a_trace_prior_with_requested_walltimes_is_conditioned_on_them() {
    let text = std::fs::read_to_string(format!(
        "{}/tests/data/kth_sp2_head.swf",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let mut h = WaitHistory::new();
    // 128 processors a node: every job of the 100-node SP2 counts as one node.
    h.add_prior("kth", emanager_bundles::traces::parse_swf(&text, 128));
    let est = |walltime_s: u64| {
        let req = WaitRequest {
            nodes: 1,
            walltime_s,
        };
        estimate(&h, "kth", "q", req, None, None)
    };
    let (short, long) = (est(600), est(36_000));
    assert!(
        long.p50_s > 2 * short.p50_s && long.p90_s > short.p90_s,
        "{short:?} {long:?}"
    );
    match (&short.evidence[1], &long.evidence[1]) {
        (Evidence::Prior { walltime: a, .. }, Evidence::Prior { walltime: b, .. }) => {
            assert_ne!(a, "any");
            assert_ne!(a, b);
        }
        e => panic!("{e:?}"),
    }
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
            walltime,
        } => {
            // One file: every job asked for 30 min, so walltime classes cannot be told apart.
            assert_eq!(
                (*samples, bucket.as_str(), walltime.as_str()),
                (40, "1", "any")
            );
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

fn job(nodes: u32, walltime_s: u64, elapsed_s: u64) -> JobSize {
    JobSize {
        nodes,
        cores: 0,
        walltime_s,
        elapsed_s,
    }
}

proptest::proptest! {
    /// Other things equal, a longer walltime never gets a shorter estimate (any quantile),
    /// whatever the queue, the request's size, the prior and our own observations.
    #[test]
    fn a_longer_walltime_never_waits_less(
        total in 1u32..40,
        free in 0u32..40,
        running in proptest::collection::vec((1u32..16, 60u64..86_400, 0u64..86_400), 0..12),
        queued in proptest::collection::vec((1u32..16, 1u64..86_400), 0..12),
        sizes_known in proptest::bool::ANY,
        nodes in 1u32..20,
        walltimes in (60u64..200_000, 0u64..200_000),
        prior in proptest::collection::vec((1u32..8, 0u64..100_000, 0.0f64..50_000.0), 0..80),
        observed in proptest::collection::vec(0.0f64..50_000.0, 0..10),
    ) {
        let free = free.min(total);
        let q = QueueSnapshot {
            max_walltime_s: Some(172_800),
            nodes_total: total,
            nodes_free: free,
            jobs_running: running.len() as u32,
            jobs_queued: queued.len() as u32,
            queued_jobs: sizes_known.then(|| queued.iter().map(|&(n, w)| job(n, w, 0)).collect()),
            running_jobs: sizes_known.then(|| running.iter().map(|&(n, w, e)| job(n, w, e)).collect()),
            reported: true,
            ..Default::default()
        };
        let mut h = WaitHistory::new();
        h.add_prior("p", prior.iter().map(|&(n, w, wait_s)| WaitSample { nodes: n, walltime_s: w, wait_s }));
        for &w in &observed {
            h.observe("r", "q", WaitSample { nodes, walltime_s: 600, wait_s: w });
        }
        let (short, longer) = (walltimes.0, walltimes.0 + walltimes.1);
        let at = |walltime_s| estimate(&h, "r", "q", WaitRequest { nodes, walltime_s }, Some(&q), None);
        let (a, b) = (at(short), at(longer));
        proptest::prop_assert!(
            a.p10_s <= b.p10_s && a.p50_s <= b.p50_s && a.p90_s <= b.p90_s,
            "{short} s: {a:?}\n{longer} s: {b:?}"
        );
    }
}

/// What `/v1/predict?walltime=` calls: the service's prediction depends on the walltime
/// asked for (here through a prior split by walltime; the resource is not probed yet).
#[tokio::test]
async fn the_service_predicts_with_the_requested_walltime() {
    use emanager_bundles::service::{Bundle, BundleConfig};
    let catalog = emanager_shared::catalog::Catalog::parse(
        "[resources.r]\naccess = \"slurm\"\nnodes = 4\ncores_per_node = 2\n\
         [[resources.r.queues]]\nname = \"q\"\nmax_walltime = \"02:00:00\"\nmax_nodes = 4\n",
    )
    .unwrap();
    let mut h = WaitHistory::new();
    let short = (0..20).map(|_| WaitSample {
        nodes: 1,
        walltime_s: 600,
        wait_s: 100.0,
    });
    let long = (0..20).map(|_| WaitSample {
        nodes: 1,
        walltime_s: 3600,
        wait_s: 5000.0,
    });
    h.add_prior("synthetic", short.chain(long));
    let b = Bundle::new(
        &catalog,
        BundleConfig::new("t", std::time::Duration::from_secs(60)),
        h,
    );
    let p50 = |walltime_s| {
        let b = b.clone();
        async move { b.predict("r", None, 1, walltime_s).await.unwrap().p50_s }
    };
    assert_eq!((p50(600).await, p50(3600).await), (100, 5000));
}
