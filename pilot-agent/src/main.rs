//! `pilot-agent`: a thin binary over the `pilot_agent` library.

use anyhow::Context;
use clap::Parser;
use emanager_shared::access::allocation::BatchSystem;
use emanager_shared::broker::AmqpBroker;
use emanager_shared::catalog::LaunchMethod;
use emanager_shared::pool::PoolName;
use emanager_shared::store::RedisStore;
use emanager_shared::{CampaignId, PilotId};
use pilot_agent::discovery::{self, Overrides};
use pilot_agent::{AgentConfig, PoolConfig};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// EManager pilot agent: runs inside an allocation and executes the tasks the manager binds
/// to its pilot, for one campaign (--campaign) or for every campaign of a pool (--pool).
///
/// Example:
///   pilot-agent --campaign 3f0c...e1 --cores 16 --workdir /scratch/em \
///     --amqp-url amqp://guest:guest@broker:5672/%2f --redis-url redis://state:6379/
///   pilot-agent --pool site-a --cores 64 --amqp-url ... --redis-url ...   # kept warm by ops
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
#[command(group(clap::ArgGroup::new("serves").args(["campaign", "pool"])))]
struct Args {
    /// Campaign to work for.
    #[arg(long, env = "EMANAGER_CAMPAIGN")]
    campaign: Option<CampaignId>,
    /// Serve every campaign attached to this pool (`emanager run|submit --pool NAME`),
    /// sharing the cores between them by their weights; the agent outlives the campaigns.
    #[arg(long, env = "EMANAGER_POOL", value_name = "NAME")]
    pool: Option<PoolName>,
    /// Time constant in seconds of the usage history a pool agent's fair share decays.
    #[arg(long, default_value_t = pilot_agent::fairshare::DEFAULT_WINDOW_S, value_name = "S")]
    fair_share_window_s: f64,
    /// This pilot's id (a new one when absent: an agent started by hand or by an ops tool);
    /// with --pool, the agent's id in the pool.
    #[arg(long, env = "EMANAGER_PILOT")]
    pilot: Option<PilotId>,
    /// Cores to use (default: every core of this host).
    #[arg(long)]
    cores: Option<u32>,
    /// GPUs to use (default: CUDA_VISIBLE_DEVICES or nvidia-smi).
    #[arg(long)]
    gpus: Option<u32>,
    /// Memory to use in MiB (default: the host's total).
    #[arg(long)]
    mem_mb: Option<u64>,
    #[arg(long, env = "EMANAGER_AMQP_URL", default_value = emanager_shared::DEFAULT_AMQP_URL)]
    amqp_url: String,
    #[arg(long, env = "EMANAGER_REDIS_URL", default_value = emanager_shared::DEFAULT_REDIS_URL)]
    redis_url: String,
    /// Task sandboxes go below DIR/<campaign>/.
    #[arg(long, default_value = "emanager-runs")]
    workdir: PathBuf,
    /// Heartbeat period in milliseconds (the TTL is three periods).
    #[arg(long, default_value_t = 2000)]
    heartbeat_ms: u64,
    /// The allocation ends this many seconds from now (default: from the batch system, else never).
    #[arg(long)]
    walltime_s: Option<u64>,
    /// Drain this many seconds before the allocation ends; no task starts whose estimate
    /// runs past then (it goes back to the manager).
    #[arg(long, default_value_t = 30)]
    drain_margin_s: u64,
    /// Stop after this many seconds without work.
    #[arg(long)]
    idle_timeout_s: Option<u64>,
    /// Catalog resource this agent runs on.
    #[arg(long, default_value = "local")]
    resource: String,
    /// Batch job id of the allocation (default: from the batch system's environment).
    #[arg(long)]
    job_id: Option<String>,
    /// How tasks start, comma-separated: `fork` (on this node), `srun`, `mpirun`, `mpiexec`
    /// (other nodes, MPI ranks). Default: `fork,srun` in a SLURM allocation, else `fork`.
    #[arg(long, value_delimiter = ',')]
    launch_methods: Option<Vec<LaunchMethod>>,
    /// Write logs to this file instead of stderr.
    #[arg(long)]
    log_file: Option<PathBuf>,
    /// Task messages in flight from the broker.
    #[arg(long, default_value_t = 8)]
    prefetch: u16,
    /// Serve Prometheus metrics (`/metrics`, `/healthz`) on this address (`127.0.0.1:0`
    /// picks a free port, logged at start).
    #[arg(long, env = "EMANAGER_AGENT_METRICS_ADDR", value_name = "ADDR")]
    metrics_addr: Option<String>,
    /// Log format: `text` or `json` (one JSON object a line, with span fields).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// How logs are written.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
enum LogFormat {
    Text,
    Json,
}

fn init_logs(file: Option<&PathBuf>, format: LogFormat) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if format == LogFormat::Json {
        let builder = tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_env_filter(filter);
        return match file {
            Some(path) => {
                builder
                    .with_writer(std::sync::Mutex::new(open_log(path)?))
                    .init();
                Ok(())
            }
            None => {
                builder.with_writer(std::io::stderr).init();
                Ok(())
            }
        };
    }
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match file {
        Some(path) => {
            let f = open_log(path)?;
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(f))
                .init();
        }
        None => builder.with_writer(std::io::stderr).init(),
    }
    Ok(())
}

fn open_log(path: &PathBuf) -> anyhow::Result<std::fs::File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).ok();
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open log file {}", path.display()))
}

async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = int.recv() => tracing::info!("SIGINT: draining"),
    }
}

/// `p` from the current directory, so the paths the agent registers mean something
/// wherever they are read (a pilot job passes them relative to its working directory).
fn absolute(p: &std::path::Path) -> PathBuf {
    std::env::current_dir()
        .map(|d| {
            if p == std::path::Path::new(".") {
                d
            } else {
                d.join(p)
            }
        })
        .unwrap_or_else(|_| p.to_path_buf())
}

#[tokio::main]
async fn main() {
    let mut args = Args::parse();
    if args.campaign.is_none() && args.pool.is_none() {
        use clap::CommandFactory;
        Args::command()
            .error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "give --campaign ID (the agent of one campaign) or --pool NAME (an agent serving every campaign of a pool)",
            )
            .exit();
    }
    if args.workdir.is_relative() {
        args.workdir = absolute(&args.workdir);
    }
    args.log_file = args.log_file.as_deref().map(absolute);
    if let Err(e) = init_logs(args.log_file.as_ref(), args.log_format) {
        eprintln!("pilot-agent: {e:#}");
        std::process::exit(2);
    }
    match run(args).await {
        Ok(()) => {}
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("pilot-agent: {e:#}");
            std::process::exit(3);
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let found = discovery::discover(&Overrides {
        cores: args.cores,
        gpus: args.gpus,
        mem_mb: args.mem_mb,
    });
    let alloc = found.allocation.as_ref();
    let launch_methods =
        args.launch_methods
            .clone()
            .unwrap_or_else(|| match alloc.map(|a| a.batch_system) {
                Some(BatchSystem::Slurm) => vec![LaunchMethod::Fork, LaunchMethod::Srun],
                _ => vec![LaunchMethod::Fork],
            });
    let mut nodes = found.nodes.clone();
    if nodes.len() > 1 && launch_methods.iter().all(|m| *m == LaunchMethod::Fork) {
        tracing::warn!(
            nodes = nodes.len(),
            "only `fork` is available: using this node alone; add srun, mpirun or mpiexec to the resource's launch_methods to use the others"
        );
        nodes.truncate(1);
    }
    if let Some(a) = alloc {
        tracing::info!(batch_system = ?a.batch_system, job = %a.job_id, nodes = nodes.len(), cores_per_node = nodes[0].cores, end_ms = ?a.end_time_ms, "running inside a batch allocation");
    }
    let pilot = args.pilot.unwrap_or_else(PilotId::random);
    // A pool agent's campaigns come and go; its configuration carries none.
    let campaign = args.campaign.unwrap_or(CampaignId(uuid::Uuid::nil()));
    let pool = args
        .pool
        .as_ref()
        .map(|p| p.to_string())
        .unwrap_or_default();
    if let Some(addr) = &args.metrics_addr {
        pilot_agent::metrics::get();
        emanager_shared::metrics::info(
            "em_agent_info",
            "The agent's identity (value 1).",
            &[
                (
                    "campaign",
                    &args.campaign.map(|c| c.to_string()).unwrap_or_default(),
                ),
                ("pool", &pool),
                ("pilot", &pilot.to_string()),
                ("version", env!("CARGO_PKG_VERSION")),
            ],
        );
        let bound = emanager_shared::metrics::serve(addr).await?;
        eprintln!("pilot-agent: metrics on http://{bound}/metrics");
    }
    let mut cfg = AgentConfig::new(campaign, pilot, nodes, args.workdir.clone());
    cfg.heartbeat = Duration::from_millis(args.heartbeat_ms.max(100));
    cfg.walltime_end_ms = args
        .walltime_s
        .map(|w| emanager_shared::now_ms() + w * 1000)
        .or(alloc.and_then(|a| a.end_time_ms));
    cfg.drain_margin = Duration::from_secs(args.drain_margin_s);
    cfg.idle_timeout = args.idle_timeout_s.map(Duration::from_secs);
    cfg.resource = args.resource.clone();
    cfg.job_id = args
        .job_id
        .clone()
        .or(alloc.map(|a| a.job_id.clone()))
        .unwrap_or_default();
    cfg.launch_methods = launch_methods;
    cfg.prefetch = args.prefetch;
    cfg.log_path = args
        .log_file
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let broker = AmqpBroker::connect(&args.amqp_url).await?;
    let store = RedisStore::connect(&args.redis_url).await?;
    if let Some(pool) = args.pool {
        if !(args.fair_share_window_s.is_finite() && args.fair_share_window_s > 0.0) {
            anyhow::bail!("--fair-share-window-s must be a positive number of seconds");
        }
        let span = tracing::info_span!("agent", pool = %pool, pilot = %pilot);
        let mut pool_cfg = PoolConfig::new(pool, cfg);
        pool_cfg.share_window_s = args.fair_share_window_s;
        tracing::Instrument::instrument(
            pilot_agent::run_pool(pool_cfg, Arc::new(broker), Arc::new(store), stop_signal()),
            span,
        )
        .await?;
        return Ok(());
    }
    // `/healthz` fails when the heartbeat loop stops turning (a pool agent's lanes come and
    // go with its campaigns, so only a campaign agent is watched).
    emanager_shared::health::watch(
        "heartbeat",
        (cfg.heartbeat * 10).max(Duration::from_secs(30)),
    );
    let span = tracing::info_span!("agent", campaign = %campaign, pilot = %pilot);
    tracing::Instrument::instrument(
        pilot_agent::run(cfg, Arc::new(broker), Arc::new(store), stop_signal()),
        span,
    )
    .await?;
    Ok(())
}
