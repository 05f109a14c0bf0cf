//! The planner as `emanager plan` and `emanager run` use it: a parsed workflow, the catalog
//! and what was observed of the resources (bundle snapshot, our pilots' recorded waits) in;
//! a [`Plan`] out, with errors that name the task and
//! the file; and a planned pilot as the [`PilotRequest`] the pilot manager launches. Pure.

use super::offers::{offers_from, Observations, Offers};
use super::{plan, Plan, PlanError, PlannedPilot, Strategy, WorkflowSummary};
use crate::campaign::PilotRequest;
use crate::workflow::{check_fits, NodeShape, Workflow};
use emanager_shared::catalog::{AccessKind, Catalog, CatalogError};
use std::fmt;
use std::str::FromStr;

/// The strategies a user picks by name (`--strategy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StrategyName {
    Aimes,
    Ttc,
    Budget,
}

impl StrategyName {
    pub const ALL: [StrategyName; 3] =
        [StrategyName::Aimes, StrategyName::Ttc, StrategyName::Budget];

    pub fn as_str(self) -> &'static str {
        match self {
            StrategyName::Aimes => "aimes",
            StrategyName::Ttc => "ttc",
            StrategyName::Budget => "budget",
        }
    }

    /// The planner's strategy; `budget` needs a cap, the others ignore it.
    pub fn strategy(self, budget: Option<Budget>) -> Result<Strategy, PlanPilotsError> {
        Ok(match self {
            StrategyName::Aimes => Strategy::Aimes { late_binding: true },
            StrategyName::Ttc => Strategy::Ttc,
            StrategyName::Budget => {
                let b = budget.ok_or(PlanPilotsError::BudgetMissing)?;
                Strategy::Budget {
                    max_core_hours: b.core_hours,
                    max_cost: b.cost,
                }
            }
        })
    }
}

/// A cap on what a plan may request: core-hours, cost (core-hours x the resource's
/// `cost_per_core_hour`), or both.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Budget {
    pub core_hours: Option<f64>,
    pub cost: Option<f64>,
}

impl FromStr for Budget {
    type Err = String;

    /// `5000` or `core-hours=5000`, `cost=1200`, or both: `core-hours=5000,cost=1200`.
    fn from_str(s: &str) -> Result<Budget, String> {
        let usage = || {
            format!(
                "`{s}` is not a budget: give core-hours (`5000` or `core-hours=5000`), a cost (`cost=1200`), or both (`core-hours=5000,cost=1200`)"
            )
        };
        let positive = |v: &str| {
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x > 0.0)
                .ok_or_else(usage)
        };
        let mut b = Budget::default();
        for part in s.split(',') {
            let (key, value) = part.split_once('=').unwrap_or(("core-hours", part));
            let slot = match key.trim() {
                "core-hours" => &mut b.core_hours,
                "cost" => &mut b.cost,
                _ => return Err(usage()),
            };
            if slot.replace(positive(value)?).is_some() {
                return Err(usage());
            }
        }
        Ok(b)
    }
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(h) = self.core_hours {
            parts.push(format!("{h} core-hours"));
        }
        if let Some(c) = self.cost {
            parts.push(format!("cost {c}"));
        }
        f.write_str(&parts.join(" and "))
    }
}

/// Why no plan was made; each message names the task or resource and the fix.
#[derive(Debug, thiserror::Error)]
pub enum PlanPilotsError {
    #[error("{0}")]
    Catalog(#[from] CatalogError),
    #[error(
        "the `budget` strategy needs a cap: --budget CORE_HOURS, --budget cost=AMOUNT, or both"
    )]
    BudgetMissing,
    /// Tasks larger than every selected resource's nodes, one message per task entry, each
    /// at the field that is too large (`wf.toml:12:9: task `sim` asks for ...`).
    #[error("{}\nnothing fits: lower these requests or plan on resources with larger nodes", .0.join("\n"))]
    TasksDoNotFit(Vec<String>),
    /// The planner's error (`kind`) explained for the user.
    #[error("{message}")]
    Plan { message: String, kind: PlanError },
}

/// A workflow and the resources it may use, summarised and mapped once; plan it with as many
/// strategies as wanted.
pub struct Planning<'a> {
    workflow: &'a Workflow,
    pub summary: WorkflowSummary,
    pub offers: Offers,
    /// What the user should know about the inputs (tasks without estimates, and the offers'
    /// notes: resources without a snapshot, stale probes).
    pub notes: Vec<String>,
}

impl<'a> Planning<'a> {
    /// Summarises `workflow` and maps the catalog resources named in `resources` (all when
    /// empty) with what was `observed` of them. A task larger than every such resource's
    /// nodes is an error naming it and its field in the file.
    pub fn new(
        workflow: &'a Workflow,
        catalog: &Catalog,
        resources: &[String],
        observed: Observations,
    ) -> Result<Planning<'a>, PlanPilotsError> {
        let offers = offers_from(catalog, resources, observed)?;
        let shapes: Vec<NodeShape> = catalog
            .resources()
            .filter(|r| offers.offers.iter().any(|o| o.name == r.name))
            .map(|r| NodeShape {
                resource: r.name.clone(),
                cores: r.cores_per_node,
                gpus: r.gpus_per_node,
                mem_mb: r.memory_per_node_gb.map_or(0, |gb| u64::from(gb) * 1024),
                nodes: r
                    .queues
                    .iter()
                    .map(|q| q.max_nodes.min(r.nodes))
                    .max()
                    .unwrap_or(r.nodes),
            })
            .collect();
        let misfits = check_fits(workflow, &shapes);
        if !misfits.is_empty() {
            return Err(PlanPilotsError::TasksDoNotFit(
                misfits
                    .iter()
                    .map(|e| format!("{}: {}", e.location, e.message))
                    .collect(),
            ));
        }
        let summary = WorkflowSummary::from_workflow(workflow).map_err(|e| explain(workflow, e))?;
        let mut notes = Vec::new();
        let unestimated = summary.tasks.iter().filter(|t| t.est_s <= 0.0).count();
        if unestimated > 0 {
            notes.push(format!(
                "tasks without est_duration_s: {unestimated} of {}, planned as 0 s; give estimates for a useful plan",
                summary.task_count
            ));
        }
        notes.extend(offers.notes.iter().cloned());
        Ok(Planning {
            workflow,
            summary,
            offers,
            notes,
        })
    }

    /// The plan of `strategy`.
    pub fn plan(&self, strategy: Strategy) -> Result<Plan, PlanPilotsError> {
        plan(strategy, &self.summary, &self.offers.offers).map_err(|e| explain(self.workflow, e))
    }
}

/// Plans `workflow` over every resource of `catalog`, with the loads and waits `observed`
/// where it has them (see [`super::offers`]). What `emanager run` calls when no `--pilot`
/// is given; turn the pilots into requests with [`pilot_requests`].
pub fn plan_pilots(
    workflow: &Workflow,
    catalog: &Catalog,
    observed: Observations,
    strategy: StrategyName,
    budget: Option<Budget>,
) -> Result<Plan, PlanPilotsError> {
    let strategy = strategy.strategy(budget)?;
    Planning::new(workflow, catalog, &[], observed)?.plan(strategy)
}

/// The pilot manager's request for a planned pilot: cores and GPUs are the whole pilot's
/// (nodes x per node); a `local` resource gets no queue and no walltime limit (the pilot
/// manager stops it when the work is done).
pub fn pilot_request(
    pilot: &PlannedPilot,
    catalog: &Catalog,
) -> Result<PilotRequest, CatalogError> {
    let entry = catalog.get(&pilot.resource)?;
    let batch = entry.access != AccessKind::Local;
    Ok(PilotRequest {
        resource: entry.name.clone(),
        cores: pilot.nodes * entry.cores_per_node,
        nodes: pilot.nodes,
        queue: entry
            .queues
            .iter()
            .any(|q| q.name == pilot.queue)
            .then(|| pilot.queue.clone()),
        gpus: pilot.nodes * entry.gpus_per_node,
        mem_mb: 0,
        walltime_s: batch.then(|| pilot.walltime_s.ceil() as u64),
        reservation: None,
    })
}

/// Every pilot of `plan` as a request, in plan order.
pub fn pilot_requests(plan: &Plan, catalog: &Catalog) -> Result<Vec<PilotRequest>, CatalogError> {
    plan.pilots
        .iter()
        .map(|p| pilot_request(p, catalog))
        .collect()
}

/// `task 3` becomes the task's name and where its entry is in the file, with the fix.
fn explain(wf: &Workflow, e: PlanError) -> PlanPilotsError {
    let task = |i: usize| {
        let Some(t) = wf.tasks.get(i) else {
            return format!("task {i}");
        };
        match wf.entries.get(t.entry) {
            Some(entry) => format!("{}: task `{}`", entry.location, t.spec.name),
            None => format!("task `{}`", t.spec.name),
        }
    };
    let message = match &e {
        PlanError::TaskFitsNowhere { task: i, reasons } => format!(
            "{} fits on no resource: {reasons}; lower its request or estimate, or plan on a resource that can run it",
            task(*i)
        ),
        PlanError::Cycle { task: i } => format!(
            "{}: the dependencies form a cycle through it; `emanager validate` spells it out",
            task(*i)
        ),
        PlanError::NoTasks => format!("workflow `{}` has no tasks: nothing to plan", wf.name),
        PlanError::NoResources => {
            "no resources to plan on: the catalog lists none (see docs/resources.md)".to_string()
        }
        PlanError::OverBudget { .. } | PlanError::NoFinishingPlanInBudget { .. } => {
            format!("{e}; raise --budget, or plan with --strategy ttc to see what the work needs")
        }
        PlanError::UnknownQueue { .. } => format!("{e}; fix `default_queue` in the catalog"),
    };
    PlanPilotsError::Plan { message, kind: e }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CATALOG: &str = r#"
[resources.cluster]
access = "slurm"
nodes = 10
cores_per_node = 32
gpus_per_node = 2
default_queue = "batch"
[[resources.cluster.queues]]
name = "batch"
max_walltime = "02:00:00"
max_nodes = 10

[resources.here]
access = "local"
nodes = 1
cores_per_node = 4
"#;

    fn catalog() -> Catalog {
        Catalog::parse(CATALOG).unwrap()
    }

    fn workflow(toml: &str) -> Workflow {
        crate::workflow::parse_str(toml, crate::workflow::Format::Toml, "wf.toml").unwrap()
    }

    const BAG: &str = r#"
name = "bag"
[[tasks]]
name = "t-{index}"
count = 64
command = ["true"]
cores = 8
est_duration_s = 600
"#;

    #[test]
    fn plan_pilots_plans_over_the_catalog() {
        let wf = workflow(BAG);
        let p = plan_pilots(
            &wf,
            &catalog(),
            Observations::default(),
            StrategyName::Ttc,
            None,
        )
        .unwrap();
        assert!(!p.pilots.is_empty());
        assert!(p.predicted_ttc_s.is_finite() && p.predicted_ttc_s >= 600.0);
        // The same through Planning, with the notes.
        let planning = Planning::new(&wf, &catalog(), &[], Observations::default()).unwrap();
        assert_eq!(planning.summary.task_count, 64);
        assert!(planning
            .notes
            .iter()
            .any(|n| n.starts_with("no bundle snapshot for cluster")));
        assert_eq!(planning.plan(Strategy::Ttc).unwrap(), p);
    }

    #[test]
    fn a_batch_pilot_becomes_a_request_for_its_whole_allocation() {
        let pilot = PlannedPilot {
            resource: "cluster".into(),
            queue: "batch".into(),
            nodes: 3,
            walltime_s: 3599.2,
            predicted_wait_s: 60.0,
            why: String::new(),
        };
        let r = pilot_request(&pilot, &catalog()).unwrap();
        assert_eq!(
            r,
            PilotRequest {
                resource: "cluster".into(),
                cores: 96,
                nodes: 3,
                queue: Some("batch".into()),
                gpus: 6,
                mem_mb: 0,
                walltime_s: Some(3600),
                reservation: None,
            }
        );
    }

    #[test]
    fn a_local_pilot_has_no_queue_and_no_walltime() {
        let pilot = PlannedPilot {
            resource: "here".into(),
            queue: "local".into(),
            nodes: 1,
            walltime_s: 900.0,
            predicted_wait_s: 0.0,
            why: String::new(),
        };
        let r = pilot_request(&pilot, &catalog()).unwrap();
        assert_eq!((r.cores, r.queue, r.walltime_s), (4, None, None));
    }

    #[test]
    fn budget_strategy_needs_a_cap() {
        let wf = workflow(BAG);
        let e = plan_pilots(
            &wf,
            &catalog(),
            Observations::default(),
            StrategyName::Budget,
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("--budget CORE_HOURS"), "{e}");
        let capped = Budget {
            core_hours: Some(1000.0),
            cost: None,
        };
        let p = plan_pilots(
            &wf,
            &catalog(),
            Observations::default(),
            StrategyName::Budget,
            Some(capped),
        )
        .unwrap();
        assert!(p.core_hours_requested <= 1000.0);
    }

    #[test]
    fn budgets_parse_core_hours_cost_or_both() {
        let b = |s: &str| s.parse::<Budget>();
        assert_eq!(b("5000").unwrap().core_hours, Some(5000.0));
        assert_eq!(b("core-hours=12.5").unwrap().core_hours, Some(12.5));
        assert_eq!(
            b("core-hours=5000,cost=1200").unwrap(),
            Budget {
                core_hours: Some(5000.0),
                cost: Some(1200.0)
            }
        );
        for bad in ["", "-1", "cost=", "hours=3", "1,2", "nan"] {
            let e = b(bad).unwrap_err();
            assert!(e.contains("is not a budget"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_task_larger_than_every_node_is_named_at_its_field() {
        let wf = workflow(
            r#"
name = "big"
[[tasks]]
name = "huge"
command = ["true"]
cores = 64
"#,
        );
        let Err(e) = Planning::new(&wf, &catalog(), &[], Observations::default()) else {
            panic!("planned a 64-core task on 32-core nodes");
        };
        let msg = e.to_string();
        assert!(
            msg.starts_with("wf.toml:6:9: task `huge` asks for 64 cores"),
            "{msg}"
        );
        assert!(msg.contains("lower these requests"), "{msg}");
    }

    #[test]
    fn a_task_too_long_for_every_queue_is_named_with_its_place() {
        let wf = workflow(
            r#"
name = "long"
[[tasks]]
name = "ok"
command = ["true"]
est_duration_s = 10
[[tasks]]
name = "forever"
command = ["true"]
est_duration_s = 1e9
"#,
        );
        let e = plan_pilots(
            &wf,
            &catalog(),
            Observations::default(),
            StrategyName::Ttc,
            None,
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("wf.toml:7:1: task `forever` fits on no resource"),
            "{msg}"
        );
    }
}
