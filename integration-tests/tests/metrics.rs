//! Both exporters during a real campaign: `emanager run --metrics-addr` and a hand-started
//! `pilot-agent --metrics-addr` serve `/healthz` and every series `docs/operations.md`
//! documents, with values that agree with the campaign.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TASKS: u32 = 40;

use integration_tests::free_port;

/// The body of `GET path` when it answers 200; `None` otherwise.
fn get(port: u16, path: &str) -> Option<String> {
    let (status, body) = integration_tests::http_get(port, path)?;
    (status.starts_with("HTTP/1.0 200") || status.starts_with("HTTP/1.1 200")).then_some(body)
}

/// The value of the series line starting with `series` (name plus labels).
fn value(body: &str, series: &str) -> Option<f64> {
    body.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (name, v) = l.rsplit_once(' ')?;
        (name == series).then(|| v.parse().ok())?
    })
}

fn wait_scrape(port: u16, limit: Duration, mut ok: impl FnMut(&str) -> bool) -> String {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(body) = get(port, "/metrics") {
            if ok(&body) {
                return body;
            }
        }
        assert!(Instant::now() < deadline, "timed out scraping :{port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Series names (backticked `em_...`) documented in docs/operations.md, by prefix.
fn documented(prefix: &str) -> Vec<String> {
    let doc = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/operations.md"),
    )
    .expect("docs/operations.md");
    let mut names: Vec<String> = doc
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| {
            s.starts_with(prefix) && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    names
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn manager_and_agent_export_the_documented_series() {
    let dir = tempfile::tempdir().unwrap();
    let wf = dir.path().join("wf.toml");
    std::fs::write(
        &wf,
        format!("name = \"metrics\"\n[[tasks]]\nname = \"m-{{index}}\"\ncount = {TASKS}\ncommand = [\"sleep\", \"0.3\"]\nest_duration_s = 0.3\n"),
    )
    .unwrap();
    let mport = free_port();
    let manager = Command::new(integration_tests::workspace_bin("emanager"))
        .args(["run", "--quiet", "--pilots", "1", "--cores-per-pilot", "2"])
        .args(["--metrics-addr", &format!("127.0.0.1:{mport}")])
        .args(["--log-format", "json"])
        .arg(&wf)
        .env_remove("EMANAGER_CONFIG")
        .env("EMANAGER_WORKDIR", dir.path())
        .env("EMANAGER_AMQP_URL", integration_tests::amqp_url())
        .env("EMANAGER_REDIS_URL", integration_tests::redis_url())
        .env(
            "EMANAGER_AGENT_BIN",
            integration_tests::workspace_bin("pilot-agent"),
        )
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start emanager");
    let mut manager = Kill(manager);
    assert_eq!(
        get_retry(mport, "/healthz").lines().last(),
        Some("ok"),
        "manager /healthz"
    );
    // The campaign id is a label of em_manager_info.
    let body = wait_scrape(mport, Duration::from_secs(30), |b| {
        b.contains("em_manager_info{")
    });
    let campaign = body
        .split("campaign=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("campaign label")
        .to_string();

    let aport = free_port();
    let agent = Command::new(integration_tests::workspace_bin("pilot-agent"))
        .args([
            "--campaign",
            &campaign,
            "--cores",
            "2",
            "--heartbeat-ms",
            "500",
        ])
        .args(["--metrics-addr", &format!("127.0.0.1:{aport}")])
        .args(["--log-format", "json"])
        .arg("--workdir")
        .arg(dir.path())
        .args(["--amqp-url", &integration_tests::amqp_url()])
        .args(["--redis-url", &integration_tests::redis_url()])
        .stderr(Stdio::null())
        .spawn()
        .expect("start pilot-agent");
    let _agent = Kill(agent);
    assert_eq!(get_retry(aport, "/healthz").lines().last(), Some("ok"));

    // During the run: the agent has started and finished tasks, the manager has published.
    let a = wait_scrape(aport, Duration::from_secs(60), |b| {
        value(b, "em_agent_tasks_done_total").unwrap_or(0.0) >= 1.0
    });
    let m = wait_scrape(mport, Duration::from_secs(60), |b| {
        value(b, "em_manager_pilots{state=\"active\"}").unwrap_or(0.0) >= 2.0
    });
    assert!(documented("em_agent_").len() >= 10 && documented("em_manager_").len() >= 7);
    for name in documented("em_agent_") {
        assert!(a.contains(&name), "agent series `{name}` missing:\n{a}");
    }
    for name in documented("em_manager_") {
        assert!(m.contains(&name), "manager series `{name}` missing:\n{m}");
    }
    let busy = value(&a, "em_agent_slots_busy").unwrap();
    let free = value(&a, "em_agent_slots_free").unwrap();
    assert_eq!(busy + free, 2.0, "busy + free = the agent's cores");
    assert!(value(&a, "em_agent_tasks_spawned_total").unwrap() >= 1.0);
    assert!(value(&a, "em_agent_task_start_latency_seconds_count").unwrap() >= 1.0);
    assert!(value(&a, "em_agent_heartbeats_total").unwrap() >= 1.0);
    assert_eq!(value(&a, "em_agent_tasks_failed_total"), Some(0.0));
    assert!(value(&m, "em_manager_tasks_published_total").unwrap() >= 1.0);
    assert!(value(&m, "em_manager_bind_latency_seconds_count").unwrap() >= 1.0);
    let states: f64 = [
        "waiting",
        "ready",
        "scheduled",
        "executing",
        "done",
        "failed",
        "canceled",
    ]
    .iter()
    .map(|s| value(&m, &format!("em_manager_tasks{{state=\"{s}\"}}")).unwrap())
    .sum();
    assert_eq!(states, TASKS as f64, "task gauges add up to the campaign");
    assert!(value(&m, "em_manager_queue_depth").is_some());

    // The campaign ends well, and every task was published at least once.
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = manager.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "campaign did not finish");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "emanager run: {status}");
}

fn get_retry(port: u16, path: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(b) = get(port, path) {
            return b;
        }
        assert!(Instant::now() < deadline, "nothing serves :{port}{path}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
