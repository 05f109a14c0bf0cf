//! `emanager agents`: the pilot agents of one campaign, or of every campaign not finished.

use super::output::table;
use super::read::store;
use super::{exit, CliResult, Tag};
use crate::config::GlobalArgs;
use crate::progress::format_duration;
use emanager_shared::store::{PilotView, StateStore};
use emanager_shared::CampaignId;
use std::time::Duration;

/// List pilot agents: state, resource, cores, load, heartbeat age, version, host and pid.
/// Without CAMPAIGN, the agents of every campaign that is not finished.
///
/// Examples:
///   emanager agents 6f1c0a4e-2d3b-4c5d-8e9f-0a1b2c3d4e5f --redis-url redis://127.0.0.1:6379/
///   emanager agents --json
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct AgentsArgs {
    pub campaign: Option<CampaignId>,
    /// Include agents that ended (DONE, FAILED, CANCELED).
    #[arg(long)]
    pub all: bool,
}

pub async fn agents(g: &GlobalArgs, a: AgentsArgs) -> CliResult {
    let s = store(g).await?;
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
    if rows.is_empty() {
        println!("no agents");
        return Ok(exit::OK);
    }
    let header = [
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
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|(c, v)| {
            let r = &v.record;
            vec![
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
            ]
        })
        .collect();
    println!("{}", table(&header, &body));
    Ok(exit::OK)
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
