//! Decisions about pilots beyond replacing the lost: adaptive execution of a planned
//! campaign, releasing pilots no work is left for, keeping one while work remains. Every
//! decision is recorded with the campaign (`emanager status`).

use super::*;

impl Driver {
    /// Records a decision of this manager (logged, and kept with the campaign for `status`).
    pub(super) async fn decision(&self, text: String) -> anyhow::Result<()> {
        tracing::info!(decision = %text, "decision");
        self.store
            .add_decision(&self.c, emanager_shared::now_ms(), &text)
            .await?;
        Ok(())
    }

    /// Adaptive execution of a planned campaign: compare its progress with the plan, add a
    /// pilot when it falls behind, cancel queued pilots the running ones do not need.
    pub(super) async fn follow_plan(&mut self) -> anyhow::Result<()> {
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
    pub(super) async fn cancel_unstarted(&mut self, id: PilotId, why: &str) -> anyhow::Result<()> {
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

    /// No allocation burns idle: once nothing is ready or waiting, a pilot with no work
    /// bound is drained (its agent ends, and with it its batch job) and a pilot still queued
    /// or starting is canceled. Pilots running tasks stay for retries.
    pub(super) async fn release_idle_pilots(&mut self) -> anyhow::Result<()> {
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

    /// Work is left but no pilot is (they failed, were refused, or reached their walltime):
    /// start another like the last one that ran while the replacement budget lasts, else stop
    /// with the reasons instead of waiting forever.
    pub(super) async fn ensure_a_pilot(&mut self) -> anyhow::Result<()> {
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
}
