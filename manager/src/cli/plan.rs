//! `emanager plan`: the pilots the planner would submit for a workflow, with predicted queue
//! waits, time to completion and core-hours; `--simulate N` compares the strategies over N
//! simulated runs. Submits nothing.

use super::output::table;
use super::run::{load_workflow, SkeletonRunArgs};
use super::{exit, CliError, CliResult, Tag};
use crate::config::{Config, GlobalArgs};
use crate::planner::offers::queue_summary;
use crate::planner::{
    simulate_runs_with, Budget, Distribution, Observations, Plan, Planning, Runs, SimOptions,
    StrategyName, WaitDraw, WorkflowSummary,
};
use crate::progress::format_duration;
use anyhow::Context;
use emanager_bundles::observations::{read_new_pilot_waits, StreamCursor};
use emanager_bundles::Snapshot;
use emanager_shared::access::timefmt::format_hms;
use emanager_shared::catalog::Catalog;
use emanager_shared::model::PilotWait;
use emanager_shared::store::RedisStore;
use emanager_shared::util::redact_url;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Plan pilots for a workflow (or skeleton) over a resource catalog and print them: per
/// pilot the resource, queue, nodes, walltime, predicted queue wait and why it is there;
/// then the predicted time to completion (TTC), core-hours requested and idle core-hours
/// expected. Submits nothing. With a Redis URL the bundle services' snapshots give idle
/// nodes and queue waits (per queue, pilot size and walltime), moved toward the waits our
/// pilots recorded there; without one, or for a resource they do not cover, the catalog
/// alone with a default wait (the output says so).
///
/// Examples:
///   emanager plan examples/workflows/dag.toml --resources examples/resources.toml --only frontier,perlmutter-cpu
///   emanager plan wf.toml --resources resources.toml --strategy budget --budget 5000 --json
///   emanager plan wf.toml --resources resources.toml --budget core-hours=5000,cost=4000 --simulate 100 --seed 7
///   emanager plan wf.toml --resources resources.toml --simulate 50 --sim-waits frontier=frontier.swf --sim-pilot-failure 0.1
///   emanager plan wf.toml --resources resources.toml --redis-url redis://127.0.0.1:6379/
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct PlanArgs {
    /// Workflow file (TOML or JSON) or skeleton.
    pub workflow: PathBuf,
    #[command(flatten)]
    pub planner: PlannerArgs,
    /// Also simulate each strategy N times (queue waits drawn around each resource's
    /// estimate) and compare their TTC distributions and core-hours side by side.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub simulate: Option<u32>,
    /// With --simulate: replay measured queue waits for RESOURCE instead of drawing them
    /// around its estimate. FILE is an SWF log (`.swf`: its wait field), an XSEDE pilot file
    /// (`Tq:` values) or one wait in seconds a line. Repeat for several resources.
    #[arg(long = "sim-waits", value_name = "RESOURCE=FILE")]
    pub sim_waits: Vec<String>,
    /// With --simulate: the chance that each pilot fails at a random moment of its walltime
    /// (its unfinished tasks go back to be rebound elsewhere).
    #[arg(long = "sim-pilot-failure", value_name = "P", default_value_t = 0.0)]
    pub sim_pilot_failure: f64,
    /// Seed of the simulations (run i uses SEED + i) and of a skeleton's random tasks.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// Multiply a skeleton's task lengths by this factor.
    #[arg(long, value_name = "F", default_value_t = 1.0)]
    pub time_scale: f64,
}

/// How the planner chooses pilots (`emanager plan`, and `emanager run` without `--pilot`).
#[derive(clap::Args, Debug, Default, Clone)]
pub struct PlannerArgs {
    /// How to choose pilots: `ttc` minimises the predicted time to completion (default),
    /// `budget` does so under --budget (default when --budget is given), `aimes` is the AIMES
    /// baseline (one pilot per resource).
    #[arg(long, value_enum)]
    pub strategy: Option<StrategyArg>,
    /// Cap for the `budget` strategy: core-hours (`5000` or `core-hours=5000`), a cost
    /// (`cost=1200`, core-hours x the catalog's cost_per_core_hour), or both, comma-separated.
    #[arg(long, value_name = "CAP")]
    pub budget: Option<Budget>,
    /// Plan on these catalog resources only (comma-separated or repeated; default: all).
    #[arg(long, value_name = "RESOURCE", value_delimiter = ',')]
    pub only: Vec<String>,
}

impl PlannerArgs {
    /// The strategy asked for: `--strategy`, else `budget` with a --budget, else `ttc`.
    pub fn strategy_name(&self) -> StrategyName {
        match (self.strategy, self.budget) {
            (Some(s), _) => s.into(),
            (None, Some(_)) => StrategyName::Budget,
            (None, None) => StrategyName::Ttc,
        }
    }
}

/// `--strategy` values.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StrategyArg {
    Aimes,
    Ttc,
    Budget,
}

impl From<StrategyArg> for StrategyName {
    fn from(s: StrategyArg) -> StrategyName {
        match s {
            StrategyArg::Aimes => StrategyName::Aimes,
            StrategyArg::Ttc => StrategyName::Ttc,
            StrategyArg::Budget => StrategyName::Budget,
        }
    }
}

/// Where the plan's inputs came from, for the header and `--json`.
pub(crate) struct Sources {
    pub catalog: PathBuf,
    pub snapshot: Option<Snapshot>,
    /// Why there is no snapshot (no Redis configured, none in it).
    pub no_snapshot: Option<String>,
    /// Our batch pilots' recorded queue waits (the store's pilot-wait stream).
    pub pilot_waits: Vec<PilotWait>,
}

impl Sources {
    /// What the planner is told about the resources.
    pub fn observations(&self) -> Observations<'_> {
        Observations {
            snapshot: self.snapshot.as_ref(),
            pilot_waits: &self.pilot_waits,
        }
    }
}

pub async fn plan(g: &GlobalArgs, a: PlanArgs) -> CliResult {
    let cfg = Config::resolve(g, None, None).input()?;
    if g.print_config {
        println!("{}", toml::to_string_pretty(&cfg).unwrap_or_default());
        return Ok(exit::OK);
    }
    let name = a.planner.strategy_name();
    let strategy = name.strategy(a.planner.budget).input()?;
    let catalog_path = cfg.resources.clone().ok_or_else(|| CliError {
        code: exit::INPUT,
        error: anyhow::anyhow!(
            "no resource catalog to plan on: give --resources FILE, set EMANAGER_RESOURCES, or `resources = \"FILE\"` in emanager.toml (examples/resources.toml is a start)"
        ),
    })?;
    let catalog = Catalog::load(&catalog_path).input()?;
    let skeleton = SkeletonRunArgs {
        seed: Some(a.seed),
        sleep: false,
        time_scale: a.time_scale,
    };
    let (wf, _, _) = load_workflow(&a.workflow, g.json, &skeleton)?;
    let sources = read_snapshot(&cfg, catalog_path).await?;
    let planning = Planning::new(&wf, &catalog, &a.planner.only, sources.observations()).input()?;
    let plan = planning.plan(strategy).input()?;
    let sim_base = sim_options(&a, &planning).input()?;
    let simulated = a.simulate.map(|runs| {
        let mut names = vec![StrategyName::Aimes, StrategyName::Ttc];
        if a.planner.budget.is_some() {
            names.push(StrategyName::Budget);
        }
        names
            .into_iter()
            .map(|n| {
                let result = n
                    .strategy(a.planner.budget)
                    .and_then(|s| planning.plan(s))
                    .map(|p| {
                        let r = simulate_runs_with(
                            &p,
                            &planning.summary,
                            &planning.offers.offers,
                            runs,
                            &sim_base,
                        );
                        (p, r)
                    })
                    .map_err(|e| e.to_string());
                (n, result)
            })
            .collect::<Vec<_>>()
    });
    let report = Report {
        workflow: &wf.name,
        planning: &planning,
        plan: &plan,
        sources: &sources,
        budget: a.planner.budget,
    };
    if g.json {
        let mut v = report.json();
        if let Some(rows) = &simulated {
            v["simulation"] = simulation_json(rows, a.simulate.unwrap_or(1), &sim_base);
        }
        println!("{v}");
        return Ok(exit::OK);
    }
    print!("{}", report.human(g.quiet));
    if let Some(rows) = &simulated {
        print!(
            "{}",
            simulation_human(rows, a.simulate.unwrap_or(1), &sim_base)
        );
    }
    if !g.quiet {
        println!("nothing was submitted; `emanager run` launches pilots");
    }
    Ok(exit::OK)
}

/// The merged bundle snapshots and our pilots' recorded queue waits when a Redis URL is
/// configured. An unreachable Redis is an error (no silent fallback); an empty one is a
/// note.
pub(crate) async fn read_snapshot(cfg: &Config, catalog: PathBuf) -> Result<Sources, CliError> {
    let Some(url) = &cfg.redis_url else {
        return Ok(Sources {
            catalog,
            snapshot: None,
            no_snapshot: Some(
                "no Redis configured (--redis-url): queue waits and idle nodes from the catalog alone"
                    .into(),
            ),
            pilot_waits: Vec::new(),
        });
    };
    let shown = redact_url(url);
    let snapshots = emanager_bundles::read_snapshots(url)
        .await
        .with_context(|| {
            format!("cannot read the bundle snapshots from Redis at {shown} (or plan from the catalog alone: --embedded)")
        })
        .infra()?;
    let pilot_waits = read_pilot_waits(url)
        .await
        .with_context(|| format!("cannot read our pilots' queue waits from Redis at {shown}"))
        .infra()?;
    if snapshots.is_empty() {
        return Ok(Sources {
            catalog,
            snapshot: None,
            no_snapshot: Some(format!(
                "no bundle snapshots in Redis at {shown}: start `bundle-service --catalog ... --redis-url ...` (docs/bundles.md) for idle nodes and queue waits"
            )),
            pilot_waits,
        });
    }
    Ok(Sources {
        catalog,
        snapshot: Some(emanager_bundles::merge(&snapshots)),
        no_snapshot: None,
        pilot_waits,
    })
}

/// Every queue wait of our batch pilots the store keeps (`em:pilot-waits`, the newest
/// 10,000 or so), oldest first: what the bundle services learn from too.
async fn read_pilot_waits(url: &str) -> anyhow::Result<Vec<PilotWait>> {
    let store = RedisStore::connect(url).await?;
    let mut cursor = StreamCursor::default();
    read_new_pilot_waits(&store, &mut cursor)
        .await
        .map_err(anyhow::Error::msg)
}

/// A plan with everything needed to print it.
struct Report<'a> {
    workflow: &'a str,
    planning: &'a Planning<'a>,
    plan: &'a Plan,
    sources: &'a Sources,
    budget: Option<Budget>,
}

impl Report<'_> {
    fn offer(&self, resource: &str) -> Option<&crate::planner::ResourceOffer> {
        self.planning
            .offers
            .offers
            .iter()
            .find(|o| o.name == resource)
    }

    fn notes(&self) -> Vec<String> {
        let mut notes: Vec<String> = self.sources.no_snapshot.iter().cloned().collect();
        notes.extend(self.planning.notes.iter().cloned());
        if !self.plan.predicted_ttc_s.is_finite() {
            notes.push(format!(
                "the {} plan does not finish: some tasks do not fit in its pilots' walltimes (queue limits); try --strategy ttc",
                self.plan.strategy.name()
            ));
        }
        if let Some(b) = self.budget {
            let cost = self.plan.cost(&self.planning.offers.offers);
            let over = b
                .core_hours
                .is_some_and(|h| self.plan.core_hours_requested > h)
                || b.cost.is_some_and(|c| cost > c);
            if over {
                notes.push(format!("this plan exceeds the budget ({b})"));
            }
        }
        notes
    }

    fn json(&self) -> Value {
        let s: &WorkflowSummary = &self.planning.summary;
        let pilots: Vec<Value> = self
            .plan
            .pilots
            .iter()
            .map(|p| {
                let o = self.offer(&p.resource);
                let per_node = o.map_or((0, 0), |o| (o.cores_per_node, o.gpus_per_node));
                json!({
                    "resource": p.resource,
                    "queue": p.queue,
                    "nodes": p.nodes,
                    "cores": p.nodes * per_node.0,
                    "gpus": p.nodes * per_node.1,
                    "walltime_s": p.walltime_s,
                    "predicted_wait_s": p.predicted_wait_s,
                    "core_hours": f64::from(p.nodes * per_node.0) * p.walltime_s / 3600.0,
                    "why": p.why,
                })
            })
            .collect();
        let offers: Vec<Value> = self
            .planning
            .offers
            .offers
            .iter()
            .zip(&self.planning.offers.sources)
            .map(|(o, src)| {
                let queues: Vec<Value> = o
                    .queues
                    .iter()
                    .map(|q| {
                        let w = queue_summary(o, q);
                        json!({
                            "queue": q.name,
                            "free_nodes": o.idle_nodes(q),
                            "wait_p10_s": w.p10_s,
                            "wait_p50_s": w.p50_s,
                            "wait_p90_s": w.p90_s,
                        })
                    })
                    .collect();
                json!({
                    "resource": o.name,
                    "source": src.as_str(),
                    "free_nodes": o.free_nodes,
                    "total_nodes": o.total_nodes,
                    "wait_p10_s": o.queue_wait.p10_s,
                    "wait_p50_s": o.queue_wait.p50_s,
                    "wait_p90_s": o.queue_wait.p90_s,
                    "queues": queues,
                })
            })
            .collect();
        json!({
            "workflow": self.workflow,
            "tasks": s.task_count,
            "work_core_hours": s.total_core_seconds / 3600.0,
            "critical_path_s": s.critical_path_s,
            "strategy": self.plan.strategy.name(),
            "budget": self.budget.map(|b| json!({"core_hours": b.core_hours, "cost": b.cost})),
            "catalog": self.sources.catalog.display().to_string(),
            "snapshot": self.sources.snapshot.as_ref().map(|s| json!({"site": s.site, "taken_ms": s.taken_ms})),
            "pilots": pilots,
            "predicted_ttc_s": finite(self.plan.predicted_ttc_s),
            "core_hours_requested": self.plan.core_hours_requested,
            "expected_idle_core_hours": self.plan.expected_idle_core_hours,
            "cost": self.plan.cost(&self.planning.offers.offers),
            "offers": offers,
            "notes": self.notes(),
        })
    }

    fn human(&self, quiet: bool) -> String {
        let s = &self.planning.summary;
        let mut out = String::new();
        if !quiet {
            out.push_str(&format!(
                "plan for `{}`: {} tasks, {:.1} core-hours of work, critical path {}\nstrategy {} · catalog {}{}\n",
                self.workflow,
                s.task_count,
                s.total_core_seconds / 3600.0,
                duration(s.critical_path_s),
                self.plan.strategy.name(),
                self.sources.catalog.display(),
                self.sources
                    .snapshot
                    .as_ref()
                    .map(|s| format!(" · bundle snapshot of {}", s.site))
                    .unwrap_or_default(),
            ));
        }
        let rows: Vec<Vec<String>> = self
            .plan
            .pilots
            .iter()
            .map(|p| {
                let cores = self.offer(&p.resource).map_or(0, |o| o.cores_per_node) * p.nodes;
                vec![
                    p.resource.clone(),
                    p.queue.clone(),
                    p.nodes.to_string(),
                    cores.to_string(),
                    format_hms(p.walltime_s.ceil() as u64),
                    duration(p.predicted_wait_s),
                    p.why.clone(),
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "RESOURCE", "QUEUE", "NODES", "CORES", "WALLTIME", "WAIT", "WHY",
            ],
            &rows,
        ));
        out.push('\n');
        let ttc = self.plan.predicted_ttc_s;
        out.push_str(&format!(
            "predicted TTC {} · {:.1} core-hours requested (cost {:.2}) · {:.1} idle core-hours expected\n",
            if ttc.is_finite() {
                format!("{} ({ttc:.0} s)", duration(ttc))
            } else {
                "never".into()
            },
            self.plan.core_hours_requested,
            self.plan.cost(&self.planning.offers.offers),
            self.plan.expected_idle_core_hours
        ));
        let notes = self.notes();
        if !quiet && !notes.is_empty() {
            out.push_str("notes:\n");
            for n in notes {
                out.push_str(&format!("  {n}\n"));
            }
        }
        out
    }
}

type SimRow = (StrategyName, Result<(Plan, Runs), String>);

/// The simulations' waits (drawn, or replayed from `--sim-waits` traces) and pilot failures.
fn sim_options(a: &PlanArgs, planning: &Planning) -> anyhow::Result<SimOptions> {
    if !(0.0..=1.0).contains(&a.sim_pilot_failure) {
        anyhow::bail!(
            "--sim-pilot-failure {} is not a probability: give a number from 0 to 1",
            a.sim_pilot_failure
        );
    }
    let mut traces = std::collections::HashMap::new();
    for spec in &a.sim_waits {
        let Some((resource, file)) = spec.split_once('=') else {
            anyhow::bail!("--sim-waits {spec}: write RESOURCE=FILE (e.g. frontier=frontier.swf)");
        };
        if !planning.offers.offers.iter().any(|o| o.name == resource) {
            let known: Vec<&str> = planning
                .offers
                .offers
                .iter()
                .map(|o| o.name.as_str())
                .collect();
            anyhow::bail!(
                "--sim-waits {spec}: `{resource}` is not a resource of this plan; known: {}",
                known.join(", ")
            );
        }
        let waits = read_wait_trace(Path::new(file))?;
        traces.insert(resource.to_string(), waits);
    }
    let waits = if traces.is_empty() {
        WaitDraw::Sampled
    } else {
        WaitDraw::Trace(traces)
    };
    Ok(SimOptions {
        seed: a.seed,
        waits,
        pilot_failure_prob: a.sim_pilot_failure,
    })
}

/// Queue waits in seconds from an SWF log, an XSEDE pilot file or one number a line.
fn read_wait_trace(path: &Path) -> anyhow::Result<Vec<f64>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the wait trace {}", path.display()))?;
    let swf = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("swf"));
    let waits: Vec<f64> = if swf {
        emanager_bundles::traces::parse_swf(&text, 1)
            .into_iter()
            .map(|s| s.wait_s)
            .collect()
    } else if text.contains("Tq:") {
        emanager_bundles::traces::parse_xsede_pilot(&text, 1, 0, 1)
            .into_iter()
            .map(|s| s.wait_s)
            .collect()
    } else {
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.parse::<f64>() {
                Ok(w) if w.is_finite() && w >= 0.0 => out.push(w),
                _ => anyhow::bail!(
                    "{}:{}: `{line}` is not a wait in seconds (one number a line; .swf files are read as SWF logs)",
                    path.display(),
                    i + 1
                ),
            }
        }
        out
    };
    if waits.is_empty() {
        anyhow::bail!("{} holds no queue waits", path.display());
    }
    Ok(waits)
}

/// The resources whose waits `o` replays from traces, sorted.
fn traced_resources(o: &SimOptions) -> Vec<&str> {
    let mut names: Vec<&str> = match &o.waits {
        WaitDraw::Trace(t) => t.keys().map(String::as_str).collect(),
        _ => Vec::new(),
    };
    names.sort();
    names
}

fn sim_source(o: &SimOptions) -> String {
    let traced = traced_resources(o);
    let waits = if traced.is_empty() {
        "queue waits drawn around each resource's estimate".to_string()
    } else {
        format!(
            "queue waits replayed from traces for {}, drawn around the estimate elsewhere",
            traced.join(", ")
        )
    };
    if o.pilot_failure_prob > 0.0 {
        format!(
            "{waits}; each pilot fails with probability {}",
            o.pilot_failure_prob
        )
    } else {
        waits
    }
}

fn simulation_json(rows: &[SimRow], runs: u32, base: &SimOptions) -> Value {
    let seed = base.seed;
    let dist = |d: &Distribution| json!({"min": finite(d.min), "p50": finite(d.p50), "p90": finite(d.p90), "max": finite(d.max), "mean": finite(d.mean)});
    let strategies: Vec<Value> = rows
        .iter()
        .map(|(name, r)| match r {
            Ok((p, r)) => json!({
                "strategy": name.as_str(),
                "error": null,
                "pilots": p.pilots.len(),
                "core_hours_requested": p.core_hours_requested,
                "predicted_ttc_s": finite(p.predicted_ttc_s),
                "ttc_s": dist(&r.ttc_s),
                "unfinished_runs": r.unfinished_runs,
                "busy_core_hours_mean": r.busy_core_hours_mean,
                "idle_core_hours_mean": r.idle_core_hours_mean,
            }),
            Err(e) => json!({"strategy": name.as_str(), "error": e}),
        })
        .collect();
    let traced = traced_resources(base);
    let waits = if traced.is_empty() {
        "sampled"
    } else {
        "trace"
    };
    json!({"runs": runs, "seed": seed, "waits": waits, "traced_resources": traced, "pilot_failure_prob": base.pilot_failure_prob, "strategies": strategies})
}

fn simulation_human(rows: &[SimRow], runs: u32, base: &SimOptions) -> String {
    let seed = base.seed;
    let t = |s: f64| {
        if s.is_finite() {
            duration(s)
        } else {
            "never".into()
        }
    };
    let mut errors = Vec::new();
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .filter_map(|(name, r)| match r {
            Ok((p, r)) => Some(vec![
                name.as_str().to_string(),
                p.pilots.len().to_string(),
                format!("{:.1}", p.core_hours_requested),
                format!("{:.1}", r.idle_core_hours_mean),
                t(p.predicted_ttc_s),
                t(r.ttc_s.min),
                t(r.ttc_s.p50),
                t(r.ttc_s.p90),
                t(r.ttc_s.max),
                t(r.ttc_s.mean),
                r.unfinished_runs.to_string(),
            ]),
            Err(e) => {
                errors.push(format!("  {}: no plan: {e}\n", name.as_str()));
                None
            }
        })
        .collect();
    let mut out = format!(
        "\nsimulated {runs} run(s) per strategy (seeds {seed}..{}; {}):\n",
        seed.wrapping_add(u64::from(runs) - 1),
        sim_source(base)
    );
    out.push_str(&table(
        &[
            "STRATEGY",
            "PILOTS",
            "CORE-HOURS",
            "IDLE (MEAN)",
            "PREDICTED",
            "MIN",
            "P50",
            "P90",
            "MAX",
            "MEAN",
            "UNFINISHED",
        ],
        &table_rows,
    ));
    out.push('\n');
    for e in errors {
        out.push_str(&e);
    }
    out
}

/// `Some(x)` for a finite number, JSON `null` otherwise.
fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

fn duration(s: f64) -> String {
    format_duration(Duration::from_secs_f64(s.max(0.0)))
}
