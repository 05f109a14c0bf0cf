//! Whether a task may still start: an agent drains its drain margin before its allocation
//! ends, and a task that would still run then is killed with the allocation, wasting the
//! cores it held. Such a task is handed back to the manager instead: when it arrives, at
//! every heartbeat tick while it waits here, and when cores free up for it.

/// Why a task estimated at `est_s` seconds must not start at `now_ms` on an agent that drains
/// at `drain_at_ms` (ms since the epoch; `None`: the allocation does not end): the reason
/// its return carries. `None` when it can start. A task without an estimate (0 s) may start
/// until the drain.
pub(crate) fn too_late_to_start(
    est_s: f64,
    now_ms: u64,
    drain_at_ms: Option<u64>,
) -> Option<String> {
    let drain_at = drain_at_ms?;
    let left_s = drain_at.saturating_sub(now_ms) as f64 / 1000.0;
    (est_s > left_s).then(|| {
        // Rounded down, so the time left never reads as enough.
        let left_s = (left_s * 10.0).floor() / 10.0;
        format!(
            "pilot drains in {left_s:.1} s (its walltime minus the drain margin); task needs ~{est_s:.1} s"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_allocation_that_does_not_end_starts_everything() {
        assert_eq!(too_late_to_start(1e9, 5, None), None);
    }

    #[test]
    fn a_task_that_ends_by_the_drain_starts() {
        assert_eq!(too_late_to_start(10.0, 0, Some(10_000)), None);
        assert_eq!(too_late_to_start(9.5, 500, Some(10_000)), None);
    }

    #[test]
    fn a_task_that_would_still_run_at_the_drain_is_refused_with_both_times() {
        let why = too_late_to_start(3.0, 7_050, Some(10_000)).unwrap();
        assert_eq!(
            why,
            "pilot drains in 2.9 s (its walltime minus the drain margin); task needs ~3.0 s"
        );
    }

    #[test]
    fn after_the_drain_only_tasks_without_an_estimate_may_start() {
        assert_eq!(too_late_to_start(0.0, 20_000, Some(10_000)), None);
        assert!(too_late_to_start(0.001, 20_000, Some(10_000)).is_some());
    }
}
