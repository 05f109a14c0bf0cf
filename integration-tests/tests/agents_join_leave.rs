//! Agents scale independently of the manager: an agent started by hand for a running campaign
//! gets work within one heartbeat, and SIGTERM drains an agent without losing a task.

use emanager_shared::{PilotId, PilotState, TaskState};
use integration_tests::Campaign;
use std::time::{Duration, Instant};

const HEARTBEAT_MS: u64 = 1000;

fn workflow(tasks: usize) -> String {
    format!(
        "name = \"join-leave\"\n[[tasks]]\nname = \"t-{{index}}\"\ncount = {tasks}\ncommand = [\"sleep\", \"0.4\"]\nest_duration_s = 0.4\n"
    )
}

/// Polls `f` every 25 ms until it returns `Some`, or panics after `limit`.
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
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_started_by_hand_joins_and_sigterm_drains_it() {
    let campaign = Campaign::new(&workflow(60), 1, 2).await;
    let c = campaign.id;
    let driver = tokio::spawn(emanager::driver::drive(campaign.context()));

    // The manager's own pilot registers and runs tasks.
    let launched: PilotId = wait_for(Duration::from_secs(30), "the launched pilot", || async {
        campaign
            .store
            .pilots(&c)
            .await
            .ok()?
            .into_iter()
            .find(|v| v.record.state == PilotState::Active)
            .map(|v| v.record.id)
    })
    .await;

    // An agent started by hand, without --pilot: it picks its own id and registers.
    let mut agent = std::process::Command::new(integration_tests::workspace_bin("pilot-agent"))
        .args(["--campaign", &c.to_string(), "--cores", "2"])
        .args(["--heartbeat-ms", &HEARTBEAT_MS.to_string()])
        .arg("--workdir")
        .arg(campaign.workdir.path())
        .args(["--amqp-url", &integration_tests::amqp_url()])
        .args(["--redis-url", &integration_tests::redis_url()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start pilot-agent");
    let joined: PilotId = wait_for(
        Duration::from_secs(30),
        "the hand-started agent",
        || async {
            campaign
                .store
                .pilots(&c)
                .await
                .ok()?
                .into_iter()
                .find(|v| v.record.id != launched && v.record.state == PilotState::Active)
                .map(|v| v.record.id)
        },
    )
    .await;
    let registered = Instant::now();

    // The manager binds to it within one heartbeat.
    wait_for(
        Duration::from_millis(HEARTBEAT_MS + 500),
        "the first task bound to the joined agent (one heartbeat + polling slack)",
        || async {
            let recs = campaign.store.task_records(&c).await.ok()?;
            recs.iter()
                .any(|(_, r)| r.pilot() == Some(joined))
                .then_some(())
        },
    )
    .await;
    let bind_after = registered.elapsed();

    // Once it runs tasks, SIGTERM drains it: it finishes or returns its work and deregisters.
    wait_for(
        Duration::from_secs(20),
        "a task executing on the joined agent",
        || async {
            let recs = campaign.store.task_records(&c).await.ok()?;
            recs.iter()
                .any(|(_, r)| r.pilot() == Some(joined) && r.state() == TaskState::Executing)
                .then_some(())
        },
    )
    .await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM the agent");
    let status = tokio::task::spawn_blocking(move || agent.wait())
        .await
        .unwrap()
        .expect("agent exit status");
    assert!(status.success(), "a drained agent exits cleanly: {status}");
    let rec = campaign
        .store
        .pilots(&c)
        .await
        .unwrap()
        .into_iter()
        .find(|v| v.record.id == joined)
        .expect("the joined pilot's record")
        .record;
    assert_eq!(rec.state, PilotState::Done, "{}", rec.reason);
    assert!(rec.reason.contains("signal"), "{}", rec.reason);

    // Nothing is lost: the launched pilot finishes the campaign.
    let outcome = tokio::time::timeout(Duration::from_secs(120), driver)
        .await
        .expect("campaign finished in time")
        .unwrap()
        .expect("campaign ran");
    assert_eq!(outcome.counts.done, 60, "{:?}", outcome.counts);
    let records = campaign.store.task_records(&c).await.unwrap();
    assert!(records.iter().all(|(_, r)| r.state() == TaskState::Done));
    let on_joined = records
        .iter()
        .filter(|(_, r)| r.pilot() == Some(joined))
        .count();
    assert!(on_joined > 0, "the joined agent finished some tasks");
    eprintln!("joined agent bound after {bind_after:?}; it finished {on_joined} tasks");
    campaign.cleanup().await;
}
