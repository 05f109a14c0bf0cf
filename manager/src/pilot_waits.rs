//! What our batch pilots teach the bundle services: when a batch pilot's agent registers,
//! its wait in the queue (job submitted -> agent registered) goes to the store's pilot-wait
//! stream, which every bundle service reads into its queue-wait estimator. This works the
//! same for every batch system, where job listings may not tell submit and start times.

use crate::campaign::PilotRequest;
use crate::pilots::Sites;
use emanager_shared::model::{PilotRecord, PilotWait};
use emanager_shared::store::StateStore;
use emanager_shared::CampaignId;

/// The queue wait of a batch pilot that just registered, or `None` when it is no batch pilot
/// (local, or no submission time) or its queue is unknown. The queue is the one asked for,
/// else the resource's default, else its only queue; the walltime the one asked for, else
/// what the agent found left at registration (a resumed manager no longer has the request).
pub fn queue_wait(
    rec: &PilotRecord,
    request: Option<&PilotRequest>,
    sites: &Sites,
    campaign: &CampaignId,
) -> Option<PilotWait> {
    let entry = sites.batch_resource(&rec.resource)?;
    if rec.submitted_ms == 0 || rec.registered_ms == 0 || rec.job_id.is_empty() {
        return None;
    }
    let queue = request
        .and_then(|r| r.queue.clone())
        .or_else(|| entry.default_queue.clone())
        .or_else(|| match entry.queues.as_slice() {
            [only] => Some(only.name.clone()),
            _ => None,
        })?;
    let walltime_s = request
        .and_then(|r| r.walltime_s)
        .unwrap_or_else(|| rec.walltime_end_ms.saturating_sub(rec.registered_ms) / 1000);
    Some(PilotWait {
        resource: rec.resource.clone(),
        queue,
        nodes: if rec.nodes > 0 {
            rec.nodes
        } else {
            request.map_or(1, |r| r.nodes.max(1))
        },
        walltime_s,
        submitted_ms: rec.submitted_ms,
        started_ms: rec.registered_ms,
        campaign: *campaign,
        pilot: rec.id,
        job_id: rec.job_id.clone(),
    })
}

/// Records the queue wait of a batch pilot that just became active (see [`queue_wait`]).
/// A store error is logged, never fatal: the estimate only learns less.
pub async fn record_queue_wait(
    store: &dyn StateStore,
    campaign: &CampaignId,
    rec: &PilotRecord,
    request: Option<&PilotRequest>,
    sites: &Sites,
) {
    let Some(wait) = queue_wait(rec, request, sites, campaign) else {
        return;
    };
    match store.record_pilot_wait(&wait).await {
        Ok(()) => tracing::info!(
            pilot = %rec.id,
            resource = %wait.resource,
            queue = %wait.queue,
            wait_s = wait.wait_s(),
            "pilot queue wait recorded for the bundle services"
        ),
        Err(e) => {
            tracing::warn!(pilot = %rec.id, error = %e, "recording the pilot's queue wait failed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::CampaignOptions;
    use emanager_shared::store::MemoryStore;
    use emanager_shared::PilotId;

    const CATALOG: &str = r#"
[resources.sge]
access = "sge"
nodes = 1
cores_per_node = 2
default_queue = "all.q"
[[resources.sge.queues]]
name = "all.q"
max_walltime = "01:00:00"
max_nodes = 1
[[resources.sge.queues]]
name = "short.q"
max_walltime = "00:01:00"
max_nodes = 1
"#;

    fn sites() -> Sites {
        Sites::from_options(&CampaignOptions {
            catalog_toml: Some(CATALOG.into()),
            ..Default::default()
        })
        .unwrap()
    }

    fn registered(resource: &str) -> PilotRecord {
        let mut rec = PilotRecord::new(PilotId::random(), resource);
        rec.job_id = "17".into();
        rec.nodes = 1;
        rec.submitted_ms = 10_000;
        rec.registered_ms = 52_000;
        rec.walltime_end_ms = 52_000 + 590_000;
        rec
    }

    fn request(queue: Option<&str>) -> PilotRequest {
        PilotRequest {
            resource: "sge".into(),
            cores: 2,
            nodes: 1,
            queue: queue.map(str::to_string),
            gpus: 0,
            mem_mb: 0,
            walltime_s: Some(600),
            reservation: None,
        }
    }

    #[test]
    fn a_batch_pilot_waits_from_submission_to_registration_in_its_queue() {
        let c = CampaignId::random();
        let req = request(Some("short.q"));
        let w = queue_wait(&registered("sge"), Some(&req), &sites(), &c).unwrap();
        assert_eq!(
            (w.queue.as_str(), w.walltime_s, w.nodes),
            ("short.q", 600, 1)
        );
        assert_eq!(w.wait_s(), 42.0);
        assert_eq!(w.campaign, c);
    }

    #[test]
    fn without_the_request_the_default_queue_and_the_walltime_left_are_used() {
        let w = queue_wait(&registered("sge"), None, &sites(), &CampaignId::random()).unwrap();
        assert_eq!((w.queue.as_str(), w.walltime_s), ("all.q", 590));
    }

    #[test]
    fn local_pilots_and_pilots_without_a_submission_time_teach_nothing() {
        let c = CampaignId::random();
        assert!(queue_wait(&registered("local"), None, &sites(), &c).is_none());
        let mut unsubmitted = registered("sge");
        unsubmitted.submitted_ms = 0;
        assert!(queue_wait(&unsubmitted, None, &sites(), &c).is_none());
    }

    #[tokio::test]
    async fn the_wait_goes_to_the_store_stream() {
        let store = MemoryStore::new();
        let c = CampaignId::random();
        let rec = registered("sge");
        record_queue_wait(&store, &c, &rec, Some(&request(None)), &sites()).await;
        let waits = store.pilot_waits("0", 10).await.unwrap();
        assert_eq!(waits.len(), 1);
        assert_eq!(
            (waits[0].1.pilot, waits[0].1.queue.as_str()),
            (rec.id, "all.q")
        );
    }
}
