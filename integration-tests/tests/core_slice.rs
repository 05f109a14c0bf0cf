//! The core distributed slice end to end: manager -> RabbitMQ queue per pilot -> pilot
//! agent processes -> Redis, on the real services.

use emanager_shared::broker::QueueKind;

use emanager_shared::protocol::{Envelope, Message};
use emanager_shared::{PilotState, TaskState};
use integration_tests::done_events_per_task;
use integration_tests::Campaign;
use std::collections::HashMap;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_short_tasks_over_two_pilots_all_done_with_their_records() {
    let toml = "name = \"thousand\"\n[[tasks]]\nname = \"t-{index}\"\ncount = 1000\ncommand = [\"/bin/true\"]\n";
    let c = Campaign::new(toml, 2, 2).await;
    let out = c.run(Duration::from_secs(180)).await;
    assert_eq!(out.counts.done, 1000, "{:?}", out.counts);
    let records = c.store.task_records(&c.id).await.unwrap();
    assert_eq!(records.len(), 1000);
    let mut per_pilot: HashMap<String, usize> = HashMap::new();
    for (_, r) in &records {
        assert_eq!(r.state(), TaskState::Done);
        // One binding, or two when an idle pilot took it from a busy one (work stealing).
        assert!(
            r.a == 1 || (r.a == 2 && r.r.contains("returned to the manager for an idle pilot")),
            "{r:?} {:?}",
            out.decisions
        );
        assert_eq!(r.x, Some(0));
        assert!(r.t0 > 0 && r.t1 >= r.t0 && r.ts > 0 && r.ts <= r.t0);
        *per_pilot.entry(r.p.clone()).or_default() += 1;
    }
    assert_eq!(per_pilot.len(), 2, "both pilots ran tasks: {per_pilot:?}");
    let events = c.store.all_events(&c.id).await.unwrap();
    assert!(done_events_per_task(&events).values().all(|&n| n == 1));
    let meta = c.store.campaign(&c.id).await.unwrap().unwrap();
    assert_eq!(meta.state, emanager_shared::CampaignState::Done);
    for v in c.store.pilots(&c.id).await.unwrap() {
        assert_eq!(v.record.state, PilotState::Done, "{:?}", v.record);
    }
    c.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_exits_non_zero_is_retried_then_failed_with_its_exit_code() {
    let toml = "[[tasks]]\nname = \"bad\"\ncommand = [\"/bin/sh\", \"-c\", \"exit 7\"]\nretries = 1\n\n[[tasks]]\nname = \"good\"\ncommand = [\"/bin/true\"]\n";
    let c = Campaign::new(toml, 1, 2).await;
    let out = c.run(Duration::from_secs(60)).await;
    assert_eq!(
        (out.counts.done, out.counts.failed),
        (1, 1),
        "{:?}",
        out.counts
    );
    let bad = emanager_shared::TaskId::for_name(&c.id, "bad");
    let r = c.store.task_record(&c.id, &bad).await.unwrap().unwrap();
    assert_eq!(r.state(), TaskState::Failed);
    assert_eq!(r.x, Some(7));
    assert_eq!(r.f, 2, "first run and one retry");
    assert_eq!(r.a, 2, "bound twice");
    assert_eq!(r.r, "exited with code 7");
    assert_eq!(
        out.failures,
        vec![("bad".to_string(), "exited with code 7".to_string())]
    );
    let meta = c.store.campaign(&c.id).await.unwrap().unwrap();
    assert_eq!(meta.state, emanager_shared::CampaignState::Failed);
    c.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbled_message_is_dead_lettered_and_the_agent_goes_on() {
    let toml = "[[tasks]]\nname = \"s-{index}\"\ncount = 20\ncommand = [\"/bin/sh\", \"-c\", \"sleep 0.2\"]\nest_duration_s = 0.2\n";
    let c = Campaign::new(toml, 1, 2).await;
    let run = tokio::spawn({
        let ctx = c.context();
        async move { emanager::driver::drive(ctx).await }
    });
    // Once the pilot is active, slip garbage and a message of an unknown version onto its queue.
    let pilot = loop {
        let active = c
            .store
            .pilots(&c.id)
            .await
            .unwrap()
            .into_iter()
            .find(|v| v.record.state == PilotState::Active);
        if let Some(v) = active {
            break v.record.id;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    c.broker
        .publish(
            &c.id,
            &pilot,
            QueueKind::Tasks,
            b"\xc1 this is not msgpack".to_vec(),
        )
        .await
        .unwrap();
    // The control queue too: the agent dead-letters it and keeps obeying later messages.
    c.broker
        .publish(
            &c.id,
            &pilot,
            QueueKind::Control,
            b"\xc1 garbage on the control queue".to_vec(),
        )
        .await
        .unwrap();
    let mut future = Envelope::new(c.id, Message::Drain);
    future.v = 99;
    let bytes = rmp_serde::to_vec_named(&future).unwrap();
    c.broker
        .publish(&c.id, &pilot, QueueKind::Tasks, bytes)
        .await
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("in time")
        .unwrap()
        .unwrap();
    assert_eq!(
        out.counts.done, 20,
        "the agent kept working: {:?}",
        out.counts
    );
    let dead = c.broker.drain_dead_letters(&c.id).await.unwrap();
    let reasons: Vec<&str> = dead.iter().map(|d| d.reason.as_str()).collect();
    assert_eq!(dead.len(), 3, "{reasons:?}");
    assert_eq!(
        reasons
            .iter()
            .filter(|r| r.starts_with("garbled message"))
            .count(),
        2,
        "one on each queue: {reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("protocol version 99 is not supported")),
        "{reasons:?}"
    );
    c.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_killed_mid_run_its_tasks_are_rebound_none_lost_none_done_twice() {
    let toml = "name = \"kill\"\n[[tasks]]\nname = \"k-{index}\"\ncount = 60\ncommand = [\"/bin/sh\", \"-c\", \"sleep 0.3\"]\nest_duration_s = 0.3\n";
    let c = Campaign::new(toml, 2, 2).await;
    let run = tokio::spawn({
        let ctx = c.context();
        async move { emanager::driver::drive(ctx).await }
    });
    // Wait until both pilots run tasks, then kill one agent with SIGKILL.
    let victim = loop {
        let pilots = c.store.pilots(&c.id).await.unwrap();
        let busy: Vec<_> = pilots
            .iter()
            .filter(|v| v.record.state == PilotState::Active && v.load.running > 0)
            .collect();
        if busy.len() == 2 {
            break busy[0].record.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim.agent_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("in time")
        .unwrap()
        .unwrap();
    assert_eq!(out.counts.done, 60, "no task lost: {:?}", out.counts);
    let events = c.store.all_events(&c.id).await.unwrap();
    let done = done_events_per_task(&events);
    assert_eq!(done.len(), 60);
    assert!(done.values().all(|&n| n == 1), "a task reached DONE twice");
    let pilots = c.store.pilots(&c.id).await.unwrap();
    let dead = pilots.iter().find(|v| v.record.id == victim.id).unwrap();
    assert_eq!(dead.record.state, PilotState::Failed);
    assert!(
        dead.record.reason.contains("heartbeat lapsed"),
        "{}",
        dead.record.reason
    );
    let rebound = c
        .store
        .task_records(&c.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|(_, r)| r.a > 1)
        .count();
    assert!(
        rebound > 0,
        "the killed agent's unfinished tasks were rebound"
    );
    c.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_redelivered_past_the_delivery_limit_is_dead_lettered() {
    use emanager_shared::broker::DELIVERY_LIMIT;
    use lapin::options::{BasicGetOptions, BasicNackOptions};
    let (broker, _) = integration_tests::services().await;
    let (c, p) = (
        emanager_shared::CampaignId::random(),
        emanager_shared::PilotId::random(),
    );
    broker.declare_pilot(&c, &p).await.unwrap();
    let bytes = Envelope::new(c, Message::Drain).encode().unwrap();
    broker
        .publish(&c, &p, QueueKind::Tasks, bytes.clone())
        .await
        .unwrap();
    // A consumer that crashes on the message every time: it comes back until the limit.
    let conn = lapin::Connection::connect(
        &integration_tests::amqp_url(),
        lapin::ConnectionProperties::default(),
    )
    .await
    .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let queue = emanager_shared::broker::queue_name(&c, &p, QueueKind::Tasks);
    let mut deliveries = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        match ch
            .basic_get(&queue, BasicGetOptions { no_ack: false })
            .await
            .unwrap()
        {
            Some(m) => {
                deliveries += 1;
                m.delivery
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    })
                    .await
                    .unwrap();
            }
            None if deliveries > 0 => {
                let dead = broker.drain_dead_letters(&c).await.unwrap();
                if !dead.is_empty() {
                    assert_eq!(dead.len(), 1);
                    assert_eq!(dead[0].payload, bytes, "the poison message itself");
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert!(
        deliveries > DELIVERY_LIMIT as usize && deliveries <= DELIVERY_LIMIT as usize + 1,
        "delivered {deliveries} times with a limit of {DELIVERY_LIMIT}"
    );
    assert!(
        broker.drain_dead_letters(&c).await.unwrap().is_empty(),
        "dead-lettered once"
    );
    let _ = broker.delete_pilot(&c, &p).await;
    let _ = broker.delete_campaign(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_campaign_dropped_without_its_cleanup_leaves_no_queue_or_key() {
    let c = Campaign::new("[[tasks]]\nname = \"t\"\ncommand = [\"/bin/true\"]\n", 0, 1).await;
    let (id, store) = (c.id, c.store.clone());
    let pilot = emanager_shared::PilotId::random();
    c.broker.declare_pilot(&id, &pilot).await.unwrap();
    assert!(!integration_tests::rabbitmq_queues_named(&id.to_string()).is_empty());
    assert!(store.campaign(&id).await.unwrap().is_some());
    // As when a test panics before `cleanup`.
    tokio::task::block_in_place(|| drop(c));
    assert!(
        integration_tests::rabbitmq_queues_named(&id.to_string()).is_empty(),
        "queues left behind"
    );
    assert!(
        store.campaign(&id).await.unwrap().is_none(),
        "keys left behind"
    );
}
