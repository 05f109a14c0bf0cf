//! Late binding: READY tasks to the least loaded pilot with room, published in batches;
//! work stealing when a pilot idles while another holds tasks it has not started.

use super::*;

impl Driver {
    /// Pilots with room and nothing bound, while no task is READY.
    pub(super) fn idle_pilots(&self) -> Vec<PilotId> {
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
    pub(super) fn overloaded_pilots(&self) -> Vec<PilotId> {
        let mut v: Vec<(PilotId, usize)> = self
            .pilots
            .iter()
            .filter(|(_, p)| p.registered && !p.state.is_final() && p.queued > p.cores.max(1))
            .map(|(id, _)| (*id, self.stale_queued(id).len()))
            .filter(|(_, stale)| *stale > 0)
            .collect();
        v.sort_by_key(|(_, stale)| std::cmp::Reverse(*stale));
        v.into_iter().map(|(id, _)| id).collect()
    }

    /// The tasks a pilot holds without starting them for [`STEAL_AFTER_MS`] or more: tiny
    /// tasks a busy pilot is about to run are not worth moving.
    fn stale_queued(&self, pilot: &PilotId) -> Vec<usize> {
        let now = emanager_shared::now_ms();
        self.pilots[pilot]
            .bound
            .iter()
            .copied()
            .filter(|&i| {
                let t = &self.tasks[i];
                t.state == TaskState::AgentQueued
                    && now.saturating_sub(t.bound_ms) >= STEAL_AFTER_MS
            })
            .collect()
    }

    /// Work stealing: when a pilot idles while another holds tasks it has not started, ask
    /// that one to give half of them back (`Return`); they come back READY and are bound to
    /// the idle pilot. Nothing that started moves.
    pub(super) async fn rebalance(&mut self) -> anyhow::Result<()> {
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
        let waiting = self.stale_queued(&donor);
        let keep = self.pilots[&donor].cores.max(1) as usize;
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
    pub(super) async fn bind_ready_tasks(&mut self) -> anyhow::Result<()> {
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
        // Nothing to do while every pilot's look-ahead is full (most loop turns of a busy
        // campaign): no heap churn.
        candidates.retain(|id| {
            let p = &self.pilots[id];
            p.queued == 0 || p.queued_cs < p.cores as f64 * lookahead
        });
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
            // Of the pilots that can take it (its node shape, room in the look-ahead, and time
            // to run it after what is queued there before the pilot drains), the least loaded
            // (tasks bound and running per core), so a pilot that just started or gave work
            // back is fed first.
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
                    let time_ok =
                        ends_before_drain(now, qcs, p.cores, spec.est_duration_s, p.drain_at_ms);
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
                    // A pilot without room for this task has none for the like of it: drop
                    // it, so a full pilot is not asked again for every task of a large bag.
                    // Pilots that only had the wrong shape stay for the tasks behind.
                    candidates.retain(|id| {
                        let p = &self.pilots[id];
                        let (qcs, q) = budget[id];
                        q == 0 || qcs + cs <= p.cores as f64 * lookahead
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

    pub(super) async fn publish_to(
        &mut self,
        pilot: PilotId,
        idxs: Vec<usize>,
    ) -> anyhow::Result<()> {
        let trs: Vec<Transition> = idxs
            .iter()
            .map(|&i| Transition::bind(self.specs[i].id, self.tasks[i].attempt, pilot))
            .collect();
        let outs = self.store.transition(&self.c, &trs).await?;
        let now = emanager_shared::now_ms();
        let mut bound = Vec::new();
        for (&i, o) in idxs.iter().zip(outs) {
            if o != TransitionOutcome::Applied {
                tracing::warn!(task = %self.specs[i].id, name = %self.specs[i].name, outcome = ?o, "binding refused by the store");
                continue;
            }
            self.tasks[i].attempt += 1;
            self.tasks[i].bound_ms = now;
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
}

/// Whether a task of `est_s` seconds bound at `now_ms` to a pilot can end before the pilot
/// drains (`drain_at_ms`; `None`: never): it starts once the work queued there ahead of it
/// (`queued_cs` core-seconds, spread over the pilot's `cores`) is done. An agent refuses to
/// start a task that would still run at its drain and hands it back, so binding one that
/// cannot make it only moves it back and forth. The running tasks' remaining time is not
/// known here, so this is a lower bound of the start; the agent's check at the start covers
/// the rest.
fn ends_before_drain(
    now_ms: u64,
    queued_cs: f64,
    cores: u32,
    est_s: f64,
    drain_at_ms: Option<u64>,
) -> bool {
    let Some(drain_at) = drain_at_ms else {
        return true;
    };
    let start_ms = now_ms as f64 + queued_cs / cores.max(1) as f64 * 1000.0;
    start_ms + est_s * 1000.0 <= drain_at as f64
}

#[cfg(test)]
mod tests {
    use super::ends_before_drain;

    #[test]
    fn a_pilot_that_never_drains_takes_any_task() {
        assert!(ends_before_drain(0, 1e12, 1, 1e9, None));
    }

    #[test]
    fn an_idle_pilot_takes_a_task_that_ends_by_its_drain_and_no_longer() {
        assert!(ends_before_drain(1_000, 0.0, 4, 9.0, Some(10_000)));
        assert!(!ends_before_drain(1_000, 0.0, 4, 9.5, Some(10_000)));
    }

    #[test]
    fn work_queued_on_the_pilot_delays_the_start_by_its_core_seconds_per_core() {
        // 40 core-seconds queued on 4 cores: the task starts ~10 s from now.
        assert!(ends_before_drain(0, 40.0, 4, 20.0, Some(30_000)));
        assert!(!ends_before_drain(0, 40.0, 4, 20.5, Some(30_000)));
        // The same work on one core: 40 s before it starts.
        assert!(!ends_before_drain(0, 40.0, 1, 1.0, Some(30_000)));
    }

    #[test]
    fn a_pilot_past_its_drain_takes_nothing_that_needs_time() {
        assert!(!ends_before_drain(20_000, 0.0, 4, 0.001, Some(10_000)));
    }
}
