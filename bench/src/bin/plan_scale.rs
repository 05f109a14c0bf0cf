//! Planner and simulator at scale: 1,000,000 tasks over 10 resources.
//!
//! `cargo run --release -p emanager-bench --bin plan_scale [-- TASKS]` prints how long the
//! summary, each strategy's plan and one sampled simulation take (targets: plan < 1 s,
//! simulate < 10 s), and the ttc/aimes predicted and simulated TTC.

use emanager::planner::{
    plan, simulate, QueueOffer, ResourceOffer, Strategy, TaskShape, WaitEstimate, WorkflowSummary,
};
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
    let offers = offers();
    let tasks = workload(n);
    let t = Instant::now();
    let summary = WorkflowSummary::from_tasks(tasks, 50 * n as u64 * 1_000_000 / 1000)
        .expect("acyclic workload");
    println!(
        "{n} tasks, {} resources; summary {:.3} s (critical path {:.0} s, {} levels)",
        offers.len(),
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
