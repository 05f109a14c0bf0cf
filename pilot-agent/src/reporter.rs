//! Sends task transitions to the state store in batches: one Lua call carries every
//! transition that queued up while the previous call was in flight, which is what lets an
//! agent report thousands of state changes per second.

use emanager_shared::store::StateStore;
use emanager_shared::{CampaignId, Transition, TransitionOutcome};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Most transitions sent in one store call.
pub const MAX_BATCH: usize = 2_000;

/// Handle to queue transitions; cheap to clone.
#[derive(Clone)]
pub struct Reporter {
    tx: mpsc::UnboundedSender<Transition>,
}

impl Reporter {
    /// Queues a transition; it reaches the store in order with the others.
    pub fn send(&self, t: Transition) {
        if self.tx.send(t).is_err() {
            tracing::error!("reporter is gone; a transition was dropped");
        }
    }
}

/// Starts the reporter; the join handle ends once every `Reporter` is dropped and the queue
/// is flushed.
pub fn spawn(
    store: Arc<dyn StateStore>,
    campaign: CampaignId,
) -> (Reporter, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Transition>();
    let handle = tokio::spawn(async move {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = rx.recv().await {
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(t) => batch.push(t),
                    Err(_) => break,
                }
            }
            let mut attempt = 0u32;
            loop {
                match store.transition(&campaign, &batch).await {
                    Ok(outcomes) => {
                        for (t, o) in batch.iter().zip(outcomes) {
                            if o != TransitionOutcome::Applied {
                                tracing::debug!(task = %t.task, to = %t.to, attempt = t.attempt, outcome = ?o, "transition not applied (fenced)");
                            }
                        }
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, pending = batch.len(), "cannot report transitions; retrying");
                        tokio::time::sleep(emanager_shared::util::backoff(attempt)).await;
                        attempt += 1;
                    }
                }
            }
            batch.clear();
        }
    });
    (Reporter { tx }, handle)
}
