//! In-process broker for embedded mode: the same queues and settlement rules as RabbitMQ,
//! kept in memory. An unsettled delivery whose consumer is dropped goes back to its queue.

use super::*;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

#[derive(Default)]
struct Queue {
    ready: VecDeque<Vec<u8>>,
    notify: Arc<Notify>,
    deleted: bool,
}

#[derive(Default)]
struct Inner {
    queues: HashMap<String, Queue>,
    dead: HashMap<CampaignId, Vec<DeadLetter>>,
}

/// In-memory implementation of [`Broker`].
#[derive(Clone, Default)]
pub struct MemoryBroker {
    inner: Arc<Mutex<Inner>>,
}

impl MemoryBroker {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct MemorySettle {
    broker: MemoryBroker,
    campaign: CampaignId,
    queue: String,
    settled: std::sync::atomic::AtomicBool,
    payload: Mutex<Option<Vec<u8>>>,
}

#[async_trait]
impl Settle for MemorySettle {
    async fn ack(&self) -> BrokerResult<()> {
        self.settled
            .store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
    async fn dead_letter(&self, payload: Vec<u8>, reason: &str) -> BrokerResult<()> {
        self.settled
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.broker
            .lock()
            .dead
            .entry(self.campaign)
            .or_default()
            .push(DeadLetter {
                payload,
                reason: reason.to_string(),
            });
        Ok(())
    }
}

impl Drop for MemorySettle {
    fn drop(&mut self) {
        // An unsettled delivery returns to the front of its queue, like an unacked AMQP message.
        if !self.settled.load(std::sync::atomic::Ordering::SeqCst) {
            if let Some(payload) = self.payload.lock().ok().and_then(|mut p| p.take()) {
                let mut inner = self.broker.lock();
                if let Some(q) = inner.queues.get_mut(&self.queue) {
                    q.ready.push_front(payload);
                    q.notify.notify_one();
                }
            }
        }
    }
}

struct MemoryConsumer {
    broker: MemoryBroker,
    campaign: CampaignId,
    queue: String,
}

#[async_trait]
impl Consumer for MemoryConsumer {
    async fn next(&mut self) -> Option<Delivery> {
        loop {
            let notify = {
                let mut inner = self.broker.lock();
                let q = inner.queues.get_mut(&self.queue)?;
                if q.deleted {
                    return None;
                }
                if let Some(payload) = q.ready.pop_front() {
                    let settle = MemorySettle {
                        broker: self.broker.clone(),
                        campaign: self.campaign,
                        queue: self.queue.clone(),
                        settled: false.into(),
                        payload: Mutex::new(Some(payload.clone())),
                    };
                    return Some(Delivery::new(payload, Box::new(settle)));
                }
                q.notify.clone()
            };
            notify.notified().await;
        }
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    async fn declare_pilot(&self, c: &CampaignId, p: &PilotId) -> BrokerResult<()> {
        let mut inner = self.lock();
        for kind in [QueueKind::Tasks, QueueKind::Control] {
            inner.queues.entry(queue_name(c, p, kind)).or_default();
        }
        Ok(())
    }

    async fn delete_pilot(&self, c: &CampaignId, p: &PilotId) -> BrokerResult<()> {
        let mut inner = self.lock();
        for kind in [QueueKind::Tasks, QueueKind::Control] {
            if let Some(mut q) = inner.queues.remove(&queue_name(c, p, kind)) {
                q.deleted = true;
                q.notify.notify_waiters();
                q.notify.notify_one();
            }
        }
        Ok(())
    }

    async fn publish(
        &self,
        c: &CampaignId,
        p: &PilotId,
        kind: QueueKind,
        payload: Vec<u8>,
    ) -> BrokerResult<()> {
        let name = queue_name(c, p, kind);
        let mut inner = self.lock();
        let q = inner
            .queues
            .get_mut(&name)
            .ok_or_else(|| BrokerError::Operation {
                op: "publish",
                reason: format!("queue {name} is not declared"),
            })?;
        q.ready.push_back(payload);
        q.notify.notify_one();
        Ok(())
    }

    async fn consume(
        &self,
        c: &CampaignId,
        p: &PilotId,
        kind: QueueKind,
        _prefetch: u16,
    ) -> BrokerResult<Box<dyn Consumer>> {
        let queue = queue_name(c, p, kind);
        if !self.lock().queues.contains_key(&queue) {
            return Err(BrokerError::Operation {
                op: "consume",
                reason: format!("queue {queue} is not declared"),
            });
        }
        Ok(Box::new(MemoryConsumer {
            broker: self.clone(),
            campaign: *c,
            queue,
        }))
    }

    async fn queue_depth(&self, c: &CampaignId, p: &PilotId, kind: QueueKind) -> BrokerResult<u32> {
        Ok(self
            .lock()
            .queues
            .get(&queue_name(c, p, kind))
            .map(|q| q.ready.len() as u32)
            .unwrap_or(0))
    }

    async fn drain_dead_letters(&self, c: &CampaignId) -> BrokerResult<Vec<DeadLetter>> {
        Ok(self.lock().dead.remove(c).unwrap_or_default())
    }

    async fn delete_campaign(&self, c: &CampaignId) -> BrokerResult<()> {
        let mut inner = self.lock();
        inner.dead.remove(c);
        let prefix = format!("em.{c}.");
        inner.queues.retain(|name, _| !name.starts_with(&prefix));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unsettled_delivery_returns_to_the_queue() {
        let b = MemoryBroker::new();
        let (c, p) = (CampaignId::random(), PilotId::random());
        b.declare_pilot(&c, &p).await.unwrap();
        b.publish(&c, &p, QueueKind::Tasks, b"one".to_vec())
            .await
            .unwrap();
        let mut cons = b.consume(&c, &p, QueueKind::Tasks, 1).await.unwrap();
        let d = cons.next().await.unwrap();
        drop(d);
        assert_eq!(b.queue_depth(&c, &p, QueueKind::Tasks).await.unwrap(), 1);
        cons.next().await.unwrap().ack().await.unwrap();
        assert_eq!(b.queue_depth(&c, &p, QueueKind::Tasks).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn dead_letters_keep_their_reason() {
        let b = MemoryBroker::new();
        let (c, p) = (CampaignId::random(), PilotId::random());
        b.declare_pilot(&c, &p).await.unwrap();
        b.publish(&c, &p, QueueKind::Tasks, b"junk".to_vec())
            .await
            .unwrap();
        let mut cons = b.consume(&c, &p, QueueKind::Tasks, 1).await.unwrap();
        cons.next()
            .await
            .unwrap()
            .dead_letter("garbled")
            .await
            .unwrap();
        let dead = b.drain_dead_letters(&c).await.unwrap();
        assert_eq!(
            dead,
            vec![DeadLetter {
                payload: b"junk".to_vec(),
                reason: "garbled".into()
            }]
        );
    }

    #[tokio::test]
    async fn deleting_a_pilot_ends_its_consumers() {
        let b = MemoryBroker::new();
        let (c, p) = (CampaignId::random(), PilotId::random());
        b.declare_pilot(&c, &p).await.unwrap();
        let mut cons = b.consume(&c, &p, QueueKind::Control, 1).await.unwrap();
        let waiter = tokio::spawn(async move { cons.next().await.is_none() });
        tokio::task::yield_now().await;
        b.delete_pilot(&c, &p).await.unwrap();
        assert!(waiter.await.unwrap());
    }
}
