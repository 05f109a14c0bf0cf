//! The manager's Prometheus series (see `docs/operations.md`). Registered once per process in
//! the shared registry; `emanager run|resume --metrics-addr` exports them.

use crate::driver::Counts;
use emanager_shared::broker::{Broker, QueueKind};
use emanager_shared::metrics::{self, Counter, Gauge, Histogram, StateGauges, StateLabel};
use emanager_shared::{CampaignId, PilotId, PilotState, TaskId};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

/// Every series the manager updates.
pub struct ManagerMetrics {
    pub tasks: StateGauges,
    pub pilots: StateGauges,
    pub bind_latency: Histogram,
    pub published: Counter,
    pub batches: Counter,
    pub queue_depth: Gauge,
    /// When each READY task became ready (for the bind latency).
    ready_since: Mutex<HashMap<TaskId, Instant>>,
}

/// The process's manager series.
pub fn get() -> &'static ManagerMetrics {
    static M: OnceLock<ManagerMetrics> = OnceLock::new();
    M.get_or_init(|| ManagerMetrics {
        tasks: metrics::state_gauges("em_manager_tasks", "Tasks of the campaign by state."),
        pilots: metrics::state_gauges("em_manager_pilots", "Pilots known to the manager by state."),
        bind_latency: metrics::histogram(
            "em_manager_bind_latency_seconds",
            "Time from a task becoming READY to its binding to a pilot (SCHEDULED).",
            0.001,
            16,
        ),
        published: metrics::counter(
            "em_manager_tasks_published",
            "Tasks published to pilot queues (dispatches).",
        ),
        batches: metrics::counter(
            "em_manager_batches_published",
            "TaskBatch messages published to pilot queues.",
        ),
        queue_depth: metrics::gauge(
            "em_manager_queue_depth",
            "Messages waiting in the task queues of active pilots, as last sampled.",
        ),
        ready_since: Mutex::new(HashMap::new()),
    })
}

impl ManagerMetrics {
    /// A task became READY (remembered only while an exporter runs: a million-task
    /// campaign would otherwise keep a million timestamps nobody reads).
    pub fn ready(&self, task: TaskId) {
        if !metrics::exporting() {
            return;
        }
        self.ready_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(task)
            .or_insert_with(Instant::now);
    }

    /// A task was bound to a pilot.
    pub fn bound(&self, task: TaskId) {
        let since = self
            .ready_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&task);
        if let Some(at) = since {
            self.bind_latency.observe(at.elapsed().as_secs_f64());
        }
    }

    /// Task counts and pilot states after a pass of the run loop.
    pub fn observe(&self, counts: &Counts, pilots: impl Iterator<Item = PilotState>) {
        for (state, n) in [
            ("waiting", counts.waiting),
            ("ready", counts.ready),
            ("scheduled", counts.scheduled),
            ("executing", counts.executing),
            ("done", counts.done),
            ("failed", counts.failed),
            ("canceled", counts.canceled),
        ] {
            self.tasks.get_or_create(&label(state)).set(n as i64);
        }
        let mut by_state: HashMap<String, i64> = HashMap::new();
        for s in pilots {
            *by_state.entry(s.to_string().to_lowercase()).or_default() += 1;
        }
        for s in PILOT_STATES {
            let n = by_state.get(*s).copied().unwrap_or(0);
            self.pilots.get_or_create(&label(s)).set(n);
        }
    }
}

const PILOT_STATES: &[&str] = &[
    "new",
    "submitted",
    "queued",
    "active",
    "draining",
    "done",
    "failed",
    "canceled",
];

fn label(state: &str) -> StateLabel {
    StateLabel {
        state: state.to_string(),
    }
}

/// Samples the depth of the active pilots' task queues, at most once a second and only
/// while an exporter runs: it costs one broker round trip per pilot.
pub async fn sample_queue_depth(
    broker: &dyn Broker,
    c: &CampaignId,
    pilots: impl Iterator<Item = PilotId>,
) {
    static LAST: Mutex<Option<Instant>> = Mutex::new(None);
    if !metrics::exporting() {
        return;
    }
    {
        let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(1)) {
            return;
        }
        *last = Some(Instant::now());
    }
    let mut total = 0i64;
    for p in pilots {
        if let Ok(n) = broker.queue_depth(c, &p, QueueKind::Tasks).await {
            total += n as i64;
        }
    }
    get().queue_depth.set(total);
}
