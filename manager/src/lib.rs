//! EManager: the execution manager library behind the `emanager` binary.

pub mod skeleton;
pub mod workflow;
