//! EManager's shared crate: the model every component agrees on, the wire protocol, and the
//! clients of the two services a campaign runs on (message broker, state store), each behind
//! a small trait with a real and an in-process implementation.

pub mod access;
pub mod broker;
pub mod catalog;
pub mod health;
pub mod ids;
pub mod metrics;
pub mod model;
pub mod pool;
pub mod protocol;
pub mod state;
pub mod store;
pub mod util;

pub use ids::{CampaignId, PilotId, TaskId};
pub use model::{now_ms, BoundTask, TaskRecord, TaskSpec, Transition, TransitionOutcome};
pub use state::{CampaignState, PilotState, TaskState};

/// Default service URLs (overridden by `EMANAGER_AMQP_URL` / `EMANAGER_REDIS_URL`).
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379/";
