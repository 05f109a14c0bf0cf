//! The agent's core: one task owns the scheduler, the running tasks and, per campaign the
//! agent serves (a *lane*), the tasks accepted and waiting for cores. The consumers, the
//! heartbeats, the pool supervisor and every running task talk to it through one channel.
//!
//! An agent of one campaign has exactly one lane and ends with it. A pool agent gains and
//! loses lanes as campaigns attach to and leave its pool, and starts the next task from the
//! waiting lane with the lowest fair-share usage per weight (`crate::fairshare`).

use super::deadline::too_late_to_start;
use super::lane::{Lane, LaneEnded};
use super::AgentSummary;
use crate::executor::{self, RunOutcome};
use crate::fairshare::FairShare;
use crate::launch::Launch;
use crate::scheduler::{NodeSpec, Request, Scheduler, Slots};
use emanager_shared::catalog::LaunchMethod;
use emanager_shared::protocol::Message;
use emanager_shared::{now_ms, BoundTask, CampaignId, TaskId, TaskState, Transition};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument;

/// What the core hears.
pub(crate) enum CoreMsg {
    /// Serve one more campaign (pool agents).
    Attach(Lane),
    /// Tasks a lane's consumer accepted (AGENT_QUEUED is in the store).
    Tasks(CampaignId, Vec<BoundTask>),
    Finished {
        campaign: CampaignId,
        task: TaskId,
        attempt: u32,
        slots: Slots,
        outcome: RunOutcome,
    },
    /// A message of a lane's control queue.
    Control(CampaignId, Message),
    /// Stop serving a campaign now: kill its running tasks, return its waiting ones.
    Detach(CampaignId, String),
    /// A campaign's weight in the pool changed.
    Weight(CampaignId, f64),
    /// Stop taking work for every campaign; finish what runs, return the rest.
    Drain(String),
    Tick,
}

/// How the core runs.
pub(crate) struct CoreSettings {
    pub nodes: Vec<NodeSpec>,
    /// When the agent drains before its allocation ends (ms since the epoch): no task starts
    /// that would still run then. `None`: the allocation does not end.
    pub drain_at_ms: Option<u64>,
    pub idle_timeout: Option<Duration>,
    pub launch_methods: Vec<LaunchMethod>,
    /// `Some(window)` for a pool agent: it shares its cores between lanes by weight (usage
    /// history decaying over `window` seconds) and outlives its lanes. `None`: the agent of
    /// one campaign, which ends with its lane.
    pub pool_share_window_s: Option<f64>,
}

struct RunningTask {
    campaign: CampaignId,
    cores: u32,
    kill: Option<oneshot::Sender<()>>,
    killed_for: Option<KillReason>,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum KillReason {
    Cancel,
    Shutdown,
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

struct Core {
    settings: CoreSettings,
    sched: Scheduler,
    launch: Launch,
    lanes: Vec<Lane>,
    running: HashMap<TaskId, RunningTask>,
    /// Pool agents only.
    fair: Option<FairShare<CampaignId>>,
    /// Why the whole agent takes no more work.
    draining: Option<String>,
    draining_tx: watch::Sender<Option<String>>,
    tx: mpsc::UnboundedSender<CoreMsg>,
    ended: mpsc::UnboundedSender<LaneEnded>,
    last_activity: tokio::time::Instant,
    t0: tokio::time::Instant,
    total: AgentSummary,
    /// Per-lane scan positions of one placement pass (kept to reuse the allocation).
    scan: Vec<usize>,
}

/// Runs the core until the agent is done: for the agent of one campaign, when its lane
/// ends; for a pool agent, once it drains and its last lane ends. Every lane that ends is
/// announced on `ended`; the agent-wide drain reason on `draining`.
pub(crate) async fn run(
    settings: CoreSettings,
    lanes: Vec<Lane>,
    mut rx: mpsc::UnboundedReceiver<CoreMsg>,
    tx: mpsc::UnboundedSender<CoreMsg>,
    ended: mpsc::UnboundedSender<LaneEnded>,
    draining: watch::Sender<Option<String>>,
) -> AgentSummary {
    let now = tokio::time::Instant::now();
    let mut core = Core {
        sched: Scheduler::new(settings.nodes.clone()),
        launch: Launch::new(
            settings.launch_methods.clone(),
            settings.nodes.iter().map(|n| n.name.clone()).collect(),
        ),
        fair: settings.pool_share_window_s.map(FairShare::new),
        settings,
        lanes: Vec::new(),
        running: HashMap::new(),
        draining: None,
        draining_tx: draining,
        tx,
        ended,
        last_activity: now,
        t0: now,
        total: AgentSummary::default(),
        scan: Vec::new(),
    };
    for lane in lanes {
        core.attach(lane);
    }
    while let Some(msg) = rx.recv().await {
        core.handle(msg);
        core.settle();
        if core.finished() {
            break;
        }
    }
    // The agent of one campaign ends with its lane and says why the lane ended; a pool
    // agent says why it drained.
    let finished = core.finished();
    core.total.reason = match core.draining.take() {
        Some(why) if core.pool() => why,
        _ if finished && !core.pool() => std::mem::take(&mut core.total.reason),
        _ => "agent channel closed".into(),
    };
    core.total
}

impl Core {
    fn pool(&self) -> bool {
        self.settings.pool_share_window_s.is_some()
    }

    fn now_s(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    fn finished(&self) -> bool {
        self.lanes.is_empty() && (!self.pool() || self.draining.is_some())
    }

    fn lane(&mut self, c: &CampaignId) -> Option<&mut Lane> {
        self.lanes.iter_mut().find(|l| l.campaign == *c)
    }

    fn attach(&mut self, mut lane: Lane) {
        if let Some(why) = &self.draining {
            lane.stop(why);
        }
        let now = self.now_s();
        if let Some(f) = self.fair.as_mut() {
            f.join(lane.campaign, lane.weight, now);
        }
        tracing::info!(campaign = %lane.campaign, pilot = %lane.pilot, weight = lane.weight, "serving campaign");
        self.lanes.push(lane);
    }

    fn handle(&mut self, msg: CoreMsg) {
        match msg {
            CoreMsg::Attach(lane) => self.attach(lane),
            CoreMsg::Tasks(c, tasks) => {
                self.last_activity = tokio::time::Instant::now();
                let (now, drain_at) = (now_ms(), self.settings.drain_at_ms);
                let Some(i) = self.lanes.iter().position(|l| l.campaign == c) else {
                    // The lane ended meanwhile: its pilot is DONE and the manager rebinds them.
                    tracing::debug!(campaign = %c, count = tasks.len(), "tasks for a campaign no longer served");
                    return;
                };
                for t in tasks {
                    let lane = &mut self.lanes[i];
                    if lane.stopping.is_some() {
                        lane.return_task(&t, "pilot is draining");
                        continue;
                    }
                    if let Err(reason) = self.sched.can_ever_fit(&request_of(&t)) {
                        lane.fail_task(&t, format!("can never fit this pilot: {reason}"));
                        continue;
                    }
                    if let Some(why) = too_late_to_start(t.spec.est_duration_s, now, drain_at) {
                        lane.return_task(&t, &why);
                        continue;
                    }
                    lane.pending.push_back(t);
                }
            }
            CoreMsg::Finished {
                campaign,
                task,
                attempt,
                slots,
                outcome,
            } => self.finished_task(campaign, task, attempt, slots, outcome),
            CoreMsg::Control(c, Message::Cancel { task_ids }) => {
                for id in task_ids {
                    if let Some(lane) = self.lanes.iter_mut().find(|l| l.campaign == c) {
                        if let Some(pos) = lane.pending.iter().position(|t| t.spec.id == id) {
                            let t = lane.pending.remove(pos).expect("position is valid");
                            crate::metrics::get().forget(id);
                            lane.reporter.send(
                                Transition::new(id, t.attempt, TaskState::Canceled)
                                    .with_reason("canceled"),
                            );
                        }
                    }
                    if let Some(r) = self.running.get_mut(&id).filter(|r| r.campaign == c) {
                        r.killed_for = Some(KillReason::Cancel);
                        if let Some(k) = r.kill.take() {
                            let _ = k.send(());
                        }
                    }
                }
            }
            CoreMsg::Control(c, Message::Return { task_ids }) => {
                // Only what waits here: a task that started stays.
                if let Some(lane) = self.lanes.iter_mut().find(|l| l.campaign == c) {
                    for id in task_ids {
                        if let Some(pos) = lane.pending.iter().position(|t| t.spec.id == id) {
                            let t = lane.pending.remove(pos).expect("position is valid");
                            lane.return_task(&t, "returned to the manager for an idle pilot");
                        }
                    }
                }
            }
            CoreMsg::Control(c, Message::Drain) => {
                if let Some(lane) = self.lane(&c) {
                    lane.stop("drained by the manager");
                }
            }
            CoreMsg::Control(c, Message::Shutdown) => self.detach(c, "shut down by the manager"),
            CoreMsg::Control(_, Message::TaskBatch { .. }) => {
                tracing::warn!("a task batch arrived on the control queue; ignored");
            }
            CoreMsg::Detach(c, why) => self.detach(c, &why),
            CoreMsg::Weight(c, w) => {
                let now = self.now_s();
                if let Some(f) = self.fair.as_mut() {
                    f.join(c, w, now);
                }
                if let Some(lane) = self.lane(&c) {
                    lane.weight = w;
                }
            }
            CoreMsg::Drain(why) => self.drain(why),
            CoreMsg::Tick => {
                self.return_late_tasks();
                if let Some(idle) = self.settings.idle_timeout {
                    if self.running.is_empty()
                        && self.lanes.iter().all(|l| l.pending.is_empty())
                        && self.last_activity.elapsed() > idle
                    {
                        self.drain(format!("idle for {} s", idle.as_secs()));
                    }
                }
            }
        }
    }

    fn drain(&mut self, why: String) {
        if self.draining.is_some() {
            return;
        }
        for lane in &mut self.lanes {
            lane.stop(&why);
        }
        let _ = self.draining_tx.send(Some(why.clone()));
        self.draining = Some(why);
    }

    /// Stops serving `c`: no more work, its running tasks killed (they come back READY).
    fn detach(&mut self, c: CampaignId, why: &str) {
        let Some(lane) = self.lane(&c) else { return };
        lane.stop(why);
        for r in self.running.values_mut().filter(|r| r.campaign == c) {
            r.killed_for.get_or_insert(KillReason::Shutdown);
            if let Some(k) = r.kill.take() {
                let _ = k.send(());
            }
        }
    }

    fn finished_task(
        &mut self,
        campaign: CampaignId,
        task: TaskId,
        attempt: u32,
        slots: Slots,
        outcome: RunOutcome,
    ) {
        self.last_activity = tokio::time::Instant::now();
        self.sched.release(&slots);
        let (cores, killed_for) = match self.running.remove(&task) {
            Some(r) => (r.cores, r.killed_for),
            None => (0, None),
        };
        let now = self.now_s();
        if let Some(f) = self.fair.as_mut() {
            f.finished(campaign, cores, now);
        }
        let Some(lane) = self.lanes.iter_mut().find(|l| l.campaign == campaign) else {
            tracing::error!(%campaign, %task, "a task ended for a campaign no longer served");
            return;
        };
        lane.busy_cores = lane.busy_cores.saturating_sub(cores);
        lane.running = lane.running.saturating_sub(1);
        let t = |to| Transition::new(task, attempt, to);
        let m = crate::metrics::get();
        let tr = match outcome {
            RunOutcome::Success => {
                lane.summary.done += 1;
                m.done.inc();
                t(TaskState::Done).with_exit(Some(0))
            }
            RunOutcome::Failed { exit_code, reason } => {
                lane.summary.failed += 1;
                m.failed.inc();
                t(TaskState::Failed)
                    .with_exit(exit_code)
                    .with_reason(reason)
                    .failure()
            }
            RunOutcome::SpawnFailed { reason } => {
                lane.summary.failed += 1;
                m.failed.inc();
                t(TaskState::Failed).with_reason(reason).failure()
            }
            RunOutcome::WalltimeExceeded { walltime_s } => {
                lane.summary.failed += 1;
                m.failed.inc();
                t(TaskState::Failed)
                    .with_reason(format!(
                        "exceeded its walltime of {walltime_s} s; its process group was killed"
                    ))
                    .failure()
            }
            RunOutcome::Killed => match killed_for {
                Some(KillReason::Cancel) => t(TaskState::Canceled).with_reason("canceled"),
                _ => {
                    lane.summary.returned += 1;
                    m.returned.inc();
                    Transition {
                        pilot: Some(None),
                        ..t(TaskState::Ready)
                    }
                    .with_reason("pilot shut down while the task ran")
                }
            },
        };
        lane.reporter.send(tr);
    }

    /// After each message: return the work of stopping lanes, start what fits, publish the
    /// loads, and end the lanes that are done.
    fn settle(&mut self) {
        for lane in &mut self.lanes {
            if let Some(why) = lane.stopping.clone() {
                lane.stop_consuming
                    .send_if_modified(|s| !std::mem::replace(s, true));
                let why = format!("pilot stopping: {why}");
                while let Some(t) = lane.pending.pop_front() {
                    lane.return_task(&t, &why);
                }
            }
        }
        if self.fair.is_some() {
            self.place_by_share();
        } else if !self.lanes.is_empty() {
            self.place_one_lane();
        }
        let (mut busy, mut queued) = (0u32, 0usize);
        for lane in &self.lanes {
            busy += lane.busy_cores;
            queued += lane.pending.len();
            lane.load
                .busy_cores
                .store(lane.busy_cores, Ordering::Relaxed);
            lane.load.running.store(lane.running, Ordering::Relaxed);
            lane.load
                .queued
                .store(lane.pending.len() as u32, Ordering::Relaxed);
            let n = lane.pending.len();
            lane.pending_tx
                .send_if_modified(|v| std::mem::replace(v, n) != n);
        }
        crate::metrics::get().occupancy(busy, self.sched.total_cores(), queued);
        self.end_lanes();
    }

    /// Hands back the waiting tasks that can no longer end before the drain (they would
    /// be returned when cores free up anyway; now another pilot can take them sooner).
    fn return_late_tasks(&mut self) {
        let (now, drain_at) = (now_ms(), self.settings.drain_at_ms);
        if drain_at.is_none() {
            return;
        }
        for lane in &mut self.lanes {
            let mut i = 0;
            while i < lane.pending.len() {
                match too_late_to_start(lane.pending[i].spec.est_duration_s, now, drain_at) {
                    Some(why) => {
                        let t = lane.pending.remove(i).expect("index is valid");
                        lane.return_task(&t, &why);
                    }
                    None => i += 1,
                }
            }
        }
    }

    /// The agent of one campaign (one lane, no share to keep): place what fits in arrival
    /// order, letting smaller tasks pass a blocked big one. A task that would still run at
    /// the drain goes back to the manager instead of starting.
    fn place_one_lane(&mut self) {
        let (now, drain_at) = (now_ms(), self.settings.drain_at_ms);
        let lane = &mut self.lanes[0];
        let mut i = 0;
        while i < lane.pending.len() {
            if self.sched.free_cores() == 0 {
                break;
            }
            if let Some(why) = too_late_to_start(lane.pending[i].spec.est_duration_s, now, drain_at)
            {
                let t = lane.pending.remove(i).expect("index is valid");
                lane.return_task(&t, &why);
                continue;
            }
            match self.sched.place(&request_of(&lane.pending[i])) {
                Some(slots) => {
                    let t = lane.pending.remove(i).expect("index is valid");
                    start_task(&t, slots, lane, &self.launch, &self.tx, &mut self.running);
                }
                None => i += 1,
            }
        }
    }

    /// A pool agent: each start goes to the waiting lane with the lowest usage per weight
    /// that has a task that fits now; within a lane, arrival order, smaller tasks passing
    /// blocked big ones. A task that would still run at the drain goes back to its manager.
    fn place_by_share(&mut self) {
        self.scan.clear();
        self.scan.resize(self.lanes.len(), 0);
        let now = self.now_s();
        let (wall_now, drain_at) = (now_ms(), self.settings.drain_at_ms);
        loop {
            if self.sched.free_cores() == 0 {
                break;
            }
            let lanes = &self.lanes;
            let scan = &self.scan;
            let waiting = (0..lanes.len())
                .filter(|&i| scan[i] < lanes[i].pending.len())
                .map(|i| lanes[i].campaign);
            let Some(c) = self.fair.as_ref().and_then(|f| f.pick(waiting, now)) else {
                break;
            };
            let li = self
                .lanes
                .iter()
                .position(|l| l.campaign == c)
                .expect("picked a lane");
            let lane = &mut self.lanes[li];
            let mut placed = false;
            while self.scan[li] < lane.pending.len() {
                let i = self.scan[li];
                let est_s = lane.pending[i].spec.est_duration_s;
                if let Some(why) = too_late_to_start(est_s, wall_now, drain_at) {
                    let t = lane.pending.remove(i).expect("index is valid");
                    lane.return_task(&t, &why);
                    continue;
                }
                match self.sched.place(&request_of(&lane.pending[i])) {
                    Some(slots) => {
                        let t = lane.pending.remove(i).expect("index is valid");
                        let cores =
                            start_task(&t, slots, lane, &self.launch, &self.tx, &mut self.running);
                        if let Some(f) = self.fair.as_mut() {
                            f.started(c, cores, now);
                        }
                        placed = true;
                        break;
                    }
                    None => self.scan[li] += 1,
                }
            }
            if !placed {
                // Nothing of this lane fits now; the others may.
                self.scan[li] = usize::MAX;
            }
        }
    }

    fn end_lanes(&mut self) {
        let mut i = 0;
        while i < self.lanes.len() {
            let l = &self.lanes[i];
            if l.stopping.is_some() && l.running == 0 && l.pending.is_empty() {
                let mut lane = self.lanes.swap_remove(i);
                if let Some(f) = self.fair.as_mut() {
                    f.remove(lane.campaign);
                }
                lane.summary.reason = lane.stopping.take().unwrap_or_default();
                self.total.done += lane.summary.done;
                self.total.failed += lane.summary.failed;
                self.total.returned += lane.summary.returned;
                self.total.reason = lane.summary.reason.clone();
                tracing::info!(campaign = %lane.campaign, pilot = %lane.pilot, done = lane.summary.done, failed = lane.summary.failed, returned = lane.summary.returned, reason = %lane.summary.reason, "stopped serving campaign");
                let _ = self.ended.send(LaneEnded {
                    campaign: lane.campaign,
                    pilot: lane.pilot,
                    summary: lane.summary,
                });
            } else {
                i += 1;
            }
        }
    }
}

/// Starts `t` on `slots`; returns the cores its process holds (none when it could not
/// start: its failure is already on its way to the core).
fn start_task(
    t: &BoundTask,
    slots: Slots,
    lane: &mut Lane,
    launch: &Launch,
    tx: &mpsc::UnboundedSender<CoreMsg>,
    running: &mut HashMap<TaskId, RunningTask>,
) -> u32 {
    let id = t.spec.id;
    let attempt = t.attempt;
    let campaign = lane.campaign;
    lane.running += 1;
    match executor::start(&t.spec, attempt, &slots, &lane.workdir, launch) {
        Err(outcome) => {
            crate::metrics::get().forget(id);
            let _ = tx.send(CoreMsg::Finished {
                campaign,
                task: id,
                attempt,
                slots,
                outcome,
            });
            running.insert(
                id,
                RunningTask {
                    campaign,
                    cores: 0,
                    kill: None,
                    killed_for: None,
                },
            );
            0
        }
        Ok(run) => {
            lane.reporter
                .send(Transition::new(id, attempt, TaskState::Executing));
            crate::metrics::get().started(id);
            let cores = slots.core_count();
            lane.busy_cores += cores;
            let (kill_tx, kill_rx) = oneshot::channel();
            running.insert(
                id,
                RunningTask {
                    campaign,
                    cores,
                    kill: Some(kill_tx),
                    killed_for: None,
                },
            );
            let tx = tx.clone();
            let span = tracing::info_span!("task", %campaign, task = %id, attempt);
            tokio::spawn(
                async move {
                    let outcome = run.wait(kill_rx).await;
                    let _ = tx.send(CoreMsg::Finished {
                        campaign,
                        task: id,
                        attempt,
                        slots,
                        outcome,
                    });
                }
                .instrument(span),
            );
            cores
        }
    }
}
