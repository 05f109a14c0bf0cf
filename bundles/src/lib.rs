//! EManager's bundle service: what each resource, queue and pilot looks like now, and how
//! long a pilot job would wait. See `docs/bundles.md`.
//!
//! Pure parts ([`estimator`], [`traces`], [`slurm_jobs`] parsing, [`table`], [`merge`]) take
//! values; [`probe`] and [`service`] do the I/O; [`api`] serves it over HTTP.

pub mod estimator;
pub mod model;
pub mod probe;
pub mod slurm_jobs;
pub mod traces;
