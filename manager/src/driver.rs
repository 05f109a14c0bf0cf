//! The manager's run loop: follows the campaign's events stream, binds ready tasks late to
//! pilots with room, retries failures, releases DAG dependents, watches pilot heartbeats and
//! rebinds the work of pilots that died.
//!
//! The driver always rebuilds its view from the state store, so `run` (a new campaign) and
//! `resume` (a campaign another manager left) are the same code.

use crate::campaign::{CampaignOptions, PilotRequest};
use crate::pilots::{LaunchState, LaunchedPilot, Launcher, Sites};
use crate::progress::Progress;
use crate::workflow::dag::Dag;
use crate::workflow::Workflow;
use emanager_shared::broker::{Broker, QueueKind};
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
}

struct PilotSlot {
    request: Option<PilotRequest>,
    state: PilotState,
    registered: bool,
    cores: u32,
    node_cores: u32,
    gpus: u32,
    walltime_end_ms: u64,
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
                match wait_for_campaign(ctx.store.as_ref(), &ctx.campaign).await {
                    Ok(()) => {
                        launcher = d.launcher;
                        sites = d.sites;
                        continue;
                    }
                    Err(lost) => result = Err(lost),
                }
            }
        }
        let _ = d.store.release_lease(&d.c, &d.holder).await;
        ctx.progress.finish();
        let ending = result?;
        let mut outcome = d.outcome(ending);
        outcome.decisions = d.store.decisions(&d.c).await.unwrap_or_default();
        return Ok(outcome);
    }
}

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
        loop {
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

    /// Rebuilds the view from the task records (a new campaign, or one being resumed).
    async fn load_state(&mut self) -> anyhow::Result<()> {
        let records: HashMap<TaskId, emanager_shared::TaskRecord> = self
            .store
            .task_records(&self.c)
            .await?
            .into_iter()
            .collect();
        if records.is_empty() && !self.specs.is_empty() {
            anyhow::bail!(
                "campaign {} has no task records in the state store; if Redis was restarted without persistence, its state is lost: start the campaign again",
                self.c
            );
        }
        if let Some(meta) = self.store.campaign(&self.c).await? {
            self.created_ms = meta.created_ms;
        }
        self.counts.total = self.specs.len() as u64;
        for spec in &self.specs {
            let rec = records.get(&spec.id).cloned().unwrap_or_default();
            self.tasks.push(TaskSlot {
                state: rec.state(),
                attempt: rec.a,
                failures: rec.f,
                pilot: rec.pilot(),
                final_failure: rec.state() == TaskState::Failed && rec.f > spec.retries,
            });
        }
        // Replay DONE tasks through the DAG so dependents are where they should be.
        for i in 0..self.tasks.len() {
            if self.tasks[i].state == TaskState::Done {
                self.dag.complete(i);
            }
            self.count(self.tasks[i].state, 1);
        }
        // A manager stopped between a task's end (FAILED for good, CANCELED) and cancelling
        // its dependents left them WAITING for good: cancel them now, failures first so
        // each dependent names the parent the live run would have named.
        let ended: Vec<usize> = (0..self.tasks.len())
            .filter(|&i| self.tasks[i].state == TaskState::Failed && self.tasks[i].final_failure)
            .chain((0..self.tasks.len()).filter(|&i| self.tasks[i].state == TaskState::Canceled))
            .collect();
        for i in ended {
            self.cancel_dependents(i).await?;
        }
        let mut to_ready = Vec::new();
        let mut retry = Vec::new();
        for i in 0..self.tasks.len() {
            let slot = &self.tasks[i];
            match slot.state {
                TaskState::New | TaskState::Waiting if !self.dag.is_waiting(i) => to_ready.push(i),
                TaskState::Ready => self.push_ready(i),
                TaskState::Failed if !slot.final_failure => retry.push(i),
                _ => {}
            }
        }
        let trs: Vec<Transition> = to_ready
            .iter()
            .chain(retry.iter())
            .map(|&i| Transition::new(self.specs[i].id, self.tasks[i].attempt, TaskState::Ready))
            .collect();
        let outs = self.store.transition(&self.c, &trs).await?;
        for (&i, o) in to_ready.iter().chain(retry.iter()).zip(outs) {
            if o == TransitionOutcome::Applied {
                self.set_state(i, TaskState::Ready);
                self.push_ready(i);
            }
        }
        for i in 0..self.tasks.len() {
            if self.tasks[i].state == TaskState::Failed && self.tasks[i].final_failure {
                self.failures.push((
                    self.specs[i].name.clone(),
                    records
                        .get(&self.specs[i].id)
                        .map(|r| r.r.clone())
                        .unwrap_or_default(),
                ));
            }
        }
        Ok(())
    }

    /// Takes over pilots already registered for this campaign (resume, or agents started by
    /// hand), with the work bound to them.
    async fn adopt_pilots(&mut self) -> anyhow::Result<()> {
        for v in self.store.pilots(&self.c).await? {
            if v.record.state.is_final() {
                continue;
            }
            let mut slot = new_pilot_slot(None, v.record.state);
            if !v.record.job_id.is_empty() && v.record.state != PilotState::Active {
                // A batch pilot an earlier manager submitted: follow its job.
                slot.launch = self.sites.watch(&v.record.resource, &v.record.job_id);
            }
            slot.registered = v.record.state == PilotState::Active;
            slot.pool = !v.record.pool.is_empty();
            slot.cores = v.record.cores;
            slot.node_cores = v.record.cores / v.record.nodes.max(1);
            slot.gpus = v.record.gpus;
            slot.walltime_end_ms = v.record.walltime_end_ms;
            slot.log = v.record.log_path.clone();
            self.pilots.insert(v.record.id, slot);
        }
        for i in 0..self.tasks.len() {
            let s = &self.tasks[i];
            if s.state.is_on_pilot() {
                if let Some(p) = s.pilot {
                    let state = s.state;
                    let cs = queued_cost(&self.specs[i]);
                    let cores = self.specs[i].cores;
                    if let Some(ps) = self.pilots.get_mut(&p) {
                        ps.bound.insert(i);
                        if state == TaskState::Executing {
                            ps.running_cores += cores;
                        } else {
                            ps.queued += 1;
                            ps.queued_cs += cs;
                        }
                    }
                }
            }
        }
        // Work bound to pilots that are gone goes back to READY.
        let orphans: Vec<usize> = (0..self.tasks.len())
            .filter(|&i| {
                let s = &self.tasks[i];
                s.state.is_on_pilot()
                    && s.pilot
                        .map(|p| !self.pilots.contains_key(&p))
                        .unwrap_or(true)
            })
            .collect();
        self.rebind(&orphans, "its pilot ended while no manager was running")
            .await?;
        // A SCHEDULED task may never have been published: the previous manager can die
        // between writing the binding and publishing it, and nothing would ever move it
        // again. Rebind it; if its message is in the queue after all, the next binding's
        // attempt fences it out.
        let unsent: Vec<usize> = (0..self.tasks.len())
            .filter(|&i| self.tasks[i].state == TaskState::Scheduled)
            .collect();
        self.rebind(
            &unsent,
            "bound by a previous manager; publication not known",
        )
        .await?;
        Ok(())
    }

    async fn launch_missing_pilots(&mut self) -> anyhow::Result<()> {
        let live = self.pilots.values().filter(|p| !p.state.is_final()).count();
        let wanted: Vec<(usize, PilotRequest)> = self
            .opts
            .pilots
            .iter()
            .cloned()
            .enumerate()
            .skip(live)
            .collect();
        for (i, req) in wanted {
            let why = match self.opts.plan.as_ref().and_then(|p| p.pilots.get(i)) {
                Some(planned) => format!(
                    "planned ({}): {}",
                    self.opts.plan.as_ref().map_or("", |p| p.strategy.as_str()),
                    planned.why
                ),
                None => "asked for by the campaign".to_string(),
            };
            self.launch(req, &why).await?;
        }
        Ok(())
    }

    /// Records a decision of this manager (logged, and kept with the campaign for `status`).
    async fn decision(&self, text: String) -> anyhow::Result<()> {
        tracing::info!(decision = %text, "decision");
        self.store
            .add_decision(&self.c, emanager_shared::now_ms(), &text)
            .await?;
        Ok(())
    }

    /// Adaptive execution of a planned campaign: compare its progress with the plan, add a
    /// pilot when it falls behind, cancel queued pilots the running ones do not need.
    async fn follow_plan(&mut self) -> anyhow::Result<()> {
        let Some(plan) = self.opts.plan.clone() else {
            return Ok(());
        };
        let finished = self.counts.finished();
        let remaining_core_s: f64 = self
            .specs
            .iter()
            .zip(&self.tasks)
            .filter(|(_, t)| !t.state.is_final())
            .map(|(s, _)| s.est_duration_s.max(0.0) * s.cores.max(1) as f64)
            .sum();
        let live = |p: &PilotSlot| !p.state.is_final() && !p.released;
        let progress = crate::adaptive::Progress {
            elapsed_s: emanager_shared::now_ms().saturating_sub(self.created_ms) as f64 / 1000.0,
            remaining_tasks: self.counts.total - finished,
            remaining_core_s,
            active_cores: self
                .pilots
                .values()
                .filter(|p| live(p) && p.registered)
                .map(|p| p.cores)
                .sum(),
            finished_in_window: finished.saturating_sub(self.finished_at_last_replan),
            window_s: self.last_replan.elapsed().as_secs_f64(),
            live_pilots: self.pilots.values().filter(|p| live(p)).count() as u32,
        };
        let queued: Vec<crate::adaptive::QueuedPilot<PilotId>> = self
            .pilots
            .iter()
            .filter(|(_, p)| live(p) && !p.registered)
            .filter_map(|(id, p)| {
                let req = p.request.as_ref()?;
                let wait = plan.predicted_wait_s(&req.resource);
                Some(crate::adaptive::QueuedPilot {
                    id: *id,
                    cores: req.cores,
                    starts_in_s: (wait - p.launched_at.elapsed().as_secs_f64()).max(0.0),
                })
            })
            .collect();
        self.last_replan = Instant::now();
        self.finished_at_last_replan = finished;
        for d in crate::adaptive::decide(&plan, &progress, &queued) {
            match d {
                crate::adaptive::Decision::AddPilot { why } => {
                    // The planned pilot that starts soonest, on a resource that takes jobs.
                    let pick = plan
                        .pilots
                        .iter()
                        .zip(&self.opts.pilots)
                        .filter(|(pp, _)| !self.refused.contains(&pp.resource))
                        .min_by(|a, b| a.0.predicted_wait_s.total_cmp(&b.0.predicted_wait_s))
                        .map(|(_, req)| req.clone());
                    match pick {
                        Some(req) => {
                            let why =
                                format!("behind plan: {why}; adding a pilot on {}", req.resource);
                            self.launch(req, &why).await?;
                        }
                        None => {
                            self.decision(format!("behind plan ({why}) but every planned resource refused its pilots: nothing to add")).await?;
                        }
                    }
                }
                crate::adaptive::Decision::CancelQueued { id, why } => {
                    self.cancel_unstarted(id, &format!("not needed: {why}"))
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Cancels a pilot that has not started (its job, or its process), with why.
    async fn cancel_unstarted(&mut self, id: PilotId, why: &str) -> anyhow::Result<()> {
        if let Some(p) = self.pilots.get_mut(&id) {
            p.released = true;
            if let Some(l) = p.launch.as_mut() {
                let _ = l.kill();
            }
        }
        self.store
            .pilot_transition(&self.c, &id, PilotState::Canceled, why)
            .await?;
        if let Some(p) = self.pilots.get_mut(&id) {
            p.state = PilotState::Canceled;
            p.reason = why.into();
        }
        let _ = self.broker.delete_pilot(&self.c, &id).await;
        self.decision(format!("canceled pilot {}: {why}", id.short()))
            .await
    }

    /// Starts a pilot for `req`: an agent here (in process or as a process), or a batch job
    /// on a catalog resource. A job the batch system refuses makes a FAILED pilot with the
    /// scheduler's message (not replaced: it would be refused again); the work goes to the
    /// other pilots.
    async fn launch(&mut self, req: PilotRequest, why: &str) -> anyhow::Result<()> {
        let id = PilotId::random();
        self.broker.declare_pilot(&self.c, &id).await?;
        let mut rec = emanager_shared::model::PilotRecord::new(id, req.resource.clone());
        rec.state = PilotState::Submitted;
        rec.cores = req.cores;
        rec.gpus = req.gpus;
        rec.nodes = req.nodes.max(1);
        // A batch pilot's is set again with its job id, when the batch system has it.
        rec.submitted_ms = emanager_shared::now_ms();
        let batch = self.sites.batch_resource(&req.resource).is_some();
        let launched = if batch {
            let Some(target) = self.launcher.agent_target() else {
                anyhow::bail!(
                    "pilot on `{}`: batch pilots need RabbitMQ and Redis that the allocation can reach; give --amqp-url and --redis-url",
                    req.resource
                );
            };
            let r = self
                .sites
                .batch_resource(&req.resource)
                .cloned()
                .expect("checked above");
            let preview =
                crate::pilots::pilot_job(&self.c, id, &req, &self.opts, &target, &r).map(|j| j.log);
            rec.log_path = preview.unwrap_or_default();
            self.store.put_pilot(&self.c, &rec).await?;
            let target = self.launcher.agent_target().expect("checked above");
            self.sites
                .submit(&self.c, id, &req, &self.opts, &target)
                .map_err(|e| format!("pilot job refused: {e}"))
        } else {
            // Recorded before it starts, so the agent's registration always comes after.
            rec.log_path = self.launcher.log_path(&self.c, &id, &self.opts);
            self.store.put_pilot(&self.c, &rec).await?;
            self.launcher
                .launch(&self.c, id, &req, &self.opts)
                .await
                .map_err(|e| format!("{e:#}"))
        };
        match launched {
            Ok((launch, log)) => {
                let walltime = req
                    .walltime_s
                    .map(|w| format!(" for {}", emanager_shared::access::timefmt::format_hms(w)))
                    .unwrap_or_default();
                self.decision(format!(
                    "started pilot {} on {} ({} node(s), {} cores{walltime}): {why}",
                    id.short(),
                    req.resource,
                    req.nodes,
                    req.cores
                ))
                .await?;
                let mut slot = new_pilot_slot(Some(req), PilotState::Submitted);
                slot.launch = Some(launch);
                slot.log = log;
                self.pilots.insert(id, slot);
            }
            Err(why) => {
                tracing::warn!(pilot = %id, resource = %req.resource, reason = %why, "pilot could not start");
                self.refused.insert(req.resource.clone());
                self.decision(format!(
                    "pilot {} on {} could not start: {why}",
                    id.short(),
                    req.resource
                ))
                .await?;
                let why = truncate_reason(&why);
                self.store
                    .pilot_transition(&self.c, &id, PilotState::Failed, &why)
                    .await?;
                let mut slot = new_pilot_slot(None, PilotState::Failed);
                slot.reason = why;
                self.pilots.insert(id, slot);
            }
        }
        Ok(())
    }

    /// Tasks that fit no pilot this campaign can ever get fail at once, with the reason.
    async fn fail_unfittable(&mut self) -> anyhow::Result<()> {
        let shapes: Vec<(u32, u32, u32)> = self
            .opts
            .pilots
            .iter()
            .map(|r| (r.cores, r.node_cores(), r.gpus))
            .chain(
                self.pilots
                    .values()
                    .filter(|p| p.registered)
                    .map(|p| (p.cores, p.node_cores, p.gpus)),
            )
            .collect();
        if shapes.is_empty() {
            return Ok(());
        }
        let max_node = shapes.iter().map(|s| s.1).max().unwrap_or(0);
        let max_gpus = shapes.iter().map(|s| s.2).max().unwrap_or(0);
        let mut doomed = Vec::new();
        for i in 0..self.tasks.len() {
            if !matches!(self.tasks[i].state, TaskState::Ready | TaskState::Waiting) {
                continue;
            }
            let s = &self.specs[i];
            let fits = shapes.iter().any(|&(cores, node_cores, gpus)| {
                let c = if s.mpi { cores } else { node_cores };
                s.cores <= c && s.gpus <= gpus
            });
            if !fits {
                let why = if s.cores > max_node {
                    format!(
                        "can never fit: task `{}` asks for {} cores; the largest pilot node has {max_node}",
                        s.name, s.cores
                    )
                } else {
                    format!(
                        "can never fit: task `{}` asks for {} GPUs; the largest pilot has {max_gpus}",
                        s.name, s.gpus
                    )
                };
                doomed.push((i, why));
            }
        }
        for (i, why) in doomed {
            if self.tasks[i].state == TaskState::Waiting {
                continue; // its parents may fail first; it is canceled or failed when released
            }
            self.fail_for_good(i, &why).await?;
        }
        Ok(())
    }

    async fn fail_for_good(&mut self, i: usize, why: &str) -> anyhow::Result<()> {
        let t = Transition::new(self.specs[i].id, self.tasks[i].attempt, TaskState::Failed)
            .with_reason(why)
            .failure();
        if self.store.transition(&self.c, &[t]).await?[0] == TransitionOutcome::Applied {
            tracing::warn!(task = %self.specs[i].name, "{why}");
            self.set_state(i, TaskState::Failed);
            self.tasks[i].final_failure = true;
            self.failures
                .push((self.specs[i].name.clone(), why.to_string()));
            self.cancel_dependents(i).await?;
        }
        Ok(())
    }

    fn count(&mut self, s: TaskState, delta: i64) {
        let c = match s {
            TaskState::New | TaskState::Waiting => &mut self.counts.waiting,
            TaskState::Ready => &mut self.counts.ready,
            TaskState::Scheduled | TaskState::AgentQueued => &mut self.counts.scheduled,
            TaskState::Executing => &mut self.counts.executing,
            TaskState::Done => &mut self.counts.done,
            TaskState::Failed => &mut self.counts.failed,
            TaskState::Canceled => &mut self.counts.canceled,
        };
        *c = (*c as i64 + delta).max(0) as u64;
    }

    fn set_state(&mut self, i: usize, s: TaskState) {
        let old = self.tasks[i].state;
        self.count(old, -1);
        self.count(s, 1);
        self.tasks[i].state = s;
    }

    fn push_ready(&mut self, i: usize) {
        let s = &self.specs[i];
        crate::metrics::get().ready(s.id);
        self.ready.push(ReadyKey {
            priority: s.priority,
            est_ms: (s.est_duration_s.max(0.0) * 1000.0) as u64,
            index: i,
        });
    }

    fn all_final(&self) -> bool {
        self.counts.finished() == self.counts.total
            && self
                .tasks
                .iter()
                .all(|t| t.state != TaskState::Failed || t.final_failure)
    }

    /// Removes task `i` from its pilot's books (before its state changes).
    fn unbind(&mut self, i: usize) {
        let slot = &self.tasks[i];
        let Some(p) = slot.pilot else { return };
        let state = slot.state;
        let cores = self.specs[i].cores;
        let cs = queued_cost(&self.specs[i]);
        if let Some(ps) = self.pilots.get_mut(&p) {
            if ps.bound.remove(&i) {
                match state {
                    TaskState::Executing => {
                        ps.running_cores = ps.running_cores.saturating_sub(cores)
                    }
                    TaskState::Scheduled | TaskState::AgentQueued => {
                        ps.queued = ps.queued.saturating_sub(1);
                        ps.queued_cs = (ps.queued_cs - cs).max(0.0);
                    }
                    _ => {}
                }
            }
        }
    }

    async fn on_task_event(
        &mut self,
        task: TaskId,
        state: TaskState,
        attempt: u32,
        reason: String,
    ) -> anyhow::Result<()> {
        let Some(&i) = self.index.get(&task) else {
            return Ok(());
        };
        let slot = &self.tasks[i];
        if attempt != slot.attempt || slot.state == state {
            return Ok(()); // an older attempt, or our own transition
        }
        let returned = state == TaskState::Ready && slot.state.is_on_pilot();
        if !returned && state_rank(state) <= state_rank(slot.state) {
            return Ok(());
        }
        match state {
            TaskState::AgentQueued => self.set_state(i, state),
            TaskState::Executing => {
                if self.first_exec.is_none() {
                    self.first_exec = Some(self.started.elapsed());
                }
                let cores = self.specs[i].cores;
                let cs = queued_cost(&self.specs[i]);
                if let Some(ps) = self.tasks[i].pilot.and_then(|p| self.pilots.get_mut(&p)) {
                    if ps.bound.contains(&i) {
                        ps.queued = ps.queued.saturating_sub(1);
                        ps.queued_cs = (ps.queued_cs - cs).max(0.0);
                        ps.running_cores += cores;
                    }
                }
                self.set_state(i, state);
            }
            TaskState::Done => {
                if let Some(ps) = self.tasks[i].pilot.and_then(|p| self.pilots.get_mut(&p)) {
                    ps.done += 1;
                }
                self.unbind(i);
                self.set_state(i, state);
                for child in self.dag.complete(i) {
                    self.release(child).await?;
                }
            }
            TaskState::Failed => {
                self.unbind(i);
                self.tasks[i].failures += 1;
                self.set_state(i, state);
                if self.tasks[i].failures <= self.specs[i].retries {
                    tracing::info!(task = %self.specs[i].name, attempt, %reason, "task failed; retrying");
                    let t = Transition::new(task, attempt, TaskState::Ready)
                        .with_reason(format!("retry after: {reason}"));
                    if self.store.transition(&self.c, &[t]).await?[0] == TransitionOutcome::Applied
                    {
                        self.set_state(i, TaskState::Ready);
                        self.tasks[i].pilot = None;
                        self.push_ready(i);
                    }
                } else {
                    tracing::warn!(task = %self.specs[i].name, %reason, "task failed for good");
                    self.tasks[i].final_failure = true;
                    self.failures.push((self.specs[i].name.clone(), reason));
                    self.cancel_dependents(i).await?;
                }
            }
            TaskState::Ready => {
                // Returned by its agent (draining, walltime, shutdown).
                self.unbind(i);
                self.tasks[i].pilot = None;
                self.set_state(i, state);
                self.push_ready(i);
            }
            TaskState::Canceled => {
                self.unbind(i);
                self.set_state(i, state);
                self.cancel_dependents(i).await?;
            }
            _ => {}
        }
        Ok(())
    }

    /// A child whose parents are all DONE becomes READY.
    async fn release(&mut self, i: usize) -> anyhow::Result<()> {
        if self.tasks[i].state != TaskState::Waiting {
            return Ok(());
        }
        let t = Transition::new(self.specs[i].id, self.tasks[i].attempt, TaskState::Ready);
        if self.store.transition(&self.c, &[t]).await?[0] == TransitionOutcome::Applied {
            self.set_state(i, TaskState::Ready);
            self.push_ready(i);
        }
        Ok(())
    }

    async fn cancel_dependents(&mut self, i: usize) -> anyhow::Result<()> {
        // `fail` walks each later task once over all failures, not once per failure.
        let deps = self.dag.fail(i);
        if deps.is_empty() {
            return Ok(());
        }
        let why = if self.tasks[i].state == TaskState::Canceled {
            crate::workflow::dag::parent_canceled_reason(&self.specs[i].name)
        } else {
            crate::workflow::dag::parent_failed_reason(&self.specs[i].name)
        };
        let targets: Vec<usize> = deps
            .into_iter()
            .filter(|&d| !self.tasks[d].state.is_final())
            .collect();
        let trs: Vec<Transition> = targets
            .iter()
            .map(|&d| {
                Transition::new(self.specs[d].id, self.tasks[d].attempt, TaskState::Canceled)
                    .with_reason(&why)
            })
            .collect();
        let outs = self.store.transition(&self.c, &trs).await?;
        for (&d, o) in targets.iter().zip(outs) {
            if o == TransitionOutcome::Applied {
                self.unbind(d);
                self.set_state(d, TaskState::Canceled);
            }
        }
        Ok(())
    }

    /// Puts tasks bound to a lost pilot back to READY (their attempt is fenced by the next
    /// binding, so a zombie agent cannot complete them).
    async fn rebind(&mut self, tasks: &[usize], why: &str) -> anyhow::Result<()> {
        if tasks.is_empty() {
            return Ok(());
        }
        let trs: Vec<Transition> = tasks
            .iter()
            .map(|&i| {
                Transition {
                    pilot: Some(None),
                    ..Transition::new(self.specs[i].id, self.tasks[i].attempt, TaskState::Ready)
                }
                .with_reason(why)
            })
            .collect();
        let outs = self.store.transition(&self.c, &trs).await?;
        let mut resync = Vec::new();
        for (&i, o) in tasks.iter().zip(outs) {
            if o == TransitionOutcome::Applied {
                self.unbind(i);
                self.tasks[i].pilot = None;
                self.set_state(i, TaskState::Ready);
                self.push_ready(i);
            } else {
                resync.push(i);
            }
        }
        // The store moved on (e.g. the task finished just before): its events will tell.
        if !resync.is_empty() {
            tracing::debug!(count = resync.len(), "rebind raced with task completion");
        }
        Ok(())
    }

    async fn check_pilots(&mut self) -> anyhow::Result<()> {
        let views = self.store.pilots(&self.c).await?;
        let timeout = Duration::from_secs(self.opts.pilot_start_timeout_s);
        let mut lost: Vec<(PilotId, PilotState, String)> = Vec::new();
        let mut queued: Vec<PilotId> = Vec::new();
        for v in &views {
            let id = v.record.id;
            let slot = self
                .pilots
                .entry(id)
                .or_insert_with(|| new_pilot_slot(None, v.record.state));
            if slot.state.is_final() {
                continue;
            }
            if v.record.state == PilotState::Active && !slot.registered {
                slot.registered = true;
                slot.state = PilotState::Active;
                slot.pool = !v.record.pool.is_empty();
                slot.cores = v.record.cores;
                slot.node_cores = v.record.cores / v.record.nodes.max(1);
                slot.gpus = v.record.gpus;
                slot.walltime_end_ms = v.record.walltime_end_ms;
                if !v.record.log_path.is_empty() {
                    slot.log = v.record.log_path.clone();
                }
                tracing::info!(pilot = %id, cores = slot.cores, "pilot active");
                crate::pilot_waits::record_queue_wait(
                    self.store.as_ref(),
                    &self.c,
                    &v.record,
                    slot.request.as_ref(),
                    &self.sites,
                )
                .await;
            }
            if v.record.state.is_final() {
                lost.push((
                    id,
                    v.record.state,
                    format!("pilot is {}: {}", v.record.state, v.record.reason),
                ));
                continue;
            }
            if slot.registered && !v.alive {
                let age = v.heartbeat_age_ms.map(|a| a / 1000).unwrap_or(0);
                lost.push((
                    id,
                    PilotState::Failed,
                    format!("heartbeat lapsed (last beat {age} s ago)"),
                ));
                continue;
            }
            if !slot.registered {
                let state = match slot.launch.as_mut() {
                    Some(l) => l.poll().await,
                    None => LaunchState::Starting,
                };
                // A batch pilot's start timeout counts from its job's start: a queue wait is
                // not a failure.
                let since = match &state {
                    LaunchState::Running(t) => Some(*t),
                    LaunchState::Queued => None,
                    _ if matches!(
                        slot.launch,
                        Some(LaunchedPilot::Batch(_) | LaunchedPilot::Submitting(_))
                    ) =>
                    {
                        None
                    }
                    _ => Some(slot.launched_at),
                };
                match state {
                    LaunchState::Submitted(job) => {
                        tracing::info!(pilot = %id, %job, "pilot job submitted");
                        self.store.set_pilot_job(&self.c, &id, &job).await?;
                    }
                    LaunchState::Refused(reason) => {
                        // Asking again would be refused again: no replacement.
                        if let Some(r) = slot.request.take() {
                            self.refused.insert(r.resource);
                        }
                        lost.push((id, PilotState::Failed, reason));
                        continue;
                    }
                    LaunchState::Gone(reason) => {
                        let tail = crate::pilots::log_tail(std::path::Path::new(&slot.log), 5);
                        let tail = if tail.trim().is_empty() {
                            String::new()
                        } else {
                            format!("; log {}: {tail}", slot.log)
                        };
                        lost.push((
                            id,
                            PilotState::Failed,
                            format!("{reason} before its agent registered{tail}"),
                        ));
                        continue;
                    }
                    LaunchState::Queued if slot.state == PilotState::Submitted => {
                        queued.push(id);
                    }
                    _ => {}
                }
                if since.is_some_and(|t| t.elapsed() > timeout) {
                    lost.push((
                        id,
                        PilotState::Failed,
                        format!("did not register within {} s", timeout.as_secs()),
                    ));
                }
            }
        }
        for id in queued {
            if self
                .store
                .pilot_transition(
                    &self.c,
                    &id,
                    PilotState::Queued,
                    "waiting in the batch queue",
                )
                .await?
            {
                if let Some(slot) = self.pilots.get_mut(&id) {
                    slot.state = PilotState::Queued;
                }
            }
        }
        for (id, state, why) in lost {
            self.lose_pilot(id, state, &why).await?;
        }
        self.release_idle_pilots().await?;
        self.ensure_a_pilot().await?;
        let active = self
            .pilots
            .iter()
            .filter(|(_, p)| p.registered && p.state == PilotState::Active);
        crate::metrics::sample_queue_depth(
            self.broker.as_ref(),
            &self.c,
            active.map(|(id, _)| *id),
        )
        .await;
        Ok(())
    }

    async fn lose_pilot(
        &mut self,
        id: PilotId,
        state: PilotState,
        why: &str,
    ) -> anyhow::Result<()> {
        let why = truncate_reason(why);
        self.store
            .pilot_transition(&self.c, &id, state, &why)
            .await?;
        let Some(slot) = self.pilots.get_mut(&id) else {
            return Ok(());
        };
        if state == PilotState::Failed {
            tracing::warn!(pilot = %id, reason = %why, "pilot lost");
        } else {
            tracing::info!(pilot = %id, reason = %why, "pilot ended");
        }
        slot.state = state;
        slot.reason = why.clone();
        let released = slot.released;
        if let Some(l) = slot.launch.as_mut() {
            if state == PilotState::Failed && l.may_be_alive() {
                let _ = l.kill(); // in the background: the rest of the campaign goes on
            }
        }
        let request = slot.request.clone();
        let bound: Vec<usize> = slot.bound.iter().copied().collect();
        if state == PilotState::Failed || !released {
            self.decision(format!(
                "pilot {} is {state}: {why}{}",
                id.short(),
                if bound.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; its {} unfinished task(s) go back to the queue",
                        bound.len()
                    )
                }
            ))
            .await?;
        }
        self.rebind(&bound, &format!("pilot {} lost: {why}", id.short()))
            .await?;
        if let Err(e) = self.broker.delete_pilot(&self.c, &id).await {
            tracing::warn!(pilot = %id, error = %e, "cannot delete the queues of a lost pilot");
        }
        let work_left = self.counts.finished() < self.counts.total;
        if state == PilotState::Failed && work_left {
            if let Some(req) = request {
                self.replace(id, req).await?;
            }
        }
        Ok(())
    }

    /// Starts a pilot like `req` in place of `old`, while the replacement budget lasts.
    async fn replace(&mut self, old: PilotId, req: PilotRequest) -> anyhow::Result<bool> {
        if self.replacements >= self.opts.max_pilot_replacements {
            return Ok(false);
        }
        self.replacements += 1;
        let why = format!(
            "replacing pilot {} ({} of {} replacements)",
            old.short(),
            self.replacements,
            self.opts.max_pilot_replacements
        );
        self.launch(req, &why).await?;
        Ok(true)
    }

    /// Work is left but no pilot is (they failed, were refused, or reached their walltime):
    /// start another like the last one that ran while the replacement budget lasts, else stop
    /// with the reasons instead of waiting forever.
    async fn ensure_a_pilot(&mut self) -> anyhow::Result<()> {
        let live = self.pilots.values().any(|p| !p.state.is_final());
        // A pool's agents come and go: wait for the next one.
        if live || self.all_final() || self.pilots.is_empty() || self.opts.pool.is_some() {
            return Ok(());
        }
        let last = self
            .pilots
            .iter()
            .filter_map(|(id, p)| p.request.clone().map(|r| (*id, r, p.launched_at)))
            .max_by_key(|(_, _, at)| *at);
        if let Some((old, req, _)) = last {
            if self.replace(old, req).await? {
                return Ok(());
            }
        }
        let reasons: Vec<String> = self
            .pilots
            .iter()
            .map(|(id, p)| format!("pilot {} {}: {}", id.short(), p.state, p.reason))
            .collect();
        anyhow::bail!(
            "no pilot is left to run the {} unfinished task(s) of campaign {} (replacements used: {} of {}): {}. Fix the cause and `emanager resume {}`",
            self.counts.total - self.counts.finished(),
            self.c,
            self.replacements,
            self.opts.max_pilot_replacements,
            reasons.join("; "),
            self.c
        )
    }

    /// No allocation burns idle: once nothing is ready or waiting, a pilot with no work
    /// bound is drained (its agent ends, and with it its batch job) and a pilot still queued
    /// or starting is canceled. Pilots running tasks stay for retries.
    async fn release_idle_pilots(&mut self) -> anyhow::Result<()> {
        if self.counts.ready > 0
            || self.counts.waiting > 0
            || self.all_final()
            || !self.overloaded_pilots().is_empty()
        {
            return Ok(());
        }
        let idle: Vec<(PilotId, bool)> = self
            .pilots
            .iter()
            .filter(|(_, p)| !p.state.is_final() && !p.released && !p.pool && p.bound.is_empty())
            .map(|(id, p)| (*id, p.registered))
            .collect();
        // Nothing bound anywhere means every task is final: `finish` shuts everything down.
        // Otherwise the pilots holding work stay (they also take the retries).
        let busy = self
            .pilots
            .values()
            .any(|p| !p.state.is_final() && !p.bound.is_empty());
        if !busy {
            return Ok(());
        }
        for (id, registered) in idle {
            let why = "no work left for it";
            if registered {
                if let Ok(bytes) = Envelope::new(self.c, Message::Drain).encode() {
                    if let Err(e) = self
                        .broker
                        .publish(&self.c, &id, QueueKind::Control, bytes)
                        .await
                    {
                        tracing::warn!(pilot = %id, error = %e, "cannot drain an idle pilot");
                        continue;
                    }
                }
                if let Some(p) = self.pilots.get_mut(&id) {
                    p.released = true;
                }
                self.decision(format!("draining pilot {}: {why}", id.short()))
                    .await?;
            } else {
                self.cancel_unstarted(id, why).await?;
            }
        }
        Ok(())
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

    async fn cancel_everything(&mut self) -> anyhow::Result<()> {
        self.leave_pool().await?;
        let open: Vec<usize> = (0..self.tasks.len())
            .filter(|&i| !self.tasks[i].state.is_final())
            .collect();
        let trs: Vec<Transition> = open
            .iter()
            .map(|&i| {
                Transition::new(self.specs[i].id, self.tasks[i].attempt, TaskState::Canceled)
                    .with_reason("campaign canceled")
            })
            .collect();
        let outs = self.store.transition(&self.c, &trs).await?;
        for (&i, o) in open.iter().zip(outs) {
            if o == TransitionOutcome::Applied {
                self.unbind(i);
                self.set_state(i, TaskState::Canceled);
            }
        }
        self.shutdown_pilots().await;
        Ok(())
    }

    /// Pilots with room and nothing bound, while no task is READY.
    fn idle_pilots(&self) -> Vec<PilotId> {
        self.pilots
            .iter()
            .filter(|(_, p)| {
                p.registered && p.state == PilotState::Active && !p.released && p.bound.is_empty()
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// Pilots holding more tasks than they can start now (an underestimate bound too many
    /// to them, or they started first), the most loaded first.
    fn overloaded_pilots(&self) -> Vec<PilotId> {
        let mut v: Vec<(&PilotId, &PilotSlot)> = self
            .pilots
            .iter()
            .filter(|(_, p)| p.registered && !p.state.is_final() && p.queued > p.cores.max(1))
            .collect();
        v.sort_by_key(|(_, p)| std::cmp::Reverse(p.queued));
        v.into_iter().map(|(id, _)| *id).collect()
    }

    /// Work stealing: when a pilot idles while another holds tasks it has not started, ask
    /// that one to give half of them back (`Return`); they come back READY and are bound to
    /// the idle pilot. Nothing that started moves.
    async fn rebalance(&mut self) -> anyhow::Result<()> {
        if !self.ready.is_empty() {
            return Ok(());
        }
        let idle = self.idle_pilots();
        if idle.is_empty() {
            return Ok(());
        }
        // Each donor is asked at most every 2 s: its answer takes a round trip.
        let Some(donor) = self.overloaded_pilots().into_iter().find(|id| {
            self.pilots[id]
                .asked_to_return
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(2))
        }) else {
            return Ok(());
        };
        let d = &self.pilots[&donor];
        let waiting: Vec<usize> = d
            .bound
            .iter()
            .copied()
            .filter(|&i| self.tasks[i].state == TaskState::AgentQueued)
            .collect();
        let keep = d.cores.max(1) as usize;
        let give = waiting.len().saturating_sub(keep) / 2;
        if give == 0 {
            return Ok(());
        }
        let task_ids: Vec<TaskId> = waiting[..give].iter().map(|&i| self.specs[i].id).collect();
        let bytes = Envelope::new(self.c, Message::Return { task_ids }).encode()?;
        if let Err(e) = self
            .broker
            .publish(&self.c, &donor, QueueKind::Control, bytes)
            .await
        {
            tracing::warn!(pilot = %donor, error = %e, "cannot ask a pilot to give tasks back");
            return Ok(());
        }
        if let Some(p) = self.pilots.get_mut(&donor) {
            p.asked_to_return = Some(Instant::now());
        }
        self.decision(format!(
            "moving {give} queued task(s) from pilot {} to idle pilot(s) {}",
            donor.short(),
            idle.iter()
                .map(|p| p.short())
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .await
    }

    /// Binds READY tasks to pilots with room, longest first, and publishes them in batches.
    async fn bind_ready_tasks(&mut self) -> anyhow::Result<()> {
        if self.ready.is_empty() {
            return Ok(());
        }
        let now = emanager_shared::now_ms();
        let lookahead = self.opts.lookahead_s;
        let mut candidates: Vec<PilotId> = self
            .pilots
            .iter()
            .filter(|(_, p)| p.registered && p.state == PilotState::Active && !p.released)
            .map(|(id, _)| *id)
            .collect();
        if candidates.is_empty() {
            return Ok(());
        }
        let mut plan: BTreeMap<PilotId, Vec<usize>> = BTreeMap::new();
        let mut deferred = Vec::new();
        let mut budget: HashMap<PilotId, (f64, u32)> = candidates
            .iter()
            .map(|id| {
                let p = &self.pilots[id];
                (*id, (p.queued_cs, p.queued))
            })
            .collect();
        while let Some(key) = self.ready.pop() {
            let i = key.index;
            if self.tasks[i].state != TaskState::Ready {
                continue; // stale heap entry
            }
            let spec = &self.specs[i];
            let cs = queued_cost(spec);
            // Of the pilots that can take it, the least loaded (tasks bound and running per
            // core), so a pilot that just started or gave work back is fed first.
            let chosen = candidates
                .iter()
                .copied()
                .filter(|id| {
                    let p = &self.pilots[id];
                    let (qcs, q) = budget[id];
                    let shape_ok = if spec.mpi {
                        spec.cores <= p.cores
                    } else {
                        spec.cores <= p.node_cores
                    } && spec.gpus <= p.gpus;
                    let time_ok = p.walltime_end_ms == 0
                        || now + (spec.est_duration_s * 1000.0) as u64 <= p.walltime_end_ms;
                    let room = q == 0 || qcs + cs <= p.cores as f64 * lookahead;
                    shape_ok && time_ok && room
                })
                .min_by(|a, b| {
                    let load = |id: &PilotId| {
                        let p = &self.pilots[id];
                        (budget[id].1 as f64 + p.running_cores as f64) / p.cores.max(1) as f64
                    };
                    load(a).total_cmp(&load(b))
                });
            match chosen {
                Some(id) => {
                    let b = budget.get_mut(&id).expect("candidate has a budget");
                    b.0 += cs;
                    b.1 += 1;
                    plan.entry(id).or_default().push(i);
                }
                None => {
                    deferred.push(key);
                    // Stop once no pilot has room for anything more.
                    candidates.retain(|id| {
                        let p = &self.pilots[id];
                        budget[id].0 < p.cores as f64 * lookahead
                    });
                    if candidates.is_empty() || deferred.len() > 1_000 {
                        break;
                    }
                }
            }
        }
        self.ready.extend(deferred);
        for (pilot, idxs) in plan {
            self.publish_to(pilot, idxs).await?;
        }
        Ok(())
    }

    async fn publish_to(&mut self, pilot: PilotId, idxs: Vec<usize>) -> anyhow::Result<()> {
        let trs: Vec<Transition> = idxs
            .iter()
            .map(|&i| Transition::bind(self.specs[i].id, self.tasks[i].attempt, pilot))
            .collect();
        let outs = self.store.transition(&self.c, &trs).await?;
        let mut bound = Vec::new();
        for (&i, o) in idxs.iter().zip(outs) {
            if o != TransitionOutcome::Applied {
                tracing::warn!(task = %self.specs[i].name, outcome = ?o, "binding refused by the store");
                continue;
            }
            self.tasks[i].attempt += 1;
            self.tasks[i].pilot = Some(pilot);
            crate::metrics::get().bound(self.specs[i].id);
            self.set_state(i, TaskState::Scheduled);
            let cs = queued_cost(&self.specs[i]);
            if let Some(ps) = self.pilots.get_mut(&pilot) {
                ps.bound.insert(i);
                ps.queued += 1;
                ps.queued_cs += cs;
            }
            bound.push(i);
        }
        for chunk in bound.chunks(BATCH_TASKS) {
            let tasks: Vec<BoundTask> = chunk
                .iter()
                .map(|&i| BoundTask {
                    spec: self.specs[i].clone(),
                    attempt: self.tasks[i].attempt,
                })
                .collect();
            let (messages, too_big) =
                emanager_shared::protocol::encode_task_batches(self.c, &tasks);
            for (k, e) in too_big {
                let i = chunk[k];
                self.unbind(i);
                let why = format!(
                    "cannot be sent to a pilot: {e}; make its environment and command smaller"
                );
                self.fail_for_good(i, &why).await?;
            }
            for m in messages {
                let sent: Vec<usize> = chunk[m.tasks.clone()].to_vec();
                if let Err(e) = self
                    .broker
                    .publish(&self.c, &pilot, QueueKind::Tasks, m.bytes)
                    .await
                {
                    tracing::error!(pilot = %pilot, error = %e, "cannot publish tasks; rebinding them");
                    self.rebind(&sent, &format!("publish to pilot failed: {e}"))
                        .await?;
                } else {
                    crate::metrics::get().published.inc_by(sent.len() as u64);
                    crate::metrics::get().batches.inc();
                }
            }
        }
        Ok(())
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

    /// Detaches the campaign from its pool before its pilots are shut down, so the pool's
    /// agents do not attach to it again meanwhile.
    async fn leave_pool(&mut self) -> anyhow::Result<()> {
        if let Some(p) = &self.opts.pool {
            self.store.detach_from_pool(&p.name, &self.c).await?;
            tracing::info!(pool = %p.name, "detached from pool");
        }
        Ok(())
    }

    async fn shutdown_pilots(&mut self) {
        let live: Vec<PilotId> = self
            .pilots
            .iter()
            .filter(|(_, p)| !p.state.is_final())
            .map(|(id, _)| *id)
            .collect();
        let mut cancels = Vec::new();
        for id in &live {
            let slot = self.pilots.get_mut(id).expect("live pilot");
            if !slot.registered {
                // Never started: cancel its job (or process) rather than wait for it.
                if let Some(l) = slot.launch.as_mut() {
                    cancels.extend(l.kill());
                }
                let _ = self
                    .store
                    .pilot_transition(
                        &self.c,
                        id,
                        PilotState::Canceled,
                        "campaign ended before it started",
                    )
                    .await;
                continue;
            }
            if let Ok(bytes) = Envelope::new(self.c, Message::Shutdown).encode() {
                if let Err(e) = self
                    .broker
                    .publish(&self.c, id, QueueKind::Control, bytes)
                    .await
                {
                    tracing::warn!(pilot = %id, error = %e, "cannot send shutdown");
                }
            }
        }
        // Give agents a moment to report DONE, then remove their queues.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let views = self.store.pilots(&self.c).await.unwrap_or_default();
            let still: Vec<_> = views
                .iter()
                .filter(|v| live.contains(&v.record.id) && !v.record.state.is_final() && v.alive)
                .collect();
            if still.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for v in self.store.pilots(&self.c).await.unwrap_or_default() {
            if let Some(slot) = self.pilots.get_mut(&v.record.id) {
                slot.state = v.record.state;
                if !v.record.reason.is_empty() {
                    slot.reason = v.record.reason.clone();
                }
            }
        }
        for id in live {
            if let Some(slot) = self.pilots.get_mut(&id) {
                match slot.launch.as_mut() {
                    Some(LaunchedPilot::InProcess(h)) => {
                        let _ = tokio::time::timeout(Duration::from_secs(2), h).await;
                    }
                    // An agent that did not stop in time: end its allocation.
                    Some(l @ LaunchedPilot::Batch(_)) if !slot.state.is_final() => {
                        cancels.extend(l.kill())
                    }
                    _ => {}
                }
            }
            let _ = self.broker.delete_pilot(&self.c, &id).await;
        }
        // The batch systems must hear of the cancels before this manager exits.
        let all = futures::future::join_all(cancels);
        if tokio::time::timeout(Duration::from_secs(30), all)
            .await
            .is_err()
        {
            tracing::warn!("some pilot jobs could not be canceled within 30 s");
        }
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
        walltime_end_ms: 0,
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
    }
}
