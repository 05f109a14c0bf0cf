//! A pool agent (`pilot-agent --pool NAME`): a long-lived agent that serves every campaign
//! attached to its pool, sharing its cores between them by weight.
//!
//! Every heartbeat the supervisor here writes the agent's entry in the pool registry and
//! reads the campaigns attached to the pool. For each campaign it does not serve yet (and
//! that is still running) it registers as a pilot of that campaign, exactly as the agent of
//! one campaign does, and opens a lane in the core: the campaign's manager adopts the pilot
//! and binds work to it with its usual code. A lane ends when its campaign ends, is
//! canceled, leaves the pool, or the manager shuts the pilot down; its pilot is marked DONE
//! and the agent goes on serving the pool. SIGTERM drains every lane and removes the agent
//! from the registry.

use crate::agent::core_loop::{self, CoreMsg};
use crate::agent::lane::{LaneEnded, Load};
use crate::agent::{
    core_settings, drain_triggers, register, AgentConfig, AgentSummary, LaneHandles, LaneIo,
};
use emanager_shared::broker::Broker;
use emanager_shared::pool::{PoolAgent, PoolLane, PoolName};
use emanager_shared::store::StateStore;
use emanager_shared::{now_ms, CampaignId, PilotId, PilotState};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// A pool agent's configuration.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    pub pool: PoolName,
    /// The agent's resources and settings. `pilot` is the agent's id in the pool; each
    /// campaign it serves gets a pilot of its own, and `campaign` is not used.
    pub agent: AgentConfig,
    /// Time constant of the fair-share usage history, in seconds.
    pub share_window_s: f64,
}

impl PoolConfig {
    pub fn new(pool: PoolName, agent: AgentConfig) -> Self {
        PoolConfig {
            pool,
            agent,
            share_window_s: crate::fairshare::DEFAULT_WINDOW_S,
        }
    }
}

/// Registry entries of agents silent for this long (and at least ten TTLs) are removed.
const STALE_AGENT_MS: u64 = 600_000;

/// One campaign being served.
struct Served {
    pilot: PilotId,
    weight: f64,
    load: Arc<Load>,
    handles: LaneHandles,
    /// Asked to stop (it left the pool); it ends when its tasks are finished or returned.
    leaving: bool,
}

struct Supervisor {
    cfg: PoolConfig,
    broker: Arc<dyn Broker>,
    store: Arc<dyn StateStore>,
    core: mpsc::UnboundedSender<CoreMsg>,
    draining: watch::Receiver<Option<String>>,
    served: BTreeMap<CampaignId, Served>,
    started_ms: u64,
}

/// Runs a pool agent until it drains (`stop` resolves, its allocation ends, or it idles out).
pub async fn run_pool(
    cfg: PoolConfig,
    broker: Arc<dyn Broker>,
    store: Arc<dyn StateStore>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<AgentSummary> {
    let (core_tx, core_rx) = mpsc::unbounded_channel::<CoreMsg>();
    let (ended_tx, mut ended_rx) = mpsc::unbounded_channel::<LaneEnded>();
    let (draining_tx, draining_rx) = watch::channel(None);
    let mut sup = Supervisor {
        broker,
        store,
        core: core_tx.clone(),
        draining: draining_rx,
        served: BTreeMap::new(),
        started_ms: now_ms(),
        cfg,
    };
    sup.beat().await?;
    sup.remove_stale_agents().await;
    tracing::info!(pool = %sup.cfg.pool, agent = %sup.cfg.agent.pilot, cores = sup.cfg.agent.total_cores(), "pool agent registered");

    let background = drain_triggers(&sup.cfg.agent, core_tx.clone(), stop);
    let mut core = tokio::spawn(core_loop::run(
        core_settings(&sup.cfg.agent, Some(sup.cfg.share_window_s)),
        Vec::new(),
        core_rx,
        core_tx,
        ended_tx,
        draining_tx,
    ));
    let mut tick = tokio::time::interval(sup.cfg.agent.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut beats = 0u64;
    let summary = loop {
        tokio::select! {
            r = &mut core => break r?,
            Some(ended) = ended_rx.recv() => sup.close(ended).await,
            _ = tick.tick() => {
                sup.sync().await;
                if let Err(e) = sup.beat().await {
                    crate::metrics::get().heartbeat_failures.inc();
                    tracing::warn!(error = %e, "pool heartbeat failed");
                }
                beats += 1;
                if beats.is_multiple_of(30) {
                    sup.remove_stale_agents().await;
                }
            }
        }
    };
    while let Ok(ended) = ended_rx.try_recv() {
        sup.close(ended).await;
    }
    // Lanes the core never took (it stopped while they were being attached).
    let left: Vec<CampaignId> = sup.served.keys().copied().collect();
    for c in left {
        let pilot = sup.served[&c].pilot;
        sup.close(LaneEnded {
            campaign: c,
            pilot,
            summary: AgentSummary {
                reason: summary.reason.clone(),
                ..Default::default()
            },
        })
        .await;
    }
    for b in background {
        b.abort();
    }
    if let Err(e) = sup
        .store
        .remove_pool_agent(&sup.cfg.pool, &sup.cfg.agent.pilot)
        .await
    {
        tracing::warn!(error = %e, "cannot remove this agent from the pool registry");
    }
    tracing::info!(pool = %sup.cfg.pool, agent = %sup.cfg.agent.pilot, done = summary.done, failed = summary.failed, returned = summary.returned, reason = %summary.reason, "pool agent stopped");
    Ok(summary)
}

impl Supervisor {
    fn draining(&self) -> bool {
        self.draining.borrow().is_some()
    }

    /// Writes this agent's registry entry: its resources, heartbeat and lanes.
    async fn beat(&self) -> anyhow::Result<()> {
        let a = &self.cfg.agent;
        let lanes: Vec<PoolLane> = self
            .served
            .iter()
            .map(|(c, s)| PoolLane {
                campaign: *c,
                pilot: s.pilot,
                weight: s.weight,
                busy_cores: s.load.busy_cores.load(Ordering::Relaxed),
                queued: s.load.queued.load(Ordering::Relaxed),
            })
            .collect();
        let entry = PoolAgent {
            id: a.pilot,
            state: if self.draining() {
                "DRAINING"
            } else {
                "ACTIVE"
            }
            .into(),
            resource: a.resource.clone(),
            job_id: a.job_id.clone(),
            host: a.nodes.first().map(|n| n.name.clone()).unwrap_or_default(),
            pid: std::process::id(),
            nodes: a.nodes.len() as u32,
            cores: a.total_cores(),
            gpus: a.nodes.iter().map(|n| n.gpus).sum(),
            mem_mb: a.nodes.iter().map(|n| n.mem_mb).sum(),
            busy_cores: lanes.iter().map(|l| l.busy_cores).sum(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            log_path: a.log_path.clone(),
            started_ms: self.started_ms,
            beat_ms: now_ms(),
            ttl_ms: a.heartbeat.as_millis() as u64 * 3,
            lanes,
        };
        self.store.put_pool_agent(&self.cfg.pool, &entry).await?;
        crate::metrics::get().heartbeats.inc();
        Ok(())
    }

    /// Matches the lanes to the campaigns attached to the pool: attaches the new ones that
    /// still run, passes weight changes on, and stops the lanes of campaigns that left.
    async fn sync(&mut self) {
        let attached = match self.store.pool_campaigns(&self.cfg.pool).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the pool's campaigns");
                return;
            }
        };
        for pc in &attached {
            if let Some(s) = self.served.get_mut(&pc.campaign) {
                if s.weight != pc.weight && !s.leaving {
                    s.weight = pc.weight;
                    let _ = self.core.send(CoreMsg::Weight(pc.campaign, pc.weight));
                }
                continue;
            }
            if self.draining() {
                continue;
            }
            match self.store.campaign(&pc.campaign).await {
                Ok(Some(m)) if !m.state.is_final() => {
                    if let Err(e) = self.attach(pc.campaign, pc.weight).await {
                        tracing::warn!(campaign = %pc.campaign, error = %e, "cannot serve campaign; trying again at the next heartbeat");
                    }
                }
                Ok(meta) => {
                    // Ended (or deleted) without its manager detaching it: tidy up for it.
                    let why = meta.map(|m| m.state.to_string()).unwrap_or("gone".into());
                    tracing::info!(campaign = %pc.campaign, state = %why, "removing a finished campaign from the pool");
                    let _ = self
                        .store
                        .detach_from_pool(&self.cfg.pool, &pc.campaign)
                        .await;
                }
                Err(e) => {
                    tracing::warn!(campaign = %pc.campaign, error = %e, "cannot read campaign")
                }
            }
        }
        for (c, s) in self.served.iter_mut() {
            if !s.leaving && !attached.iter().any(|pc| pc.campaign == *c) {
                s.leaving = true;
                let _ = self
                    .core
                    .send(CoreMsg::Detach(*c, "campaign left the pool".into()));
            }
        }
    }

    /// Registers as a new pilot of `c` and opens its lane.
    async fn attach(&mut self, c: CampaignId, weight: f64) -> anyhow::Result<()> {
        let cfg = AgentConfig {
            campaign: c,
            pilot: PilotId::random(),
            ..self.cfg.agent.clone()
        };
        self.broker.declare_pilot(&c, &cfg.pilot).await?;
        register(&cfg, self.store.as_ref(), Some(&self.cfg.pool)).await?;
        let (lane, io) = LaneIo::new(&cfg, weight, &self.broker, &self.store, true);
        let load = lane.load();
        if self.core.send(CoreMsg::Attach(lane)).is_err() {
            anyhow::bail!("the agent is stopping");
        }
        let handles = io.start(self.core.clone());
        tracing::info!(campaign = %c, pilot = %cfg.pilot, weight, "attached to campaign");
        self.served.insert(
            c,
            Served {
                pilot: cfg.pilot,
                weight,
                load,
                handles,
                leaving: false,
            },
        );
        Ok(())
    }

    /// A lane ended: flush its reports, stop its I/O, and mark its pilot DONE.
    async fn close(&mut self, ended: LaneEnded) {
        let Some(s) = self.served.remove(&ended.campaign) else {
            return;
        };
        s.handles.close().await;
        let reason = ended.summary.reason;
        if let Err(e) = self
            .store
            .pilot_transition(&ended.campaign, &ended.pilot, PilotState::Done, &reason)
            .await
        {
            tracing::warn!(campaign = %ended.campaign, error = %e, "cannot mark the campaign's pilot DONE");
        }
        tracing::info!(campaign = %ended.campaign, pilot = %ended.pilot, %reason, "detached from campaign");
    }

    /// Removes the registry entries of agents that stopped beating long ago (killed).
    async fn remove_stale_agents(&self) {
        let Ok(agents) = self.store.pool_agents(&self.cfg.pool).await else {
            return;
        };
        let now = now_ms();
        for a in agents {
            let limit = STALE_AGENT_MS.max(a.ttl_ms * 10);
            if a.id != self.cfg.agent.pilot && now.saturating_sub(a.beat_ms) > limit {
                tracing::info!(agent = %a.id, host = %a.host, "removing a long-silent agent from the pool registry");
                let _ = self.store.remove_pool_agent(&self.cfg.pool, &a.id).await;
            }
        }
    }
}
