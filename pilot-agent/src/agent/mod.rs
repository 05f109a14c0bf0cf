//! The agent loop: register, heartbeat, consume the pilot's own queue, place tasks with the
//! core-packing scheduler, run them, report every state change, drain on request.
//!
//! The pieces: a core task (`core_loop.rs`) owns the scheduler, the running tasks and one *lane*
//! per campaign served; each lane has a reporter, a task consumer, a control consumer and a
//! heartbeat (`io.rs`). [`run`] is the agent of one campaign (one lane, ending with it);
//! `crate::pool` runs a pool agent over the same pieces.

pub(crate) mod core_loop;
mod deadline;
mod io;
pub(crate) mod lane;

use crate::reporter;
use crate::scheduler::NodeSpec;
use core_loop::{CoreMsg, CoreSettings};
use emanager_shared::broker::Broker;
use emanager_shared::catalog::LaunchMethod;
use emanager_shared::model::{PilotLoad, PilotRecord};
use emanager_shared::pool::PoolName;
use emanager_shared::store::StateStore;
use emanager_shared::{now_ms, CampaignId, PilotId, PilotState};
use lane::{Lane, LaneEnded, LaneFeeds};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

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
    /// Drain this long before the allocation ends; no task starts that would still run then.
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

    /// When the agent drains (ms since the epoch), `None` when the allocation does not end.
    pub fn drain_at_ms(&self) -> Option<u64> {
        let margin = self.drain_margin.as_millis() as u64;
        self.walltime_end_ms.map(|end| end.saturating_sub(margin))
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

/// Runs the agent of one campaign until it drains, is shut down, or `stop` resolves (then it
/// drains).
pub async fn run(
    cfg: AgentConfig,
    broker: Arc<dyn Broker>,
    store: Arc<dyn StateStore>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<AgentSummary> {
    let c = cfg.campaign;
    let p = cfg.pilot;
    broker.declare_pilot(&c, &p).await?;
    if let Err(e) = register(&cfg, store.as_ref(), None).await {
        // A pilot the manager already ended (canceled while this agent started): leave no
        // queues behind for it.
        let _ = broker.delete_pilot(&c, &p).await;
        return Err(e);
    }
    tracing::info!(campaign = %c, pilot = %p, cores = cfg.total_cores(), "agent registered");

    let (core_tx, core_rx) = mpsc::unbounded_channel::<CoreMsg>();
    let (ended_tx, mut ended_rx) = mpsc::unbounded_channel::<LaneEnded>();
    let (draining_tx, _) = watch::channel(None);
    let (lane, io) = LaneIo::new(&cfg, 1.0, &broker, &store, false);
    let lane_handles = io.start(core_tx.clone());
    let background = drain_triggers(&cfg, core_tx.clone(), stop);

    let summary = core_loop::run(
        core_settings(&cfg, None),
        vec![lane],
        core_rx,
        core_tx,
        ended_tx,
        draining_tx,
    )
    .await;
    let _ = ended_rx.recv().await;
    lane_handles.close().await;
    for b in background {
        b.abort();
    }
    store
        .pilot_transition(&c, &p, PilotState::Done, &summary.reason)
        .await?;
    tracing::info!(campaign = %c, pilot = %p, done = summary.done, failed = summary.failed, returned = summary.returned, reason = %summary.reason, "agent stopped");
    Ok(summary)
}

/// The core's settings for an agent configured by `cfg`; `pool_share_window_s` for a pool
/// agent.
pub(crate) fn core_settings(cfg: &AgentConfig, pool_share_window_s: Option<f64>) -> CoreSettings {
    CoreSettings {
        nodes: cfg.nodes.clone(),
        drain_at_ms: cfg.drain_at_ms(),
        idle_timeout: cfg.idle_timeout,
        launch_methods: cfg.launch_methods.clone(),
        pool_share_window_s,
    }
}

/// Drains the whole agent when `stop` resolves (a signal) and before its allocation ends.
pub(crate) fn drain_triggers(
    cfg: &AgentConfig,
    core: mpsc::UnboundedSender<CoreMsg>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Vec<JoinHandle<()>> {
    let mut out = Vec::new();
    {
        let tx = core.clone();
        out.push(tokio::spawn(async move {
            stop.await;
            let _ = tx.send(CoreMsg::Drain("agent asked to stop (signal)".into()));
        }));
    }
    if let Some(at) = cfg.drain_at_ms() {
        out.push(tokio::spawn(async move {
            let wait = at.saturating_sub(now_ms());
            tokio::time::sleep(Duration::from_millis(wait)).await;
            let _ = core.send(CoreMsg::Drain("allocation walltime is ending".into()));
        }));
    }
    out
}

/// A lane's I/O before it starts: its reporter runs already; its consumers and heartbeat
/// start with [`LaneIo::start`], once the core knows the lane (so no task of it can reach
/// the core first).
pub(crate) struct LaneIo {
    cfg: AgentConfig,
    feeds: LaneFeeds,
    broker: Arc<dyn Broker>,
    store: Arc<dyn StateStore>,
    reporter_done: JoinHandle<()>,
    watch_own_pilot: bool,
}

/// A started lane's tasks.
pub(crate) struct LaneHandles {
    reporter_done: JoinHandle<()>,
    tasks: Vec<JoinHandle<()>>,
}

impl LaneIo {
    /// The lane of `cfg.campaign` (pilot `cfg.pilot`, registered already) with `weight`.
    pub(crate) fn new(
        cfg: &AgentConfig,
        weight: f64,
        broker: &Arc<dyn Broker>,
        store: &Arc<dyn StateStore>,
        watch_own_pilot: bool,
    ) -> (Lane, LaneIo) {
        let (reporter, reporter_done) = reporter::spawn(store.clone(), cfg.campaign);
        let (lane, feeds) = Lane::new(cfg.campaign, cfg.pilot, weight, reporter, &cfg.workdir);
        let io = LaneIo {
            cfg: cfg.clone(),
            feeds,
            broker: broker.clone(),
            store: store.clone(),
            reporter_done,
            watch_own_pilot,
        };
        (lane, io)
    }

    pub(crate) fn start(self, core: mpsc::UnboundedSender<CoreMsg>) -> LaneHandles {
        // The consumer pauses while this many tasks wait locally.
        let max_pending = (self.cfg.total_cores() as usize * 4).max(64);
        let tasks = vec![
            tokio::spawn(io::consume_tasks(
                self.cfg.clone(),
                self.broker.clone(),
                self.store.clone(),
                core.clone(),
                self.feeds.pending,
                max_pending,
                self.feeds.stop_consuming,
            )),
            tokio::spawn(io::consume_control(
                self.cfg.clone(),
                self.broker.clone(),
                core.clone(),
            )),
            tokio::spawn(io::heartbeat(
                self.cfg,
                self.store,
                self.feeds.load,
                core,
                self.watch_own_pilot,
            )),
        ];
        LaneHandles {
            reporter_done: self.reporter_done,
            tasks,
        }
    }
}

impl LaneHandles {
    /// Once the core dropped the lane: waits for its last transitions to reach the store,
    /// then stops its consumers and heartbeat.
    pub(crate) async fn close(self) {
        let _ = self.reporter_done.await;
        for t in self.tasks {
            t.abort();
        }
    }
}

/// Registers the pilot `cfg.pilot` of `cfg.campaign` (ACTIVE, with this agent's resources),
/// beating once before and once after so the manager never sees it active without a beat.
/// A pool agent's pilots name their pool.
pub(crate) async fn register(
    cfg: &AgentConfig,
    store: &dyn StateStore,
    pool: Option<&PoolName>,
) -> anyhow::Result<()> {
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
    rec.drain_margin_ms = match cfg.walltime_end_ms {
        Some(_) => cfg.drain_margin.as_millis() as u64,
        None => 0,
    };
    rec.agent_pid = std::process::id();
    rec.log_path = cfg.log_path.clone();
    rec.version = env!("CARGO_PKG_VERSION").to_string();
    rec.registered_ms = now_ms();
    if !cfg.job_id.is_empty() {
        rec.job_id = cfg.job_id.clone();
    }
    rec.reason = String::new();
    rec.pool = pool.map(|p| p.to_string()).unwrap_or_default();
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
