//! Adaptive execution: every re-plan interval the manager compares a planned campaign's
//! progress with its plan and decides whether to add a pilot (it would finish too late) or
//! cancel a queued one (the running pilots finish before it would start). Pure: the driver
//! gathers a [`Progress`] and carries out the [`Decision`]s.
//!
//! The finish is predicted from what the campaign shows, not only from estimates: the rate of
//! the last interval (tasks per second per active core) when tasks finished in it, else the
//! tasks' estimated core-seconds over the active cores. A queued pilot adds its cores at its
//! predicted start (submission plus the plan's queue-wait estimate for its resource).

use crate::campaign::PlanRecord;

/// How much later than the plan's predicted time to completion a campaign may run before a
/// pilot is added: 25 %, and at least two re-plan intervals (lateness is only seen at each
/// check).
const SLACK: f64 = 0.25;

/// Where a planned campaign stands.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    /// Seconds since the campaign was created.
    pub elapsed_s: f64,
    /// Tasks not final yet.
    pub remaining_tasks: u64,
    /// Estimated core-seconds of those tasks.
    pub remaining_core_s: f64,
    /// Cores of the registered, active pilots.
    pub active_cores: u32,
    /// Tasks that finished during the last window, and its length.
    pub finished_in_window: u64,
    pub window_s: f64,
    /// Live pilots (active, starting or queued).
    pub live_pilots: u32,
}

/// A pilot submitted and not started yet.
#[derive(Clone, Debug, PartialEq)]
pub struct QueuedPilot<Id> {
    pub id: Id,
    pub cores: u32,
    /// Seconds from now until its predicted start (0 when overdue).
    pub starts_in_s: f64,
}

/// What the manager should do, with why.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision<Id> {
    AddPilot { why: String },
    CancelQueued { id: Id, why: String },
}

/// Seconds until the remaining work is done with `cores` cores working from now and each
/// of `later` joining at its start; `None` when no capacity will ever come.
fn finish_in_s<Id>(p: &Progress, cores: u32, later: &[&QueuedPilot<Id>]) -> Option<f64> {
    if p.remaining_tasks == 0 {
        return Some(0.0);
    }
    // Work in "core-seconds", at the observed pace when there is one.
    let (work, per_core_rate) = if p.finished_in_window > 0 && p.active_cores > 0 {
        let rate = p.finished_in_window as f64 / p.window_s.max(1e-3) / p.active_cores as f64;
        (p.remaining_tasks as f64, rate) // tasks, tasks per core-second
    } else {
        (p.remaining_core_s.max(p.remaining_tasks as f64 * 1e-3), 1.0)
    };
    let mut joins: Vec<(f64, u32)> = later.iter().map(|q| (q.starts_in_s, q.cores)).collect();
    joins.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut t, mut c, mut left) = (0.0, cores as f64, work);
    for (at, more) in joins {
        if c > 0.0 {
            let need = left / (c * per_core_rate);
            if t + need <= at {
                return Some(t + need);
            }
            left -= (at - t).max(0.0) * c * per_core_rate;
        }
        t = t.max(at);
        c += more as f64;
    }
    (c > 0.0).then(|| t + left / (c * per_core_rate))
}

/// The decisions for a planned campaign now.
pub fn decide<Id: Clone + std::fmt::Display>(
    plan: &PlanRecord,
    p: &Progress,
    queued: &[QueuedPilot<Id>],
) -> Vec<Decision<Id>> {
    let mut out = Vec::new();
    if p.remaining_tasks == 0 {
        return out;
    }
    let slack_s = (plan.predicted_ttc_s * SLACK).max(2.0 * plan.replan_interval_s as f64);
    let target_s = plan.predicted_ttc_s + slack_s;
    let all: Vec<&QueuedPilot<Id>> = queued.iter().collect();
    let finish = finish_in_s(p, p.active_cores, &all);
    // Queued pilots the running ones do not need: the work is done before they start.
    if p.active_cores > 0 {
        let alone = finish_in_s::<Id>(p, p.active_cores, &[]);
        for q in queued {
            if let Some(done) = alone {
                if done <= q.starts_in_s && p.elapsed_s + done <= target_s {
                    out.push(Decision::CancelQueued {
                        id: q.id.clone(),
                        why: format!(
                            "the running pilots finish the remaining {} task(s) in ~{:.0} s, before pilot {} would start (~{:.0} s)",
                            p.remaining_tasks, done, q.id, q.starts_in_s
                        ),
                    });
                }
            }
        }
    }
    let late = match finish {
        Some(f) => p.elapsed_s + f > target_s,
        None => true,
    };
    // Another pilot helps only when some work is waiting, not when every task left runs.
    let waiting = p.remaining_tasks > u64::from(p.active_cores);
    if late && waiting && p.live_pilots < plan.max_pilots {
        let when = finish.map_or_else(
            || "never (no capacity)".to_string(),
            |f| format!("at ~{:.0} s", p.elapsed_s + f),
        );
        out.push(Decision::AddPilot {
            why: format!(
                "predicted to finish {when}, later than the plan's {:.0} s (+{:.0} s slack): {} task(s) left on {} active core(s)",
                plan.predicted_ttc_s,
                slack_s,
                p.remaining_tasks,
                p.active_cores
            ),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::PlannedPilotRecord;

    fn plan(ttc: f64) -> PlanRecord {
        PlanRecord {
            strategy: "ttc".into(),
            predicted_ttc_s: ttc,
            core_hours_requested: 1.0,
            pilots: vec![PlannedPilotRecord {
                resource: "r".into(),
                queue: "q".into(),
                nodes: 1,
                walltime_s: 3600.0,
                predicted_wait_s: 30.0,
                why: "w".into(),
            }],
            replan_interval_s: 60,
            max_pilots: 3,
        }
    }

    fn progress() -> Progress {
        Progress {
            elapsed_s: 100.0,
            remaining_tasks: 100,
            remaining_core_s: 1000.0,
            active_cores: 10,
            finished_in_window: 0,
            window_s: 60.0,
            live_pilots: 1,
        }
    }

    #[test]
    fn on_schedule_nothing_changes() {
        // 1000 core-s on 10 cores: done at 100 + 100 s, within 600 s.
        assert!(decide::<u32>(&plan(600.0), &progress(), &[]).is_empty());
    }

    #[test]
    fn a_campaign_slower_than_its_plan_gets_a_pilot() {
        // Observed: 10 tasks a minute on 10 cores, 100 left: 600 s more, far past 200 s.
        let p = Progress {
            finished_in_window: 10,
            ..progress()
        };
        let d = decide::<u32>(&plan(200.0), &p, &[]);
        assert!(
            matches!(&d[..], [Decision::AddPilot { why }] if why.contains("100 task(s) left")),
            "{d:?}"
        );
    }

    #[test]
    fn no_pilot_is_added_when_every_task_left_runs() {
        let p = Progress {
            finished_in_window: 1,
            remaining_tasks: 10,
            ..progress()
        };
        assert!(decide::<u32>(&plan(1.0), &p, &[]).is_empty());
    }

    #[test]
    fn no_pilot_is_added_beyond_the_cap() {
        let p = Progress {
            finished_in_window: 10,
            live_pilots: 3,
            ..progress()
        };
        assert!(decide::<u32>(&plan(200.0), &p, &[]).is_empty());
    }

    #[test]
    fn a_queued_pilot_that_would_start_after_the_work_is_done_is_canceled() {
        let q = QueuedPilot {
            id: 7u32,
            cores: 10,
            starts_in_s: 500.0,
        };
        let d = decide(&plan(600.0), &progress(), &[q]);
        assert!(
            matches!(&d[..], [Decision::CancelQueued { id: 7, why }] if why.contains("before pilot 7 would start")),
            "{d:?}"
        );
    }

    #[test]
    fn a_queued_pilot_that_is_needed_stays() {
        // 1000 core-s on 1 core: 1000 s alone; the queued pilot starts in 50 s.
        let p = Progress {
            active_cores: 1,
            ..progress()
        };
        let q = QueuedPilot {
            id: 7u32,
            cores: 10,
            starts_in_s: 50.0,
        };
        let d = decide(&plan(600.0), &p, &[q]);
        assert!(
            d.iter()
                .all(|x| !matches!(x, Decision::CancelQueued { .. })),
            "{d:?}"
        );
    }

    #[test]
    fn without_any_capacity_the_campaign_is_late() {
        let p = Progress {
            active_cores: 0,
            live_pilots: 0,
            ..progress()
        };
        let d = decide::<u32>(&plan(600.0), &p, &[]);
        assert!(
            matches!(&d[..], [Decision::AddPilot { why }] if why.contains("never")),
            "{d:?}"
        );
    }

    #[test]
    fn queued_capacity_counts_from_its_start() {
        // 1000 core-s: 1 core alone for 50 s (50 core-s), then 11 cores: 950 / 11 ~ 86 s.
        let p = Progress {
            active_cores: 1,
            ..progress()
        };
        let q = QueuedPilot {
            id: 1u32,
            cores: 10,
            starts_in_s: 50.0,
        };
        let f = finish_in_s(&p, 1, &[&q]).unwrap();
        assert!((f - (50.0 + 950.0 / 11.0)).abs() < 1e-6, "{f}");
    }
}
