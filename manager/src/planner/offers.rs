//! The catalog, a bundle snapshot and our pilots' recorded queue waits mapped onto
//! [`ResourceOffer`]s. Pure: values in, offers and notes out (the caller reads the files and
//! Redis).
//!
//! From the catalog: node shape (cores, GPUs, memory), queues with their limits, the
//! default queue, the cost. From the resource's last probe in the snapshot, when there is
//! one: usable and idle nodes of its default queue, and per queue a [`QueueWaitModel`] that
//! asks the bundle estimator (`emanager_bundles::estimator`) for each pilot's size and
//! walltime (backlog and backfill), with our own pilots' recorded waits in that queue as
//! observed evidence. Without a probe: [`DEFAULT_WAIT`] (moved toward our recorded waits,
//! when there are some) and no idle nodes, and a note says so. A stale entry (its last probe
//! failed) is used, with a note.

use super::queue_waits::QueueWaitModel;
use super::{QueueOffer, ResourceOffer, WaitEstimate};
use crate::progress::format_duration;
use emanager_bundles::estimator::{QueueBacklog, WaitHistory};
use emanager_bundles::model::ResourceSnapshot;
use emanager_bundles::observations::OwnWaits;
use emanager_bundles::Snapshot;
use emanager_shared::catalog::{AccessKind, Catalog, CatalogError, ResourceEntry};
use emanager_shared::model::PilotWait;
use std::sync::Arc;
use std::time::Duration;

/// What the bundle services and our own pilots tell about the resources now; nothing at
/// all (`default`) plans from the catalog alone.
#[derive(Clone, Copy, Debug, Default)]
pub struct Observations<'a> {
    /// Every bundle service's snapshot, merged (`emanager_bundles::merge`).
    pub snapshot: Option<&'a Snapshot>,
    /// Our batch pilots' queue waits (the store's `em:pilot-waits` stream).
    pub pilot_waits: &'a [PilotWait],
}

impl<'a> Observations<'a> {
    /// A snapshot and no recorded waits.
    pub fn of_snapshot(snapshot: Option<&'a Snapshot>) -> Observations<'a> {
        Observations {
            snapshot,
            pilot_waits: &[],
        }
    }
}

/// Queue wait assumed for a batch resource no snapshot covers: p10 1 min, median 30 min,
/// p90 4 h. Between the measured XSEDE pilot waits (tens of seconds to minutes for 1-8 node
/// pilots, tails of hours) and XDMoD's mean waits of hours per job
/// (`shared/reference/queue-wait-facts.md`).
pub const DEFAULT_WAIT: WaitEstimate = WaitEstimate {
    p10_s: 60.0,
    p50_s: 1800.0,
    p90_s: 14_400.0,
};

/// Walltime limit of the implicit queue of a `local` resource (no batch system; the pilot
/// manager stops pilots once the work is done).
pub const LOCAL_MAX_WALLTIME_S: f64 = 30.0 * 86_400.0;

/// Name of that implicit queue.
pub const LOCAL_QUEUE: &str = "local";

/// Memory per node when the catalog does not say: memory is then no limit.
const UNKNOWN_MEMORY_MB: u64 = 1 << 32;

/// Walltime of the request the resource's summary wait is estimated for, at most (the
/// bundle service's metrics use the same: 1 h or the queue's limit).
const ESTIMATE_WALLTIME_S: f64 = 3600.0;

/// Where an offer's idle nodes and queue wait come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OfferSource {
    /// A `local` resource: no batch queue, starts at once.
    Local,
    /// The resource's last probe in the bundle snapshot.
    Snapshot,
    /// The last good probe of a resource whose latest probe failed.
    StaleSnapshot,
    /// The catalog alone: [`DEFAULT_WAIT`] (moved toward our recorded waits), no idle nodes.
    Catalog,
}

impl OfferSource {
    /// Stable name for `--json`.
    pub fn as_str(self) -> &'static str {
        match self {
            OfferSource::Local => "local",
            OfferSource::Snapshot => "snapshot",
            OfferSource::StaleSnapshot => "stale-snapshot",
            OfferSource::Catalog => "catalog",
        }
    }
}

/// The offers to plan with, where each one's numbers come from, and what the user should
/// know about them.
#[derive(Clone, Debug, PartialEq)]
pub struct Offers {
    pub offers: Vec<ResourceOffer>,
    /// Per offer, in the same order.
    pub sources: Vec<OfferSource>,
    /// Resources planned without a probe, stale probes, queues not reported.
    pub notes: Vec<String>,
}

/// The offers of the catalog's resources named in `only` (all of them when empty), in
/// catalog order, with the load and waits of the snapshot (merged over sites) where it has
/// them and our pilots' recorded waits. An unknown name is an error listing the known ones.
pub fn offers_from(
    catalog: &Catalog,
    only: &[String],
    observed: Observations,
) -> Result<Offers, CatalogError> {
    for name in only {
        catalog.get(name)?;
    }
    let entries: Vec<&ResourceEntry> = catalog
        .resources()
        .filter(|e| only.is_empty() || only.iter().any(|n| n == &e.name))
        .collect();
    let mut own = OwnWaits::default();
    let batch: Vec<ResourceEntry> = entries
        .iter()
        .filter(|e| e.access != AccessKind::Local)
        .map(|e| (*e).clone())
        .collect();
    own.learn_pilot_waits(&batch, observed.pilot_waits);
    let history = Arc::new(own.history);
    let mut out = Offers {
        offers: Vec::new(),
        sources: Vec::new(),
        notes: Vec::new(),
    };
    for entry in entries {
        let mut offer = catalog_offer(entry);
        let source = if entry.access == AccessKind::Local {
            OfferSource::Local
        } else {
            let probed = observed
                .snapshot
                .and_then(|s| Some((s, s.resource(&entry.name)?)));
            let applied = probed.map(|(s, r)| {
                apply_probe(&mut offer, entry, r, s.taken_ms, &history, &mut out.notes)
            });
            let source = match applied {
                Some(Ok((source, note))) => {
                    out.notes.extend(note);
                    source
                }
                Some(Err(why)) => {
                    out.notes.push(assumed(&entry.name, &why));
                    OfferSource::Catalog
                }
                None => {
                    out.notes.push(assumed(&entry.name, ""));
                    OfferSource::Catalog
                }
            };
            out.notes.extend(use_recorded_waits(
                &mut offer,
                observed.pilot_waits,
                &history,
            ));
            summarize_default_queue(&mut offer);
            source
        };
        out.offers.push(offer);
        out.sources.push(source);
    }
    Ok(out)
}

/// "no bundle snapshot for X: assuming ..." with an optional reason.
fn assumed(resource: &str, why: &str) -> String {
    let w = |s: f64| format_duration(Duration::from_secs_f64(s));
    let why = if why.is_empty() {
        String::new()
    } else {
        format!(" ({why})")
    };
    format!(
        "no bundle snapshot for {resource}{why}: assuming a queue wait of {} (p10 {}, p90 {}) and no idle nodes",
        w(DEFAULT_WAIT.p50_s),
        w(DEFAULT_WAIT.p10_s),
        w(DEFAULT_WAIT.p90_s)
    )
}

/// The offer of `entry` from the catalog alone.
fn catalog_offer(entry: &ResourceEntry) -> ResourceOffer {
    let local = entry.access == AccessKind::Local;
    let mut queues: Vec<QueueOffer> = entry
        .queues
        .iter()
        .map(|q| QueueOffer {
            min_nodes: q.min_nodes,
            ..QueueOffer::new(q.name.clone(), q.max_walltime_s as f64, q.max_nodes)
        })
        .collect();
    if queues.is_empty() {
        // Only `local` resources may have no queue (the catalog checks it).
        queues.push(QueueOffer::new(
            LOCAL_QUEUE,
            LOCAL_MAX_WALLTIME_S,
            entry.nodes,
        ));
    }
    let default_queue = entry
        .default_queue
        .clone()
        .unwrap_or_else(|| queues[0].name.clone());
    ResourceOffer {
        name: entry.name.clone(),
        cores_per_node: entry.cores_per_node,
        gpus_per_node: entry.gpus_per_node,
        mem_mb_per_node: entry
            .memory_per_node_gb
            .map_or(UNKNOWN_MEMORY_MB, |gb| u64::from(gb) * 1024),
        queues,
        default_queue,
        free_nodes: if local { entry.nodes } else { 0 },
        total_nodes: entry.nodes,
        queue_wait: if local {
            WaitEstimate {
                p10_s: 0.0,
                p50_s: 0.0,
                p90_s: 0.0,
            }
        } else {
            DEFAULT_WAIT
        },
        cost_per_core_hour: entry.cost_per_core_hour,
    }
}

/// Sets the usable and idle nodes of `offer` from the probe `r` of its default queue, and
/// gives every queue its waits: from its probe when the batch system reported it, else
/// [`DEFAULT_WAIT`] (with a note). `Err` says why the probe cannot be used; `Ok` may carry a
/// note (stale probe).
fn apply_probe(
    offer: &mut ResourceOffer,
    entry: &ResourceEntry,
    r: &ResourceSnapshot,
    taken_ms: u64,
    history: &Arc<WaitHistory>,
    notes: &mut Vec<String>,
) -> Result<(OfferSource, Option<String>), String> {
    if r.probed_ms == 0 {
        let error = r.error.as_deref().unwrap_or("no probe yet");
        return Err(format!("never probed successfully: {error}"));
    }
    let reported = |name: &str| r.queues.iter().find(|q| q.name == name && q.reported);
    let default = offer.default_queue.clone();
    let q = reported(&default)
        .ok_or_else(|| format!("the batch system did not report queue `{default}`"))?;
    let usable = q.nodes_total.saturating_sub(q.nodes_down);
    if usable > 0 {
        offer.total_nodes = usable.min(entry.nodes);
    }
    offer.free_nodes = q.nodes_free.min(offer.total_nodes);
    let total = offer.total_nodes;
    for queue in &mut offer.queues {
        let model = match reported(&queue.name) {
            Some(q) => QueueWaitModel::probed(
                &entry.name,
                &queue.name,
                QueueBacklog::of(q),
                q.nodes_free.min(total),
                history.clone(),
            ),
            None => {
                notes.push(format!(
                    "the batch system of {} did not report queue `{}`: assuming a queue wait of {} for it",
                    entry.name,
                    queue.name,
                    duration(DEFAULT_WAIT.p50_s)
                ));
                QueueWaitModel::assumed(&entry.name, &queue.name, DEFAULT_WAIT, history.clone())
            }
        };
        queue.waits = Some(Arc::new(model));
    }
    if !r.stale {
        return Ok((OfferSource::Snapshot, None));
    }
    let age = Duration::from_millis(taken_ms.saturating_sub(r.probed_ms));
    Ok((
        OfferSource::StaleSnapshot,
        Some(format!(
            "bundle snapshot for {} is stale: its last probe failed ({}); using the last good probe, {} older than the snapshot",
            entry.name,
            r.error.as_deref().unwrap_or("no error given"),
            format_duration(age)
        )),
    ))
}

/// Queues without waits of their own whose pilots have recorded waits get [`DEFAULT_WAIT`]
/// moved toward them; a note says how many recorded waits the resource's estimates use.
fn use_recorded_waits(
    offer: &mut ResourceOffer,
    waits: &[PilotWait],
    history: &Arc<WaitHistory>,
) -> Option<String> {
    let name = offer.name.clone();
    let mine = |queue: &str| {
        waits
            .iter()
            .filter(|w| w.resource == name && w.queue == queue)
            .count()
    };
    let mut used = Vec::new();
    for queue in &offer.queues {
        let n = mine(&queue.name);
        if n > 0 {
            used.push(format!("{n} in `{}`", queue.name));
        }
    }
    if used.is_empty() {
        return None;
    }
    for queue in offer.queues.iter_mut().filter(|q| q.waits.is_none()) {
        if mine(&queue.name) > 0 {
            let model = QueueWaitModel::assumed(&name, &queue.name, DEFAULT_WAIT, history.clone());
            queue.waits = Some(Arc::new(model));
        }
    }
    Some(format!(
        "queue waits of {name} also rest on our pilots' recorded waits ({}): pilots of a size that waited move its estimate toward what they waited",
        used.join(", ")
    ))
}

/// The resource's `queue_wait` from its default queue's own waits, when it has them.
fn summarize_default_queue(offer: &mut ResourceOffer) {
    let Some(queue) = offer.queue(&offer.default_queue) else {
        return;
    };
    if queue.waits.is_some() {
        offer.queue_wait = queue_summary(offer, queue);
    }
}

/// A queue's wait in three numbers (what `plan --json` shows): the p10 of a 1-node pilot
/// (what a pilot in the idle nodes waits), the p50 and p90 of a pilot one node larger than
/// the idle nodes, each for 1 h or the queue's limit.
pub fn queue_summary(offer: &ResourceOffer, queue: &QueueOffer) -> WaitEstimate {
    let walltime_s = queue.max_walltime_s.min(ESTIMATE_WALLTIME_S);
    let limit = offer.node_limit(queue).max(1);
    let small = offer.pilot_wait(queue, 1, walltime_s);
    let large = offer.pilot_wait(queue, (offer.idle_nodes(queue) + 1).min(limit), walltime_s);
    WaitEstimate {
        p10_s: small.p10_s.min(large.p50_s),
        p50_s: large.p50_s,
        p90_s: large.p90_s.max(large.p50_s),
    }
}

fn duration(s: f64) -> String {
    format_duration(Duration::from_secs_f64(s.max(0.0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use emanager_bundles::model::{JobSize, QueueSnapshot};

    const CATALOG: &str = r#"
[resources.big]
access = "slurm"
nodes = 100
cores_per_node = 64
gpus_per_node = 4
memory_per_node_gb = 256
default_queue = "batch"
cost_per_core_hour = 2.0
[[resources.big.queues]]
name = "batch"
max_walltime = "12:00:00"
max_nodes = 80
[[resources.big.queues]]
name = "prod"
max_walltime = "24:00:00"
min_nodes = 10
max_nodes = 100

[resources.small]
access = "pbs"
nodes = 8
cores_per_node = 16
[[resources.small.queues]]
name = "workq"
max_walltime = "01:00:00"
max_nodes = 8

[resources.here]
access = "local"
nodes = 1
cores_per_node = 4
"#;

    fn catalog() -> Catalog {
        Catalog::parse(CATALOG).unwrap()
    }

    fn queue(name: &str, total: u32, free: u32, down: u32) -> QueueSnapshot {
        QueueSnapshot {
            name: name.into(),
            max_walltime_s: Some(12 * 3600),
            max_nodes: Some(80),
            nodes_total: total,
            nodes_free: free,
            nodes_busy: total - free - down,
            nodes_down: down,
            reported: true,
            ..Default::default()
        }
    }

    /// `big` with `q` and an idle `prod` queue.
    fn snapshot(q: QueueSnapshot, stale: bool) -> Snapshot {
        snapshot_of(vec![q, queue("prod", 100, 100, 0)], stale)
    }

    fn snapshot_of(queues: Vec<QueueSnapshot>, stale: bool) -> Snapshot {
        Snapshot {
            site: "s".into(),
            taken_ms: 1_000_000,
            resources: vec![ResourceSnapshot {
                name: "big".into(),
                queues,
                probed_ms: 880_000,
                stale,
                error: stale.then(|| "ssh: connection refused".to_string()),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn by_name<'a>(o: &'a Offers, name: &str) -> (&'a ResourceOffer, OfferSource) {
        let i = o.offers.iter().position(|x| x.name == name).unwrap();
        (&o.offers[i], o.sources[i])
    }

    #[test]
    fn the_catalog_alone_gives_shapes_limits_and_the_default_wait() {
        let o = offers_from(&catalog(), &[], Observations::default()).unwrap();
        assert_eq!(o.offers.len(), 3);
        let (big, source) = by_name(&o, "big");
        assert_eq!(source, OfferSource::Catalog);
        assert_eq!(
            (big.cores_per_node, big.gpus_per_node, big.mem_mb_per_node),
            (64, 4, 256 * 1024)
        );
        assert_eq!(big.default_queue, "batch");
        assert_eq!(big.queues[0], QueueOffer::new("batch", 43_200.0, 80));
        assert_eq!(big.queues[1].min_nodes, 10);
        assert_eq!((big.free_nodes, big.total_nodes), (0, 100));
        assert_eq!(big.queue_wait, DEFAULT_WAIT);
        assert_eq!(big.cost_per_core_hour, 2.0);
        // No default queue: the first one.
        assert_eq!(by_name(&o, "small").0.default_queue, "workq");
        assert!(o.notes.contains(
            &"no bundle snapshot for big: assuming a queue wait of 30m00s (p10 1m00s, p90 4h00m) and no idle nodes"
                .to_string()
        ), "{:?}", o.notes);
        assert!(o
            .notes
            .iter()
            .any(|n| n.starts_with("no bundle snapshot for small")));
    }

    #[test]
    fn a_local_resource_starts_at_once_in_one_implicit_queue() {
        let o = offers_from(&catalog(), &["here".into()], Observations::default()).unwrap();
        let (here, source) = by_name(&o, "here");
        assert_eq!(source, OfferSource::Local);
        assert_eq!(
            here.queues,
            vec![QueueOffer::new("local", LOCAL_MAX_WALLTIME_S, 1)]
        );
        assert_eq!(here.default_queue, "local");
        assert_eq!(here.queue_wait.p50_s, 0.0);
        assert_eq!(here.free_nodes, 1);
        assert_eq!(here.mem_mb_per_node, UNKNOWN_MEMORY_MB);
        assert!(o.notes.is_empty(), "{:?}", o.notes);
    }

    #[test]
    fn only_the_named_resources_and_an_unknown_name_lists_the_known() {
        let o = offers_from(&catalog(), &["small".into()], Observations::default()).unwrap();
        assert_eq!(o.offers.len(), 1);
        let e = offers_from(&catalog(), &["nope".into()], Observations::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown resource `nope`; known: big, here, small"
        );
    }

    #[test]
    fn an_idle_probed_queue_gives_free_nodes_and_a_short_wait() {
        let snap = snapshot(queue("batch", 100, 30, 4), false);
        let o = offers_from(&catalog(), &[], Observations::of_snapshot(Some(&snap))).unwrap();
        let (big, source) = by_name(&o, "big");
        assert_eq!(source, OfferSource::Snapshot);
        assert_eq!((big.free_nodes, big.total_nodes), (30, 96));
        // Nothing queued: a pilot in the idle nodes starts at once.
        assert_eq!(big.queue_wait.p10_s, 0.0);
        assert_eq!(big.predicted_wait_s(&big.queues[0], 30, 3600.0), 0.0);
        // A larger one waits for running jobs to end: sizes unknown, so half the queue's
        // 12 h limit.
        assert_eq!(big.queue_wait.p50_s, 21_600.0);
        assert!(
            !o.notes.iter().any(|n| n.contains("for big")),
            "{:?}",
            o.notes
        );
        // `small` is not in the snapshot.
        assert!(o
            .notes
            .iter()
            .any(|n| n.starts_with("no bundle snapshot for small:")));
    }

    #[test]
    fn a_backlog_makes_the_wait_longer() {
        let mut q = queue("batch", 100, 0, 0);
        // 50 queued jobs of 10 nodes x 2 h: 1,000 node-hours over 100 nodes = 10 h, then
        // half the 12 h limit until running jobs free a node.
        q.jobs_queued = 50;
        q.queued_jobs = Some(vec![
            JobSize {
                nodes: 10,
                cores: 0,
                walltime_s: 7200,
                elapsed_s: 0
            };
            50
        ]);
        let snap = snapshot(q, false);
        let o = offers_from(
            &catalog(),
            &["big".into()],
            Observations::of_snapshot(Some(&snap)),
        )
        .unwrap();
        let w = o.offers[0].queue_wait;
        assert_eq!(w.p50_s, 36_000.0 + 21_600.0);
        assert!(w.p10_s <= w.p50_s && w.p50_s <= w.p90_s, "{w:?}");
    }

    #[test]
    fn a_stale_probe_is_used_and_flagged() {
        let snap = snapshot(queue("batch", 100, 30, 0), true);
        let o = offers_from(
            &catalog(),
            &["big".into()],
            Observations::of_snapshot(Some(&snap)),
        )
        .unwrap();
        assert_eq!(o.sources[0], OfferSource::StaleSnapshot);
        assert_eq!(o.offers[0].free_nodes, 30);
        assert_eq!(
            o.notes,
            vec!["bundle snapshot for big is stale: its last probe failed (ssh: connection refused); using the last good probe, 2m00s older than the snapshot"]
        );
    }

    #[test]
    fn an_unreported_default_queue_falls_back_to_the_catalog_and_says_why() {
        let mut q = queue("batch", 100, 30, 0);
        q.reported = false;
        let snap = snapshot(q, false);
        let o = offers_from(
            &catalog(),
            &["big".into()],
            Observations::of_snapshot(Some(&snap)),
        )
        .unwrap();
        assert_eq!(o.sources[0], OfferSource::Catalog);
        assert_eq!(o.offers[0].queue_wait, DEFAULT_WAIT);
        assert!(
            o.notes[0].starts_with(
                "no bundle snapshot for big (the batch system did not report queue `batch`): assuming"
            ),
            "{:?}",
            o.notes
        );
    }

    fn job(nodes: u32, walltime_s: u64, elapsed_s: u64) -> JobSize {
        JobSize {
            nodes,
            cores: 0,
            walltime_s,
            elapsed_s,
        }
    }

    /// `batch` has 10 h of work queued; `prod` is idle: each queue gets its own waits.
    #[test]
    fn every_queue_has_its_own_waits() {
        let mut busy = queue("batch", 100, 0, 0);
        busy.jobs_queued = 50;
        busy.queued_jobs = Some(vec![job(20, 7200, 0); 50]);
        busy.running_jobs = Some(vec![job(100, 43_200, 600)]);
        let snap = snapshot(busy, false);
        let o = offers_from(
            &catalog(),
            &["big".into()],
            Observations::of_snapshot(Some(&snap)),
        )
        .unwrap();
        let big = &o.offers[0];
        let (batch, prod) = (&big.queues[0], &big.queues[1]);
        assert_eq!(big.idle_nodes(batch), 0);
        assert_eq!(big.idle_nodes(prod), 100);
        // 20,000 node-hours ahead over 100 nodes, at least.
        assert!(big.predicted_wait_s(batch, 10, 3600.0) >= 36_000.0);
        assert_eq!(big.predicted_wait_s(prod, 10, 3600.0), 0.0);
        // The offer's summary is the default queue's.
        assert!(big.queue_wait.p50_s >= 36_000.0);
    }

    /// The head job of `batch` is promised all nodes when the running job ends in 2 h: a
    /// pilot that ends by then backfills into the 10 idle nodes, a longer one waits.
    #[test]
    fn a_short_pilot_backfills_a_long_one_waits() {
        let mut q = queue("batch", 100, 10, 0);
        q.jobs_queued = 1;
        q.queued_jobs = Some(vec![job(100, 43_200, 0)]);
        q.running_jobs = Some(vec![job(90, 43_200, 36_000)]);
        let snap = snapshot(q, false);
        let o = offers_from(
            &catalog(),
            &["big".into()],
            Observations::of_snapshot(Some(&snap)),
        )
        .unwrap();
        let big = &o.offers[0];
        let batch = &big.queues[0];
        assert_eq!(big.predicted_wait_s(batch, 10, 6000.0), 30.0);
        assert!(big.predicted_wait_s(batch, 10, 7300.0) >= 7200.0);
    }

    fn recorded(resource: &str, queue: &str, nodes: u32, wait_s: u64, job: usize) -> PilotWait {
        PilotWait {
            resource: resource.into(),
            queue: queue.into(),
            nodes,
            walltime_s: 3600,
            submitted_ms: 1_000,
            started_ms: 1_000 + wait_s * 1000,
            campaign: emanager_shared::CampaignId::random(),
            pilot: emanager_shared::PilotId::random(),
            job_id: job.to_string(),
        }
    }

    /// Our 8-node pilots waited 10 h in `batch` although the probe shows it idle: the
    /// estimate for 8-node pilots moves toward 10 h; other sizes and queues keep the probe's.
    #[test]
    fn recorded_waits_of_our_pilots_move_their_queues_estimate() {
        let snap = snapshot(queue("batch", 100, 30, 0), false);
        let waits: Vec<PilotWait> = (0..6)
            .map(|i| recorded("big", "batch", 8, 36_000, i))
            .collect();
        let observed = Observations {
            snapshot: Some(&snap),
            pilot_waits: &waits,
        };
        let o = offers_from(&catalog(), &["big".into()], observed).unwrap();
        let big = &o.offers[0];
        let (batch, prod) = (&big.queues[0], &big.queues[1]);
        // Six observations weigh 6 / 9 against the probe's 0 s.
        assert_eq!(big.predicted_wait_s(batch, 8, 3600.0), 24_000.0);
        assert_eq!(big.predicted_wait_s(batch, 2, 3600.0), 0.0);
        assert_eq!(big.predicted_wait_s(prod, 8, 3600.0), 0.0);
        assert!(
            o.notes.contains(&"queue waits of big also rest on our pilots' recorded waits (6 in `batch`): pilots of a size that waited move its estimate toward what they waited".to_string()),
            "{:?}",
            o.notes
        );
    }

    /// Without any snapshot, recorded waits still move the assumed default wait; waits of
    /// resources not planned on are ignored.
    #[test]
    fn recorded_waits_move_the_default_wait_of_an_unprobed_queue() {
        let mut waits: Vec<PilotWait> = (0..3)
            .map(|i| recorded("small", "workq", 1, 7200, i))
            .collect();
        waits.push(recorded("elsewhere", "workq", 1, 5, 9));
        let observed = Observations {
            snapshot: None,
            pilot_waits: &waits,
        };
        let o = offers_from(&catalog(), &["small".into()], observed).unwrap();
        let small = &o.offers[0];
        let workq = &small.queues[0];
        // Three observations weigh half: (7200 + 1800) / 2.
        assert_eq!(small.predicted_wait_s(workq, 1, 3600.0), 4500.0);
        assert_eq!(small.queue_wait.p50_s, 4500.0);
    }

    #[test]
    fn a_queue_the_batch_system_did_not_report_gets_the_default_wait_and_a_note() {
        let snap = snapshot_of(vec![queue("batch", 100, 30, 0)], false);
        let o = offers_from(
            &catalog(),
            &["big".into()],
            Observations::of_snapshot(Some(&snap)),
        )
        .unwrap();
        let big = &o.offers[0];
        assert_eq!(big.predicted_wait_s(&big.queues[1], 10, 3600.0), 1800.0);
        assert_eq!(
            o.notes,
            vec!["the batch system of big did not report queue `prod`: assuming a queue wait of 30m00s for it"]
        );
    }
}
