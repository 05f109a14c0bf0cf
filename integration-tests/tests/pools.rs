//! Pools on the real RabbitMQ and Redis: long-lived `pilot-agent --pool NAME` processes
//! serve every campaign attached to their pool. Two campaigns get the pool's cores in
//! proportion to their weights; an agent outlives a campaign and serves the next; SIGTERM
//! drains an agent without losing or repeating a task.

use emanager::campaign::PoolAttachment;
use emanager_shared::model::EventKind;
use emanager_shared::pool::PoolName;
use emanager_shared::store::StateStore;
use emanager_shared::{CampaignId, CampaignState, PilotState, TaskId, TaskRecord, TaskState};
use integration_tests::Campaign;
use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const HEARTBEAT_MS: u64 = 500;

/// The tests share the two cores of the machine with other work: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A pool of this test alone.
fn fresh_pool() -> PoolName {
    format!("it-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
        .parse()
        .unwrap()
}

fn sleeps(name: &str, tasks: usize, secs: f64) -> String {
    format!(
        "name = \"{name}\"\n[[tasks]]\nname = \"t-{{index}}\"\ncount = {tasks}\ncommand = [\"sleep\", \"{secs}\"]\nest_duration_s = {secs}\n"
    )
}

/// A `pilot-agent --pool` process, SIGKILLed if a test fails before it stops it.
struct PoolAgent {
    child: Option<Child>,
}

impl PoolAgent {
    fn start(pool: &PoolName, cores: u32, workdir: &Path, log: &Path) -> PoolAgent {
        let child = Command::new(integration_tests::workspace_bin("pilot-agent"))
            .args(["--pool", pool.as_str(), "--cores", &cores.to_string()])
            .args(["--heartbeat-ms", &HEARTBEAT_MS.to_string()])
            .arg("--workdir")
            .arg(workdir)
            .arg("--log-file")
            .arg(log)
            .args(["--amqp-url", &integration_tests::amqp_url()])
            .args(["--redis-url", &integration_tests::redis_url()])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pilot-agent --pool");
        PoolAgent { child: Some(child) }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// SIGTERM, then the exit status (within `limit`).
    async fn terminate(&mut self, limit: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("SIGTERM the pool agent");
        tokio::time::timeout(
            limit,
            tokio::task::spawn_blocking(move || child.wait().expect("wait")),
        )
        .await
        .expect("the pool agent stops after SIGTERM")
        .unwrap()
    }
}

impl Drop for PoolAgent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Polls `f` every 50 ms until it returns `Some`, or panics after `limit`.
async fn wait_for<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A campaign of `toml` run by an in-process manager on pool `pool` with `weight`, with no
/// pilot of its own.
async fn pool_campaign(toml: &str, pool: &PoolName, weight: f64) -> Campaign {
    let mut c = Campaign::new(toml, 0, 1).await;
    c.opts.pool = Some(PoolAttachment {
        name: pool.clone(),
        weight,
    });
    c
}

/// Removes the pool's registry keys.
async fn forget_pool(pool: &PoolName) {
    let client = redis::Client::open(integration_tests::redis_url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::pipe()
        .cmd("DEL")
        .arg(format!("em:pool:{{{pool}}}:campaigns"))
        .arg(format!("em:pool:{{{pool}}}:agents"))
        .ignore()
        .cmd("SREM")
        .arg("em:pools")
        .arg(pool.as_str())
        .ignore()
        .query_async(&mut con)
        .await
        .unwrap();
}

/// Core-seconds (one core a task) the tasks of `recs` ran within `[from, to]` (ms), and
/// how many started in it.
fn busy_in(recs: &[(TaskId, TaskRecord)], from: u64, to: u64) -> (f64, usize) {
    let mut cs = 0.0;
    let mut starts = 0;
    for (_, r) in recs.iter().filter(|(_, r)| r.t0 > 0) {
        let end = if r.t1 > 0 { r.t1 } else { to };
        cs += end.min(to).saturating_sub(r.t0.max(from)) as f64 / 1000.0;
        if (from..=to).contains(&r.t0) {
            starts += 1;
        }
    }
    (cs, starts)
}

/// DONE events per task in the campaign's events stream.
async fn done_events(store: &dyn StateStore, c: &CampaignId) -> HashMap<TaskId, usize> {
    let mut out = HashMap::new();
    for e in store.all_events(c).await.unwrap() {
        if let EventKind::Task {
            task,
            state: TaskState::Done,
            ..
        } = e.kind
        {
            *out.entry(task).or_default() += 1;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_campaigns_sharing_a_pool_get_cores_in_proportion_to_their_weights() {
    shared_by_weight(&[3]).await;
}

/// Each agent of a pool shares its own cores by the weights, so the whole pool does too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_of_two_agents_shares_its_cores_by_weight_as_one() {
    shared_by_weight(&[2, 1]).await;
}

/// Two campaigns of weights 2 and 1 over a pool of agents with these cores get busy
/// core-seconds 2:1 while both have backlog.
async fn shared_by_weight(agent_cores: &[u32]) {
    let _one = SERIAL.lock().await;
    let pool = fresh_pool();
    let dir = tempfile::tempdir().unwrap();
    let mut agents: Vec<PoolAgent> = agent_cores
        .iter()
        .enumerate()
        .map(|(i, &cores)| {
            PoolAgent::start(
                &pool,
                cores,
                dir.path(),
                &dir.path().join(format!("agent-{i}.log")),
            )
        })
        .collect();

    // Both have a backlog of identical tasks: 2 x 0.5 s a second for the heavy one, 1 for
    // the light one, so the light one still has work when the heavy one runs out.
    let heavy = pool_campaign(&sleeps("heavy", 40, 0.5), &pool, 2.0).await;
    let light = pool_campaign(&sleeps("light", 30, 0.5), &pool, 1.0).await;
    let started = Instant::now();
    let (h, l) = tokio::join!(
        heavy.run(Duration::from_secs(60)),
        light.run(Duration::from_secs(60))
    );
    assert_eq!(h.counts.done, 40, "{:?}", h.counts);
    assert_eq!(l.counts.done, 30, "{:?}", l.counts);
    for agent in &mut agents {
        assert!(agent.is_running(), "the pool agents outlive both campaigns");
    }

    // The window where both had work waiting: from when both had started to when the
    // first of them started its last task.
    let rh = heavy.store.task_records(&heavy.id).await.unwrap();
    let rl = light.store.task_records(&light.id).await.unwrap();
    let first = |r: &[(TaskId, TaskRecord)]| r.iter().map(|(_, r)| r.t0).min().unwrap();
    let last = |r: &[(TaskId, TaskRecord)]| r.iter().map(|(_, r)| r.t0).max().unwrap();
    let from = first(&rh).max(first(&rl));
    let to = last(&rh).min(last(&rl));
    assert!(to > from + 5_000, "both had backlog for {} ms", to - from);
    let ((ch, sh), (cl, sl)) = (busy_in(&rh, from, to), busy_in(&rl, from, to));
    let ratio = ch / cl;
    eprintln!(
        "agents {agent_cores:?}, weights 2:1 over {:.1} s of shared backlog: {ch:.1} vs {cl:.1} busy core-seconds (ratio {ratio:.2}), {sh} vs {sl} starts; whole run {:.1} s",
        (to - from) as f64 / 1000.0,
        started.elapsed().as_secs_f64()
    );
    for (name, recs) in [("heavy", &rh), ("light", &rl)] {
        let mut per: std::collections::BTreeMap<String, f64> = Default::default();
        for (_, r) in recs.iter().filter(|(_, r)| r.t0 > 0) {
            let end = if r.t1 > 0 { r.t1 } else { to };
            *per.entry(r.pilot().map(|p| p.short()).unwrap_or_default())
                .or_default() += end.min(to).saturating_sub(r.t0.max(from)) as f64 / 1000.0;
        }
        eprintln!("{name}: busy core-seconds per pilot {per:?}");
    }
    assert!(
        (ratio - 2.0).abs() <= 0.35,
        "busy core-seconds {ch:.1}:{cl:.1} = {ratio:.2}, want 2 +- 0.35"
    );
    // Each pool agent registered as a pilot of each campaign, naming its pool.
    let mut pids: Vec<u32> = agents.iter().map(PoolAgent::pid).collect();
    pids.sort();
    for c in [&heavy, &light] {
        let pilots = c.store.pilots(&c.id).await.unwrap();
        assert_eq!(pilots.len(), agents.len(), "{pilots:?}");
        let mut seen: Vec<u32> = pilots.iter().map(|v| v.record.agent_pid).collect();
        seen.sort();
        assert_eq!(seen, pids);
        for v in &pilots {
            assert_eq!(
                (v.record.pool.as_str(), v.record.state),
                (pool.as_str(), PilotState::Done)
            );
        }
    }
    for agent in &mut agents {
        assert!(agent.terminate(Duration::from_secs(10)).await.success());
    }
    heavy.cleanup().await;
    light.cleanup().await;
    forget_pool(&pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_agent_survives_the_end_of_a_campaign_and_serves_the_next() {
    let _one = SERIAL.lock().await;
    let pool = fresh_pool();
    let dir = tempfile::tempdir().unwrap();
    let mut agent = PoolAgent::start(&pool, 2, dir.path(), &dir.path().join("agent.log"));
    let (broker, store) = integration_tests::services().await;

    // The first campaign goes through the command line: `submit --pool` records the pool in
    // the campaign's options and the background manager (`resume`) attaches it from there.
    let wf = dir.path().join("first.toml");
    std::fs::write(&wf, sleeps("first", 6, 0.2)).unwrap();
    let out = Command::new(integration_tests::workspace_bin("emanager"))
        .env_remove("EMANAGER_CONFIG")
        .args(["submit", "--json", "--pool", pool.as_str(), "--weight", "3"])
        .arg(&wf)
        .arg("--workdir")
        .arg(dir.path())
        .args(["--amqp-url", &integration_tests::amqp_url()])
        .args(["--redis-url", &integration_tests::redis_url()])
        .current_dir(dir.path())
        .output()
        .expect("emanager submit");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let first: CampaignId = v["campaign"].as_str().unwrap().parse().unwrap();
    let meta = wait_for(
        Duration::from_secs(30),
        "the first campaign to end",
        || async {
            let m = store.campaign(&first).await.ok()??;
            m.state.is_final().then_some(m)
        },
    )
    .await;
    assert_eq!(meta.state, CampaignState::Done);
    assert!(
        meta.options_json.contains("\"weight\":3.0"),
        "{}",
        meta.options_json
    );
    let first_pilot = store.pilots(&first).await.unwrap().remove(0).record;
    assert_eq!(first_pilot.pool, pool.as_str());
    assert_eq!(first_pilot.agent_pid, agent.pid());
    // It detached from the finished campaign, and is still in the pool, idle.
    let idle = wait_for(Duration::from_secs(10), "the agent to detach", || async {
        let agents = store.pool_agents(&pool).await.ok()?;
        let a = agents.into_iter().next()?;
        a.lanes.is_empty().then_some(a)
    })
    .await;
    assert_eq!((idle.state.as_str(), idle.cores), ("ACTIVE", 2));
    assert!(agent.is_running());
    assert!(store.pool_campaigns(&pool).await.unwrap().is_empty());

    // The next campaign is served by the same agent, under a new pilot.
    let second = pool_campaign(&sleeps("second", 6, 0.2), &pool, 1.0).await;
    let outcome = second.run(Duration::from_secs(30)).await;
    assert_eq!(outcome.counts.done, 6, "{:?}", outcome.counts);
    let second_pilot = second
        .store
        .pilots(&second.id)
        .await
        .unwrap()
        .remove(0)
        .record;
    assert_eq!(second_pilot.agent_pid, agent.pid());
    assert_ne!(second_pilot.id, first_pilot.id);

    // `emanager agents --pool` lists it.
    let out = Command::new(integration_tests::workspace_bin("emanager"))
        .env_remove("EMANAGER_CONFIG")
        .args(["agents", "--json", "--pool", pool.as_str()])
        .args(["--redis-url", &integration_tests::redis_url()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v[0]["pid"], agent.pid());
    assert_eq!(v[0]["state"], "ACTIVE");

    // SIGTERM: it leaves the registry.
    assert!(agent.terminate(Duration::from_secs(10)).await.success());
    assert!(store.pool_agents(&pool).await.unwrap().is_empty());
    second.cleanup().await;
    let _ = broker.delete_campaign(&first).await;
    let _ = store.delete_campaign(&first).await;
    forget_pool(&pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_a_pool_agent_and_every_task_is_done_exactly_once() {
    let _one = SERIAL.lock().await;
    let pool = fresh_pool();
    let dir = tempfile::tempdir().unwrap();
    let mut first = PoolAgent::start(&pool, 2, dir.path(), &dir.path().join("first.log"));
    let a = pool_campaign(&sleeps("a", 16, 0.4), &pool, 1.0).await;
    let b = pool_campaign(&sleeps("b", 16, 0.4), &pool, 1.0).await;
    let (ra, rb) = (
        tokio::spawn(emanager::driver::drive(a.context())),
        tokio::spawn(emanager::driver::drive(b.context())),
    );

    // Once the agent runs tasks of both campaigns, SIGTERM it.
    wait_for(
        Duration::from_secs(20),
        "tasks of both campaigns executing",
        || async {
            let mut both = true;
            for c in [&a, &b] {
                let recs = c.store.task_records(&c.id).await.ok()?;
                both &= recs.iter().any(|(_, r)| r.state() == TaskState::Executing);
            }
            both.then_some(())
        },
    )
    .await;
    let status = first.terminate(Duration::from_secs(15)).await;
    assert!(
        status.success(),
        "a drained pool agent exits cleanly: {status}"
    );
    for c in [&a, &b] {
        let rec = c.store.pilots(&c.id).await.unwrap().remove(0).record;
        assert_eq!(rec.state, PilotState::Done, "{}", rec.reason);
        assert!(rec.reason.contains("signal"), "{}", rec.reason);
    }
    assert!(a.store.pool_agents(&pool).await.unwrap().is_empty());

    // The campaigns wait without a pilot, and a new agent of the pool finishes them.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!ra.is_finished() && !rb.is_finished());
    let _second = PoolAgent::start(&pool, 2, dir.path(), &dir.path().join("second.log"));
    for (c, run) in [(&a, ra), (&b, rb)] {
        let outcome = tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .expect("campaign finished in time")
            .unwrap()
            .expect("campaign ran");
        assert_eq!(outcome.counts.done, 16, "{:?}", outcome.counts);
        let done = done_events(c.store.as_ref(), &c.id).await;
        assert_eq!(done.len(), 16, "every task has a DONE event");
        assert!(
            done.values().all(|n| *n == 1),
            "no task is DONE twice: {done:?}"
        );
        let pilots = c.store.pilots(&c.id).await.unwrap();
        assert_eq!(pilots.len(), 2, "one pilot per agent that served it");
    }
    a.cleanup().await;
    b.cleanup().await;
    forget_pool(&pool).await;
}
