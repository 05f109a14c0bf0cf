//! The pilot agent: runs inside an allocation, discovers its nodes, registers, consumes its
//! own queue, packs tasks onto cores and GPUs, runs them and reports every state change.
//! A pool agent (`pool`) does the same for every campaign of its pool, sharing its cores
//! between them by weight (`fairshare`).

pub mod agent;
pub mod discovery;
pub mod executor;
pub mod fairshare;
pub mod launch;
pub mod metrics;
pub mod pool;
pub mod reporter;
pub mod scheduler;

pub use agent::{run, AgentConfig, AgentSummary};
pub use pool::{run_pool, PoolConfig};
