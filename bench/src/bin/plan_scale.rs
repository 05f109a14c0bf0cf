//! Planner and simulator at scale: 1,000,000 tasks over 10 resources.
//!
//! `cargo run --release -p emanager-bench --bin plan_scale [-- TASKS]` prints how long the
//! summary, each strategy's plan and one sampled simulation take (targets: plan < 1 s,
//! simulate < 10 s), and the ttc/aimes predicted and simulated TTC. With
//! `ESTIMATED_WAITS=1` every queue's waits come from the bundle estimator per pilot size and
//! walltime, over a synthetic probe of a busy queue (what `emanager plan` does with a bundle
//! snapshot), instead of one fixed estimate per site.

use emanager::planner::{
    plan, simulate, QueueOffer, QueueWaitModel, ResourceOffer, Strategy, TaskShape, WaitEstimate,
    WorkflowSummary,
};
use emanager_bundles::estimator::{QueueBacklog, WaitHistory};
use emanager_bundles::model::{JobSize, QueueSnapshot};
use std::sync::Arc;
use std::time::Instant;

/// Ten resources: node shapes, sizes and queue waits all differ.
fn offers() -> Vec<ResourceOffer> {
    let shapes = [
        (32, 0, 2000, 600.0),
        (48, 0, 1500, 1800.0),
        (64, 4, 800, 3600.0),
        (128, 0, 1000, 7200.0),
        (36, 0, 3000, 900.0),
        (56, 8, 400, 14_400.0),
        (96, 0, 1200, 2700.0),
        (128, 4, 600, 21_600.0),
        (24, 0, 4000, 300.0),
        (64, 0, 2500, 43_200.0),
    ];
    shapes
        .iter()
        .enumerate()
        .map(|(i, &(cores, gpus, nodes, p50))| ResourceOffer {
            name: format!("site{i}"),
            cores_per_node: cores,
            gpus_per_node: gpus,
            mem_mb_per_node: 256_000,
            queues: vec![
                QueueOffer::new("normal", 48.0 * 3600.0, nodes / 2),
                QueueOffer::new("debug", 1800.0, 4),
            ],
            default_queue: "normal".into(),
            free_nodes: nodes / 50,
            total_nodes: nodes,
            queue_wait: WaitEstimate {
                p50_s: p50,
                p10_s: p50 / 5.0,
                p90_s: p50 * 4.0,
            },
            cost_per_core_hour: 1.0,
        })
        .collect()
}

/// Every queue's waits from the bundle estimator: `normal` busy (200 running jobs ending
/// over the next two days; 20 to 290 queued, by site, of 1 to 12 h; a fiftieth of the nodes
/// idle), `debug` idle.
fn with_estimated_waits(offers: &mut [ResourceOffer]) {
    let history = Arc::new(WaitHistory::new());
    for (i, o) in offers.iter_mut().enumerate() {
        let nodes = o.total_nodes;
        let job = |nodes: u32, walltime_s: u64, elapsed_s: u64| JobSize {
            nodes,
            cores: 0,
            walltime_s,
            elapsed_s,
        };
        let running: Vec<JobSize> = (0..200u32)
            .map(|k| {
                let size = 1 + (k * 7919) % (nodes / 40).max(1);
                job(size, 48 * 3600, u64::from(k * 3571) % (48 * 3600))
            })
            .collect();
        let queued: Vec<JobSize> = (0..20 + 30 * i as u32)
            .map(|k| {
                let size = 1 + (k * 104_729) % (nodes / 100).max(1);
                job(size, 3600 * u64::from(1 + k % 12), 0)
            })
            .collect();
        let busy = QueueSnapshot {
            name: "normal".into(),
            max_walltime_s: Some(48 * 3600),
            nodes_total: nodes,
            nodes_free: nodes / 50,
            jobs_running: running.len() as u32,
            jobs_queued: queued.len() as u32,
            running_jobs: Some(running),
            queued_jobs: Some(queued),
            reported: true,
            ..Default::default()
        };
        let idle = QueueSnapshot {
            name: "debug".into(),
            max_walltime_s: Some(1800),
            nodes_total: 4,
            nodes_free: 4,
            running_jobs: Some(Vec::new()),
            queued_jobs: Some(Vec::new()),
            reported: true,
            ..Default::default()
        };
        let name = o.name.clone();
        for (queue, probe) in o.queues.iter_mut().zip([busy, idle]) {
            queue.waits = Some(Arc::new(QueueWaitModel::probed(
                &name,
                &queue.name,
                QueueBacklog::of(&probe),
                probe.nodes_free,
                history.clone(),
            )));
        }
    }
}

/// `n` tasks: 90 % one-core analyses of three lengths (all different with
/// `DISTINCT_DURATIONS=1`), 9 % 8-core simulations, 1 % 256-core
/// MPI runs; the second half of the analyses each depends on one simulation.
fn workload(n: usize) -> Vec<TaskShape> {
    let distinct = std::env::var_os("DISTINCT_DURATIONS").is_some();
    let sims = n * 9 / 100;
    let mpi = n / 100;
    let analyses = n - sims - mpi;
    let mut tasks = Vec::with_capacity(n);
    for i in 0..sims {
        tasks.push(TaskShape::new(8, [1800.0, 3600.0][i % 2]));
    }
    for _ in 0..mpi {
        tasks.push(TaskShape {
            multi_node: true,
            processes: 256,
            ..TaskShape::new(256, 7200.0)
        });
    }
    for i in 0..analyses {
        let est = if distinct {
            // Every analysis a different length (no two tasks share a shape).
            300.0 + (i as f64 * 0.618_034).fract() * 900.0
        } else {
            [300.0, 600.0, 1200.0][i % 3]
        };
        let mut t = TaskShape::new(1, est);
        if i >= analyses / 2 && sims > 0 {
            t.depends_on = vec![i % sims];
        }
        tasks.push(t);
    }
    tasks
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let mut offers = offers();
    let estimated = std::env::var_os("ESTIMATED_WAITS").is_some();
    if estimated {
        with_estimated_waits(&mut offers);
    }
    let tasks = workload(n);
    let t = Instant::now();
    let summary = WorkflowSummary::from_tasks(tasks, 50 * n as u64 * 1_000_000 / 1000)
        .expect("acyclic workload");
    println!(
        "{n} tasks, {} resources ({} waits); summary {:.3} s (critical path {:.0} s, {} levels)",
        offers.len(),
        if estimated { "estimated" } else { "fixed" },
        t.elapsed().as_secs_f64(),
        summary.critical_path_s,
        summary.stage_widths.len()
    );
    let mut plans = Vec::new();
    for strategy in [
        Strategy::Ttc,
        Strategy::Aimes { late_binding: true },
        Strategy::Budget {
            max_core_hours: Some(summary.total_core_seconds / 3600.0 * 1.6),
            max_cost: None,
        },
    ] {
        let t = Instant::now();
        let result = plan(strategy, &summary, &offers);
        let secs = t.elapsed().as_secs_f64();
        match result {
            Ok(p) => {
                println!(
                    "plan {:<6} {secs:.3} s: {} pilots, predicted TTC {:.0} s, {:.0} core-hours requested, {:.0} idle",
                    strategy.name(),
                    p.pilots.len(),
                    p.predicted_ttc_s,
                    p.core_hours_requested,
                    p.expected_idle_core_hours
                );
                for pilot in &p.pilots {
                    println!(
                        "    {} {} x{} nodes, walltime {:.0} s, predicted wait {:.0} s",
                        pilot.resource,
                        pilot.queue,
                        pilot.nodes,
                        pilot.walltime_s,
                        pilot.predicted_wait_s
                    );
                }
                plans.push(p);
            }
            Err(e) => println!("plan {:<6} {secs:.3} s: {e}", strategy.name()),
        }
    }
    const SEEDS: u64 = 5;
    let mut simulated = Vec::new();
    for p in &plans {
        let t = Instant::now();
        let runs: Vec<_> = (0..SEEDS)
            .map(|seed| simulate(p, &summary, &offers, seed))
            .collect();
        let mean = runs.iter().map(|r| r.ttc_s).sum::<f64>() / SEEDS as f64;
        println!(
            "simulate {:<6} {:.3} s per run: mean TTC over {SEEDS} seeds {mean:.0} s (min {:.0}, max {:.0}), utilisation {:.2}, unfinished {}",
            p.strategy.name(),
            t.elapsed().as_secs_f64() / SEEDS as f64,
            runs.iter().map(|r| r.ttc_s).fold(f64::INFINITY, f64::min),
            runs.iter().map(|r| r.ttc_s).fold(0.0, f64::max),
            runs.iter().map(|r| r.utilisation).sum::<f64>() / SEEDS as f64,
            runs.iter().map(|r| r.unfinished_tasks).sum::<usize>()
        );
        simulated.push(mean);
    }
    if plans.len() >= 2 {
        println!(
            "ttc/aimes: predicted {:.2}, simulated mean {:.2}",
            plans[0].predicted_ttc_s / plans[1].predicted_ttc_s,
            simulated[0] / simulated[1]
        );
    }
}
