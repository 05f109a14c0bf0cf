//! The values that travel between manager, agents and the state store.

use crate::ids::{CampaignId, PilotId, TaskId};
use crate::state::{PilotState, TaskState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Milliseconds since the Unix epoch; every timestamp in EManager uses it.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A file a task reads or writes, with its size when known.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct FileSpec {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
}

/// Everything an agent needs to run one task. Sent inside `TaskBatch` messages.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub id: TaskId,
    pub name: String,
    /// argv; run without a shell unless `shell` is set (then `command` is joined and given to `sh -c`).
    pub command: Vec<String>,
    #[serde(default)]
    pub shell: bool,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub cwd: Option<String>,
    pub cores: u32,
    #[serde(default)]
    pub gpus: u32,
    #[serde(default)]
    pub mem_mb: u64,
    /// Processes (MPI ranks) the task starts; `cores` is per process times processes.
    #[serde(default = "one")]
    pub processes: u32,
    #[serde(default)]
    pub mpi: bool,
    #[serde(default)]
    pub est_duration_s: f64,
    #[serde(default)]
    pub walltime_s: Option<f64>,
    #[serde(default = "two")]
    pub retries: u32,
    #[serde(default)]
    pub priority: i32,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub input_files: Vec<FileSpec>,
    #[serde(default)]
    pub output_files: Vec<FileSpec>,
}

fn one() -> u32 {
    1
}
fn two() -> u32 {
    2
}

impl TaskSpec {
    /// A one-core task running `command`, with the defaults of the workflow language.
    pub fn new(id: TaskId, name: impl Into<String>, command: Vec<String>) -> Self {
        TaskSpec {
            id,
            name: name.into(),
            command,
            shell: false,
            env: BTreeMap::new(),
            cwd: None,
            cores: 1,
            gpus: 0,
            mem_mb: 0,
            processes: 1,
            mpi: false,
            est_duration_s: 0.0,
            walltime_s: None,
            retries: 2,
            priority: 0,
            tags: Vec::new(),
            input_files: Vec::new(),
            output_files: Vec::new(),
        }
    }
}

/// A task bound to a pilot for one attempt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BoundTask {
    pub spec: TaskSpec,
    pub attempt: u32,
}

/// The compact per-task record kept in the `em:{c}:tasks` hash. Field names are one letter
/// because a million of them live in Redis (budget: 300 bytes per task); the Lua transition
/// script reads and writes the same fields through `cmsgpack`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct TaskRecord {
    /// State code (`TaskState::code`).
    pub s: u8,
    /// Attempt: incremented every time the task is bound to a pilot.
    #[serde(default)]
    pub a: u32,
    /// Pilot of the current/last attempt (empty when none).
    #[serde(default)]
    pub p: String,
    /// Exit code of the last run.
    #[serde(default)]
    pub x: Option<i64>,
    /// Failed runs so far (retries are counted against it).
    #[serde(default)]
    pub f: u32,
    /// Reason of the last failure, cancel or return.
    #[serde(default)]
    pub r: String,
    /// Time (ms) of the last binding, execution start and end.
    #[serde(default)]
    pub ts: u64,
    #[serde(default)]
    pub t0: u64,
    #[serde(default)]
    pub t1: u64,
}

impl TaskRecord {
    pub fn new(state: TaskState) -> Self {
        TaskRecord {
            s: state.code(),
            ..Default::default()
        }
    }

    pub fn state(&self) -> TaskState {
        TaskState::from_code(self.s).unwrap_or(TaskState::New)
    }

    pub fn pilot(&self) -> Option<PilotId> {
        self.p.parse().ok()
    }
}

/// One requested task transition, checked and applied atomically by the store.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub task: TaskId,
    /// The attempt the caller believes is current; a mismatch fences the caller out.
    pub attempt: u32,
    pub to: TaskState,
    /// Set the attempt to this value (binding to a pilot increments it).
    pub new_attempt: Option<u32>,
    /// Set the pilot (binding), or clear it with `Some(None)`.
    pub pilot: Option<Option<PilotId>>,
    pub exit_code: Option<i64>,
    pub reason: Option<String>,
    /// Count this transition as a failed run (`f += 1`).
    pub count_failure: bool,
}

impl Transition {
    pub fn new(task: TaskId, attempt: u32, to: TaskState) -> Self {
        Transition {
            task,
            attempt,
            to,
            new_attempt: None,
            pilot: None,
            exit_code: None,
            reason: None,
            count_failure: false,
        }
    }

    pub fn bind(task: TaskId, attempt: u32, pilot: PilotId) -> Self {
        Transition {
            new_attempt: Some(attempt + 1),
            pilot: Some(Some(pilot)),
            ..Transition::new(task, attempt, TaskState::Scheduled)
        }
    }

    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        let mut r: String = reason.into();
        if r.len() > MAX_REASON_BYTES {
            let mut cut = MAX_REASON_BYTES;
            while !r.is_char_boundary(cut) {
                cut -= 1;
            }
            r.truncate(cut);
        }
        self.reason = Some(r);
        self
    }

    pub fn with_exit(mut self, code: Option<i64>) -> Self {
        self.exit_code = code;
        self
    }

    pub fn failure(mut self) -> Self {
        self.count_failure = true;
        self
    }
}

/// Reasons are cut to this length to keep task records small.
pub const MAX_REASON_BYTES: usize = 200;

/// What the store did with one transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransitionOutcome {
    Applied,
    /// The attempt did not match: the caller is a zombie of an older attempt.
    Stale,
    /// The state machine does not allow it from the current state.
    Illegal,
    /// No such task in this campaign.
    Unknown,
}

impl TransitionOutcome {
    pub fn from_code(code: i64) -> Self {
        match code {
            0 => TransitionOutcome::Applied,
            1 => TransitionOutcome::Stale,
            2 => TransitionOutcome::Illegal,
            _ => TransitionOutcome::Unknown,
        }
    }
}

/// Applies `t` to `rec` with the rules every store shares. Pure, so the in-memory store and
/// the tests of the Lua script use the very same semantics.
pub fn apply_transition(rec: &mut TaskRecord, t: &Transition, now: u64) -> TransitionOutcome {
    if rec.a != t.attempt {
        return TransitionOutcome::Stale;
    }
    if !rec.state().can_become(t.to) {
        return TransitionOutcome::Illegal;
    }
    rec.s = t.to.code();
    if let Some(a) = t.new_attempt {
        rec.a = a;
    }
    if let Some(p) = &t.pilot {
        rec.p = p.map(|p| p.to_string()).unwrap_or_default();
    }
    if let Some(x) = t.exit_code {
        rec.x = Some(x);
    }
    if let Some(r) = &t.reason {
        rec.r = r.clone();
    }
    if t.count_failure {
        rec.f += 1;
    }
    match t.to {
        TaskState::Scheduled => rec.ts = now,
        TaskState::Executing => rec.t0 = now,
        TaskState::Done | TaskState::Failed | TaskState::Canceled => rec.t1 = now,
        _ => {}
    }
    TransitionOutcome::Applied
}

/// One entry of a campaign's events stream.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Stream entry id (`<ms>-<seq>`), used to acknowledge it.
    pub id: String,
    pub kind: EventKind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum EventKind {
    Task {
        task: TaskId,
        state: TaskState,
        attempt: u32,
        pilot: Option<PilotId>,
        exit_code: Option<i64>,
        reason: String,
    },
    Pilot {
        pilot: PilotId,
        state: PilotState,
        reason: String,
    },
}

/// A pilot as registered in `em:{c}:pilot:<p>`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PilotRecord {
    pub id: PilotId,
    pub state: PilotState,
    /// Catalog resource name (`local` for pilots on this host).
    pub resource: String,
    pub job_id: String,
    pub host: String,
    pub nodes: u32,
    pub cores: u32,
    pub gpus: u32,
    pub mem_mb: u64,
    /// When the allocation ends (ms), 0 when unbounded.
    pub walltime_end_ms: u64,
    /// How long before `walltime_end_ms` the agent drains (ms): no task starts that would
    /// still run then. 0 from agents that do not say.
    #[serde(default)]
    pub drain_margin_ms: u64,
    pub agent_pid: u32,
    pub log_path: String,
    pub version: String,
    /// When its agent registered (ms): the allocation started.
    pub registered_ms: u64,
    /// When its batch job was submitted (ms, set with the job id); 0 for pilots that are no
    /// batch job.
    #[serde(default)]
    pub submitted_ms: u64,
    pub reason: String,
    /// The pool whose agent registered this pilot (empty for a pilot of this campaign alone).
    #[serde(default)]
    pub pool: String,
}

impl PilotRecord {
    /// When the agent drains before its allocation ends (ms since the epoch): the last
    /// moment a task may still be running on it. `None` for an unbounded pilot.
    pub fn drain_at_ms(&self) -> Option<u64> {
        (self.walltime_end_ms > 0)
            .then(|| self.walltime_end_ms.saturating_sub(self.drain_margin_ms))
    }

    pub fn new(id: PilotId, resource: impl Into<String>) -> Self {
        PilotRecord {
            id,
            state: PilotState::New,
            resource: resource.into(),
            job_id: String::new(),
            host: String::new(),
            nodes: 0,
            cores: 0,
            gpus: 0,
            mem_mb: 0,
            walltime_end_ms: 0,
            drain_margin_ms: 0,
            agent_pid: 0,
            log_path: String::new(),
            version: String::new(),
            registered_ms: 0,
            submitted_ms: 0,
            reason: String::new(),
            pool: String::new(),
        }
    }
}

/// How long one of our batch pilots waited in its queue: from its job's submission to its
/// agent's registration. The manager appends one per batch pilot that becomes active to a
/// stream every bundle service reads (`StateStore::record_pilot_wait`), so queue-wait
/// estimates learn from every batch system.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PilotWait {
    /// Catalog resource.
    pub resource: String,
    /// Catalog queue name (as the bundle service names queues).
    pub queue: String,
    pub nodes: u32,
    /// Walltime asked for.
    pub walltime_s: u64,
    pub submitted_ms: u64,
    /// When the agent registered (includes the agent's start-up, a second or so).
    pub started_ms: u64,
    pub campaign: CampaignId,
    pub pilot: PilotId,
    pub job_id: String,
}

impl PilotWait {
    /// The wait in seconds (0 if the clocks disagree).
    pub fn wait_s(&self) -> f64 {
        self.started_ms.saturating_sub(self.submitted_ms) as f64 / 1000.0
    }
}

/// A pilot's load as reported with each heartbeat.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PilotLoad {
    pub busy_cores: u32,
    pub running: u32,
    pub queued: u32,
}

/// The campaign record (`em:{c}:campaign`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CampaignMeta {
    pub id: CampaignId,
    pub name: String,
    pub state: crate::state::CampaignState,
    pub created_ms: u64,
    pub finished_ms: u64,
    pub task_count: u64,
    /// Digest of the workflow source, to refuse resuming with another workflow.
    pub spec_digest: String,
    /// The workflow source (format + text) so `resume` rebuilds the same tasks.
    pub workflow_format: String,
    pub workflow_source: String,
    /// Manager options the campaign was started with (JSON), for `resume`.
    pub options_json: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(state: TaskState, attempt: u32) -> TaskRecord {
        TaskRecord {
            a: attempt,
            ..TaskRecord::new(state)
        }
    }

    #[test]
    fn binding_increments_the_attempt_and_sets_the_pilot() {
        let t = TaskId::random();
        let p = PilotId::random();
        let mut r = rec(TaskState::Ready, 0);
        assert_eq!(
            apply_transition(&mut r, &Transition::bind(t, 0, p), 7),
            TransitionOutcome::Applied
        );
        assert_eq!(
            (r.state(), r.a, r.pilot(), r.ts),
            (TaskState::Scheduled, 1, Some(p), 7)
        );
    }

    #[test]
    fn a_stale_attempt_is_fenced_out() {
        let t = TaskId::random();
        let mut r = rec(TaskState::Executing, 3);
        let before = r.clone();
        let out = apply_transition(&mut r, &Transition::new(t, 2, TaskState::Done), 1);
        assert_eq!(out, TransitionOutcome::Stale);
        assert_eq!(r, before);
    }

    #[test]
    fn done_twice_is_illegal() {
        let t = TaskId::random();
        let mut r = rec(TaskState::Executing, 1);
        let done = Transition::new(t, 1, TaskState::Done);
        assert_eq!(
            apply_transition(&mut r, &done, 1),
            TransitionOutcome::Applied
        );
        assert_eq!(
            apply_transition(&mut r, &done, 2),
            TransitionOutcome::Illegal
        );
    }

    #[test]
    fn failures_are_counted_and_reasons_cut() {
        let t = TaskId::random();
        let mut r = rec(TaskState::Executing, 1);
        let fail = Transition::new(t, 1, TaskState::Failed)
            .with_exit(Some(3))
            .with_reason("x".repeat(1000))
            .failure();
        apply_transition(&mut r, &fail, 9);
        assert_eq!(
            (r.f, r.x, r.t1, r.r.len()),
            (1, Some(3), 9, MAX_REASON_BYTES)
        );
    }

    #[test]
    fn a_pilot_drains_its_margin_before_its_walltime_ends_and_an_unbounded_one_never() {
        let mut p = PilotRecord::new(crate::PilotId::random(), "r");
        assert_eq!(p.drain_at_ms(), None);
        p.walltime_end_ms = 100_000;
        assert_eq!(
            p.drain_at_ms(),
            Some(100_000),
            "an agent that says no margin"
        );
        p.drain_margin_ms = 30_000;
        assert_eq!(p.drain_at_ms(), Some(70_000));
        p.drain_margin_ms = 200_000;
        assert_eq!(p.drain_at_ms(), Some(0));
    }
}
