//! The Redis state store (DESIGN section 6). Every key of a campaign carries the hash tag
//! `{<campaign>}`; every task transition goes through one Lua script generated from the
//! state machine of `state.rs`, so legality is encoded once.

use super::*;
use crate::model::{now_ms, EventKind};
use crate::state::TaskState;
use redis::aio::ConnectionManager;
use redis::{Script, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// The global set of campaign ids (for `emanager list`).
pub const CAMPAIGNS_KEY: &str = "em:campaigns";

fn k_campaign(c: &CampaignId) -> String {
    format!("em:{{{c}}}:campaign")
}
fn k_tasks(c: &CampaignId) -> String {
    format!("em:{{{c}}}:tasks")
}
fn k_events(c: &CampaignId) -> String {
    format!("em:{{{c}}}:events")
}
fn k_pilots(c: &CampaignId) -> String {
    format!("em:{{{c}}}:pilots")
}
fn k_pilot(c: &CampaignId, p: &PilotId) -> String {
    format!("em:{{{c}}}:pilot:{p}")
}
fn k_alive(c: &CampaignId, p: &PilotId) -> String {
    format!("em:{{{c}}}:pilot:{p}:alive")
}
fn k_lease(c: &CampaignId) -> String {
    format!("em:{{{c}}}:lease")
}
fn k_decisions(c: &CampaignId) -> String {
    format!("em:{{{c}}}:decisions")
}

mod codec;
mod scripts;

use codec::*;
pub use scripts::transition_script;
use scripts::*;

/// [`StateStore`] over Redis.
#[derive(Clone)]
pub struct RedisStore {
    con: ConnectionManager,
    /// Blocking stream reads get their own connection: a blocked command would stall every
    /// other command pipelined behind it on a shared one.
    blocking: ConnectionManager,
    scripts: std::sync::Arc<Scripts>,
    /// Consumers whose pending entries were already re-read after start.
    pending_drained: std::sync::Arc<Mutex<HashSet<(CampaignId, String, String)>>>,
}

struct Scripts {
    transition: Script,
    pilot: Script,
    lease: Script,
    release: Script,
}

fn op_err(op: &'static str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Operation {
        op,
        reason: e.to_string(),
    }
}

impl RedisStore {
    /// Connects, failing fast with a message that names the URL when it cannot.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let unreachable = |reason: String| StoreError::Unreachable {
            url: crate::util::redact_url(url),
            reason,
        };
        let client = redis::Client::open(url).map_err(|e| unreachable(e.to_string()))?;
        // One plain connection first: its error is the real reason (connection refused, bad
        // password, unknown host), where the retrying manager below would only time out.
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            client.get_multiplexed_async_connection(),
        )
        .await
        .map_err(|_| unreachable("no answer within 5 s".into()))?
        .map_err(|e| unreachable(e.to_string()))?;
        let open = || async {
            let cfg = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(std::time::Duration::from_secs(5))
                .set_number_of_retries(2);
            tokio::time::timeout(
                std::time::Duration::from_secs(8),
                ConnectionManager::new_with_config(client.clone(), cfg),
            )
            .await
            .map_err(|_| unreachable("timed out after 8 s".into()))?
            .map_err(|e| unreachable(e.to_string()))
        };
        let mut con = open().await?;
        let blocking = open().await?;
        let pong: String = redis::cmd("PING")
            .query_async(&mut con)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        debug_assert_eq!(pong, "PONG");
        Ok(RedisStore {
            con,
            blocking,
            scripts: std::sync::Arc::new(Scripts {
                transition: Script::new(&transition_script()),
                pilot: Script::new(&pilot_transition_script()),
                lease: Script::new(LEASE_SCRIPT),
                release: Script::new(RELEASE_SCRIPT),
            }),
            pending_drained: Default::default(),
        })
    }

    fn con(&self) -> ConnectionManager {
        self.con.clone()
    }
}

#[async_trait]
impl StateStore for RedisStore {
    async fn create_campaign(&self, meta: &CampaignMeta) -> StoreResult<bool> {
        let mut con = self.con();
        let key = k_campaign(&meta.id);
        let created: bool = redis::cmd("HSETNX")
            .arg(&key)
            .arg("id")
            .arg(meta.id.to_string())
            .query_async(&mut con)
            .await
            .map_err(|e| op_err("create campaign", e))?;
        if !created {
            return Ok(false);
        }
        let mut pipe = redis::pipe();
        pipe.cmd("HSET").arg(&key);
        for (k, v) in meta_fields(meta) {
            pipe.arg(k).arg(v);
        }
        pipe.ignore()
            .cmd("SADD")
            .arg(CAMPAIGNS_KEY)
            .arg(meta.id.to_string())
            .ignore();
        let () = pipe
            .query_async(&mut con)
            .await
            .map_err(|e| op_err("create campaign", e))?;
        Ok(true)
    }

    async fn campaign(&self, c: &CampaignId) -> StoreResult<Option<CampaignMeta>> {
        let key = k_campaign(c);
        let h: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(&key)
            .query_async(&mut self.con())
            .await
            .map_err(|e| op_err("read campaign", e))?;
        if h.is_empty() {
            return Ok(None);
        }
        meta_from(&key, &h).map(Some)
    }

    async fn set_campaign_state(&self, c: &CampaignId, state: CampaignState) -> StoreResult<()> {
        let mut cmd = redis::cmd("HSET");
        cmd.arg(k_campaign(c)).arg("state").arg(state.as_str());
        if state.is_final() {
            cmd.arg("finished_ms").arg(now_ms());
        }
        let _: i64 = cmd
            .query_async(&mut self.con())
            .await
            .map_err(|e| op_err("set campaign state", e))?;
        Ok(())
    }

    async fn list_campaigns(&self) -> StoreResult<Vec<CampaignId>> {
        let ids: Vec<String> = redis::cmd("SMEMBERS")
            .arg(CAMPAIGNS_KEY)
            .query_async(&mut self.con())
            .await
            .map_err(|e| op_err("list campaigns", e))?;
        Ok(ids.iter().filter_map(|s| s.parse().ok()).collect())
    }

    async fn insert_tasks(
        &self,
        c: &CampaignId,
        tasks: &[(TaskId, TaskRecord)],
    ) -> StoreResult<()> {
        let key = k_tasks(c);
        let mut con = self.con();
        for chunk in tasks.chunks(5_000) {
            let mut pipe = redis::pipe();
            for (t, r) in chunk {
                let bytes = rmp_serde::to_vec_named(r).map_err(|e| op_err("encode record", e))?;
                pipe.cmd("HSETNX")
                    .arg(&key)
                    .arg(t.to_string())
                    .arg(bytes)
                    .ignore();
            }
            let () = pipe
                .query_async(&mut con)
                .await
                .map_err(|e| op_err("insert tasks", e))?;
        }
        Ok(())
    }

    async fn transition(
        &self,
        c: &CampaignId,
        batch: &[Transition],
    ) -> StoreResult<Vec<TransitionOutcome>> {
        let mut out = Vec::with_capacity(batch.len());
        let mut con = self.con();
        for chunk in batch.chunks(1_000) {
            let mut inv = self.scripts.transition.prepare_invoke();
            inv.key(k_tasks(c)).key(k_events(c));
            inv.arg(now_ms()).arg(chunk.len());
            for t in chunk {
                inv.arg(t.task.to_string())
                    .arg(t.attempt)
                    .arg(t.to.code())
                    .arg(t.new_attempt.map(|a| a.to_string()).unwrap_or_default())
                    .arg(match &t.pilot {
                        None => String::new(),
                        Some(None) => "-".to_string(),
                        Some(Some(p)) => p.to_string(),
                    })
                    .arg(t.exit_code.map(|x| x.to_string()).unwrap_or_default())
                    .arg(
                        t.reason
                            .as_ref()
                            .map(|r| format!("={r}"))
                            .unwrap_or_default(),
                    )
                    .arg(if t.count_failure { "1" } else { "0" });
            }
            let codes: Vec<i64> = inv
                .invoke_async(&mut con)
                .await
                .map_err(|e| op_err("transition", e))?;
            out.extend(codes.into_iter().map(TransitionOutcome::from_code));
        }
        Ok(out)
    }

    async fn task_records(&self, c: &CampaignId) -> StoreResult<Vec<(TaskId, TaskRecord)>> {
        let key = k_tasks(c);
        let mut con = self.con();
        let mut cursor: u64 = 0;
        let mut out = Vec::new();
        loop {
            let (next, items): (u64, Vec<(String, Vec<u8>)>) = redis::cmd("HSCAN")
                .arg(&key)
                .arg(cursor)
                .arg("COUNT")
                .arg(10_000)
                .query_async(&mut con)
                .await
                .map_err(|e| op_err("scan tasks", e))?;
            for (id, bytes) in items {
                let t: TaskId = id.parse().map_err(|e| StoreError::Corrupt {
                    key: key.clone(),
                    reason: format!("task id {id}: {e}"),
                })?;
                let r: TaskRecord =
                    rmp_serde::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                        key: key.clone(),
                        reason: format!("record of {id}: {e}"),
                    })?;
                out.push((t, r));
            }
            if next == 0 {
                return Ok(out);
            }
            cursor = next;
        }
    }

    async fn task_record(&self, c: &CampaignId, t: &TaskId) -> StoreResult<Option<TaskRecord>> {
        let key = k_tasks(c);
        let bytes: Option<Vec<u8>> = redis::cmd("HGET")
            .arg(&key)
            .arg(t.to_string())
            .query_async(&mut self.con())
            .await
            .map_err(|e| op_err("read task", e))?;
        bytes
            .map(|b| {
                rmp_serde::from_slice(&b).map_err(|e| StoreError::Corrupt {
                    key,
                    reason: e.to_string(),
                })
            })
            .transpose()
    }

    async fn ensure_event_group(&self, c: &CampaignId, group: &str) -> StoreResult<()> {
        let r: redis::RedisResult<String> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(k_events(c))
            .arg(group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.con())
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if e.to_string().contains("BUSYGROUP") => Ok(()),
            Err(e) => Err(op_err("create event group", e)),
        }
    }

    async fn read_events(
        &self,
        c: &CampaignId,
        group: &str,
        consumer: &str,
        count: usize,
        block_ms: u64,
    ) -> StoreResult<Vec<Event>> {
        let marker = (*c, group.to_string(), consumer.to_string());
        let drained = self
            .pending_drained
            .lock()
            .map(|s| s.contains(&marker))
            .unwrap_or(false);
        if !drained {
            let reply: Option<redis::streams::StreamReadReply> = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg(group)
                .arg(consumer)
                .arg("COUNT")
                .arg(count)
                .arg("STREAMS")
                .arg(k_events(c))
                .arg("0")
                .query_async(&mut self.con())
                .await
                .map_err(|e| op_err("read pending events", e))?;
            let events = parse_stream_reply(reply);
            if !events.is_empty() {
                return Ok(events);
            }
            if let Ok(mut s) = self.pending_drained.lock() {
                s.insert(marker);
            }
        }
        let mut con = self.blocking.clone();
        let reply: Option<redis::streams::StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(group)
            .arg(consumer)
            .arg("COUNT")
            .arg(count)
            .arg("BLOCK")
            .arg(block_ms.max(1))
            .arg("STREAMS")
            .arg(k_events(c))
            .arg(">")
            .query_async(&mut con)
            .await
            .map_err(|e| op_err("read events", e))?;
        Ok(parse_stream_reply(reply))
    }

    async fn ack_events(&self, c: &CampaignId, group: &str, ids: &[String]) -> StoreResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut con = self.con();
        for chunk in ids.chunks(5_000) {
            let _: i64 = redis::cmd("XACK")
                .arg(k_events(c))
                .arg(group)
                .arg(chunk)
                .query_async(&mut con)
                .await
                .map_err(|e| op_err("ack events", e))?;
        }
        Ok(())
    }

    async fn all_events(&self, c: &CampaignId) -> StoreResult<Vec<Event>> {
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(k_events(c))
            .arg("-")
            .arg("+")
            .query_async(&mut self.con())
            .await
            .map_err(|e| op_err("read events", e))?;
        Ok(reply
            .ids
            .into_iter()
            .filter_map(|e| parse_event(e.id.clone(), &e.map))
            .collect())
    }

    async fn put_pilot(&self, c: &CampaignId, rec: &PilotRecord) -> StoreResult<()> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.cmd("HSET").arg(k_pilot(c, &rec.id));
        for (k, v) in pilot_put_fields(rec) {
            pipe.arg(k).arg(v);
        }
        pipe.ignore()
            .cmd("SADD")
            .arg(k_pilots(c))
            .arg(rec.id.to_string())
            .ignore()
            .cmd("XADD")
            .arg(k_events(c))
            .arg("*")
            .arg("k")
            .arg("p")
            .arg("p")
            .arg(rec.id.to_string())
            .arg("s")
            .arg(rec.state.as_str())
            .arg("r")
            .arg(&rec.reason)
            .ignore();
        let () = pipe
            .query_async(&mut self.con())
            .await
            .map_err(|e| op_err("put pilot", e))?;
        Ok(())
    }

    async fn pilot_transition(
        &self,
        c: &CampaignId,
        p: &PilotId,
        to: PilotState,
        reason: &str,
    ) -> StoreResult<bool> {
        let moved: i64 = self
            .scripts
            .pilot
            .key(k_pilot(c, p))
            .key(k_events(c))
            .arg(p.to_string())
            .arg(to.as_str())
            .arg(reason)
            .invoke_async(&mut self.con())
            .await
            .map_err(|e| op_err("pilot transition", e))?;
        Ok(moved == 1)
    }

    async fn set_pilot_job(&self, c: &CampaignId, p: &PilotId, job_id: &str) -> StoreResult<()> {
        // HSET on a missing hash would create a partial record: only touch a known pilot.
        let () = redis::cmd("EVAL")
            .arg("if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'job_id', ARGV[1], 'submitted_ms', ARGV[2]) end return 1")
            .arg(1)
            .arg(k_pilot(c, p))
            .arg(job_id)
            .arg(now_ms())
            .query_async::<i64>(&mut self.con())
            .await
            .map(|_| ())
            .map_err(|e| op_err("set pilot job", e))?;
        Ok(())
    }

    async fn pilots(&self, c: &CampaignId) -> StoreResult<Vec<PilotView>> {
        let mut con = self.con();
        let ids: Vec<String> = redis::cmd("SMEMBERS")
            .arg(k_pilots(c))
            .query_async(&mut con)
            .await
            .map_err(|e| op_err("list pilots", e))?;
        let ids: Vec<PilotId> = ids.iter().filter_map(|s| s.parse().ok()).collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for p in &ids {
            pipe.cmd("HGETALL").arg(k_pilot(c, p));
            pipe.cmd("EXISTS").arg(k_alive(c, p));
        }
        let rows: Vec<Value> = pipe
            .query_async(&mut con)
            .await
            .map_err(|e| op_err("read pilots", e))?;
        let now = now_ms();
        let mut out = Vec::new();
        for (i, p) in ids.iter().enumerate() {
            let h: HashMap<String, String> =
                redis::from_redis_value(&rows[2 * i]).map_err(|e| op_err("read pilot", e))?;
            if h.is_empty() {
                continue;
            }
            let alive: bool = redis::from_redis_value(&rows[2 * i + 1]).unwrap_or(false);
            let (record, load, beat) = pilot_from(&k_pilot(c, p), &h)?;
            out.push(PilotView {
                record,
                alive,
                load,
                heartbeat_age_ms: (beat > 0).then(|| now.saturating_sub(beat)),
            });
        }
        Ok(out)
    }

    async fn heartbeat(
        &self,
        c: &CampaignId,
        p: &PilotId,
        ttl_ms: u64,
        load: PilotLoad,
    ) -> StoreResult<()> {
        let now = now_ms();
        let () = redis::pipe()
            .cmd("SET")
            .arg(k_alive(c, p))
            .arg(now)
            .arg("PX")
            .arg(ttl_ms)
            .ignore()
            .cmd("HSET")
            .arg(k_pilot(c, p))
            .arg("busy_cores")
            .arg(load.busy_cores)
            .arg("running")
            .arg(load.running)
            .arg("queued")
            .arg(load.queued)
            .arg("beat_ms")
            .arg(now)
            .ignore()
            .query_async(&mut self.con())
            .await
            .map_err(|e| op_err("heartbeat", e))?;
        Ok(())
    }

    async fn record_pilot_wait(&self, wait: &PilotWait) -> StoreResult<()> {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(PILOT_WAITS_KEY)
            .arg("MAXLEN")
            .arg("~")
            .arg(PILOT_WAITS_KEPT)
            .arg("*");
        for (k, v) in pilot_wait_fields(wait) {
            cmd.arg(k).arg(v);
        }
        let _: String = cmd
            .query_async(&mut self.con())
            .await
            .map_err(|e| op_err("record pilot wait", e))?;
        Ok(())
    }

    async fn pilot_waits(
        &self,
        after: &str,
        count: usize,
    ) -> StoreResult<Vec<(String, PilotWait)>> {
        let reply: Option<redis::streams::StreamReadReply> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(count.max(1))
            .arg("STREAMS")
            .arg(PILOT_WAITS_KEY)
            .arg(after)
            .query_async(&mut self.con())
            .await
            .map_err(|e| op_err("read pilot waits", e))?;
        let mut out = Vec::new();
        for key in reply.map(|r| r.keys).unwrap_or_default() {
            for entry in key.ids {
                match parse_pilot_wait(&entry.map) {
                    Some(w) => out.push((entry.id, w)),
                    None => tracing::warn!(id = %entry.id, "skipping a malformed pilot wait"),
                }
            }
        }
        Ok(out)
    }

    async fn acquire_lease(&self, c: &CampaignId, holder: &str, ttl_ms: u64) -> StoreResult<bool> {
        let got: i64 = self
            .scripts
            .lease
            .key(k_lease(c))
            .arg(holder)
            .arg(ttl_ms)
            .invoke_async(&mut self.con())
            .await
            .map_err(|e| op_err("acquire lease", e))?;
        Ok(got == 1)
    }

    async fn release_lease(&self, c: &CampaignId, holder: &str) -> StoreResult<()> {
        let _: i64 = self
            .scripts
            .release
            .key(k_lease(c))
            .arg(holder)
            .invoke_async(&mut self.con())
            .await
            .map_err(|e| op_err("release lease", e))?;
        Ok(())
    }

    async fn add_decision(&self, c: &CampaignId, at_ms: u64, text: &str) -> StoreResult<()> {
        let () = redis::pipe()
            .atomic()
            .cmd("RPUSH")
            .arg(k_decisions(c))
            .arg(format!("{at_ms} {text}"))
            .ignore()
            .cmd("LTRIM")
            .arg(k_decisions(c))
            .arg(-(super::DECISIONS_KEPT as i64))
            .arg(-1)
            .ignore()
            .query_async(&mut self.con())
            .await
            .map_err(|e| op_err("add decision", e))?;
        Ok(())
    }

    async fn decisions(&self, c: &CampaignId) -> StoreResult<Vec<(u64, String)>> {
        let rows: Vec<String> = redis::cmd("LRANGE")
            .arg(k_decisions(c))
            .arg(0)
            .arg(-1)
            .query_async(&mut self.con())
            .await
            .map_err(|e| op_err("read decisions", e))?;
        Ok(rows
            .into_iter()
            .map(|r| match r.split_once(' ') {
                Some((ts, text)) => (ts.parse().unwrap_or(0), text.to_string()),
                None => (0, r),
            })
            .collect())
    }

    async fn attach_to_pool(
        &self,
        pool: &PoolName,
        c: &CampaignId,
        weight: f64,
    ) -> StoreResult<()> {
        super::redis_pool::attach(&mut self.con(), pool, c, weight).await
    }

    async fn detach_from_pool(&self, pool: &PoolName, c: &CampaignId) -> StoreResult<()> {
        super::redis_pool::detach(&mut self.con(), pool, c).await
    }

    async fn pool_campaigns(&self, pool: &PoolName) -> StoreResult<Vec<PoolCampaign>> {
        super::redis_pool::campaigns(&mut self.con(), pool).await
    }

    async fn put_pool_agent(&self, pool: &PoolName, agent: &PoolAgent) -> StoreResult<()> {
        super::redis_pool::put_agent(&mut self.con(), pool, agent).await
    }

    async fn remove_pool_agent(&self, pool: &PoolName, agent: &PilotId) -> StoreResult<()> {
        super::redis_pool::remove_agent(&mut self.con(), pool, agent).await
    }

    async fn pool_agents(&self, pool: &PoolName) -> StoreResult<Vec<PoolAgent>> {
        super::redis_pool::agents(&mut self.con(), pool).await
    }

    async fn list_pools(&self) -> StoreResult<Vec<PoolName>> {
        super::redis_pool::list(&mut self.con()).await
    }

    async fn delete_campaign(&self, c: &CampaignId) -> StoreResult<()> {
        let mut con = self.con();
        let ids: Vec<String> = redis::cmd("SMEMBERS")
            .arg(k_pilots(c))
            .query_async(&mut con)
            .await
            .map_err(|e| op_err("delete campaign", e))?;
        let mut pipe = redis::pipe();
        for p in ids.iter().filter_map(|s| s.parse::<PilotId>().ok()) {
            pipe.cmd("DEL")
                .arg(k_pilot(c, &p))
                .arg(k_alive(c, &p))
                .ignore();
        }
        pipe.cmd("DEL")
            .arg(k_campaign(c))
            .arg(k_tasks(c))
            .arg(k_events(c))
            .arg(k_pilots(c))
            .arg(k_lease(c))
            .arg(k_decisions(c))
            .ignore()
            .cmd("SREM")
            .arg(CAMPAIGNS_KEY)
            .arg(c.to_string())
            .ignore();
        let () = pipe
            .query_async(&mut con)
            .await
            .map_err(|e| op_err("delete campaign", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_carries_every_legal_edge() {
        let s = transition_script();
        for from in TaskState::ALL {
            for to in from.legal_targets() {
                assert!(s.contains(&format!("[{}]=true", to.code())), "{from}->{to}");
            }
        }
    }

    #[test]
    fn keys_share_the_campaign_hash_tag() {
        let c = CampaignId::random();
        let p = PilotId::random();
        let tag = format!("{{{c}}}");
        for k in [
            k_campaign(&c),
            k_tasks(&c),
            k_events(&c),
            k_pilot(&c, &p),
            k_alive(&c, &p),
            k_lease(&c),
        ] {
            assert!(k.contains(&tag), "{k}");
        }
    }
}
