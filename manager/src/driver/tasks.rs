//! Task bookkeeping: the view rebuilt from the store, events applied, retries, DAG
//! releases and cancellations, rebinding.

use super::*;

impl Driver {
    /// Rebuilds the view from the task records (a new campaign, or one being resumed).
    pub(super) async fn load_state(&mut self) -> anyhow::Result<()> {
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
                bound_ms: 0,
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

    /// Tasks that fit no pilot this campaign can ever get fail at once, with the reason.
    pub(super) async fn fail_unfittable(&mut self) -> anyhow::Result<()> {
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

    pub(super) async fn fail_for_good(&mut self, i: usize, why: &str) -> anyhow::Result<()> {
        let t = Transition::new(self.specs[i].id, self.tasks[i].attempt, TaskState::Failed)
            .with_reason(why)
            .failure();
        if self.store.transition(&self.c, &[t]).await?[0] == TransitionOutcome::Applied {
            tracing::warn!(task = %self.specs[i].id, name = %self.specs[i].name, "{why}");
            self.set_state(i, TaskState::Failed);
            self.tasks[i].final_failure = true;
            self.failures
                .push((self.specs[i].name.clone(), why.to_string()));
            self.cancel_dependents(i).await?;
        }
        Ok(())
    }

    pub(super) fn count(&mut self, s: TaskState, delta: i64) {
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

    pub(super) fn set_state(&mut self, i: usize, s: TaskState) {
        let old = self.tasks[i].state;
        self.count(old, -1);
        self.count(s, 1);
        self.tasks[i].state = s;
    }

    pub(super) fn push_ready(&mut self, i: usize) {
        let s = &self.specs[i];
        crate::metrics::get().ready(s.id);
        self.ready.push(ReadyKey {
            priority: s.priority,
            est_ms: (s.est_duration_s.max(0.0) * 1000.0) as u64,
            index: i,
        });
    }

    pub(super) fn all_final(&self) -> bool {
        self.counts.finished() == self.counts.total
            && self
                .tasks
                .iter()
                .all(|t| t.state != TaskState::Failed || t.final_failure)
    }

    /// Removes task `i` from its pilot's books (before its state changes).
    pub(super) fn unbind(&mut self, i: usize) {
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

    pub(super) async fn on_task_event(
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
                    tracing::info!(task = %self.specs[i].id, name = %self.specs[i].name, attempt, %reason, "task failed; retrying");
                    let t = Transition::new(task, attempt, TaskState::Ready)
                        .with_reason(format!("retry after: {reason}"));
                    if self.store.transition(&self.c, &[t]).await?[0] == TransitionOutcome::Applied
                    {
                        self.set_state(i, TaskState::Ready);
                        self.tasks[i].pilot = None;
                        self.push_ready(i);
                    }
                } else {
                    tracing::warn!(task = %self.specs[i].id, name = %self.specs[i].name, %reason, "task failed for good");
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
    pub(super) async fn release(&mut self, i: usize) -> anyhow::Result<()> {
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

    pub(super) async fn cancel_dependents(&mut self, i: usize) -> anyhow::Result<()> {
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
    pub(super) async fn rebind(&mut self, tasks: &[usize], why: &str) -> anyhow::Result<()> {
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

    pub(super) async fn cancel_everything(&mut self) -> anyhow::Result<()> {
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
}
