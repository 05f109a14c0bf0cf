//! An agent near the end of its allocation, on the in-memory services with the test acting
//! as the manager: a task that waited in the agent's queue and can no longer end before the
//! drain is handed back to the manager (READY, no pilot) instead of starting, both when
//! cores free up for it and, before that, at the agent's next tick.

use emanager_shared::broker::{Broker, MemoryBroker, QueueKind};
use emanager_shared::model::{CampaignMeta, EventKind};
use emanager_shared::protocol::{Envelope, Message};
use emanager_shared::store::{MemoryStore, StateStore};
use emanager_shared::{
    now_ms, BoundTask, CampaignId, CampaignState, PilotId, PilotState, TaskId, TaskRecord,
    TaskSpec, TaskState, Transition,
};
use pilot_agent::scheduler::NodeSpec;
use pilot_agent::AgentConfig;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The allocation ends this long after the agent's configuration is made...
const WALLTIME: Duration = Duration::from_secs(12);
/// ...and the agent drains this long before: 11 s after it starts.
const DRAIN_MARGIN: Duration = Duration::from_secs(1);

struct Setup {
    broker: Arc<MemoryBroker>,
    store: Arc<MemoryStore>,
    c: CampaignId,
    pilot: PilotId,
    agent: tokio::task::JoinHandle<anyhow::Result<pilot_agent::AgentSummary>>,
    stop: tokio::sync::oneshot::Sender<()>,
    _workdir: tempfile::TempDir,
}

/// A campaign and a one-core agent whose allocation ends in [`WALLTIME`], registered.
async fn one_core_agent_near_its_walltime(heartbeat: Duration) -> Setup {
    let broker = Arc::new(MemoryBroker::new());
    let store = Arc::new(MemoryStore::new());
    let c = CampaignId::random();
    store
        .create_campaign(&CampaignMeta {
            id: c,
            name: "walltime-test".into(),
            state: CampaignState::Running,
            created_ms: now_ms(),
            finished_ms: 0,
            task_count: 2,
            spec_digest: String::new(),
            workflow_format: "toml".into(),
            workflow_source: String::new(),
            options_json: "{}".into(),
        })
        .await
        .unwrap();
    let workdir = tempfile::tempdir().unwrap();
    let pilot = PilotId::random();
    let nodes = vec![NodeSpec {
        name: "localhost".into(),
        cores: 1,
        gpus: 0,
        mem_mb: 1024,
    }];
    let mut cfg = AgentConfig::new(c, pilot, nodes, workdir.path().to_path_buf());
    cfg.heartbeat = heartbeat;
    cfg.walltime_end_ms = Some(now_ms() + WALLTIME.as_millis() as u64);
    cfg.drain_margin = DRAIN_MARGIN;
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(pilot_agent::run(
        cfg,
        broker.clone(),
        store.clone(),
        async move {
            let _ = stop_rx.await;
        },
    ));
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let pilots = store.pilots(&c).await.unwrap();
        if let Some(v) = pilots.iter().find(|v| v.record.state == PilotState::Active) {
            assert_eq!(
                v.record.drain_margin_ms,
                DRAIN_MARGIN.as_millis() as u64,
                "the pilot record tells the manager when the agent drains"
            );
            break;
        }
        assert!(Instant::now() < end, "the agent did not register");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Setup {
        broker,
        store,
        c,
        pilot,
        agent,
        stop,
        _workdir: workdir,
    }
}

fn task(c: &CampaignId, name: &str, sleep_s: &str, est_s: f64) -> TaskSpec {
    let mut s = TaskSpec::new(
        TaskId::for_name(c, name),
        name.to_string(),
        vec!["sleep".into(), sleep_s.into()],
    );
    s.est_duration_s = est_s;
    s
}

/// Binds `specs` to the agent's pilot and publishes them in one batch, as a manager does.
async fn bind_and_publish(s: &Setup, specs: &[TaskSpec]) {
    let recs: Vec<_> = specs
        .iter()
        .map(|t| (t.id, TaskRecord::new(TaskState::Ready)))
        .collect();
    s.store.insert_tasks(&s.c, &recs).await.unwrap();
    let trs: Vec<Transition> = specs
        .iter()
        .map(|t| Transition::bind(t.id, 0, s.pilot))
        .collect();
    s.store.transition(&s.c, &trs).await.unwrap();
    let tasks = specs
        .iter()
        .map(|t| BoundTask {
            spec: t.clone(),
            attempt: 1,
        })
        .collect();
    let bytes = Envelope::new(s.c, Message::TaskBatch { tasks })
        .encode()
        .unwrap();
    s.broker
        .publish(&s.c, &s.pilot, QueueKind::Tasks, bytes)
        .await
        .unwrap();
}

async fn record(s: &Setup, id: TaskId) -> TaskRecord {
    s.store
        .task_records(&s.c)
        .await
        .unwrap()
        .into_iter()
        .find(|(t, _)| *t == id)
        .map(|(_, r)| r)
        .expect("the task has a record")
}

/// Waits until `id` is in a state of `states`; returns its record.
async fn wait_for_state(
    s: &Setup,
    id: TaskId,
    states: &[TaskState],
    limit: Duration,
) -> TaskRecord {
    let end = Instant::now() + limit;
    loop {
        let r = record(s, id).await;
        if states.contains(&r.state()) {
            return r;
        }
        assert!(
            Instant::now() < end,
            "still {} after {limit:?}: {r:?}",
            r.state()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The states `id` went through, in order.
async fn states_of(s: &Setup, id: TaskId) -> Vec<TaskState> {
    s.store
        .all_events(&s.c)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::Task { task, state, .. } if task == id => Some(state),
            _ => None,
        })
        .collect()
}

/// A task returned for the walltime: READY, no pilot, the reason, never started.
async fn assert_returned_unstarted(s: &Setup, id: TaskId, r: &TaskRecord) {
    assert_eq!(r.state(), TaskState::Ready, "{r:?}");
    assert!(r.p.is_empty(), "no pilot: {r:?}");
    assert!(
        r.r.contains("pilot drains in") && r.r.contains("task needs ~8.0 s"),
        "the reason says why: {}",
        r.r
    );
    assert!(
        !states_of(s, id).await.contains(&TaskState::Executing),
        "it never started"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_task_that_cannot_end_before_the_drain_is_returned_when_cores_free_up() {
    // Heartbeats (and the ticks with them) far apart: only the placement sees the task.
    let s = one_core_agent_near_its_walltime(Duration::from_secs(60)).await;
    // `first` holds the one core for 4 s. `late` fits when it arrives (8 s < ~11 s to the
    // drain) but not once the core frees up (~7 s left).
    let first = task(&s.c, "first", "4", 0.5);
    let late = task(&s.c, "late", "0.1", 8.0);
    bind_and_publish(&s, &[first.clone(), late.clone()]).await;
    let r = wait_for_state(
        &s,
        first.id,
        &[TaskState::Executing, TaskState::Done],
        Duration::from_secs(5),
    )
    .await;
    assert_ne!(r.state(), TaskState::Done);
    assert_eq!(
        record(&s, late.id).await.state(),
        TaskState::AgentQueued,
        "accepted on arrival: it fitted then"
    );
    let r = wait_for_state(
        &s,
        late.id,
        &[TaskState::Ready, TaskState::Executing, TaskState::Done],
        Duration::from_secs(8),
    )
    .await;
    assert_returned_unstarted(&s, late.id, &r).await;
    wait_for_state(&s, first.id, &[TaskState::Done], Duration::from_secs(5)).await;
    let _ = s.stop.send(());
    let summary = s.agent.await.unwrap().unwrap();
    assert_eq!((summary.done, summary.returned), (1, 1), "{summary:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_task_that_can_no_longer_end_before_the_drain_is_returned_at_the_next_tick() {
    let s = one_core_agent_near_its_walltime(Duration::from_millis(100)).await;
    // `first` holds the one core for 7 s; `late` stops fitting ~3 s in and goes back then,
    // while `first` still runs, so another pilot can take it at once.
    let first = task(&s.c, "first", "7", 0.5);
    let late = task(&s.c, "late", "0.1", 8.0);
    bind_and_publish(&s, &[first.clone(), late.clone()]).await;
    let r = wait_for_state(
        &s,
        late.id,
        &[TaskState::Ready, TaskState::Executing, TaskState::Done],
        Duration::from_secs(6),
    )
    .await;
    assert_returned_unstarted(&s, late.id, &r).await;
    assert_eq!(
        record(&s, first.id).await.state(),
        TaskState::Executing,
        "returned before the core freed up"
    );
    // The manager shuts the pilot down: `first` is killed and returned too.
    let bytes = Envelope::new(s.c, Message::Shutdown).encode().unwrap();
    s.broker
        .publish(&s.c, &s.pilot, QueueKind::Control, bytes)
        .await
        .unwrap();
    let summary = tokio::time::timeout(Duration::from_secs(10), s.agent)
        .await
        .expect("the agent stops on Shutdown")
        .unwrap()
        .unwrap();
    assert_eq!(summary.returned, 2, "{summary:?}");
}
