//! The `emanager` command line. `main.rs` only calls [`main`]; every subcommand lives in a
//! module of its own here.

mod agents;
mod output;
mod plan;
mod pool;
mod read;
mod run;
mod vs_plan;

use crate::config::GlobalArgs;
use clap::{Parser, Subcommand};

/// Exit codes (documented in the README).
pub mod exit {
    /// Every task DONE (or the command succeeded).
    pub const OK: i32 = 0;
    /// Some tasks FAILED or were CANCELED.
    pub const TASKS_FAILED: i32 = 1;
    /// Usage or input error (bad flags, invalid workflow, unknown campaign).
    pub const INPUT: i32 = 2;
    /// Infrastructure error (broker or Redis unreachable, pilots lost for good).
    pub const INFRA: i32 = 3;
    /// Interrupted by the user (Ctrl-C); a distributed campaign goes on and can be resumed.
    pub const INTERRUPTED: i32 = 130;
    /// The reader of standard output went away (`emanager report C | head`): what a process
    /// killed by SIGPIPE reports, without a panic message.
    pub const BROKEN_PIPE: i32 = 141;
}

/// Ends the process quietly with [`exit::BROKEN_PIPE`] when printing to a closed pipe panics
/// (Rust ignores SIGPIPE, so `println!` panics instead of the process dying of it). Other
/// panics keep the default report.
pub fn exit_quietly_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if text.contains("failed printing to stdout") && text.contains("Broken pipe") {
            std::process::exit(exit::BROKEN_PIPE);
        }
        default(info);
    }));
}

/// An error with the exit code it should produce.
#[derive(Debug)]
pub struct CliError {
    pub code: i32,
    pub error: anyhow::Error,
}

pub type CliResult = Result<i32, CliError>;

pub use read::report_json;

/// Tags errors with their exit code.
pub trait Tag<T> {
    fn input(self) -> Result<T, CliError>;
    fn infra(self) -> Result<T, CliError>;
}

impl<T, E: Into<anyhow::Error>> Tag<T> for Result<T, E> {
    fn input(self) -> Result<T, CliError> {
        self.map_err(|e| CliError {
            code: exit::INPUT,
            error: e.into(),
        })
    }
    fn infra(self) -> Result<T, CliError> {
        self.map_err(|e| CliError {
            code: exit::INFRA,
            error: e.into(),
        })
    }
}

/// EManager runs many-task campaigns on pilots: placeholder jobs that stream your tasks
/// onto their cores. Without --amqp-url/--redis-url everything runs in this process
/// (embedded mode); with them, on RabbitMQ and Redis with pilot-agent processes.
///
/// Examples:
///   emanager run examples/quickstart.toml
///   emanager run wf.toml --pilots 2 --cores-per-pilot 8 --redis-url redis://127.0.0.1:6379/
///   emanager status 6f1c0a4e-...      emanager report 6f1c0a4e-... --json
#[derive(Parser, Debug)]
#[command(name = "emanager", version, about, long_about, verbatim_doc_comment)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    Run(run::RunArgs),
    Submit(run::SubmitArgs),
    Resume(run::ResumeArgs),
    Status(read::StatusArgs),
    Cancel(read::CancelArgs),
    List(read::ListArgs),
    Report(read::ReportArgs),
    Validate(read::ValidateArgs),
    Agents(agents::AgentsArgs),
    Resources(read::ResourcesArgs),
    Plan(plan::PlanArgs),
    /// Generate a concrete workflow from a skeleton (EManager's TOML skeletons or the
    /// original Application Skeleton `.input` format).
    ///
    /// Example:
    ///   emanager skeleton examples/skeletons/pipeline.toml --seed 7 --out pipeline.workflow.toml
    #[command(verbatim_doc_comment)]
    Skeleton(crate::skeleton::SkeletonArgs),
}

/// Runs the command line and returns the process exit code.
pub fn main() -> i32 {
    exit_quietly_on_broken_pipe();
    let cli = Cli::parse();
    init_logs(cli.global.quiet, cli.global.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("emanager: cannot start the async runtime: {e}");
            return exit::INFRA;
        }
    };
    match rt.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("emanager: {:#}", e.error);
            e.code
        }
    }
}

/// `--print-config`: the effective configuration as TOML (the program exits after it).
pub(crate) fn print_config(cfg: &crate::config::Config) -> CliResult {
    println!("{}", toml::to_string_pretty(cfg).unwrap_or_default());
    Ok(exit::OK)
}

async fn dispatch(cli: Cli) -> CliResult {
    let g = cli.global;
    // The read commands and `validate` share one configuration (`run`, `submit` and
    // `resume` handle --print-config themselves: their flags add to it).
    let reads_config = matches!(
        cli.command,
        Command::Status(_)
            | Command::Cancel(_)
            | Command::List(_)
            | Command::Report(_)
            | Command::Validate(_)
            | Command::Agents(_)
            | Command::Resources(_)
    );
    if g.print_config && reads_config {
        return print_config(&crate::config::Config::for_reads(&g).input()?);
    }
    match cli.command {
        Command::Run(a) => run::run(&g, a).await,
        Command::Submit(a) => run::submit(&g, a).await,
        Command::Resume(a) => run::resume(&g, a).await,
        Command::Status(a) => read::status(&g, a).await,
        Command::Cancel(a) => read::cancel(&g, a).await,
        Command::List(a) => read::list(&g, a).await,
        Command::Report(a) => read::report(&g, a).await,
        Command::Validate(a) => read::validate(&g, a).await,
        Command::Agents(a) => agents::agents(&g, a).await,
        Command::Resources(a) => read::resources(&g, a).await,
        Command::Plan(a) => plan::plan(&g, a).await,
        Command::Skeleton(a) => crate::skeleton::run(&a).map(|_| exit::OK).input(),
    }
}

fn init_logs(quiet: bool, format: crate::config::LogFormat) {
    let default = if quiet { "error" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    if format == crate::config::LogFormat::Json {
        let _ = tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
        return;
    }
    // Colours only on a terminal: a log file or a batch job's output gets plain text.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}
