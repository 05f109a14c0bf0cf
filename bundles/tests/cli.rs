//! The `bundle-service` binary: help with an example, version, `--once` JSON, graceful
//! SIGTERM. `--once` and the server probe the real single-node SLURM
//! (deploy/dev/slurm-up.sh).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_bundle-service");

fn catalog() -> String {
    format!("{}/../examples/resources.toml", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn help_shows_an_example_and_version_the_crate_version() {
    let help = Command::new(BIN).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        text.contains("Examples:") && text.contains("--amqp-mgmt-url"),
        "{text}"
    );
    let version = Command::new(BIN).arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("bundle-service {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn once_probes_and_prints_the_snapshot() {
    let out = Command::new(BIN)
        .args([
            "--catalog",
            &catalog(),
            "--resource",
            "localhost-slurm",
            "--once",
            "--site",
            "cli",
        ])
        .env_remove("EMANAGER_REDIS_URL")
        .env_remove("EMANAGER_AMQP_MGMT_URL")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let snap: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let r = &snap["resources"][0];
    assert_eq!(r["name"], "localhost-slurm");
    assert_eq!(
        r["stale"], false,
        "SLURM probe failed: {} (start SLURM with deploy/dev/slurm-up.sh)",
        r["error"]
    );
}

#[test]
fn unknown_resource_is_an_error_naming_it() {
    let out = Command::new(BIN)
        .args(["--catalog", &catalog(), "--resource", "nope", "--once"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no resource `nope`"));
}

#[test]
fn sigterm_stops_the_server_gracefully() {
    let mut child = Command::new(BIN)
        .args(["--catalog", &catalog(), "--resource", "localhost-slurm"])
        .args([
            "--listen",
            "127.0.0.1:0",
            "--interval",
            "1",
            "--site",
            "cli-term",
        ])
        .env_remove("EMANAGER_REDIS_URL")
        .env_remove("EMANAGER_AMQP_MGMT_URL")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let listening = lines
        .by_ref()
        .take(20)
        .map_while(Result::ok)
        .any(|l| l.contains("bundle service listening"));
    assert!(listening, "the server did not start");
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still running 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit after SIGTERM: {status}");
    assert!(lines
        .map_while(Result::ok)
        .any(|l| l.contains("shutting down")));
}

/// With `--log-format json` every log line is one JSON object; `/healthz` answers 503 with
/// the reasons when every resource is stale and Redis cannot be reached.
#[tokio::test]
async fn json_logs_and_an_unavailable_health_with_its_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("resources.toml");
    // LSF's commands do not exist here: the only resource's probe fails.
    std::fs::write(
        &catalog,
        "[resources.nolsf]\naccess = \"lsf\"\nnodes = 1\ncores_per_node = 1\n\
         [[resources.nolsf.queues]]\nname = \"normal\"\nmax_walltime = \"01:00:00\"\n\
         max_nodes = 1\n",
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .arg("--catalog")
        .arg(&catalog)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--interval",
            "1",
            "--site",
            "cli-json",
        ])
        .args([
            "--redis-url",
            "redis://127.0.0.1:1/",
            "--log-format",
            "json",
        ])
        .env_remove("EMANAGER_AMQP_MGMT_URL")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut addr = None;
    for line in lines.by_ref().take(20).map_while(Result::ok) {
        let v: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not one JSON object a line ({e}): {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
        if v["fields"]["message"] == "bundle service listening" {
            addr = v["fields"]["addr"].as_str().map(str::to_string);
            break;
        }
    }
    let addr = addr.expect("the server did not log where it listens");
    let url = format!("http://{addr}/healthz");
    let started = Instant::now();
    let (status, health) = loop {
        let resp = reqwest::get(&url).await.unwrap();
        let status = resp.status().as_u16();
        let health: serde_json::Value = resp.json().await.unwrap();
        if health["last_probe_ms"].as_u64().unwrap_or(0) > 0
            || started.elapsed() > Duration::from_secs(30)
        {
            break (status, health);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["status"], "unavailable", "{health}");
    let reasons = health["reasons"].to_string();
    assert!(
        reasons.contains("every resource is stale") && reasons.contains("nolsf"),
        "{health}"
    );
    assert!(reasons.contains("Redis is unreachable"), "{health}");
}
