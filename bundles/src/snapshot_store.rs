//! The snapshot in Redis (`em:bundles:<site>`, JSON) so the manager reads what every site's
//! bundle service saw without HTTP, and [`merge`] for several sites.
//!
//! A snapshot lives long after its service stops (the retention, a day by default): readers
//! mark it stale once it is older than three of its service's rounds
//! ([`Snapshot::mark_if_service_stopped`]), so a dead service's resources show as stale with
//! their age instead of vanishing.

use crate::model::Snapshot;
use redis::AsyncCommands;
use std::time::Duration;

/// Key prefix of the snapshots.
pub const KEY_PREFIX: &str = "em:bundles:";

/// The key of `site`'s snapshot.
pub fn snapshot_key(site: &str) -> String {
    format!("{KEY_PREFIX}{site}")
}

async fn connect(redis_url: &str) -> anyhow::Result<redis::aio::MultiplexedConnection> {
    use anyhow::Context;
    let client =
        redis::Client::open(redis_url).with_context(|| format!("Redis URL `{redis_url}`"))?;
    tokio::time::timeout(
        Duration::from_secs(5),
        client.get_multiplexed_async_connection(),
    )
    .await
    .map_err(|_| anyhow::anyhow!("Redis at {redis_url}: connect timed out after 5 s"))?
    .with_context(|| format!("Redis at {redis_url} (start it: deploy/dev/services-up.sh)"))
}

/// Writes `snapshot` under its site's key, kept for `retention` after this write.
pub async fn write_snapshot(
    redis_url: &str,
    snapshot: &Snapshot,
    retention: Duration,
) -> anyhow::Result<()> {
    let mut con = connect(redis_url).await?;
    let json = serde_json::to_string(snapshot)?;
    let _: () = con
        .set_ex(
            snapshot_key(&snapshot.site),
            json,
            retention.as_secs().max(1),
        )
        .await?;
    Ok(())
}

/// Every site's snapshot in the store, those of services that stopped updating marked
/// stale (see [`Snapshot::mark_if_service_stopped`]); unreadable ones are reported as
/// errors, not skipped.
pub async fn read_snapshots(redis_url: &str) -> anyhow::Result<Vec<Snapshot>> {
    let mut con = connect(redis_url).await?;
    // Only string keys: anything else under the prefix is not ours to read.
    let mut keys: Vec<String> = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{KEY_PREFIX}*"))
            .arg("COUNT")
            .arg(100)
            .arg("TYPE")
            .arg("string")
            .query_async(&mut con)
            .await?;
        keys.extend(page);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    keys.sort();
    let mut out = Vec::new();
    for key in keys {
        // Other data may share the prefix (the pilot-wait stream): snapshots are strings.
        let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut con).await?;
        if kind != "string" {
            continue;
        }
        let json: Option<String> = con.get(&key).await?;
        if let Some(json) = json {
            let mut snap: Snapshot = serde_json::from_str(&json)
                .map_err(|e| anyhow::anyhow!("Redis key {key}: not a bundle snapshot: {e}"))?;
            snap.mark_if_service_stopped(emanager_shared::now_ms());
            out.push(snap);
        }
    }
    Ok(out)
}

/// One view of several sites: every resource once (the freshest good probe wins, a stale
/// one only when no site has a good one; each keeps its own `site`), every pilot queue and
/// pilot once (newest snapshot wins), all errors prefixed by their site, and a line per
/// service that stopped updating. The site is the sites joined with `+`.
pub fn merge(snapshots: &[Snapshot]) -> Snapshot {
    let mut by_age: Vec<&Snapshot> = snapshots.iter().collect();
    by_age.sort_by_key(|s| std::cmp::Reverse(s.taken_ms));
    let mut out = Snapshot {
        site: snapshots
            .iter()
            .map(|s| s.site.as_str())
            .collect::<Vec<_>>()
            .join("+"),
        taken_ms: by_age.first().map_or(0, |s| s.taken_ms),
        interval_ms: snapshots.iter().map(|s| s.interval_ms).max().unwrap_or(0),
        ..Default::default()
    };
    for snap in &by_age {
        for r in &snap.resources {
            match out.resources.iter_mut().find(|x| x.name == r.name) {
                None => out.resources.push(r.clone()),
                Some(x) => {
                    let better =
                        (x.stale && !r.stale) || (x.stale == r.stale && r.probed_ms > x.probed_ms);
                    if better {
                        *x = r.clone();
                    }
                }
            }
        }
        for q in &snap.pilot_queues {
            if !out.pilot_queues.iter().any(|x| x.queue == q.queue) {
                out.pilot_queues.push(q.clone());
            }
        }
        for p in &snap.pilots {
            if !out
                .pilots
                .iter()
                .any(|x| x.campaign == p.campaign && x.pilot == p.pilot)
            {
                out.pilots.push(p.clone());
            }
        }
        out.errors
            .extend(snap.errors.iter().map(|e| format!("{}: {e}", snap.site)));
        if let Some(age) = snap.stopped_updating_s {
            out.errors.push(format!(
                "{}: bundle service stopped updating {age} s ago",
                snap.site
            ));
        }
    }
    out.resources.sort_by(|a, b| a.name.cmp(&b.name));
    out
}
