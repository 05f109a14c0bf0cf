//! The tasks that feed a lane: the consumer of the pilot's task queue (which persists
//! AGENT_QUEUED before it acknowledges), the consumer of its control queue, and its
//! heartbeat. Each talks to the core through its channel.

use super::core_loop::CoreMsg;
use super::lane::Load;
use super::AgentConfig;
use emanager_shared::broker::{Broker, QueueKind};
use emanager_shared::model::PilotLoad;
use emanager_shared::protocol::{Envelope, Message};
use emanager_shared::store::StateStore;
use emanager_shared::{BoundTask, CampaignId, TaskState, Transition, TransitionOutcome};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

pub(crate) async fn consume_tasks(
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
            let _ = core.send(CoreMsg::Detach(
                c,
                format!("cannot consume the task queue: {e}"),
            ));
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
            tracing::info!(campaign = %c, "task queue closed");
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
        if !accepted.is_empty() && core.send(CoreMsg::Tasks(c, accepted)).is_err() {
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

pub(crate) async fn consume_control(
    cfg: AgentConfig,
    broker: Arc<dyn Broker>,
    core: mpsc::UnboundedSender<CoreMsg>,
) {
    let c = cfg.campaign;
    let mut consumer = match broker.consume(&c, &cfg.pilot, QueueKind::Control, 4).await {
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
                if core.send(CoreMsg::Control(c, env.body)).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = d.dead_letter(&e.to_string()).await;
            }
        }
    }
}

/// Beats for the lane's pilot every period and, every fifth beat, looks at its campaign:
/// one that ended or is gone detaches the lane. A pool agent's lane also detaches when the
/// manager gave its pilot up (a lapse it did not survive): the pool supervisor then
/// attaches the campaign again under a new pilot.
pub(crate) async fn heartbeat(
    cfg: AgentConfig,
    store: Arc<dyn StateStore>,
    load: Arc<Load>,
    core: mpsc::UnboundedSender<CoreMsg>,
    watch_own_pilot: bool,
) {
    let c = cfg.campaign;
    let ttl = cfg.heartbeat.as_millis() as u64 * 3;
    let mut beats = 0u64;
    loop {
        let l = PilotLoad {
            busy_cores: load.busy_cores.load(Ordering::Relaxed),
            running: load.running.load(Ordering::Relaxed),
            queued: load.queued.load(Ordering::Relaxed),
        };
        if let Err(e) = store.heartbeat(&c, &cfg.pilot, ttl, l).await {
            crate::metrics::get().heartbeat_failures.inc();
            emanager_shared::health::unhealthy("state store", format!("heartbeat failed: {e}"));
            tracing::warn!(error = %e, "heartbeat failed");
        } else {
            crate::metrics::get().heartbeats.inc();
            emanager_shared::health::healthy("state store");
        }
        emanager_shared::health::beat("heartbeat");
        beats += 1;
        if beats.is_multiple_of(5) {
            match store.campaign(&c).await {
                Ok(Some(m)) if m.state.is_final() => {
                    let _ = core.send(CoreMsg::Detach(c, format!("campaign is {}", m.state)));
                }
                Ok(None) => {
                    let _ = core.send(CoreMsg::Detach(
                        c,
                        "campaign is gone from the state store".into(),
                    ));
                }
                _ => {}
            }
            if watch_own_pilot {
                if let Ok(pilots) = store.pilots(&c).await {
                    let mine = pilots.iter().find(|v| v.record.id == cfg.pilot);
                    if let Some(v) = mine.filter(|v| v.record.state.is_final()) {
                        let _ = core.send(CoreMsg::Detach(
                            c,
                            format!(
                                "the manager marked this pilot {}: {}",
                                v.record.state, v.record.reason
                            ),
                        ));
                    }
                }
            }
        }
        if core.send(CoreMsg::Tick).is_err() {
            return;
        }
        tokio::time::sleep(cfg.heartbeat).await;
    }
}
