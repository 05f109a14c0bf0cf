//! The manager's run loop: follows the campaign's events stream, binds ready tasks late to
//! pilots with room, retries failures, releases DAG dependents, watches pilot heartbeats and
//! rebinds the work of pilots that died.
//!
//! The driver always rebuilds its view from the state store, so `run` (a new campaign) and
//! `resume` (a campaign another manager left) are the same code.

mod binding;
mod pilots;
mod steering;
mod tasks;

use crate::campaign::{CampaignOptions, PilotRequest};
use crate::pilots::{LaunchState, LaunchedPilot, Launcher, Sites};
use crate::progress::Progress;
use crate::workflow::dag::Dag;
use crate::workflow::Workflow;
use emanager_shared::broker::{Broker, QueueKind};
use emanager_shared::health;
use emanager_shared::model::{EventKind, MAX_REASON_BYTES};
use emanager_shared::protocol::{Envelope, Message};
use emanager_shared::store::{StateStore, StoreError};
use emanager_shared::{
    BoundTask, CampaignId, CampaignState, PilotId, PilotState, TaskId, TaskSpec, TaskState,
    Transition, TransitionOutcome,
};
use std::cmp::Ordering as CmpOrdering;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The consumer group and consumer name of the manager on the events stream.
pub const EVENT_GROUP: &str = "manager";
const EVENT_CONSUMER: &str = "manager";
/// Tasks per published message.
const BATCH_TASKS: usize = 512;
const LEASE_TTL_MS: u64 = 15_000;

/// Everything `drive` needs.
pub struct RunContext {
    pub campaign: CampaignId,
    pub store: Arc<dyn StateStore>,
    pub broker: Arc<dyn Broker>,
    pub launcher: Launcher,
    pub workflow: Workflow,
    pub opts: CampaignOptions,
    pub progress: Progress,
    /// Resolves when the user interrupts the manager (Ctrl-C): stop following, leave the
    /// campaign resumable.
    pub interrupt: Option<tokio::sync::oneshot::Receiver<()>>,
}

/// Task counts per state.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Counts {
    pub total: u64,
    pub waiting: u64,
    pub ready: u64,
    pub scheduled: u64,
    pub executing: u64,
    pub done: u64,
    pub failed: u64,
    pub canceled: u64,
}

impl Counts {
    pub fn finished(&self) -> u64 {
        self.done + self.failed + self.canceled
    }
}

/// How a drive ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Ending {
    /// Every task is DONE, FAILED or CANCELED.
    Finished,
    /// The campaign was canceled.
    Canceled,
    /// The user interrupted the manager; the campaign goes on without it.
    Interrupted,
}

/// What a drive did.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub campaign: CampaignId,
    pub ending: Ending,
    pub counts: Counts,
    pub elapsed: Duration,
    /// Time from start to the first task EXECUTING.
    pub first_task_after: Option<Duration>,
    pub pilots: Vec<PilotSummary>,
    pub failures: Vec<(String, String)>,
    /// The manager's decisions about pilots, oldest first: `(ms since the epoch, text)`.
    pub decisions: Vec<(u64, String)>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct PilotSummary {
    pub id: PilotId,
    pub state: PilotState,
    pub cores: u32,
    pub done: u64,
    pub reason: String,
    pub log: String,
}

#[derive(Clone, Debug)]
struct TaskSlot {
    state: TaskState,
    attempt: u32,
    failures: u32,
    pilot: Option<PilotId>,
    /// Failed for good (retries used up, or can never fit).
    final_failure: bool,
    /// When it was last bound to a pilot (ms since the epoch; 0 never).
    bound_ms: u64,
}

/// A task queued on a pilot this long without starting may be moved to an idle pilot.
const STEAL_AFTER_MS: u64 = 1_000;

struct PilotSlot {
    request: Option<PilotRequest>,
    state: PilotState,
    registered: bool,
    cores: u32,
    node_cores: u32,
    gpus: u32,
    /// When its agent drains before its allocation ends (ms since the epoch); `None`: never.
    drain_at_ms: Option<u64>,
    launched_at: Instant,
    launch: Option<LaunchedPilot>,
    log: String,
    running_cores: u32,
    queued: u32,
    queued_cs: f64,
    bound: HashSet<usize>,
    done: u64,
    reason: String,
    /// Asked to drain because no work is left for it.
    released: bool,
    /// When it was last asked to give back queued tasks for an idle pilot.
    asked_to_return: Option<Instant>,
    /// Registered by a pool agent: shared with other campaigns, never released as idle.
    pool: bool,
    /// Since when its heartbeat key is missing (`None` while it beats).
    lapsed_since: Option<Instant>,
}

#[derive(PartialEq, Eq)]
struct ReadyKey {
    priority: i32,
    est_ms: u64,
    index: usize,
}

impl Ord for ReadyKey {
    fn cmp(&self, o: &Self) -> CmpOrdering {
        // Highest priority, then longest estimate first, then workflow order.
        self.priority
            .cmp(&o.priority)
            .then(self.est_ms.cmp(&o.est_ms))
            .then(o.index.cmp(&self.index))
    }
}

impl PartialOrd for ReadyKey {
    fn partial_cmp(&self, o: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(o))
    }
}

fn state_rank(s: TaskState) -> u8 {
    match s {
        TaskState::New => 0,
        TaskState::Waiting => 1,
        TaskState::Ready => 2,
        TaskState::Scheduled => 3,
        TaskState::AgentQueued => 4,
        TaskState::Executing => 5,
        TaskState::Done | TaskState::Failed | TaskState::Canceled => 6,
    }
}

/// Core-seconds of look-ahead a queued task takes (a floor, so unknown estimates count).
fn queued_cost(spec: &TaskSpec) -> f64 {
    spec.est_duration_s.max(0.005) * spec.cores.max(1) as f64
}

struct Driver {
    c: CampaignId,
    store: Arc<dyn StateStore>,
    broker: Arc<dyn Broker>,
    launcher: Launcher,
    sites: Sites,
    opts: CampaignOptions,
    specs: Vec<TaskSpec>,
    index: HashMap<TaskId, usize>,
    dag: Dag,
    tasks: Vec<TaskSlot>,
    ready: BinaryHeap<ReadyKey>,
    pilots: BTreeMap<PilotId, PilotSlot>,
    counts: Counts,
    replacements: u32,
    started: Instant,
    first_exec: Option<Duration>,
    failures: Vec<(String, String)>,
    holder: String,
    /// When the campaign was created (ms since the epoch), for adaptive execution.
    created_ms: u64,
    /// Adaptive execution's last check and how many tasks were final then.
    last_replan: Instant,
    finished_at_last_replan: u64,
    /// Resources that refused a pilot job: adaptive execution adds none there.
    refused: HashSet<String>,
}

/// Runs (or resumes) a campaign until every task is final, it is canceled, or interrupted.
pub async fn drive(mut ctx: RunContext) -> anyhow::Result<Outcome> {
    let holder = format!(
        "{}:{}:{}",
        pilot_agent::discovery::hostname(),
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    );
    if !ctx
        .store
        .acquire_lease(&ctx.campaign, &holder, LEASE_TTL_MS)
        .await?
    {
        anyhow::bail!(
            "another manager holds the lease of campaign {}; refusing to run it twice (wait {} s if that manager is dead)",
            ctx.campaign,
            LEASE_TTL_MS / 1000
        );
    }
    let mut launcher = std::mem::replace(
        &mut ctx.launcher,
        Launcher::InProcess {
            broker: ctx.broker.clone(),
            store: ctx.store.clone(),
        },
    );
    let mut interrupt = ctx.interrupt.take();
    let started = Instant::now();
    let mut store_outages = 0;
    let mut sites = Sites::from_options(&ctx.opts)?;
    loop {
        let mut d = Driver::new(&ctx, launcher, sites, holder.clone(), started);
        let mut result = d.run(&mut ctx.progress, &mut interrupt).await;
        if let Err(e) = &result {
            if store_outages < MAX_STORE_OUTAGES && is_store_outage(e) {
                // Redis went away mid-run (restart, failover). Wait for it, check the campaign
                // survived, and rebuild the view from it as `resume` would.
                store_outages += 1;
                tracing::warn!(error = %e, "state store failed; waiting for it to come back");
                health::unhealthy(HEALTH_STORE, format!("{e:#}; waiting for it to come back"));
                match wait_for_campaign(ctx.store.as_ref(), &ctx.campaign).await {
                    Ok(()) => {
                        health::healthy(HEALTH_STORE);
                        launcher = d.launcher;
                        sites = d.sites;
                        continue;
                    }
                    Err(lost) => result = Err(lost),
                }
            }
        }
        health::unwatch(HEALTH_RUN_LOOP);
        let _ = d.store.release_lease(&d.c, &d.holder).await;
        ctx.progress.finish();
        let ending = result?;
        let mut outcome = d.outcome(ending);
        outcome.decisions = d.store.decisions(&d.c).await.unwrap_or_default();
        return Ok(outcome);
    }
}

/// Names of the manager's signals in `/healthz`.
const HEALTH_STORE: &str = "state store";
const HEALTH_RUN_LOOP: &str = "run loop";
/// A run loop that has not turned for this long makes `/healthz` fail.
const RUN_LOOP_LIMIT: Duration = Duration::from_secs(120);

/// State store outages a drive rides out before it gives up.
const MAX_STORE_OUTAGES: u32 = 5;
/// How long the manager waits for the state store to come back.
const STORE_OUTAGE_WAIT: Duration = Duration::from_secs(60);

/// An error of the state store itself (connection lost, operation failed), as opposed to a
/// decision of the driver.
fn is_store_outage(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<StoreError>(),
        Some(StoreError::Operation { .. } | StoreError::Unreachable { .. })
    )
}

/// Waits until the state store answers again; an error if it came back without the campaign
/// (a Redis without persistence restarted) or did not come back in time.
async fn wait_for_campaign(store: &dyn StateStore, c: &CampaignId) -> anyhow::Result<()> {
    let end = Instant::now() + STORE_OUTAGE_WAIT;
    loop {
        match store.campaign(c).await {
            Ok(Some(_)) => {
                tracing::info!("state store is back with the campaign; resuming");
                return Ok(());
            }
            Ok(None) => anyhow::bail!(
                "the state of campaign {c} was lost: the state store came back without it (Redis restarted without persistence?); stopping without touching anything else. Start the campaign again"
            ),
            Err(e) if Instant::now() >= end => anyhow::bail!(
                "the state store of campaign {c} has been unreachable for {} s: {e}; resume it with `emanager resume {c}` once Redis is back",
                STORE_OUTAGE_WAIT.as_secs()
            ),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

impl Driver {
    fn new(
        ctx: &RunContext,
        launcher: Launcher,
        sites: Sites,
        holder: String,
        started: Instant,
    ) -> Driver {
        let specs: Vec<TaskSpec> = ctx
            .workflow
            .tasks
            .iter()
            .map(|t| t.to_spec(&ctx.campaign))
            .collect();
        let index = specs.iter().enumerate().map(|(i, s)| (s.id, i)).collect();
        Driver {
            c: ctx.campaign,
            store: ctx.store.clone(),
            broker: ctx.broker.clone(),
            launcher,
            sites,
            opts: ctx.opts.clone(),
            dag: Dag::new(&ctx.workflow),
            tasks: Vec::with_capacity(specs.len()),
            specs,
            index,
            ready: BinaryHeap::new(),
            pilots: BTreeMap::new(),
            counts: Counts::default(),
            replacements: 0,
            started,
            first_exec: None,
            failures: Vec::new(),
            holder,
            created_ms: emanager_shared::now_ms(),
            last_replan: Instant::now(),
            finished_at_last_replan: 0,
            refused: HashSet::new(),
        }
    }
}

impl Driver {
    async fn run(
        &mut self,
        progress: &mut Progress,
        interrupt: &mut Option<tokio::sync::oneshot::Receiver<()>>,
    ) -> anyhow::Result<Ending> {
        self.store.ensure_event_group(&self.c, EVENT_GROUP).await?;
        if let Some(p) = &self.opts.pool {
            // Idempotent: a resumed campaign attaches again (with the weight it was given).
            self.store
                .attach_to_pool(&p.name, &self.c, p.weight)
                .await?;
            tracing::info!(pool = %p.name, weight = p.weight, "attached to pool");
        }
        self.load_state().await?;
        self.adopt_pilots().await?;
        self.launch_missing_pilots().await?;
        self.fail_unfittable().await?;
        let mut last_check = Instant::now();
        let mut last_lease = Instant::now();
        let mut last_rebalance = Instant::now();
        progress.update(&self.counts, self.started.elapsed(), &self.pilot_line());
        health::watch(HEALTH_RUN_LOOP, RUN_LOOP_LIMIT);
        loop {
            health::beat(HEALTH_RUN_LOOP);
            if self.all_final() {
                self.finish().await?;
                return Ok(Ending::Finished);
            }
            if let Some(rx) = interrupt.as_mut() {
                if rx.try_recv().is_ok() {
                    return Ok(Ending::Interrupted);
                }
            }
            let events = self
                .store
                .read_events(&self.c, EVENT_GROUP, EVENT_CONSUMER, 10_000, 100)
                .await?;
            let mut pilot_changed = false;
            let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
            for e in events {
                match e.kind {
                    EventKind::Task {
                        task,
                        state,
                        attempt,
                        exit_code: _,
                        reason,
                        ..
                    } => self.on_task_event(task, state, attempt, reason).await?,
                    EventKind::Pilot { .. } => pilot_changed = true,
                }
            }
            self.store.ack_events(&self.c, EVENT_GROUP, &ids).await?;
            if pilot_changed || last_check.elapsed() >= Duration::from_secs(1) {
                last_check = Instant::now();
                self.check_pilots().await?;
                if self.campaign_canceled().await? {
                    self.cancel_everything().await?;
                    return Ok(Ending::Canceled);
                }
                if let Some(plan) = &self.opts.plan {
                    if self.last_replan.elapsed() >= Duration::from_secs(plan.replan_interval_s) {
                        self.follow_plan().await?;
                    }
                }
            }
            if last_lease.elapsed() >= Duration::from_secs(3) {
                last_lease = Instant::now();
                if !self
                    .store
                    .acquire_lease(&self.c, &self.holder, LEASE_TTL_MS)
                    .await?
                {
                    anyhow::bail!("lost the lease of campaign {} to another manager", self.c);
                }
            }
            self.bind_ready_tasks().await?;
            if last_rebalance.elapsed() >= Duration::from_secs(1) {
                last_rebalance = Instant::now();
                self.rebalance().await?;
            }
            crate::metrics::get().observe(&self.counts, self.pilots.values().map(|p| p.state));
            progress.update(&self.counts, self.started.elapsed(), &self.pilot_line());
        }
    }

    async fn campaign_canceled(&self) -> anyhow::Result<bool> {
        match self.store.campaign(&self.c).await? {
            Some(m) => Ok(m.state == CampaignState::Canceled),
            None => anyhow::bail!(
                "campaign {} disappeared from the state store (Redis restarted without persistence?); stopping without touching anything else",
                self.c
            ),
        }
    }

    /// Every task is final: stop the pilots and close the campaign.
    async fn finish(&mut self) -> anyhow::Result<()> {
        self.leave_pool().await?;
        self.shutdown_pilots().await;
        let state = if self.counts.failed > 0 || self.counts.canceled > 0 {
            CampaignState::Failed
        } else {
            CampaignState::Done
        };
        self.store.set_campaign_state(&self.c, state).await?;
        Ok(())
    }

    fn pilot_line(&self) -> String {
        let active = self
            .pilots
            .values()
            .filter(|p| p.registered && !p.state.is_final())
            .count();
        let cores: u32 = self
            .pilots
            .values()
            .filter(|p| p.registered && !p.state.is_final())
            .map(|p| p.cores)
            .sum();
        format!("{active} pilots, {cores} cores")
    }

    fn outcome(&self, ending: Ending) -> Outcome {
        Outcome {
            campaign: self.c,
            ending,
            counts: self.counts.clone(),
            elapsed: self.started.elapsed(),
            first_task_after: self.first_exec,
            pilots: self
                .pilots
                .iter()
                .map(|(id, p)| PilotSummary {
                    id: *id,
                    state: p.state,
                    cores: p.cores,
                    done: p.done,
                    reason: p.reason.clone(),
                    log: p.log.clone(),
                })
                .collect(),
            failures: self.failures.clone(),
            decisions: Vec::new(),
        }
    }
}

/// A reason cut to what the store keeps.
fn truncate_reason(why: &str) -> String {
    let mut why = why.to_string();
    if why.len() > MAX_REASON_BYTES {
        let mut end = MAX_REASON_BYTES;
        while !why.is_char_boundary(end) {
            end -= 1;
        }
        why.truncate(end);
    }
    why
}

fn new_pilot_slot(request: Option<PilotRequest>, state: PilotState) -> PilotSlot {
    PilotSlot {
        request,
        state,
        registered: false,
        cores: 0,
        node_cores: 0,
        gpus: 0,
        drain_at_ms: None,
        launched_at: Instant::now(),
        launch: None,
        log: String::new(),
        running_cores: 0,
        queued: 0,
        queued_cs: 0.0,
        bound: HashSet::new(),
        done: 0,
        reason: String::new(),
        released: false,
        asked_to_return: None,
        pool: false,
        lapsed_since: None,
    }
}
