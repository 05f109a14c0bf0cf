//! Resource access against the real batch systems on this machine, through `JobService`
//! built from `examples/resources.toml`.
//!
//! Needs: `deploy/dev/slurm-up.sh`, `EM_SLURM_CLUSTER=b deploy/dev/slurm-up.sh` (the
//! second, independent SLURM cluster), `deploy/dev/sge-up.sh`, `deploy/dev/ssh-up.sh`.
//! A missing service FAILS the test with the command that starts it.

use emanager_shared::access::{
    job_service_for, AccessError, JobDescription, JobId, JobService, JobState, JobStatus,
};
use emanager_shared::catalog::Catalog;
use integration_tests::{dev_script, require_sge, require_slurm, require_ssh};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::sync::{RwLock, RwLockReadGuard};

/// Tests on cluster b hold it shared; the one that stops its controller holds it alone, so
/// no other test of this binary sees cluster b down.
static CLUSTER_B: RwLock<()> = RwLock::const_new(());

fn catalog() -> Catalog {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/resources.toml");
    Catalog::load(&path).expect("examples/resources.toml loads")
}

fn service(name: &str) -> Box<dyn JobService> {
    job_service_for(
        catalog()
            .get(name)
            .expect("resource in examples/resources.toml"),
    )
}

/// Cluster b must answer; the guard keeps it up for the test (see [`CLUSTER_B`]).
async fn require_slurm_b() -> RwLockReadGuard<'static, ()> {
    let guard = CLUSTER_B.read().await;
    integration_tests::require_slurm_b();
    guard
}

/// Runs `EM_SLURM_CLUSTER=b deploy/dev/<script> <args>`; Err with its output on failure.
fn cluster_b_script(script: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new("bash")
        .arg(dev_script(script))
        .args(args)
        .env("EM_SLURM_CLUSTER", "b")
        .output()
        .map_err(|e| format!("cannot run {script}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "EM_SLURM_CLUSTER=b {script} {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Cluster b's slurmctld is stopped while this lives (its slurmd and jobs go on); dropping
/// it, also when the test panics, starts it again with `slurm-up.sh`.
struct ClusterBControllerStopped;

impl ClusterBControllerStopped {
    fn stop() -> ClusterBControllerStopped {
        cluster_b_script("slurm-down.sh", &["--controller-only"]).expect("stop cluster b");
        ClusterBControllerStopped
    }
}

impl Drop for ClusterBControllerStopped {
    fn drop(&mut self) {
        if let Err(e) = cluster_b_script("slurm-up.sh", &[]) {
            eprintln!("restarting cluster b failed (run `sudo EM_SLURM_CLUSTER=b deploy/dev/slurm-up.sh`): {e}");
        }
    }
}

/// A trivial job writing its output to a fresh directory.
fn echo_job(dir: &Path, queue: &str, command: &[&str]) -> JobDescription {
    JobDescription {
        name: "em-it".into(),
        nodes: 1,
        cores_per_node: 1,
        walltime_s: 60,
        queue: Some(queue.into()),
        working_dir: Some(dir.display().to_string()),
        stdout: Some(dir.join("out.txt").display().to_string()),
        command: command.iter().map(|s| s.to_string()).collect(),
        environment: [(
            "EM_GREETING".to_string(),
            "hello from the pilot".to_string(),
        )]
        .into(),
        ..Default::default()
    }
}

/// Polls until the job's state is final (or `until` holds); returns every state seen.
async fn wait_for(
    svc: &dyn JobService,
    id: &JobId,
    until: impl Fn(&JobStatus) -> bool,
) -> (JobStatus, Vec<JobState>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        let status = svc.state(id).await.expect("state");
        if seen.last() != Some(&status.state) {
            seen.push(status.state);
        }
        if until(&status) {
            return (status, seen);
        }
        assert!(
            Instant::now() < deadline,
            "job {id} stuck; states seen {seen:?}, last {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs `script` (sh) as a job in `queue` to Done and returns what it printed. The job's
/// environment has `EM_GREETING` from the description.
async fn job_output(svc: &dyn JobService, queue: &str, script: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let job = echo_job(dir.path(), queue, &["/bin/sh", "-c", script]);
    let id = svc.submit(&job).await.expect("submit");
    let (status, seen) = wait_for(svc, &id, |s| s.state.is_final()).await;
    let out = std::fs::read_to_string(dir.path().join("out.txt")).unwrap_or_default();
    assert_eq!(
        status.state,
        JobState::Done,
        "{status:?}, states seen {seen:?}, output {out:?}"
    );
    assert!(
        seen.iter()
            .any(|s| matches!(s, JobState::Queued | JobState::Running)),
        "never saw it queued or running: {seen:?}"
    );
    assert!(
        status.start_time.is_some() && status.end_time.is_some(),
        "{status:?}"
    );
    out
}

/// A job prints the greeting from its environment, and the SLURM cluster it ran on
/// (`cluster=none` elsewhere); returns the output.
async fn runs_to_done_with_output(svc: &dyn JobService, queue: &str) -> String {
    let out = job_output(
        svc,
        queue,
        "echo \"$EM_GREETING\"; echo \"cluster=${SLURM_CLUSTER_NAME:-none}\"; sleep 1",
    )
    .await;
    assert!(out.contains("hello from the pilot"), "output: {out:?}");
    out
}

fn ran_on_cluster(out: &str, cluster: &str) -> bool {
    out.lines().any(|l| l == format!("cluster={cluster}"))
}

async fn cancel_ends_a_running_job(svc: &dyn JobService, queue: &str) {
    let dir = tempfile::tempdir().unwrap();
    let id = svc
        .submit(&echo_job(dir.path(), queue, &["sleep", "300"]))
        .await
        .expect("submit");
    wait_for(svc, &id, |s| s.state == JobState::Running).await;
    svc.cancel(&id).await.expect("cancel");
    let (status, _) = wait_for(svc, &id, |s| s.state.is_final()).await;
    assert_eq!(status.state, JobState::Canceled, "{status:?}");
}

async fn rejected_with(svc: &dyn JobService, job: JobDescription, words: &str) {
    match svc.submit(&job).await {
        Err(AccessError::Rejected { message, .. }) => {
            assert!(
                message.contains(words),
                "message {message:?} lacks {words:?}"
            )
        }
        other => panic!("expected a rejection containing {words:?}, got {other:?}"),
    }
}

// --- SLURM -----------------------------------------------------------------------------------

#[tokio::test]
async fn slurm_job_runs_to_done_with_output() {
    require_slurm();
    let out = runs_to_done_with_output(service("localhost-slurm").as_ref(), "debug").await;
    assert!(ran_on_cluster(&out, "emanager-dev"), "output: {out:?}");
}

#[tokio::test]
async fn slurm_rejects_unknown_partition_with_its_message() {
    require_slurm();
    let dir = tempfile::tempdir().unwrap();
    let job = echo_job(dir.path(), "nope", &["true"]);
    rejected_with(
        service("localhost-slurm").as_ref(),
        job,
        "invalid partition specified: nope",
    )
    .await;
}

#[tokio::test]
async fn slurm_rejects_walltime_above_partition_limit() {
    require_slurm();
    let dir = tempfile::tempdir().unwrap();
    let mut job = echo_job(dir.path(), "short", &["true"]);
    job.walltime_s = 600;
    rejected_with(
        service("localhost-slurm").as_ref(),
        job,
        "Requested time limit is invalid",
    )
    .await;
}

#[tokio::test]
async fn slurm_cancel_ends_a_running_job() {
    require_slurm();
    cancel_ends_a_running_job(service("localhost-slurm").as_ref(), "debug").await;
}

#[tokio::test]
async fn slurm_cancel_of_unknown_job_is_unknown_job() {
    require_slurm();
    let err = service("localhost-slurm")
        .cancel(&JobId("99999999".into()))
        .await
        .unwrap_err();
    assert!(matches!(err, AccessError::UnknownJob { .. }), "{err:?}");
}

#[tokio::test]
async fn slurm_queues_lists_partitions_with_limits() {
    require_slurm();
    let queues = service("localhost-slurm").queues().await.expect("queues");
    let debug = queues
        .iter()
        .find(|q| q.name == "debug")
        .expect("debug partition");
    assert_eq!(debug.max_walltime_s, Some(3600));
    assert_eq!(debug.nodes_total, 1);
    let short = queues
        .iter()
        .find(|q| q.name == "short")
        .expect("short partition");
    assert_eq!(short.max_walltime_s, Some(60));
}

#[tokio::test]
async fn slurm_through_ssh_runs_a_job_and_lists_queues() {
    require_slurm();
    require_ssh();
    let svc = service("localhost-slurm-ssh");
    runs_to_done_with_output(svc.as_ref(), "debug").await;
    let queues = svc.queues().await.expect("queues over ssh");
    assert!(queues.iter().any(|q| q.name == "debug"), "{queues:?}");
}

#[tokio::test]
async fn slurm_through_ssh_surfaces_rejections() {
    require_slurm();
    require_ssh();
    let dir = tempfile::tempdir().unwrap();
    let job = echo_job(dir.path(), "nope", &["true"]);
    rejected_with(
        service("localhost-slurm-ssh").as_ref(),
        job,
        "invalid partition specified: nope",
    )
    .await;
}

// --- SLURM cluster b: a second, independent cluster on this machine -------------------------

#[tokio::test]
async fn slurm_b_job_runs_on_cluster_b_with_output_and_srun_inside() {
    let _b = require_slurm_b().await;
    let svc = service("localhost-slurm-b");
    let out = runs_to_done_with_output(svc.as_ref(), "debug").await;
    assert!(ran_on_cluster(&out, "emanager-dev-b"), "output: {out:?}");
    // sbatch passed SLURM_CONF on to the job, so a step goes to cluster b's slurmd.
    let out = job_output(
        svc.as_ref(),
        "debug",
        "srun -n1 sh -c 'echo \"step on $SLURMD_NODENAME of $SLURM_CLUSTER_NAME\"'",
    )
    .await;
    assert!(
        out.contains("step on ") && out.trim_end().ends_with("-b of emanager-dev-b"),
        "output: {out:?}"
    );
}

#[tokio::test]
async fn slurm_b_queues_lists_partitions_with_limits() {
    let _b = require_slurm_b().await;
    let queues = service("localhost-slurm-b").queues().await.expect("queues");
    let debug = queues.iter().find(|q| q.name == "debug").expect("debug");
    assert_eq!(debug.max_walltime_s, Some(3600));
    assert_eq!(debug.nodes_total, 1);
    let short = queues.iter().find(|q| q.name == "short").expect("short");
    assert_eq!(short.max_walltime_s, Some(60));
}

#[tokio::test]
async fn slurm_b_rejects_walltime_above_partition_limit() {
    let _b = require_slurm_b().await;
    let dir = tempfile::tempdir().unwrap();
    let mut job = echo_job(dir.path(), "short", &["true"]);
    job.walltime_s = 600;
    rejected_with(
        service("localhost-slurm-b").as_ref(),
        job,
        "Requested time limit is invalid",
    )
    .await;
}

#[tokio::test]
async fn slurm_b_through_ssh_runs_a_job_and_lists_queues() {
    let _b = require_slurm_b().await;
    require_ssh();
    let svc = service("localhost-slurm-b-ssh");
    let out = runs_to_done_with_output(svc.as_ref(), "debug").await;
    assert!(ran_on_cluster(&out, "emanager-dev-b"), "output: {out:?}");
    let queues = svc.queues().await.expect("queues over ssh");
    let short = queues.iter().find(|q| q.name == "short").expect("short");
    assert_eq!(short.max_walltime_s, Some(60));
}

#[tokio::test]
async fn slurm_a_and_b_know_only_their_own_jobs() {
    require_slurm();
    let _b = require_slurm_b().await;
    let (a, b) = (service("localhost-slurm"), service("localhost-slurm-b"));
    let dir = tempfile::tempdir().unwrap();
    let on_b = b
        .submit(&echo_job(dir.path(), "debug", &["sleep", "60"]))
        .await
        .expect("submit to b");
    let on_a = a
        .submit(&echo_job(dir.path(), "debug", &["sleep", "60"]))
        .await
        .expect("submit to a");
    assert_ne!(on_a, on_b, "the clusters' job ids overlap");
    for (svc, id, owner) in [(&b, &on_b, "b"), (&a, &on_a, "a")] {
        let status = svc.state(id).await.expect("state on its own cluster");
        assert!(
            matches!(status.state, JobState::Queued | JobState::Running),
            "job {id} on cluster {owner}: {status:?}"
        );
    }
    for (svc, id, other) in [(&a, &on_b, "a"), (&b, &on_a, "b")] {
        let status = svc.state(id).await.expect("state on the other cluster");
        assert_eq!(
            status.state,
            JobState::Unknown,
            "cluster {other} knows job {id}: {status:?}"
        );
    }
    let err = a.cancel(&on_b).await.unwrap_err();
    assert!(matches!(err, AccessError::UnknownJob { .. }), "{err:?}");
    b.cancel(&on_b).await.expect("cancel on b");
    a.cancel(&on_a).await.expect("cancel on a");
}

#[tokio::test]
async fn slurm_b_controller_down_fails_its_queues_while_a_works() {
    require_slurm();
    let _alone = CLUSTER_B.write().await;
    integration_tests::require_slurm_b();
    let (a, b) = (service("localhost-slurm"), service("localhost-slurm-b"));
    let stopped = ClusterBControllerStopped::stop();
    let err = b.queues().await.unwrap_err();
    assert!(
        matches!(&err, AccessError::CommandFailed { .. })
            && err
                .to_string()
                .contains("Unable to contact slurm controller"),
        "{err:?}"
    );
    let queues = a.queues().await.expect("cluster a still answers");
    assert!(queues.iter().any(|q| q.name == "debug"), "{queues:?}");
    drop(stopped);
    let queues = b.queues().await.expect("cluster b is back");
    assert!(queues.iter().any(|q| q.name == "debug"), "{queues:?}");
}

// --- Grid Engine -----------------------------------------------------------------------------

#[tokio::test]
async fn sge_job_runs_to_done_with_output() {
    require_sge();
    runs_to_done_with_output(service("localhost-sge").as_ref(), "all.q").await;
}

#[tokio::test]
async fn sge_rejects_unknown_queue_with_its_message() {
    require_sge();
    let dir = tempfile::tempdir().unwrap();
    let job = echo_job(dir.path(), "nope", &["true"]);
    rejected_with(
        service("localhost-sge").as_ref(),
        job,
        "job requests unknown queue \"nope\"",
    )
    .await;
}

#[tokio::test]
async fn sge_rejects_walltime_above_queue_limit() {
    require_sge();
    let dir = tempfile::tempdir().unwrap();
    let mut job = echo_job(dir.path(), "short.q", &["true"]);
    job.walltime_s = 600;
    rejected_with(service("localhost-sge").as_ref(), job, "no suitable queues").await;
}

#[tokio::test]
async fn sge_cancel_ends_a_running_job() {
    require_sge();
    cancel_ends_a_running_job(service("localhost-sge").as_ref(), "all.q").await;
}

#[tokio::test]
async fn sge_queues_lists_queues_with_limits() {
    require_sge();
    let queues = service("localhost-sge").queues().await.expect("queues");
    let all = queues.iter().find(|q| q.name == "all.q").expect("all.q");
    assert_eq!(all.max_walltime_s, Some(3600));
    assert_eq!(all.nodes_total, 1);
    let short = queues
        .iter()
        .find(|q| q.name == "short.q")
        .expect("short.q");
    assert_eq!(short.max_walltime_s, Some(60));
}

#[tokio::test]
async fn slurm_pilot_job_from_the_catalog_runs_the_agent_command() {
    require_slurm();
    let dir = tempfile::tempdir().unwrap();
    // The agent path is expanded by the job's shell ($EM_BIN from the agent environment).
    let text = format!(
        r#"
[resources.dev]
access = "slurm"
nodes = 1
cores_per_node = 1
default_queue = "debug"

[resources.dev.agent]
path = "$EM_BIN/echo"
environment = {{ EM_BIN = "/bin" }}
pre_commands = ["echo pre-command ran"]
workdir = "{}"

[[resources.dev.queues]]
name = "debug"
max_walltime = "00:10:00"
max_nodes = 1
"#,
        dir.path().display()
    );
    let catalog = Catalog::parse(&text).expect("catalog");
    let resource = catalog.get("dev").unwrap();
    let mut job =
        JobDescription::for_pilot(resource, None, 1, 120, &["--campaign".into(), "C 1".into()])
            .expect("pilot job");
    job.stdout = Some(dir.path().join("pilot.out").display().to_string());
    let svc = job_service_for(resource);
    let id = svc.submit(&job).await.expect("submit");
    let (status, _) = wait_for(svc.as_ref(), &id, |s| s.state.is_final()).await;
    assert_eq!(status.state, JobState::Done, "{status:?}");
    let out = std::fs::read_to_string(dir.path().join("pilot.out")).unwrap();
    assert_eq!(out, "pre-command ran\n--campaign C 1\n");
}

#[tokio::test]
async fn ssh_connection_failure_is_an_ssh_error() {
    // Nothing listens on 127.0.0.2:22 (deploy/dev/ssh-up.sh binds 127.0.0.1 only).
    let text = r#"
[resources.gone]
access = "slurm"
ssh = "root@127.0.0.2"
nodes = 1
cores_per_node = 1

[[resources.gone.queues]]
name = "debug"
max_walltime = "00:10:00"
max_nodes = 1
"#;
    let catalog = Catalog::parse(text).unwrap();
    let err = job_service_for(catalog.get("gone").unwrap())
        .queues()
        .await
        .unwrap_err();
    assert!(matches!(err, AccessError::Ssh { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with("ssh to root@127.0.0.2 failed"),
        "{err}"
    );
}
