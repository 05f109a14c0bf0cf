//! Operations from the command line against the real services: `--version` everywhere,
//! `emanager agents` (table and JSON), JSON logs with campaign/pilot spans, and SIGTERM to
//! `emanager run` leaving a distributed campaign resumable.

use assert_cmd::Command;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

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

fn slow_workflow(dir: &Path, tasks: u32, secs: f64) -> std::path::PathBuf {
    let wf = dir.join("slow.toml");
    std::fs::write(
        &wf,
        format!("name = \"slow\"\n[[tasks]]\nname = \"s-{{index}}\"\ncount = {tasks}\ncommand = [\"sleep\", \"{secs}\"]\nest_duration_s = {secs}\n"),
    )
    .unwrap();
    wf
}

fn json(out: &[u8]) -> serde_json::Value {
    serde_json::from_slice(out).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(out)))
}

#[test]
fn every_binary_prints_its_version() {
    // (bundle-service is built on another branch; add it here when it lands.
    // emanager-bench has --version too, but this test does not build it.)
    for bin in ["emanager", "pilot-agent"] {
        let out = Command::new(integration_tests::workspace_bin(bin))
            .arg("--version")
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let out = String::from_utf8(out).unwrap();
        assert_eq!(out.trim(), format!("{bin} {}", env!("CARGO_PKG_VERSION")));
    }
}

#[test]
fn agents_lists_the_agents_of_a_campaign_as_a_table_and_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let wf = slow_workflow(dir.path(), 8, 1.0);
    let id = json(
        &emanager(dir.path())
            .args([
                "submit",
                "--json",
                "--pilots",
                "2",
                "--cores-per-pilot",
                "1",
            ])
            .arg(&wf)
            .assert()
            .success()
            .get_output()
            .stdout,
    )["campaign"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    let agents = loop {
        let out = emanager(dir.path())
            .args(["agents", "--json", &id])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let v = json(&out);
        let list = v.as_array().unwrap().clone();
        if list.len() == 2 && list.iter().all(|a| a["state"] == "ACTIVE") {
            break list;
        }
        assert!(Instant::now() < deadline, "agents never became active: {v}");
        std::thread::sleep(Duration::from_millis(200));
    };
    for a in &agents {
        assert_eq!(a["campaign"], id.as_str());
        assert_eq!(a["cores"], 1);
        assert_eq!(a["resource"], "local");
        assert_eq!(a["version"], env!("CARGO_PKG_VERSION"));
        assert!(a["pid"].as_u64().unwrap() > 0);
        assert!(a["heartbeat_age_ms"].as_u64().unwrap() < 5_000, "{a}");
        assert!(!a["host"].as_str().unwrap().is_empty());
    }
    let table = emanager(dir.path())
        .args(["agents", &id])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let table = String::from_utf8(table).unwrap();
    let header = table.lines().next().unwrap();
    for col in [
        "PILOT",
        "STATE",
        "RESOURCE",
        "CORES",
        "LOAD",
        "HEARTBEAT",
        "VERSION",
        "HOST",
        "PID",
    ] {
        assert!(header.contains(col), "{header}");
    }
    assert_eq!(table.lines().count(), 3, "{table}");
    assert!(
        table.contains("ACTIVE") && table.contains(" ago"),
        "{table}"
    );

    emanager(dir.path())
        .args(["cancel", &id])
        .assert()
        .success();
    // An unknown campaign is an input error that says where to look.
    emanager(dir.path())
        .args(["agents", "00000000-0000-0000-0000-00000000beef"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("emanager list"));
}

#[test]
fn sigterm_stops_emanager_run_and_leaves_the_campaign_resumable_with_json_logs() {
    let dir = tempfile::tempdir().unwrap();
    let wf = slow_workflow(dir.path(), 8, 1.0);
    let mut child = std::process::Command::new(integration_tests::workspace_bin("emanager"))
        .args(["run", "--pilots", "1", "--cores-per-pilot", "2"])
        .args(["--log-format", "json"])
        .arg(&wf)
        .env_remove("EMANAGER_CONFIG")
        .env("RUST_LOG", "info")
        .env("EMANAGER_WORKDIR", dir.path())
        .env("EMANAGER_AMQP_URL", integration_tests::amqp_url())
        .env("EMANAGER_REDIS_URL", integration_tests::redis_url())
        .env(
            "EMANAGER_AGENT_BIN",
            integration_tests::workspace_bin("pilot-agent"),
        )
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    // The first line names the campaign; JSON log lines follow.
    let mut id = String::new();
    let mut logs = Vec::new();
    let mut line = String::new();
    while stderr.read_line(&mut line).unwrap() > 0 {
        if let Some(rest) = line.strip_prefix("campaign ") {
            id = rest.split_whitespace().next().unwrap().to_string();
        } else if line.starts_with('{') {
            logs.push(line.clone());
            if line.contains("pilot launched") {
                break;
            }
        }
        line.clear();
    }
    assert!(!id.is_empty(), "no campaign line");
    std::thread::sleep(Duration::from_millis(1500));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "stderr: {rest}");
    assert!(rest.contains(&format!("emanager resume {id}")), "{rest}");

    // JSON logs: every line parses, and the driver's lines carry the campaign span.
    let launched = logs
        .iter()
        .map(|l| json(l.as_bytes()))
        .find(|v| v["fields"]["message"] == "pilot launched")
        .expect("a `pilot launched` log line");
    assert_eq!(launched["span"]["name"], "campaign");
    assert_eq!(launched["span"]["campaign"], id.as_str());

    // The campaign went on without its manager; resume finishes it.
    emanager(dir.path())
        .args(["resume", "--quiet", &id])
        .assert()
        .success();
    let status = json(
        &emanager(dir.path())
            .args(["status", "--json", &id])
            .assert()
            .success()
            .get_output()
            .stdout,
    );
    assert_eq!(status["state"], "DONE", "{status}");
    assert_eq!(status["counts"]["done"], 8);

    // The manager's --log-format reaches the agents it starts: their log files are JSON.
    let pilots = status["pilots"].as_array().expect("pilots in status");
    assert!(!pilots.is_empty(), "{status}");
    for p in pilots {
        let path = p["log"].as_str().expect("a pilot log path");
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(!lines.is_empty(), "{path} is empty");
        for l in lines {
            let v = json(l.as_bytes());
            assert!(v["fields"]["message"].is_string(), "{path}: {l}");
        }
    }
}
