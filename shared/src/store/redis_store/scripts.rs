//! The Lua scripts of the Redis store, generated from the state machines of `state.rs` so a
//! transition is legal in Redis exactly when it is in memory.

use super::*;

/// `local legal = { [from] = {[to]=true, ...}, ... }` from a state machine's table; `key`
/// renders a state as a Lua table key.
pub(super) fn lua_legal_table<S: Copy>(
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

pub(super) fn pilot_transition_script() -> String {
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

pub(super) const LEASE_SCRIPT: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"#;

pub(super) const RELEASE_SCRIPT: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"#;
