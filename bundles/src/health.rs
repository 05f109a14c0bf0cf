//! Whether a bundle service can be relied on: `/healthz` answers 503 with the reasons when
//! every resource is stale (nothing it says is current) or the state store is unreachable
//! (no snapshot reaches the manager, no pilot load, no pilot waits).

use crate::model::Snapshot;
use serde::Serialize;

/// The health of a service: `ok`, or `unavailable` with the reasons.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Health {
    /// `ok` or `unavailable`.
    pub status: &'static str,
    /// Why it is unavailable (empty when ok).
    pub reasons: Vec<String>,
    pub site: String,
    /// When the last round ended (ms; 0 before the first).
    pub last_probe_ms: u64,
    /// Resources in the catalog.
    pub resources: usize,
    /// The stale ones.
    pub stale: Vec<String>,
}

impl Health {
    pub fn is_ok(&self) -> bool {
        self.reasons.is_empty()
    }
}

/// The health of `snapshot`, given the last round's Redis failure if any. Before the first
/// round every resource is stale ("not probed yet"): the service is not ready.
pub fn health(snapshot: &Snapshot, redis_error: Option<&str>) -> Health {
    let stale: Vec<String> = snapshot
        .resources
        .iter()
        .filter(|r| r.stale)
        .map(|r| r.name.clone())
        .collect();
    let mut reasons = Vec::new();
    if !snapshot.resources.is_empty() && stale.len() == snapshot.resources.len() {
        let each: Vec<String> = snapshot
            .resources
            .iter()
            .map(|r| format!("{}: {}", r.name, r.error.as_deref().unwrap_or("stale")))
            .collect();
        reasons.push(format!("every resource is stale ({})", each.join("; ")));
    }
    if let Some(e) = redis_error {
        reasons.push(format!("Redis is unreachable: {e}"));
    }
    Health {
        status: if reasons.is_empty() {
            "ok"
        } else {
            "unavailable"
        },
        reasons,
        site: snapshot.site.clone(),
        last_probe_ms: snapshot.taken_ms,
        resources: snapshot.resources.len(),
        stale,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ResourceSnapshot;

    fn snapshot(stale: &[bool]) -> Snapshot {
        Snapshot {
            site: "s".into(),
            resources: stale
                .iter()
                .enumerate()
                .map(|(i, &stale)| ResourceSnapshot {
                    name: format!("r{i}"),
                    stale,
                    error: stale.then(|| "sinfo: command not found".to_string()),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn one_good_resource_and_redis_make_it_healthy() {
        let h = health(&snapshot(&[true, false]), None);
        assert!(h.is_ok());
        assert_eq!((h.status, h.stale.clone()), ("ok", vec!["r0".to_string()]));
    }

    #[test]
    fn every_resource_stale_makes_it_unavailable_with_their_errors() {
        let h = health(&snapshot(&[true, true]), None);
        assert_eq!(h.status, "unavailable");
        assert!(h.reasons[0].contains("every resource is stale"), "{h:?}");
        assert!(
            h.reasons[0].contains("r1: sinfo: command not found"),
            "{h:?}"
        );
    }

    #[test]
    fn unreachable_redis_makes_it_unavailable() {
        let h = health(&snapshot(&[false]), Some("connection refused"));
        assert_eq!(h.reasons, ["Redis is unreachable: connection refused"]);
    }

    #[test]
    fn an_empty_catalog_is_not_all_stale() {
        assert!(health(&snapshot(&[]), None).is_ok());
    }
}
