//! EManager: the execution manager library behind the `emanager` binary.

pub mod planner;
pub mod workflow;
