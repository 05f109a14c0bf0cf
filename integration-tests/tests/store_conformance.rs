//! The in-memory store of embedded mode and the Redis store must behave the same: every
//! test here runs against both.

use emanager_shared::model::{CampaignMeta, EventKind, PilotLoad, PilotRecord, PilotWait};
use emanager_shared::store::{MemoryStore, RedisStore, StateStore, PILOT_WAITS_KEY};
use emanager_shared::{
    now_ms, CampaignId, CampaignState, PilotId, PilotState, TaskId, TaskRecord, TaskState,
    Transition, TransitionOutcome,
};
use std::sync::Arc;

async fn stores() -> Vec<(&'static str, Arc<dyn StateStore>)> {
    let redis = RedisStore::connect(&integration_tests::redis_url())
        .await
        .unwrap_or_else(|e| panic!("{e}\nstart Redis with `deploy/dev/services-up.sh`"));
    vec![
        ("memory", Arc::new(MemoryStore::new())),
        ("redis", Arc::new(redis)),
    ]
}

fn meta(id: CampaignId) -> CampaignMeta {
    CampaignMeta {
        id,
        name: "conformance".into(),
        state: CampaignState::Running,
        created_ms: now_ms(),
        finished_ms: 0,
        task_count: 1,
        spec_digest: "d".into(),
        workflow_format: "toml".into(),
        workflow_source: "".into(),
        options_json: "{}".into(),
    }
}

async fn campaign_with_task(s: &dyn StateStore, state: TaskState) -> (CampaignId, TaskId) {
    let c = CampaignId::random();
    assert!(s.create_campaign(&meta(c)).await.unwrap());
    let t = TaskId::random();
    s.insert_tasks(&c, &[(t, TaskRecord::new(state))])
        .await
        .unwrap();
    (c, t)
}

#[tokio::test]
async fn transitions_are_fenced_by_attempt_and_legality() {
    for (name, s) in stores().await {
        let (c, t) = campaign_with_task(s.as_ref(), TaskState::Ready).await;
        let p = PilotId::random();
        let out = s
            .transition(
                &c,
                &[
                    Transition::bind(t, 0, p),
                    Transition::new(t, 0, TaskState::AgentQueued), // stale: attempt is now 1
                    Transition::new(t, 1, TaskState::Done),        // illegal from SCHEDULED
                    Transition::new(TaskId::random(), 0, TaskState::Ready),
                    Transition::new(t, 1, TaskState::AgentQueued),
                ],
            )
            .await
            .unwrap();
        use TransitionOutcome::*;
        assert_eq!(
            out,
            vec![Applied, Stale, Illegal, Unknown, Applied],
            "{name}"
        );
        let r = s.task_record(&c, &t).await.unwrap().unwrap();
        assert_eq!(
            (r.state(), r.a, r.pilot()),
            (TaskState::AgentQueued, 1, Some(p)),
            "{name}"
        );
        assert!(r.ts > 0, "{name}");
        s.delete_campaign(&c).await.unwrap();
    }
}

#[tokio::test]
async fn failures_exit_codes_and_reasons_are_recorded() {
    for (name, s) in stores().await {
        let (c, t) = campaign_with_task(s.as_ref(), TaskState::Executing).await;
        s.transition(
            &c,
            &[Transition::new(t, 0, TaskState::Failed)
                .with_exit(Some(-9))
                .with_reason("killed by signal SIGKILL")
                .failure()],
        )
        .await
        .unwrap();
        let r = s.task_record(&c, &t).await.unwrap().unwrap();
        assert_eq!(
            (r.f, r.x, r.r.as_str()),
            (1, Some(-9), "killed by signal SIGKILL"),
            "{name}"
        );
        assert!(r.t1 > 0, "{name}");
        s.delete_campaign(&c).await.unwrap();
    }
}

#[tokio::test]
async fn inserting_tasks_never_overwrites_a_record() {
    for (name, s) in stores().await {
        let (c, t) = campaign_with_task(s.as_ref(), TaskState::Done).await;
        s.insert_tasks(&c, &[(t, TaskRecord::new(TaskState::Ready))])
            .await
            .unwrap();
        let r = s.task_record(&c, &t).await.unwrap().unwrap();
        assert_eq!(r.state(), TaskState::Done, "{name}");
        assert!(
            !s.create_campaign(&meta(c)).await.unwrap(),
            "{name}: created twice"
        );
        s.delete_campaign(&c).await.unwrap();
    }
}

#[tokio::test]
async fn events_are_read_once_per_group_and_pending_ones_come_back_after_a_restart() {
    for (name, s) in stores().await {
        let (c, t) = campaign_with_task(s.as_ref(), TaskState::Ready).await;
        s.ensure_event_group(&c, "g").await.unwrap();
        s.ensure_event_group(&c, "g").await.unwrap(); // idempotent
        let p = PilotId::random();
        s.transition(&c, &[Transition::bind(t, 0, p)])
            .await
            .unwrap();
        let first = s.read_events(&c, "g", "m", 10, 50).await.unwrap();
        assert_eq!(first.len(), 1, "{name}");
        match &first[0].kind {
            EventKind::Task {
                task,
                state,
                attempt,
                pilot,
                ..
            } => {
                assert_eq!(
                    (*task, *state, *attempt, *pilot),
                    (t, TaskState::Scheduled, 1, Some(p)),
                    "{name}"
                );
            }
            other => panic!("{name}: {other:?}"),
        }
        assert!(
            s.read_events(&c, "g", "m", 10, 50)
                .await
                .unwrap()
                .is_empty(),
            "{name}"
        );
        if name == "redis" {
            // A new manager process (new store handle) sees the unacknowledged event again.
            let again = RedisStore::connect(&integration_tests::redis_url())
                .await
                .unwrap();
            let pending = again.read_events(&c, "g", "m", 10, 50).await.unwrap();
            assert_eq!(
                pending.len(),
                1,
                "pending entry is redelivered after restart"
            );
            again
                .ack_events(&c, "g", &[pending[0].id.clone()])
                .await
                .unwrap();
            let fresh = RedisStore::connect(&integration_tests::redis_url())
                .await
                .unwrap();
            assert!(fresh
                .read_events(&c, "g", "m", 10, 50)
                .await
                .unwrap()
                .is_empty());
        }
        s.delete_campaign(&c).await.unwrap();
    }
}

#[tokio::test]
async fn pilots_follow_their_state_machine_and_heartbeats_expire() {
    for (name, s) in stores().await {
        let c = CampaignId::random();
        s.create_campaign(&meta(c)).await.unwrap();
        let p = PilotId::random();
        let mut rec = PilotRecord::new(p, "local");
        rec.state = PilotState::Active;
        rec.cores = 4;
        rec.walltime_end_ms = 1_000_000;
        rec.drain_margin_ms = 30_000;
        s.put_pilot(&c, &rec).await.unwrap();
        s.heartbeat(
            &c,
            &p,
            300,
            PilotLoad {
                busy_cores: 2,
                running: 2,
                queued: 1,
            },
        )
        .await
        .unwrap();
        let v = s.pilots(&c).await.unwrap().pop().unwrap();
        assert!(v.alive, "{name}");
        assert_eq!(
            (v.record.cores, v.load.busy_cores, v.load.queued),
            (4, 2, 1),
            "{name}"
        );
        assert_eq!(
            v.record.drain_at_ms(),
            Some(970_000),
            "{name}: when it drains"
        );
        tokio::time::sleep(std::time::Duration::from_millis(450)).await;
        assert!(
            !s.pilots(&c).await.unwrap()[0].alive,
            "{name}: heartbeat TTL lapsed"
        );
        assert!(
            s.pilot_transition(&c, &p, PilotState::Failed, "lost")
                .await
                .unwrap(),
            "{name}"
        );
        assert!(
            !s.pilot_transition(&c, &p, PilotState::Active, "back?")
                .await
                .unwrap(),
            "{name}: FAILED is final"
        );
        let v = s.pilots(&c).await.unwrap().pop().unwrap();
        assert_eq!(
            (v.record.state, v.record.reason.as_str()),
            (PilotState::Failed, "lost"),
            "{name}"
        );
        s.delete_campaign(&c).await.unwrap();
    }
}

#[tokio::test]
async fn a_pilot_job_id_is_recorded_without_touching_the_rest_of_the_record() {
    for (name, s) in stores().await {
        let c = CampaignId::random();
        s.create_campaign(&meta(c)).await.unwrap();
        let p = PilotId::random();
        let mut rec = PilotRecord::new(p, "localhost-slurm");
        rec.state = PilotState::Active;
        rec.cores = 8;
        s.put_pilot(&c, &rec).await.unwrap();
        let before = now_ms();
        s.set_pilot_job(&c, &p, "4242").await.unwrap();
        let v = s.pilots(&c).await.unwrap().pop().unwrap();
        assert_eq!(
            (v.record.job_id.as_str(), v.record.state, v.record.cores),
            ("4242", PilotState::Active, 8),
            "{name}"
        );
        assert!(
            v.record.submitted_ms >= before,
            "{name}: submission time recorded"
        );
        // An unknown pilot gets no partial record.
        s.set_pilot_job(&c, &PilotId::random(), "1").await.unwrap();
        assert_eq!(s.pilots(&c).await.unwrap().len(), 1, "{name}");
        s.delete_campaign(&c).await.unwrap();
    }
}

#[tokio::test]
async fn decisions_are_kept_in_order_up_to_the_limit() {
    for (name, s) in stores().await {
        let c = CampaignId::random();
        s.create_campaign(&meta(c)).await.unwrap();
        let n = emanager_shared::store::DECISIONS_KEPT + 5;
        for i in 0..n {
            s.add_decision(&c, i as u64, &format!("decision {i}: why"))
                .await
                .unwrap();
        }
        let d = s.decisions(&c).await.unwrap();
        assert_eq!(d.len(), emanager_shared::store::DECISIONS_KEPT, "{name}");
        assert_eq!(
            d[0],
            (5, "decision 5: why".to_string()),
            "{name}: oldest dropped"
        );
        assert_eq!(d.last().unwrap().0, n as u64 - 1, "{name}");
        s.delete_campaign(&c).await.unwrap();
        assert!(s.decisions(&c).await.unwrap().is_empty(), "{name}");
    }
}

#[tokio::test]
async fn an_agent_registering_keeps_the_submission_time() {
    for (name, s) in stores().await {
        let c = CampaignId::random();
        s.create_campaign(&meta(c)).await.unwrap();
        let p = PilotId::random();
        let mut rec = PilotRecord::new(p, "localhost-sge");
        rec.state = PilotState::Submitted;
        s.put_pilot(&c, &rec).await.unwrap();
        s.set_pilot_job(&c, &p, "17").await.unwrap();
        let submitted = s.pilots(&c).await.unwrap()[0].record.submitted_ms;
        // The agent read the record before the job id was set: it writes submitted_ms 0.
        rec.state = PilotState::Active;
        rec.job_id = "17".into();
        rec.registered_ms = now_ms();
        s.put_pilot(&c, &rec).await.unwrap();
        let v = s.pilots(&c).await.unwrap().pop().unwrap();
        assert_eq!(v.record.submitted_ms, submitted, "{name}");
        assert!(v.record.registered_ms >= submitted, "{name}");
        s.delete_campaign(&c).await.unwrap();
    }
}

fn wait(resource: &str, wait_s: u64) -> PilotWait {
    PilotWait {
        resource: resource.into(),
        queue: "all.q".into(),
        nodes: 1,
        walltime_s: 600,
        submitted_ms: 1_000_000,
        started_ms: 1_000_000 + wait_s * 1000,
        campaign: CampaignId::random(),
        pilot: PilotId::random(),
        job_id: "17".into(),
    }
}

#[tokio::test]
async fn pilot_waits_are_read_in_order_after_the_last_entry_seen() {
    for (name, s) in stores().await {
        // The stream is shared by every campaign and test: look only at ours.
        let resource = format!("conformance-{}", PilotId::random());
        let first = wait(&resource, 5);
        let second = wait(&resource, 7);
        s.record_pilot_wait(&first).await.unwrap();
        s.record_pilot_wait(&second).await.unwrap();
        let mut ours = Vec::new();
        let mut after = "0".to_string();
        loop {
            let page = s.pilot_waits(&after, 500).await.unwrap();
            let Some((last, _)) = page.last() else { break };
            after = last.clone();
            ours.extend(page.into_iter().filter(|(_, w)| w.resource == resource));
        }
        assert_eq!(ours.len(), 2, "{name}");
        assert_eq!(
            (&ours[0].1, &ours[1].1),
            (&first, &second),
            "{name}: oldest first"
        );
        assert_eq!(ours[1].1.wait_s(), 7.0, "{name}");
        let after_first: Vec<PilotWait> = s
            .pilot_waits(&ours[0].0, 500)
            .await
            .unwrap()
            .into_iter()
            .map(|(_, w)| w)
            .filter(|w| w.resource == resource)
            .collect();
        assert_eq!(
            after_first,
            std::slice::from_ref(&second),
            "{name}: only what came after"
        );
        if name == "redis" {
            let mut con = redis::Client::open(integration_tests::redis_url())
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap();
            let _: i64 = redis::cmd("XDEL")
                .arg(PILOT_WAITS_KEY)
                .arg(&ours[0].0)
                .arg(&ours[1].0)
                .query_async(&mut con)
                .await
                .unwrap();
        }
    }
}

#[tokio::test]
async fn a_second_manager_is_refused_while_the_lease_is_held() {
    for (name, s) in stores().await {
        let c = CampaignId::random();
        assert!(s.acquire_lease(&c, "a", 10_000).await.unwrap(), "{name}");
        assert!(
            s.acquire_lease(&c, "a", 10_000).await.unwrap(),
            "{name}: renewal"
        );
        assert!(
            !s.acquire_lease(&c, "b", 10_000).await.unwrap(),
            "{name}: second holder refused"
        );
        s.release_lease(&c, "a").await.unwrap();
        assert!(
            s.acquire_lease(&c, "b", 10_000).await.unwrap(),
            "{name}: free after release"
        );
        s.release_lease(&c, "b").await.unwrap();
        s.delete_campaign(&c).await.unwrap();
    }
}

#[tokio::test]
async fn campaigns_are_listed_and_deleted() {
    for (name, s) in stores().await {
        let (c, _) = campaign_with_task(s.as_ref(), TaskState::Ready).await;
        assert!(s.list_campaigns().await.unwrap().contains(&c), "{name}");
        s.set_campaign_state(&c, CampaignState::Canceled)
            .await
            .unwrap();
        let m = s.campaign(&c).await.unwrap().unwrap();
        assert_eq!(m.state, CampaignState::Canceled, "{name}");
        assert!(m.finished_ms > 0, "{name}");
        s.delete_campaign(&c).await.unwrap();
        assert!(s.campaign(&c).await.unwrap().is_none(), "{name}");
        assert!(!s.list_campaigns().await.unwrap().contains(&c), "{name}");
    }
}

#[tokio::test]
async fn a_pool_registry_keeps_campaign_weights_and_agent_entries() {
    use emanager_shared::pool::{PoolAgent, PoolLane, PoolName};
    for (name, s) in stores().await {
        let pool: PoolName = format!("conformance-{}", PilotId::random().short())
            .parse()
            .unwrap();
        let (a, b) = (CampaignId::random(), CampaignId::random());
        s.attach_to_pool(&pool, &a, 2.0).await.unwrap();
        s.attach_to_pool(&pool, &b, 1.0).await.unwrap();
        s.attach_to_pool(&pool, &b, 0.5).await.unwrap(); // a new weight
        let mut got: Vec<(CampaignId, f64)> = s
            .pool_campaigns(&pool)
            .await
            .unwrap()
            .into_iter()
            .map(|p| (p.campaign, p.weight))
            .collect();
        got.sort_by_key(|p| p.0);
        let mut want = vec![(a, 2.0), (b, 0.5)];
        want.sort_by_key(|p| p.0);
        assert_eq!(got, want, "{name}");
        s.detach_from_pool(&pool, &a).await.unwrap();
        assert_eq!(s.pool_campaigns(&pool).await.unwrap().len(), 1, "{name}");

        let agent = PoolAgent {
            id: PilotId::random(),
            state: "ACTIVE".into(),
            resource: "local".into(),
            job_id: String::new(),
            host: "h".into(),
            pid: 7,
            nodes: 1,
            cores: 3,
            gpus: 0,
            mem_mb: 1024,
            busy_cores: 2,
            version: "v".into(),
            log_path: String::new(),
            started_ms: now_ms(),
            beat_ms: now_ms(),
            ttl_ms: 1500,
            lanes: vec![PoolLane {
                campaign: b,
                pilot: PilotId::random(),
                weight: 0.5,
                busy_cores: 2,
                queued: 4,
            }],
        };
        s.put_pool_agent(&pool, &agent).await.unwrap();
        assert_eq!(
            s.pool_agents(&pool).await.unwrap(),
            vec![agent.clone()],
            "{name}"
        );
        assert!(s.list_pools().await.unwrap().contains(&pool), "{name}");
        assert!(agent.alive(now_ms()) && !agent.alive(now_ms() + 5_000));
        s.remove_pool_agent(&pool, &agent.id).await.unwrap();
        assert!(s.pool_agents(&pool).await.unwrap().is_empty(), "{name}");
        s.detach_from_pool(&pool, &b).await.unwrap();
        if name == "redis" {
            let client = redis::Client::open(integration_tests::redis_url()).unwrap();
            let mut con = client.get_multiplexed_async_connection().await.unwrap();
            let _: i64 = redis::cmd("SREM")
                .arg("em:pools")
                .arg(pool.as_str())
                .query_async(&mut con)
                .await
                .unwrap();
        }
    }
}
