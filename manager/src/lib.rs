//! EManager: the execution manager library behind the `emanager` binary. The binary is a
//! thin layer over it, so tests and embedded mode run exactly the same code.

pub mod adaptive;
pub mod campaign;
pub mod cli;
pub mod config;
pub mod driver;
pub mod metrics;
pub mod pilot_waits;
pub mod pilots;
pub mod planner;
pub mod progress;
pub mod services;
pub mod skeleton;
pub mod workflow;
