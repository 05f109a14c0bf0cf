//! The agent's Prometheus series (see `docs/operations.md`). Registered once per process in
//! the shared registry; `pilot-agent --metrics-addr` exports them.

use emanager_shared::metrics::{self, Counter, Gauge, Histogram};
use emanager_shared::TaskId;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

/// Every series the agent updates.
pub struct AgentMetrics {
    pub slots_busy: Gauge,
    pub slots_free: Gauge,
    pub tasks_queued: Gauge,
    pub start_latency: Histogram,
    pub spawned: Counter,
    pub done: Counter,
    pub failed: Counter,
    pub returned: Counter,
    pub heartbeats: Counter,
    pub heartbeat_failures: Counter,
    /// When each accepted task arrived (for the start latency).
    accepted: Mutex<HashMap<TaskId, Instant>>,
}

/// The process's agent series.
pub fn get() -> &'static AgentMetrics {
    static M: OnceLock<AgentMetrics> = OnceLock::new();
    M.get_or_init(|| AgentMetrics {
        slots_busy: metrics::gauge("em_agent_slots_busy", "Cores running tasks."),
        slots_free: metrics::gauge("em_agent_slots_free", "Cores free for tasks."),
        tasks_queued: metrics::gauge(
            "em_agent_tasks_queued",
            "Tasks accepted by the agent and waiting for cores.",
        ),
        start_latency: metrics::histogram(
            "em_agent_task_start_latency_seconds",
            "Time from a task's acceptance (AGENT_QUEUED) to its process start.",
            0.001,
            16,
        ),
        spawned: metrics::counter("em_agent_tasks_spawned", "Task processes started."),
        done: metrics::counter("em_agent_tasks_done", "Tasks that ended DONE."),
        failed: metrics::counter("em_agent_tasks_failed", "Tasks that ended FAILED."),
        returned: metrics::counter(
            "em_agent_tasks_returned",
            "Tasks handed back to the manager (drain, walltime, shutdown).",
        ),
        heartbeats: metrics::counter("em_agent_heartbeats", "Heartbeats written to the store."),
        heartbeat_failures: metrics::counter(
            "em_agent_heartbeat_failures",
            "Heartbeats the store refused or did not answer.",
        ),
        accepted: Mutex::new(HashMap::new()),
    })
}

impl AgentMetrics {
    /// A task was accepted (AGENT_QUEUED).
    pub fn accepted(&self, task: TaskId) {
        self.accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(task, Instant::now());
    }

    /// A task's process started: count it and observe its start latency.
    pub fn started(&self, task: TaskId) {
        self.spawned.inc();
        let at = self
            .accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&task);
        if let Some(at) = at {
            self.start_latency.observe(at.elapsed().as_secs_f64());
        }
    }

    /// A task left the agent without starting (returned, canceled, failed to fit).
    pub fn forget(&self, task: TaskId) {
        self.accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&task);
    }

    /// The scheduler's occupancy after a pass of the core loop.
    pub fn occupancy(&self, busy: u32, total: u32, queued: usize) {
        self.slots_busy.set(busy as i64);
        self.slots_free.set(total.saturating_sub(busy) as i64);
        self.tasks_queued.set(queued as i64);
    }
}
