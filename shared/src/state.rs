//! Task, pilot and campaign state machines (DESIGN section 3), encoded once.
//!
//! The legal-transition tables below are the single source of truth: the in-memory store
//! applies them directly and the Redis Lua script is generated from them
//! (`store::redis_store::transition_script`).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Where a task is in its life. The numeric codes are stored in Redis records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[repr(u8)]
pub enum TaskState {
    New = 0,
    Waiting = 1,
    Ready = 2,
    Scheduled = 3,
    AgentQueued = 4,
    Executing = 5,
    Done = 6,
    Failed = 7,
    Canceled = 8,
}

impl TaskState {
    pub const ALL: [TaskState; 9] = [
        TaskState::New,
        TaskState::Waiting,
        TaskState::Ready,
        TaskState::Scheduled,
        TaskState::AgentQueued,
        TaskState::Executing,
        TaskState::Done,
        TaskState::Failed,
        TaskState::Canceled,
    ];

    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(code as usize).copied()
    }

    /// States a task may move to from `self`.
    ///
    /// `Failed -> Ready` is the retry edge; `Scheduled | AgentQueued | Executing -> Ready`
    /// is the rebind edge (pilot died, or the agent returned a task it cannot finish).
    pub fn legal_targets(self) -> &'static [TaskState] {
        use TaskState::*;
        match self {
            New => &[Waiting, Ready, Failed, Canceled],
            Waiting => &[Ready, Canceled],
            Ready => &[Scheduled, Failed, Canceled],
            Scheduled => &[AgentQueued, Ready, Failed, Canceled],
            AgentQueued => &[Executing, Ready, Failed, Canceled],
            Executing => &[Done, Failed, Ready, Canceled],
            Failed => &[Ready],
            Done | Canceled => &[],
        }
    }

    pub fn can_become(self, to: TaskState) -> bool {
        self.legal_targets().contains(&to)
    }

    /// A state the task may not leave by itself (`Failed` may still be retried by the manager).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskState::Done | TaskState::Failed | TaskState::Canceled
        )
    }

    /// Bound to a pilot and not yet finished.
    pub fn is_on_pilot(self) -> bool {
        matches!(
            self,
            TaskState::Scheduled | TaskState::AgentQueued | TaskState::Executing
        )
    }

    pub fn as_str(self) -> &'static str {
        use TaskState::*;
        match self {
            New => "NEW",
            Waiting => "WAITING",
            Ready => "READY",
            Scheduled => "SCHEDULED",
            AgentQueued => "AGENT_QUEUED",
            Executing => "EXECUTING",
            Done => "DONE",
            Failed => "FAILED",
            Canceled => "CANCELED",
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a pilot is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PilotState {
    New,
    Submitted,
    Queued,
    Active,
    Draining,
    Done,
    Failed,
    Canceled,
}

impl PilotState {
    pub const ALL: [PilotState; 8] = [
        PilotState::New,
        PilotState::Submitted,
        PilotState::Queued,
        PilotState::Active,
        PilotState::Draining,
        PilotState::Done,
        PilotState::Failed,
        PilotState::Canceled,
    ];

    pub fn legal_targets(self) -> &'static [PilotState] {
        use PilotState::*;
        match self {
            New => &[Submitted, Active, Failed, Canceled],
            Submitted => &[Queued, Active, Failed, Canceled, Done],
            Queued => &[Active, Failed, Canceled, Done],
            Active => &[Draining, Done, Failed, Canceled],
            Draining => &[Done, Failed, Canceled],
            Done | Failed | Canceled => &[],
        }
    }

    pub fn can_become(self, to: PilotState) -> bool {
        self.legal_targets().contains(&to)
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            PilotState::Done | PilotState::Failed | PilotState::Canceled
        )
    }

    pub fn as_str(self) -> &'static str {
        use PilotState::*;
        match self {
            New => "NEW",
            Submitted => "SUBMITTED",
            Queued => "QUEUED",
            Active => "ACTIVE",
            Draining => "DRAINING",
            Done => "DONE",
            Failed => "FAILED",
            Canceled => "CANCELED",
        }
    }
}

impl fmt::Display for PilotState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PilotState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown pilot state `{s}`"))
    }
}

impl FromStr for TaskState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| format!("unknown task state `{s}`"))
    }
}

/// The life of a campaign.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CampaignState {
    Planning,
    Running,
    Done,
    Failed,
    Canceled,
}

impl CampaignState {
    pub fn as_str(self) -> &'static str {
        match self {
            CampaignState::Planning => "PLANNING",
            CampaignState::Running => "RUNNING",
            CampaignState::Done => "DONE",
            CampaignState::Failed => "FAILED",
            CampaignState::Canceled => "CANCELED",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            CampaignState::Done | CampaignState::Failed | CampaignState::Canceled
        )
    }
}

impl fmt::Display for CampaignState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CampaignState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            CampaignState::Planning,
            CampaignState::Running,
            CampaignState::Done,
            CampaignState::Failed,
            CampaignState::Canceled,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
        .ok_or_else(|| format!("unknown campaign state `{s}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_and_canceled_are_terminal() {
        assert!(TaskState::Done.legal_targets().is_empty());
        assert!(TaskState::Canceled.legal_targets().is_empty());
    }

    #[test]
    fn failed_may_only_be_retried() {
        assert_eq!(TaskState::Failed.legal_targets(), &[TaskState::Ready]);
    }

    #[test]
    fn the_happy_path_is_legal() {
        use TaskState::*;
        let path = [New, Ready, Scheduled, AgentQueued, Executing, Done];
        for w in path.windows(2) {
            assert!(w[0].can_become(w[1]), "{} -> {}", w[0], w[1]);
        }
    }

    #[test]
    fn codes_round_trip() {
        for s in TaskState::ALL {
            assert_eq!(TaskState::from_code(s.code()), Some(s));
            assert_eq!(s.as_str().parse::<TaskState>().unwrap(), s);
        }
        assert_eq!(TaskState::from_code(99), None);
    }

    #[test]
    fn a_task_cannot_skip_acceptance() {
        assert!(!TaskState::Scheduled.can_become(TaskState::Done));
        assert!(!TaskState::Ready.can_become(TaskState::Executing));
    }

    #[test]
    fn pilot_states_parse_and_finals_have_no_exit() {
        for p in PilotState::ALL {
            assert_eq!(p.as_str().parse::<PilotState>().unwrap(), p);
            if p.is_final() {
                assert!(p.legal_targets().is_empty());
            }
        }
    }
}
