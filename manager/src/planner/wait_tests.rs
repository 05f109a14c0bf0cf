//! Specifications of how the planner uses queue waits: each pilot's own queue, size and
//! walltime, and the plan's explanation agreeing with its predictions.

use super::offers::{offers_from, Observations};
use super::queue_waits::QueueWaitModel;
use super::tests::offer;
use super::*;
use emanager_bundles::estimator::{QueueBacklog, WaitHistory};
use emanager_bundles::model::{JobSize, QueueSnapshot};
use emanager_shared::catalog::Catalog;

fn job(nodes: u32, walltime_s: u64, elapsed_s: u64) -> JobSize {
    JobSize {
        nodes,
        cores: 0,
        walltime_s,
        elapsed_s,
    }
}

fn bag(n: usize, cores: u32, est_s: f64) -> WorkflowSummary {
    WorkflowSummary::from_tasks((0..n).map(|_| TaskShape::new(cores, est_s)).collect(), 0).unwrap()
}

/// `queue` of `o` with waits from the probe `q`.
fn probed(o: &ResourceOffer, queue: usize, q: &QueueSnapshot) -> Option<Arc<QueueWaitModel>> {
    Some(Arc::new(QueueWaitModel::probed(
        &o.name,
        &o.queues[queue].name,
        QueueBacklog::of(q),
        q.nodes_free,
        Arc::new(WaitHistory::new()),
    )))
}

/// 20 nodes of 32 cores. The head job of its queue is promised every node when the running
/// 16-node job reaches its limit in 2 h; 4 nodes are idle until then.
fn backfill_site() -> ResourceOffer {
    let mut o = offer("site", 32, 20, 3600.0);
    let q = QueueSnapshot {
        max_walltime_s: Some(48 * 3600),
        nodes_total: 20,
        nodes_free: 4,
        jobs_running: 1,
        jobs_queued: 1,
        queued_jobs: Some(vec![job(20, 24 * 3600, 0)]),
        running_jobs: Some(vec![job(16, 24 * 3600, 22 * 3600)]),
        reported: true,
        ..Default::default()
    };
    o.free_nodes = 4;
    o.queues[0].waits = probed(&o, 0, &q);
    o
}

/// 128 one-core tasks of 20 min fit 4 nodes in one wave: the pilot ends well before the
/// reservation and backfills. Tasks of 3 h cannot: that pilot waits behind the head job.
#[test]
fn a_pilot_short_enough_to_backfill_is_predicted_to_start_at_once() {
    let offers = vec![backfill_site()];
    let short = plan(Strategy::Ttc, &bag(128, 1, 1200.0), &offers).unwrap();
    let p = &short.pilots[0];
    assert!(p.nodes <= 4 && p.walltime_s <= 7200.0, "{p:?}");
    assert_eq!(p.predicted_wait_s, 30.0, "{p:?}");
    let long = plan(Strategy::Ttc, &bag(128, 1, 3.0 * 3600.0), &offers).unwrap();
    let p = &long.pilots[0];
    assert!(p.walltime_s > 7200.0, "{p:?}");
    // Behind the head job: 20 nodes x 24 h of work drained by 20 nodes.
    assert_eq!(p.predicted_wait_s, 24.0 * 3600.0, "{p:?}");
}

/// A resource whose default queue holds a day of work and whose `short` queue (2 h, up to 8
/// nodes) is idle: the plan puts the pilot in `short`, at the wait of `short`.
#[test]
fn each_pilot_waits_in_its_own_queue() {
    let mut o = offer("site", 32, 100, 3600.0);
    o.queues.push(QueueOffer::new("short", 7200.0, 8));
    let busy = QueueSnapshot {
        max_walltime_s: Some(48 * 3600),
        nodes_total: 100,
        jobs_queued: 10,
        queued_jobs: Some(vec![job(100, 24 * 3600, 0); 10]),
        running_jobs: Some(vec![job(100, 24 * 3600, 0)]),
        reported: true,
        ..Default::default()
    };
    let idle = QueueSnapshot {
        max_walltime_s: Some(7200),
        nodes_total: 8,
        nodes_free: 8,
        queued_jobs: Some(vec![]),
        running_jobs: Some(vec![]),
        reported: true,
        ..Default::default()
    };
    o.queues[0].waits = probed(&o, 0, &busy);
    o.queues[1].waits = probed(&o, 1, &idle);
    let offers = vec![o];
    let p = plan(Strategy::Ttc, &bag(256, 1, 1800.0), &offers).unwrap();
    assert_eq!(p.pilots.len(), 1);
    assert_eq!(
        (p.pilots[0].queue.as_str(), p.pilots[0].predicted_wait_s),
        ("short", 0.0),
        "{p:?}"
    );
    assert!(offers[0].predicted_wait_s(&offers[0].queues[0], 8, 3600.0) > 86_400.0);
}

/// The two resources of `emanager plan`'s tests and a local host; 100 one-core tasks of
/// 30 min. The search's fluid model predicted 2,508 s here and the `why` said so, while the
/// plan's simulated TTC (the one printed) is 3,600 s.
#[test]
fn why_states_the_final_wait_and_the_predicted_ttc() {
    let catalog = Catalog::parse(
        r#"
[resources.wide]
access = "slurm"
nodes = 50
cores_per_node = 32
default_queue = "batch"
[[resources.wide.queues]]
name = "batch"
max_walltime = "12:00:00"
max_nodes = 50
[[resources.wide.queues]]
name = "debug"
max_walltime = "00:30:00"
max_nodes = 2

[resources.gpu]
access = "pbs"
nodes = 10
cores_per_node = 16
gpus_per_node = 4
default_queue = "workq"
[[resources.gpu.queues]]
name = "workq"
max_walltime = "06:00:00"
max_nodes = 10

[resources.here]
access = "local"
nodes = 1
cores_per_node = 4
"#,
    )
    .unwrap();
    let offers = offers_from(&catalog, &[], Observations::default())
        .unwrap()
        .offers;
    for (tasks, est_s) in [(100, 1800.0), (100, 3000.0), (100, 600.0), (500, 900.0)] {
        let summary = bag(tasks, 1, est_s);
        for strategy in [
            Strategy::Ttc,
            Strategy::Budget {
                max_core_hours: Some(1000.0),
                max_cost: None,
            },
        ] {
            let p = plan(strategy, &summary, &offers).unwrap();
            for pilot in &p.pilots {
                let start = format!("predicted start after {:.0} s; ", pilot.predicted_wait_s);
                let end = format!("; plan predicted to finish at {:.0} s", p.predicted_ttc_s);
                assert!(
                    pilot.why.starts_with(&start) && pilot.why.ends_with(&end),
                    "{tasks} x {est_s} s, {}: `{}` vs TTC {} and wait {}",
                    strategy.name(),
                    pilot.why,
                    p.predicted_ttc_s,
                    pilot.predicted_wait_s
                );
            }
        }
    }
}

/// Whatever the queues' waits, a pilot's predicted wait is its queue's estimate for its
/// size and final walltime.
#[test]
fn a_planned_wait_is_the_estimate_for_the_final_walltime() {
    let offers = vec![backfill_site(), offer("other", 16, 50, 1800.0)];
    for est_s in [600.0, 1800.0, 5400.0, 4.0 * 3600.0] {
        let p = plan(Strategy::Ttc, &bag(300, 1, est_s), &offers).unwrap();
        for pilot in &p.pilots {
            let o = offers.iter().find(|o| o.name == pilot.resource).unwrap();
            assert_eq!(
                pilot.predicted_wait_s,
                o.planned_wait(pilot).p50_s,
                "{est_s}: {pilot:?}"
            );
        }
    }
}
