//! Resource access against the real batch systems on this machine, through `JobService`
//! built from `examples/resources.toml`.
//!
//! Needs: `deploy/dev/slurm-up.sh`, `deploy/dev/sge-up.sh`, `deploy/dev/ssh-up.sh`.
//! A missing service FAILS the test with the command that starts it.

use emanager_shared::access::{
    job_service_for, AccessError, JobDescription, JobId, JobService, JobState, JobStatus,
};
use emanager_shared::catalog::Catalog;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

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

/// Fails (never skips) when `argv` does not succeed, saying how to start the service.
fn require(what: &str, argv: &[&str], start: &str) {
    let ok = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "{what} is not running on this machine (`{}` failed): start it with `{start}`",
        argv.join(" ")
    );
}

fn require_slurm() {
    require("SLURM", &["sinfo", "-h"], "sudo deploy/dev/slurm-up.sh");
}

fn require_sge() {
    require(
        "Grid Engine",
        &["qstat", "-g", "c"],
        "sudo deploy/dev/sge-up.sh",
    );
}

fn require_ssh() {
    require(
        "sshd on localhost (key auth for this user)",
        &[
            "ssh",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=5",
            "localhost",
            "true",
        ],
        "sudo deploy/dev/ssh-up.sh",
    );
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

async fn runs_to_done_with_output(svc: &dyn JobService, queue: &str) {
    let dir = tempfile::tempdir().unwrap();
    let job = echo_job(
        dir.path(),
        queue,
        &["/bin/sh", "-c", "echo \"$EM_GREETING\"; sleep 1"],
    );
    let id = svc.submit(&job).await.expect("submit");
    let (status, seen) = wait_for(svc, &id, |s| s.state.is_final()).await;
    assert_eq!(
        status.state,
        JobState::Done,
        "{status:?}, states seen {seen:?}"
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
    let out = std::fs::read_to_string(dir.path().join("out.txt")).expect("job output file");
    assert!(out.contains("hello from the pilot"), "output: {out:?}");
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
    runs_to_done_with_output(service("localhost-slurm").as_ref(), "debug").await;
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
