//! Pilots: launching (in process, as processes, as batch jobs), adopting, watching them
//! until they register, losing and replacing them, shutting them down.

use super::*;

impl Driver {
    /// Takes over pilots already registered for this campaign (resume, or agents started by
    /// hand), with the work bound to them.
    pub(super) async fn adopt_pilots(&mut self) -> anyhow::Result<()> {
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
            slot.drain_at_ms = v.record.drain_at_ms();
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

    pub(super) async fn launch_missing_pilots(&mut self) -> anyhow::Result<()> {
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

    /// Starts a pilot for `req`: an agent here (in process or as a process), or a batch job
    /// on a catalog resource. A job the batch system refuses makes a FAILED pilot with the
    /// scheduler's message (not replaced: it would be refused again); the work goes to the
    /// other pilots.
    pub(super) async fn launch(&mut self, req: PilotRequest, why: &str) -> anyhow::Result<()> {
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
                tracing::info!(pilot = %id, resource = %req.resource, nodes = req.nodes, cores = req.cores, walltime_s = ?req.walltime_s, "pilot launched");
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

    pub(super) async fn check_pilots(&mut self) -> anyhow::Result<()> {
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
                slot.drain_at_ms = v.record.drain_at_ms();
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
            // A lapse counts once it has lasted another two TTLs (six beats): a state store
            // restart can expire every heartbeat key while agents reconnect. A driver that
            // (re)starts, after a Redis outage too, has fresh slots: the six beats count from
            // its first look.
            let lapsed = slot.registered && !v.alive;
            slot.lapsed_since = if lapsed {
                slot.lapsed_since.or(Some(Instant::now()))
            } else {
                None
            };
            let confirm = Duration::from_millis(self.opts.heartbeat_ms.saturating_mul(6));
            if lapsed && slot.lapsed_since.is_some_and(|t| t.elapsed() >= confirm) {
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

    pub(super) async fn lose_pilot(
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
    pub(super) async fn replace(
        &mut self,
        old: PilotId,
        req: PilotRequest,
    ) -> anyhow::Result<bool> {
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

    pub(super) async fn shutdown_pilots(&mut self) {
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
        // Every pilot queue of the campaign goes, also those of pilots that ended earlier
        // whose deletion failed (the broker was down) or that an agent declared again.
        for v in self.store.pilots(&self.c).await.unwrap_or_default() {
            if let Err(e) = self.broker.delete_pilot(&self.c, &v.record.id).await {
                tracing::warn!(pilot = %v.record.id, error = %e, "cannot delete the pilot's queues");
            }
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

    /// Detaches the campaign from its pool before its pilots are shut down, so the pool's
    /// agents do not attach to it again meanwhile.
    pub(super) async fn leave_pool(&mut self) -> anyhow::Result<()> {
        if let Some(p) = &self.opts.pool {
            self.store.detach_from_pool(&p.name, &self.c).await?;
            tracing::info!(pool = %p.name, "detached from pool");
        }
        Ok(())
    }
}
