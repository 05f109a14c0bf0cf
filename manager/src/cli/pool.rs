//! `--pool NAME` and `--weight W` of `emanager run` and `submit`: the campaign runs on the
//! agents of a pool (`pilot-agent --pool NAME`) that a site keeps warm, sharing them with
//! the pool's other campaigns by weight.

use crate::campaign::{CampaignOptions, PoolAttachment};
use crate::config::{Config, GlobalArgs};
use emanager_shared::pool::{check_weight, PoolName};

/// A pool's agents serve the campaign.
#[derive(clap::Args, Debug, Default)]
pub struct PoolArgs {
    /// Run on the agents of pool NAME (`pilot-agent --pool NAME`), shared with the pool's
    /// other campaigns. No local pilot starts unless --pilots asks. Needs RabbitMQ and Redis.
    #[arg(long, value_name = "NAME")]
    pub pool: Option<PoolName>,
    /// This campaign's share of the pool against the other campaigns' weights [default: 1].
    #[arg(long, value_name = "W", requires = "pool", value_parser = weight)]
    pub weight: Option<f64>,
}

fn weight(s: &str) -> Result<f64, String> {
    let w: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    check_weight(w)
}

impl PoolArgs {
    /// The effective configuration: with a pool, local pilots only when --pilots asks.
    pub fn config(
        &self,
        g: &GlobalArgs,
        pilots: Option<u32>,
        cores_per_pilot: Option<u32>,
    ) -> anyhow::Result<Config> {
        let Some(pool) = &self.pool else {
            return Config::resolve(g, pilots, cores_per_pilot);
        };
        let cfg = Config::resolve_for_pool(g, pilots, cores_per_pilot)?;
        if !cfg.distributed() && !g.print_config {
            anyhow::bail!(
                "--pool {pool}: a pool's agents reach the campaign through RabbitMQ and Redis: give --amqp-url and --redis-url (or EMANAGER_AMQP_URL / EMANAGER_REDIS_URL)"
            );
        }
        Ok(cfg)
    }

    /// Records the pool in the campaign's options (so `resume` attaches it again).
    pub fn apply(&self, opts: &mut CampaignOptions) {
        opts.pool = self.pool.clone().map(|name| PoolAttachment {
            name,
            weight: self.weight.unwrap_or(1.0),
        });
    }
}

/// " · pool NAME (weight W)" for the campaign line, or nothing.
pub fn describe(opts: &CampaignOptions) -> String {
    match &opts.pool {
        Some(p) => format!(" · pool {} (weight {})", p.name, p.weight),
        None => String::new(),
    }
}
