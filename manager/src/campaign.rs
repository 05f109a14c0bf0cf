//! A campaign: one run of one workflow, recorded in the state store with everything a
//! restarted manager needs to continue it (`emanager resume`).

use crate::workflow::{self, Format, Workflow};
use anyhow::Context;
use emanager_shared::model::CampaignMeta;
use emanager_shared::pool::PoolName;
use emanager_shared::store::StateStore;
use emanager_shared::{now_ms, CampaignId, CampaignState, TaskRecord, TaskState};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A pilot the campaign asks for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PilotRequest {
    /// `local` (a process on this host) or a catalog resource.
    pub resource: String,
    /// Cores of the pilot (per node for batch pilots: the catalog's cores per node).
    pub cores: u32,
    /// Nodes of a batch pilot.
    #[serde(default = "one")]
    pub nodes: u32,
    /// Queue/partition of a batch pilot (default: the resource's default queue).
    #[serde(default)]
    pub queue: Option<String>,
    #[serde(default)]
    pub gpus: u32,
    #[serde(default)]
    pub mem_mb: u64,
    /// Allocation length; `None` for local pilots without a limit.
    #[serde(default)]
    pub walltime_s: Option<u64>,
    /// Advance reservation of a batch pilot (`--reservation`); `None`: the catalog's (its
    /// queue's, else its resource's), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation: Option<String>,
}

fn one() -> u32 {
    1
}

impl PilotRequest {
    /// Cores of one node of the pilot.
    pub fn node_cores(&self) -> u32 {
        self.cores / self.nodes.max(1)
    }

    /// A pilot process on this host.
    pub fn local(cores: u32) -> Self {
        PilotRequest {
            resource: "local".into(),
            cores,
            nodes: 1,
            queue: None,
            gpus: 0,
            mem_mb: 0,
            walltime_s: None,
            reservation: None,
        }
    }

    /// Parses `RESOURCE:NODES:WALLTIME` (walltime as seconds, `MM:SS` or `HH:MM:SS`), with an
    /// optional `@QUEUE` after the resource, e.g. `frontier@batch:4:02:00:00`.
    pub fn parse_spec(spec: &str) -> Result<(String, Option<String>, u32, u64), String> {
        let usage = || {
            format!(
                "`{spec}` is not RESOURCE[@QUEUE]:NODES:WALLTIME (e.g. localhost-slurm:1:00:10:00)"
            )
        };
        let mut parts = spec.splitn(3, ':');
        let res = parts.next().filter(|s| !s.is_empty()).ok_or_else(usage)?;
        let nodes: u32 = parts
            .next()
            .and_then(|n| n.parse().ok())
            .filter(|n| *n > 0)
            .ok_or_else(usage)?;
        let wall = parts.next().ok_or_else(usage)?;
        let secs = wall
            .split(':')
            .try_fold(0u64, |acc, f| f.parse::<u64>().map(|v| acc * 60 + v))
            .ok()
            .filter(|s| *s > 0 && wall.split(':').count() <= 3)
            .ok_or_else(usage)?;
        let (resource, queue) = match res.split_once('@') {
            Some((r, q)) => (r.to_string(), Some(q.to_string())),
            None => (res.to_string(), None),
        };
        Ok((resource, queue, nodes, secs))
    }

    /// A pilot on this host (a `local` resource), which no batch reservation applies to.
    pub fn is_local(&self) -> bool {
        self.resource == "local" || self.walltime_s.is_none()
    }

    /// Puts the batch pilots of `pilots` (the `--pilot` placements) in the advance
    /// reservation `name` (`--reservation`); pilots on this host stay as they are. A
    /// reservation belongs to one machine, so the batch pilots must all be on one resource;
    /// `Err` says what to do instead.
    pub fn reserve_all(pilots: &mut [PilotRequest], name: &str) -> Result<(), String> {
        emanager_shared::catalog::check_reservation_name(name)
            .map_err(|e| format!("--reservation {e}"))?;
        let mut batch = pilots.iter().filter(|p| !p.is_local());
        let Some(first) = batch.next() else {
            return Err(format!(
                "--reservation {name} puts the batch pilots of --pilot in a reservation: give \
                 --pilot RESOURCE[@QUEUE]:NODES:WALLTIME on a batch resource, or put \
                 `reservation = \"{name}\"` on the resource (or queue) in the catalog for \
                 planned pilots"
            ));
        };
        if let Some(other) = batch.find(|p| p.resource != first.resource) {
            return Err(format!(
                "--reservation {name}: the pilots are on `{}` and `{}`, and a reservation \
                 belongs to one machine; put each one's in the catalog (`reservation = \
                 \"...\"` on the resource or queue) instead",
                first.resource, other.resource
            ));
        }
        for p in pilots.iter_mut().filter(|p| !p.is_local()) {
            p.reservation = Some(name.to_string());
        }
        Ok(())
    }
}

/// How the manager runs a campaign; stored with it so `resume` behaves the same.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CampaignOptions {
    pub pilots: Vec<PilotRequest>,
    /// Work bound to a pilot ahead of its free cores, in seconds of its cores' time.
    pub lookahead_s: f64,
    pub heartbeat_ms: u64,
    pub workdir: PathBuf,
    /// Pilots started to replace failed ones while work remains.
    pub max_pilot_replacements: u32,
    /// A pilot that has not registered after this long is FAILED (batch pilots may wait
    /// in their queue longer: this counts from the start of their job).
    pub pilot_start_timeout_s: u64,
    /// The resource catalog (TOML text) batch pilots are submitted with.
    #[serde(default)]
    pub catalog_toml: Option<String>,
    /// The folder the catalog was read from (its relative template paths start there).
    #[serde(default)]
    pub catalog_dir: Option<PathBuf>,
    /// The plan the pilots came from, when the planner chose them: what adaptive execution
    /// steers by and `report --vs-plan` compares with.
    #[serde(default)]
    pub plan: Option<PlanRecord>,
    /// The pool whose agents serve the campaign (`--pool`), besides its own pilots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<PoolAttachment>,
    /// Pilot agents this manager starts log JSON lines (the manager's `--log-format json`).
    #[serde(default)]
    pub agent_log_json: bool,
}

/// What a campaign keeps of its plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanRecord {
    pub strategy: String,
    pub predicted_ttc_s: f64,
    pub core_hours_requested: f64,
    pub pilots: Vec<PlannedPilotRecord>,
    /// Seconds between the manager's checks of the campaign against the plan.
    pub replan_interval_s: u64,
    /// The most pilots adaptive execution may run at once.
    pub max_pilots: u32,
}

/// One planned pilot and its predicted queue wait.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlannedPilotRecord {
    pub resource: String,
    pub queue: String,
    pub nodes: u32,
    pub walltime_s: f64,
    pub predicted_wait_s: f64,
    pub why: String,
}

impl PlanRecord {
    /// The record of `plan`, checked every `replan_interval_s`, with room for twice its
    /// pilots (at least two more) when the campaign falls behind.
    pub fn of(plan: &crate::planner::Plan, replan_interval_s: u64) -> PlanRecord {
        let n = plan.pilots.len() as u32;
        PlanRecord {
            strategy: plan.strategy.name().to_string(),
            predicted_ttc_s: plan.predicted_ttc_s,
            core_hours_requested: plan.core_hours_requested,
            pilots: plan
                .pilots
                .iter()
                .map(|p| PlannedPilotRecord {
                    resource: p.resource.clone(),
                    queue: p.queue.clone(),
                    nodes: p.nodes,
                    walltime_s: p.walltime_s,
                    predicted_wait_s: p.predicted_wait_s,
                    why: p.why.clone(),
                })
                .collect(),
            replan_interval_s,
            max_pilots: (2 * n).max(n + 2),
        }
    }

    /// The predicted queue wait of a pilot on `resource` (the planned one's; 0 if none).
    pub fn predicted_wait_s(&self, resource: &str) -> f64 {
        self.pilots
            .iter()
            .find(|p| p.resource == resource)
            .map_or(0.0, |p| p.predicted_wait_s)
    }
}

/// A campaign's place in a pool: the pool, and its weight against the pool's other
/// campaigns (two campaigns with weights 2 and 1 get ~2/3 and ~1/3 of the pool's cores while
/// both have work waiting).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PoolAttachment {
    pub name: PoolName,
    pub weight: f64,
}

impl Default for CampaignOptions {
    fn default() -> Self {
        CampaignOptions {
            pilots: vec![PilotRequest::local(pilot_agent::discovery::local_cores())],
            lookahead_s: 2.0,
            heartbeat_ms: 1000,
            workdir: PathBuf::from("emanager-runs"),
            max_pilot_replacements: 2,
            pilot_start_timeout_s: 60,
            catalog_toml: None,
            catalog_dir: None,
            plan: None,
            pool: None,
            agent_log_json: false,
        }
    }
}

/// A digest of the workflow source (FNV-1a, 64 bit): enough to notice another workflow.
pub fn digest(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Records a new campaign and its tasks (READY, or WAITING for parents).
pub async fn create(
    store: &dyn StateStore,
    id: CampaignId,
    wf: &Workflow,
    source: &str,
    format: Format,
    opts: &CampaignOptions,
) -> anyhow::Result<()> {
    let meta = CampaignMeta {
        id,
        name: wf.name.clone(),
        state: CampaignState::Running,
        created_ms: now_ms(),
        finished_ms: 0,
        task_count: wf.tasks.len() as u64,
        spec_digest: digest(source),
        workflow_format: format.as_str().to_string(),
        workflow_source: source.to_string(),
        options_json: serde_json::to_string(opts)?,
    };
    if !store.create_campaign(&meta).await? {
        anyhow::bail!("campaign {id} already exists");
    }
    let dag = crate::workflow::dag::Dag::new(wf);
    let records: Vec<_> = wf
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let state = if dag.is_waiting(i) {
                TaskState::Waiting
            } else {
                TaskState::Ready
            };
            (t.to_spec(&id).id, TaskRecord::new(state))
        })
        .collect();
    store.insert_tasks(&id, &records).await?;
    Ok(())
}

/// The workflow and options of a recorded campaign, for `resume`.
pub async fn load(
    store: &dyn StateStore,
    id: &CampaignId,
) -> anyhow::Result<(CampaignMeta, Workflow, CampaignOptions)> {
    let meta = store
        .campaign(id)
        .await?
        .with_context(|| format!("campaign {id} is not in the state store"))?;
    let format = Format::parse_name(&meta.workflow_format).unwrap_or(Format::Toml);
    let wf = workflow::parse_str(&meta.workflow_source, format, &format!("campaign {id}"))
        .map_err(|e| {
            anyhow::anyhow!("the stored workflow of campaign {id} no longer parses: {e}")
        })?;
    let opts: CampaignOptions = serde_json::from_str(&meta.options_json)
        .with_context(|| format!("campaign {id} has unreadable options"))?;
    Ok((meta, wf, opts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pilot_specs_parse_with_walltimes_in_every_form() {
        assert_eq!(
            PilotRequest::parse_spec("localhost-slurm:1:00:10:00"),
            Ok(("localhost-slurm".into(), None, 1, 600))
        );
        assert_eq!(
            PilotRequest::parse_spec("frontier@batch:4:3600"),
            Ok(("frontier".into(), Some("batch".into()), 4, 3600))
        );
        assert_eq!(
            PilotRequest::parse_spec("x:2:01:30"),
            Ok(("x".into(), None, 2, 90))
        );
        for bad in ["x", "x:0:10", "x:1:", ":1:10", "x:1:1:2:3:4", "x:a:10"] {
            let e = PilotRequest::parse_spec(bad).unwrap_err();
            assert!(e.contains("RESOURCE[@QUEUE]:NODES:WALLTIME"), "{bad}: {e}");
        }
    }

    fn batch(resource: &str) -> PilotRequest {
        PilotRequest {
            resource: resource.into(),
            walltime_s: Some(600),
            ..PilotRequest::local(2)
        }
    }

    #[test]
    fn a_reservation_goes_on_every_batch_pilot_of_one_resource_and_not_on_local_ones() {
        let mut pilots = vec![batch("frontier"), PilotRequest::local(2), batch("frontier")];
        PilotRequest::reserve_all(&mut pilots, "hackathon").unwrap();
        let got: Vec<Option<&str>> = pilots.iter().map(|p| p.reservation.as_deref()).collect();
        assert_eq!(got, [Some("hackathon"), None, Some("hackathon")]);
    }

    #[test]
    fn a_reservation_is_refused_without_batch_pilots_on_several_machines_and_for_bad_names() {
        for (mut pilots, name, want) in [
            (vec![], "r", "give --pilot RESOURCE[@QUEUE]:NODES:WALLTIME"),
            (
                vec![PilotRequest::local(2)],
                "r",
                "on a batch resource, or put `reservation = \"r\"` on the resource",
            ),
            (
                vec![batch("frontier"), batch("polaris")],
                "r",
                "the pilots are on `frontier` and `polaris`",
            ),
            (
                vec![batch("frontier")],
                "two words",
                "is not a reservation name",
            ),
        ] {
            let e = PilotRequest::reserve_all(&mut pilots, name).unwrap_err();
            assert!(e.contains(want), "{e} lacks {want}");
            assert!(pilots.iter().all(|p| p.reservation.is_none()));
        }
    }

    #[test]
    fn options_without_a_reservation_read_and_write_as_before() {
        let json = r#"{"resource":"frontier","cores":56,"nodes":1,"queue":null,"gpus":0,"mem_mb":0,"walltime_s":600}"#;
        let p: PilotRequest = serde_json::from_str(json).unwrap();
        assert_eq!(p.reservation, None);
        assert_eq!(serde_json::to_string(&p).unwrap(), json);
        let with = PilotRequest {
            reservation: Some("r".into()),
            ..p
        };
        let back: PilotRequest =
            serde_json::from_str(&serde_json::to_string(&with).unwrap()).unwrap();
        assert_eq!(back, with);
    }
}
