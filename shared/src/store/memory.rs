//! In-process state store for embedded mode, with the semantics of the Redis one: the same
//! transition rules (`model::apply_transition`), an events stream with one cursor per
//! consumer group, TTL heartbeats and a lease.

use super::*;
use crate::model::{apply_transition, now_ms, EventKind};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

#[derive(Default)]
struct Campaign {
    meta: Option<CampaignMeta>,
    tasks: HashMap<TaskId, TaskRecord>,
    events: Vec<Event>,
    groups: HashMap<String, Group>,
    pilots: BTreeMap<
        PilotId,
        (
            PilotRecord,
            PilotLoad,
            u64, /*alive until*/
            u64, /*last beat*/
        ),
    >,
    lease: Option<(String, u64)>,
    seq: u64,
    decisions: std::collections::VecDeque<(u64, String)>,
}

#[derive(Default)]
struct Group {
    /// Index of the next never-delivered event.
    next: usize,
    /// Delivered but not acknowledged event ids, per consumer.
    pending: HashMap<String, Vec<String>>,
}

impl Campaign {
    fn push(&mut self, kind: EventKind) {
        self.seq += 1;
        self.events.push(Event {
            id: format!("{}-{}", now_ms(), self.seq),
            kind,
        });
    }
}

/// A pool's registry: campaigns with their weights, agents by id.
#[derive(Default)]
struct Pool {
    campaigns: BTreeMap<CampaignId, f64>,
    agents: BTreeMap<PilotId, PoolAgent>,
}

/// In-memory implementation of [`StateStore`].
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<HashMap<CampaignId, Campaign>>>,
    pools: Arc<Mutex<BTreeMap<PoolName, Pool>>>,
    notify: Arc<Notify>,
    /// The pilot-wait stream.
    pilot_waits: Arc<Mutex<Vec<(StreamId, PilotWait)>>>,
}

/// A stream entry id `(ms, seq)`, ordered like Redis's.
type StreamId = (u64, u64);

/// A stream id `ms-seq` (or `ms`, or `0`).
fn stream_id(id: &str) -> StreamId {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, c: &CampaignId, f: impl FnOnce(&mut Campaign) -> T) -> T {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(inner.entry(*c).or_default())
    }

    fn with_pool<T>(&self, p: &PoolName, f: impl FnOnce(&mut Pool) -> T) -> T {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        f(pools.entry(p.clone()).or_default())
    }
}

#[async_trait]
impl StateStore for MemoryStore {
    async fn create_campaign(&self, meta: &CampaignMeta) -> StoreResult<bool> {
        Ok(self.with(&meta.id, |c| {
            if c.meta.is_some() {
                false
            } else {
                c.meta = Some(meta.clone());
                true
            }
        }))
    }

    async fn campaign(&self, id: &CampaignId) -> StoreResult<Option<CampaignMeta>> {
        Ok(self.with(id, |c| c.meta.clone()))
    }

    async fn set_campaign_state(&self, id: &CampaignId, state: CampaignState) -> StoreResult<()> {
        self.with(id, |c| {
            if let Some(m) = c.meta.as_mut() {
                m.state = state;
                if state.is_final() {
                    m.finished_ms = now_ms();
                }
            }
        });
        Ok(())
    }

    async fn list_campaigns(&self) -> StoreResult<Vec<CampaignId>> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        Ok(inner
            .iter()
            .filter(|(_, c)| c.meta.is_some())
            .map(|(id, _)| *id)
            .collect())
    }

    async fn insert_tasks(
        &self,
        id: &CampaignId,
        tasks: &[(TaskId, TaskRecord)],
    ) -> StoreResult<()> {
        self.with(id, |c| {
            for (t, r) in tasks {
                c.tasks.entry(*t).or_insert_with(|| r.clone());
            }
        });
        Ok(())
    }

    async fn transition(
        &self,
        id: &CampaignId,
        batch: &[Transition],
    ) -> StoreResult<Vec<TransitionOutcome>> {
        let now = now_ms();
        let out = self.with(id, |c| {
            batch
                .iter()
                .map(|t| {
                    let Some(rec) = c.tasks.get_mut(&t.task) else {
                        return TransitionOutcome::Unknown;
                    };
                    let outcome = apply_transition(rec, t, now);
                    if outcome == TransitionOutcome::Applied {
                        let kind = EventKind::Task {
                            task: t.task,
                            state: t.to,
                            attempt: rec.a,
                            pilot: rec.pilot(),
                            exit_code: t.exit_code,
                            reason: t.reason.clone().unwrap_or_default(),
                        };
                        c.push(kind);
                    }
                    outcome
                })
                .collect()
        });
        self.notify.notify_waiters();
        Ok(out)
    }

    async fn task_records(&self, id: &CampaignId) -> StoreResult<Vec<(TaskId, TaskRecord)>> {
        Ok(self.with(id, |c| {
            c.tasks.iter().map(|(k, v)| (*k, v.clone())).collect()
        }))
    }

    async fn task_record(&self, id: &CampaignId, t: &TaskId) -> StoreResult<Option<TaskRecord>> {
        Ok(self.with(id, |c| c.tasks.get(t).cloned()))
    }

    async fn ensure_event_group(&self, id: &CampaignId, group: &str) -> StoreResult<()> {
        self.with(id, |c| {
            c.groups.entry(group.to_string()).or_default();
        });
        Ok(())
    }

    async fn read_events(
        &self,
        id: &CampaignId,
        group: &str,
        consumer: &str,
        count: usize,
        block_ms: u64,
    ) -> StoreResult<Vec<Event>> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(block_ms);
        loop {
            let notified = self.notify.notified();
            let got = self.with(id, |c| {
                let Campaign { events, groups, .. } = c;
                let g = groups.entry(group.to_string()).or_default();
                let end = (g.next + count).min(events.len());
                let fresh: Vec<Event> = events[g.next..end].to_vec();
                g.next = end;
                g.pending
                    .entry(consumer.to_string())
                    .or_default()
                    .extend(fresh.iter().map(|e| e.id.clone()));
                fresh
            });
            if !got.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(got);
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }

    async fn ack_events(&self, id: &CampaignId, group: &str, ids: &[String]) -> StoreResult<()> {
        let acked: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
        self.with(id, |c| {
            if let Some(g) = c.groups.get_mut(group) {
                for pending in g.pending.values_mut() {
                    pending.retain(|p| !acked.contains(p.as_str()));
                }
            }
        });
        Ok(())
    }

    async fn all_events(&self, id: &CampaignId) -> StoreResult<Vec<Event>> {
        Ok(self.with(id, |c| c.events.clone()))
    }

    async fn put_pilot(&self, id: &CampaignId, rec: &PilotRecord) -> StoreResult<()> {
        self.with(id, |c| {
            let entry = c
                .pilots
                .entry(rec.id)
                .or_insert_with(|| (rec.clone(), PilotLoad::default(), 0, 0));
            let submitted_ms = entry.0.submitted_ms;
            entry.0 = rec.clone();
            if rec.submitted_ms == 0 {
                entry.0.submitted_ms = submitted_ms;
            }
            c.push(EventKind::Pilot {
                pilot: rec.id,
                state: rec.state,
                reason: rec.reason.clone(),
            });
        });
        self.notify.notify_waiters();
        Ok(())
    }

    async fn pilot_transition(
        &self,
        id: &CampaignId,
        p: &PilotId,
        to: PilotState,
        reason: &str,
    ) -> StoreResult<bool> {
        let moved = self.with(id, |c| {
            let Some(entry) = c.pilots.get_mut(p) else {
                return false;
            };
            if !entry.0.state.can_become(to) {
                return false;
            }
            entry.0.state = to;
            entry.0.reason = reason.to_string();
            c.push(EventKind::Pilot {
                pilot: *p,
                state: to,
                reason: reason.to_string(),
            });
            true
        });
        self.notify.notify_waiters();
        Ok(moved)
    }

    async fn set_pilot_job(&self, id: &CampaignId, p: &PilotId, job_id: &str) -> StoreResult<()> {
        self.with(id, |c| {
            if let Some(entry) = c.pilots.get_mut(p) {
                entry.0.job_id = job_id.to_string();
                entry.0.submitted_ms = now_ms();
            }
        });
        Ok(())
    }

    async fn pilots(&self, id: &CampaignId) -> StoreResult<Vec<PilotView>> {
        let now = now_ms();
        Ok(self.with(id, |c| {
            c.pilots
                .values()
                .map(|(rec, load, until, beat)| PilotView {
                    record: rec.clone(),
                    alive: *until > now,
                    load: *load,
                    heartbeat_age_ms: (*beat > 0).then(|| now.saturating_sub(*beat)),
                })
                .collect()
        }))
    }

    async fn heartbeat(
        &self,
        id: &CampaignId,
        p: &PilotId,
        ttl_ms: u64,
        load: PilotLoad,
    ) -> StoreResult<()> {
        let now = now_ms();
        self.with(id, |c| {
            if let Some(entry) = c.pilots.get_mut(p) {
                entry.1 = load;
                entry.2 = now + ttl_ms;
                entry.3 = now;
            }
        });
        Ok(())
    }

    async fn record_pilot_wait(&self, wait: &PilotWait) -> StoreResult<()> {
        let mut waits = self.pilot_waits.lock().unwrap_or_else(|e| e.into_inner());
        let now = now_ms();
        let id = match waits.last() {
            Some(((ms, seq), _)) if *ms >= now => (*ms, seq + 1),
            _ => (now, 0),
        };
        waits.push((id, wait.clone()));
        if waits.len() > PILOT_WAITS_KEPT {
            let excess = waits.len() - PILOT_WAITS_KEPT;
            waits.drain(..excess);
        }
        Ok(())
    }

    async fn pilot_waits(
        &self,
        after: &str,
        count: usize,
    ) -> StoreResult<Vec<(String, PilotWait)>> {
        let after = stream_id(after);
        let waits = self.pilot_waits.lock().unwrap_or_else(|e| e.into_inner());
        Ok(waits
            .iter()
            .filter(|(id, _)| *id > after)
            .take(count.max(1))
            .map(|((ms, seq), w)| (format!("{ms}-{seq}"), w.clone()))
            .collect())
    }

    async fn acquire_lease(&self, id: &CampaignId, holder: &str, ttl_ms: u64) -> StoreResult<bool> {
        let now = now_ms();
        Ok(self.with(id, |c| match &c.lease {
            Some((h, until)) if h != holder && *until > now => false,
            _ => {
                c.lease = Some((holder.to_string(), now + ttl_ms));
                true
            }
        }))
    }

    async fn release_lease(&self, id: &CampaignId, holder: &str) -> StoreResult<()> {
        self.with(id, |c| {
            if c.lease.as_ref().map(|(h, _)| h == holder).unwrap_or(false) {
                c.lease = None;
            }
        });
        Ok(())
    }

    async fn add_decision(&self, id: &CampaignId, at_ms: u64, text: &str) -> StoreResult<()> {
        self.with(id, |c| {
            c.decisions.push_back((at_ms, text.to_string()));
            while c.decisions.len() > super::DECISIONS_KEPT {
                c.decisions.pop_front();
            }
        });
        Ok(())
    }

    async fn decisions(&self, id: &CampaignId) -> StoreResult<Vec<(u64, String)>> {
        Ok(self.with(id, |c| c.decisions.iter().cloned().collect()))
    }

    async fn attach_to_pool(
        &self,
        pool: &PoolName,
        c: &CampaignId,
        weight: f64,
    ) -> StoreResult<()> {
        self.with_pool(pool, |p| p.campaigns.insert(*c, weight));
        Ok(())
    }

    async fn detach_from_pool(&self, pool: &PoolName, c: &CampaignId) -> StoreResult<()> {
        self.with_pool(pool, |p| p.campaigns.remove(c));
        Ok(())
    }

    async fn pool_campaigns(&self, pool: &PoolName) -> StoreResult<Vec<PoolCampaign>> {
        Ok(self.with_pool(pool, |p| {
            p.campaigns
                .iter()
                .map(|(c, w)| PoolCampaign {
                    campaign: *c,
                    weight: *w,
                })
                .collect()
        }))
    }

    async fn put_pool_agent(&self, pool: &PoolName, agent: &PoolAgent) -> StoreResult<()> {
        self.with_pool(pool, |p| p.agents.insert(agent.id, agent.clone()));
        Ok(())
    }

    async fn remove_pool_agent(&self, pool: &PoolName, agent: &PilotId) -> StoreResult<()> {
        self.with_pool(pool, |p| p.agents.remove(agent));
        Ok(())
    }

    async fn pool_agents(&self, pool: &PoolName) -> StoreResult<Vec<PoolAgent>> {
        let mut out: Vec<PoolAgent> =
            self.with_pool(pool, |p| p.agents.values().cloned().collect());
        out.sort_by_key(|a| (a.started_ms, a.id));
        Ok(out)
    }

    async fn list_pools(&self) -> StoreResult<Vec<PoolName>> {
        let pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        Ok(pools.keys().cloned().collect())
    }

    async fn delete_campaign(&self, id: &CampaignId) -> StoreResult<()> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        Ok(())
    }
}
