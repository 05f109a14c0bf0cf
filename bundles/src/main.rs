//! `bundle-service`: probes a site's resources, serves them over HTTP, writes the snapshot
//! to Redis. See docs/bundles.md.

use anyhow::Context;
use clap::Parser;
use emanager_bundles::api;
use emanager_bundles::estimator::WaitHistory;
use emanager_bundles::service::{Bundle, BundleConfig};
use emanager_bundles::traces::load_trace;
use emanager_shared::catalog::Catalog;
use std::path::PathBuf;
use std::time::Duration;

const EXAMPLES: &str = "\
Examples:
  # probe the dev clusters every 60 s, serve on :7781, snapshot to Redis
  bundle-service --catalog examples/resources.toml --listen 127.0.0.1:7781 --interval 60 \\
      --site dev --redis-url redis://127.0.0.1:6379/ \\
      --amqp-mgmt-url http://guest:guest@127.0.0.1:15672
  # probe once and print the snapshot as JSON
  bundle-service --catalog examples/resources.toml --resource localhost-slurm --once
  curl '127.0.0.1:7781/v1/predict?resource=localhost-slurm&queue=debug&nodes=1&walltime=00:30:00'";

/// Probes resources, queues and pilot load of one site; predicts queue waits.
#[derive(Parser, Debug)]
#[command(name = "bundle-service", version, after_help = EXAMPLES)]
struct Config {
    /// Resource catalog (TOML).
    #[arg(
        long,
        env = "EMANAGER_CATALOG",
        default_value = "examples/resources.toml"
    )]
    catalog: PathBuf,
    /// Only these resources of the catalog (repeatable); default all.
    #[arg(long = "resource")]
    resources: Vec<String>,
    /// HTTP address of the API.
    #[arg(
        long,
        env = "EMANAGER_BUNDLES_LISTEN",
        default_value = "127.0.0.1:7781"
    )]
    listen: String,
    /// Seconds between probe rounds (±10 % jitter).
    #[arg(long, default_value_t = 60.0)]
    interval: f64,
    /// Name of this site (Redis key em:bundles:<site>).
    #[arg(long, env = "EMANAGER_SITE", default_value = "local")]
    site: String,
    /// State store: pilot load is read from it and the snapshot written to it.
    #[arg(long, env = "EMANAGER_REDIS_URL")]
    redis_url: Option<String>,
    /// RabbitMQ management API with credentials.
    #[arg(long, env = "EMANAGER_AMQP_MGMT_URL")]
    amqp_mgmt_url: Option<String>,
    /// Wait traces loaded as the estimator's prior (.swf, or XSEDE exp_<c>c_<m>m_*.txt).
    #[arg(long = "prior")]
    priors: Vec<PathBuf>,
    /// Cores (SWF: processors) per node in the prior traces, to turn their sizes into nodes.
    #[arg(long, default_value_t = 1)]
    prior_cores_per_node: u32,
    /// Probe once, print the snapshot as JSON, exit.
    #[arg(long)]
    once: bool,
    /// Print the configuration and exit.
    #[arg(long)]
    print_config: bool,
    /// Print the OpenAPI description and exit.
    #[arg(long)]
    print_openapi: bool,
    /// Seconds the Redis snapshot is kept after the last write (default: a day, or ten
    /// intervals). Readers mark it stale after three intervals.
    #[arg(long, value_name = "SECONDS")]
    snapshot_retention: Option<u64>,
    /// Log format: `text` or `json` (one JSON object a line, with span fields).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// How logs are written to stderr.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
enum LogFormat {
    Text,
    Json,
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init(),
        LogFormat::Text => builder.init(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cfg = Config::parse();
    init_logs(cfg.log_format);
    if cfg.print_config {
        println!("{cfg:#?}");
        return Ok(());
    }
    if cfg.print_openapi {
        println!(
            "{}",
            serde_json::to_string_pretty(&emanager_bundles::openapi::openapi())?
        );
        return Ok(());
    }
    anyhow::ensure!(
        cfg.interval > 0.0,
        "--interval must be positive, got {}",
        cfg.interval
    );
    let mut catalog = Catalog::load(&cfg.catalog)
        .with_context(|| format!("loading catalog {}", cfg.catalog.display()))?;
    if !cfg.resources.is_empty() {
        let text = std::fs::read_to_string(&cfg.catalog)?;
        catalog = only_resources(&text, &cfg.resources)
            .with_context(|| format!("catalog {}", cfg.catalog.display()))?;
    }
    let mut history = WaitHistory::new();
    for path in &cfg.priors {
        let samples = load_trace(path, cfg.prior_cores_per_node)?;
        history.add_prior(&path.display().to_string(), samples);
    }
    let mut config = BundleConfig::new(&cfg.site, Duration::from_secs_f64(cfg.interval));
    config.redis_url = cfg.redis_url.clone();
    config.amqp_mgmt_url = cfg.amqp_mgmt_url.clone();
    if let Some(secs) = cfg.snapshot_retention {
        config.snapshot_retention = Duration::from_secs(secs.max(1));
    }
    let bundle = Bundle::new(&catalog, config, history);

    if cfg.once {
        let snap = bundle.probe_once().await;
        println!("{}", serde_json::to_string_pretty(&snap)?);
        return Ok(());
    }

    // Handlers first: a SIGTERM right after "listening" must already be graceful.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .with_context(|| format!("--listen {}: cannot bind", cfg.listen))?;
    tracing::info!(addr = %listener.local_addr()?, site = %cfg.site, "bundle service listening");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let prober = tokio::spawn(bundle.clone().run(stop_rx.clone()));
    let mut http_stop = stop_rx;
    let server = axum::serve(listener, api::router(bundle)).with_graceful_shutdown(async move {
        let _ = http_stop.changed().await;
    });
    let server = tokio::spawn(async move { server.await });
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    prober.await?;
    server.await??;
    Ok(())
}

/// The catalog restricted to `names` (each must exist).
fn only_resources(text: &str, names: &[String]) -> anyhow::Result<Catalog> {
    let mut doc: toml::Table = toml::from_str(text)?;
    if let Some(toml::Value::Table(res)) = doc.get_mut("resources") {
        for n in names {
            anyhow::ensure!(res.contains_key(n), "no resource `{n}`");
        }
        res.retain(|k, _| names.iter().any(|n| n == k));
    }
    Ok(Catalog::parse(&toml::to_string(&doc)?)?)
}
