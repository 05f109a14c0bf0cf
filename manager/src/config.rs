//! One `Config` for the `emanager` binary, from a file (`emanager.toml`), environment
//! variables and flags, in that order of precedence (flags win). `--print-config` shows it.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What `emanager.toml` may contain (every key optional).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub amqp_url: Option<String>,
    pub redis_url: Option<String>,
    pub workdir: Option<PathBuf>,
    pub pilots: Option<u32>,
    pub cores_per_pilot: Option<u32>,
    pub heartbeat_ms: Option<u64>,
    pub lookahead_s: Option<f64>,
    pub agent_bin: Option<PathBuf>,
    pub pilot_start_timeout_s: Option<u64>,
    pub max_pilot_replacements: Option<u32>,
    /// Resource catalog (`resources.toml`) for batch pilots, `--pilot` and the planner.
    pub resources: Option<PathBuf>,
}

/// Options every command shares (flags, each with its environment variable).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct GlobalArgs {
    /// Configuration file [default: ./emanager.toml when it exists].
    #[arg(long, env = "EMANAGER_CONFIG", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// RabbitMQ URL; with --redis-url selects distributed mode (default: embedded mode).
    #[arg(long, env = "EMANAGER_AMQP_URL", global = true, value_name = "URL")]
    pub amqp_url: Option<String>,
    /// Redis URL; with --amqp-url selects distributed mode (default: embedded mode).
    #[arg(long, env = "EMANAGER_REDIS_URL", global = true, value_name = "URL")]
    pub redis_url: Option<String>,
    /// Run in one process with in-memory services even when URLs are configured.
    #[arg(long, global = true)]
    pub embedded: bool,
    /// Directory for task sandboxes and pilot logs.
    #[arg(long, env = "EMANAGER_WORKDIR", global = true, value_name = "DIR")]
    pub workdir: Option<PathBuf>,
    /// The `pilot-agent` program local pilots run [default: `agent_bin` of the file, else
    /// the one next to `emanager`].
    #[arg(long, env = "EMANAGER_AGENT_BIN", global = true, value_name = "PATH")]
    pub agent_bin: Option<PathBuf>,
    /// Resource catalog (`resources.toml`, see docs/resources.md): the machines pilots may
    /// run on, for `--pilot`, the planner and `validate`.
    #[arg(long, env = "EMANAGER_RESOURCES", global = true, value_name = "FILE")]
    pub resources: Option<PathBuf>,
    /// Print the effective configuration and exit.
    #[arg(long, global = true)]
    pub print_config: bool,
    /// Machine-readable output (stable field names, see docs/cli.md).
    #[arg(long, global = true)]
    pub json: bool,
    /// Print only what was asked for (no progress, no summary).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Log format: `text` or `json` (one JSON object a line, with span fields).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How logs are written to stderr.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The effective configuration.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Config {
    pub config_file: Option<PathBuf>,
    /// `None` in embedded mode.
    pub amqp_url: Option<String>,
    pub redis_url: Option<String>,
    pub workdir: PathBuf,
    pub pilots: u32,
    pub cores_per_pilot: u32,
    pub heartbeat_ms: u64,
    pub lookahead_s: f64,
    /// The `pilot-agent` program; `resolve` always sets it (flag, env, file, or the one
    /// next to this executable), so `--print-config` shows the program that will run.
    pub agent_bin: Option<PathBuf>,
    pub pilot_start_timeout_s: u64,
    pub max_pilot_replacements: u32,
    /// The resource catalog for the planner; `None` when none is configured.
    pub resources: Option<PathBuf>,
}

impl Config {
    pub fn distributed(&self) -> bool {
        self.amqp_url.is_some()
    }

    /// The resource catalog, when one is configured.
    pub fn catalog(&self) -> anyhow::Result<Option<emanager_shared::catalog::Catalog>> {
        self.resources
            .as_ref()
            .map(|p| {
                emanager_shared::catalog::Catalog::load(p)
                    .with_context(|| format!("resource catalog {}", p.display()))
            })
            .transpose()
    }

    /// The Redis URL for read commands (status, list, report): the configured one or the default.
    pub fn redis_url_or_default(&self) -> String {
        self.redis_url
            .clone()
            .unwrap_or_else(|| emanager_shared::DEFAULT_REDIS_URL.to_string())
    }

    /// The configuration of the commands that read a campaign from Redis (status, list,
    /// report, cancel, agents, resources) and of `validate`: as [`Config::resolve`], with the
    /// Redis they read filled in (the configured one, else the default).
    pub fn for_reads(g: &GlobalArgs) -> anyhow::Result<Config> {
        let mut cfg = Config::resolve(g, None, None)?;
        cfg.redis_url = Some(cfg.redis_url_or_default());
        Ok(cfg)
    }

    /// Resolves file < env < flags. `pilots`/`cores` come from the `run` flags when given.
    pub fn resolve(
        g: &GlobalArgs,
        pilots: Option<u32>,
        cores_per_pilot: Option<u32>,
    ) -> anyhow::Result<Config> {
        Self::resolve_for(g, pilots, cores_per_pilot, false)
    }

    /// As [`Config::resolve`], for a campaign served by a pool's agents: it starts local
    /// pilots only when `--pilots` asks (none by default, and none from the file).
    pub fn resolve_for_pool(
        g: &GlobalArgs,
        pilots: Option<u32>,
        cores_per_pilot: Option<u32>,
    ) -> anyhow::Result<Config> {
        Self::resolve_for(g, pilots, cores_per_pilot, true)
    }

    fn resolve_for(
        g: &GlobalArgs,
        pilots: Option<u32>,
        cores_per_pilot: Option<u32>,
        pool: bool,
    ) -> anyhow::Result<Config> {
        let (file, path) = read_file(g.config.as_deref())?;
        // A catalog named in the file is relative to the file, not to the working directory.
        let file_dir = path
            .as_deref()
            .and_then(Path::parent)
            .unwrap_or(Path::new(""));
        let resources = g
            .resources
            .clone()
            .or_else(|| file.resources.as_ref().map(|r| file_dir.join(r)));
        let mut amqp = g.amqp_url.clone().or(file.amqp_url.clone());
        let mut redis = g.redis_url.clone().or(file.redis_url.clone());
        if g.embedded {
            amqp = None;
            redis = None;
        } else if amqp.is_some() || redis.is_some() {
            amqp.get_or_insert_with(|| emanager_shared::DEFAULT_AMQP_URL.to_string());
            redis.get_or_insert_with(|| emanager_shared::DEFAULT_REDIS_URL.to_string());
        }
        let cfg = Config {
            config_file: path,
            amqp_url: amqp,
            redis_url: redis,
            workdir: g
                .workdir
                .clone()
                .or(file.workdir)
                .unwrap_or_else(|| PathBuf::from("emanager-runs")),
            pilots: if pool {
                pilots.unwrap_or(0)
            } else {
                pilots.or(file.pilots).unwrap_or(1)
            },
            cores_per_pilot: cores_per_pilot
                .or(file.cores_per_pilot)
                .unwrap_or_else(pilot_agent::discovery::local_cores),
            heartbeat_ms: file.heartbeat_ms.unwrap_or(1000),
            lookahead_s: file.lookahead_s.unwrap_or(2.0),
            agent_bin: Some(
                g.agent_bin
                    .clone()
                    .or(file.agent_bin)
                    .unwrap_or_else(crate::pilots::find_agent_bin),
            ),
            pilot_start_timeout_s: file.pilot_start_timeout_s.unwrap_or(60),
            max_pilot_replacements: file.max_pilot_replacements.unwrap_or(2),
            resources,
        };
        if cfg.pilots == 0 && !pool {
            anyhow::bail!("--pilots must be at least 1 (or run on a pool's agents with --pool)");
        }
        if cfg.cores_per_pilot == 0 {
            anyhow::bail!("--cores-per-pilot must be at least 1");
        }
        Ok(cfg)
    }
}

fn read_file(explicit: Option<&Path>) -> anyhow::Result<(FileConfig, Option<PathBuf>)> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => {
            let default = PathBuf::from("emanager.toml");
            if !default.is_file() {
                return Ok((FileConfig::default(), None));
            }
            default
        }
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
    let file: FileConfig = toml::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: {}valid keys: amqp_url, redis_url, workdir, pilots, cores_per_pilot, heartbeat_ms, lookahead_s, agent_bin, pilot_start_timeout_s, max_pilot_replacements, resources",
            path.display(),
            e
        )
    })?;
    Ok((file, Some(path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("emanager.toml");
        std::fs::write(&p, text).unwrap();
        (dir, p)
    }

    #[test]
    fn flags_beat_the_file() {
        let (_d, p) =
            file_with("pilots = 3\ncores_per_pilot = 8\nredis_url = \"redis://file:6379/\"\n");
        let g = GlobalArgs {
            config: Some(p),
            redis_url: Some("redis://flag:6379/".into()),
            ..Default::default()
        };
        let cfg = Config::resolve(&g, Some(5), None).unwrap();
        assert_eq!(cfg.pilots, 5);
        assert_eq!(cfg.cores_per_pilot, 8);
        assert_eq!(cfg.redis_url.as_deref(), Some("redis://flag:6379/"));
        assert!(cfg.distributed(), "a Redis URL selects distributed mode");
    }

    #[test]
    fn no_urls_means_embedded() {
        let cfg = Config::resolve(
            &GlobalArgs {
                config: None,
                ..Default::default()
            },
            None,
            None,
        );
        // (A stray ./emanager.toml in the test's cwd would change this; there is none.)
        assert!(!cfg.unwrap().distributed());
    }

    #[test]
    fn unknown_keys_name_the_valid_ones() {
        let (_d, p) = file_with("pilot = 3\n");
        let g = GlobalArgs {
            config: Some(p),
            ..Default::default()
        };
        let e = Config::resolve(&g, None, None).unwrap_err().to_string();
        assert!(e.contains("unknown field `pilot`"), "{e}");
        assert!(e.contains("valid keys: amqp_url"), "{e}");
    }

    #[test]
    fn the_catalog_comes_from_the_file_relative_to_it_unless_a_flag_names_one() {
        let (dir, p) = file_with("resources = \"sites/resources.toml\"\n");
        let g = GlobalArgs {
            config: Some(p.clone()),
            ..Default::default()
        };
        let cfg = Config::resolve(&g, None, None).unwrap();
        assert_eq!(cfg.resources, Some(dir.path().join("sites/resources.toml")));
        let g = GlobalArgs {
            config: Some(p),
            resources: Some("flag.toml".into()),
            ..Default::default()
        };
        let cfg = Config::resolve(&g, None, None).unwrap();
        assert_eq!(cfg.resources, Some(PathBuf::from("flag.toml")));
        let none = Config::resolve(&GlobalArgs::default(), None, None).unwrap();
        assert_eq!(none.resources, None);
    }

    #[test]
    fn the_agent_program_is_always_resolved_flag_first_then_the_file() {
        let (_d, p) = file_with("agent_bin = \"/file/pilot-agent\"\n");
        let from_file = GlobalArgs {
            config: Some(p.clone()),
            ..Default::default()
        };
        let cfg = Config::resolve(&from_file, None, None).unwrap();
        assert_eq!(cfg.agent_bin, Some(PathBuf::from("/file/pilot-agent")));
        let from_flag = GlobalArgs {
            config: Some(p),
            agent_bin: Some("/flag/pilot-agent".into()),
            ..Default::default()
        };
        let cfg = Config::resolve(&from_flag, None, None).unwrap();
        assert_eq!(cfg.agent_bin, Some(PathBuf::from("/flag/pilot-agent")));
        // Without either, the one `find_agent_bin` finds (never left unset).
        let cfg = Config::resolve(&GlobalArgs::default(), None, None).unwrap();
        assert!(cfg.agent_bin.is_some());
    }

    #[test]
    fn read_commands_show_the_redis_they_read() {
        let cfg = Config::for_reads(&GlobalArgs::default()).unwrap();
        assert_eq!(
            cfg.redis_url.as_deref(),
            Some(emanager_shared::DEFAULT_REDIS_URL)
        );
    }

    #[test]
    fn a_pool_campaign_starts_no_local_pilot_unless_asked() {
        let (_d, p) = file_with("pilots = 3\n");
        let g = GlobalArgs {
            config: Some(p),
            ..Default::default()
        };
        assert_eq!(Config::resolve_for_pool(&g, None, None).unwrap().pilots, 0);
        assert_eq!(
            Config::resolve_for_pool(&g, Some(2), None).unwrap().pilots,
            2
        );
        assert!(Config::resolve(&g, Some(0), None).is_err());
    }

    #[test]
    fn embedded_flag_wins_over_urls() {
        let g = GlobalArgs {
            amqp_url: Some("amqp://x".into()),
            embedded: true,
            ..Default::default()
        };
        assert!(!Config::resolve(&g, None, None).unwrap().distributed());
    }
}
