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

    // The per-task report outlives the embedded state store.
    let campaign = v["campaign"].as_str().unwrap();
    let path = dir.path().join(campaign).join("report.json");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| {
            panic!("{}: {e}", path.display());
        }))
        .unwrap();
    assert_eq!(report["campaign"], campaign);
    assert_eq!(report["state"], "DONE");
    let tasks = report["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 42);
    assert!(tasks.iter().all(|t| t["state"] == "DONE"), "{report}");
    let flaky = tasks.iter().find(|t| t["task"] == "flaky").unwrap();
    assert_eq!(
        flaky["attempt"], 2,
        "the flaky task succeeded on its retry: {flaky}"
    );
}

/// `emanager` with nothing of EManager in its environment: no URLs, no config, no workdir.
fn bare_emanager(cwd: &std::path::Path) -> Command {
    let mut c = Command::cargo_bin("emanager").unwrap();
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("EMANAGER_") {
            c.env_remove(k);
        }
    }
    c.current_dir(cwd);
    c
}

#[test]
fn the_readme_first_command_runs_the_quickstart_in_a_few_seconds() {
    // Exactly `emanager run examples/quickstart.toml`, from a directory holding the example,
    // with nothing configured: embedded mode, one pilot with this host's cores.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("examples")).unwrap();
    std::fs::copy(
        repo().join("examples/quickstart.toml"),
        dir.path().join("examples/quickstart.toml"),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let out = bare_emanager(dir.path())
        .args(["run", "examples/quickstart.toml"])
        .timeout(std::time::Duration::from_secs(120))
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "42 tasks: 42 DONE, 0 FAILED, 0 CANCELED in ",
        ))
        .stdout(predicate::str::contains(
            "PILOT     STATE  CORES  TASKS DONE  NOTE",
        ))
        .stdout(predicate::str::contains("shut down by the manager"))
        .stderr(predicate::str::contains(
            "· quickstart · 42 tasks · 1 pilot(s) x ",
        ))
        .stderr(predicate::str::contains(
            "embedded (in-process broker and state store)",
        ))
        .get_output()
        .stdout
        .clone();
    let wall = started.elapsed();
    // "... 0 CANCELED in 2.9s (..." : the campaign's own time.
    let text = String::from_utf8(out).unwrap();
    let secs: f64 = text
        .split(" CANCELED in ")
        .nth(1)
        .and_then(|r| r.split('s').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no duration in {text}"));
    assert!(
        secs < 6.0,
        "the quick start should take a few seconds, took {secs} s"
    );
    assert!(wall.as_secs_f64() < 30.0, "{wall:?}");
    // The default workdir is created where the command ran.
    assert!(dir.path().join("emanager-runs").is_dir());
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

/// Four different problems in four entries, and a cycle between two sound ones.
const MANY_ERRORS: &str = r#"[[tasks]]
name = "a"
command = ["x"]
corez = 2

[[tasks]]
name = "b"
command = ["x"]
cores = "8"

[[tasks]]
name = "c"
command = ["x"]
cores = -4

[[tasks]]
name = "d"
command = ["x"]
depends_on = ["nope", "e"]

[[tasks]]
name = "e"
command = ["x"]
depends_on = ["d"]
"#;

const MANY_MESSAGES: [&str; 5] = [
    "many.toml:4:1: unknown field `corez`; did you mean `cores`? valid fields here: name, count, command,",
    "many.toml:9:9: field `cores`: invalid type: string \"8\", expected i64; write a whole number without quotes",
    "many.toml:14:9: task `c` asks for -4 cores; cores is the task's total core count and must be 1 or more (e.g. cores = 1)",
    "many.toml:19:14: task `d` depends on `nope`, which is not a task, array or stage;",
    "many.toml:19:14: dependency cycle: d -> e -> d; remove one of these dependencies",
];

#[test]
fn validate_prints_every_error_of_a_file_at_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("many.toml"), MANY_ERRORS).unwrap();
    let mut assert = emanager(dir.path())
        .args(["validate", "many.toml"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("5 problem(s) found"));
    for m in MANY_MESSAGES {
        assert = assert.stderr(predicate::str::contains(m));
    }
    // `run` refuses the file with the same list, and submits nothing.
    emanager(dir.path())
        .args(["run", "many.toml"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(MANY_MESSAGES[2]))
        .stderr(predicate::str::contains(
            "5 problem(s) in many.toml; nothing was submitted",
        ));
}

#[test]
fn validate_json_lists_every_error_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("many.toml"), MANY_ERRORS).unwrap();
    let out = emanager(dir.path())
        .args(["validate", "--json", "many.toml"])
        .assert()
        .code(2)
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["valid"], false);
    let errors = v["errors"].as_array().unwrap();
    assert_eq!(errors.len(), MANY_MESSAGES.len(), "{v}");
    for (e, want) in errors.iter().zip(MANY_MESSAGES) {
        let line = format!(
            "{}: {}",
            e["location"].as_str().unwrap(),
            e["message"].as_str().unwrap()
        );
        assert!(line.starts_with(want), "{line}\n  wanted {want}");
    }
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
            "drop --redis-url / EMANAGER_REDIS_URL / `redis_url` in emanager.toml to run in embedded mode",
        ))
        // The real reason, not a timeout.
        .stderr(predicate::str::contains("refused"));
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
fn config_file_by_flag_or_by_env_and_env_over_file_and_flag_over_env() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("site.toml");
    std::fs::write(
        &conf,
        "workdir = \"from-file\"\npilots = 4\nagent_bin = \"/file/pilot-agent\"\nredis_url = \"redis://file:6379/\"\n",
    )
    .unwrap();
    let print = |cmd: &mut Command| -> String {
        let out = cmd.assert().success().get_output().stdout.clone();
        String::from_utf8(out).unwrap()
    };
    // --config FILE (not ./emanager.toml) is read.
    let by_flag = print(
        bare_emanager(dir.path())
            .args(["status", "--print-config", "--config"])
            .arg(&conf),
    );
    assert!(by_flag.contains("workdir = \"from-file\""), "{by_flag}");
    assert!(by_flag.contains("pilots = 4"), "{by_flag}");
    assert!(
        by_flag.contains("redis_url = \"redis://file:6379/\""),
        "{by_flag}"
    );
    assert!(
        by_flag.contains(&format!("config_file = \"{}\"", conf.display())),
        "{by_flag}"
    );
    // EMANAGER_CONFIG names it too.
    let by_env = print(
        bare_emanager(dir.path())
            .env("EMANAGER_CONFIG", &conf)
            .args(["list", "--print-config"]),
    );
    assert_eq!(by_env, by_flag);
    // The environment beats the file...
    let env_wins = print(
        bare_emanager(dir.path())
            .env("EMANAGER_CONFIG", &conf)
            .env("EMANAGER_WORKDIR", "from-env")
            .env("EMANAGER_REDIS_URL", "redis://env:6379/")
            .env("EMANAGER_AGENT_BIN", "/env/pilot-agent")
            .args([
                "report",
                "00000000-0000-0000-0000-000000000001",
                "--print-config",
            ]),
    );
    assert!(env_wins.contains("workdir = \"from-env\""), "{env_wins}");
    assert!(
        env_wins.contains("redis_url = \"redis://env:6379/\""),
        "{env_wins}"
    );
    assert!(
        env_wins.contains("agent_bin = \"/env/pilot-agent\""),
        "{env_wins}"
    );
    assert!(env_wins.contains("pilots = 4"), "{env_wins}");
    // ...and flags beat the environment.
    let flag_wins = print(
        bare_emanager(dir.path())
            .env("EMANAGER_CONFIG", &conf)
            .env("EMANAGER_WORKDIR", "from-env")
            .env("EMANAGER_AGENT_BIN", "/env/pilot-agent")
            .args([
                "run",
                "wf.toml",
                "--print-config",
                "--workdir",
                "from-flag",
                "--agent-bin",
                "/flag/pilot-agent",
                "--pilots",
                "2",
            ]),
    );
    assert!(flag_wins.contains("workdir = \"from-flag\""), "{flag_wins}");
    assert!(
        flag_wins.contains("agent_bin = \"/flag/pilot-agent\""),
        "{flag_wins}"
    );
    assert!(flag_wins.contains("pilots = 2"), "{flag_wins}");
}

#[test]
fn print_config_works_on_every_command_that_reads_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let id = "00000000-0000-0000-0000-000000000001";
    let commands: [&[&str]; 10] = [
        &["run", "wf.toml"],
        &["submit", "wf.toml"],
        &["resume", id],
        &["status"],
        &["list"],
        &["report", id],
        &["cancel", id],
        &["validate", "wf.toml"],
        &["agents"],
        &["resources"],
    ];
    for args in commands {
        // A Redis that does not answer: --print-config must not try to reach it.
        let out = bare_emanager(dir.path())
            .env("EMANAGER_REDIS_URL", "redis://127.0.0.1:1/")
            .args(args)
            .arg("--print-config")
            .timeout(std::time::Duration::from_secs(20))
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let text = String::from_utf8(out).unwrap();
        // The agent program that will run is shown: the one built next to `emanager`.
        let agent = Command::cargo_bin("emanager")
            .unwrap()
            .get_program()
            .to_owned();
        let agent = std::path::Path::new(&agent).with_file_name("pilot-agent");
        assert!(
            text.contains(&format!("agent_bin = \"{}\"", agent.display())),
            "{args:?}: {text}"
        );
        assert!(
            text.contains("workdir = \"emanager-runs\""),
            "{args:?}: {text}"
        );
        assert!(
            text.contains("redis_url = \"redis://127.0.0.1:1/\""),
            "{args:?}: {text}"
        );
    }
    // With nothing configured, a read command shows the Redis it reads: the default.
    bare_emanager(dir.path())
        .args(["status", "--print-config"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "redis_url = \"redis://127.0.0.1:6379/\"",
        ));
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
fn a_reservation_needs_pilots_on_one_batch_resource_and_nothing_runs_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let wf = repo().join("examples/quickstart.toml");
    emanager(dir.path())
        .arg("run")
        .arg(&wf)
        .args(["--reservation", "hackathon"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "--reservation hackathon puts the batch pilots of --pilot in a reservation: give --pilot",
        ));
    emanager(dir.path())
        .arg("run")
        .arg(&wf)
        .arg("--resources")
        .arg(repo().join("examples/resources.toml"))
        .args(["--pilot", "localhost-slurm:1:00:10:00"])
        .args(["--pilot", "localhost-sge:1:00:10:00"])
        .args(["--reservation", "hackathon"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "the pilots are on `localhost-slurm` and `localhost-sge`, and a reservation belongs to one machine",
        ));
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
    // Its MPI tasks take 4 cores: validate checks them against 8-core local pilots.
    std::fs::write(dir.path().join("emanager.toml"), "cores_per_pilot = 8\n").unwrap();
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

#[test]
fn the_pipeline_skeleton_runs_embedded_and_writes_every_declared_file() {
    let dir = tempfile::tempdir().unwrap();
    let skeleton = repo().join("examples/skeletons/pipeline.toml");
    let fast = ["--sleep", "--time-scale", "0.002"];
    // The workflow `run` generates from the skeleton (same seed, data dir and options).
    emanager(dir.path())
        .arg("skeleton")
        .arg(&skeleton)
        .args(fast)
        .args(["--out", "pipeline.workflow.toml"])
        .assert()
        .success();
    let wf = emanager::workflow::load(&dir.path().join("pipeline.workflow.toml")).unwrap();
    assert_eq!(wf.tasks.len(), 33);
    let out = emanager(dir.path())
        .arg("run")
        .arg(&skeleton)
        .args(fast)
        .args(["--json", "--cores-per-pilot", "4"])
        .timeout(std::time::Duration::from_secs(300))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        (v["counts"]["done"].as_u64(), v["counts"]["total"].as_u64()),
        (Some(33), Some(33)),
        "{v}"
    );
    let mut files = 0;
    for t in &wf.tasks {
        for f in t.spec.output_files.iter().chain(&t.spec.input_files) {
            assert!(
                f.path.starts_with(&dir.path().display().to_string()),
                "{} is not under the campaign's work dir",
                f.path
            );
            let len = std::fs::metadata(&f.path)
                .unwrap_or_else(|e| panic!("{} of {}: {e}", f.path, t.spec.name))
                .len();
            assert_eq!(Some(len), f.size_bytes, "{} of {}", f.path, t.spec.name);
            files += 1;
        }
    }
    // 16 configs + 16 simulations + 16 analyses + 1 aggregate written, and the reads of them.
    assert!(files >= 49, "{files}");
}

#[test]
fn a_reader_that_goes_away_ends_the_output_quietly_with_141() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    // 2,048 tasks' commands: far more than a pipe holds.
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("emanager"))
        .arg("skeleton")
        .arg(repo().join("manager/tests/data/skeletons/aimes-swift/skeleton.conf"))
        .arg("--print-shell")
        .env_remove("EMANAGER_CONFIG")
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(!first.is_empty());
    // The reader is dropped here, as `| head -1` exits.
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn validate_without_a_catalog_checks_tasks_against_the_local_pilots_run_would_start() {
    let dir = tempfile::tempdir().unwrap();
    let wf = dir.path().join("big.toml");
    std::fs::write(
        &wf,
        "[[tasks]]\nname = \"big\"\ncommand = [\"/bin/true\"]\ncores = 100000\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("emanager.toml"), "cores_per_pilot = 8\n").unwrap();
    emanager(dir.path())
        .args(["validate"])
        .arg(&wf)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "task `big` asks for 100000 cores; the largest node has 8 (resource `local`)",
        ))
        .stderr(predicate::str::contains("--resources FILE"));
    // The same file with a task that fits is valid.
    std::fs::write(
        &wf,
        "[[tasks]]\nname = \"small\"\ncommand = [\"/bin/true\"]\ncores = 8\n",
    )
    .unwrap();
    emanager(dir.path())
        .args(["validate"])
        .arg(&wf)
        .assert()
        .success();
}
