//! `emanager status`, `cancel`, `list`, `report`, `validate`: commands that read (or, for
//! cancel, flag) a campaign in Redis, and one that reads only a file.

use super::output::{print_workflow_errors, table};
use super::{exit, CliError, CliResult, Tag};
use crate::campaign;
use crate::config::{Config, GlobalArgs};
use crate::driver::Counts;
use crate::progress::{format_duration, rate_and_eta};
use crate::services::Services;
use emanager_shared::model::CampaignMeta;
use emanager_shared::store::{PilotView, StateStore};
use emanager_shared::{now_ms, CampaignId, CampaignState, TaskId, TaskRecord, TaskState};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// Show a campaign's progress: tasks per state, pilots and their load, throughput, ETA.
/// Without a campaign, the campaigns that are running.
///
/// Example:
///   emanager status 6f1c0a4e-2d3b-4c5d-8e9f-0a1b2c3d4e5f --json
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct StatusArgs {
    pub campaign: Option<CampaignId>,
}

/// Cancel a campaign: its manager cancels every unfinished task and stops the pilots.
///
/// Example:
///   emanager cancel 6f1c0a4e-2d3b-4c5d-8e9f-0a1b2c3d4e5f
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct CancelArgs {
    pub campaign: CampaignId,
}

/// List the campaigns known to the Redis.
///
/// Example:
///   emanager list --redis-url redis://127.0.0.1:6379/
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct ListArgs {}

/// Per-task table of a campaign: state, attempt, pilot, exit code, start, end, duration.
/// With --vs-plan (a campaign whose pilots the planner chose): the predicted time to
/// completion and queue waits next to the achieved ones.
///
/// Examples:
///   emanager report 6f1c0a4e-2d3b-4c5d-8e9f-0a1b2c3d4e5f --json > report.json
///   emanager report 6f1c0a4e-2d3b-4c5d-8e9f-0a1b2c3d4e5f --vs-plan
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct ReportArgs {
    pub campaign: CampaignId,
    /// Compare the plan's predictions (time to completion, queue waits, core-hours) with
    /// what happened, instead of the per-task table.
    #[arg(long)]
    pub vs_plan: bool,
}

/// Check a workflow file and print every problem found (nothing is submitted). With a
/// resource catalog, also check that every task fits some resource's nodes.
///
/// Examples:
///   emanager validate examples/quickstart.toml
///   emanager validate wf.toml --resources examples/resources.toml
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct ValidateArgs {
    pub workflow: PathBuf,
}

pub(super) async fn store(g: &GlobalArgs) -> Result<std::sync::Arc<dyn StateStore>, CliError> {
    let cfg = Config::for_reads(g).input()?;
    Services::store_only(&cfg).await.infra()
}

async fn meta_of(s: &dyn StateStore, c: &CampaignId) -> Result<CampaignMeta, CliError> {
    s.campaign(c).await.infra()?.ok_or_else(|| CliError {
        code: exit::INPUT,
        error: anyhow::anyhow!(
            "no campaign {c} in this Redis; `emanager list` shows the known ones"
        ),
    })
}

/// Counts per state from task records.
pub fn count_records(records: &[(TaskId, TaskRecord)]) -> Counts {
    let mut c = Counts {
        total: records.len() as u64,
        ..Default::default()
    };
    for (_, r) in records {
        match r.state() {
            TaskState::New | TaskState::Waiting => c.waiting += 1,
            TaskState::Ready => c.ready += 1,
            TaskState::Scheduled | TaskState::AgentQueued => c.scheduled += 1,
            TaskState::Executing => c.executing += 1,
            TaskState::Done => c.done += 1,
            TaskState::Failed => c.failed += 1,
            TaskState::Canceled => c.canceled += 1,
        }
    }
    c
}

fn pilot_json(v: &PilotView) -> serde_json::Value {
    serde_json::json!({
        "id": v.record.id.to_string(),
        "state": v.record.state.as_str(),
        "resource": v.record.resource,
        "job_id": v.record.job_id,
        "host": v.record.host,
        "nodes": v.record.nodes,
        "cores": v.record.cores,
        "busy_cores": v.load.busy_cores,
        "running": v.load.running,
        "queued": v.load.queued,
        "alive": v.alive,
        "heartbeat_age_ms": v.heartbeat_age_ms,
        "log": v.record.log_path,
        "reason": v.record.reason,
    })
}

pub async fn status(g: &GlobalArgs, a: StatusArgs) -> CliResult {
    let s = store(g).await?;
    let Some(c) = a.campaign else {
        return list_campaigns(s.as_ref(), g, true).await;
    };
    let meta = meta_of(s.as_ref(), &c).await?;
    if g.quiet && !g.json {
        println!("{}", meta.state);
        return Ok(exit::OK);
    }
    let records = s.task_records(&c).await.infra()?;
    let counts = count_records(&records);
    let pilots = s.pilots(&c).await.infra()?;
    let end = if meta.finished_ms > 0 {
        meta.finished_ms
    } else {
        now_ms()
    };
    let elapsed = Duration::from_millis(end.saturating_sub(meta.created_ms));
    let (rate, eta) = rate_and_eta(&counts, elapsed);
    let decisions = s.decisions(&c).await.infra()?;
    if g.json {
        println!(
            "{}",
            serde_json::json!({
                "decisions": super::output::decisions_json(&decisions),
                "campaign": c.to_string(),
                "name": meta.name,
                "state": meta.state.as_str(),
                "created_ms": meta.created_ms,
                "finished_ms": meta.finished_ms,
                "elapsed_s": elapsed.as_secs_f64(),
                "counts": counts,
                "throughput_tasks_per_s": rate,
                "eta_s": eta.map(|d| d.as_secs_f64()),
                "pilots": pilots.iter().map(pilot_json).collect::<Vec<_>>(),
            })
        );
        return Ok(exit::OK);
    }
    println!("campaign {c} · {} · {}", meta.name, meta.state);
    println!(
        "tasks {}: waiting {} ready {} scheduled {} running {} done {} failed {} canceled {}",
        counts.total,
        counts.waiting,
        counts.ready,
        counts.scheduled,
        counts.executing,
        counts.done,
        counts.failed,
        counts.canceled
    );
    println!(
        "elapsed {} · {:.1} tasks/s · ETA {}",
        format_duration(elapsed),
        rate,
        if meta.state.is_final() {
            "-".to_string()
        } else {
            eta.map(format_duration).unwrap_or_else(|| "?".into())
        }
    );
    if !pilots.is_empty() {
        let rows: Vec<Vec<String>> = pilots
            .iter()
            .map(|v| {
                vec![
                    v.record.id.short(),
                    v.record.state.to_string(),
                    if v.record.job_id.is_empty() {
                        v.record.resource.clone()
                    } else {
                        format!("{} job {}", v.record.resource, v.record.job_id)
                    },
                    // An ended pilot's last load and beat mean nothing any more.
                    if v.record.state.is_final() {
                        format!("-/{}", v.record.cores)
                    } else {
                        format!("{}/{}", v.load.busy_cores, v.record.cores)
                    },
                    if v.record.state.is_final() {
                        "-".into()
                    } else {
                        v.load.running.to_string()
                    },
                    match v.heartbeat_age_ms {
                        Some(a) if !v.record.state.is_final() => {
                            format!("{:.1}s", a as f64 / 1000.0)
                        }
                        _ => "-".into(),
                    },
                    v.record.log_path.clone(),
                ]
            })
            .collect();
        println!(
            "{}",
            table(
                &[
                    "PILOT",
                    "STATE",
                    "RESOURCE",
                    "BUSY/CORES",
                    "RUNNING",
                    "BEAT",
                    "LOG"
                ],
                &rows
            )
        );
    }
    // The manager's latest decisions about pilots, and why.
    const SHOWN: usize = 8;
    if !decisions.is_empty() {
        println!("decisions (latest {}):", SHOWN.min(decisions.len()));
        for (at, text) in &decisions[decisions.len().saturating_sub(SHOWN)..] {
            let ago = Duration::from_millis(now_ms().saturating_sub(*at));
            println!("  {} ago  {text}", format_duration(ago));
        }
    }
    Ok(exit::OK)
}

pub async fn cancel(g: &GlobalArgs, a: CancelArgs) -> CliResult {
    let s = store(g).await?;
    let meta = meta_of(s.as_ref(), &a.campaign).await?;
    let json = |state: CampaignState, changed: bool| serde_json::json!({"campaign": a.campaign.to_string(), "state": state.as_str(), "changed": changed});
    if meta.state.is_final() {
        if g.json {
            println!("{}", json(meta.state, false));
        } else if !g.quiet {
            eprintln!("campaign {} is already {}", a.campaign, meta.state);
        }
        return Ok(exit::OK);
    }
    s.set_campaign_state(&a.campaign, CampaignState::Canceled)
        .await
        .infra()?;
    if g.json {
        println!("{}", json(CampaignState::Canceled, true));
    } else if !g.quiet {
        println!(
            "campaign {} canceled; its manager cancels the unfinished tasks and stops the pilots",
            a.campaign
        );
    }
    Ok(exit::OK)
}

pub async fn list(g: &GlobalArgs, _a: ListArgs) -> CliResult {
    let s = store(g).await?;
    list_campaigns(s.as_ref(), g, false).await
}

async fn list_campaigns(s: &dyn StateStore, g: &GlobalArgs, running_only: bool) -> CliResult {
    let mut metas = Vec::new();
    for c in s.list_campaigns().await.infra()? {
        if let Some(m) = s.campaign(&c).await.infra()? {
            if !running_only || !m.state.is_final() {
                metas.push(m);
            }
        }
    }
    metas.sort_by_key(|m| m.created_ms);
    if g.json {
        let list: Vec<_> = metas
            .iter()
            .map(|m| {
                serde_json::json!({
                    "campaign": m.id.to_string(),
                    "name": m.name,
                    "state": m.state.as_str(),
                    "tasks": m.task_count,
                    "created_ms": m.created_ms,
                    "finished_ms": m.finished_ms,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(exit::OK);
    }
    if g.quiet {
        for m in &metas {
            println!("{}", m.id);
        }
        return Ok(exit::OK);
    }
    if metas.is_empty() {
        println!(
            "{}",
            if running_only {
                "no running campaigns"
            } else {
                "no campaigns"
            }
        );
        return Ok(exit::OK);
    }
    let now = now_ms();
    let rows: Vec<Vec<String>> = metas
        .iter()
        .map(|m| {
            vec![
                m.id.to_string(),
                m.name.clone(),
                m.state.to_string(),
                m.task_count.to_string(),
                format!(
                    "{} ago",
                    format_duration(Duration::from_millis(now.saturating_sub(m.created_ms)))
                ),
            ]
        })
        .collect();
    println!(
        "{}",
        table(&["CAMPAIGN", "NAME", "STATE", "TASKS", "CREATED"], &rows)
    );
    Ok(exit::OK)
}

fn offset(ms: u64, origin: u64) -> String {
    if ms == 0 {
        "-".into()
    } else {
        format!("+{:.3}s", ms.saturating_sub(origin) as f64 / 1000.0)
    }
}

/// A campaign's meta and, per task of its workflow (in workflow order), its name and record.
async fn report_rows(
    s: &dyn StateStore,
    c: &CampaignId,
) -> Result<(CampaignMeta, Vec<(String, TaskRecord)>), CliError> {
    let (meta, wf, _) = campaign::load(s, c).await.input()?;
    let records: HashMap<TaskId, TaskRecord> =
        s.task_records(c).await.infra()?.into_iter().collect();
    let rows = wf
        .tasks
        .iter()
        .map(|t| {
            let id = t.to_spec(c).id;
            (
                t.spec.name.clone(),
                records.get(&id).cloned().unwrap_or_default(),
            )
        })
        .collect();
    Ok((meta, rows))
}

async fn vs_plan(s: &dyn StateStore, c: &CampaignId, json: bool) -> CliResult {
    let (meta, _, opts) = campaign::load(s, c).await.input()?;
    let Some(plan) = opts.plan else {
        return Err(CliError {
            code: exit::INPUT,
            error: anyhow::anyhow!(
                "campaign {c} was not planned (its pilots came from --pilot, --pilots or a pool): there is no prediction to compare; `emanager run WORKFLOW --resources FILE` without --pilot plans one"
            ),
        });
    };
    let pilots: Vec<_> = s
        .pilots(c)
        .await
        .infra()?
        .into_iter()
        .map(|v| v.record)
        .collect();
    let cmp = super::vs_plan::compare(&plan, &meta, &pilots, now_ms());
    if json {
        println!("{}", serde_json::to_string(&cmp).unwrap_or_default());
    } else {
        print!("{}", super::vs_plan::human(&cmp));
    }
    Ok(exit::OK)
}

fn duration_s(r: &TaskRecord) -> Option<f64> {
    (r.t0 > 0 && r.t1 >= r.t0).then(|| (r.t1 - r.t0) as f64 / 1000.0)
}

fn report_value(
    c: &CampaignId,
    meta: &CampaignMeta,
    rows: &[(String, TaskRecord)],
) -> serde_json::Value {
    let tasks: Vec<_> = rows
        .iter()
        .map(|(name, r)| {
            serde_json::json!({
                "task": name,
                "state": r.state().as_str(),
                "attempt": r.a,
                "failures": r.f,
                "pilot": r.p,
                "exit_code": r.x,
                "scheduled_ms": r.ts,
                "start_ms": r.t0,
                "end_ms": r.t1,
                "duration_s": duration_s(r),
                "reason": r.r,
            })
        })
        .collect();
    serde_json::json!({"campaign": c.to_string(), "name": meta.name, "state": meta.state.as_str(), "tasks": tasks})
}

/// The report of campaign `c` in `store`, exactly as `emanager report --json` prints it
/// (see docs/cli.md). Works on any store, so an embedded campaign can be reported too.
pub async fn report_json(
    store: &dyn StateStore,
    c: &CampaignId,
) -> anyhow::Result<serde_json::Value> {
    let (meta, rows) = report_rows(store, c).await.map_err(|e| e.error)?;
    Ok(report_value(c, &meta, &rows))
}

pub async fn report(g: &GlobalArgs, a: ReportArgs) -> CliResult {
    let s = store(g).await?;
    if a.vs_plan {
        return vs_plan(s.as_ref(), &a.campaign, g.json).await;
    }
    let (meta, rows) = report_rows(s.as_ref(), &a.campaign).await?;
    if g.json {
        println!("{}", report_value(&a.campaign, &meta, &rows));
        return Ok(exit::OK);
    }
    if g.quiet {
        for (name, r) in &rows {
            println!("{name}\t{}", r.state());
        }
        return Ok(exit::OK);
    }
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|(name, r)| {
            vec![
                name.clone(),
                r.state().to_string(),
                r.a.to_string(),
                r.pilot().map(|p| p.short()).unwrap_or_else(|| "-".into()),
                r.x.map(|x| x.to_string()).unwrap_or_else(|| "-".into()),
                offset(r.t0, meta.created_ms),
                offset(r.t1, meta.created_ms),
                duration_s(r)
                    .map(|d| format!("{d:.3}s"))
                    .unwrap_or_else(|| "-".into()),
                r.r.clone(),
            ]
        })
        .collect();
    println!("campaign {} · {} · {}", a.campaign, meta.name, meta.state);
    println!(
        "{}",
        table(
            &["TASK", "STATE", "ATTEMPT", "PILOT", "EXIT", "START", "END", "DURATION", "REASON"],
            &table_rows
        )
    );
    Ok(exit::OK)
}

pub async fn validate(g: &GlobalArgs, a: ValidateArgs) -> CliResult {
    let source = std::fs::read_to_string(&a.workflow)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", a.workflow.display()))
        .input()?;
    let format = crate::workflow::Format::from_path(&a.workflow);
    let cfg = crate::config::Config::resolve(g, None, None).input()?;
    let catalog = cfg.catalog().input()?;
    let parsed = crate::workflow::parse_str(&source, format, &a.workflow.display().to_string())
        .and_then(|wf| {
            // Every task must fit some pilot `run` would start: a node (or nodes, for MPI) of
            // a catalog resource, or without a catalog a local pilot.
            let shapes: Vec<_> = match &catalog {
                Some(c) => c.resources().map(crate::workflow::NodeShape::of).collect(),
                None => vec![super::run::local_pilot_shape(&cfg)],
            };
            let errors = crate::workflow::check_fits(&wf, &shapes);
            if errors.is_empty() {
                Ok(wf)
            } else {
                Err(crate::workflow::WorkflowErrors(errors))
            }
        });
    match parsed {
        Ok(wf) => {
            let cores: u64 = wf.tasks.iter().map(|t| t.spec.cores as u64).sum();
            if g.json {
                println!(
                    "{}",
                    serde_json::json!({"valid": true, "name": wf.name, "tasks": wf.tasks.len(), "total_cores": cores, "errors": []})
                );
            } else if !g.quiet {
                println!(
                    "{}: valid · {} · {} tasks · {} cores in all",
                    a.workflow.display(),
                    wf.name,
                    wf.tasks.len(),
                    cores
                );
            }
            Ok(exit::OK)
        }
        Err(errors) => {
            print_workflow_errors(&errors, g.json);
            if !g.json {
                eprintln!("{} problem(s) found", errors.0.len());
                if catalog.is_none() && errors.0.iter().any(|e| e.message.contains("`local`")) {
                    eprintln!(
                        "(checked against the local pilots `run` starts, {} cores each: `run --cores-per-pilot N` or `cores_per_pilot` in emanager.toml changes that; --resources FILE checks against a catalog's machines)",
                        cfg.cores_per_pilot
                    );
                }
            }
            Ok(exit::INPUT)
        }
    }
}

/// Show what the bundle services know about each resource and queue: nodes free/busy/down,
/// jobs running and queued, limits, probe staleness, pilot queues (merged over every site's
/// snapshot in Redis, the same for the table and --json). A resource whose probe failed, or
/// whose bundle service stopped updating, shows STALE with its age and the error.
///
/// Example:
///   bundle-service --catalog examples/resources.toml --once   # or run it as a service
///   emanager resources --redis-url redis://127.0.0.1:6379/ --json
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct ResourcesArgs {}

pub async fn resources(g: &GlobalArgs, _a: ResourcesArgs) -> CliResult {
    let cfg = Config::for_reads(g).input()?;
    let snapshots = emanager_bundles::read_snapshots(&cfg.redis_url_or_default())
        .await
        .infra()?;
    // One view over the sites: each resource from the freshest good probe; a site whose
    // service stopped updating shows its resources STALE with their age and why. The JSON
    // is one object, with empty lists when no bundle service wrote a snapshot.
    let merged = emanager_bundles::merge(&snapshots);
    if g.json {
        println!("{}", serde_json::to_string(&merged).unwrap_or_default());
    } else if snapshots.is_empty() {
        println!("no bundle snapshots in this Redis; start `bundle-service --catalog resources.toml --redis-url ...` (docs/bundles.md)");
    } else if g.quiet {
        for r in &merged.resources {
            println!("{}", r.name);
        }
    } else {
        print!("{}", emanager_bundles::render_table(&[merged]));
    }
    Ok(exit::OK)
}
