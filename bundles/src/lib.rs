//! EManager's bundle service: what each resource, queue and pilot looks like now, and how
//! long a pilot job would wait. See `docs/bundles.md`.
//!
//! Pure parts ([`estimator`], [`traces`], [`table`], [`merge`], [`health`]) take values;
//! [`probe`], [`observations`] and [`service`] do the I/O; [`api`] serves it over HTTP.

pub mod api;
pub mod estimator;
pub mod health;
pub mod model;
pub mod observations;
pub mod openapi;
pub mod probe;
pub mod service;
pub mod snapshot_store;
pub mod table;
pub mod traces;

pub use estimator::{Evidence, QueueWaitEstimate};
pub use model::Snapshot;
pub use snapshot_store::{merge, read_snapshots};
pub use table::render_table;
