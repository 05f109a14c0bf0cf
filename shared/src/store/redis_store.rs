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

/// `local legal = { [from] = {[to]=true, ...}, ... }` from a state machine's table; `key`
/// renders a state as a Lua table key.
fn lua_legal_table<S: Copy>(
    all: &[S],
    targets: fn(S) -> &'static [S],
    key: impl Fn(S) -> String,
) -> String {
    let mut legal = String::from("local legal = {\n");
    for &from in all {
        let to: Vec<String> = targets(from)
            .iter()
            .map(|&t| format!("[{}]=true", key(t)))
            .collect();
        legal.push_str(&format!("  [{}] = {{{}}},\n", key(from), to.join(", ")));
    }
    legal.push_str("}\n");
    legal
}

/// The Lua source of the batched task-transition script, with the legality table of
/// `TaskState::legal_targets` written into it.
pub fn transition_script() -> String {
    let legal = lua_legal_table(&TaskState::ALL, TaskState::legal_targets, |t| {
        t.code().to_string()
    });
    format!(
        r#"-- Generated from emanager_shared::state::TaskState::legal_targets. Do not edit.
-- KEYS[1] tasks hash, KEYS[2] events stream
-- ARGV: now, n, then n groups of 8: id, attempt, to, new_attempt|'', pilot|''|'-',
--       exit|'', '='..reason|'', failure '1'|'0'
-- Returns per transition: 0 applied, 1 stale attempt, 2 illegal, 3 unknown task.
{legal}
local SCHEDULED, EXECUTING = {sched}, {exec}
local final = {{[{done}]=true, [{failed}]=true, [{canceled}]=true}}
local now = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local out = {{}}
local i = 3
for k = 1, n do
  local id, attempt, to = ARGV[i], tonumber(ARGV[i+1]), tonumber(ARGV[i+2])
  local new_attempt, pilot, exit = ARGV[i+3], ARGV[i+4], ARGV[i+5]
  local reason, fail = ARGV[i+6], ARGV[i+7]
  i = i + 8
  local raw = redis.call('HGET', KEYS[1], id)
  if not raw then
    out[k] = 3
  else
    local rec = cmsgpack.unpack(raw)
    if (rec.a or 0) ~= attempt then
      out[k] = 1
    elseif not (legal[rec.s] and legal[rec.s][to]) then
      out[k] = 2
    else
      rec.s = to
      if new_attempt ~= '' then rec.a = tonumber(new_attempt) end
      if pilot == '-' then rec.p = '' elseif pilot ~= '' then rec.p = pilot end
      if exit ~= '' then rec.x = tonumber(exit) end
      if reason ~= '' then rec.r = string.sub(reason, 2) end
      if fail == '1' then rec.f = (rec.f or 0) + 1 end
      if to == SCHEDULED then rec.ts = now
      elseif to == EXECUTING then rec.t0 = now
      elseif final[to] then rec.t1 = now end
      redis.call('HSET', KEYS[1], id, cmsgpack.pack(rec))
      redis.call('XADD', KEYS[2], '*', 'k', 't', 't', id, 's', to, 'a', rec.a or 0,
        'p', rec.p or '', 'x', exit, 'r', string.sub(reason, 2))
      out[k] = 0
    end
  end
end
return out
"#,
        sched = TaskState::Scheduled.code(),
        exec = TaskState::Executing.code(),
        done = TaskState::Done.code(),
        failed = TaskState::Failed.code(),
        canceled = TaskState::Canceled.code(),
    )
}

fn pilot_transition_script() -> String {
    let legal = lua_legal_table(&PilotState::ALL, PilotState::legal_targets, |p| {
        format!("'{}'", p.as_str())
    });
    format!(
        r#"-- Generated from emanager_shared::state::PilotState::legal_targets. Do not edit.
-- KEYS[1] pilot hash, KEYS[2] events stream; ARGV: pilot id, to, reason
{legal}
local from = redis.call('HGET', KEYS[1], 'state')
if not from then return 0 end
if not (legal[from] and legal[from][ARGV[2]]) then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'reason', ARGV[3])
redis.call('XADD', KEYS[2], '*', 'k', 'p', 'p', ARGV[1], 's', ARGV[2], 'r', ARGV[3])
return 1
"#
    )
}

const LEASE_SCRIPT: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"#;

const RELEASE_SCRIPT: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"#;

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

fn meta_fields(m: &CampaignMeta) -> Vec<(&'static str, String)> {
    vec![
        ("id", m.id.to_string()),
        ("name", m.name.clone()),
        ("state", m.state.as_str().to_string()),
        ("created_ms", m.created_ms.to_string()),
        ("finished_ms", m.finished_ms.to_string()),
        ("task_count", m.task_count.to_string()),
        ("spec_digest", m.spec_digest.clone()),
        ("workflow_format", m.workflow_format.clone()),
        ("workflow_source", m.workflow_source.clone()),
        ("options_json", m.options_json.clone()),
    ]
}

fn field<'a>(h: &'a HashMap<String, String>, k: &str) -> &'a str {
    h.get(k).map(String::as_str).unwrap_or("")
}

fn num<T: std::str::FromStr + Default>(h: &HashMap<String, String>, k: &str) -> T {
    field(h, k).parse().unwrap_or_default()
}

fn meta_from(key: &str, h: &HashMap<String, String>) -> StoreResult<CampaignMeta> {
    let corrupt = |reason: String| StoreError::Corrupt {
        key: key.to_string(),
        reason,
    };
    Ok(CampaignMeta {
        id: field(h, "id")
            .parse()
            .map_err(|e| corrupt(format!("id: {e}")))?,
        name: field(h, "name").to_string(),
        state: field(h, "state").parse().map_err(corrupt)?,
        created_ms: num(h, "created_ms"),
        finished_ms: num(h, "finished_ms"),
        task_count: num(h, "task_count"),
        spec_digest: field(h, "spec_digest").to_string(),
        workflow_format: field(h, "workflow_format").to_string(),
        workflow_source: field(h, "workflow_source").to_string(),
        options_json: field(h, "options_json").to_string(),
    })
}

fn pilot_fields(r: &PilotRecord) -> Vec<(&'static str, String)> {
    vec![
        ("id", r.id.to_string()),
        ("state", r.state.as_str().to_string()),
        ("resource", r.resource.clone()),
        ("job_id", r.job_id.clone()),
        ("host", r.host.clone()),
        ("nodes", r.nodes.to_string()),
        ("cores", r.cores.to_string()),
        ("gpus", r.gpus.to_string()),
        ("mem_mb", r.mem_mb.to_string()),
        ("walltime_end_ms", r.walltime_end_ms.to_string()),
        ("agent_pid", r.agent_pid.to_string()),
        ("log_path", r.log_path.clone()),
        ("version", r.version.clone()),
        ("registered_ms", r.registered_ms.to_string()),
        ("reason", r.reason.clone()),
        ("pool", r.pool.clone()),
    ]
}

/// The fields `put_pilot` writes: all of them, but a `submitted_ms` of 0 is left out so the
/// recorded submission time survives the agent's registration.
fn pilot_put_fields(r: &PilotRecord) -> Vec<(&'static str, String)> {
    let mut f = pilot_fields(r);
    if r.submitted_ms > 0 {
        f.push(("submitted_ms", r.submitted_ms.to_string()));
    }
    f
}

fn pilot_from(
    key: &str,
    h: &HashMap<String, String>,
) -> StoreResult<(PilotRecord, PilotLoad, u64)> {
    let corrupt = |reason: String| StoreError::Corrupt {
        key: key.to_string(),
        reason,
    };
    let rec = PilotRecord {
        id: field(h, "id")
            .parse()
            .map_err(|e| corrupt(format!("id: {e}")))?,
        state: field(h, "state").parse().map_err(corrupt)?,
        resource: field(h, "resource").to_string(),
        job_id: field(h, "job_id").to_string(),
        host: field(h, "host").to_string(),
        nodes: num(h, "nodes"),
        cores: num(h, "cores"),
        gpus: num(h, "gpus"),
        mem_mb: num(h, "mem_mb"),
        walltime_end_ms: num(h, "walltime_end_ms"),
        agent_pid: num(h, "agent_pid"),
        log_path: field(h, "log_path").to_string(),
        version: field(h, "version").to_string(),
        registered_ms: num(h, "registered_ms"),
        submitted_ms: num(h, "submitted_ms"),
        reason: field(h, "reason").to_string(),
        pool: field(h, "pool").to_string(),
    };
    let load = PilotLoad {
        busy_cores: num(h, "busy_cores"),
        running: num(h, "running"),
        queued: num(h, "queued"),
    };
    Ok((rec, load, num(h, "beat_ms")))
}

fn value_str(v: &Value) -> String {
    redis::from_redis_value::<String>(v).unwrap_or_default()
}

fn parse_event(id: String, map: &HashMap<String, Value>) -> Option<Event> {
    let get = |k: &str| map.get(k).map(value_str).unwrap_or_default();
    let kind = match get("k").as_str() {
        "t" => EventKind::Task {
            task: get("t").parse().ok()?,
            state: TaskState::from_code(get("s").parse().ok()?)?,
            attempt: get("a").parse().unwrap_or(0),
            pilot: get("p").parse().ok(),
            exit_code: get("x").parse().ok(),
            reason: get("r"),
        },
        "p" => EventKind::Pilot {
            pilot: get("p").parse().ok()?,
            state: get("s").parse().ok()?,
            reason: get("r"),
        },
        _ => return None,
    };
    Some(Event { id, kind })
}

fn pilot_wait_fields(w: &PilotWait) -> [(&'static str, String); 9] {
    [
        ("resource", w.resource.clone()),
        ("queue", w.queue.clone()),
        ("nodes", w.nodes.to_string()),
        ("walltime_s", w.walltime_s.to_string()),
        ("submitted_ms", w.submitted_ms.to_string()),
        ("started_ms", w.started_ms.to_string()),
        ("campaign", w.campaign.to_string()),
        ("pilot", w.pilot.to_string()),
        ("job_id", w.job_id.clone()),
    ]
}

fn parse_pilot_wait(map: &HashMap<String, Value>) -> Option<PilotWait> {
    let get = |k: &str| map.get(k).map(value_str);
    Some(PilotWait {
        resource: get("resource").filter(|r| !r.is_empty())?,
        queue: get("queue").unwrap_or_default(),
        nodes: get("nodes")?.parse().ok()?,
        walltime_s: get("walltime_s")?.parse().ok()?,
        submitted_ms: get("submitted_ms")?.parse().ok()?,
        started_ms: get("started_ms")?.parse().ok()?,
        campaign: get("campaign")?.parse().ok()?,
        pilot: get("pilot")?.parse().ok()?,
        job_id: get("job_id").unwrap_or_default(),
    })
}

fn parse_stream_reply(reply: Option<redis::streams::StreamReadReply>) -> Vec<Event> {
    let mut out = Vec::new();
    for key in reply.map(|r| r.keys).unwrap_or_default() {
        for entry in key.ids {
            match parse_event(entry.id.clone(), &entry.map) {
                Some(e) => out.push(e),
                None => tracing::warn!(id = %entry.id, "skipping malformed event entry"),
            }
        }
    }
    out
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
