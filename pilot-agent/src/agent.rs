//! The agent loop: register, heartbeat, consume the pilot's own queue, place tasks with the
//! core-packing scheduler, run them, report every state change, drain on request.
//!
//! One core task owns the scheduler and the local queue; the consumer, the control consumer,
//! the heartbeat and every running task talk to it through a channel.

use crate::executor::{self, RunOutcome};
use crate::launch::Launch;
use crate::reporter::{self, Reporter};
use crate::scheduler::{NodeSpec, Request, Scheduler, Slots};
use emanager_shared::broker::{Broker, QueueKind};
use emanager_shared::catalog::LaunchMethod;
use emanager_shared::model::{PilotLoad, PilotRecord};
use emanager_shared::protocol::{Envelope, Message};
use emanager_shared::store::StateStore;
use emanager_shared::{
    now_ms, BoundTask, CampaignId, PilotId, PilotState, TaskId, TaskState, Transition,
    TransitionOutcome,
};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument;

/// Everything an agent needs to know about itself.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub campaign: CampaignId,
    pub pilot: PilotId,
    pub nodes: Vec<NodeSpec>,
    /// Sandboxes go below `<workdir>/<campaign>/`.
    pub workdir: PathBuf,
    pub heartbeat: Duration,
    /// When the allocation ends (ms since the epoch).
    pub walltime_end_ms: Option<u64>,
    /// Drain this long before the allocation ends.
    pub drain_margin: Duration,
    pub resource: String,
    pub job_id: String,
    pub log_path: String,
    /// Task messages in flight from the broker.
    pub prefetch: u16,
    /// Exit when nothing ran or arrived for this long.
    pub idle_timeout: Option<Duration>,
    /// How tasks start on the nodes (`fork` on node 0; `srun`, `mpirun`, `mpiexec` beyond).
    pub launch_methods: Vec<LaunchMethod>,
}

impl AgentConfig {
    pub fn new(
        campaign: CampaignId,
        pilot: PilotId,
        nodes: Vec<NodeSpec>,
        workdir: PathBuf,
    ) -> Self {
        AgentConfig {
            campaign,
            pilot,
            nodes,
            workdir,
            heartbeat: Duration::from_secs(2),
            walltime_end_ms: None,
            drain_margin: Duration::from_secs(30),
            resource: "local".into(),
            job_id: String::new(),
            log_path: String::new(),
            prefetch: 8,
            idle_timeout: None,
            launch_methods: vec![LaunchMethod::Fork],
        }
    }

    pub fn total_cores(&self) -> u32 {
        self.nodes.iter().map(|n| n.cores).sum()
    }
}

/// Why the agent stopped and what it did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AgentSummary {
    pub done: u64,
    pub failed: u64,
    pub returned: u64,
    pub reason: String,
}

enum CoreMsg {
    Tasks(Vec<BoundTask>),
    Finished {
        task: TaskId,
        attempt: u32,
        slots: Slots,
        outcome: RunOutcome,
    },
    Control(Message),
    /// Stop taking work, finish what runs, return the rest.
    Drain(String),
    /// Kill what runs, return everything, stop.
    Shutdown(String),
    Tick,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum KillReason {
    Cancel,
    Shutdown,
}

struct RunningTask {
    cores: u32,
    kill: Option<oneshot::Sender<()>>,
    killed_for: Option<KillReason>,
}

#[derive(Default)]
struct Load {
    busy_cores: AtomicU32,
    running: AtomicU32,
    queued: AtomicU32,
}

/// Runs an agent until it drains, is shut down, or `stop` resolves (then it drains).
pub async fn run(
    cfg: AgentConfig,
    broker: Arc<dyn Broker>,
    store: Arc<dyn StateStore>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<AgentSummary> {
    let c = cfg.campaign;
    let p = cfg.pilot;
    broker.declare_pilot(&c, &p).await?;
    register(&cfg, store.as_ref()).await?;
    tracing::info!(campaign = %c, pilot = %p, cores = cfg.total_cores(), "agent registered");

    let (reporter, reporter_done) = reporter::spawn(store.clone(), c);
    let (core_tx, core_rx) = mpsc::unbounded_channel::<CoreMsg>();
    let load = Arc::new(Load::default());
    // The consumer pauses while this many tasks wait locally.
    let max_pending = (cfg.total_cores() as usize * 4).max(64);
    let (pending_tx, pending_rx) = watch::channel(0usize);
    let (stop_consuming_tx, stop_consuming_rx) = watch::channel(false);

    let mut background = Vec::new();
    background.push(tokio::spawn(consume_tasks(
        cfg.clone(),
        broker.clone(),
        store.clone(),
        core_tx.clone(),
        pending_rx,
        max_pending,
        stop_consuming_rx.clone(),
    )));
    background.push(tokio::spawn(consume_control(
        cfg.clone(),
        broker.clone(),
        core_tx.clone(),
        stop_consuming_rx.clone(),
    )));
    background.push(tokio::spawn(heartbeat(
        cfg.clone(),
        store.clone(),
        load.clone(),
        core_tx.clone(),
    )));
    {
        let tx = core_tx.clone();
        background.push(tokio::spawn(async move {
            stop.await;
            let _ = tx.send(CoreMsg::Drain("agent asked to stop (signal)".into()));
        }));
    }
    if let Some(end) = cfg.walltime_end_ms {
        let tx = core_tx.clone();
        let margin = cfg.drain_margin.as_millis() as u64;
        background.push(tokio::spawn(async move {
            let at = end.saturating_sub(margin);
            let wait = at.saturating_sub(now_ms());
            tokio::time::sleep(Duration::from_millis(wait)).await;
            let _ = tx.send(CoreMsg::Drain("allocation walltime is ending".into()));
        }));
    }

    let summary = core_loop(
        &cfg,
        core_rx,
        core_tx.clone(),
        reporter.clone(),
        load,
        pending_tx,
        stop_consuming_tx,
    )
    .await;
    drop(reporter);
    drop(core_tx);
    let _ = reporter_done.await;
    for b in background {
        b.abort();
    }
    let final_state = PilotState::Done;
    store
        .pilot_transition(&c, &p, final_state, &summary.reason)
        .await?;
    tracing::info!(campaign = %c, pilot = %p, done = summary.done, failed = summary.failed, returned = summary.returned, reason = %summary.reason, "agent stopped");
    Ok(summary)
}

async fn register(cfg: &AgentConfig, store: &dyn StateStore) -> anyhow::Result<()> {
    let existing = store
        .pilots(&cfg.campaign)
        .await?
        .into_iter()
        .find(|v| v.record.id == cfg.pilot);
    let mut rec = match existing {
        Some(v) if v.record.state.is_final() => anyhow::bail!(
            "pilot {} is already {} ({}); refusing to start",
            cfg.pilot,
            v.record.state,
            v.record.reason
        ),
        Some(v) => v.record,
        None => PilotRecord::new(cfg.pilot, cfg.resource.clone()),
    };
    rec.state = PilotState::Active;
    rec.host = cfg
        .nodes
        .first()
        .map(|n| n.name.clone())
        .unwrap_or_default();
    rec.nodes = cfg.nodes.len() as u32;
    rec.cores = cfg.total_cores();
    rec.gpus = cfg.nodes.iter().map(|n| n.gpus).sum();
    rec.mem_mb = cfg.nodes.iter().map(|n| n.mem_mb).sum();
    rec.walltime_end_ms = cfg.walltime_end_ms.unwrap_or(0);
    rec.agent_pid = std::process::id();
    rec.log_path = cfg.log_path.clone();
    rec.version = env!("CARGO_PKG_VERSION").to_string();
    rec.registered_ms = now_ms();
    if !cfg.job_id.is_empty() {
        rec.job_id = cfg.job_id.clone();
    }
    rec.reason = String::new();
    // Alive before the ACTIVE event, so the manager never sees an active pilot without a beat
    // (it would declare its heartbeat lapsed and kill it). The beat after `put_pilot` covers
    // stores that only record beats of known pilots.
    store
        .heartbeat(
            &cfg.campaign,
            &cfg.pilot,
            cfg.heartbeat.as_millis() as u64 * 3,
            PilotLoad::default(),
        )
        .await?;
    store.put_pilot(&cfg.campaign, &rec).await?;
    store
        .heartbeat(
            &cfg.campaign,
            &cfg.pilot,
            cfg.heartbeat.as_millis() as u64 * 3,
            PilotLoad::default(),
        )
        .await?;
    Ok(())
}

fn request_of(t: &BoundTask) -> Request {
    Request {
        cores: t.spec.cores.max(1),
        gpus: t.spec.gpus,
        mem_mb: t.spec.mem_mb,
        processes: t.spec.processes.max(1),
        multi_node: t.spec.mpi,
    }
}

#[allow(clippy::too_many_arguments)]
async fn core_loop(
    cfg: &AgentConfig,
    mut rx: mpsc::UnboundedReceiver<CoreMsg>,
    tx: mpsc::UnboundedSender<CoreMsg>,
    reporter: Reporter,
    load: Arc<Load>,
    pending_tx: watch::Sender<usize>,
    stop_consuming: watch::Sender<bool>,
) -> AgentSummary {
    let mut sched = Scheduler::new(cfg.nodes.clone());
    let mut pending: VecDeque<BoundTask> = VecDeque::new();
    let mut running: HashMap<TaskId, RunningTask> = HashMap::new();
    let mut summary = AgentSummary::default();
    let mut draining: Option<String> = None;
    let mut shutting_down = false;
    let mut last_activity = tokio::time::Instant::now();
    let workdir = cfg.workdir.join(cfg.campaign.to_string());
    let launch = Launch::new(
        cfg.launch_methods.clone(),
        cfg.nodes.iter().map(|n| n.name.clone()).collect(),
    );

    let return_task = |t: &BoundTask, why: &str, summary: &mut AgentSummary| {
        summary.returned += 1;
        crate::metrics::get().returned.inc();
        crate::metrics::get().forget(t.spec.id);
        reporter.send(
            Transition {
                pilot: Some(None),
                ..Transition::new(t.spec.id, t.attempt, TaskState::Ready)
            }
            .with_reason(why),
        );
    };

    while let Some(msg) = rx.recv().await {
        match msg {
            CoreMsg::Tasks(tasks) => {
                last_activity = tokio::time::Instant::now();
                for t in tasks {
                    if draining.is_some() {
                        return_task(&t, "pilot is draining", &mut summary);
                        continue;
                    }
                    if let Err(reason) = sched.can_ever_fit(&request_of(&t)) {
                        summary.failed += 1;
                        crate::metrics::get().failed.inc();
                        reporter.send(
                            Transition::new(t.spec.id, t.attempt, TaskState::Failed)
                                .with_reason(format!("can never fit this pilot: {reason}"))
                                .failure(),
                        );
                        continue;
                    }
                    if let Some(end) = cfg.walltime_end_ms {
                        let left_s = end.saturating_sub(now_ms()) as f64 / 1000.0;
                        if t.spec.est_duration_s > left_s {
                            return_task(
                                &t,
                                &format!(
                                    "pilot ends in {left_s:.0} s; task needs ~{:.0} s",
                                    t.spec.est_duration_s
                                ),
                                &mut summary,
                            );
                            continue;
                        }
                    }
                    pending.push_back(t);
                }
            }
            CoreMsg::Finished {
                task,
                attempt,
                slots,
                outcome,
            } => {
                last_activity = tokio::time::Instant::now();
                sched.release(&slots);
                let killed_for = running.remove(&task).and_then(|r| r.killed_for);
                let t = |to| Transition::new(task, attempt, to);
                let tr = match outcome {
                    RunOutcome::Success => {
                        summary.done += 1;
                        crate::metrics::get().done.inc();
                        t(TaskState::Done).with_exit(Some(0))
                    }
                    RunOutcome::Failed { exit_code, reason } => {
                        summary.failed += 1;
                        crate::metrics::get().failed.inc();
                        t(TaskState::Failed)
                            .with_exit(exit_code)
                            .with_reason(reason)
                            .failure()
                    }
                    RunOutcome::SpawnFailed { reason } => {
                        summary.failed += 1;
                        crate::metrics::get().failed.inc();
                        t(TaskState::Failed).with_reason(reason).failure()
                    }
                    RunOutcome::WalltimeExceeded { walltime_s } => {
                        summary.failed += 1;
                        crate::metrics::get().failed.inc();
                        t(TaskState::Failed)
                            .with_reason(format!(
                                "exceeded its walltime of {walltime_s} s; its process group was killed"
                            ))
                            .failure()
                    }
                    RunOutcome::Killed => match killed_for {
                        Some(KillReason::Cancel) => t(TaskState::Canceled).with_reason("canceled"),
                        _ => {
                            summary.returned += 1;
                            crate::metrics::get().returned.inc();
                            Transition {
                                pilot: Some(None),
                                ..t(TaskState::Ready)
                            }
                            .with_reason("pilot shut down while the task ran")
                        }
                    },
                };
                reporter.send(tr);
            }
            CoreMsg::Control(Message::Cancel { task_ids }) => {
                for id in task_ids {
                    if let Some(pos) = pending.iter().position(|t| t.spec.id == id) {
                        let t = pending.remove(pos).expect("position is valid");
                        crate::metrics::get().forget(id);
                        reporter.send(
                            Transition::new(id, t.attempt, TaskState::Canceled)
                                .with_reason("canceled"),
                        );
                    }
                    if let Some(r) = running.get_mut(&id) {
                        r.killed_for = Some(KillReason::Cancel);
                        if let Some(k) = r.kill.take() {
                            let _ = k.send(());
                        }
                    }
                }
            }
            CoreMsg::Control(Message::Return { task_ids }) => {
                // Only what waits here: a task that started stays.
                for id in task_ids {
                    if let Some(pos) = pending.iter().position(|t| t.spec.id == id) {
                        let t = pending.remove(pos).expect("position is valid");
                        return_task(
                            &t,
                            "returned to the manager for an idle pilot",
                            &mut summary,
                        );
                    }
                }
            }
            CoreMsg::Control(Message::Drain) | CoreMsg::Drain(_) if draining.is_some() => {}
            CoreMsg::Control(Message::Drain) => {
                draining = Some("drained by the manager".into());
            }
            CoreMsg::Drain(why) => {
                draining = Some(why);
            }
            msg @ (CoreMsg::Control(Message::Shutdown) | CoreMsg::Shutdown(_)) => {
                let why = match msg {
                    CoreMsg::Shutdown(why) => why,
                    _ => "shut down by the manager".to_string(),
                };
                draining.get_or_insert(why);
                shutting_down = true;
                for r in running.values_mut() {
                    r.killed_for.get_or_insert(KillReason::Shutdown);
                    if let Some(k) = r.kill.take() {
                        let _ = k.send(());
                    }
                }
            }
            CoreMsg::Control(Message::TaskBatch { .. }) => {
                tracing::warn!("a task batch arrived on the control queue; ignored");
            }
            CoreMsg::Tick => {
                if let Some(idle) = cfg.idle_timeout {
                    if running.is_empty() && pending.is_empty() && last_activity.elapsed() > idle {
                        draining.get_or_insert_with(|| format!("idle for {} s", idle.as_secs()));
                    }
                }
            }
        }

        if draining.is_some() {
            let _ = stop_consuming.send(true);
            let why = draining.clone().unwrap_or_default();
            for t in pending.drain(..) {
                return_task(&t, &format!("pilot stopping: {why}"), &mut summary);
            }
        }

        // Place what fits, in arrival order, letting smaller tasks pass a blocked big one.
        let mut i = 0;
        while i < pending.len() && !shutting_down {
            if sched.free_cores() == 0 {
                break;
            }
            let req = request_of(&pending[i]);
            match sched.place(&req) {
                Some(slots) => {
                    let t = pending.remove(i).expect("index is valid");
                    start_task(&t, slots, &workdir, &launch, &reporter, &tx, &mut running);
                }
                None => i += 1,
            }
        }

        let busy: u32 = running.values().map(|r| r.cores).sum();
        load.busy_cores.store(busy, Ordering::Relaxed);
        load.running.store(running.len() as u32, Ordering::Relaxed);
        load.queued.store(pending.len() as u32, Ordering::Relaxed);
        let _ = pending_tx.send(pending.len());
        crate::metrics::get().occupancy(busy, cfg.total_cores(), pending.len());

        if draining.is_some() && running.is_empty() && pending.is_empty() {
            summary.reason = draining.unwrap_or_default();
            return summary;
        }
    }
    summary.reason = "agent channel closed".into();
    summary
}

fn start_task(
    t: &BoundTask,
    slots: Slots,
    workdir: &std::path::Path,
    launch: &Launch,
    reporter: &Reporter,
    tx: &mpsc::UnboundedSender<CoreMsg>,
    running: &mut HashMap<TaskId, RunningTask>,
) {
    let id = t.spec.id;
    let attempt = t.attempt;
    match executor::start(&t.spec, attempt, &slots, workdir, launch) {
        Err(outcome) => {
            crate::metrics::get().forget(id);
            let _ = tx.send(CoreMsg::Finished {
                task: id,
                attempt,
                slots,
                outcome,
            });
            running.insert(
                id,
                RunningTask {
                    cores: 0,
                    kill: None,
                    killed_for: None,
                },
            );
        }
        Ok(run) => {
            reporter.send(Transition::new(id, attempt, TaskState::Executing));
            crate::metrics::get().started(id);
            let (kill_tx, kill_rx) = oneshot::channel();
            running.insert(
                id,
                RunningTask {
                    cores: t.spec.cores,
                    kill: Some(kill_tx),
                    killed_for: None,
                },
            );
            let tx = tx.clone();
            let span = tracing::info_span!("task", task = %id, attempt);
            tokio::spawn(
                async move {
                    let outcome = run.wait(kill_rx).await;
                    let _ = tx.send(CoreMsg::Finished {
                        task: id,
                        attempt,
                        slots,
                        outcome,
                    });
                }
                .instrument(span),
            );
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn consume_tasks(
    cfg: AgentConfig,
    broker: Arc<dyn Broker>,
    store: Arc<dyn StateStore>,
    core: mpsc::UnboundedSender<CoreMsg>,
    mut pending: watch::Receiver<usize>,
    max_pending: usize,
    mut stop: watch::Receiver<bool>,
) {
    let c = cfg.campaign;
    let mut consumer = match broker
        .consume(&c, &cfg.pilot, QueueKind::Tasks, cfg.prefetch)
        .await
    {
        Ok(consumer) => consumer,
        Err(e) => {
            tracing::error!(error = %e, "cannot consume the task queue");
            let _ = core.send(CoreMsg::Shutdown(format!(
                "cannot consume the task queue: {e}"
            )));
            return;
        }
    };
    loop {
        // Backpressure: take no more from the broker while the local queue is long.
        tokio::select! {
            r = pending.wait_for(|n| *n < max_pending) => if r.is_err() { return },
            _ = stop.wait_for(|s| *s) => return,
        }
        let delivery = tokio::select! {
            d = consumer.next() => d,
            _ = stop.wait_for(|s| *s) => return,
        };
        let Some(delivery) = delivery else {
            tracing::info!("task queue closed");
            return;
        };
        let env = match Envelope::decode(&delivery.payload) {
            Ok(env) if env.campaign != c => {
                let reason = format!(
                    "message for campaign {} on a queue of campaign {c}",
                    env.campaign
                );
                tracing::warn!(%reason, "dead-lettering");
                let _ = delivery.dead_letter(&reason).await;
                continue;
            }
            Ok(env) => env,
            Err(e) => {
                tracing::warn!(error = %e, "dead-lettering an unreadable message");
                let _ = delivery.dead_letter(&e.to_string()).await;
                continue;
            }
        };
        let Message::TaskBatch { tasks } = env.body else {
            let reason = format!("`{}` message on the task queue", env.kind);
            let _ = delivery.dead_letter(&reason).await;
            continue;
        };
        let accepted = accept(&c, store.as_ref(), tasks).await;
        // Acknowledge only once AGENT_QUEUED is in the store.
        if let Err(e) = delivery.ack().await {
            tracing::warn!(error = %e, "ack failed; the broker will redeliver (fencing drops the duplicate)");
        }
        if !accepted.is_empty() && core.send(CoreMsg::Tasks(accepted)).is_err() {
            return;
        }
    }
}

/// Writes AGENT_QUEUED for the batch (retrying through store outages) and keeps the tasks
/// the store accepted; the others belong to an older attempt or were already taken.
async fn accept(c: &CampaignId, store: &dyn StateStore, tasks: Vec<BoundTask>) -> Vec<BoundTask> {
    let transitions: Vec<Transition> = tasks
        .iter()
        .map(|t| Transition::new(t.spec.id, t.attempt, TaskState::AgentQueued))
        .collect();
    let mut attempt = 0u32;
    let outcomes = loop {
        match store.transition(c, &transitions).await {
            Ok(o) => break o,
            Err(e) => {
                tracing::warn!(error = %e, "cannot persist AGENT_QUEUED; retrying");
                tokio::time::sleep(emanager_shared::util::backoff(attempt)).await;
                attempt += 1;
            }
        }
    };
    tasks
        .into_iter()
        .zip(outcomes)
        .filter_map(|(t, o)| match o {
            TransitionOutcome::Applied => {
                crate::metrics::get().accepted(t.spec.id);
                Some(t)
            }
            other => {
                tracing::debug!(task = %t.spec.id, attempt = t.attempt, outcome = ?other, "dropping a task this pilot may not run");
                None
            }
        })
        .collect()
}

async fn consume_control(
    cfg: AgentConfig,
    broker: Arc<dyn Broker>,
    core: mpsc::UnboundedSender<CoreMsg>,
    _stop: watch::Receiver<bool>,
) {
    let mut consumer = match broker
        .consume(&cfg.campaign, &cfg.pilot, QueueKind::Control, 4)
        .await
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot consume the control queue");
            return;
        }
    };
    while let Some(d) = consumer.next().await {
        match Envelope::decode(&d.payload) {
            Ok(env) => {
                let _ = d.ack().await;
                if core.send(CoreMsg::Control(env.body)).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = d.dead_letter(&e.to_string()).await;
            }
        }
    }
}

async fn heartbeat(
    cfg: AgentConfig,
    store: Arc<dyn StateStore>,
    load: Arc<Load>,
    core: mpsc::UnboundedSender<CoreMsg>,
) {
    let ttl = cfg.heartbeat.as_millis() as u64 * 3;
    let mut beats = 0u64;
    loop {
        let l = PilotLoad {
            busy_cores: load.busy_cores.load(Ordering::Relaxed),
            running: load.running.load(Ordering::Relaxed),
            queued: load.queued.load(Ordering::Relaxed),
        };
        if let Err(e) = store.heartbeat(&cfg.campaign, &cfg.pilot, ttl, l).await {
            crate::metrics::get().heartbeat_failures.inc();
            tracing::warn!(error = %e, "heartbeat failed");
        } else {
            crate::metrics::get().heartbeats.inc();
        }
        beats += 1;
        if beats.is_multiple_of(5) {
            match store.campaign(&cfg.campaign).await {
                Ok(Some(m)) if m.state.is_final() => {
                    let _ = core.send(CoreMsg::Shutdown(format!("campaign is {}", m.state)));
                }
                Ok(None) => {
                    let _ = core.send(CoreMsg::Shutdown(
                        "campaign is gone from the state store".into(),
                    ));
                }
                _ => {}
            }
        }
        if core.send(CoreMsg::Tick).is_err() {
            return;
        }
        tokio::time::sleep(cfg.heartbeat).await;
    }
}
