//! `emanager run`, `submit` and `resume`.

use super::output::{print_outcome, print_workflow_errors};
use super::{exit, CliError, CliResult, Tag};
use crate::campaign::{self, CampaignOptions, PilotRequest};
use crate::config::{Config, GlobalArgs};
use crate::driver::{self, Ending, RunContext};
use crate::pilots::{find_agent_bin, Launcher};
use crate::progress::{Progress, ProgressMode};
use crate::services::Services;
use crate::workflow::{self, Format, Workflow};
use anyhow::Context;
use emanager_shared::CampaignId;
use std::path::{Path, PathBuf};

/// Run a workflow to completion and report (exit code 0 only if every task is DONE).
///
/// Examples:
///   emanager run examples/quickstart.toml
///   emanager run wf.toml --pilots 4 --cores-per-pilot 16 --amqp-url amqp://guest:guest@127.0.0.1:5672/%2f --redis-url redis://127.0.0.1:6379/
///   emanager run wf.toml --resources examples/resources.toml --pilot localhost-slurm:1:00:30:00 --pilot localhost-sge:1:00:30:00 --redis-url redis://127.0.0.1:6379/
///   emanager run wf.toml --resources examples/resources.toml --only localhost-slurm,localhost-sge --redis-url redis://127.0.0.1:6379/   # the planner chooses the pilots
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct RunArgs {
    #[command(flatten)]
    pub campaign: CampaignArgs,
}

/// What `run` and `submit` share: the workflow and where its pilots come from.
#[derive(clap::Args, Debug)]
pub struct CampaignArgs {
    /// Workflow file (TOML or JSON), or a skeleton.
    pub workflow: PathBuf,
    /// Pilots to start on this host.
    #[arg(long)]
    pub pilots: Option<u32>,
    /// Cores each pilot declares (default: this host's cores).
    #[arg(long)]
    pub cores_per_pilot: Option<u32>,
    #[command(flatten)]
    pub placement: PlacementArgs,
    #[command(flatten)]
    pub pool: super::pool::PoolArgs,
    #[command(flatten)]
    pub skeleton: SkeletonRunArgs,
    // `submit` passes it on to the background manager (`emanager resume --metrics-addr`).
    #[command(flatten)]
    pub metrics: MetricsArgs,
}

/// Where pilots go: explicit placements on catalog resources, or the planner's choice.
#[derive(clap::Args, Debug, Default)]
pub struct PlacementArgs {
    #[command(flatten)]
    pub planner: super::plan::PlannerArgs,
    /// With a planned campaign: seconds between checks of its progress against the plan
    /// (pilots are added when it falls behind, queued ones canceled when not needed).
    #[arg(long, value_name = "S", default_value_t = 60)]
    pub replan_interval: u64,
    /// A pilot on a catalog resource (repeat for several): RESOURCE[@QUEUE]:NODES:WALLTIME,
    /// walltime as seconds, MM:SS or HH:MM:SS, e.g. `localhost-slurm@debug:1:00:10:00`.
    /// Needs --resources. Replaces --pilots/--cores-per-pilot.
    #[arg(long = "pilot", value_name = "SPEC")]
    pub pilot_specs: Vec<String>,
    /// Advance reservation the batch --pilot jobs run in, in place of the catalog's (SLURM
    /// --reservation, PBS reservation queue, LSF -U, SGE -ar). They must all be on one batch
    /// resource; planned pilots take theirs from the catalog (`reservation`).
    #[arg(long, value_name = "NAME")]
    pub reservation: Option<String>,
}

/// Prometheus exporter of the manager.
#[derive(clap::Args, Debug, Default)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics (`/metrics`, `/healthz`) on this address, e.g.
    /// `127.0.0.1:9464` (`:0` picks a free port, printed at start).
    #[arg(long, env = "EMANAGER_METRICS_ADDR", value_name = "ADDR")]
    pub metrics_addr: Option<String>,
}

impl MetricsArgs {
    async fn start(&self, campaign: &CampaignId) -> Result<(), CliError> {
        let Some(addr) = &self.metrics_addr else {
            return Ok(());
        };
        crate::metrics::get();
        emanager_shared::metrics::info(
            "em_manager_info",
            "The manager's identity (value 1).",
            &[
                ("campaign", &campaign.to_string()),
                ("version", env!("CARGO_PKG_VERSION")),
            ],
        );
        let bound = emanager_shared::metrics::serve(addr).await.input()?;
        eprintln!("emanager: metrics on http://{bound}/metrics");
        Ok(())
    }
}

/// Options that apply when the workflow file is a skeleton.
#[derive(clap::Args, Debug, Default)]
pub struct SkeletonRunArgs {
    /// Seed for a skeleton's random task lengths and sizes.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Synthetic tasks sleep instead of burning CPU.
    #[arg(long)]
    pub sleep: bool,
    /// Multiply a skeleton's task lengths by this factor.
    #[arg(long, value_name = "F", default_value_t = 1.0)]
    pub time_scale: f64,
}

/// Start a campaign in the background and print its id (distributed mode).
///
/// Example:
///   emanager submit wf.toml --pilots 2 --redis-url redis://127.0.0.1:6379/ && emanager status <id>
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub campaign: CampaignArgs,
}

/// Continue a campaign whose manager stopped (killed, interrupted, machine rebooted).
///
/// Example:
///   emanager resume 6f1c0a4e-2d3b-4c5d-8e9f-0a1b2c3d4e5f --redis-url redis://127.0.0.1:6379/
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct ResumeArgs {
    pub campaign: CampaignId,
    #[command(flatten)]
    pub metrics: MetricsArgs,
}

/// Reads and validates a workflow file, or generates one from a skeleton; invalid input is
/// an input error (exit 2). The text returned is what the campaign records for `resume`.
pub fn load_workflow(
    path: &Path,
    json: bool,
    skel: &SkeletonRunArgs,
) -> Result<(Workflow, String, Format), CliError> {
    let (source, format) = if crate::skeleton::is_skeleton_file(path) {
        use crate::skeleton::writer::{render, OutFormat, StageMode};
        let opts = crate::skeleton::SkeletonOptions {
            sleep: skel.sleep,
            time_scale: skel.time_scale,
            ..Default::default()
        };
        let g = crate::skeleton::generate(path, skel.seed, &opts).input()?;
        for w in &g.warnings {
            eprintln!("warning: {w}");
        }
        (
            render(&g.built, OutFormat::Toml, StageMode::Tags).input()?,
            Format::Toml,
        )
    } else {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the workflow file {}", path.display()))
            .input()?;
        (text, Format::from_path(path))
    };
    match workflow::parse_str(&source, format, &path.display().to_string()) {
        Ok(wf) => Ok((wf, source, format)),
        Err(errors) => {
            print_workflow_errors(&errors, json);
            Err(CliError {
                code: exit::INPUT,
                error: anyhow::anyhow!(
                    "{} problem(s) in {}; nothing was submitted",
                    errors.0.len(),
                    path.display()
                ),
            })
        }
    }
}

/// How the campaign runs: its pilots and the rest of the configuration. Pilots are the
/// `--pilot` placements on catalog resources; else, with a catalog and no `--pilots` /
/// `--cores-per-pilot`, the planner's choice; else local pilots. Checks that every task fits
/// some pilot's node, so nothing is submitted that can never run.
async fn options(
    cfg: &Config,
    placement: &PlacementArgs,
    local_asked: bool,
    wf: &Workflow,
    source_name: &str,
    quiet: bool,
    json: bool,
) -> Result<CampaignOptions, CliError> {
    let catalog = cfg.catalog().input()?;
    if let (Some(name), true) = (&placement.reservation, placement.pilot_specs.is_empty()) {
        PilotRequest::reserve_all(&mut [], name)
            .map_err(|e| anyhow::anyhow!(e))
            .input()?;
    }
    let mut opts = CampaignOptions {
        pilots: (0..cfg.pilots)
            .map(|_| PilotRequest::local(cfg.cores_per_pilot))
            .collect(),
        lookahead_s: cfg.lookahead_s,
        heartbeat_ms: cfg.heartbeat_ms,
        workdir: cfg.workdir.clone(),
        max_pilot_replacements: cfg.max_pilot_replacements,
        pilot_start_timeout_s: cfg.pilot_start_timeout_s,
        catalog_toml: None,
        catalog_dir: None,
        plan: None,
        pool: None,
        agent_log_json: false,
    };
    let mut shapes = Vec::new();
    if let (Some(_), Some(path)) = (&catalog, &cfg.resources) {
        opts.catalog_toml = Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))
                .input()?,
        );
        opts.catalog_dir = path
            .canonicalize()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf));
    }
    if !placement.pilot_specs.is_empty() {
        let Some(catalog) = &catalog else {
            return Err(CliError {
                code: exit::INPUT,
                error: anyhow::anyhow!(
                    "--pilot places pilots on catalog resources: give the catalog with --resources FILE (or EMANAGER_RESOURCES, or `resources` in emanager.toml)"
                ),
            });
        };
        opts.pilots.clear();
        for spec in &placement.pilot_specs {
            let (req, shape) = pilot_request(catalog, spec).input()?;
            opts.pilots.push(req);
            shapes.push(shape);
        }
        if let Some(name) = &placement.reservation {
            PilotRequest::reserve_all(&mut opts.pilots, name)
                .map_err(|e| anyhow::anyhow!(e))
                .input()?;
        }
        if opts.pilots.iter().any(|p| p.resource != "local") && !cfg.distributed() {
            return Err(CliError {
                code: exit::INPUT,
                error: anyhow::anyhow!(
                    "pilots on batch resources run agents in their allocations, which must reach RabbitMQ and Redis: give --amqp-url and --redis-url (embedded mode only runs pilots in this process)"
                ),
            });
        }
    } else if let (Some(catalog), false) = (&catalog, local_asked) {
        // The planner checks that every task fits the resources it plans on.
        let plan = plan_campaign(cfg, catalog, &placement.planner, wf, quiet || json).await?;
        opts.pilots = crate::planner::pilot_requests(&plan, catalog).input()?;
        opts.plan = Some(crate::campaign::PlanRecord::of(
            &plan,
            placement.replan_interval.max(1),
        ));
    } else if cfg.pilots > 0 {
        // (With a pool and no local pilot, the pool's agents' shapes are not known here.)
        shapes.push(local_pilot_shape(cfg));
    }
    let errors = crate::workflow::check_fits(wf, &shapes);
    if !errors.is_empty() {
        let errors = crate::workflow::WorkflowErrors(errors);
        print_workflow_errors(&errors, json);
        return Err(CliError {
            code: exit::INPUT,
            error: anyhow::anyhow!(
                "{} task(s) of {source_name} fit no pilot; nothing was submitted",
                errors.0.len()
            ),
        });
    }
    Ok(opts)
}

/// The node of a local pilot as `run` starts it (`--cores-per-pilot`, memory unchecked).
pub(crate) fn local_pilot_shape(cfg: &Config) -> crate::workflow::NodeShape {
    crate::workflow::NodeShape {
        resource: "local".into(),
        cores: cfg.cores_per_pilot,
        gpus: 0,
        mem_mb: 0,
        nodes: 1,
    }
}

/// The planner's pilots for `wf` over the catalog (and the bundle snapshot in Redis when
/// there is one). In embedded mode only the catalog's `local` resources can run pilots.
async fn plan_campaign(
    cfg: &Config,
    catalog: &emanager_shared::catalog::Catalog,
    args: &super::plan::PlannerArgs,
    wf: &Workflow,
    quiet: bool,
) -> Result<crate::planner::Plan, CliError> {
    use emanager_shared::catalog::AccessKind;
    let mut only = args.only.clone();
    if !cfg.distributed() {
        let local: Vec<String> = catalog
            .resources()
            .filter(|r| r.access == AccessKind::Local)
            .filter(|r| only.is_empty() || only.contains(&r.name))
            .map(|r| r.name.clone())
            .collect();
        if local.is_empty() {
            return Err(CliError {
                code: exit::INPUT,
                error: anyhow::anyhow!(
                    "the catalog's batch resources run agents that must reach RabbitMQ and Redis: give --amqp-url and --redis-url, or add an `access = \"local\"` resource to plan on in embedded mode"
                ),
            });
        }
        only = local;
    }
    let path = cfg.resources.clone().unwrap_or_default();
    let sources = super::plan::read_snapshot(cfg, path).await?;
    let strategy = args.strategy_name().strategy(args.budget).input()?;
    let planning =
        crate::planner::Planning::new(wf, catalog, &only, sources.observations()).input()?;
    let plan = planning.plan(strategy).input()?;
    if !quiet {
        for note in planning.notes.iter().chain(&sources.no_snapshot) {
            eprintln!("plan: note: {note}");
        }
        eprintln!(
            "plan ({}): {} pilot(s), predicted time to completion {}, {:.1} core-hours requested",
            plan.strategy.name(),
            plan.pilots.len(),
            crate::progress::format_duration(std::time::Duration::from_secs_f64(
                plan.predicted_ttc_s.max(0.0)
            )),
            plan.core_hours_requested
        );
        for p in &plan.pilots {
            eprintln!(
                "plan:   {}@{} {} node(s) for {} (wait ~{}): {}",
                p.resource,
                p.queue,
                p.nodes,
                emanager_shared::access::timefmt::format_hms(p.walltime_s.ceil() as u64),
                crate::progress::format_duration(std::time::Duration::from_secs_f64(
                    p.predicted_wait_s.max(0.0)
                )),
                p.why
            );
        }
    }
    Ok(plan)
}

/// A `--pilot RESOURCE[@QUEUE]:NODES:WALLTIME` on the catalog, checked against the
/// resource's queues and limits, and the node shape its tasks must fit.
fn pilot_request(
    catalog: &emanager_shared::catalog::Catalog,
    spec: &str,
) -> anyhow::Result<(PilotRequest, crate::workflow::NodeShape)> {
    let (resource, queue, nodes, walltime_s) =
        PilotRequest::parse_spec(spec).map_err(|e| anyhow::anyhow!("--pilot {e}"))?;
    let r = catalog
        .get(&resource)
        .map_err(|e| anyhow::anyhow!("--pilot {spec}: {e}"))?;
    if r.access != emanager_shared::catalog::AccessKind::Local {
        // The same checks the pilot job gets, now rather than at submission.
        emanager_shared::access::JobDescription::for_pilot(
            r,
            queue.as_deref(),
            nodes,
            walltime_s,
            &[],
        )
        .map_err(|e| anyhow::anyhow!("--pilot {spec}: {e}"))?;
    } else if nodes != 1 {
        anyhow::bail!("--pilot {spec}: resource `{resource}` runs pilots on this host: use 1 node");
    }
    let shape = crate::workflow::NodeShape {
        nodes,
        ..crate::workflow::NodeShape::of(r)
    };
    let req = PilotRequest {
        resource: if r.access == emanager_shared::catalog::AccessKind::Local {
            "local".into()
        } else {
            resource
        },
        cores: nodes * r.cores_per_node,
        nodes,
        queue,
        gpus: nodes * r.gpus_per_node,
        mem_mb: 0,
        walltime_s: Some(walltime_s),
        reservation: None,
    };
    Ok((req, shape))
}

/// "2 pilot(s) x 4 cores" for local pilots; "localhost-slurm 1x2 cores 00:10:00, ..." else.
fn pilots_line(pilots: &[PilotRequest]) -> String {
    if pilots
        .iter()
        .all(|p| p.resource == "local" && p.walltime_s.is_none())
    {
        let cores = pilots.first().map(|p| p.cores).unwrap_or(0);
        return format!("{} pilot(s) x {cores} cores", pilots.len());
    }
    let each: Vec<String> = pilots
        .iter()
        .map(|p| {
            let q = p
                .queue
                .as_deref()
                .map(|q| format!("@{q}"))
                .unwrap_or_default();
            let w = p
                .walltime_s
                .map(|w| format!(" {}", emanager_shared::access::timefmt::format_hms(w)))
                .unwrap_or_default();
            let r = p
                .reservation
                .as_deref()
                .map(|r| format!(" in reservation {r}"))
                .unwrap_or_default();
            format!(
                "{}{q} {} node(s) x {} cores{w}{r}",
                p.resource,
                p.nodes,
                p.node_cores()
            )
        })
        .collect();
    format!("pilots: {}", each.join(", "))
}

fn launcher(cfg: &Config, services: &Services) -> Launcher {
    match &services.urls {
        Some((amqp, redis)) => Launcher::LocalProcess {
            agent_bin: cfg.agent_bin.clone().unwrap_or_else(find_agent_bin),
            amqp_url: amqp.clone(),
            redis_url: redis.clone(),
        },
        None => Launcher::InProcess {
            broker: services.broker.clone(),
            store: services.store.clone(),
        },
    }
}

fn print_config(cfg: &Config) -> CliResult {
    println!("{}", toml::to_string_pretty(cfg).unwrap_or_default());
    Ok(exit::OK)
}

/// A campaign ready to record: its workflow (text and format, for `resume`) and options.
struct Prepared {
    wf: Workflow,
    source: String,
    format: Format,
    opts: CampaignOptions,
}

/// What `run` and `submit` do before the campaign exists: the workflow read and checked,
/// the pilots chosen.
async fn prepare(g: &GlobalArgs, cfg: &Config, a: &CampaignArgs) -> Result<Prepared, CliError> {
    let (wf, source, format) = load_workflow(&a.workflow, g.json, &a.skeleton)?;
    let mut opts = options(
        cfg,
        &a.placement,
        // Explicit local pilots, or a pool, mean no planning.
        a.pilots.is_some() || a.cores_per_pilot.is_some() || a.pool.pool.is_some(),
        &wf,
        &a.workflow.display().to_string(),
        g.quiet,
        g.json,
    )
    .await?;
    a.pool.apply(&mut opts);
    opts.agent_log_json = g.log_format == crate::config::LogFormat::Json;
    Ok(Prepared {
        wf,
        source,
        format,
        opts,
    })
}

pub async fn run(g: &GlobalArgs, a: RunArgs) -> CliResult {
    let a = a.campaign;
    let cfg = a.pool.config(g, a.pilots, a.cores_per_pilot).input()?;
    if g.print_config {
        return print_config(&cfg);
    }
    let Prepared {
        wf,
        source,
        format,
        opts,
    } = prepare(g, &cfg, &a).await?;
    let services = Services::connect(&cfg).await.infra()?;
    let id = CampaignId::random();
    a.metrics.start(&id).await?;
    campaign::create(services.store.as_ref(), id, &wf, &source, format, &opts)
        .await
        .infra()?;
    if !g.quiet && !g.json {
        let mode = match &services.urls {
            Some((_, redis)) => format!("distributed (RabbitMQ + Redis at {redis})"),
            None => "embedded (in-process broker and state store)".to_string(),
        };
        eprintln!(
            "campaign {id} · {} · {} tasks · {}{} · {mode}",
            wf.name,
            wf.tasks.len(),
            pilots_line(&opts.pilots),
            super::pool::describe(&opts)
        );
    }
    drive_and_report(g, &cfg, &services, id, wf, opts).await
}

async fn drive_and_report(
    g: &GlobalArgs,
    cfg: &Config,
    services: &Services,
    id: CampaignId,
    wf: Workflow,
    opts: CampaignOptions,
) -> CliResult {
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        // Ctrl-C and SIGTERM (service managers, batch systems) both leave it resumable.
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => s.recv().await,
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            r = tokio::signal::ctrl_c() => if r.is_err() { return },
            _ = term => {}
        }
        let _ = tx.send(());
    });
    let total = wf.tasks.len() as u64;
    let mode = if g.json {
        ProgressMode::Quiet
    } else {
        ProgressMode::detect(g.quiet)
    };
    let ctx = RunContext {
        campaign: id,
        store: services.store.clone(),
        broker: services.broker.clone(),
        launcher: launcher(cfg, services),
        workflow: wf,
        opts,
        progress: Progress::new(mode, total),
        interrupt: Some(rx),
    };
    let span = tracing::info_span!("campaign", campaign = %id);
    let outcome = tracing::Instrument::instrument(driver::drive(ctx), span)
        .await
        .infra()?;
    print_outcome(&outcome, g.json, g.quiet);
    if services.urls.is_none() {
        save_embedded_report(cfg, services, &id, g.quiet).await;
    }
    Ok(match outcome.ending {
        Ending::Interrupted => {
            if services.urls.is_some() {
                eprintln!(
                    "interrupted: campaign {id} goes on without a manager; `emanager resume {id}` continues it, `emanager cancel {id}` stops it"
                );
            } else {
                eprintln!("interrupted: embedded campaigns end with their process");
            }
            exit::INTERRUPTED
        }
        _ if outcome.counts.done == outcome.counts.total => exit::OK,
        _ => exit::TASKS_FAILED,
    })
}

/// An embedded campaign's state ends with its process: its per-task report (the JSON of
/// `emanager report --json`) is kept in `<workdir>/<campaign>/report.json`.
async fn save_embedded_report(cfg: &Config, services: &Services, id: &CampaignId, quiet: bool) {
    let path = cfg.workdir.join(id.to_string()).join("report.json");
    let saved = async {
        let report = super::report_json(services.store.as_ref(), id).await?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, serde_json::to_vec_pretty(&report)?)?;
        anyhow::Ok(())
    };
    match saved.await {
        Ok(()) if !quiet => eprintln!("per-task report: {}", path.display()),
        Ok(()) => {}
        Err(e) => eprintln!("emanager: cannot save the report {}: {e:#}", path.display()),
    }
}

pub async fn submit(g: &GlobalArgs, a: SubmitArgs) -> CliResult {
    let a = a.campaign;
    let cfg = a.pool.config(g, a.pilots, a.cores_per_pilot).input()?;
    if g.print_config {
        return print_config(&cfg);
    }
    if !cfg.distributed() {
        return Err(CliError {
            code: exit::INPUT,
            error: anyhow::anyhow!(
                "submit runs the campaign in the background and needs RabbitMQ and Redis: give --amqp-url and --redis-url (or EMANAGER_AMQP_URL / EMANAGER_REDIS_URL); use `emanager run` for embedded mode"
            ),
        });
    }
    let Prepared {
        wf,
        source,
        format,
        opts,
    } = prepare(g, &cfg, &a).await?;
    let services = Services::connect(&cfg).await.infra()?;
    let id = CampaignId::random();
    campaign::create(services.store.as_ref(), id, &wf, &source, format, &opts)
        .await
        .infra()?;
    let dir = cfg.workdir.join(id.to_string());
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create {}", dir.display()))
        .infra()?;
    let log_path = dir.join("manager.log");
    let log = std::fs::File::create(&log_path).infra()?;
    let exe = std::env::current_exe().infra()?;
    let (amqp, redis) = services.urls.clone().unwrap_or_default();
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("resume")
        .arg(id.to_string())
        .arg("--amqp-url")
        .arg(amqp)
        .arg("--redis-url")
        .arg(redis)
        .arg("--workdir")
        .arg(&cfg.workdir)
        .arg("--quiet")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().infra()?)
        .stderr(log);
    if let Some(c) = &cfg.config_file {
        cmd.arg("--config").arg(c);
    }
    if let Some(agent) = &cfg.agent_bin {
        cmd.arg("--agent-bin").arg(agent);
    }
    if let Some(m) = &a.metrics.metrics_addr {
        cmd.arg("--metrics-addr").arg(m);
    }
    if g.log_format == crate::config::LogFormat::Json {
        cmd.arg("--log-format").arg("json");
    }
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    cmd.spawn()
        .context("cannot start the background manager")
        .infra()?;
    if g.json {
        println!(
            "{}",
            serde_json::json!({"campaign": id.to_string(), "manager_log": log_path.display().to_string()})
        );
    } else if g.quiet {
        println!("{id}");
    } else {
        println!("{id}");
        eprintln!(
            "campaign {id} submitted ({} tasks); manager log: {}; follow it with `emanager status {id}`",
            wf.tasks.len(),
            log_path.display()
        );
    }
    Ok(exit::OK)
}

pub async fn resume(g: &GlobalArgs, a: ResumeArgs) -> CliResult {
    let cfg = Config::resolve(g, None, None).input()?;
    if g.print_config {
        return print_config(&cfg);
    }
    if !cfg.distributed() {
        return Err(CliError {
            code: exit::INPUT,
            error: anyhow::anyhow!(
                "resume continues a campaign kept in Redis: give --redis-url and --amqp-url (or the EMANAGER_* variables)"
            ),
        });
    }
    let services = Services::connect(&cfg).await.infra()?;
    let (meta, wf, opts) = campaign::load(services.store.as_ref(), &a.campaign)
        .await
        .input()?;
    if meta.state.is_final() {
        if !g.quiet {
            eprintln!("campaign {} is already {}", a.campaign, meta.state);
        }
        return Ok(if meta.state == emanager_shared::CampaignState::Done {
            exit::OK
        } else {
            exit::TASKS_FAILED
        });
    }
    a.metrics.start(&a.campaign).await?;
    if !g.quiet && !g.json {
        eprintln!(
            "resuming campaign {} · {} · {} tasks",
            a.campaign,
            wf.name,
            wf.tasks.len()
        );
    }
    drive_and_report(g, &cfg, &services, a.campaign, wf, opts).await
}
