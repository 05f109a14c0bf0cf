//! A lane: one campaign the agent serves, with its pilot identity, its reporter, the tasks
//! it accepted that wait for cores, and the counters its heartbeat reports. The core owns
//! the lanes; the lane's I/O tasks (`io.rs`) hold the other ends of its channels.

use super::AgentSummary;
use crate::reporter::Reporter;
use emanager_shared::{BoundTask, CampaignId, PilotId, TaskState, Transition};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use tokio::sync::watch;

/// The lane's counters the heartbeat reports.
#[derive(Default)]
pub(crate) struct Load {
    pub busy_cores: AtomicU32,
    pub running: AtomicU32,
    pub queued: AtomicU32,
}

/// One campaign the agent serves: its pilot identity, its reporter, and its tasks waiting
/// for cores.
pub(crate) struct Lane {
    pub campaign: CampaignId,
    pub pilot: PilotId,
    pub(super) weight: f64,
    pub(super) reporter: Reporter,
    pub(super) load: Arc<Load>,
    /// Tells the lane's consumer how many tasks wait (it pauses past a limit).
    pub(super) pending_tx: watch::Sender<usize>,
    pub(super) stop_consuming: watch::Sender<bool>,
    /// Sandboxes go below `<workdir>/<campaign>/`.
    pub(super) workdir: PathBuf,
    pub(super) pending: VecDeque<BoundTask>,
    /// Why the lane takes no more work (it ends once nothing of it runs or waits).
    pub(super) stopping: Option<String>,
    pub(super) busy_cores: u32,
    pub(super) running: u32,
    pub(super) summary: AgentSummary,
}

/// The other ends of a lane's channels, for the tasks that feed it.
pub(crate) struct LaneFeeds {
    pub load: Arc<Load>,
    pub pending: watch::Receiver<usize>,
    pub stop_consuming: watch::Receiver<bool>,
}

impl Lane {
    pub fn new(
        campaign: CampaignId,
        pilot: PilotId,
        weight: f64,
        reporter: Reporter,
        workdir: &std::path::Path,
    ) -> (Lane, LaneFeeds) {
        let load = Arc::new(Load::default());
        let (pending_tx, pending_rx) = watch::channel(0usize);
        let (stop_tx, stop_rx) = watch::channel(false);
        let lane = Lane {
            campaign,
            pilot,
            weight,
            reporter,
            load: load.clone(),
            pending_tx,
            stop_consuming: stop_tx,
            workdir: workdir.join(campaign.to_string()),
            pending: VecDeque::new(),
            stopping: None,
            busy_cores: 0,
            running: 0,
            summary: AgentSummary::default(),
        };
        let feeds = LaneFeeds {
            load,
            pending: pending_rx,
            stop_consuming: stop_rx,
        };
        (lane, feeds)
    }

    /// The counters the lane's heartbeat reports.
    pub fn load(&self) -> Arc<Load> {
        self.load.clone()
    }

    pub(super) fn stop(&mut self, why: &str) {
        if self.stopping.is_none() {
            self.stopping = Some(why.to_string());
        }
    }

    /// Hands a task back to the manager (it becomes READY and is bound again).
    pub(super) fn return_task(&mut self, t: &BoundTask, why: &str) {
        self.summary.returned += 1;
        crate::metrics::get().returned.inc();
        crate::metrics::get().forget(t.spec.id);
        self.reporter.send(
            Transition {
                pilot: Some(None),
                ..Transition::new(t.spec.id, t.attempt, TaskState::Ready)
            }
            .with_reason(why),
        );
    }

    pub(super) fn fail_task(&mut self, t: &BoundTask, why: String) {
        self.summary.failed += 1;
        crate::metrics::get().failed.inc();
        self.reporter.send(
            Transition::new(t.spec.id, t.attempt, TaskState::Failed)
                .with_reason(why)
                .failure(),
        );
    }
}

/// A lane ended: every task of it finished or was returned.
pub(crate) struct LaneEnded {
    pub campaign: CampaignId,
    pub pilot: PilotId,
    pub summary: AgentSummary,
}
