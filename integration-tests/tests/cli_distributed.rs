//! The `emanager` binary against the real RabbitMQ and Redis: the quick start ends with the
//! same state for every task as in embedded mode, the read commands show what happened
//! (human, `--json`, `--quiet`), and docs/cli.md lists exactly the JSON fields they print.

use assert_cmd::Command;
use emanager_shared::CampaignId;
use predicates::prelude::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn emanager(dir: &Path) -> Command {
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

fn json(out: &[u8]) -> Value {
    serde_json::from_slice(out).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(out)))
}

/// stdout of a command that must succeed.
fn stdout(cmd: &mut Command) -> String {
    String::from_utf8(cmd.assert().success().get_output().stdout.clone()).unwrap()
}

fn json_of(cmd: &mut Command) -> Value {
    json(&cmd.assert().success().get_output().stdout)
}

/// Polls `status --json` until `done` holds (at most 60 s).
fn wait_for(dir: &Path, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = json_of(emanager(dir).args(["status", "--json", id]));
        if done(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what}: {s}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Removes an ended campaign's keys from Redis.
fn forget(id: &str) {
    let c: CampaignId = id.parse().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = emanager_shared::store::RedisStore::connect(&integration_tests::redis_url())
            .await
            .unwrap();
        use emanager_shared::store::StateStore;
        let _ = store.delete_campaign(&c).await;
    });
}

/// Per task of a `report --json`: name, state, attempt, failures, exit code.
fn final_states(report: &Value) -> Vec<(String, String, u64, u64, Option<i64>)> {
    report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["task"].as_str().unwrap().to_string(),
                t["state"].as_str().unwrap().to_string(),
                t["attempt"].as_u64().unwrap(),
                t["failures"].as_u64().unwrap(),
                t["exit_code"].as_i64(),
            )
        })
        .collect()
}

/// The quick start run by the library in embedded mode (in-process broker, store and pilot,
/// as `emanager run examples/quickstart.toml` does it), reported as `report --json` would.
fn embedded_quickstart_report(workdir: &Path) -> Value {
    use emanager::campaign::{self, CampaignOptions, PilotRequest};
    use emanager::workflow::{self, Format};
    let text = std::fs::read_to_string(repo().join("examples/quickstart.toml")).unwrap();
    let wf = workflow::parse_str(&text, Format::Toml, "quickstart.toml").unwrap();
    let services = emanager::services::Services::embedded();
    // What `run` records without flags: the defaults, one local pilot of every core.
    let opts = CampaignOptions {
        pilots: vec![PilotRequest::local(pilot_agent::discovery::local_cores())],
        workdir: workdir.to_path_buf(),
        ..CampaignOptions::default()
    };
    let c = CampaignId::random();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        campaign::create(services.store.as_ref(), c, &wf, &text, Format::Toml, &opts)
            .await
            .unwrap();
        let total = wf.tasks.len() as u64;
        let ctx = emanager::driver::RunContext {
            campaign: c,
            store: services.store.clone(),
            broker: services.broker.clone(),
            launcher: emanager::pilots::Launcher::InProcess {
                broker: services.broker.clone(),
                store: services.store.clone(),
            },
            workflow: wf,
            opts,
            progress: emanager::progress::Progress::new(
                emanager::progress::ProgressMode::Quiet,
                total,
            ),
            interrupt: None,
        };
        tokio::time::timeout(Duration::from_secs(120), emanager::driver::drive(ctx))
            .await
            .expect("the embedded quick start ends in time")
            .unwrap();
        emanager::cli::report_json(services.store.as_ref(), &c)
            .await
            .unwrap()
    })
}

#[test]
fn the_quickstart_ends_the_same_in_embedded_and_distributed_mode() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = embedded_quickstart_report(&dir.path().join("embedded"));

    // The README's command, as written, from the repository, now with the services.
    let out = stdout(
        emanager(dir.path())
            .current_dir(repo())
            .args(["run", "examples/quickstart.toml"]),
    );
    assert!(
        out.contains("42 tasks: 42 DONE, 0 FAILED, 0 CANCELED"),
        "{out}"
    );
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("campaign "))
        .and_then(|l| l.split(':').next())
        .unwrap_or_else(|| panic!("no campaign id in {out}"))
        .to_string();
    let report = json_of(emanager(dir.path()).args(["report", "--json", &id]));
    let (want, got) = (final_states(&embedded), final_states(&report));
    assert_eq!(got.len(), 42);
    assert_eq!(got, want, "every task ends the same in both modes");
    assert!(got.iter().all(|t| t.1 == "DONE" && t.4 == Some(0)));
    let flaky = got.iter().find(|t| t.0 == "flaky").unwrap();
    assert_eq!((flaky.2, flaky.3), (2, 1), "{flaky:?}");

    // The campaign is in Redis: status and list read it back.
    let status = json_of(emanager(dir.path()).args(["status", "--json", &id]));
    assert_eq!(status["state"], "DONE");
    assert_eq!(status["counts"]["done"], 42);
    assert_eq!(status["pilots"].as_array().unwrap().len(), 1, "{status}");
    for p in status["pilots"].as_array().unwrap() {
        assert_eq!(p["state"], "DONE");
        assert!(p["log"].as_str().unwrap().ends_with(".log"), "{p}");
    }
    emanager(dir.path())
        .args(["report", &id])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "TASK  ", // the header, then one row per task
        ))
        .stdout(predicate::str::contains("flaky"));
    let list = json_of(emanager(dir.path()).args(["list", "--json"]));
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
    forget(&id);
}

#[test]
fn a_submitted_campaign_runs_in_the_background_shows_its_progress_and_can_be_canceled() {
    let dir = tempfile::tempdir().unwrap();
    let wf = dir.path().join("long.toml");
    std::fs::write(
        &wf,
        "name = \"long\"\n[[tasks]]\nname = \"l-{index}\"\ncount = 30\ncommand = [\"/bin/sleep\", \"1\"]\nest_duration_s = 1\n",
    )
    .unwrap();
    // Human submit: the id alone on stdout, the note on stderr.
    let out = emanager(dir.path())
        .args(["submit", "--pilots", "1", "--cores-per-pilot", "2"])
        .arg(&wf)
        .assert()
        .success()
        .get_output()
        .clone();
    let stdout_text = String::from_utf8(out.stdout).unwrap();
    let id = stdout_text.trim().to_string();
    assert_eq!(stdout_text, format!("{id}\n"));
    id.parse::<CampaignId>()
        .expect("submit prints the campaign id");
    let note = String::from_utf8(out.stderr).unwrap();
    assert!(
        note.contains(&format!(
            "campaign {id} submitted (30 tasks); manager log: "
        )),
        "{note}"
    );
    assert!(
        note.contains(&format!(
            "{id}/manager.log; follow it with `emanager status {id}`"
        )),
        "{note}"
    );

    // Some tasks done, others running: throughput and ETA are known.
    wait_for(dir.path(), &id, "nothing finished", |s| {
        s["counts"]["done"].as_u64().unwrap_or(0) >= 2 && s["state"] == "RUNNING"
    });
    let human = stdout(emanager(dir.path()).args(["status", &id]));
    assert!(
        human.starts_with(&format!("campaign {id} · long · RUNNING\ntasks 30: ")),
        "{human}"
    );
    let rates = human
        .lines()
        .find(|l| l.starts_with("elapsed "))
        .unwrap_or_else(|| panic!("{human}"));
    let rate: f64 = rates
        .split(" · ")
        .nth(1)
        .and_then(|r| r.strip_suffix(" tasks/s"))
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no throughput in `{rates}`"));
    assert!(rate > 0.0, "{rates}");
    let eta = rates.split("ETA ").nth(1).unwrap();
    assert!(
        eta.ends_with('s') && eta != "-" && eta != "?",
        "ETA of a running campaign with finished tasks: `{rates}`"
    );
    let header = human.lines().find(|l| l.starts_with("PILOT")).unwrap();
    assert!(header.ends_with("LOG"), "{header}");
    let log_prefix = format!("{}/{id}/pilot-", dir.path().display());
    let row = human.lines().find(|l| l.contains("ACTIVE")).unwrap();
    assert!(
        row.contains(&log_prefix) && row.ends_with(".log"),
        "the LOG column shows the agent's log: {row}"
    );
    assert_eq!(
        stdout(emanager(dir.path()).args(["status", "--quiet", &id])),
        "RUNNING\n"
    );

    // Without a campaign: the campaigns that run, this one among them.
    assert!(stdout(emanager(dir.path()).arg("status")).contains(id.as_str()));
    assert!(stdout(emanager(dir.path()).args(["status", "--quiet"]))
        .lines()
        .any(|l| l == id));
    let running = json_of(emanager(dir.path()).args(["status", "--json"]));
    let mine = running
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["campaign"] == id.as_str())
        .unwrap_or_else(|| panic!("{running}"));
    assert_eq!(
        (&mine["state"], &mine["tasks"]),
        (&"RUNNING".into(), &30.into())
    );

    let canceled = json_of(emanager(dir.path()).args(["cancel", "--json", &id]));
    assert_eq!(
        canceled,
        serde_json::json!({"campaign": id, "state": "CANCELED", "changed": true})
    );
    let s = wait_for(dir.path(), &id, "not canceled", |s| {
        s["state"] == "CANCELED"
            && s["counts"]["done"].as_u64().unwrap() + s["counts"]["canceled"].as_u64().unwrap()
                == 30
    });
    assert!(s["counts"]["canceled"].as_u64().unwrap() > 0, "{s}");
    // The running tasks were killed, not left behind.
    wait_for(dir.path(), &id, "pilots still active after cancel", |s| {
        s["pilots"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["state"] != "ACTIVE")
    });
    // A second cancel changes nothing and says so.
    let again = json_of(emanager(dir.path()).args(["cancel", "--json", &id]));
    assert_eq!(again["changed"], false);
    assert_eq!(again["state"], "CANCELED");
    emanager(dir.path())
        .args(["cancel", &id])
        .assert()
        .success()
        .stderr(predicate::str::contains("is already CANCELED"));
    forget(&id);
}

#[test]
fn submit_json_and_the_quiet_outputs_of_the_read_commands() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("two.toml"),
        "name = \"two\"\n[[tasks]]\nname = \"t-{index}\"\ncount = 2\ncommand = [\"/bin/true\"]\n",
    )
    .unwrap();
    let sub = json_of(emanager(dir.path()).args([
        "submit",
        "--json",
        "--pilots",
        "1",
        "--cores-per-pilot",
        "1",
        "two.toml",
    ]));
    let id = sub["campaign"].as_str().unwrap().to_string();
    let log = sub["manager_log"].as_str().unwrap();
    assert_eq!(log, format!("{}/{id}/manager.log", dir.path().display()));
    assert!(Path::new(log).is_file(), "{log}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while stdout(emanager(dir.path()).args(["status", "-q", &id])) != "DONE\n" {
        assert!(Instant::now() < deadline, "not DONE");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        stdout(emanager(dir.path()).args(["report", "--quiet", &id])),
        "t-0\tDONE\nt-1\tDONE\n"
    );
    assert!(stdout(emanager(dir.path()).args(["list", "--quiet"]))
        .lines()
        .any(|l| l == id));
    let pilots = stdout(emanager(dir.path()).args(["agents", "--all", "--quiet", &id]));
    assert_eq!(pilots.lines().count(), 1, "{pilots}");
    pilots.trim().parse::<emanager_shared::PilotId>().unwrap();
    forget(&id);
}

/// Every path of a JSON value: `a`, `a.b`, `list[].field`; the elements of a top-level
/// array are read at the root.
fn paths(v: &Value) -> BTreeSet<String> {
    fn walk(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    out.insert(p.clone());
                    match x {
                        Value::Object(_) => walk(x, &p, out),
                        Value::Array(items) => {
                            for e in items.iter().filter(|e| e.is_object()) {
                                walk(e, &format!("{p}[]"), out);
                            }
                        }
                        _ => {}
                    }
                }
            }
            Value::Array(items) => {
                for e in items {
                    walk(e, prefix, out);
                }
            }
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    walk(v, "", &mut out);
    out
}

/// The field tables of docs/cli.md: after `<!-- json-fields: KEY -->`, the first column of
/// each row of the table that follows.
fn documented_fields() -> BTreeMap<String, BTreeSet<String>> {
    let doc = std::fs::read_to_string(repo().join("docs/cli.md")).unwrap();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        if let Some(key) = line
            .strip_prefix("<!-- json-fields: ")
            .and_then(|r| r.strip_suffix(" -->"))
        {
            out.entry(key.to_string()).or_default();
            current = Some(key.to_string());
            continue;
        }
        let Some(key) = &current else { continue };
        if !line.starts_with('|') {
            current = None;
            continue;
        }
        let cell = line.split('|').nth(1).unwrap_or("").trim();
        if let Some(field) = cell.strip_prefix('`').and_then(|c| c.strip_suffix('`')) {
            out.get_mut(key).unwrap().insert(field.to_string());
        }
    }
    out
}

/// A bundle snapshot with every list filled, a few seconds newer than a real one written now
/// (so its pilot queues and pilots are the ones merged), gone from Redis after 15 s.
fn write_full_snapshot() {
    use emanager_bundles::model::{
        JobSize, PilotLoadView, PilotQueueDepth, QueueSnapshot, ResourceSnapshot,
    };
    let site = format!("it-{}", uuid::Uuid::new_v4().simple());
    let job = JobSize {
        nodes: 2,
        cores: 16,
        walltime_s: 3600,
        elapsed_s: 60,
    };
    let snapshot = emanager_bundles::Snapshot {
        site: site.clone(),
        taken_ms: emanager_shared::now_ms() + 5_000,
        resources: vec![ResourceSnapshot {
            name: format!("{site}-cluster"),
            access: "slurm".into(),
            host: "localhost".into(),
            site: site.clone(),
            catalog_nodes: 4,
            cores_per_node: 8,
            queues: vec![QueueSnapshot {
                name: "debug".into(),
                max_walltime_s: Some(3600),
                max_nodes: Some(4),
                queued_jobs: Some(vec![job]),
                running_jobs: Some(vec![job]),
                reported: true,
                ..Default::default()
            }],
            probed_ms: emanager_shared::now_ms(),
            error: Some("test".into()),
            ..Default::default()
        }],
        pilot_queues: vec![PilotQueueDepth {
            queue: "em.x.pilot.y".into(),
            ..Default::default()
        }],
        pilots: vec![PilotLoadView {
            pilot: "p".into(),
            heartbeat_age_ms: Some(5),
            ..Default::default()
        }],
        errors: vec![format!("probe of {site} failed: test")],
        interval_ms: 60_000,
        ..Default::default()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(emanager_bundles::snapshot_store::write_snapshot(
        &integration_tests::redis_url(),
        &snapshot,
        Duration::from_secs(15),
    ))
    .unwrap();
}

#[test]
fn documented_json_fields_are_what_the_commands_print() {
    let doc = documented_fields();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut printed: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();

    // run (embedded), with a failure so that `failures[]` has an element.
    std::fs::write(
        d.join("mixed.toml"),
        "name = \"mixed\"\n[[tasks]]\nname = \"ok\"\ncommand = [\"/bin/true\"]\n[[tasks]]\nname = \"bad\"\ncommand = [\"/bin/false\"]\nretries = 0\n",
    )
    .unwrap();
    let run = json(
        &emanager(d)
            .args(["run", "--embedded", "--json", "mixed.toml"])
            .assert()
            .code(1)
            .get_output()
            .stdout,
    );
    printed.insert("run", paths(&run));

    // validate, valid and not.
    std::fs::write(
        d.join("bad.toml"),
        "[[tasks]]\nname = \"a\"\ncommand = [\"x\"]\ncores = 0\n",
    )
    .unwrap();
    let mut validate = paths(&json_of(emanager(d).args([
        "validate",
        "--json",
        "mixed.toml",
    ])));
    validate.extend(paths(&json(
        &emanager(d)
            .args(["validate", "--json", "bad.toml"])
            .assert()
            .code(2)
            .get_output()
            .stdout,
    )));
    printed.insert("validate", validate);

    // submit, then every read command on that campaign.
    let sub = json_of(emanager(d).args([
        "submit",
        "--json",
        "--pilots",
        "1",
        "--cores-per-pilot",
        "1",
        "mixed.toml",
    ]));
    printed.insert("submit", paths(&sub));
    let id = sub["campaign"].as_str().unwrap().to_string();
    let status = wait_for(d, &id, "not ended", |s| s["state"] == "FAILED");
    printed.insert("status", paths(&status));
    printed.insert(
        "report",
        paths(&json_of(emanager(d).args(["report", "--json", &id]))),
    );
    printed.insert(
        "list",
        paths(&json_of(emanager(d).args(["list", "--json"]))),
    );
    printed.insert(
        "agents",
        paths(&json_of(
            emanager(d).args(["agents", "--json", "--all", &id]),
        )),
    );
    printed.insert(
        "cancel",
        paths(&json_of(emanager(d).args(["cancel", "--json", &id]))),
    );
    write_full_snapshot();
    printed.insert(
        "resources",
        paths(&json_of(emanager(d).args(["resources", "--json"]))),
    );
    // `status` without a campaign prints `list`'s elements.
    let running = paths(&json_of(emanager(d).args(["status", "--json"])));
    assert!(running.is_subset(&doc["list"]), "{running:?}");

    let keys: BTreeSet<&str> = doc.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        printed.keys().copied().collect(),
        "docs/cli.md documents the JSON of these commands"
    );
    for (key, fields) in &printed {
        let documented = &doc[*key];
        let missing: Vec<_> = fields.difference(documented).collect();
        let stale: Vec<_> = documented.difference(fields).collect();
        assert!(
            missing.is_empty() && stale.is_empty(),
            "`{key} --json`: printed but not in docs/cli.md: {missing:?}; in docs/cli.md but not printed: {stale:?}"
        );
    }
    forget(&id);
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
            "drop --amqp-url / EMANAGER_AMQP_URL / `amqp_url` in emanager.toml to run in embedded mode",
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
    // Data of another kind under the same prefix (as the pilot-wait stream) is not a
    // snapshot and is left alone.
    let stream = format!("em:bundles:{site}-stream");
    let redis = redis::Client::open(integration_tests::redis_url()).unwrap();
    let mut con = redis.get_connection().unwrap();
    let _: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("*")
        .arg("k")
        .arg("v")
        .query(&mut con)
        .unwrap();
    let _: () = redis::cmd("EXPIRE")
        .arg(&stream)
        .arg(60)
        .query(&mut con)
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
    let _: () = redis::cmd("DEL").arg(&stream).query(&mut con).unwrap();
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
