//! Pools: long-lived agents that a site keeps warm and that serve every campaign attached
//! to the pool, sharing their cores between them by weight (see `docs/ARCHITECTURE.md`,
//! section "Pools").
//!
//! The registry of a pool lives in the state store: the campaigns attached with their
//! weights (a manager writes them), and the agents serving the pool with their resources
//! and heartbeats (each agent writes its own entry every heartbeat).

use crate::ids::{CampaignId, PilotId};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Longest pool name.
pub const MAX_POOL_NAME: usize = 64;

/// The name of a pool: 1 to 64 of `A-Z a-z 0-9 . _ -`, starting with a letter or digit (it
/// goes into Redis keys and log lines as it is).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PoolName(String);

/// Why a pool name was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{name}` is not a pool name: use 1 to {MAX_POOL_NAME} of A-Z a-z 0-9 . _ -, starting with a letter or digit")]
pub struct BadPoolName {
    pub name: String,
}

impl PoolName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for PoolName {
    type Err = BadPoolName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = !s.is_empty()
            && s.len() <= MAX_POOL_NAME
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(PoolName(s.to_string()))
        } else {
            Err(BadPoolName { name: s.into() })
        }
    }
}

impl TryFrom<String> for PoolName {
    type Error = BadPoolName;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<PoolName> for String {
    fn from(p: PoolName) -> String {
        p.0
    }
}

impl fmt::Display for PoolName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PoolName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PoolName({})", self.0)
    }
}

/// A campaign's weight in a pool must be positive and finite; this says why one is not.
pub fn check_weight(w: f64) -> Result<f64, String> {
    if w.is_finite() && w > 0.0 && w <= 1e6 {
        Ok(w)
    } else {
        Err(format!(
            "weight {w} is not a positive number up to 1e6 (a campaign gets cores in proportion to it)"
        ))
    }
}

/// A campaign attached to a pool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PoolCampaign {
    pub campaign: CampaignId,
    /// Its share of the pool's cores relative to the other campaigns' weights.
    pub weight: f64,
}

/// One campaign a pool agent serves: the pilot it registered as for that campaign.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PoolLane {
    pub campaign: CampaignId,
    pub pilot: PilotId,
    pub weight: f64,
    /// Cores running this campaign's tasks.
    pub busy_cores: u32,
    /// This campaign's tasks accepted and waiting for cores.
    pub queued: u32,
}

/// A pool agent's entry in the registry (`em:pool:{NAME}:agents`), rewritten every heartbeat.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PoolAgent {
    pub id: PilotId,
    /// `ACTIVE` while it takes campaigns, `DRAINING` once it stops.
    pub state: String,
    pub resource: String,
    pub job_id: String,
    pub host: String,
    pub pid: u32,
    pub nodes: u32,
    pub cores: u32,
    pub gpus: u32,
    pub mem_mb: u64,
    pub busy_cores: u32,
    pub version: String,
    pub log_path: String,
    pub started_ms: u64,
    /// Last heartbeat (ms since the epoch) and how long it counts.
    pub beat_ms: u64,
    pub ttl_ms: u64,
    pub lanes: Vec<PoolLane>,
}

impl PoolAgent {
    /// Whether its last heartbeat is younger than its TTL at `now_ms`.
    pub fn alive(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.beat_ms) <= self.ttl_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_names_are_safe_in_keys() {
        for good in ["site-a", "gpu.pool_2", "A", &"x".repeat(MAX_POOL_NAME)] {
            assert_eq!(good.parse::<PoolName>().unwrap().as_str(), good);
        }
        for bad in [
            "",
            "-a",
            "a b",
            "a:b",
            "{a}",
            "a/b",
            &"x".repeat(MAX_POOL_NAME + 1),
        ] {
            let e = bad.parse::<PoolName>().unwrap_err().to_string();
            assert!(e.contains("not a pool name"), "{bad}: {e}");
        }
    }

    #[test]
    fn pool_names_are_checked_when_read_back() {
        let p: PoolName = serde_json::from_str("\"site-a\"").unwrap();
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"site-a\"");
        assert!(serde_json::from_str::<PoolName>("\"a:b\"").is_err());
    }

    #[test]
    fn weights_must_be_positive_and_finite() {
        assert_eq!(check_weight(2.5), Ok(2.5));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e7] {
            assert!(check_weight(bad).is_err(), "{bad}");
        }
    }
}
