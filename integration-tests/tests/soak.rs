//! Soak: many short tasks over four pilots while agents are SIGKILLed, RabbitMQ is restarted
//! and (in the long form) the manager is killed and resumed; then Redis must show every task
//! DONE exactly once, consistent attempts, no pilot left ACTIVE and no queue left behind.
//!
//! The short form (1,500 tasks, every fault once) runs in the normal suite; the long form
//! (10,000 tasks, three agent kills) is ignored:
//! `cargo test -p integration-tests --test soak -- --ignored`. Both hold
//! `service_outage_lock()` because they restart the shared RabbitMQ.

use emanager_shared::model::EventKind;
use emanager_shared::{PilotState, TaskId, TaskState};
use integration_tests::{rabbitmq_queues_named, restart_rabbitmq, Campaign};
use std::collections::HashMap;
use std::time::{Duration, Instant};

struct Chaos {
    tasks: usize,
    agent_kills: usize,
    kill_manager: bool,
    limit: Duration,
}

/// A cheap pseudo-random number (no need for a seeded generator here).
fn random_index(n: usize) -> usize {
    (uuid::Uuid::new_v4().as_u128() % n as u128) as usize
}

async fn done_so_far(c: &Campaign) -> usize {
    c.store
        .task_records(&c.id)
        .await
        .unwrap_or_default()
        .iter()
        .filter(|(_, r)| r.state() == TaskState::Done)
        .count()
}

async fn wait_done(c: &Campaign, at_least: usize, end: Instant) {
    while done_so_far(c).await < at_least {
        assert!(
            Instant::now() < end,
            "soak stalled below {at_least} tasks DONE"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts a manager on the campaign; after a killed manager, retries until its lease lapses.
fn spawn_manager(
    c: &Campaign,
) -> tokio::task::JoinHandle<anyhow::Result<emanager::driver::Outcome>> {
    let ctx = c.context();
    tokio::spawn(async move { emanager::driver::drive(ctx).await })
}

async fn soak(chaos: Chaos) {
    let _serial = integration_tests::service_outage_lock();
    let started = Instant::now();
    let end = started + chaos.limit;
    let toml = format!(
        "name = \"soak\"\n[[tasks]]\nname = \"s-{{index}}\"\ncount = {}\ncommand = [\"/bin/true\"]\nest_duration_s = 0.01\n",
        chaos.tasks
    );
    let mut c = Campaign::new(&toml, 4, 2).await;
    c.opts.max_pilot_replacements = chaos.agent_kills as u32;
    let mut manager = spawn_manager(&c);
    let n = chaos.tasks;

    // Agent kills spread over the first third of the run.
    let mut killed = std::collections::HashSet::new();
    for k in 0..chaos.agent_kills {
        wait_done(&c, n * (k + 1) / (3 * chaos.agent_kills + 3), end).await;
        let busy: Vec<_> = c
            .store
            .pilots(&c.id)
            .await
            .unwrap()
            .into_iter()
            .filter(|v| {
                v.record.state == PilotState::Active && v.alive && !killed.contains(&v.record.id)
            })
            .collect();
        if busy.is_empty() {
            continue;
        }
        let victim = &busy[random_index(busy.len())].record;
        killed.insert(victim.id);
        eprintln!(
            "soak: SIGKILL agent of pilot {} (pid {})",
            victim.id, victim.agent_pid
        );
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(victim.agent_pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }

    // The manager is killed before the broker restart: a restart takes ten seconds or more,
    // long enough on a fast machine for the agents to finish every task already bound, and
    // a manager that has ended cannot be killed.
    if chaos.kill_manager {
        wait_done(&c, n * 4 / 10, end).await;
        // Dropping the drive mid-flight is what SIGKILL does to it: no cleanup, the lease
        // stays, agents keep running.
        eprintln!("soak: killing the manager at {:?}", started.elapsed());
        assert!(
            !manager.is_finished(),
            "the manager ended before it was killed"
        );
        manager.abort();
        let _ = manager.await;
        loop {
            manager = spawn_manager(&c);
            tokio::time::sleep(Duration::from_millis(500)).await;
            if !manager.is_finished() {
                break;
            }
            match manager.await.unwrap() {
                Err(e) if e.to_string().contains("another manager holds the lease") => {
                    assert!(
                        Instant::now() < end,
                        "the dead manager's lease never lapsed"
                    );
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                // The agents go on while no manager runs: the resumed one may find every
                // task DONE already, and only close the campaign.
                Ok(out) if out.counts.done as usize == n => {
                    manager = tokio::spawn(std::future::ready(Ok(out)));
                    break;
                }
                other => panic!("resume ended at once with work left: {other:?}"),
            }
        }
        eprintln!("soak: manager resumed at {:?}", started.elapsed());
    }

    wait_done(&c, n * 6 / 10, end).await;
    eprintln!("soak: restarting RabbitMQ at {:?}", started.elapsed());
    tokio::task::spawn_blocking(restart_rabbitmq).await.unwrap();

    let left = end.saturating_duration_since(Instant::now());
    let out = tokio::time::timeout(left, manager)
        .await
        .expect("the soak finished in time")
        .unwrap()
        .expect("the manager ran to the end");
    eprintln!(
        "soak: {n} tasks in {:?}: {:?}",
        started.elapsed(),
        out.counts
    );
    assert_eq!(out.counts.done as usize, n, "{:?}", out.counts);

    // Every task DONE exactly once, at the attempt its record holds.
    let records: HashMap<TaskId, _> = c
        .store
        .task_records(&c.id)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(records.len(), n);
    let mut done: HashMap<TaskId, Vec<u32>> = HashMap::new();
    for e in c.store.all_events(&c.id).await.unwrap() {
        if let EventKind::Task {
            task,
            state: TaskState::Done,
            attempt,
            ..
        } = e.kind
        {
            done.entry(task).or_default().push(attempt);
        }
    }
    assert_eq!(done.len(), n, "every task has a DONE event");
    for (t, r) in &records {
        assert_eq!(r.state(), TaskState::Done, "{r:?}");
        let attempts = &done[t];
        assert_eq!(attempts.len(), 1, "task DONE {} times", attempts.len());
        assert!(
            r.a >= 1 && attempts[0] == r.a,
            "DONE at attempt {attempts:?}, record {r:?}"
        );
    }
    let rebound = records.values().filter(|r| r.a > 1).count();
    eprintln!("soak: {rebound} tasks were bound more than once");

    for v in c.store.pilots(&c.id).await.unwrap() {
        assert!(
            v.record.state.is_final(),
            "pilot left {:?}: {:?}",
            v.record.state,
            v.record
        );
    }
    let campaign = c.id.to_string();
    let left_behind: Vec<String> = rabbitmq_queues_named(&campaign)
        .into_iter()
        .filter(|q| q.contains(".pilot.") || q.contains(".ctl."))
        .collect();
    let pilots: Vec<String> = c
        .store
        .pilots(&c.id)
        .await
        .unwrap()
        .iter()
        .map(|v| format!("{} {} {}", v.record.id, v.record.state, v.record.reason))
        .collect();
    assert!(
        left_behind.is_empty(),
        "queues left behind: {left_behind:?}; pilots: {pilots:?}"
    );
    c.cleanup().await;
    assert!(rabbitmq_queues_named(&campaign).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_short_one_agent_kill_one_broker_restart_one_manager_kill_every_task_done_once() {
    soak(Chaos {
        tasks: 1500,
        agent_kills: 1,
        kill_manager: true,
        limit: Duration::from_secs(120),
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long soak (10,000 tasks, a few minutes): run with --ignored"]
async fn soak_long_agent_kills_broker_restart_manager_kill_every_task_done_once() {
    soak(Chaos {
        tasks: 10_000,
        agent_kills: 3,
        kill_manager: true,
        limit: Duration::from_secs(900),
    })
    .await;
}
