//! Planned campaigns in embedded mode: `emanager run --resources` without `--pilot` lets the
//! planner choose the pilots, and adaptive execution adds pilots when the campaign falls
//! behind its plan, with every decision and its reason in the outcome.

use assert_cmd::Command;
use std::path::Path;

fn emanager(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("emanager").unwrap();
    c.env_remove("EMANAGER_CONFIG")
        .env_remove("EMANAGER_AMQP_URL")
        .env_remove("EMANAGER_REDIS_URL")
        .env_remove("EMANAGER_RESOURCES")
        .env("EMANAGER_WORKDIR", dir)
        .current_dir(dir)
        .timeout(std::time::Duration::from_secs(120));
    c
}

/// One 1-core local resource; tasks estimated at 10 ms that take 400 ms.
fn setup(dir: &Path) {
    std::fs::write(
        dir.join("resources.toml"),
        "[resources.here]\naccess = \"local\"\nnodes = 1\ncores_per_node = 1\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("wf.toml"),
        "name = \"underestimated\"\n[[tasks]]\nname = \"t-{index}\"\ncount = 16\ncommand = [\"sleep\", \"0.4\"]\nest_duration_s = 0.01\n",
    )
    .unwrap();
}

#[test]
fn a_planned_campaign_behind_its_plan_gets_more_pilots_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let out = emanager(dir.path())
        .args([
            "run",
            "wf.toml",
            "--resources",
            "resources.toml",
            "--replan-interval",
            "1",
            "--json",
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["counts"]["done"], 16, "{v}");
    let decisions: Vec<&str> = v["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["text"].as_str().unwrap())
        .collect();
    assert!(
        decisions[0].starts_with("started pilot") && decisions[0].contains("planned (ttc)"),
        "the plan's pilot comes first: {decisions:?}"
    );
    let added: Vec<&&str> = decisions
        .iter()
        .filter(|d| d.contains("behind plan") && d.contains("adding a pilot on here"))
        .collect();
    assert!(!added.is_empty(), "{decisions:?}");
    assert!(
        decisions
            .iter()
            .any(|d| d.starts_with("moving ") && d.contains("to idle pilot")),
        "work bound to the first pilot moved to the new ones: {decisions:?}"
    );
    let pilots = v["pilots"].as_array().unwrap();
    assert!(pilots.len() <= 4, "no churn of pilots: {decisions:?}");
    let working = pilots
        .iter()
        .filter(|p| p["done"].as_u64().unwrap_or(0) > 0)
        .count();
    assert!(working >= 2, "the added pilots took work: {v}");
}

#[test]
fn explicit_local_pilots_are_not_planned() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let out = emanager(dir.path())
        .args([
            "run",
            "wf.toml",
            "--resources",
            "resources.toml",
            "--pilots",
            "1",
            "--cores-per-pilot",
            "2",
            "--json",
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let decisions = v["decisions"].as_array().unwrap();
    assert_eq!(decisions.len(), 1, "{v}");
    assert!(decisions[0]["text"]
        .as_str()
        .unwrap()
        .ends_with("asked for by the campaign"));
}

#[test]
fn a_batch_only_catalog_cannot_be_planned_in_embedded_mode() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    std::fs::write(
        dir.path().join("resources.toml"),
        "[resources.hpc]\naccess = \"slurm\"\nnodes = 4\ncores_per_node = 8\n[[resources.hpc.queues]]\nname = \"q\"\nmax_walltime = \"01:00:00\"\nmax_nodes = 4\n",
    )
    .unwrap();
    emanager(dir.path())
        .args(["run", "wf.toml", "--resources", "resources.toml"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "give --amqp-url and --redis-url, or add an `access = \"local\"` resource",
        ));
}
