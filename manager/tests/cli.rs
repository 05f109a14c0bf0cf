//! The `emanager` command line without services: help, validation, embedded runs, config,
//! and the messages for unreachable services.

use assert_cmd::Command;
use predicates::prelude::*;
use std::path::PathBuf;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `emanager` with no service URLs in its environment (embedded mode by default).
fn emanager(workdir: &std::path::Path) -> Command {
    let mut c = Command::cargo_bin("emanager").unwrap();
    c.env_remove("EMANAGER_AMQP_URL")
        .env_remove("EMANAGER_REDIS_URL")
        .env_remove("EMANAGER_CONFIG")
        .env("EMANAGER_WORKDIR", workdir)
        .current_dir(workdir);
    c
}

#[test]
fn every_command_has_help_with_an_example() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in [
        "run", "submit", "resume", "status", "cancel", "list", "report", "validate",
    ] {
        emanager(dir.path())
            .args([cmd, "--help"])
            .assert()
            .success()
            .stdout(predicate::str::contains("Example"));
    }
    emanager(dir.path())
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "emanager run examples/quickstart.toml",
        ));
}

#[test]
fn the_quickstart_runs_embedded_with_every_task_done() {
    let dir = tempfile::tempdir().unwrap();
    let out = emanager(dir.path())
        .args(["run", "--json"])
        .arg(repo().join("examples/quickstart.toml"))
        .timeout(std::time::Duration::from_secs(120))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["ending"], "finished");
    assert_eq!(v["counts"]["total"], 42);
    assert_eq!(v["counts"]["done"], 42);
    assert_eq!(v["counts"]["failed"], 0);
    assert!(v["throughput_tasks_per_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn the_quickstart_summary_reads_well() {
    let dir = tempfile::tempdir().unwrap();
    emanager(dir.path())
        .arg("run")
        .arg(repo().join("examples/quickstart.toml"))
        .timeout(std::time::Duration::from_secs(120))
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "42 tasks: 42 DONE, 0 FAILED, 0 CANCELED",
        ))
        .stdout(predicate::str::contains("PILOT"))
        .stderr(predicate::str::contains("embedded"));
}

#[test]
fn validate_accepts_the_quickstart() {
    let dir = tempfile::tempdir().unwrap();
    emanager(dir.path())
        .arg("validate")
        .arg(repo().join("examples/quickstart.toml"))
        .assert()
        .success()
        .stdout(predicate::str::contains("valid · quickstart · 42 tasks"));
    let out = emanager(dir.path())
        .args(["validate", "--json"])
        .arg(repo().join("examples/quickstart.toml"))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        (v["valid"].as_bool(), v["tasks"].as_u64()),
        (Some(true), Some(42))
    );
}

#[test]
fn an_invalid_workflow_is_an_input_error_and_nothing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let wf = dir.path().join("bad.toml");
    std::fs::write(
        &wf,
        "[[tasks]]\nname = \"a\"\ncommand = [\"/bin/true\"]\ncores = \"many\"\n",
    )
    .unwrap();
    emanager(dir.path())
        .arg("run")
        .arg(&wf)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("bad.toml"))
        .stderr(predicate::str::contains("nothing was submitted"));
    emanager(dir.path())
        .arg("validate")
        .arg(&wf)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cores"));
}

#[test]
fn a_failing_task_makes_the_exit_code_one() {
    let dir = tempfile::tempdir().unwrap();
    let wf = dir.path().join("fail.toml");
    std::fs::write(
        &wf,
        "[[tasks]]\nname = \"bad\"\ncommand = [\"/bin/false\"]\nretries = 0\n",
    )
    .unwrap();
    emanager(dir.path())
        .arg("run")
        .arg(&wf)
        .assert()
        .code(1)
        .stdout(predicate::str::contains("bad: exited with code 1"));
}

#[test]
fn an_unreachable_redis_names_the_url_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    emanager(dir.path())
        .args([
            "run",
            "--redis-url",
            "redis://127.0.0.1:1/",
            "--amqp-url",
            "amqp://guest:guest@127.0.0.1:1/%2f",
        ])
        .arg(repo().join("examples/quickstart.toml"))
        .assert()
        .code(3)
        .stderr(predicate::str::contains(
            "cannot reach Redis at redis://127.0.0.1:1/",
        ))
        .stderr(predicate::str::contains(
            "drop --redis-url to run in embedded mode",
        ));
}

#[test]
fn print_config_shows_file_env_and_flags_merged() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("emanager.toml"),
        "pilots = 3\nlookahead_s = 5.0\n",
    )
    .unwrap();
    emanager(dir.path())
        .args(["run", "x.toml", "--print-config", "--cores-per-pilot", "7"])
        .assert()
        .success()
        .stdout(predicate::str::contains("pilots = 3"))
        .stdout(predicate::str::contains("cores_per_pilot = 7"))
        .stdout(predicate::str::contains("lookahead_s = 5.0"));
}

#[test]
fn submit_refuses_embedded_mode_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    emanager(dir.path())
        .arg("submit")
        .arg(repo().join("examples/quickstart.toml"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--amqp-url and --redis-url"));
}

#[test]
fn the_aimes_skeleton_of_2048_tasks_runs_embedded_with_the_synthetic_program() {
    let dir = tempfile::tempdir().unwrap();
    let out = emanager(dir.path())
        .args([
            "run",
            "--json",
            "--sleep",
            "--time-scale",
            "0.00001",
            "--seed",
            "3",
        ])
        .arg(repo().join("manager/tests/data/skeletons/aimes-swift/skeleton.conf"))
        .timeout(std::time::Duration::from_secs(300))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["counts"]["total"], 2048);
    assert_eq!(v["counts"]["done"], 2048);
}

#[test]
fn skeleton_converts_to_a_workflow_that_validates() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pipeline.workflow.toml");
    emanager(dir.path())
        .args(["skeleton", "--seed", "7", "--out"])
        .arg(&out)
        .arg(repo().join("examples/skeletons/pipeline.toml"))
        .assert()
        .success()
        .stdout(predicate::str::contains("tasks"));
    emanager(dir.path())
        .arg("validate")
        .arg(&out)
        .assert()
        .success();
}

#[test]
fn a_task_too_large_for_a_message_fails_alone_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let wf = dir.path().join("big.toml");
    // 17 MiB of environment: more than a broker message may carry.
    let big = "x".repeat(17 << 20);
    std::fs::write(
        &wf,
        format!(
            "[[tasks]]\nname = \"huge\"\ncommand = [\"true\"]\nretries = 0\nenv = {{ BIG = \"{big}\" }}\n\n[[tasks]]\nname = \"small-{{index}}\"\ncount = 3\ncommand = [\"true\"]\n"
        ),
    )
    .unwrap();
    let out = emanager(dir.path())
        .args(["run", "--json"])
        .arg(&wf)
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["counts"]["done"], 3, "{v}");
    assert_eq!(v["counts"]["failed"], 1, "{v}");
    let why = v["failures"][0]["reason"].as_str().unwrap();
    assert!(
        why.contains("cannot be sent to a pilot") && why.contains("exceeds the limit"),
        "{why}"
    );
}
