//! The message broker seam: one queue of tasks and one control queue per pilot, plus a
//! dead-letter queue per campaign. `AmqpBroker` talks to RabbitMQ; `MemoryBroker` is the
//! in-process implementation used by embedded mode.

mod amqp;
mod memory;

pub use amqp::{AmqpBroker, DELIVERY_LIMIT};
pub use memory::MemoryBroker;

use crate::ids::{CampaignId, PilotId};
use async_trait::async_trait;

/// Which of a pilot's two queues.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QueueKind {
    Tasks,
    Control,
}

/// Queue names of DESIGN section 5.
pub fn queue_name(c: &CampaignId, p: &PilotId, kind: QueueKind) -> String {
    match kind {
        QueueKind::Tasks => format!("em.{c}.pilot.{p}"),
        QueueKind::Control => format!("em.{c}.ctl.{p}"),
    }
}

pub fn dead_queue_name(c: &CampaignId) -> String {
    format!("em.{c}.dead")
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot reach the message broker at {url}: {reason}. Start it (`deploy/dev/services-up.sh`, or `rabbitmq-server -detached`), or, for `emanager run`, drop --amqp-url / EMANAGER_AMQP_URL / `amqp_url` in emanager.toml to run in embedded mode")]
    Unreachable { url: String, reason: String },
    #[error("broker operation `{op}` failed: {reason}")]
    Operation { op: &'static str, reason: String },
    #[error("the broker refused the message (negative publisher confirm) on {queue}")]
    Nacked { queue: String },
}

pub type BrokerResult<T> = Result<T, BrokerError>;

/// A message dead-lettered with the reason it was refused.
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetter {
    pub payload: Vec<u8>,
    pub reason: String,
}

/// A received message that must be settled exactly once.
pub struct Delivery {
    pub payload: Vec<u8>,
    settle: Box<dyn Settle>,
}

impl Delivery {
    pub fn new(payload: Vec<u8>, settle: Box<dyn Settle>) -> Self {
        Delivery { payload, settle }
    }

    /// Done with the message: the broker forgets it.
    pub async fn ack(self) -> BrokerResult<()> {
        self.settle.ack().await
    }

    /// Refuse the message for good: it goes to the campaign's dead-letter queue with `reason`.
    pub async fn dead_letter(self, reason: &str) -> BrokerResult<()> {
        self.settle.dead_letter(self.payload, reason).await
    }
}

/// How a delivery is settled; one implementation per broker.
#[async_trait]
pub trait Settle: Send + Sync {
    async fn ack(&self) -> BrokerResult<()>;
    async fn dead_letter(&self, payload: Vec<u8>, reason: &str) -> BrokerResult<()>;
}

/// A stream of deliveries from one queue. It survives broker restarts (reconnecting with
/// backoff); unsettled deliveries of a lost connection come back through it.
#[async_trait]
pub trait Consumer: Send {
    /// The next delivery; `None` once the queue was deleted or the broker closed for good.
    async fn next(&mut self) -> Option<Delivery>;
}

#[async_trait]
pub trait Broker: Send + Sync {
    /// Declares the pilot's task and control queues (idempotent).
    async fn declare_pilot(&self, c: &CampaignId, p: &PilotId) -> BrokerResult<()>;
    /// Deletes the pilot's queues and whatever they still hold.
    async fn delete_pilot(&self, c: &CampaignId, p: &PilotId) -> BrokerResult<()>;
    /// Publishes persistently and waits for the broker's confirm.
    async fn publish(
        &self,
        c: &CampaignId,
        p: &PilotId,
        kind: QueueKind,
        payload: Vec<u8>,
    ) -> BrokerResult<()>;
    /// Consumes a pilot queue with at most `prefetch` unsettled messages in flight.
    async fn consume(
        &self,
        c: &CampaignId,
        p: &PilotId,
        kind: QueueKind,
        prefetch: u16,
    ) -> BrokerResult<Box<dyn Consumer>>;
    /// Messages waiting in a pilot queue (not counting unacknowledged ones).
    async fn queue_depth(&self, c: &CampaignId, p: &PilotId, kind: QueueKind) -> BrokerResult<u32>;
    /// Takes everything from the campaign's dead-letter queue.
    async fn drain_dead_letters(&self, c: &CampaignId) -> BrokerResult<Vec<DeadLetter>>;
    /// Deletes the campaign's dead-letter queue.
    async fn delete_campaign(&self, c: &CampaignId) -> BrokerResult<()>;
}
