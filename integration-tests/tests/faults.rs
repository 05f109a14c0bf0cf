//! One test per failure rule of DESIGN.md section 11, against the real RabbitMQ and Redis
//! (the agent killed and the garbled message are in `core_slice.rs`).
//!
//! Tests that take a shared service down hold `service_outage_lock()` alone and the others
//! share it (`service_steady_lock()`), so an outage hits no test that did not ask for it.

use emanager_shared::store::{RedisStore, StateStore};
use emanager_shared::{PilotState, TaskId, TaskState};
use integration_tests::done_events_per_task;
use integration_tests::{local_pilots, services, workspace_bin, Campaign};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Every task DONE, each with exactly one DONE event.
async fn assert_each_task_done_once(c: &Campaign, total: usize) {
    let events = c.store.all_events(&c.id).await.unwrap();
    let done = done_events_per_task(&events);
    assert_eq!(done.len(), total, "every task reached DONE");
    let twice: Vec<_> = done.iter().filter(|(_, &n)| n != 1).collect();
    assert!(twice.is_empty(), "tasks DONE more than once: {twice:?}");
    for (_, r) in c.store.task_records(&c.id).await.unwrap() {
        assert_eq!(r.state(), TaskState::Done, "{r:?}");
    }
}

fn kill9(pid: u32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Running (a zombie waiting for init to reap it counts as dead).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(true),
        Err(_) => false,
    }
}

async fn wait_for<F, Fut>(what: &str, limit: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + limit;
    while !f().await {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn done_count(store: &dyn StateStore, c: &emanager_shared::CampaignId) -> usize {
    store
        .task_records(c)
        .await
        .unwrap_or_default()
        .iter()
        .filter(|(_, r)| r.state() == TaskState::Done)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_past_its_walltime_is_killed_with_its_process_tree_failed_and_retried() {
    let _steady = integration_tests::service_steady_lock();
    let pids = tempfile::tempdir().unwrap();
    let log = pids.path().join("pids");
    let toml = format!(
        "[[tasks]]\nname = \"slow\"\ncommand = [\"/bin/sh\", \"-c\", \"sleep 60 & echo $! >> {0}; echo $$ >> {0}; wait\"]\nwalltime_s = 1\nretries = 1\n\n[[tasks]]\nname = \"ok-{{index}}\"\ncount = 5\ncommand = [\"/bin/true\"]\n",
        log.display()
    );
    let c = Campaign::new(&toml, 1, 2).await;
    let out = c.run(Duration::from_secs(60)).await;
    assert_eq!(
        (out.counts.done, out.counts.failed),
        (5, 1),
        "{:?}",
        out.counts
    );
    let slow = TaskId::for_name(&c.id, "slow");
    let r = c.store.task_record(&c.id, &slow).await.unwrap().unwrap();
    assert_eq!(r.state(), TaskState::Failed);
    assert!(r.r.contains("exceeded its walltime"), "reason: {}", r.r);
    assert_eq!((r.f, r.a), (2, 2), "run once, retried once");
    let written = std::fs::read_to_string(&log).unwrap();
    let pids: Vec<i32> = written.lines().map(|l| l.trim().parse().unwrap()).collect();
    assert_eq!(
        pids.len(),
        4,
        "two runs, a shell and a sleep each: {pids:?}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    for p in pids {
        assert!(!alive(p), "process {p} of the killed task survived");
    }
    c.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_can_never_fit_fails_at_once_and_nothing_else_is_affected() {
    let _steady = integration_tests::service_steady_lock();
    let toml = "[[tasks]]\nname = \"huge\"\ncommand = [\"/bin/true\"]\ncores = 64\nretries = 3\n\n[[tasks]]\nname = \"small-{index}\"\ncount = 20\ncommand = [\"/bin/true\"]\n";
    let c = Campaign::new(toml, 2, 2).await;
    let out = c.run(Duration::from_secs(60)).await;
    assert_eq!(
        (out.counts.done, out.counts.failed),
        (20, 1),
        "{:?}",
        out.counts
    );
    let huge = TaskId::for_name(&c.id, "huge");
    let r = c.store.task_record(&c.id, &huge).await.unwrap().unwrap();
    assert_eq!(r.state(), TaskState::Failed);
    assert_eq!(r.a, 0, "never bound to a pilot");
    assert!(
        r.r.contains("can never fit") && r.r.contains("64 cores"),
        "{}",
        r.r
    );
    assert_eq!(out.failures.len(), 1);
    for (_, r) in c.store.task_records(&c.id).await.unwrap() {
        if r.state() == TaskState::Done {
            assert_eq!(r.a, 1);
        }
    }
    c.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pilot_at_its_walltime_drains_and_its_work_completes_elsewhere() {
    let _steady = integration_tests::service_steady_lock();
    // 80 half-second tasks on 4 cores take ~10 s; the short pilot drains at 6 s (8 s walltime,
    // 2 s margin).
    let toml = "[[tasks]]\nname = \"w-{index}\"\ncount = 80\ncommand = [\"/bin/sh\", \"-c\", \"sleep 0.5\"]\nest_duration_s = 0.5\n";
    let (broker, store) = services().await;
    let mut pilots = local_pilots(2, 2);
    pilots[0].walltime_s = Some(8);
    let c = Campaign::with(toml, pilots, broker, store, integration_tests::redis_url()).await;
    let out = c.run(Duration::from_secs(90)).await;
    assert_eq!(out.counts.done, 80, "{:?}", out.counts);
    assert_each_task_done_once(&c, 80).await;
    let views = c.store.pilots(&c.id).await.unwrap();
    let short = views
        .iter()
        .find(|v| v.record.walltime_end_ms > 0)
        .expect("the pilot with a walltime");
    assert!(
        short.record.reason.contains("walltime"),
        "the short pilot drained for its walltime: {:?}\nlog:\n{}",
        short.record,
        std::fs::read_to_string(&short.record.log_path).unwrap_or_default()
    );
    let long = views
        .iter()
        .find(|v| v.record.walltime_end_ms == 0)
        .unwrap();
    let per_pilot = |id| {
        out.pilots
            .iter()
            .find(|p| p.id == id)
            .map(|p| p.done)
            .unwrap_or(0)
    };
    assert!(
        per_pilot(short.record.id) > 0,
        "the short pilot worked before draining"
    );
    assert!(per_pilot(long.record.id) > per_pilot(short.record.id));
    c.cleanup().await;
}

/// `rabbitmqctl list_connections`: the server-side pid of the connection named `name`.
fn broker_connection_pid(name: &str) -> Option<String> {
    let out = integration_tests::rabbitmqctl(&[
        "list_connections",
        "name",
        "pid",
        "client_properties",
        "--quiet",
        "--no-table-headers",
    ]);
    out.stdout
        .lines()
        .find(|l| l.contains(&format!("\"{name}\"")))
        .and_then(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with("<rabbit@"))
                .map(String::from)
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_whose_broker_connection_is_closed_reconnects_and_nothing_is_lost() {
    let _steady = integration_tests::service_steady_lock();
    let toml = "[[tasks]]\nname = \"n-{index}\"\ncount = 80\ncommand = [\"/bin/sh\", \"-c\", \"sleep 0.2\"]\nest_duration_s = 0.2\n";
    let c = Campaign::new(toml, 2, 2).await;
    let run = tokio::spawn({
        let ctx = c.context();
        async move { emanager::driver::drive(ctx).await }
    });
    let end = Instant::now() + Duration::from_secs(60);
    let victim = loop {
        let pilots = c.store.pilots(&c.id).await.unwrap();
        if let Some(v) = pilots
            .into_iter()
            .find(|v| v.record.state == PilotState::Active && v.load.running > 0)
        {
            break v.record;
        }
        assert!(Instant::now() < end, "timed out waiting for a busy pilot");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let name = format!("emanager-{}", victim.agent_pid);
    let conn = broker_connection_pid(&name).expect("the agent's connection");
    let st =
        integration_tests::rabbitmqctl(&["close_connection", &conn, "test: network partition"]);
    assert!(st.success, "rabbitmqctl close_connection: {}", st.stderr);
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("in time")
        .unwrap()
        .unwrap();
    assert_eq!(out.counts.done, 80, "{:?}", out.counts);
    assert_each_task_done_once(&c, 80).await;
    let v = c
        .store
        .pilots(&c.id)
        .await
        .unwrap()
        .into_iter()
        .find(|v| v.record.id == victim.id)
        .unwrap();
    assert_eq!(
        v.record.state,
        PilotState::Done,
        "the agent survived: {:?}",
        v.record
    );
    c.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_restarted_mid_run_both_sides_reconnect_and_every_task_is_done_once() {
    let _serial = integration_tests::service_outage_lock();
    let toml = "[[tasks]]\nname = \"r-{index}\"\ncount = 200\ncommand = [\"/bin/sh\", \"-c\", \"sleep 0.05\"]\nest_duration_s = 0.05\n";
    let mut c = Campaign::new(toml, 2, 2).await;
    // No replacement pilot may hide an agent that died of the outage.
    c.opts.max_pilot_replacements = 0;
    let run = tokio::spawn({
        let ctx = c.context();
        async move { emanager::driver::drive(ctx).await }
    });
    wait_for("some tasks done", Duration::from_secs(60), || {
        let store = c.store.clone();
        let id = c.id;
        async move { done_count(store.as_ref(), &id).await >= 20 }
    })
    .await;
    // Messages waiting in a pilot queue nobody consumes must outlive the restart.
    let (idle_c, idle_p) = (
        emanager_shared::CampaignId::random(),
        emanager_shared::PilotId::random(),
    );
    c.broker.declare_pilot(&idle_c, &idle_p).await.unwrap();
    let kept =
        emanager_shared::protocol::Envelope::new(idle_c, emanager_shared::protocol::Message::Drain)
            .encode()
            .unwrap();
    for _ in 0..3 {
        c.broker
            .publish(
                &idle_c,
                &idle_p,
                emanager_shared::broker::QueueKind::Tasks,
                kept.clone(),
            )
            .await
            .unwrap();
    }
    tokio::task::spawn_blocking(integration_tests::restart_rabbitmq)
        .await
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("in time")
        .unwrap()
        .unwrap();
    assert_eq!(out.counts.done, 200, "{:?}", out.counts);
    assert_each_task_done_once(&c, 200).await;
    assert_every_pilot_survived(&c, 2).await;
    let mut consumer = c
        .broker
        .consume(
            &idle_c,
            &idle_p,
            emanager_shared::broker::QueueKind::Tasks,
            8,
        )
        .await
        .unwrap();
    for i in 0..3 {
        let d = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .unwrap_or_else(|_| panic!("message {i} of 3 survived the restart"))
            .expect("a delivery");
        assert_eq!(d.payload, kept);
        d.ack().await.unwrap();
    }
    drop(consumer);
    let _ = c.broker.delete_pilot(&idle_c, &idle_p).await;
    let _ = c.broker.delete_campaign(&idle_c).await;
    c.cleanup().await;
}

// ---- Redis restarted -------------------------------------------------------------------

/// A private `redis-server` on a free port, in its own directory.
struct PrivateRedis {
    /// Holds the AOF file across restarts; removed with the struct.
    _dir: tempfile::TempDir,
    port: u16,
    args: Vec<String>,
    child: Child,
}

impl PrivateRedis {
    fn start(persistent: bool) -> PrivateRedis {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut args: Vec<String> = vec![
            "--port".into(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--dir".into(),
            dir.path().display().to_string(),
            "--save".into(),
            "".into(),
        ];
        if persistent {
            args.extend(["--appendonly", "yes", "--appendfsync", "everysec"].map(String::from));
        } else {
            args.extend(["--appendonly", "no"].map(String::from));
        }
        let child = Self::spawn(&args);
        let r = PrivateRedis {
            _dir: dir,
            port,
            args,
            child,
        };
        r.wait_up();
        r
    }

    fn spawn(args: &[String]) -> Child {
        Command::new("redis-server")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server")
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn wait_up(&self) {
        let end = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < end, "private redis did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it (SIGTERM: with AOF on, Redis flushes the file first) and starts it again on
    /// the same port and directory.
    fn restart(&mut self) {
        self.stop();
        std::thread::sleep(Duration::from_millis(500));
        self.start_again();
    }

    fn stop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }

    fn start_again(&mut self) {
        self.child = Self::spawn(&self.args);
        self.wait_up();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        kill9(self.child.id());
        let _ = self.child.wait();
    }
}

async fn private_redis_campaign(toml: &str, redis: &PrivateRedis) -> Campaign {
    let (broker, _) = services().await;
    let store: Arc<dyn StateStore> = Arc::new(RedisStore::connect(&redis.url()).await.unwrap());
    Campaign::with(toml, local_pilots(2, 2), broker, store, redis.url()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_with_aof_restarted_mid_run_components_reconnect_and_state_is_intact() {
    let _steady = integration_tests::service_steady_lock();
    let mut redis = PrivateRedis::start(true);
    let toml = "[[tasks]]\nname = \"a-{index}\"\ncount = 100\ncommand = [\"/bin/sh\", \"-c\", \"sleep 0.1\"]\nest_duration_s = 0.1\n";
    let mut c = private_redis_campaign(toml, &redis).await;
    c.opts.max_pilot_replacements = 0;
    let run = tokio::spawn({
        let ctx = c.context();
        async move { emanager::driver::drive(ctx).await }
    });
    wait_for("some tasks done", Duration::from_secs(60), || {
        let store = c.store.clone();
        let id = c.id;
        async move { done_count(store.as_ref(), &id).await >= 10 }
    })
    .await;
    tokio::task::block_in_place(|| redis.restart());
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("in time")
        .unwrap()
        .expect("the manager rode out the Redis restart");
    assert_eq!(out.counts.done, 100, "{:?}", out.counts);
    assert_each_task_done_once(&c, 100).await;
    assert_every_pilot_survived(&c, 2).await;
    c.cleanup().await;
}

fn wait_healthz(port: u16, what: &str, ok: impl Fn(&str, &str) -> bool) -> String {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((status, body)) = integration_tests::http_get(port, "/healthz") {
            if ok(&status, &body) {
                return body;
            }
        }
        assert!(
            Instant::now() < end,
            "timed out waiting for /healthz: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_healthz_fails_while_its_redis_is_down_and_recovers_after() {
    let _steady = integration_tests::service_steady_lock();
    let mut redis = PrivateRedis::start(true);
    let c = private_redis_campaign(
        "[[tasks]]\nname = \"h\"\ncommand = [\"/bin/true\"]\n",
        &redis,
    )
    .await;
    let port = integration_tests::free_port();
    let mut agent = Command::new(workspace_bin("pilot-agent"))
        .args(["--campaign", &c.id.to_string(), "--cores", "1"])
        .args(["--heartbeat-ms", "200"])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .args(["--amqp-url", &integration_tests::amqp_url()])
        .args(["--redis-url", &redis.url()])
        .arg("--workdir")
        .arg(c.workdir.path())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pilot-agent");
    let agent_pid = agent.id();
    let healthy = |status: &str, body: &str| status.contains(" 200") && body == "ok\n";
    tokio::task::block_in_place(|| {
        wait_healthz(port, "ok at start", healthy);
        redis.stop();
        let body = wait_healthz(port, "503 naming the state store", |status, body| {
            status.contains(" 503") && body.contains("state store: heartbeat failed")
        });
        assert!(body.contains("(for "), "{body}");
        redis.start_again();
        wait_healthz(port, "ok again once Redis is back", healthy);
    });
    kill9(agent_pid);
    let _ = agent.wait();
    c.cleanup().await;
}

/// The campaign's `n` pilots all ended DONE (shut down by the manager): none died of the
/// outage and none was replaced.
async fn assert_every_pilot_survived(c: &Campaign, n: usize) {
    let pilots = c.store.pilots(&c.id).await.unwrap();
    let states: Vec<String> = pilots
        .iter()
        .map(|v| format!("{} {} ({})", v.record.id, v.record.state, v.record.reason))
        .collect();
    assert_eq!(pilots.len(), n, "a pilot was replaced: {states:?}");
    assert!(
        pilots.iter().all(|v| v.record.state == PilotState::Done),
        "an agent did not survive the outage: {states:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_without_persistence_restarted_mid_run_the_manager_stops_naming_the_lost_campaign() {
    let _steady = integration_tests::service_steady_lock();
    let mut redis = PrivateRedis::start(false);
    let toml = "[[tasks]]\nname = \"v-{index}\"\ncount = 100\ncommand = [\"/bin/sh\", \"-c\", \"sleep 0.1\"]\nest_duration_s = 0.1\n";
    let c = private_redis_campaign(toml, &redis).await;
    let run = tokio::spawn({
        let ctx = c.context();
        async move { emanager::driver::drive(ctx).await }
    });
    wait_for("some tasks done", Duration::from_secs(60), || {
        let store = c.store.clone();
        let id = c.id;
        async move { done_count(store.as_ref(), &id).await >= 10 }
    })
    .await;
    let agents: Vec<u32> = c
        .store
        .pilots(&c.id)
        .await
        .unwrap()
        .iter()
        .map(|v| v.record.agent_pid)
        .collect();
    tokio::task::block_in_place(|| redis.restart());
    let res = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the manager stopped in time")
        .unwrap();
    let err = res.expect_err("the manager must not carry on without its state");
    let msg = format!("{err:#}");
    assert!(
        msg.contains(&c.id.to_string()) && msg.contains("state"),
        "the error names the lost campaign: {msg}"
    );
    // Nothing was written back as if the campaign were new.
    assert!(c.store.campaign(&c.id).await.unwrap().is_none());
    assert!(c.store.task_records(&c.id).await.unwrap().is_empty());
    for pid in agents {
        kill9(pid);
    }
    let _ = c.broker.delete_campaign(&c.id).await;
}

// ---- Manager killed --------------------------------------------------------------------

fn emanager_cmd(dir: &std::path::Path) -> Command {
    let mut c = Command::new(workspace_bin("emanager"));
    c.env_remove("EMANAGER_CONFIG")
        .env("EMANAGER_WORKDIR", dir)
        .env("EMANAGER_AMQP_URL", integration_tests::amqp_url())
        .env("EMANAGER_REDIS_URL", integration_tests::redis_url())
        .env("EMANAGER_AGENT_BIN", workspace_bin("pilot-agent"))
        .current_dir(dir);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_killed_mid_run_resume_continues_without_restarting_running_tasks() {
    let _steady = integration_tests::service_steady_lock();
    let (_, store) = services().await;
    let dir = tempfile::tempdir().unwrap();
    let wf = dir.path().join("wf.toml");
    std::fs::write(
        &wf,
        "name = \"mkill\"\n[[tasks]]\nname = \"m-{index}\"\ncount = 40\ncommand = [\"/bin/sh\", \"-c\", \"sleep 1\"]\nest_duration_s = 1.0\n",
    )
    .unwrap();
    let mut manager = emanager_cmd(dir.path())
        .args(["run", "--pilots", "2", "--cores-per-pilot", "2"])
        .arg(&wf)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(manager.stderr.take().unwrap());
    let mut line = String::new();
    let id: emanager_shared::CampaignId = loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "manager ended early"
        );
        if let Some(rest) = line.strip_prefix("campaign ") {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    let end = Instant::now() + Duration::from_secs(60);
    let executing: Vec<TaskId> = loop {
        let recs = store.task_records(&id).await.unwrap();
        let done = recs
            .iter()
            .filter(|(_, r)| r.state() == TaskState::Done)
            .count();
        let ex: Vec<TaskId> = recs
            .into_iter()
            .filter(|(_, r)| r.state() == TaskState::Executing)
            .map(|(t, _)| t)
            .collect();
        if done >= 4 && !ex.is_empty() {
            break ex;
        }
        assert!(
            Instant::now() < end,
            "timed out waiting for tasks executing"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    kill9(manager.id());
    manager.wait().unwrap();

    // The dead manager's lease still stands: a resume now is refused.
    let early = emanager_cmd(dir.path())
        .args(["resume", &id.to_string()])
        .output()
        .unwrap();
    assert!(!early.status.success());
    let text = String::from_utf8_lossy(&early.stderr);
    assert!(text.contains("another manager holds the lease"), "{text}");

    // Once it lapses, two resumes race: one runs the campaign, the other is refused.
    tokio::time::sleep(Duration::from_secs(16)).await;
    let spawn_resume = || {
        emanager_cmd(dir.path())
            .args(["resume", "--quiet", &id.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn_resume(), spawn_resume());
    let (a, b) = tokio::task::spawn_blocking(move || {
        (a.wait_with_output().unwrap(), b.wait_with_output().unwrap())
    })
    .await
    .unwrap();
    let (won, lost) = if a.status.success() { (a, b) } else { (b, a) };
    assert!(
        won.status.success(),
        "a resume finished the campaign: {}",
        String::from_utf8_lossy(&won.stderr)
    );
    let text = String::from_utf8_lossy(&lost.stderr);
    assert!(!lost.status.success());
    assert!(text.contains("another manager holds the lease"), "{text}");

    let records: HashMap<TaskId, _> = store.task_records(&id).await.unwrap().into_iter().collect();
    for t in &executing {
        assert_eq!(
            records[t].a, 1,
            "a task running at the kill was not restarted"
        );
    }
    let events = store.all_events(&id).await.unwrap();
    let done = done_events_per_task(&events);
    assert_eq!(done.len(), 40);
    assert!(done.values().all(|&n| n == 1), "a task reached DONE twice");
    let meta = store.campaign(&id).await.unwrap().unwrap();
    assert_eq!(meta.state, emanager_shared::CampaignState::Done);
    let (broker, _) = services().await;
    let _ = broker.delete_campaign(&id).await;
    let _ = store.delete_campaign(&id).await;
}
