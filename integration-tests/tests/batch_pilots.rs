//! Campaigns whose pilots are real batch jobs: `emanager run --resources ... --pilot ...`
//! against the single-node SLURM and Grid Engine clusters of `deploy/dev/`, directly and
//! through SSH to localhost, with the real RabbitMQ and Redis.
//!
//! Each test writes its own catalog (1 core per node, so two tests' pilot jobs fit on the
//! 2-core dev node at once) pointing at the `pilot-agent` of this build.
//!
//! Needs: `deploy/dev/services-up.sh`, `slurm-up.sh`, `sge-up.sh`, `ssh-up.sh`. A missing
//! service FAILS the test with the command that starts it.

use assert_cmd::Command;
use integration_tests::{
    amqp_url, redis_url, require_sge, require_slurm, require_ssh, workspace_bin,
};
use std::path::Path;
use std::time::Duration;

/// A catalog of this machine's batch systems with 1-core nodes and this build's agent.
fn catalog(dir: &Path, extra: &str) -> std::path::PathBuf {
    let agent = workspace_bin("pilot-agent");
    let agent = agent.display();
    let text = format!(
        r#"
[resources.slurm]
access = "slurm"
nodes = 1
cores_per_node = 1
default_queue = "debug"
launch_methods = ["fork", "srun"]
[resources.slurm.agent]
path = "{agent}"
[[resources.slurm.queues]]
name = "debug"
max_walltime = "01:00:00"
max_nodes = 1
[[resources.slurm.queues]]
name = "short"
max_walltime = "00:01:00"
max_nodes = 1
# A partition the catalog knows and the cluster does not: sbatch refuses it.
[[resources.slurm.queues]]
name = "gpu"
max_walltime = "01:00:00"
max_nodes = 1

[resources.sge]
access = "sge"
nodes = 1
cores_per_node = 1
default_queue = "all.q"
[resources.sge.agent]
path = "{agent}"
[[resources.sge.queues]]
name = "all.q"
max_walltime = "01:00:00"
max_nodes = 1

[resources.slurm-ssh]
access = "slurm"
ssh = "root@localhost"
nodes = 1
cores_per_node = 1
default_queue = "debug"
[resources.slurm-ssh.agent]
path = "{agent}"
workdir = "{dir}"
[[resources.slurm-ssh.queues]]
name = "debug"
max_walltime = "01:00:00"
max_nodes = 1

[resources.here]
access = "local"
nodes = 1
cores_per_node = 1
{extra}
"#,
        dir = dir.display()
    );
    let path = dir.join("resources.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn emanager(dir: &Path) -> Command {
    let mut c = Command::new(workspace_bin("emanager"));
    c.env_remove("EMANAGER_CONFIG")
        .env("EMANAGER_WORKDIR", dir)
        .env("EMANAGER_AMQP_URL", amqp_url())
        .env("EMANAGER_REDIS_URL", redis_url())
        .env("EMANAGER_RESOURCES", dir.join("resources.toml"))
        .env("SGE_ROOT", "/var/lib/gridengine")
        .env("SGE_CELL", "default")
        .current_dir(dir)
        .timeout(Duration::from_secs(240));
    c
}

fn json(out: &[u8]) -> serde_json::Value {
    serde_json::from_slice(out).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(out)))
}

fn write_workflow(dir: &Path, text: &str) -> std::path::PathBuf {
    let p = dir.join("wf.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// `emanager run --json` with the given pilots; the outcome, whatever the exit code.
fn run(dir: &Path, wf: &Path, pilots: &[&str]) -> (i32, serde_json::Value) {
    let mut cmd = emanager(dir);
    cmd.args(["run", "--json"]).arg(wf);
    for p in pilots {
        cmd.args(["--pilot", p]);
    }
    let out = cmd.output().unwrap();
    let code = out.status.code().unwrap_or(-1);
    assert!(
        !out.stdout.is_empty(),
        "no outcome (exit {code}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (code, json(&out.stdout))
}

fn status(dir: &Path, campaign: &str) -> serde_json::Value {
    let out = emanager(dir)
        .args(["status", "--json", campaign])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    json(&out)
}

fn stdout_of(dir: &Path, campaign: &str, task: &str) -> String {
    std::fs::read_to_string(dir.join(campaign).join(format!("{task}.1")).join("stdout"))
        .unwrap_or_else(|e| panic!("stdout of {task}: {e}"))
}

/// The queue waits the manager recorded for the campaign's batch pilots, with their ids in
/// the shared stream.
async fn pilot_waits_of(campaign: &str) -> Vec<(String, emanager_shared::model::PilotWait)> {
    let (_, store) = integration_tests::services().await;
    let c: emanager_shared::CampaignId = campaign.parse().unwrap();
    let mut ours = Vec::new();
    let mut after = "0".to_string();
    loop {
        let page = store.pilot_waits(&after, 1000).await.unwrap();
        let Some((last, _)) = page.last() else {
            return ours;
        };
        after = last.clone();
        ours.extend(page.into_iter().filter(|(_, w)| w.campaign == c));
    }
}

/// Drops the campaign's keys, queues and recorded pilot waits.
async fn cleanup(campaign: &str) {
    let (broker, store) = integration_tests::services().await;
    let c = campaign.parse().unwrap();
    for v in store.pilots(&c).await.unwrap_or_default() {
        let _ = broker.delete_pilot(&c, &v.record.id).await;
    }
    let _ = broker.delete_campaign(&c).await;
    let _ = store.delete_campaign(&c).await;
    let waits = pilot_waits_of(campaign).await;
    if !waits.is_empty() {
        let mut con = redis::Client::open(redis_url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let mut del = redis::cmd("XDEL");
        del.arg(emanager_shared::store::PILOT_WAITS_KEY);
        for (id, _) in &waits {
            del.arg(id);
        }
        let _: Result<i64, _> = del.query_async(&mut con).await;
    }
}

const ECHO_JOB: &str = r#"
name = "in-batch-jobs"
[[tasks]]
name = "t-{index}"
count = 8
command = ["/bin/sh", "-c", "echo job=${SLURM_JOB_ID:-$JOB_ID} host=$(hostname)"]
cores = 1
"#;

#[tokio::test]
async fn a_campaign_on_a_slurm_pilot_runs_its_tasks_inside_the_sbatch_job_with_srun_for_mpi() {
    require_slurm();
    let dir = tempfile::tempdir().unwrap();
    // The MPI task needs two ranks: the pilot has 2 cores on its node here.
    catalog(dir.path(), "");
    let text = std::fs::read_to_string(dir.path().join("resources.toml"))
        .unwrap()
        .replacen("cores_per_node = 1", "cores_per_node = 2", 1);
    std::fs::write(dir.path().join("resources.toml"), text).unwrap();
    let wf = write_workflow(
        dir.path(),
        &format!(
            "{ECHO_JOB}\n[[tasks]]\nname = \"mpi\"\ncommand = [\"/bin/sh\", \"-c\", \"echo rank=$SLURM_PROCID/$SLURM_NTASKS step=$SLURM_STEP_ID\"]\ncores = 2\nprocesses = 2\nmpi = true\n"
        ),
    );
    let (code, out) = run(dir.path(), &wf, &["slurm:1:00:10:00"]);
    let c = out["campaign"].as_str().unwrap().to_string();
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["counts"]["done"], 9, "{out}");
    let st = status(dir.path(), &c);
    let pilot = &st["pilots"][0];
    assert_eq!(pilot["resource"], "slurm", "{st}");
    let job = pilot["job_id"].as_str().unwrap().to_string();
    assert!(!job.is_empty(), "the pilot's job id is recorded: {st}");
    for i in 0..8 {
        let o = stdout_of(dir.path(), &c, &format!("t-{i}"));
        assert!(o.starts_with(&format!("job={job} ")), "t-{i}: {o}");
    }
    // Two ranks started by srun as one job step of the pilot's job.
    let mut ranks: Vec<String> = stdout_of(dir.path(), &c, "mpi")
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    ranks.sort();
    assert_eq!(ranks, ["rank=0/2", "rank=1/2"]);
    cleanup(&c).await;
}

#[tokio::test]
async fn a_campaign_on_a_grid_engine_pilot_runs_its_tasks_inside_the_qsub_job() {
    require_sge();
    let dir = tempfile::tempdir().unwrap();
    catalog(dir.path(), "");
    let wf = write_workflow(dir.path(), ECHO_JOB);
    let (code, out) = run(dir.path(), &wf, &["sge:1:00:10:00"]);
    let c = out["campaign"].as_str().unwrap().to_string();
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["counts"]["done"], 8, "{out}");
    let st = status(dir.path(), &c);
    let job = st["pilots"][0]["job_id"].as_str().unwrap().to_string();
    assert!(!job.is_empty(), "{st}");
    assert!(stdout_of(dir.path(), &c, "t-0").starts_with(&format!("job={job} ")));
    // Its wait in the queue went to the bundle services' stream when its agent registered.
    let waits = pilot_waits_of(&c).await;
    assert_eq!(waits.len(), 1, "{waits:?}");
    let w = &waits[0].1;
    assert_eq!(
        (
            w.resource.as_str(),
            w.queue.as_str(),
            w.job_id.as_str(),
            w.walltime_s
        ),
        ("sge", "all.q", job.as_str(), 600)
    );
    assert!(
        w.submitted_ms > 0 && w.started_ms >= w.submitted_ms && w.wait_s() < 120.0,
        "{w:?}"
    );
    // Pilots placed by hand: there is no plan to compare with.
    emanager(dir.path())
        .args(["report", "--vs-plan", &c])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("was not planned"));
    cleanup(&c).await;
}

#[tokio::test]
async fn a_campaign_reaches_slurm_through_ssh() {
    require_slurm();
    require_ssh();
    let dir = tempfile::tempdir().unwrap();
    catalog(dir.path(), "");
    let wf = write_workflow(dir.path(), ECHO_JOB);
    let (code, out) = run(dir.path(), &wf, &["slurm-ssh:1:00:10:00"]);
    let c = out["campaign"].as_str().unwrap().to_string();
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["counts"]["done"], 8, "{out}");
    let st = status(dir.path(), &c);
    let pilot = &st["pilots"][0];
    let job = pilot["job_id"].as_str().unwrap();
    assert!(
        pilot["log"].as_str().unwrap().starts_with("/"),
        "the agent registers its absolute log path: {st}"
    );
    // The agent ran in the catalog's workdir on the far side (the same disk here).
    assert!(stdout_of(dir.path(), &c, "t-3").starts_with(&format!("job={job} ")));
    cleanup(&c).await;
}

#[tokio::test]
async fn a_pilot_refused_by_slurm_fails_with_its_message_and_the_work_runs_elsewhere() {
    require_slurm();
    let dir = tempfile::tempdir().unwrap();
    catalog(dir.path(), "");
    let wf = write_workflow(dir.path(), ECHO_JOB);
    let (code, out) = run(
        dir.path(),
        &wf,
        &["slurm@gpu:1:00:10:00", "here:1:00:10:00"],
    );
    let c = out["campaign"].as_str().unwrap().to_string();
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["counts"]["done"], 8, "{out}");
    let st = status(dir.path(), &c);
    let pilots = st["pilots"].as_array().unwrap();
    let refused = pilots
        .iter()
        .find(|p| p["resource"] == "slurm")
        .expect("the slurm pilot");
    assert_eq!(refused["state"], "FAILED", "{st}");
    let why = refused["reason"].as_str().unwrap();
    assert!(
        why.contains("pilot job refused") && why.contains("invalid partition specified: gpu"),
        "the scheduler's own words: {why}"
    );
    cleanup(&c).await;

    // With no other pilot, the campaign stops with the reason instead of waiting forever.
    let (code, _) = {
        let out = emanager(dir.path())
            .args(["run", "--quiet"])
            .arg(&wf)
            .args(["--pilot", "slurm@gpu:1:00:10:00"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(err.contains("no pilot is left"), "{err}");
        assert!(err.contains("invalid partition specified: gpu"), "{err}");
        (out.status.code(), err)
    };
    assert_eq!(code, Some(3), "an infrastructure error");
}

#[tokio::test]
async fn a_pilot_in_a_reservation_slurm_does_not_know_fails_with_sbatchs_message() {
    require_slurm();
    let dir = tempfile::tempdir().unwrap();
    catalog(dir.path(), "");
    let wf = write_workflow(dir.path(), ECHO_JOB);
    // `--reservation` goes on the batch pilot only; the local one runs the work.
    let out = emanager(dir.path())
        .args(["run", "--json"])
        .arg(&wf)
        .args(["--pilot", "slurm:1:00:10:00", "--pilot", "here:1:00:10:00"])
        .args(["--reservation", "emanager-no-such-resv"])
        .output()
        .unwrap();
    let code = out.status.code().unwrap_or(-1);
    let out = json(&out.stdout);
    let c = out["campaign"].as_str().unwrap().to_string();
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["counts"]["done"], 8, "{out}");
    let st = status(dir.path(), &c);
    let refused = st["pilots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["resource"] == "slurm")
        .expect("the slurm pilot")
        .clone();
    assert_eq!(refused["state"], "FAILED", "{st}");
    let why = refused["reason"].as_str().unwrap();
    assert!(
        why.contains("pilot job refused") && why.contains("Requested reservation is invalid"),
        "sbatch got the reservation and said so: {why}"
    );
    cleanup(&c).await;
}

#[tokio::test]
async fn a_slurm_pilot_at_its_walltime_drains_and_its_remaining_tasks_run_elsewhere() {
    require_slurm();
    let dir = tempfile::tempdir().unwrap();
    catalog(dir.path(), "");
    // 36 x 3 s over two 1-core pilots: ~54 s of work; the 1-minute SLURM pilot drains 15 s
    // before its end, starts no task it cannot finish by then, hands back what it holds,
    // and the local pilot finishes the rest.
    let wf = write_workflow(
        dir.path(),
        r#"
name = "walltime"
[[tasks]]
name = "s-{index}"
count = 36
command = ["sleep", "3"]
cores = 1
est_duration_s = 3
"#,
    );
    let (code, out) = run(
        dir.path(),
        &wf,
        &["slurm@short:1:00:01:00", "here:1:00:10:00"],
    );
    let c = out["campaign"].as_str().unwrap().to_string();
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["counts"]["done"], 36, "{out}");
    let st = status(dir.path(), &c);
    let slurm = st["pilots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["resource"] == "slurm")
        .cloned()
        .expect("the slurm pilot");
    assert_eq!(slurm["state"], "DONE", "{st}");
    assert!(
        slurm["reason"]
            .as_str()
            .unwrap()
            .contains("allocation walltime is ending"),
        "{slurm}"
    );
    // Every task DONE exactly once, some on each pilot.
    let (_, store) = integration_tests::services().await;
    let campaign = c.parse().unwrap();
    let events = store.all_events(&campaign).await.unwrap();
    let mut done: std::collections::HashMap<String, u32> = Default::default();
    let mut returned = 0;
    for e in &events {
        if let emanager_shared::model::EventKind::Task {
            task,
            state,
            reason,
            ..
        } = &e.kind
        {
            match state {
                emanager_shared::TaskState::Done => *done.entry(task.to_string()).or_default() += 1,
                emanager_shared::TaskState::Ready
                    if reason.contains("pilot stopping") || reason.contains("pilot drains in") =>
                {
                    returned += 1
                }
                emanager_shared::TaskState::Failed => panic!("a task failed: {e:?}"),
                _ => {}
            }
        }
    }
    assert_eq!(done.len(), 36);
    assert!(done.values().all(|n| *n == 1), "{done:?}");
    eprintln!("{returned} task(s) handed back by the SLURM pilot");
    // No task was still running on the SLURM pilot when it drained: it starts only what
    // its estimate says ends by then (1 s for the reporter's batching).
    let record = store
        .pilots(&campaign)
        .await
        .unwrap()
        .into_iter()
        .find(|v| v.record.resource == "slurm")
        .expect("the slurm pilot's record")
        .record;
    let drain_at = record.drain_at_ms().expect("a batch pilot drains");
    assert_eq!(record.drain_margin_ms, 15_000, "{record:?}");
    let pilot = record.id.to_string();
    for (id, r) in store.task_records(&campaign).await.unwrap() {
        if r.p == pilot {
            assert!(
                r.t1 <= drain_at + 1_000,
                "task {id} ended {} ms after the drain",
                r.t1 - drain_at
            );
        }
    }
    let report = json(
        &emanager(dir.path())
            .args(["report", "--json", &c])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone(),
    );
    let slurm_id = slurm["id"].as_str().unwrap();
    let on_slurm = report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["pilot"].as_str().is_some_and(|p| slurm_id.starts_with(p)))
        .count();
    assert!(
        (5..36).contains(&on_slurm),
        "{on_slurm} tasks on the SLURM pilot"
    );
    cleanup(&c).await;
}

#[tokio::test]
async fn a_pilot_still_queued_when_the_work_is_done_is_canceled() {
    require_slurm();
    let dir = tempfile::tempdir().unwrap();
    catalog(dir.path(), "");
    // The dev node has 2 cores: a 2-core pilot job waits while the local pilot does the work.
    let text = std::fs::read_to_string(dir.path().join("resources.toml"))
        .unwrap()
        .replacen("cores_per_node = 1", "cores_per_node = 2", 1);
    std::fs::write(dir.path().join("resources.toml"), text).unwrap();
    let blocker = std::process::Command::new("sbatch")
        .args([
            "--parsable",
            "--cpus-per-task=2",
            "--time=2",
            "--output=/dev/null",
            "--wrap",
            "sleep 60",
        ])
        .output()
        .unwrap();
    let blocker = String::from_utf8_lossy(&blocker.stdout).trim().to_string();
    assert!(!blocker.is_empty(), "a job to keep the node busy");
    let wf = write_workflow(dir.path(), ECHO_JOB);
    let (code, out) = run(dir.path(), &wf, &["slurm:1:00:10:00", "here:1:00:10:00"]);
    let _ = std::process::Command::new("scancel").arg(&blocker).status();
    let c = out["campaign"].as_str().unwrap().to_string();
    assert_eq!(code, 0, "{out}");
    let st = status(dir.path(), &c);
    let slurm = st["pilots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["resource"] == "slurm")
        .cloned()
        .expect("the slurm pilot");
    assert_eq!(slurm["state"], "CANCELED", "{st}");
    let job = slurm["job_id"].as_str().unwrap();
    let q = std::process::Command::new("squeue")
        .args(["-h", "-j", job, "-o", "%T"])
        .output()
        .unwrap();
    let left = String::from_utf8_lossy(&q.stdout).trim().to_string();
    assert!(
        left.is_empty() || left.starts_with("CANCELLED"),
        "job {job} is gone from the queue, not `{left}`"
    );
    cleanup(&c).await;
}

#[tokio::test]
async fn the_planner_chooses_slurm_pilots_and_report_compares_the_run_with_the_plan() {
    require_slurm();
    let dir = tempfile::tempdir().unwrap();
    catalog(dir.path(), "");
    let wf = write_workflow(
        dir.path(),
        r#"
name = "planned"
[[tasks]]
name = "t-{index}"
count = 6
command = ["sleep", "1"]
cores = 1
est_duration_s = 1
"#,
    );
    let out = emanager(dir.path())
        .args(["run", "--json", "--only", "slurm"])
        .arg(&wf)
        .output()
        .unwrap();
    let v = json(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{v}");
    let c = v["campaign"].as_str().unwrap().to_string();
    assert_eq!(v["counts"]["done"], 6, "{v}");
    let first = v["decisions"][0]["text"].as_str().unwrap();
    assert!(
        first.contains("on slurm") && first.contains("planned (ttc)"),
        "the planner chose the pilot: {first}"
    );
    let st = status(dir.path(), &c);
    let pilot = &st["pilots"][0];
    assert_eq!(pilot["resource"], "slurm", "{st}");
    assert!(!pilot["job_id"].as_str().unwrap().is_empty(), "{st}");
    let cmp = json(
        &emanager(dir.path())
            .args(["report", "--vs-plan", "--json", &c])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone(),
    );
    assert_eq!(cmp["strategy"], "ttc", "{cmp}");
    assert_eq!(cmp["finished"], true, "{cmp}");
    assert!(cmp["predicted_ttc_s"].as_f64().unwrap() > 0.0, "{cmp}");
    let row = &cmp["pilots"][0];
    assert_eq!(
        (row["planned"].as_u64(), row["resource"].as_str()),
        (Some(0), Some("slurm")),
        "{cmp}"
    );
    let waited = row["achieved_wait_s"].as_f64().expect("the pilot started");
    assert!((0.0..60.0).contains(&waited), "{cmp}");
    // The human form says the same.
    emanager(dir.path())
        .args(["report", "--vs-plan", &c])
        .assert()
        .success()
        .stdout(predicates::str::contains("plan (ttc) vs achieved"));
    cleanup(&c).await;
}

/// A campaign with no pilot of its own, waiting for agents an operator submits.
async fn campaign_waiting_for_agents() -> (
    integration_tests::Campaign,
    tokio::task::JoinHandle<anyhow::Result<emanager::driver::Outcome>>,
) {
    let toml = "name = \"ops\"\n[[tasks]]\nname = \"o-{index}\"\ncount = 6\ncommand = [\"sleep\", \"0.2\"]\nest_duration_s = 0.2\n";
    let c = integration_tests::Campaign::new(toml, 0, 1).await;
    let run = tokio::spawn({
        let ctx = c.context();
        async move { emanager::driver::drive(ctx).await }
    });
    (c, run)
}

/// What the deploy templates need from the environment to join campaign `c`.
fn template_env(c: &integration_tests::Campaign, dir: &Path) -> Vec<(String, String)> {
    vec![
        ("EMANAGER_CAMPAIGN".into(), c.id.to_string()),
        ("EMANAGER_AMQP_URL".into(), amqp_url()),
        ("EMANAGER_REDIS_URL".into(), redis_url()),
        (
            "EMANAGER_AGENT_BIN".into(),
            workspace_bin("pilot-agent").display().to_string(),
        ),
        ("EMANAGER_WORKDIR".into(), dir.display().to_string()),
    ]
}

async fn finishes_on_the_submitted_agent(
    c: integration_tests::Campaign,
    run: tokio::task::JoinHandle<anyhow::Result<emanager::driver::Outcome>>,
    job: &str,
) {
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the campaign finished on the agent the template started")
        .unwrap()
        .unwrap();
    assert_eq!(out.counts.done, 6, "{:?}", out.counts);
    let pilots = c.store.pilots(&c.id).await.unwrap();
    assert_eq!(pilots.len(), 1, "{pilots:?}");
    assert_eq!(pilots[0].record.job_id, job, "the agent knows its job");
    // ... and when its allocation ends (the jobs ask for 5 minutes), to drain before it.
    let left_ms = pilots[0]
        .record
        .walltime_end_ms
        .saturating_sub(pilots[0].record.registered_ms);
    assert!(
        (200_000..=360_000).contains(&left_ms),
        "the agent knows its allocation's end: {:?}",
        pilots[0].record
    );
    c.cleanup().await;
}

#[tokio::test]
async fn the_sbatch_template_of_deploy_starts_an_agent_that_joins_a_running_campaign() {
    require_slurm();
    let dir = tempfile::tempdir().unwrap();
    let (c, run) = campaign_waiting_for_agents().await;
    let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/templates/agent.sbatch");
    let exports: Vec<String> = template_env(&c, dir.path())
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let out = std::process::Command::new("sbatch")
        .args(["--parsable", "--cpus-per-task=1", "--time=5"])
        .arg(format!("--export=ALL,{}", exports.join(",")))
        .arg(template)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let job = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    finishes_on_the_submitted_agent(c, run, &job).await;
}

#[tokio::test]
async fn the_grid_engine_template_of_deploy_starts_an_agent_that_joins_a_running_campaign() {
    require_sge();
    let dir = tempfile::tempdir().unwrap();
    let (c, run) = campaign_waiting_for_agents().await;
    let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/templates/agent.sge");
    let vars: Vec<String> = template_env(&c, dir.path())
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let out = std::process::Command::new("qsub")
        .args(["-terse", "-l", "h_rt=00:05:00", "-v"])
        .arg(vars.join(","))
        .arg(template)
        .env("SGE_ROOT", "/var/lib/gridengine")
        .env("SGE_CELL", "default")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let job = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    finishes_on_the_submitted_agent(c, run, &job).await;
}
