//! One campaign over three independent batch systems at once: SLURM cluster `emanager-dev`
//! reached directly, SLURM cluster `emanager-dev-b` reached over SSH to localhost, and Grid
//! Engine; tasks bound late to whichever pilot has room. Losing a site (its daemons and
//! jobs killed) moves its unfinished work to the others.
//!
//! Needs: `deploy/dev/services-up.sh`, `slurm-up.sh`, `EM_SLURM_CLUSTER=b slurm-up.sh`,
//! `sge-up.sh`, `ssh-up.sh`. A missing service FAILS the test with the command that starts
//! it.

use assert_cmd::Command;
use emanager_shared::{PilotState, TaskState};
use integration_tests::{
    amqp_url, dev_script, done_events_per_task, redis_url, require_sge, require_slurm,
    require_slurm_b, require_ssh, workspace_bin, SLURM_B_CONF,
};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

/// The three sites, 1 core per node so all three pilots run at once on the dev machine.
fn catalog(dir: &Path) {
    let agent = workspace_bin("pilot-agent");
    let text = format!(
        r#"
[resources.site-a]
description = "SLURM emanager-dev, direct"
access = "slurm"
nodes = 1
cores_per_node = 1
default_queue = "debug"
[resources.site-a.agent]
path = "{agent}"
[[resources.site-a.queues]]
name = "debug"
max_walltime = "01:00:00"
max_nodes = 1

[resources.site-b]
description = "SLURM emanager-dev-b, through ssh root@localhost"
access = "slurm"
ssh = "root@localhost"
batch_env = {{ SLURM_CONF = "{SLURM_B_CONF}" }}
nodes = 1
cores_per_node = 1
default_queue = "debug"
[resources.site-b.agent]
path = "{agent}"
workdir = "{dir}"
[[resources.site-b.queues]]
name = "debug"
max_walltime = "01:00:00"
max_nodes = 1

[resources.site-c]
description = "Grid Engine, direct"
access = "sge"
nodes = 1
cores_per_node = 1
default_queue = "all.q"
[resources.site-c.agent]
path = "{agent}"
[[resources.site-c.queues]]
name = "all.q"
max_walltime = "01:00:00"
max_nodes = 1
"#,
        agent = agent.display(),
        dir = dir.display(),
    );
    std::fs::write(dir.join("resources.toml"), text).unwrap();
}

/// The lost-site test takes site b away: the two tests of this file run one at a time.
static SITES_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn require_sites() {
    require_slurm();
    require_slurm_b();
    require_sge();
    require_ssh();
}

const SITES: [&str; 3] = ["site-a", "site-b", "site-c"];

/// `emanager run` of `n` tasks of `sleep s` over the three sites, in the background.
fn start_campaign(dir: &Path, n: u32, secs: u32) -> std::process::Child {
    std::fs::write(
        dir.join("wf.toml"),
        format!(
            "name = \"three-sites\"\n[[tasks]]\nname = \"t-{{index}}\"\ncount = {n}\ncommand = [\"sleep\", \"{secs}\"]\ncores = 1\nest_duration_s = {secs}\n"
        ),
    )
    .unwrap();
    let mut cmd = std::process::Command::new(workspace_bin("emanager"));
    cmd.env_remove("EMANAGER_CONFIG")
        .env("EMANAGER_WORKDIR", dir)
        .env("EMANAGER_AMQP_URL", amqp_url())
        .env("EMANAGER_REDIS_URL", redis_url())
        .env("EMANAGER_RESOURCES", dir.join("resources.toml"))
        .env("SGE_ROOT", "/var/lib/gridengine")
        .env("SGE_CELL", "default")
        .current_dir(dir)
        .args(["run", "--json", "wf.toml"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for s in SITES {
        cmd.args(["--pilot", &format!("{s}:1:00:10:00")]);
    }
    cmd.spawn().expect("start emanager run")
}

fn finish(child: std::process::Child) -> (i32, serde_json::Value) {
    let out = child.wait_with_output().unwrap();
    let code = out.status.code().unwrap_or(-1);
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e} (exit {code}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, v)
}

fn emanager_json(dir: &Path, args: &[&str]) -> serde_json::Value {
    let out = Command::new(workspace_bin("emanager"))
        .env_remove("EMANAGER_CONFIG")
        .env("EMANAGER_REDIS_URL", redis_url())
        .env("EMANAGER_AMQP_URL", amqp_url())
        .current_dir(dir)
        .args(args)
        .arg("--json")
        .timeout(Duration::from_secs(30))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    serde_json::from_slice(&out).unwrap()
}

/// Tasks DONE per site, from `report` and `status`.
fn done_per_site(dir: &Path, campaign: &str) -> HashMap<String, usize> {
    let st = emanager_json(dir, &["status", campaign]);
    let site_of: HashMap<String, String> = st["pilots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_string(),
                p["resource"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let report = emanager_json(dir, &["report", campaign]);
    let mut per = HashMap::new();
    for t in report["tasks"].as_array().unwrap() {
        if t["state"] != "DONE" {
            continue;
        }
        let p = t["pilot"].as_str().unwrap_or_default();
        let site = site_of
            .iter()
            .find(|(id, _)| !p.is_empty() && id.starts_with(p))
            .map(|(_, s)| s.clone())
            .unwrap_or_else(|| format!("unknown pilot {p}"));
        *per.entry(site).or_default() += 1;
    }
    per
}

async fn each_task_done_once(campaign: &str, total: usize) {
    let (broker, store) = integration_tests::services().await;
    let c = campaign.parse().unwrap();
    let done = done_events_per_task(&store.all_events(&c).await.unwrap());
    assert_eq!(done.len(), total, "every task DONE");
    assert!(done.values().all(|n| *n == 1), "none DONE twice: {done:?}");
    for v in store.pilots(&c).await.unwrap() {
        let _ = broker.delete_pilot(&c, &v.record.id).await;
    }
    let _ = broker.delete_campaign(&c).await;
    let _ = store.delete_campaign(&c).await;
}

#[tokio::test]
async fn one_campaign_runs_on_three_batch_systems_at_once() {
    let _sites = SITES_LOCK.lock().await;
    require_sites();
    let dir = tempfile::tempdir().unwrap();
    catalog(dir.path());
    let (code, out) = finish(start_campaign(dir.path(), 30, 1));
    assert_eq!(code, 0, "{out}");
    let c = out["campaign"].as_str().unwrap().to_string();
    let per = done_per_site(dir.path(), &c);
    for s in SITES {
        assert!(
            per.get(s).copied().unwrap_or(0) > 0,
            "no task ran on {s}: {per:?}"
        );
    }
    assert_eq!(per.values().sum::<usize>(), 30, "{per:?}");
    each_task_done_once(&c, 30).await;
}

/// Restarts cluster b even when the test fails half-way.
struct SiteBBack;

impl Drop for SiteBBack {
    fn drop(&mut self) {
        let st = std::process::Command::new("bash")
            .arg(dev_script("slurm-up.sh"))
            .env("EM_SLURM_CLUSTER", "b")
            .stdout(std::process::Stdio::null())
            .status();
        if !st.map(|s| s.success()).unwrap_or(false) {
            eprintln!(
                "cannot restart SLURM cluster b: run `EM_SLURM_CLUSTER=b deploy/dev/slurm-up.sh`"
            );
        }
    }
}

#[tokio::test]
async fn losing_a_site_moves_its_remaining_work_to_the_others() {
    let _sites = SITES_LOCK.lock().await;
    require_sites();
    let dir = tempfile::tempdir().unwrap();
    catalog(dir.path());
    let child = start_campaign(dir.path(), 30, 2);
    // Wait until site b runs tasks, then take the whole site away: daemons down, every
    // job process (the agent and its tasks) killed.
    let pilot_b = tokio::time::timeout(Duration::from_secs(90), async {
        loop {
            if let Some(p) = site_b_running_tasks(dir.path()).await {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
    .await
    .expect("site b's pilot started tasks");
    let _back = SiteBBack;
    let down = std::process::Command::new("bash")
        .arg(dev_script("slurm-down.sh"))
        .arg("--kill-jobs")
        .env("EM_SLURM_CLUSTER", "b")
        .output()
        .unwrap();
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    let (code, out) = finish(child);
    assert_eq!(code, 0, "the other sites finish the work: {out}");
    let c = out["campaign"].as_str().unwrap().to_string();
    let st = emanager_json(dir.path(), &["status", &c]);
    let lost: Vec<&serde_json::Value> = st["pilots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["resource"] == "site-b" && p["state"] == "FAILED")
        .collect();
    assert!(
        lost.iter()
            .any(|p| p["reason"].as_str().unwrap().contains("heartbeat lapsed")),
        "site b's pilot {pilot_b} is declared lost: {st}"
    );
    let per = done_per_site(dir.path(), &c);
    assert!(per.get("site-a").copied().unwrap_or(0) > 0, "{per:?}");
    assert!(per.get("site-c").copied().unwrap_or(0) > 0, "{per:?}");
    // The tasks that were running on site b when it was lost ran again elsewhere.
    let report = emanager_json(dir.path(), &["report", &c]);
    let rebound: Vec<&serde_json::Value> = report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["attempt"].as_u64().unwrap_or(0) >= 2)
        .collect();
    assert!(
        !rebound.is_empty(),
        "the work site b was running moved to the other sites: {report}"
    );
    each_task_done_once(&c, 30).await;
}

/// Site b's pilot once it runs tasks: the campaign is the folder the manager made in `dir`.
async fn site_b_running_tasks(dir: &Path) -> Option<String> {
    let (_, store) = integration_tests::services().await;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let Ok(c) = entry.file_name().to_string_lossy().parse() else {
            continue;
        };
        let pilots = store.pilots(&c).await.ok()?;
        let Some(b) = pilots
            .iter()
            .find(|v| v.record.resource == "site-b" && v.record.state == PilotState::Active)
        else {
            continue;
        };
        let busy = store
            .task_records(&c)
            .await
            .ok()?
            .iter()
            .any(|(_, r)| r.pilot() == Some(b.record.id) && r.state() == TaskState::Executing);
        if busy {
            return Some(b.record.id.to_string());
        }
    }
    None
}
