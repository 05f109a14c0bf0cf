//! Shared helpers of the end-to-end tests: the real services (or a clear failure saying how
//! to start them), the built binaries, and campaigns that clean up after themselves.

use emanager::campaign::{self, CampaignOptions, PilotRequest};
use emanager::driver::{self, Outcome, RunContext};
use emanager::pilots::Launcher;
use emanager::progress::{Progress, ProgressMode};
use emanager::workflow::{self, Format};
use emanager_shared::broker::{AmqpBroker, Broker};
use emanager_shared::store::{RedisStore, StateStore};
use emanager_shared::CampaignId;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use emanager_test_services::{
    amqp_url, free_port, how_to_start, mgmt_url, rabbitmqctl, redis_db_url, redis_url,
    restart_rabbitmq,
};

/// The real RabbitMQ and Redis. A missing service fails the test with how to start it.
pub async fn services() -> (Arc<dyn Broker>, Arc<dyn StateStore>) {
    let store = RedisStore::connect(&redis_url())
        .await
        .unwrap_or_else(|e| panic!("{e}\nThis test needs a real Redis: {}", how_to_start()));
    let broker = AmqpBroker::connect_with_retry_window(&amqp_url(), Duration::from_secs(90))
        .await
        .unwrap_or_else(|e| panic!("{e}\nThis test needs a real RabbitMQ: {}", how_to_start()));
    (Arc::new(broker), Arc::new(store))
}

/// `GET path` on a local port over HTTP/1.0: the status line and the body; `None` while
/// nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(String, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.lines().next()?.to_string();
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// A workspace binary (`pilot-agent`, `emanager`), built on demand when missing.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .ancestors()
        .nth(2)
        .expect("target/<profile>/deps/<test>")
        .to_path_buf();
    let bin = dir.join(name);
    if !bin.is_file() {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "--bins", "-p", "pilot-agent", "-p", "emanager"])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cannot build the workspace binaries");
    }
    assert!(bin.is_file(), "{} was not built", bin.display());
    bin
}

/// Fails (never skips) when `argv` does not succeed, saying how to start the service.
pub fn require(what: &str, argv: &[&str], start: &str) {
    let ok = std::process::Command::new(argv[0])
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

/// The dev SLURM cluster (`deploy/dev/slurm-up.sh`).
pub fn require_slurm() {
    require("SLURM", &["sinfo", "-h"], "sudo deploy/dev/slurm-up.sh");
}

/// The configuration of the second dev SLURM cluster, `emanager-dev-b`.
pub const SLURM_B_CONF: &str = "/etc/slurm-b/slurm.conf";

/// The second dev SLURM cluster (`EM_SLURM_CLUSTER=b deploy/dev/slurm-up.sh`).
pub fn require_slurm_b() {
    require(
        "SLURM cluster b (emanager-dev-b)",
        &["env", &format!("SLURM_CONF={SLURM_B_CONF}"), "sinfo", "-h"],
        "sudo EM_SLURM_CLUSTER=b deploy/dev/slurm-up.sh",
    );
}

/// The dev Grid Engine (`deploy/dev/sge-up.sh`).
pub fn require_sge() {
    require(
        "Grid Engine",
        &["qstat", "-g", "c"],
        "sudo deploy/dev/sge-up.sh",
    );
}

/// sshd on localhost with key auth (`deploy/dev/ssh-up.sh`).
pub fn require_ssh() {
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

/// A script of `deploy/dev/`.
pub fn dev_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/dev")
        .join(name)
}

/// How many DONE events each task has in a campaign's events stream.
pub fn done_events_per_task(
    events: &[emanager_shared::model::Event],
) -> std::collections::HashMap<emanager_shared::TaskId, usize> {
    let mut n = std::collections::HashMap::new();
    for e in events {
        if let emanager_shared::model::EventKind::Task {
            task,
            state: emanager_shared::TaskState::Done,
            ..
        } = e.kind
        {
            *n.entry(task).or_default() += 1;
        }
    }
    n
}

/// `n` local pilots of `cores` cores without a walltime.
pub fn local_pilots(n: u32, cores: u32) -> Vec<PilotRequest> {
    (0..n).map(|_| PilotRequest::local(cores)).collect()
}

/// Tests that take a shared service down (RabbitMQ restarts, the soak) hold this lock alone,
/// and tests that need the services steady share it ([`service_steady_lock`]), so an outage
/// never hits a test that did not ask for it, within a test binary and across them.
pub fn service_outage_lock() -> std::fs::File {
    let f = lock_file();
    f.lock().expect("take the outage lock");
    f
}

/// The shared side of [`service_outage_lock`]: held by tests that need RabbitMQ and Redis up
/// the whole time.
pub fn service_steady_lock() -> std::fs::File {
    let f = lock_file();
    f.lock_shared().expect("take the outage lock, shared");
    f
}

fn lock_file() -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(std::env::temp_dir().join("emanager-service-outage.lock"))
        .expect("open the outage lock file")
}

/// Names of the RabbitMQ queues that mention `needle`.
pub fn rabbitmq_queues_named(needle: &str) -> Vec<String> {
    let out = rabbitmqctl(&["list_queues", "name", "--quiet", "--no-table-headers"]);
    assert!(out.success, "rabbitmqctl list_queues: {}", out.stderr);
    out.stdout
        .lines()
        .filter(|l| l.contains(needle))
        .map(|l| l.trim().to_string())
        .collect()
}

/// A campaign against the real services, run by an in-process manager with real
/// `pilot-agent` processes.
pub struct Campaign {
    pub id: CampaignId,
    pub broker: Arc<dyn Broker>,
    pub store: Arc<dyn StateStore>,
    pub workflow: workflow::Workflow,
    pub opts: CampaignOptions,
    pub workdir: tempfile::TempDir,
    /// The Redis the agents are pointed at (a test may run a private one).
    pub redis_url: String,
    /// Set by [`Campaign::cleanup`]; a campaign dropped without it (a test that failed
    /// half-way) is cleaned up by [`Drop`].
    cleaned: bool,
}

impl Campaign {
    /// Records a campaign of `toml` with `pilots` local pilots of `cores` cores.
    pub async fn new(toml: &str, pilots: u32, cores: u32) -> Campaign {
        let (broker, store) = services().await;
        Campaign::with(
            toml,
            local_pilots(pilots, cores),
            broker,
            store,
            redis_url(),
        )
        .await
    }

    /// Records a campaign of `toml` with the given pilots, against the given services.
    pub async fn with(
        toml: &str,
        pilots: Vec<PilotRequest>,
        broker: Arc<dyn Broker>,
        store: Arc<dyn StateStore>,
        redis_url: String,
    ) -> Campaign {
        let wf = workflow::parse_str(toml, Format::Toml, "test.toml").expect("valid workflow");
        let workdir = tempfile::tempdir().expect("tempdir");
        let opts = CampaignOptions {
            pilots,
            lookahead_s: 2.0,
            heartbeat_ms: 500,
            workdir: workdir.path().to_path_buf(),
            max_pilot_replacements: 0,
            pilot_start_timeout_s: 60,
            ..CampaignOptions::default()
        };
        let id = CampaignId::random();
        campaign::create(store.as_ref(), id, &wf, toml, Format::Toml, &opts)
            .await
            .expect("create campaign");
        Campaign {
            id,
            broker,
            store,
            workflow: wf,
            opts,
            workdir,
            redis_url,
            cleaned: false,
        }
    }

    pub fn context(&self) -> RunContext {
        RunContext {
            campaign: self.id,
            store: self.store.clone(),
            broker: self.broker.clone(),
            launcher: Launcher::LocalProcess {
                agent_bin: workspace_bin("pilot-agent"),
                amqp_url: amqp_url(),
                redis_url: self.redis_url.clone(),
            },
            workflow: self.workflow.clone(),
            opts: self.opts.clone(),
            progress: Progress::new(ProgressMode::Quiet, self.workflow.tasks.len() as u64),
            interrupt: None,
        }
    }

    /// Runs the campaign to its end (bounded in time).
    pub async fn run(&self, limit: Duration) -> Outcome {
        tokio::time::timeout(limit, driver::drive(self.context()))
            .await
            .expect("campaign finished in time")
            .expect("campaign ran")
    }

    /// Removes the campaign's keys and queues.
    pub async fn cleanup(mut self) {
        for v in self.store.pilots(&self.id).await.unwrap_or_default() {
            let _ = self.broker.delete_pilot(&self.id, &v.record.id).await;
            if v.alive && v.record.agent_pid > 0 {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(v.record.agent_pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        let _ = self.broker.delete_campaign(&self.id).await;
        let _ = self.store.delete_campaign(&self.id).await;
        self.cleaned = true;
    }
}

impl Drop for Campaign {
    /// A test that failed before its cleanup leaves nothing behind either: the campaign's
    /// agents are killed and its queues and keys deleted, with the command-line tools (the
    /// async clients may be tied to a runtime that is shutting down).
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        let id = self.id.to_string();
        let _ = std::process::Command::new("pkill")
            .args(["-KILL", "-f", &format!("pilot-agent .*{id}")])
            .status();
        let listed = rabbitmqctl(&["list_queues", "name", "--quiet", "--no-table-headers"]);
        for q in listed
            .stdout
            .lines()
            .map(str::trim)
            .filter(|q| q.contains(&id))
        {
            let _ = rabbitmqctl(&["delete_queue", q]);
        }
        let cli = |args: &[&str]| {
            std::process::Command::new("redis-cli")
                .args(["-u", &self.redis_url])
                .args(args)
                .output()
                .ok()
        };
        if let Some(out) = cli(&["--scan", "--pattern", &format!("em:{{{id}}}:*")]) {
            for key in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = cli(&["DEL", key]);
            }
        }
        let _ = cli(&["SREM", emanager_shared::store::CAMPAIGNS_KEY, &id]);
    }
}
