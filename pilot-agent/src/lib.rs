//! The pilot agent: runs inside an allocation, discovers its nodes, registers, consumes its
//! own queue, packs tasks onto cores and GPUs, runs them and reports every state change.

pub mod agent;
pub mod discovery;
pub mod executor;
pub mod fairshare;
pub mod launch;
pub mod metrics;
pub mod reporter;
pub mod scheduler;

pub use agent::{run, AgentConfig, AgentSummary};
