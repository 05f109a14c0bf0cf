//! The `emanager` binary against the real RabbitMQ and Redis: the quick start gives the
//! same final states as in embedded mode, and the read commands show what happened.

use assert_cmd::Command;
use predicates::prelude::*;
use std::path::PathBuf;
use std::time::Duration;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn emanager(dir: &std::path::Path) -> Command {
    let mut c = Command::new(integration_tests::workspace_bin("emanager"));
    c.env_remove("EMANAGER_CONFIG")
        .env("EMANAGER_WORKDIR", dir)
        .env("EMANAGER_AMQP_URL", integration_tests::amqp_url())
        .env("EMANAGER_REDIS_URL", integration_tests::redis_url())
        .env(
            "EMANAGER_AGENT_BIN",
            integration_tests::workspace_bin("pilot-agent"),
        )
        .current_dir(dir)
        .timeout(Duration::from_secs(180));
    c
}

fn json(out: &[u8]) -> serde_json::Value {
    serde_json::from_slice(out).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(out)))
}

fn run_quickstart(dir: &std::path::Path, embedded: bool) -> serde_json::Value {
    let mut cmd = emanager(dir);
    cmd.args(["run", "--json", "--pilots", "2", "--cores-per-pilot", "2"]);
    if embedded {
        cmd.arg("--embedded");
    }
    let out = cmd
        .arg(repo().join("examples/quickstart.toml"))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    json(&out)
}

#[test]
fn the_quickstart_ends_the_same_in_embedded_and_distributed_mode() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = run_quickstart(dir.path(), true);
    let distributed = run_quickstart(dir.path(), false);
    assert_eq!(embedded["counts"], distributed["counts"]);
    assert_eq!(distributed["counts"]["done"], 42);
    assert_eq!(embedded["failures"], distributed["failures"]);

    // The distributed campaign is in Redis: report and status read it back.
    let id = distributed["campaign"].as_str().unwrap().to_string();
    let report = json(
        &emanager(dir.path())
            .args(["report", "--json", &id])
            .assert()
            .success()
            .get_output()
            .stdout,
    );
    let tasks = report["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 42);
    assert!(tasks
        .iter()
        .all(|t| t["state"] == "DONE" && t["exit_code"] == 0));
    let flaky = tasks.iter().find(|t| t["task"] == "flaky").unwrap();
    assert_eq!(
        (flaky["attempt"].as_u64(), flaky["failures"].as_u64()),
        (Some(2), Some(1)),
        "{flaky}"
    );
    let status = json(
        &emanager(dir.path())
            .args(["status", "--json", &id])
            .assert()
            .success()
            .get_output()
            .stdout,
    );
    assert_eq!(status["state"], "DONE");
    assert_eq!(status["counts"]["done"], 42);
    assert_eq!(status["pilots"].as_array().unwrap().len(), 2);
    for p in status["pilots"].as_array().unwrap() {
        assert_eq!(p["state"], "DONE");
        assert!(p["log"].as_str().unwrap().ends_with(".log"), "{p}");
    }
    emanager(dir.path())
        .args(["report", &id])
        .assert()
        .success()
        .stdout(predicate::str::contains("TASK"))
        .stdout(predicate::str::contains("flaky"));
    emanager(dir.path())
        .args(["status", &id])
        .assert()
        .success()
        .stdout(predicate::str::contains("done 42"))
        .stdout(predicate::str::contains("BUSY/CORES"));
    let list = json(
        &emanager(dir.path())
            .args(["list", "--json"])
            .assert()
            .success()
            .get_output()
            .stdout,
    );
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["campaign"] == id.as_str()));
    emanager(dir.path())
        .arg("list")
        .assert()
        .success()
        .stdout(predicate::str::contains(id.as_str()));
}

#[test]
fn a_submitted_campaign_runs_in_the_background_and_can_be_canceled() {
    let dir = tempfile::tempdir().unwrap();
    let wf = dir.path().join("long.toml");
    std::fs::write(
        &wf,
        "name = \"long\"\n[[tasks]]\nname = \"l-{index}\"\ncount = 20\ncommand = [\"/bin/sleep\", \"30\"]\nest_duration_s = 30\n",
    )
    .unwrap();
    let out = emanager(dir.path())
        .args([
            "submit",
            "--quiet",
            "--pilots",
            "1",
            "--cores-per-pilot",
            "2",
        ])
        .arg(&wf)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let id = String::from_utf8(out).unwrap().trim().to_string();
    // Wait until tasks run, then cancel.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let s = json(
            &emanager(dir.path())
                .args(["status", "--json", &id])
                .assert()
                .success()
                .get_output()
                .stdout,
        );
        if s["counts"]["executing"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "nothing ran: {s}");
        std::thread::sleep(Duration::from_millis(200));
    }
    emanager(dir.path())
        .args(["cancel", &id])
        .assert()
        .success()
        .stdout(predicate::str::contains("canceled"));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let s = json(
            &emanager(dir.path())
                .args(["status", "--json", &id])
                .assert()
                .success()
                .get_output()
                .stdout,
        );
        if s["counts"]["canceled"] == 20 {
            assert_eq!(s["state"], "CANCELED");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not canceled: {s}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The running tasks were killed, not left behind.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let s = json(
            &emanager(dir.path())
                .args(["status", "--json", &id])
                .assert()
                .success()
                .get_output()
                .stdout,
        );
        let live = s["pilots"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["state"] == "ACTIVE")
            .count();
        if live == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "pilots still active after cancel: {s}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn status_of_an_unknown_campaign_says_how_to_find_one() {
    let dir = tempfile::tempdir().unwrap();
    emanager(dir.path())
        .args(["status", "00000000-0000-0000-0000-00000000beef"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("emanager list"));
}

#[test]
fn an_unreachable_broker_names_its_url_and_nothing_falls_back_to_embedded() {
    let dir = tempfile::tempdir().unwrap();
    emanager(dir.path())
        .args(["run", "--amqp-url", "amqp://guest:guest@127.0.0.1:1/%2f"])
        .arg(repo().join("examples/quickstart.toml"))
        .assert()
        .code(3)
        .stderr(predicate::str::contains(
            "cannot reach the message broker at amqp://guest:***@127.0.0.1:1/%2f",
        ))
        .stderr(predicate::str::contains(
            "drop --amqp-url to run in embedded mode",
        ));
}

#[test]
fn resources_shows_the_bundle_snapshots_in_redis() {
    let dir = tempfile::tempdir().unwrap();
    let site = format!("it-{}", uuid::Uuid::new_v4().simple());
    let snapshot = emanager_bundles::Snapshot {
        site: site.clone(),
        taken_ms: emanager_shared::now_ms(),
        errors: vec![format!("probe of {site} failed: test")],
        ..Default::default()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(emanager_bundles::snapshot_store::write_snapshot(
        &integration_tests::redis_url(),
        &snapshot,
        Duration::from_secs(60),
    ))
    .unwrap();
    emanager(dir.path())
        .arg("resources")
        .assert()
        .success()
        .stdout(predicate::str::contains(site.as_str()));
    let out = emanager(dir.path())
        .args(["resources", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert!(json(&out).is_object());
    rt.block_on(delete_snapshot(&site));
}

/// A bundle service that stopped 10 minutes ago: its resource is not dropped but shown
/// STALE, with its age and why, in the table and in the JSON.
#[test]
fn resources_of_a_stopped_bundle_service_show_stale_with_their_age() {
    use emanager_bundles::model::{QueueSnapshot, ResourceSnapshot};
    let dir = tempfile::tempdir().unwrap();
    let site = format!("it-stopped-{}", uuid::Uuid::new_v4().simple());
    let resource = format!("res-{}", uuid::Uuid::new_v4().simple());
    let taken = emanager_shared::now_ms() - 600_000;
    let snapshot = emanager_bundles::Snapshot {
        site: site.clone(),
        taken_ms: taken,
        interval_ms: 60_000,
        resources: vec![ResourceSnapshot {
            name: resource.clone(),
            access: "slurm".into(),
            site: site.clone(),
            probed_ms: taken,
            queues: vec![QueueSnapshot {
                name: "debug".into(),
                nodes_total: 4,
                nodes_free: 3,
                reported: true,
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(emanager_bundles::snapshot_store::write_snapshot(
        &integration_tests::redis_url(),
        &snapshot,
        Duration::from_secs(120),
    ))
    .unwrap();
    let table = emanager(dir.path())
        .arg("resources")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let table = String::from_utf8_lossy(&table).to_string();
    let row = table
        .lines()
        .find(|l| l.contains(&resource))
        .unwrap_or_else(|| panic!("{resource} vanished:\n{table}"));
    assert!(row.starts_with(&site), "the resource's own site: {row}");
    assert!(row.contains("3/4"), "{row}");
    assert!(row.contains("s ago STALE"), "{row}");
    let age: u64 = row
        .split_whitespace()
        .find_map(|w| w.strip_suffix("s").and_then(|n| n.parse().ok()))
        .unwrap_or_else(|| panic!("no age in {row}"));
    assert!((600..700).contains(&age), "{row}");
    assert!(
        table.contains(&format!(
            "! {site}/{resource}: bundle service of site `{site}` stopped updating"
        )),
        "{table}"
    );
    let out = emanager(dir.path())
        .args(["resources", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let merged = json(&out);
    let r = merged["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == resource.as_str())
        .unwrap_or_else(|| panic!("{merged}"));
    assert_eq!(r["stale"], true, "{r}");
    assert!(
        r["error"].as_str().unwrap().contains("stopped updating"),
        "{r}"
    );
    rt.block_on(delete_snapshot(&site));
}

async fn delete_snapshot(site: &str) {
    let mut con = redis::Client::open(integration_tests::redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg(emanager_bundles::snapshot_store::snapshot_key(site))
        .query_async(&mut con)
        .await
        .unwrap();
}
