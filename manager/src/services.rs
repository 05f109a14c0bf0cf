//! Connecting to the services a campaign runs on: the real RabbitMQ and Redis in distributed
//! mode, in-process ones in embedded mode. Nothing falls back silently from one to the other.

use crate::config::Config;
use emanager_shared::broker::{AmqpBroker, Broker, MemoryBroker};
use emanager_shared::store::{MemoryStore, RedisStore, StateStore};
use std::sync::Arc;

pub struct Services {
    pub broker: Arc<dyn Broker>,
    pub store: Arc<dyn StateStore>,
    /// `Some((amqp, redis))` in distributed mode.
    pub urls: Option<(String, String)>,
}

impl Services {
    pub fn embedded() -> Services {
        Services {
            broker: Arc::new(MemoryBroker::new()),
            store: Arc::new(MemoryStore::new()),
            urls: None,
        }
    }

    /// Connects to what the configuration names; errors say which URL failed and what to do.
    pub async fn connect(cfg: &Config) -> anyhow::Result<Services> {
        match (&cfg.amqp_url, &cfg.redis_url) {
            (Some(amqp), Some(redis)) => {
                let store = RedisStore::connect(redis).await?;
                let broker = AmqpBroker::connect(amqp).await?;
                Ok(Services {
                    broker: Arc::new(broker),
                    store: Arc::new(store),
                    urls: Some((amqp.clone(), redis.clone())),
                })
            }
            _ => Ok(Services::embedded()),
        }
    }

    /// Only the state store (read commands).
    pub async fn store_only(cfg: &Config) -> anyhow::Result<Arc<dyn StateStore>> {
        Ok(Arc::new(
            RedisStore::connect(&cfg.redis_url_or_default()).await?,
        ))
    }
}
