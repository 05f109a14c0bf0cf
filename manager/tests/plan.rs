//! `emanager plan`: the plan as a table and as JSON, `--simulate`, the catalog from file,
//! env and flag, bundle snapshots from the real Redis, and the errors a user can make.

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Two batch resources of different node sizes and one local host.
const CATALOG: &str = r#"
[resources.wide]
access = "slurm"
nodes = 50
cores_per_node = 32
memory_per_node_gb = 128
default_queue = "batch"
[[resources.wide.queues]]
name = "batch"
max_walltime = "12:00:00"
max_nodes = 50
[[resources.wide.queues]]
name = "debug"
max_walltime = "00:30:00"
max_nodes = 2

[resources.gpu]
access = "pbs"
nodes = 10
cores_per_node = 16
gpus_per_node = 4
default_queue = "workq"
cost_per_core_hour = 3.0
[[resources.gpu.queues]]
name = "workq"
max_walltime = "06:00:00"
max_nodes = 10

[resources.here]
access = "local"
nodes = 1
cores_per_node = 4
"#;

/// 200 one-hour 8-core simulations, then (after the stage barrier) one 16-core reduction.
const WORKFLOW: &str = r#"
name = "sweep"
[[stages]]
name = "simulate"
[[stages]]
name = "reduce"

[[tasks]]
name = "sim-{index}"
count = 200
command = ["./sim", "{index}"]
cores = 8
est_duration_s = 3600
stage = "simulate"

[[tasks]]
name = "reduce"
command = ["./reduce"]
cores = 16
est_duration_s = 600
stage = "reduce"
"#;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::with(CATALOG, WORKFLOW)
    }

    fn with(catalog: &str, workflow: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("resources.toml"), catalog).unwrap();
        std::fs::write(dir.path().join("wf.toml"), workflow).unwrap();
        Fixture { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `emanager plan wf.toml --resources resources.toml ARGS` with no service URLs.
    fn plan(&self, args: &[&str]) -> Command {
        let mut c = emanager(self.dir.path());
        c.arg("plan")
            .arg(self.path("wf.toml"))
            .arg("--resources")
            .arg(self.path("resources.toml"))
            .args(args);
        c
    }
}

fn emanager(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("emanager").unwrap();
    c.env_remove("EMANAGER_AMQP_URL")
        .env_remove("EMANAGER_REDIS_URL")
        .env_remove("EMANAGER_CONFIG")
        .env_remove("EMANAGER_RESOURCES")
        .current_dir(dir);
    c
}

fn json_of(c: &mut Command) -> Value {
    let out = c.assert().success().get_output().stdout.clone();
    serde_json::from_slice(&out).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out));
    })
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort_unstable();
    k
}

#[test]
fn the_plan_prints_pilots_predictions_and_where_the_numbers_come_from() {
    let f = Fixture::new();
    f.plan(&[])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "plan for `sweep`: 201 tasks, 1602.7 core-hours of work, critical path 1h10m",
        ))
        .stdout(predicate::str::contains("strategy ttc"))
        .stdout(predicate::str::is_match("RESOURCE +QUEUE +NODES +CORES +WALLTIME +WAIT +WHY").unwrap())
        .stdout(predicate::str::is_match(r"\nwide +batch +\d+ +\d+ +\d\d:\d\d:\d\d +30m00s +predicted start").unwrap())
        .stdout(predicate::str::is_match(r"predicted TTC \S+ \(\d+ s\) · [\d.]+ core-hours requested \(cost [\d.]+\) · [\d.]+ idle core-hours expected").unwrap())
        .stdout(predicate::str::contains(
            "no Redis configured (--redis-url): queue waits and idle nodes from the catalog alone",
        ))
        .stdout(predicate::str::contains(
            "no bundle snapshot for wide: assuming a queue wait of 30m00s (p10 1m00s, p90 4h00m) and no idle nodes",
        ))
        .stdout(predicate::str::contains("nothing was submitted"));
}

#[test]
fn plan_json_has_stable_field_names() {
    let f = Fixture::new();
    let v = json_of(f.plan(&["--json"]).arg("--strategy").arg("aimes"));
    assert_eq!(
        keys(&v),
        [
            "budget",
            "catalog",
            "core_hours_requested",
            "cost",
            "critical_path_s",
            "expected_idle_core_hours",
            "notes",
            "offers",
            "pilots",
            "predicted_ttc_s",
            "snapshot",
            "strategy",
            "tasks",
            "work_core_hours",
            "workflow"
        ]
    );
    assert_eq!(v["strategy"], "aimes");
    assert_eq!(v["tasks"], 201);
    assert_eq!(v["critical_path_s"], 4200.0);
    assert_eq!(v["snapshot"], Value::Null);
    let pilots = v["pilots"].as_array().unwrap();
    // aimes: one pilot on each resource that can run a task (the 4-core host cannot).
    let mut on: Vec<&str> = pilots
        .iter()
        .map(|p| p["resource"].as_str().unwrap())
        .collect();
    on.sort_unstable();
    assert_eq!(on, ["gpu", "wide"]);
    for p in pilots {
        assert_eq!(
            keys(p),
            [
                "core_hours",
                "cores",
                "gpus",
                "nodes",
                "predicted_wait_s",
                "queue",
                "resource",
                "walltime_s",
                "why"
            ]
        );
        assert!(p["why"]
            .as_str()
            .unwrap()
            .starts_with("aimes: 1 of 2 pilots"));
    }
    let gpu = pilots.iter().find(|p| p["resource"] == "gpu").unwrap();
    assert_eq!(gpu["gpus"], gpu["nodes"].as_u64().unwrap() * 4);
    let offers = v["offers"].as_array().unwrap();
    assert_eq!(
        keys(&offers[0]),
        [
            "free_nodes",
            "queues",
            "resource",
            "source",
            "total_nodes",
            "wait_p10_s",
            "wait_p50_s",
            "wait_p90_s"
        ]
    );
    let wide = offers.iter().find(|o| o["resource"] == "wide").unwrap();
    let queues = wide["queues"].as_array().unwrap();
    assert_eq!(
        keys(&queues[1]),
        [
            "free_nodes",
            "queue",
            "wait_p10_s",
            "wait_p50_s",
            "wait_p90_s"
        ]
    );
    assert_eq!(queues[1]["queue"], "debug");
    let here = offers.iter().find(|o| o["resource"] == "here").unwrap();
    assert_eq!(
        (here["source"].as_str(), here["wait_p50_s"].as_f64()),
        (Some("local"), Some(0.0))
    );
    assert!(v["predicted_ttc_s"].as_f64().unwrap() >= 4200.0);
    assert!(v["notes"].as_array().unwrap().len() >= 3);
}

#[test]
fn a_budget_selects_the_budget_strategy_and_is_respected() {
    let f = Fixture::new();
    let free = json_of(&mut f.plan(&["--json"]));
    let cap = (free["core_hours_requested"].as_f64().unwrap() * 0.95).round();
    let v = json_of(&mut f.plan(&["--json", "--budget", &format!("{cap}")]));
    assert_eq!(v["strategy"], "budget");
    assert_eq!(v["budget"]["core_hours"], cap);
    assert!(v["core_hours_requested"].as_f64().unwrap() <= cap, "{v}");
    assert!(v["predicted_ttc_s"].as_f64().is_some(), "{v}");
    f.plan(&["--budget", "1"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no plan fits the budget"))
        .stderr(predicate::str::contains("raise --budget"));
    f.plan(&["--budget", "lots"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("`lots` is not a budget"));
    f.plan(&["--strategy", "budget"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "the `budget` strategy needs a cap",
        ));
}

#[test]
fn simulate_compares_the_strategies_side_by_side_deterministically() {
    let f = Fixture::new();
    let args = [
        "--json",
        "--simulate",
        "8",
        "--seed",
        "5",
        "--budget",
        "core-hours=2300,cost=6000",
    ];
    let a = json_of(&mut f.plan(&args));
    let b = json_of(&mut f.plan(&args));
    assert_eq!(a, b, "same seed, same simulations");
    let sim = &a["simulation"];
    assert_eq!(
        keys(sim),
        [
            "pilot_failure_prob",
            "runs",
            "seed",
            "strategies",
            "traced_resources",
            "waits"
        ]
    );
    assert_eq!(
        (sim["runs"].as_u64(), sim["seed"].as_u64()),
        (Some(8), Some(5))
    );
    let rows = sim["strategies"].as_array().unwrap();
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["strategy"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["aimes", "ttc", "budget"]);
    for r in rows {
        assert_eq!(r["error"], Value::Null, "{r}");
        assert_eq!(
            keys(r),
            [
                "busy_core_hours_mean",
                "core_hours_requested",
                "error",
                "idle_core_hours_mean",
                "pilots",
                "predicted_ttc_s",
                "strategy",
                "ttc_s",
                "unfinished_runs"
            ]
        );
        assert_eq!(keys(&r["ttc_s"]), ["max", "mean", "min", "p50", "p90"]);
        let t = &r["ttc_s"];
        let (min, p50, max) = (
            t["min"].as_f64().unwrap(),
            t["p50"].as_f64().unwrap(),
            t["max"].as_f64().unwrap(),
        );
        assert!(4200.0 <= min && min <= p50 && p50 <= max, "{t}");
    }
    let c = json_of(&mut f.plan(&["--json", "--simulate", "8", "--seed", "6"]));
    assert_ne!(
        a["simulation"]["strategies"][0]["ttc_s"],
        c["simulation"]["strategies"][0]["ttc_s"]
    );
    assert_eq!(
        c["simulation"]["strategies"].as_array().unwrap().len(),
        2,
        "no budget, no budget row"
    );

    f.plan(&["--simulate", "4"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "simulated 4 run(s) per strategy (seeds 0..3; queue waits drawn around each resource's estimate):",
        ))
        .stdout(predicate::str::is_match("STRATEGY +PILOTS +CORE-HOURS +IDLE \\(MEAN\\) +PREDICTED +MIN +P50 +P90 +MAX +MEAN +UNFINISHED").unwrap())
        .stdout(predicate::str::is_match(r"\naimes +2 +").unwrap())
        .stdout(predicate::str::is_match(r"\nttc +\d+ +").unwrap());
}

#[test]
fn simulate_replays_measured_waits_and_fails_pilots_when_asked() {
    let f = Fixture::new();
    let ttc_mean = |v: &Value| {
        v["simulation"]["strategies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["strategy"] == "aimes")
            .unwrap()["ttc_s"]["mean"]
            .as_f64()
            // null: some run never finished
            .unwrap_or(f64::INFINITY)
    };
    let drawn = json_of(&mut f.plan(&["--json", "--simulate", "6", "--seed", "3"]));
    // Every pilot on `wide` waits ten hours: the replayed trace shows in the TTC.
    std::fs::write(f.path("wide.waits"), "# seconds\n36000\n36000\n").unwrap();
    let traced = json_of(&mut f.plan(&[
        "--json",
        "--simulate",
        "6",
        "--seed",
        "3",
        "--sim-waits",
        &format!("wide={}", f.path("wide.waits").display()),
    ]));
    assert_eq!(traced["simulation"]["waits"], "trace");
    assert_eq!(traced["simulation"]["traced_resources"], json!(["wide"]));
    assert!(
        ttc_mean(&traced) > ttc_mean(&drawn) + 20_000.0,
        "ten-hour waits on wide: {} vs drawn {}",
        ttc_mean(&traced),
        ttc_mean(&drawn)
    );
    // An SWF log is read by its wait field.
    std::fs::write(
        f.path("wide.swf"),
        "; a comment\n1 0 36000 100 32 -1 -1 32 3600 -1 1 1 1 1 1 1 -1 -1\n",
    )
    .unwrap();
    let swf = json_of(&mut f.plan(&[
        "--json",
        "--simulate",
        "6",
        "--seed",
        "3",
        "--sim-waits",
        &format!("wide={}", f.path("wide.swf").display()),
    ]));
    assert_eq!(ttc_mean(&swf), ttc_mean(&traced));
    // Failing pilots cost time (their tasks run again elsewhere) and are reported.
    let failing = json_of(&mut f.plan(&[
        "--json",
        "--simulate",
        "6",
        "--seed",
        "3",
        "--sim-pilot-failure",
        "1",
    ]));
    assert_eq!(failing["simulation"]["pilot_failure_prob"], 1.0);
    assert!(ttc_mean(&failing) > ttc_mean(&drawn), "{failing}");
    f.plan(&["--simulate", "2", "--sim-waits", "moon=x"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "`moon` is not a resource of this plan; known: ",
        ));
    std::fs::write(f.path("bad.waits"), "12\nsoon\n").unwrap();
    f.plan(&[
        "--simulate",
        "2",
        "--sim-waits",
        &format!("wide={}", f.path("bad.waits").display()),
    ])
    .assert()
    .code(2)
    .stderr(predicate::str::contains(
        "bad.waits:2: `soon` is not a wait in seconds",
    ));
    f.plan(&["--simulate", "2", "--sim-pilot-failure", "2"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("is not a probability"));
}

#[test]
fn a_skeleton_is_planned_like_a_workflow() {
    let f = Fixture::new();
    let v = json_of(
        emanager(f.dir.path())
            .arg("plan")
            .arg(repo().join("examples/skeletons/bag-of-tasks.toml"))
            .arg("--resources")
            .arg(f.path("resources.toml"))
            .arg("--json"),
    );
    assert_eq!(v["workflow"], "bag-of-tasks");
    assert_eq!(v["tasks"], 64);
}

#[test]
fn an_unknown_resource_is_an_input_error_listing_the_known_ones() {
    let f = Fixture::new();
    f.plan(&["--only", "wide,nope"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "unknown resource `nope`; known: gpu, here, wide",
        ));
}

#[test]
fn an_unknown_strategy_is_a_usage_error_naming_the_valid_ones() {
    let f = Fixture::new();
    f.plan(&["--strategy", "fastest"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "invalid value 'fastest' for '--strategy <STRATEGY>'",
        ))
        .stderr(predicate::str::contains(
            "[possible values: aimes, ttc, budget]",
        ));
}

#[test]
fn a_task_larger_than_every_node_is_named_at_its_line() {
    let f = Fixture::new();
    std::fs::write(
        f.path("wf.toml"),
        "name = \"big\"\n\n[[tasks]]\nname = \"huge\"\ncommand = [\"./x\"]\ncores = 64\n",
    )
    .unwrap();
    let at = format!("emanager: {}:6:9: ", f.path("wf.toml").display());
    f.plan(&[])
        .assert()
        .code(2)
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::starts_with(format!(
            "{at}task `huge` asks for 64 cores; the largest node has 32 (resource `wide`)"
        )))
        .stderr(predicate::str::contains(
            "nothing fits: lower these requests or plan on resources with larger nodes",
        ));
}

#[test]
fn without_a_catalog_the_error_says_where_to_give_one() {
    let f = Fixture::new();
    emanager(f.dir.path())
        .arg("plan")
        .arg(f.path("wf.toml"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "no resource catalog to plan on: give --resources FILE, set EMANAGER_RESOURCES, or `resources = \"FILE\"` in emanager.toml",
        ));
}

#[test]
fn the_catalog_comes_from_file_then_env_then_flag() {
    let f = Fixture::new();
    std::fs::write(f.path("emanager.toml"), "resources = \"from-file.toml\"\n").unwrap();
    let printed = |env: Option<&str>, flag: Option<&str>| {
        let mut c = emanager(f.dir.path());
        c.args(["plan", "wf.toml", "--print-config"]);
        if let Some(e) = env {
            c.env("EMANAGER_RESOURCES", e);
        }
        if let Some(fl) = flag {
            c.args(["--resources", fl]);
        }
        String::from_utf8(c.assert().success().get_output().stdout.clone()).unwrap()
    };
    assert!(printed(None, None).contains("resources = \"from-file.toml\""));
    assert!(printed(Some("from-env.toml"), None).contains("resources = \"from-env.toml\""));
    assert!(printed(Some("from-env.toml"), Some("from-flag.toml"))
        .contains("resources = \"from-flag.toml\""));
    // The file's catalog is used (relative to the file).
    std::fs::copy(f.path("resources.toml"), f.path("from-file.toml")).unwrap();
    let v = json_of(emanager(f.dir.path()).args(["plan", "wf.toml", "--json"]));
    assert_eq!(v["catalog"], "from-file.toml");
}

#[test]
fn plan_has_help_with_an_example() {
    let f = Fixture::new();
    emanager(f.dir.path())
        .args(["plan", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("Examples:"))
        .stdout(predicate::str::contains(
            "emanager plan examples/workflows/dag.toml --resources examples/resources.toml",
        ))
        .stdout(predicate::str::contains("--simulate <N>"));
}

// ---- with the bundle snapshots in the real Redis ------------------------------------------

/// Redis for these tests: its own database, so the snapshots of running bundle services (in
/// database 0) are not merged in.
fn redis() -> String {
    emanager_test_services::redis_db_url(9)
}

fn snapshot_json(site: &str, resource: &str, stale: bool) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    json!({
        "site": site,
        "taken_ms": now,
        "resources": [{
            "name": resource, "access": "slurm", "host": "localhost", "site": site,
            "catalog_nodes": 50, "cores_per_node": 32,
            "queues": [{
                "name": "batch", "max_walltime_s": 43200, "max_nodes": 50,
                "nodes_total": 50, "nodes_free": 40, "nodes_busy": 6, "nodes_down": 4,
                "jobs_running": 3, "jobs_queued": 0, "queued_jobs": [], "running_jobs": [],
                "reported": true
            }],
            "probed_ms": now - 90_000, "probe_latency_ms": 12,
            "stale": stale, "error": if stale { Some("sinfo: timed out") } else { None }
        }],
        "pilot_queues": [], "pilots": [], "errors": []
    })
    .to_string()
}

/// Writes a snapshot under a unique site and deletes it when dropped.
struct SnapshotKey {
    key: String,
    con: redis::Connection,
}

impl SnapshotKey {
    fn write(site: &str, json: &str) -> SnapshotKey {
        SnapshotKey::write_to(&redis(), site, json)
    }

    fn write_to(url: &str, site: &str, json: &str) -> SnapshotKey {
        let mut con = redis::Client::open(url)
            .unwrap()
            .get_connection()
            .unwrap_or_else(|e| {
                panic!(
                    "Redis at {url}: {e}; {}",
                    emanager_test_services::how_to_start()
                )
            });
        let key = format!("em:bundles:{site}");
        redis::cmd("SET")
            .arg(&key)
            .arg(json)
            .arg("EX")
            .arg(120)
            .query::<()>(&mut con)
            .unwrap();
        SnapshotKey { key, con }
    }
}

impl Drop for SnapshotKey {
    fn drop(&mut self) {
        let _ = redis::cmd("DEL").arg(&self.key).query::<()>(&mut self.con);
    }
}

#[test]
fn bundle_snapshots_give_idle_nodes_and_waits_and_stale_ones_are_flagged() {
    let f = Fixture::new();
    let site = format!("plan-test-{}", std::process::id());
    let fresh = SnapshotKey::write(&site, &snapshot_json(&site, "wide", false));
    let v = json_of(&mut f.plan(&["--json", "--redis-url", &redis()]));
    assert_eq!(v["snapshot"]["site"], site.as_str());
    let wide = v["offers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["resource"] == "wide")
        .unwrap()
        .clone();
    assert_eq!(wide["source"], "snapshot");
    assert_eq!(
        (wide["free_nodes"].as_u64(), wide["total_nodes"].as_u64()),
        (Some(40), Some(46))
    );
    // Nothing queued and the pilot fits the idle nodes: it starts at once.
    assert_eq!(wide["wait_p10_s"], 0.0);
    let notes: Vec<&str> = v["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(!notes.iter().any(|n| n.contains("for wide")), "{notes:?}");
    assert!(
        notes
            .iter()
            .any(|n| n.starts_with("no bundle snapshot for gpu: assuming")),
        "{notes:?}"
    );
    drop(fresh);

    let _stale = SnapshotKey::write(&site, &snapshot_json(&site, "wide", true));
    f.plan(&["--redis-url", &redis()])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "bundle snapshot for wide is stale: its last probe failed (sinfo: timed out); using the last good probe, 1m30s older than the snapshot",
        ));
}

#[test]
fn an_empty_redis_is_a_note_and_an_unreachable_one_an_error() {
    let f = Fixture::new();
    // Database 10 holds no snapshots.
    let empty = emanager_test_services::redis_db_url(10);
    f.plan(&["--redis-url", &empty])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "no bundle snapshots in Redis at {empty}"
        )));
    f.plan(&["--redis-url", "redis://127.0.0.1:1/"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains(
            "cannot read the bundle snapshots from Redis at redis://127.0.0.1:1/ (or plan from the catalog alone: --embedded)",
        ));
}

/// Our pilots' queue waits recorded in the store's stream for `resource`, deleted when
/// dropped (the stream is shared: only these entries go).
struct RecordedWaits {
    url: String,
    resource: String,
}

impl RecordedWaits {
    /// `per_size` waits of `wait_s` for pilots of each size in `sizes` in queue `queue`.
    fn record(
        url: &str,
        resource: &str,
        queue: &str,
        sizes: &[u32],
        per_size: usize,
        wait_s: u64,
    ) -> RecordedWaits {
        use emanager_shared::model::PilotWait;
        use emanager_shared::store::{RedisStore, StateStore};
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let store = RedisStore::connect(url).await.unwrap();
            for (i, &nodes) in sizes.iter().enumerate() {
                for j in 0..per_size {
                    let w = PilotWait {
                        resource: resource.into(),
                        queue: queue.into(),
                        nodes,
                        walltime_s: 3600,
                        submitted_ms: 1_000,
                        started_ms: 1_000 + wait_s * 1000,
                        campaign: emanager_shared::CampaignId::random(),
                        pilot: emanager_shared::PilotId::random(),
                        job_id: format!("{resource}-{i}-{j}"),
                    };
                    store.record_pilot_wait(&w).await.unwrap();
                }
            }
        });
        RecordedWaits {
            url: url.into(),
            resource: resource.into(),
        }
    }
}

impl Drop for RecordedWaits {
    fn drop(&mut self) {
        use emanager_shared::store::{RedisStore, StateStore, PILOT_WAITS_KEY};
        let Ok(rt) = tokio::runtime::Runtime::new() else {
            return;
        };
        let ids: Vec<String> = rt.block_on(async {
            let Ok(store) = RedisStore::connect(&self.url).await else {
                return Vec::new();
            };
            let waits = store.pilot_waits("0", 100_000).await.unwrap_or_default();
            waits
                .into_iter()
                .filter(|(_, w)| w.resource == self.resource)
                .map(|(id, _)| id)
                .collect()
        });
        if let Ok(mut con) = redis::Client::open(self.url.as_str()).and_then(|c| c.get_connection())
        {
            for id in ids {
                let _ = redis::cmd("XDEL")
                    .arg(PILOT_WAITS_KEY)
                    .arg(id)
                    .query::<i64>(&mut con);
            }
            // An emptied stream goes, as it was before the test.
            let _ = redis::Script::new(
                "if redis.call('XLEN', KEYS[1]) == 0 then redis.call('DEL', KEYS[1]) end",
            )
            .key(PILOT_WAITS_KEY)
            .invoke::<()>(&mut con);
        }
    }
}

/// The resource's pilots and offer in a `plan --json`.
fn on<'a>(v: &'a Value, resource: &str) -> (Vec<&'a Value>, &'a Value) {
    let pilots = v["pilots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["resource"] == resource)
        .collect();
    let offer = v["offers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["resource"] == resource)
        .unwrap();
    (pilots, offer)
}

/// 100 one-hour 8-core tasks. The probe shows `wide` idle, so the plan starts its pilot
/// there at once. Then our pilots' recorded waits say `wide` kept them waiting 30 h,
/// whatever their size: its estimates move toward that, and the same plan goes to `gpu`
/// (5 h of work, 30 min assumed wait) instead, with a later TTC.
#[test]
fn recorded_waits_of_our_pilots_change_the_plan() {
    // Its own database (the stream is one key per database), and a resource name of its own
    // (another checkout's test may share this Redis).
    let url = emanager_test_services::redis_db_url(11);
    let wide = format!("wide-{}", std::process::id());
    let workflow = r#"
name = "sims"
[[tasks]]
name = "sim-{index}"
count = 100
command = ["./sim", "{index}"]
cores = 8
est_duration_s = 3600
"#;
    let f = Fixture::with(&CATALOG.replace("wide", &wide), workflow);
    let site = format!("plan-waits-{}", std::process::id());
    let _snapshot = SnapshotKey::write_to(&url, &site, &snapshot_json(&site, &wide, false));

    let before = json_of(&mut f.plan(&["--json", "--redis-url", &url]));
    let (pilots, offer) = on(&before, &wide);
    assert_eq!(pilots.len(), 1, "{before}");
    assert_eq!(pilots[0]["predicted_wait_s"], 0.0, "{before}");
    assert_eq!(offer["wait_p10_s"], 0.0);

    let _waits = RecordedWaits::record(
        &url,
        &wide,
        "batch",
        &[1, 2, 4, 8, 16, 32, 46],
        6,
        30 * 3600,
    );
    let after = json_of(&mut f.plan(&["--json", "--redis-url", &url]));
    let (pilots, offer) = on(&after, &wide);
    assert!(pilots.is_empty(), "{after}");
    assert_eq!(on(&after, "gpu").0.len(), 1, "{after}");
    // Six waits of 30 h weigh 6 / 9 against the probe's 0 s.
    assert_eq!(offer["wait_p10_s"], 72_000.0);
    assert!(
        after["predicted_ttc_s"].as_f64() > before["predicted_ttc_s"].as_f64(),
        "{before}\n{after}"
    );
    let notes = after["notes"].as_array().unwrap();
    assert!(
        notes
            .iter()
            .any(|n| n.as_str().unwrap().starts_with(&format!(
                "queue waits of {wide} also rest on our pilots' recorded waits (42 in `batch`)"
            ))),
        "{notes:?}"
    );
}

/// The WHY column says when the plan is predicted to finish: the TTC printed below it (on
/// this workflow the search's own estimate said 2,508 s and the plan 3,600 s).
#[test]
fn the_why_column_and_the_predicted_ttc_agree() {
    let f = Fixture::with(
        CATALOG,
        r#"
name = "hundred"
[[tasks]]
name = "t-{index}"
count = 100
command = ["true"]
cores = 1
est_duration_s = 1800
"#,
    );
    let out = f
        .plan(&["--quiet"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let out = String::from_utf8(out).unwrap();
    let number_after = |text: &str, marker: &str| -> Vec<String> {
        text.match_indices(marker)
            .map(|(i, _)| {
                text[i + marker.len()..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect()
            })
            .collect()
    };
    let ttc_line = out
        .lines()
        .find(|l| l.starts_with("predicted TTC "))
        .unwrap_or_else(|| panic!("{out}"));
    let ttc_s = &number_after(ttc_line, "(")[0];
    let whys = number_after(&out, "plan predicted to finish at ");
    assert!(!whys.is_empty(), "{out}");
    for why in whys {
        assert_eq!(&why, ttc_s, "{out}");
    }
}
