//! `emanager agents`: the pilot agents of one campaign, or of every campaign not finished,
//! and the agents of pools (`pilot-agent --pool NAME`) with the campaigns they serve.

use super::output::table;
use super::read::store;
use super::{exit, CliResult, Tag};
use crate::config::GlobalArgs;
use crate::progress::format_duration;
use emanager_shared::pool::{PoolAgent, PoolName};
use emanager_shared::store::{PilotView, StateStore};
use emanager_shared::{now_ms, CampaignId};
use std::time::Duration;

/// List pilot agents: state, resource, cores, load, heartbeat age, version, host and pid.
/// Without CAMPAIGN, the agents of every campaign that is not finished, then the agents of
/// every pool. With --pool, the agents of that pool and the campaigns each one serves.
///
/// Examples:
///   emanager agents 6f1c0a4e-2d3b-4c5d-8e9f-0a1b2c3d4e5f --redis-url redis://127.0.0.1:6379/
///   emanager agents --json
///   emanager agents --pool site-a
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct AgentsArgs {
    #[arg(conflicts_with = "pool")]
    pub campaign: Option<CampaignId>,
    /// The agents of this pool (`pilot-agent --pool NAME`).
    #[arg(long, value_name = "NAME")]
    pub pool: Option<PoolName>,
    /// Include agents that ended (DONE, FAILED, CANCELED) or stopped beating.
    #[arg(long)]
    pub all: bool,
}

pub async fn agents(g: &GlobalArgs, a: AgentsArgs) -> CliResult {
    let s = store(g).await?;
    if let Some(pool) = &a.pool {
        let rows = pool_agents(s.as_ref(), std::slice::from_ref(pool), a.all).await?;
        if g.json {
            let now = now_ms();
            let list: Vec<_> = rows.iter().map(|(p, a)| pool_json(p, a, now)).collect();
            println!("{}", serde_json::Value::Array(list));
        } else if rows.is_empty() {
            println!("no agents in pool {pool}");
        } else {
            print_pool_agents(&rows);
        }
        return Ok(exit::OK);
    }
    let campaigns = match a.campaign {
        Some(c) => {
            if s.campaign(&c).await.infra()?.is_none() {
                return Err(super::CliError {
                    code: exit::INPUT,
                    error: anyhow::anyhow!(
                        "no campaign {c} in this Redis; `emanager list` shows the known ones"
                    ),
                });
            }
            vec![c]
        }
        None => open_campaigns(s.as_ref()).await?,
    };
    let mut rows: Vec<(CampaignId, PilotView)> = Vec::new();
    for c in campaigns {
        for v in s.pilots(&c).await.infra()? {
            if a.all || !v.record.state.is_final() {
                rows.push((c, v));
            }
        }
    }
    rows.sort_by_key(|(c, v)| (c.to_string(), v.record.registered_ms));
    if g.json {
        let list: Vec<_> = rows.iter().map(|(c, v)| json_of(c, v)).collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(exit::OK);
    }
    if g.quiet {
        for (_, v) in &rows {
            println!("{}", v.record.id);
        }
        return Ok(exit::OK);
    }
    let pools = if a.campaign.is_none() {
        s.list_pools().await.infra()?
    } else {
        Vec::new()
    };
    let in_pools = pool_agents(s.as_ref(), &pools, a.all).await?;
    if !rows.is_empty() {
        print_pilots(&rows);
    }
    if !in_pools.is_empty() {
        if !rows.is_empty() {
            println!();
        }
        print_pool_agents(&in_pools);
    }
    if rows.is_empty() && in_pools.is_empty() {
        println!("no agents");
    }
    Ok(exit::OK)
}

fn print_pilots(rows: &[(CampaignId, PilotView)]) {
    let with_pool = rows.iter().any(|(_, v)| !v.record.pool.is_empty());
    let mut header = vec![
        "CAMPAIGN",
        "PILOT",
        "STATE",
        "RESOURCE",
        "CORES",
        "LOAD",
        "HEARTBEAT",
        "VERSION",
        "HOST",
        "PID",
    ];
    if with_pool {
        header.push("POOL");
    }
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|(c, v)| {
            let r = &v.record;
            let mut row = vec![
                c.short().to_string(),
                r.id.short().to_string(),
                state_of(v),
                r.resource.clone(),
                r.cores.to_string(),
                format!(
                    "{}/{} busy, {} queued",
                    v.load.busy_cores, r.cores, v.load.queued
                ),
                match v.heartbeat_age_ms {
                    Some(ms) => format!("{} ago", format_duration(Duration::from_millis(ms))),
                    None => "-".into(),
                },
                r.version.clone(),
                r.host.clone(),
                if r.agent_pid == 0 {
                    "-".into()
                } else {
                    r.agent_pid.to_string()
                },
            ];
            if with_pool {
                row.push(if r.pool.is_empty() {
                    "-".into()
                } else {
                    r.pool.clone()
                });
            }
            row
        })
        .collect();
    println!("{}", table(&header, &body));
}

/// The agents of `pools` (alive ones unless `all`).
async fn pool_agents(
    s: &dyn StateStore,
    pools: &[PoolName],
    all: bool,
) -> Result<Vec<(PoolName, PoolAgent)>, super::CliError> {
    let now = now_ms();
    let mut rows = Vec::new();
    for p in pools {
        for agent in s.pool_agents(p).await.infra()? {
            if all || agent.alive(now) {
                rows.push((p.clone(), agent));
            }
        }
    }
    Ok(rows)
}

fn print_pool_agents(rows: &[(PoolName, PoolAgent)]) {
    let now = now_ms();
    let header = [
        "POOL",
        "AGENT",
        "STATE",
        "RESOURCE",
        "CORES",
        "LOAD",
        "CAMPAIGNS",
        "HEARTBEAT",
        "VERSION",
        "HOST",
        "PID",
    ];
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|(p, a)| {
            let campaigns: Vec<String> = a
                .lanes
                .iter()
                .map(|l| {
                    format!(
                        "{} (weight {}, {} busy)",
                        l.campaign.short(),
                        l.weight,
                        l.busy_cores
                    )
                })
                .collect();
            vec![
                p.to_string(),
                a.id.short(),
                if a.alive(now) {
                    a.state.clone()
                } else {
                    "LOST".into()
                },
                a.resource.clone(),
                a.cores.to_string(),
                format!("{}/{} busy", a.busy_cores, a.cores),
                if campaigns.is_empty() {
                    "-".into()
                } else {
                    campaigns.join(", ")
                },
                format!(
                    "{} ago",
                    format_duration(Duration::from_millis(now.saturating_sub(a.beat_ms)))
                ),
                a.version.clone(),
                a.host.clone(),
                a.pid.to_string(),
            ]
        })
        .collect();
    println!("{}", table(&header, &body));
}

fn pool_json(p: &PoolName, a: &PoolAgent, now: u64) -> serde_json::Value {
    serde_json::json!({
        "pool": p.to_string(),
        "agent": a.id.to_string(),
        "state": if a.alive(now) { a.state.as_str() } else { "LOST" },
        "alive": a.alive(now),
        "resource": a.resource,
        "job_id": a.job_id,
        "nodes": a.nodes,
        "cores": a.cores,
        "gpus": a.gpus,
        "mem_mb": a.mem_mb,
        "busy_cores": a.busy_cores,
        "campaigns": a.lanes,
        "heartbeat_age_ms": now.saturating_sub(a.beat_ms),
        "version": a.version,
        "host": a.host,
        "pid": a.pid,
        "started_ms": a.started_ms,
        "log_path": a.log_path,
    })
}

/// The state shown: the recorded one, or `lost` when an active agent's heartbeat lapsed.
fn state_of(v: &PilotView) -> String {
    if v.record.state == emanager_shared::PilotState::Active && !v.alive {
        "LOST".into()
    } else {
        v.record.state.as_str().to_string()
    }
}

fn json_of(c: &CampaignId, v: &PilotView) -> serde_json::Value {
    let r = &v.record;
    serde_json::json!({
        "campaign": c.to_string(),
        "pilot": r.id.to_string(),
        "state": state_of(v),
        "alive": v.alive,
        "resource": r.resource,
        "job_id": r.job_id,
        "nodes": r.nodes,
        "cores": r.cores,
        "gpus": r.gpus,
        "busy_cores": v.load.busy_cores,
        "running": v.load.running,
        "queued": v.load.queued,
        "heartbeat_age_ms": v.heartbeat_age_ms,
        "version": r.version,
        "host": r.host,
        "pid": r.agent_pid,
        "registered_ms": r.registered_ms,
        "reason": r.reason,
        "pool": r.pool,
    })
}

async fn open_campaigns(s: &dyn StateStore) -> Result<Vec<CampaignId>, super::CliError> {
    let mut out = Vec::new();
    for c in s.list_campaigns().await.infra()? {
        if let Some(m) = s.campaign(&c).await.infra()? {
            if !m.state.is_final() {
                out.push(c);
            }
        }
    }
    Ok(out)
}
