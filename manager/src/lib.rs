//! EManager: the execution manager library behind the `emanager` binary.

pub mod workflow;
