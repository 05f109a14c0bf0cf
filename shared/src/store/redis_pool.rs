//! The pool registry in Redis. A pool's keys carry the hash tag `{<pool>}`:
//!
//! - `em:pool:{P}:campaigns` hash: campaign id -> weight;
//! - `em:pool:{P}:agents` hash: agent id -> JSON `PoolAgent` (with its heartbeat time);
//! - `em:pools` set: the pool names (for `emanager agents`).

use super::{StoreError, StoreResult};
use crate::ids::{CampaignId, PilotId};
use crate::pool::{PoolAgent, PoolCampaign, PoolName};
use redis::aio::ConnectionManager;
use std::collections::HashMap;

/// The set of pool names.
pub const POOLS_KEY: &str = "em:pools";

fn k_pool_campaigns(p: &PoolName) -> String {
    format!("em:pool:{{{p}}}:campaigns")
}

fn k_pool_agents(p: &PoolName) -> String {
    format!("em:pool:{{{p}}}:agents")
}

fn op_err(op: &'static str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Operation {
        op,
        reason: e.to_string(),
    }
}

pub(super) async fn attach(
    con: &mut ConnectionManager,
    pool: &PoolName,
    c: &CampaignId,
    weight: f64,
) -> StoreResult<()> {
    let () = redis::pipe()
        .cmd("HSET")
        .arg(k_pool_campaigns(pool))
        .arg(c.to_string())
        .arg(weight.to_string())
        .ignore()
        .cmd("SADD")
        .arg(POOLS_KEY)
        .arg(pool.as_str())
        .ignore()
        .query_async(con)
        .await
        .map_err(|e| op_err("attach to pool", e))?;
    Ok(())
}

pub(super) async fn detach(
    con: &mut ConnectionManager,
    pool: &PoolName,
    c: &CampaignId,
) -> StoreResult<()> {
    let _: i64 = redis::cmd("HDEL")
        .arg(k_pool_campaigns(pool))
        .arg(c.to_string())
        .query_async(con)
        .await
        .map_err(|e| op_err("detach from pool", e))?;
    Ok(())
}

pub(super) async fn campaigns(
    con: &mut ConnectionManager,
    pool: &PoolName,
) -> StoreResult<Vec<PoolCampaign>> {
    let h: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(k_pool_campaigns(pool))
        .query_async(con)
        .await
        .map_err(|e| op_err("read pool campaigns", e))?;
    let mut out: Vec<PoolCampaign> = h
        .into_iter()
        .filter_map(|(c, w)| {
            let campaign = c.parse().ok()?;
            let weight = w.parse::<f64>().ok().filter(|w| *w > 0.0)?;
            Some(PoolCampaign { campaign, weight })
        })
        .collect();
    out.sort_by_key(|p| p.campaign);
    Ok(out)
}

pub(super) async fn put_agent(
    con: &mut ConnectionManager,
    pool: &PoolName,
    agent: &PoolAgent,
) -> StoreResult<()> {
    let json = serde_json::to_string(agent).map_err(|e| op_err("encode pool agent", e))?;
    let () = redis::pipe()
        .cmd("HSET")
        .arg(k_pool_agents(pool))
        .arg(agent.id.to_string())
        .arg(json)
        .ignore()
        .cmd("SADD")
        .arg(POOLS_KEY)
        .arg(pool.as_str())
        .ignore()
        .query_async(con)
        .await
        .map_err(|e| op_err("pool agent heartbeat", e))?;
    Ok(())
}

pub(super) async fn remove_agent(
    con: &mut ConnectionManager,
    pool: &PoolName,
    agent: &PilotId,
) -> StoreResult<()> {
    let _: i64 = redis::cmd("HDEL")
        .arg(k_pool_agents(pool))
        .arg(agent.to_string())
        .query_async(con)
        .await
        .map_err(|e| op_err("remove pool agent", e))?;
    Ok(())
}

pub(super) async fn agents(
    con: &mut ConnectionManager,
    pool: &PoolName,
) -> StoreResult<Vec<PoolAgent>> {
    let key = k_pool_agents(pool);
    let h: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(&key)
        .query_async(con)
        .await
        .map_err(|e| op_err("read pool agents", e))?;
    let mut out = Vec::with_capacity(h.len());
    for (id, json) in h {
        match serde_json::from_str::<PoolAgent>(&json) {
            Ok(a) => out.push(a),
            Err(e) => {
                tracing::warn!(%key, agent = %id, error = %e, "skipping an unreadable pool agent entry")
            }
        }
    }
    out.sort_by_key(|a| (a.started_ms, a.id));
    Ok(out)
}

pub(super) async fn list(con: &mut ConnectionManager) -> StoreResult<Vec<PoolName>> {
    let names: Vec<String> = redis::cmd("SMEMBERS")
        .arg(POOLS_KEY)
        .query_async(con)
        .await
        .map_err(|e| op_err("list pools", e))?;
    let mut out: Vec<PoolName> = names.iter().filter_map(|n| n.parse().ok()).collect();
    out.sort();
    Ok(out)
}
