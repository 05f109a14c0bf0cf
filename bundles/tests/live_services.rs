//! Against the real services of this machine: SLURM (deploy/dev/slurm-up.sh), Redis and
//! the RabbitMQ management API (deploy/dev/services-up.sh). A missing service FAILS the
//! test with how to start it. Every test cleans up its keys, queues and jobs.

use emanager_bundles::api;
use emanager_bundles::estimator::{Evidence, WaitHistory};
use emanager_bundles::model::ResourceSnapshot;
use emanager_bundles::read_snapshots;
use emanager_bundles::service::{Bundle, BundleConfig};
use emanager_bundles::snapshot_store::snapshot_key;
use emanager_shared::access::runner::LocalRunner;
use emanager_shared::access::sge::SgeJobService;
use emanager_shared::access::slurm::SlurmJobService;
use emanager_shared::access::{JobDescription, JobService};
use emanager_shared::catalog::Catalog;
use emanager_shared::model::{CampaignMeta, PilotLoad, PilotRecord, PilotWait};
use emanager_shared::store::{RedisStore, StateStore, PILOT_WAITS_KEY};
use emanager_shared::{now_ms, CampaignId, CampaignState, PilotId};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

use emanager_test_services::{how_to_start, mgmt_base, mgmt_url, redis_url};

/// localhost-slurm as in examples/resources.toml, plus an LSF resource whose commands do
/// not exist here: its probe fails and it must show as stale, not vanish.
const CATALOG: &str = r#"
[resources.localhost-slurm]
access = "slurm"
nodes = 1
cores_per_node = 2
default_queue = "debug"

[[resources.localhost-slurm.queues]]
name = "debug"
max_walltime = "01:00:00"
max_nodes = 1

[[resources.localhost-slurm.queues]]
name = "short"
max_walltime = "00:01:00"
max_nodes = 1

[resources.localhost-sge]
access = "sge"
nodes = 1
cores_per_node = 2
default_queue = "all.q"

[[resources.localhost-sge.queues]]
name = "all.q"
max_walltime = "01:00:00"
max_nodes = 1

[resources.broken-lsf]
access = "lsf"
nodes = 4
cores_per_node = 8
default_queue = "normal"

[[resources.broken-lsf.queues]]
name = "normal"
max_walltime = "01:00:00"
max_nodes = 4
"#;

fn require_slurm() {
    let ok = std::process::Command::new("sinfo")
        .arg("-h")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "SLURM is not answering (`sinfo -h` failed): start it with deploy/dev/slurm-up.sh"
    );
}

fn require_sge() {
    let ok = std::process::Command::new("qstat")
        .args(["-f", "-u", "*"])
        .output()
        .map(|o| o.status.success() && !String::from_utf8_lossy(&o.stdout).contains("-NA-"))
        .unwrap_or(false);
    assert!(
        ok,
        "Grid Engine is not answering or its execution host is down (`qstat -f`): start it \
         with deploy/dev/sge-up.sh"
    );
}

async fn require_redis() -> RedisStore {
    RedisStore::connect(&redis_url()).await.unwrap_or_else(|e| {
        panic!(
            "Redis at {} is not answering ({e}): {}",
            redis_url(),
            how_to_start()
        )
    })
}

async fn mgmt(method: reqwest::Method, path: &str, body: Option<Value>) -> reqwest::Response {
    let client = reqwest::Client::new();
    let mut req = client
        .request(method, format!("{}{path}", mgmt_base()))
        .basic_auth("guest", Some("guest"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.unwrap_or_else(|e| {
        panic!(
            "RabbitMQ management API at {} is not answering ({e}): {} (services-up.sh runs \
             `rabbitmq-plugins enable rabbitmq_management`)",
            mgmt_base(),
            how_to_start()
        )
    })
}

fn bundle(site: &str, interval: Duration) -> Arc<Bundle> {
    let catalog = Catalog::parse(CATALOG).unwrap();
    let mut config = BundleConfig::new(site, interval);
    config.redis_url = Some(redis_url());
    config.amqp_mgmt_url = Some(mgmt_url());
    config.jitter = 0.0;
    // Leftovers of a failed test expire soon instead of showing as a stopped site for a day.
    config.snapshot_retention = Duration::from_secs(120);
    Bundle::new(&catalog, config, WaitHistory::new())
}

/// Timer and scheduling slack on a loaded 2-core machine.
const SLACK_MS: u64 = 250;

/// The live tests run one at a time: they share the real services, and the timing tests
/// must not compete with the others for the two cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Measures how late this runtime's timers fire while it runs: time the machine did not
/// give the process (other work on a loaded host), which no service can be faulted for.
struct TimerLateness {
    max_ms: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl TimerLateness {
    fn start() -> TimerLateness {
        let max_ms = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let max = max_ms.clone();
        let task = tokio::spawn(async move {
            let tick = Duration::from_millis(20);
            loop {
                let t = Instant::now();
                tokio::time::sleep(tick).await;
                let late = t.elapsed().saturating_sub(tick).as_millis() as u64;
                max.fetch_max(late, std::sync::atomic::Ordering::Relaxed);
            }
        });
        TimerLateness { max_ms, task }
    }

    /// The largest lateness seen; stops measuring.
    fn stop(self) -> u64 {
        self.task.abort();
        self.max_ms.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The first probe of `resource` whose first queue shows a job (counted and sized), and
/// when the probe before it ended; `None` when none does within `limit`.
async fn first_probe_showing_a_job(
    b: &Bundle,
    resource: &str,
    limit: Duration,
) -> Option<(ResourceSnapshot, u64)> {
    let started = Instant::now();
    let mut previous_end = 0;
    while started.elapsed() < limit {
        let snap = b.snapshot().await;
        let r = snap.resource(resource).unwrap();
        let q = &r.queues[0];
        let sized = q.running_jobs.as_ref().map_or(0, Vec::len)
            + q.queued_jobs.as_ref().map_or(0, Vec::len);
        if !r.stale && q.jobs_running + q.jobs_queued > 0 && sized > 0 {
            return Some((r.clone(), previous_end));
        }
        previous_end = r.probed_ms;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// The issue's promise: a job submitted at `submitted_ms` shows in the snapshot within one
/// probe interval plus the probe's own duration. Probes start at a fixed rate, so the probe
/// that saw it started within one interval of the submission, unless the probe running at
/// the submission overran the interval (then right after it ended, `previous_end_ms`); it
/// ended `probe_latency_ms` later. `late_ms` is how late this process's timers fired
/// meanwhile (a starved process keeps no schedule).
fn assert_seen_within_one_interval(
    (r, previous_end_ms): &(ResourceSnapshot, u64),
    submitted_ms: u64,
    interval: Duration,
    late_ms: u64,
) {
    let interval_ms = interval.as_millis() as u64;
    let started_ms = r.probed_ms - r.probe_latency_ms;
    let due_ms = (submitted_ms + interval_ms).max(*previous_end_ms);
    eprintln!(
        "{}: probe started {} ms and ended {} ms after the submission (interval {interval_ms} \
         ms, previous probe ended at {} ms, timers up to {late_ms} ms late)",
        r.name,
        started_ms as i64 - submitted_ms as i64,
        r.probed_ms as i64 - submitted_ms as i64,
        *previous_end_ms as i64 - submitted_ms as i64
    );
    let slack = SLACK_MS + late_ms;
    assert!(
        started_ms <= due_ms + slack,
        "the probe that saw the job started {} ms after the submission (interval {interval_ms} \
         ms)",
        started_ms as i64 - submitted_ms as i64
    );
    assert!(
        r.probed_ms <= due_ms + r.probe_latency_ms + slack,
        "seen {} ms after the submission: more than one interval ({interval_ms} ms) plus the \
         probe ({} ms)",
        r.probed_ms - submitted_ms,
        r.probe_latency_ms
    );
}

fn site(name: &str) -> String {
    format!("test-{name}-{}", std::process::id())
}

async fn get(base: &str, path: &str) -> (u16, String) {
    let resp = reqwest::get(format!("{base}{path}")).await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn http_api_serves_every_endpoint() {
    let _serial = SERIAL.lock().await;
    require_slurm();
    require_redis().await;
    let site = site("api");
    let b = bundle(&site, Duration::from_secs(1));
    b.probe_once().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = api::router(b.clone());
    let server = tokio::spawn(async move { axum::serve(listener, router).await });

    let (status, body) = get(&base, "/v1/resources").await;
    assert_eq!(status, 200);
    let snap: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(snap["site"], site.as_str());
    assert_eq!(snap["resources"].as_array().unwrap().len(), 3);

    let (status, body) = get(&base, "/v1/resources/localhost-slurm").await;
    assert_eq!(status, 200, "{body}");
    let slurm: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(slurm["stale"], false, "{body}");
    assert_eq!(slurm["queues"][0]["name"], "debug");
    assert_eq!(slurm["queues"][0]["nodes_total"], 1);

    let (status, body) = get(&base, "/v1/resources/broken-lsf").await;
    assert_eq!(status, 200);
    let broken: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        broken["stale"], true,
        "a failed probe marks the resource stale: {body}"
    );
    assert!(
        broken["error"].as_str().unwrap().contains("bqueues"),
        "{body}"
    );

    assert_eq!(get(&base, "/v1/resources/nope").await.0, 404);

    let (status, body) = get(
        &base,
        "/v1/predict?resource=localhost-slurm&queue=debug&nodes=1&walltime=00:10:00",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let pred: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(pred["walltime_s"], 600);
    assert!(pred["estimate"]["p50_s"].is_u64(), "{body}");
    assert!(!pred["estimate"]["evidence"].as_array().unwrap().is_empty());

    let (status, body) = get(&base, "/v1/predict?resource=broken-lsf&nodes=2").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("stale_probe"), "{body}");
    let (status, body) = get(&base, "/v1/predict?resource=localhost-slurm&nodes=2").await;
    assert_eq!(status, 400, "over max_nodes: {body}");
    assert!(body.contains("at most 1 nodes"), "{body}");
    let (status, _) = get(&base, "/v1/predict?resource=localhost-slurm&walltime=soon").await;
    assert_eq!(status, 400);
    let (status, _) = get(&base, "/v1/predict?resource=localhost-slurm&queue=nope").await;
    assert_eq!(status, 404);

    let (status, body) = get(&base, "/healthz").await;
    assert_eq!(status, 200);
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["stale"], serde_json::json!(["broken-lsf"]));

    let (status, metrics) = get(&base, "/metrics").await;
    assert_eq!(status, 200);
    for want in [
        "bundles_probe_latency_seconds{",
        &format!("bundles_resource_stale{{site=\"{site}\",resource=\"broken-lsf\"}} 1"),
        "bundles_queue_wait_estimate_seconds{",
        "bundles_probe_failures_total{",
        "# TYPE bundles_probe_age_seconds gauge",
    ] {
        assert!(metrics.contains(want), "missing {want} in\n{metrics}");
    }

    let (status, body) = get(&base, "/openapi.json").await;
    assert_eq!(status, 200);
    let served: Value = serde_json::from_str(&body).unwrap();
    let path = format!(
        "{}/../docs/bundles.openapi.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let checked_in: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        served, checked_in,
        "docs/bundles.openapi.json is out of date: regenerate with \
         `cargo run -p emanager-bundles -- --print-openapi > docs/bundles.openapi.json`"
    );
    for p in [
        "/v1/resources",
        "/v1/resources/{name}",
        "/v1/predict",
        "/healthz",
        "/metrics",
    ] {
        assert!(served["paths"].get(p).is_some(), "{p} not described");
    }

    server.abort();
    let mut con = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg(snapshot_key(&site))
        .query_async(&mut con)
        .await
        .unwrap();
}

#[tokio::test]
async fn submitted_slurm_job_shows_in_the_snapshot_within_one_interval() {
    let _serial = SERIAL.lock().await;
    require_slurm();
    require_redis().await;
    let site = site("slurm");
    let interval = Duration::from_secs(2);
    let b = bundle(&site, interval);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let runner = tokio::spawn(b.clone().run(stop_rx));

    let slurm = SlurmJobService::new(Arc::new(LocalRunner::default()), None);
    let job = JobDescription {
        name: "emanager-bundles-test".into(),
        nodes: 1,
        cores_per_node: 1,
        walltime_s: 60,
        queue: Some("debug".into()),
        command: vec!["sleep".into(), "30".into()],
        working_dir: Some(std::env::temp_dir().display().to_string()),
        stdout: Some("/dev/null".into()),
        ..Default::default()
    };
    let before = b.counters().await.observations;
    // Let the loop run a round first: the submission then falls anywhere in its cycle.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = slurm
        .submit(&job)
        .await
        .expect("sbatch through the access layer");
    let submitted_ms = now_ms();
    let lateness = TimerLateness::start();
    let seen = first_probe_showing_a_job(&b, "localhost-slurm", Duration::from_secs(12)).await;
    let late_ms = lateness.stop();
    // Once it runs, its submit-to-start wait is recorded as an observation.
    let observed_by = Instant::now() + Duration::from_secs(8);
    while b.counters().await.observations == before && Instant::now() < observed_by {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let observed = b.counters().await.observations > before;
    let _ = slurm.cancel(&id).await;
    let seen = seen.expect("the job never showed in the snapshot");
    assert_seen_within_one_interval(&seen, submitted_ms, interval, late_ms);
    assert!(
        observed,
        "the wait of our own running pilot job was not recorded"
    );

    let est = b
        .predict("localhost-slurm", Some("debug"), 1, 60)
        .await
        .unwrap();
    assert!(
        est.evidence
            .iter()
            .any(|e| matches!(e, Evidence::Observed { .. })),
        "{est:?}"
    );

    // The same data reached Redis for the manager, kept for the retention.
    let snaps = read_snapshots(&redis_url()).await.unwrap();
    let mine = snaps
        .iter()
        .find(|s| s.site == site)
        .expect("snapshot in Redis");
    assert!(mine.resource("localhost-slurm").is_some());
    assert_eq!(mine.stopped_updating_s, None, "a live service's snapshot");
    let mut con = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let ttl: i64 = redis::cmd("TTL")
        .arg(snapshot_key(&site))
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(
        ttl > 100 && ttl <= 120,
        "snapshot key TTL {ttl}: the retention, not a few intervals"
    );

    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), runner)
        .await
        .unwrap()
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg(snapshot_key(&site))
        .query_async(&mut con)
        .await
        .unwrap();
}

/// The manager appends each batch pilot's queue wait to the pilot-wait stream; the service
/// learns the waits of its own resources from it, once each, and its estimate follows them.
#[tokio::test]
async fn pilot_waits_from_the_stream_feed_the_estimate_once() {
    let _serial = SERIAL.lock().await;
    let store = require_redis().await;
    let resource = format!("waits-{}", std::process::id());
    // An LSF resource: its probe fails here (stale), the stream is read all the same.
    let catalog = Catalog::parse(&format!(
        "[resources.{resource}]\naccess = \"lsf\"\nnodes = 4\ncores_per_node = 8\n\
         default_queue = \"normal\"\n[[resources.{resource}.queues]]\nname = \"normal\"\n\
         max_walltime = \"01:00:00\"\nmax_nodes = 4\n"
    ))
    .unwrap();
    let site = site("waits");
    let mut config = BundleConfig::new(&site, Duration::from_secs(1));
    config.redis_url = Some(redis_url());
    config.snapshot_retention = Duration::from_secs(120);
    let b = Bundle::new(&catalog, config, WaitHistory::new());
    b.probe_once().await;
    let before = b.counters().await.observations;

    let now = now_ms();
    let wait = PilotWait {
        resource: resource.clone(),
        queue: "normal".into(),
        nodes: 1,
        walltime_s: 600,
        submitted_ms: now - 300_000,
        started_ms: now,
        campaign: CampaignId::random(),
        pilot: PilotId::random(),
        job_id: "4711".into(),
    };
    store.record_pilot_wait(&wait).await.unwrap();
    let mut elsewhere = wait.clone();
    elsewhere.resource = format!("{resource}-other-site");
    store.record_pilot_wait(&elsewhere).await.unwrap();

    b.probe_once().await;
    let learned = b.counters().await.observations - before;
    b.probe_once().await;
    let again = b.counters().await.observations - before;
    let est = b.predict(&resource, None, 1, 600).await.unwrap();

    // Drop our entries from the shared stream and our snapshot.
    let mut con = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let ids: Vec<String> = store
        .pilot_waits("0", 100_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|(_, w)| w.resource.starts_with(&resource))
        .map(|(id, _)| id)
        .collect();
    let mut del = redis::cmd("XDEL");
    del.arg(PILOT_WAITS_KEY);
    for id in &ids {
        del.arg(id);
    }
    let _: i64 = del.query_async(&mut con).await.unwrap();
    let _: () = redis::cmd("DEL")
        .arg(snapshot_key(&site))
        .query_async(&mut con)
        .await
        .unwrap();

    assert_eq!(learned, 1, "our resource's wait, not the other site's");
    assert_eq!(again, 1, "each wait is learned once");
    assert!(
        est.evidence
            .iter()
            .any(|e| matches!(e, Evidence::Observed { samples: 1, .. })),
        "{est:?}"
    );
    assert_eq!(
        est.p50_s, 300,
        "the only evidence besides the stale probe: {est:?}"
    );
}

#[tokio::test]
async fn pilot_queue_depth_and_pilot_load_are_probed() {
    let _serial = SERIAL.lock().await;
    require_slurm();
    let store = require_redis().await;
    let campaign = CampaignId::random();
    let pilot = PilotId::random();
    let queue = format!("em.{campaign}.pilot.{pilot}");
    let qpath = format!("/api/queues/%2f/{queue}");
    let resp = mgmt(
        reqwest::Method::PUT,
        &qpath,
        Some(serde_json::json!({"durable": false, "auto_delete": false})),
    )
    .await;
    assert!(
        resp.status().is_success(),
        "declare {queue}: {}",
        resp.status()
    );
    for _ in 0..2 {
        let resp = mgmt(
            reqwest::Method::POST,
            "/api/exchanges/%2f/amq.default/publish",
            Some(serde_json::json!({"properties": {}, "routing_key": queue,
                "payload": "t", "payload_encoding": "string"})),
        )
        .await;
        assert!(resp.status().is_success());
    }
    store
        .create_campaign(&CampaignMeta {
            id: campaign,
            name: "bundles-test".into(),
            state: CampaignState::Running,
            created_ms: now_ms(),
            finished_ms: 0,
            task_count: 0,
            spec_digest: String::new(),
            workflow_format: String::new(),
            workflow_source: String::new(),
            options_json: String::new(),
        })
        .await
        .unwrap();
    let mut rec = PilotRecord::new(pilot, "localhost-slurm");
    rec.cores = 2;
    rec.job_id = "424242".into();
    store.put_pilot(&campaign, &rec).await.unwrap();
    let load = PilotLoad {
        busy_cores: 1,
        running: 1,
        queued: 0,
    };
    store
        .heartbeat(&campaign, &pilot, 30_000, load)
        .await
        .unwrap();

    let b = bundle(&site("pilots"), Duration::from_secs(1));
    // The management API refreshes queue statistics every few seconds.
    let deadline = Instant::now() + Duration::from_secs(12);
    let snap = loop {
        let snap = b.probe_once().await;
        let ready = snap
            .pilot_queues
            .iter()
            .find(|q| q.queue == queue)
            .map(|q| q.ready);
        if ready == Some(2) || Instant::now() > deadline {
            break snap;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    mgmt(reqwest::Method::DELETE, &qpath, None).await;
    store.delete_campaign(&campaign).await.unwrap();
    let mut con = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg(snapshot_key(&snap.site))
        .query_async(&mut con)
        .await
        .unwrap();

    assert!(snap.errors.is_empty(), "{:?}", snap.errors);
    let q = snap
        .pilot_queues
        .iter()
        .find(|q| q.queue == queue)
        .expect("pilot queue probed");
    assert_eq!(
        (q.campaign.clone(), q.pilot.clone()),
        (campaign.to_string(), pilot.to_string())
    );
    assert_eq!((q.ready, q.unacked, q.consumers), (2, 0, 0));
    let p = snap
        .pilots
        .iter()
        .find(|p| p.pilot == pilot.to_string())
        .expect("pilot load from Redis");
    assert_eq!((p.cores, p.busy_cores, p.tasks_running), (2, 1, 1));
    assert!(p.alive);
    assert!(p.heartbeat_age_ms.is_some_and(|a| a < 30_000));
}

#[tokio::test]
async fn submitted_sge_job_shows_in_the_snapshot_within_one_interval() {
    let _serial = SERIAL.lock().await;
    require_sge();
    require_redis().await;
    let site = site("sge");
    let interval = Duration::from_secs(2);
    let b = bundle(&site, interval);
    let first = b.probe_once().await;
    let sge = first.resource("localhost-sge").unwrap();
    assert!(!sge.stale, "{:?}", sge.error);
    let all_q = &sge.queues[0];
    assert!(
        all_q.reported && all_q.nodes_total == 1 && all_q.nodes_down == 0,
        "{all_q:?}"
    );
    assert!(
        all_q.queued_jobs.is_some() && all_q.running_jobs.is_some(),
        "SGE gives job sizes (qstat -r): {all_q:?}"
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let runner = tokio::spawn(b.clone().run(stop_rx));
    let svc = SgeJobService::new(Arc::new(LocalRunner::default()), None);
    let job = JobDescription {
        name: "emanager-bundles-sge-test".into(),
        nodes: 1,
        cores_per_node: 1,
        walltime_s: 60,
        queue: Some("all.q".into()),
        command: vec!["sleep".into(), "20".into()],
        working_dir: Some(std::env::temp_dir().display().to_string()),
        stdout: Some("/dev/null".into()),
        stderr: Some("/dev/null".into()),
        ..Default::default()
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = svc
        .submit(&job)
        .await
        .expect("qsub through the access layer");
    let submitted_ms = now_ms();
    let lateness = TimerLateness::start();
    let seen = first_probe_showing_a_job(&b, "localhost-sge", Duration::from_secs(12)).await;
    let late_ms = lateness.stop();
    let _ = svc.cancel(&id).await;
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), runner)
        .await
        .unwrap()
        .unwrap();
    let mut con = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg(snapshot_key(&site))
        .query_async(&mut con)
        .await
        .unwrap();
    let seen = seen.expect("the SGE job never showed in the snapshot");
    assert_seen_within_one_interval(&seen, submitted_ms, interval, late_ms);
}
