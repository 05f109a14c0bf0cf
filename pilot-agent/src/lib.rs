pub fn placeholder() {}

pub mod scheduler;
