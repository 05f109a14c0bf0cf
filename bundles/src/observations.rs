//! Waits our own pilots taught us. Two sources, each job learned once:
//! - the manager appends each batch pilot's queue wait to the store's pilot-wait stream
//!   when its agent registers (`em:pilot-waits`); every bundle service reads the
//!   whole stream (from its oldest kept entry at start, so a restarted service learns
//!   again) and keeps the waits of its own resources;
//! - job listings that give submit and start times (SLURM, PBS, LSF) show our running
//!   pilot jobs (named `emanager*`, or a pilot's job id).

use crate::estimator::{WaitHistory, WaitSample};
use crate::model::PilotLoadView;
use emanager_shared::access::JobInfo;
use emanager_shared::catalog::ResourceEntry;
use emanager_shared::model::PilotWait;
use emanager_shared::store::StateStore;
use std::collections::HashSet;

/// The wait history (priors and our own waits) and which of our jobs it already holds.
#[derive(Debug, Default)]
pub struct OwnWaits {
    pub history: WaitHistory,
    /// (resource, job id) of the jobs learned.
    seen: HashSet<(String, String)>,
    /// Waits learned so far.
    pub observations: u64,
}

impl OwnWaits {
    /// Starting from `history` (the priors).
    pub fn new(history: WaitHistory) -> OwnWaits {
        OwnWaits {
            history,
            ..Default::default()
        }
    }

    /// Records one wait of our own pilots.
    pub fn observe(&mut self, resource: &str, queue: &str, sample: WaitSample) {
        self.history.observe(resource, queue, sample);
        self.observations += 1;
    }

    /// Records the waits the manager recorded for our pilots on `resources` (others belong
    /// to other sites' services), each job once; returns how many were new.
    pub fn learn_pilot_waits(&mut self, resources: &[ResourceEntry], waits: &[PilotWait]) -> usize {
        let mut learned = 0;
        for w in waits {
            if !resources.iter().any(|r| r.name == w.resource) {
                continue;
            }
            let job = if w.job_id.is_empty() {
                w.pilot.to_string()
            } else {
                w.job_id.clone()
            };
            if !self.seen.insert((w.resource.clone(), job)) {
                continue;
            }
            self.observe(
                &w.resource,
                &w.queue,
                WaitSample {
                    nodes: w.nodes,
                    walltime_s: w.walltime_s,
                    wait_s: w.wait_s(),
                },
            );
            learned += 1;
        }
        learned
    }

    /// Records the submit-to-start wait of each running job of ours in `entry`'s listing
    /// (named `emanager*`, or whose id is one of `pilots`' job ids), each job once.
    pub fn learn_from_listing(
        &mut self,
        entry: &ResourceEntry,
        jobs: &[JobInfo],
        pilots: &[PilotLoadView],
    ) {
        let name = &entry.name;
        for job in jobs {
            let own = job.name.starts_with("emanager")
                || pilots
                    .iter()
                    .any(|p| &p.resource == name && p.job_id == job.id);
            let Some(wait_s) = job.wait_s().filter(|_| own) else {
                continue;
            };
            if !self.seen.insert((name.clone(), job.id.clone())) {
                continue;
            }
            let batch_queue = job.queues.first().cloned().unwrap_or_default();
            let queue = entry
                .queues
                .iter()
                .find(|q| q.submit_queue().as_deref() == Some(&batch_queue))
                .map_or(batch_queue, |q| q.name.clone());
            self.observe(
                name,
                &queue,
                WaitSample {
                    nodes: job.nodes_on(entry.cores_per_node),
                    walltime_s: job.walltime_s,
                    wait_s: wait_s as f64,
                },
            );
        }
    }
}

/// Entries read per request.
pub const PAGE: usize = 1000;

/// Where a service is in the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamCursor(pub String);

impl Default for StreamCursor {
    /// Before the oldest entry kept.
    fn default() -> StreamCursor {
        StreamCursor("0".into())
    }
}

/// Every pilot wait recorded after `cursor`, oldest first; the cursor moves past them (and
/// stays where it was on an error, so nothing is skipped).
pub async fn read_new_pilot_waits(
    store: &dyn StateStore,
    cursor: &mut StreamCursor,
) -> Result<Vec<PilotWait>, String> {
    let mut at = cursor.0.clone();
    let mut out = Vec::new();
    loop {
        let page = store
            .pilot_waits(&at, PAGE)
            .await
            .map_err(|e| format!("reading pilot waits: {e}"))?;
        let full = page.len() >= PAGE;
        if let Some((last, _)) = page.last() {
            at = last.clone();
        }
        out.extend(page.into_iter().map(|(_, w)| w));
        if !full {
            cursor.0 = at;
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::estimator::{estimate, Evidence, WaitRequest};
    use emanager_shared::access::JobState;
    use emanager_shared::catalog::Catalog;
    use emanager_shared::store::MemoryStore;
    use emanager_shared::{CampaignId, PilotId};

    fn wait(job: &str) -> PilotWait {
        PilotWait {
            resource: "r".into(),
            queue: "q".into(),
            nodes: 1,
            walltime_s: 60,
            submitted_ms: 0,
            started_ms: 1000,
            campaign: CampaignId::random(),
            pilot: PilotId::random(),
            job_id: job.into(),
        }
    }

    fn resources() -> Vec<ResourceEntry> {
        let catalog = Catalog::parse(
            "[resources.r]\naccess = \"sge\"\nnodes = 1\ncores_per_node = 2\n\
             [[resources.r.queues]]\nname = \"q\"\nmax_walltime = \"01:00:00\"\nmax_nodes = 1\n",
        )
        .unwrap();
        catalog.resources().cloned().collect()
    }

    const REQ: WaitRequest = WaitRequest {
        nodes: 1,
        walltime_s: 60,
    };

    /// A prior of 1000 s waits, then our pilots waited 100 s: the estimate moves toward
    /// what they saw, further with each one.
    #[test]
    fn a_recorded_pilot_wait_moves_the_estimate_toward_it() {
        let mut history = WaitHistory::new();
        history.add_prior(
            "trace",
            (0..20).map(|_| WaitSample {
                nodes: 1,
                walltime_s: 60,
                wait_s: 1000.0,
            }),
        );
        let mut own = OwnWaits::new(history);
        let p50 = |own: &OwnWaits| estimate(&own.history, "r", "q", REQ, None, None).p50_s;
        let before = p50(&own);
        assert_eq!(before, 1000);
        let mut w = wait("1");
        w.started_ms = 100_000;
        assert_eq!(own.learn_pilot_waits(&resources(), &[w]), 1);
        let after_one = p50(&own);
        assert!(after_one < before, "{after_one} not below {before}");
        for job in ["2", "3"] {
            let mut w = wait(job);
            w.started_ms = 100_000;
            own.learn_pilot_waits(&resources(), &[w]);
        }
        let after_three = estimate(&own.history, "r", "q", REQ, None, None);
        assert!(after_three.p50_s < after_one);
        assert_eq!(after_three.p50_s, 550, "three observations weigh half");
        assert!(after_three
            .evidence
            .iter()
            .any(|e| matches!(e, Evidence::Observed { samples: 3, .. })));
    }

    #[test]
    fn waits_of_other_resources_and_repeats_are_not_learned() {
        let mut own = OwnWaits::default();
        let mut elsewhere = wait("1");
        elsewhere.resource = "other-site".into();
        let again = wait("2");
        let learned = own.learn_pilot_waits(&resources(), &[elsewhere, again.clone(), again]);
        assert_eq!((learned, own.observations), (1, 1));
    }

    #[test]
    fn a_job_seen_in_the_listing_is_not_learned_again_from_the_stream() {
        let mut own = OwnWaits::default();
        let entry = &resources()[0];
        let job = JobInfo {
            id: "7".into(),
            name: "emanager-r".into(),
            queues: vec!["q".into()],
            state: JobState::Running,
            submit_ms: Some(0),
            start_ms: Some(5000),
            ..Default::default()
        };
        own.learn_from_listing(entry, &[job], &[]);
        assert_eq!(own.learn_pilot_waits(&resources(), &[wait("7")]), 0);
        assert_eq!(own.observations, 1);
    }

    #[tokio::test]
    async fn each_wait_is_read_once_across_pages() {
        let store = MemoryStore::new();
        for i in 0..PAGE + 5 {
            store
                .record_pilot_wait(&wait(&i.to_string()))
                .await
                .unwrap();
        }
        let mut cursor = StreamCursor::default();
        let first = read_new_pilot_waits(&store, &mut cursor).await.unwrap();
        assert_eq!(first.len(), PAGE + 5);
        assert!(read_new_pilot_waits(&store, &mut cursor)
            .await
            .unwrap()
            .is_empty());
        store.record_pilot_wait(&wait("late")).await.unwrap();
        let next = read_new_pilot_waits(&store, &mut cursor).await.unwrap();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].job_id, "late");
    }
}
