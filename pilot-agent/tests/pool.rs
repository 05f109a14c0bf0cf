//! A pool agent on the in-memory services, with the test acting as the campaigns' managers:
//! it serves every campaign attached to its pool, shares its cores by weight, outlives a
//! campaign that ends, and drains on stop.

use emanager_shared::broker::{Broker, MemoryBroker, QueueKind};
use emanager_shared::model::CampaignMeta;
use emanager_shared::pool::PoolName;
use emanager_shared::protocol::{Envelope, Message};
use emanager_shared::store::{MemoryStore, StateStore};
use emanager_shared::{
    now_ms, BoundTask, CampaignId, CampaignState, PilotId, PilotState, TaskId, TaskRecord,
    TaskSpec, TaskState, Transition,
};
use pilot_agent::scheduler::NodeSpec;
use pilot_agent::{AgentConfig, PoolConfig};
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn new_campaign(store: &dyn StateStore, tasks: usize) -> (CampaignId, Vec<TaskSpec>) {
    let c = CampaignId::random();
    store
        .create_campaign(&CampaignMeta {
            id: c,
            name: "pool-test".into(),
            state: CampaignState::Running,
            created_ms: now_ms(),
            finished_ms: 0,
            task_count: tasks as u64,
            spec_digest: String::new(),
            workflow_format: "toml".into(),
            workflow_source: String::new(),
            options_json: "{}".into(),
        })
        .await
        .unwrap();
    let specs: Vec<TaskSpec> = (0..tasks)
        .map(|i| {
            let name = format!("t-{i}");
            TaskSpec::new(
                TaskId::for_name(&c, &name),
                name,
                vec!["sleep".into(), "0.3".into()],
            )
        })
        .collect();
    let recs: Vec<_> = specs
        .iter()
        .map(|s| (s.id, TaskRecord::new(TaskState::Ready)))
        .collect();
    store.insert_tasks(&c, &recs).await.unwrap();
    (c, specs)
}

/// Binds `specs` to `pilot` and publishes them, as a manager does.
async fn bind_and_publish(
    broker: &dyn Broker,
    store: &dyn StateStore,
    c: CampaignId,
    pilot: PilotId,
    specs: &[TaskSpec],
) {
    let trs: Vec<Transition> = specs
        .iter()
        .map(|s| Transition::bind(s.id, 0, pilot))
        .collect();
    store.transition(&c, &trs).await.unwrap();
    let tasks = specs
        .iter()
        .map(|s| BoundTask {
            spec: s.clone(),
            attempt: 1,
        })
        .collect();
    let bytes = Envelope::new(c, Message::TaskBatch { tasks })
        .encode()
        .unwrap();
    broker
        .publish(&c, &pilot, QueueKind::Tasks, bytes)
        .await
        .unwrap();
}

async fn wait_for<T, Fut: std::future::Future<Output = Option<T>>>(
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> Fut,
) -> T {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The pool agent's active pilot for `c`.
async fn pilot_of(store: &dyn StateStore, c: CampaignId) -> PilotId {
    wait_for(
        "the pool agent's pilot",
        Duration::from_secs(10),
        || async {
            store
                .pilots(&c)
                .await
                .ok()?
                .into_iter()
                .find(|v| v.record.state == PilotState::Active)
                .map(|v| v.record.id)
        },
    )
    .await
}

/// Core-seconds (one core a task) the tasks of `recs` ran within `[from, to]` (ms); a
/// task still running counts up to `to`.
fn busy_core_seconds(recs: &[(TaskId, TaskRecord)], from: u64, to: u64) -> f64 {
    recs.iter()
        .filter(|(_, r)| r.t0 > 0)
        .map(|(_, r)| {
            let end = if r.t1 > 0 { r.t1 } else { to };
            end.min(to).saturating_sub(r.t0.max(from)) as f64 / 1000.0
        })
        .sum()
}

/// When the first task of `recs` started (ms).
fn first_start(recs: &[(TaskId, TaskRecord)]) -> u64 {
    recs.iter()
        .map(|(_, r)| r.t0)
        .filter(|t| *t > 0)
        .min()
        .unwrap_or(u64::MAX)
}

fn states(recs: &[(TaskId, TaskRecord)], s: TaskState) -> usize {
    recs.iter().filter(|(_, r)| r.state() == s).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_agent_shares_by_weight_outlives_a_campaign_and_drains_on_stop() {
    let broker = Arc::new(MemoryBroker::new());
    let store = Arc::new(MemoryStore::new());
    let pool: PoolName = "unit".parse().unwrap();
    let workdir = tempfile::tempdir().unwrap();
    let nodes = vec![NodeSpec {
        name: "localhost".into(),
        cores: 3,
        gpus: 0,
        mem_mb: 1024,
    }];
    let mut agent = AgentConfig::new(
        CampaignId(uuid::Uuid::nil()),
        PilotId::random(),
        nodes,
        workdir.path().to_path_buf(),
    );
    agent.heartbeat = Duration::from_millis(100);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(pilot_agent::run_pool(
        PoolConfig::new(pool.clone(), agent),
        broker.clone(),
        store.clone(),
        async move {
            let _ = stop_rx.await;
        },
    ));

    // Two campaigns attach with weights 2 and 1; the agent registers as a pilot of each.
    let (a, a_specs) = new_campaign(store.as_ref(), 30).await;
    let (b, b_specs) = new_campaign(store.as_ref(), 30).await;
    store.attach_to_pool(&pool, &a, 2.0).await.unwrap();
    store.attach_to_pool(&pool, &b, 1.0).await.unwrap();
    let (pa, pb) = (
        pilot_of(store.as_ref(), a).await,
        pilot_of(store.as_ref(), b).await,
    );
    let rec = store.pilots(&a).await.unwrap()[0].record.clone();
    assert_eq!((rec.pool.as_str(), rec.cores), ("unit", 3));
    bind_and_publish(broker.as_ref(), store.as_ref(), a, pa, &a_specs).await;
    bind_and_publish(broker.as_ref(), store.as_ref(), b, pb, &b_specs).await;

    // While both have backlog, the cores' time follows the weights.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let to = now_ms();
    let ra = store.task_records(&a).await.unwrap();
    let rb = store.task_records(&b).await.unwrap();
    assert!(
        states(&ra, TaskState::AgentQueued) > 0 && states(&rb, TaskState::AgentQueued) > 0,
        "both still have backlog"
    );
    let from = first_start(&ra).max(first_start(&rb));
    let (ca, cb) = (
        busy_core_seconds(&ra, from, to),
        busy_core_seconds(&rb, from, to),
    );
    let ratio = ca / cb;
    eprintln!("weights 2:1 -> {ca:.2}:{cb:.2} core-seconds ({ratio:.2})");
    assert!(
        (1.6..=2.5).contains(&ratio),
        "{ca:.2} and {cb:.2} core-seconds ({ratio:.2}) over {} ms",
        to - from
    );

    // Campaign a ends: the agent detaches from it and goes on with b.
    store.detach_from_pool(&pool, &a).await.unwrap();
    store
        .set_campaign_state(&a, CampaignState::Canceled)
        .await
        .unwrap();
    wait_for("a's pilot DONE", Duration::from_secs(10), || async {
        let v = store.pilots(&a).await.ok()?;
        (v[0].record.state == PilotState::Done).then_some(())
    })
    .await;
    let done_before = states(&store.task_records(&b).await.unwrap(), TaskState::Done);
    wait_for("b to go on", Duration::from_secs(10), || async {
        let done = states(&store.task_records(&b).await.ok()?, TaskState::Done);
        (done > done_before + 3).then_some(())
    })
    .await;
    let agents = store.pool_agents(&pool).await.unwrap();
    assert_eq!(agents.len(), 1);
    assert_eq!(agents[0].lanes.len(), 1, "{:?}", agents[0].lanes);
    assert_eq!(agents[0].lanes[0].campaign, b);

    // Stop drains: b's waiting tasks go back to READY, its running ones finish, its pilot
    // is DONE, and the agent leaves the registry.
    stop_tx.send(()).unwrap();
    let summary = tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("the pool agent stops")
        .unwrap()
        .unwrap();
    assert!(summary.reason.contains("signal"), "{}", summary.reason);
    let rb = store.task_records(&b).await.unwrap();
    assert_eq!(
        states(&rb, TaskState::Done) + states(&rb, TaskState::Ready),
        30,
        "every task of b is DONE or back to READY"
    );
    assert!(states(&rb, TaskState::Ready) > 0);
    assert_eq!(
        store.pilots(&b).await.unwrap()[0].record.state,
        PilotState::Done
    );
    assert!(store.pool_agents(&pool).await.unwrap().is_empty());
}
