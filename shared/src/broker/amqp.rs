//! RabbitMQ through `lapin`: the topology of DESIGN section 5, publisher confirms,
//! persistent messages, and reconnection with backoff after a broker restart.

use super::*;
use crate::util::backoff;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// Tasks go through this direct exchange, routed by queue name.
pub const EXCHANGE: &str = "emanager";
/// Dead letters go through this one to `em.<campaign>.dead`.
pub const DEAD_LETTER_EXCHANGE: &str = "emanager.dlx";
/// Deliveries of one message before RabbitMQ dead-letters it as poison.
pub const DELIVERY_LIMIT: i32 = 5;
/// The component name of broker problems in `/healthz`.
const HEALTH_BROKER: &str = "broker";
/// Header carrying why a message was dead-lettered.
pub const REASON_HEADER: &str = "x-emanager-reason";

struct Live {
    generation: u64,
    connection: Connection,
    channel: Channel,
}

struct Shared {
    url: String,
    live: Mutex<Option<Arc<Live>>>,
    generation: std::sync::atomic::AtomicU64,
    /// How long operations keep retrying through a broker outage.
    retry_window: Duration,
}

/// [`Broker`] over RabbitMQ.
#[derive(Clone)]
pub struct AmqpBroker {
    shared: Arc<Shared>,
}

fn op_err(op: &'static str, e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Operation {
        op,
        reason: e.to_string(),
    }
}

impl AmqpBroker {
    /// Connects once, failing fast with a message that names the URL when it cannot.
    pub async fn connect(url: &str) -> BrokerResult<Self> {
        Self::connect_with_retry_window(url, Duration::from_secs(120)).await
    }

    pub async fn connect_with_retry_window(
        url: &str,
        retry_window: Duration,
    ) -> BrokerResult<Self> {
        let broker = AmqpBroker {
            shared: Arc::new(Shared {
                url: url.to_string(),
                live: Mutex::new(None),
                generation: 0.into(),
                retry_window,
            }),
        };
        let mut last = String::new();
        for attempt in 0..3 {
            match broker.live().await {
                Ok(_) => return Ok(broker),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
        Err(BrokerError::Unreachable {
            url: crate::util::redact_url(url),
            reason: last,
        })
    }

    async fn open(&self) -> Result<Live, lapin::Error> {
        let props = ConnectionProperties::default()
            .with_connection_name(format!("emanager-{}", std::process::id()).into());
        let connection = tokio::time::timeout(
            Duration::from_secs(10),
            Connection::connect(&self.shared.url, props),
        )
        .await
        .map_err(|_| lapin::Error::InvalidConnectionState(lapin::ConnectionState::Closed))??;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        declare_exchanges(&channel).await?;
        let generation = self
            .shared
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        Ok(Live {
            generation,
            connection,
            channel,
        })
    }

    /// The current connection, opened if there is none.
    async fn live(&self) -> Result<Arc<Live>, lapin::Error> {
        let mut guard = self.shared.live.lock().await;
        if let Some(live) = guard.as_ref() {
            if live.connection.status().connected() && live.channel.status().connected() {
                return Ok(live.clone());
            }
        }
        let live = Arc::new(self.open().await?);
        *guard = Some(live.clone());
        Ok(live)
    }

    async fn forget(&self, generation: u64) {
        let mut guard = self.shared.live.lock().await;
        if guard.as_ref().map(|l| l.generation) == Some(generation) {
            *guard = None;
        }
    }

    /// Runs `op` on the shared channel, reconnecting with backoff for up to the retry window.
    async fn with_channel<T, F, Fut>(&self, name: &'static str, op: F) -> BrokerResult<T>
    where
        F: Fn(Channel) -> Fut,
        Fut: std::future::Future<Output = Result<T, BrokerError>>,
    {
        let deadline = tokio::time::Instant::now() + self.shared.retry_window;
        let mut attempt = 0;
        loop {
            let result = match self.live().await {
                Ok(live) => {
                    let r = op(live.channel.clone()).await;
                    if r.is_err() {
                        self.forget(live.generation).await;
                    }
                    r
                }
                Err(e) => Err(op_err(name, e)),
            };
            match result {
                Ok(v) => {
                    crate::health::healthy(HEALTH_BROKER);
                    return Ok(v);
                }
                Err(BrokerError::Nacked { queue }) => return Err(BrokerError::Nacked { queue }),
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                Err(e) => {
                    crate::health::unhealthy(HEALTH_BROKER, format!("{name} failed: {e}"));
                    tracing::warn!(op = name, error = %e, attempt, "broker operation failed; reconnecting");
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
            }
        }
    }
}

async fn declare_exchanges(ch: &Channel) -> Result<(), lapin::Error> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.exchange_declare(
        EXCHANGE,
        ExchangeKind::Direct,
        durable,
        FieldTable::default(),
    )
    .await?;
    ch.exchange_declare(
        DEAD_LETTER_EXCHANGE,
        ExchangeKind::Direct,
        durable,
        FieldTable::default(),
    )
    .await?;
    Ok(())
}

fn long(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.to_string()))
}

async fn declare_campaign_dead_queue(ch: &Channel, c: &CampaignId) -> Result<(), lapin::Error> {
    let dead = dead_queue_name(c);
    ch.queue_declare(
        &dead,
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await?;
    ch.queue_bind(
        &dead,
        DEAD_LETTER_EXCHANGE,
        &dead,
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    Ok(())
}

async fn declare_pilot_queue(ch: &Channel, c: &CampaignId, name: &str) -> Result<(), lapin::Error> {
    let mut args = FieldTable::default();
    args.insert(ShortString::from("x-queue-type"), long("quorum"));
    args.insert(
        ShortString::from("x-dead-letter-exchange"),
        long(DEAD_LETTER_EXCHANGE),
    );
    args.insert(
        ShortString::from("x-dead-letter-routing-key"),
        long(&dead_queue_name(c)),
    );
    args.insert(
        ShortString::from("x-delivery-limit"),
        AMQPValue::LongInt(DELIVERY_LIMIT),
    );
    ch.queue_declare(
        name,
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args,
    )
    .await?;
    ch.queue_bind(
        name,
        EXCHANGE,
        name,
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    Ok(())
}

fn persistent() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(2)
}

async fn publish_confirmed(
    ch: &Channel,
    exchange: &str,
    routing_key: &str,
    payload: &[u8],
    props: BasicProperties,
) -> BrokerResult<()> {
    // Mandatory: a message that reaches no queue (the queue or its binding is not back yet
    // after a broker restart) is returned to us instead of being confirmed and dropped, so
    // the caller sees an error and can rebind the tasks.
    let confirm = ch
        .basic_publish(
            exchange,
            routing_key,
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            payload,
            props,
        )
        .await
        .map_err(|e| op_err("publish", e))?
        .await
        .map_err(|e| op_err("publish confirm", e))?;
    if confirm.is_nack() {
        return Err(BrokerError::Nacked {
            queue: routing_key.to_string(),
        });
    }
    if let Some(returned) = confirm.take_message() {
        return Err(op_err(
            "publish",
            format!(
                "no queue took the message for {routing_key}: {}",
                returned.reply_text
            ),
        ));
    }
    Ok(())
}

struct AmqpSettle {
    broker: AmqpBroker,
    acker: lapin::acker::Acker,
    campaign: CampaignId,
}

#[async_trait]
impl Settle for AmqpSettle {
    async fn ack(&self) -> BrokerResult<()> {
        self.acker
            .ack(BasicAckOptions::default())
            .await
            .map_err(|e| op_err("ack", e))
    }

    async fn dead_letter(&self, payload: Vec<u8>, reason: &str) -> BrokerResult<()> {
        let dead = dead_queue_name(&self.campaign);
        let mut headers = FieldTable::default();
        headers.insert(ShortString::from(REASON_HEADER), long(reason));
        let c = self.campaign;
        self.broker
            .with_channel("dead-letter", |ch| {
                let (payload, headers, dead) = (payload.clone(), headers.clone(), dead.clone());
                async move {
                    declare_campaign_dead_queue(&ch, &c)
                        .await
                        .map_err(|e| op_err("declare dead queue", e))?;
                    publish_confirmed(
                        &ch,
                        DEAD_LETTER_EXCHANGE,
                        &dead,
                        &payload,
                        persistent().with_headers(headers),
                    )
                    .await
                }
            })
            .await?;
        self.ack().await
    }
}

struct AmqpConsumer {
    broker: AmqpBroker,
    campaign: CampaignId,
    queue: String,
    prefetch: u16,
    stream: Option<(Channel, lapin::Consumer)>,
}

impl AmqpConsumer {
    async fn subscribe(&self) -> Result<(Channel, lapin::Consumer), lapin::Error> {
        let live = self.broker.live().await?;
        let ch = live.connection.create_channel().await?;
        ch.basic_qos(self.prefetch, BasicQosOptions::default())
            .await?;
        let consumer = ch
            .basic_consume(
                &self.queue,
                &format!("emanager-{}", uuid::Uuid::new_v4().simple()),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok((ch, consumer))
    }
}

#[async_trait]
impl Consumer for AmqpConsumer {
    async fn next(&mut self) -> Option<Delivery> {
        use futures::StreamExt;
        let mut attempt = 0u32;
        let mut outage_started: Option<tokio::time::Instant> = None;
        loop {
            if self.stream.is_none() {
                match self.subscribe().await {
                    Ok(s) => {
                        if attempt > 0 {
                            crate::health::healthy(HEALTH_BROKER);
                            tracing::info!(queue = %self.queue, "consumer resubscribed after broker outage");
                        }
                        self.stream = Some(s);
                    }
                    Err(e) => {
                        let text = e.to_string();
                        if text.contains("NOT_FOUND") || text.contains("404") {
                            tracing::info!(queue = %self.queue, "queue is gone; consumer ends");
                            return None;
                        }
                        let started = *outage_started.get_or_insert_with(tokio::time::Instant::now);
                        if started.elapsed() > self.broker.shared.retry_window {
                            tracing::error!(queue = %self.queue, error = %text, "broker unreachable for too long; consumer ends");
                            return None;
                        }
                        crate::health::unhealthy(
                            HEALTH_BROKER,
                            format!("cannot consume {}: {text}", self.queue),
                        );
                        tracing::warn!(queue = %self.queue, error = %text, "cannot subscribe; retrying");
                        tokio::time::sleep(backoff(attempt)).await;
                        attempt += 1;
                        continue;
                    }
                }
            }
            let (_, stream) = self.stream.as_mut()?;
            match stream.next().await {
                Some(Ok(d)) => {
                    let settle = AmqpSettle {
                        broker: self.broker.clone(),
                        acker: d.acker,
                        campaign: self.campaign,
                    };
                    return Some(Delivery::new(d.data, Box::new(settle)));
                }
                Some(Err(e)) => {
                    tracing::warn!(queue = %self.queue, error = %e, "consumer stream failed; resubscribing");
                    self.stream = None;
                }
                None => {
                    tracing::warn!(queue = %self.queue, "consumer stream closed; resubscribing");
                    self.stream = None;
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
            }
        }
    }
}

#[async_trait]
impl Broker for AmqpBroker {
    async fn declare_pilot(&self, c: &CampaignId, p: &PilotId) -> BrokerResult<()> {
        let c = *c;
        let names = [
            queue_name(&c, p, QueueKind::Tasks),
            queue_name(&c, p, QueueKind::Control),
        ];
        self.with_channel("declare pilot queues", |ch| {
            let names = names.clone();
            async move {
                declare_campaign_dead_queue(&ch, &c)
                    .await
                    .map_err(|e| op_err("declare dead queue", e))?;
                for name in &names {
                    declare_pilot_queue(&ch, &c, name)
                        .await
                        .map_err(|e| op_err("declare pilot queue", e))?;
                }
                Ok(())
            }
        })
        .await
    }

    async fn delete_pilot(&self, c: &CampaignId, p: &PilotId) -> BrokerResult<()> {
        for kind in [QueueKind::Tasks, QueueKind::Control] {
            let name = queue_name(c, p, kind);
            self.with_channel("delete queue", |ch| {
                let name = name.clone();
                async move {
                    ch.queue_delete(&name, QueueDeleteOptions::default())
                        .await
                        .map(|_| ())
                        .map_err(|e| op_err("delete queue", e))
                }
            })
            .await?;
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
        self.with_channel("publish", |ch| {
            let (name, payload) = (name.clone(), &payload);
            async move { publish_confirmed(&ch, EXCHANGE, &name, payload, persistent()).await }
        })
        .await
    }

    async fn consume(
        &self,
        c: &CampaignId,
        p: &PilotId,
        kind: QueueKind,
        prefetch: u16,
    ) -> BrokerResult<Box<dyn Consumer>> {
        let mut consumer = AmqpConsumer {
            broker: self.clone(),
            campaign: *c,
            queue: queue_name(c, p, kind),
            prefetch: prefetch.max(1),
            stream: None,
        };
        consumer.stream = Some(
            consumer
                .subscribe()
                .await
                .map_err(|e| op_err("consume", e))?,
        );
        Ok(Box::new(consumer))
    }

    async fn queue_depth(&self, c: &CampaignId, p: &PilotId, kind: QueueKind) -> BrokerResult<u32> {
        let name = queue_name(c, p, kind);
        // A passive declare on a throwaway channel: a missing queue must not close the shared one.
        let live = self.live().await.map_err(|e| op_err("queue depth", e))?;
        let ch = live
            .connection
            .create_channel()
            .await
            .map_err(|e| op_err("queue depth", e))?;
        let q = ch
            .queue_declare(
                &name,
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await;
        let _ = ch.close(200, "done").await;
        match q {
            Ok(q) => Ok(q.message_count()),
            Err(e) if e.to_string().contains("NOT_FOUND") => Ok(0),
            Err(e) => Err(op_err("queue depth", e)),
        }
    }

    async fn drain_dead_letters(&self, c: &CampaignId) -> BrokerResult<Vec<DeadLetter>> {
        let dead = dead_queue_name(c);
        let c = *c;
        self.with_channel("drain dead letters", |ch| {
            let dead = dead.clone();
            async move {
                declare_campaign_dead_queue(&ch, &c)
                    .await
                    .map_err(|e| op_err("declare dead queue", e))?;
                let mut out = Vec::new();
                while let Some(m) = ch
                    .basic_get(&dead, BasicGetOptions { no_ack: true })
                    .await
                    .map_err(|e| op_err("get dead letter", e))?
                {
                    let reason = m
                        .delivery
                        .properties
                        .headers()
                        .as_ref()
                        .and_then(|h| h.inner().get(REASON_HEADER).cloned())
                        .map(|v| match v {
                            AMQPValue::LongString(s) => s.to_string(),
                            other => format!("{other:?}"),
                        })
                        .unwrap_or_else(|| {
                            "rejected by the broker (delivery limit or reject)".into()
                        });
                    out.push(DeadLetter {
                        payload: m.delivery.data,
                        reason,
                    });
                }
                Ok(out)
            }
        })
        .await
    }

    async fn delete_campaign(&self, c: &CampaignId) -> BrokerResult<()> {
        let dead = dead_queue_name(c);
        self.with_channel("delete dead queue", |ch| {
            let dead = dead.clone();
            async move {
                ch.queue_delete(&dead, QueueDeleteOptions::default())
                    .await
                    .map(|_| ())
                    .map_err(|e| op_err("delete dead queue", e))
            }
        })
        .await
    }
}
