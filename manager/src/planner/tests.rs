//! Specifications of the planner and the simulator.

use super::sim::WaitDraw;
use super::wait::{estimate_from_samples, WaitDistribution};
use super::*;
use pilot_agent::scheduler::{NodeSpec, Scheduler};
use proptest::prelude::{
    any, prop, prop_assert, prop_assert_eq, proptest, Just, ProptestConfig, Strategy as Arbitrary,
    TestCaseError,
};
use rand::SeedableRng;

pub(crate) fn offer(name: &str, cores: u32, nodes: u32, p50: f64) -> ResourceOffer {
    ResourceOffer {
        name: name.into(),
        cores_per_node: cores,
        gpus_per_node: 0,
        mem_mb_per_node: 128_000,
        queues: vec![QueueOffer::new("normal", 48.0 * 3600.0, nodes)],
        default_queue: "normal".into(),
        free_nodes: 0,
        total_nodes: nodes,
        queue_wait: WaitEstimate {
            p50_s: p50,
            p10_s: p50 / 4.0,
            p90_s: p50 * 4.0,
        },
        cost_per_core_hour: 1.0,
    }
}

fn bag(n: usize, cores: u32, est_s: f64) -> Vec<TaskShape> {
    (0..n).map(|_| TaskShape::new(cores, est_s)).collect()
}

fn summary(tasks: Vec<TaskShape>) -> WorkflowSummary {
    WorkflowSummary::from_tasks(tasks, 0).expect("acyclic")
}

/// Three sites of 1,000 x 32-core nodes: short, medium and long predicted waits.
fn three_sites() -> Vec<ResourceOffer> {
    vec![
        offer("fast", 32, 1000, 900.0),
        offer("medium", 32, 1000, 4.0 * 3600.0),
        offer("slow", 32, 1000, 12.0 * 3600.0),
    ]
}

/// A campaign of 2,000 one-hour 4-core tasks then 200 two-hour 16-core tasks.
fn campaign() -> WorkflowSummary {
    let mut tasks = bag(2000, 4, 3600.0);
    for i in 0..200 {
        let mut t = TaskShape::new(16, 7200.0);
        t.depends_on = (i * 10..i * 10 + 10).collect();
        tasks.push(t);
    }
    summary(tasks)
}

#[test]
fn aimes_formula_on_a_hand_computed_case() {
    // 4 x (8 cores, 1000 s), 2 x (4 cores, 3000 s), 1 x (16 cores, 5000 s), 200 MB of I/O.
    let mut tasks = bag(4, 8, 1000.0);
    tasks.extend(bag(2, 4, 3000.0));
    tasks.extend(bag(1, 16, 5000.0));
    let s = WorkflowSummary::from_tasks(tasks, 200_000_000).unwrap();
    let offers: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|n| offer(n, 16, 100, 60.0))
        .collect();

    let late = plan(Strategy::Aimes { late_binding: true }, &s, &offers).unwrap();
    assert_eq!(late.pilots.len(), 3);
    for p in &late.pilots {
        // 56 task cores / 3 pilots = 19 cores -> 2 nodes of 16.
        assert_eq!(p.nodes, 2);
        // 5000 + 3000 + 3000 (3 longest) + 200 MB x 5 s + 600 + 4 x 7 tasks.
        assert_eq!(p.walltime_s, 11_000.0 + 1000.0 + 600.0 + 28.0);
        assert_eq!(p.queue, "normal");
    }
    let early = plan(
        Strategy::Aimes {
            late_binding: false,
        },
        &s,
        &offers,
    )
    .unwrap();
    assert_eq!(early.pilots.len(), 1);
    assert_eq!(early.pilots[0].resource, "a");
    assert_eq!(early.pilots[0].nodes, 4); // 56 cores -> 4 nodes
    assert_eq!(early.pilots[0].walltime_s, 5000.0 + 1000.0 + 600.0 + 28.0);
    assert!((early.core_hours_requested - 4.0 * 16.0 * 6628.0 / 3600.0).abs() < 1e-9);
}

#[test]
fn aimes_is_cut_to_queue_limits_and_says_so() {
    let s = summary(bag(100, 32, 60_000.0));
    let mut o = offer("small", 32, 10, 60.0);
    o.queues[0].max_walltime_s = 3600.0 * 24.0;
    let p = plan(Strategy::Aimes { late_binding: true }, &s, &[o]);
    // 60,000 s tasks fit a 24 h queue; 100 nodes are cut to 10.
    let p = p.unwrap();
    assert_eq!(p.pilots[0].nodes, 10);
    assert!(
        p.pilots[0].why.contains("queue limit"),
        "{}",
        p.pilots[0].why
    );
}

#[test]
fn summary_of_a_diamond_has_levels_and_critical_path() {
    let mut t = bag(4, 1, 10.0);
    t[1].depends_on = vec![0];
    t[2].depends_on = vec![0];
    t[2].est_s = 30.0;
    t[3].depends_on = vec![1, 2];
    let s = summary(t);
    assert_eq!(s.stage_widths, vec![1, 2, 1]);
    assert_eq!(s.critical_path_s, 50.0);
    assert_eq!(s.longest_task_s, 30.0);
    assert_eq!(s.total_core_seconds, 60.0);
}

#[test]
fn summary_from_a_workflow_counts_data_and_mpi() {
    use crate::workflow::{TaskDef, Workflow};
    use emanager_shared::{model::FileSpec, TaskId, TaskSpec};
    let mut spec = TaskSpec::new(TaskId::random(), "sim", vec!["true".into()]);
    spec.cores = 64;
    spec.mpi = true;
    spec.est_duration_s = 100.0;
    spec.input_files = vec![FileSpec {
        path: "in".into(),
        size_bytes: Some(5_000_000),
    }];
    let wf = Workflow::new(
        "w",
        vec![
            TaskDef::new(spec.clone(), vec![]),
            TaskDef::new(spec, vec![0]),
        ],
    );
    let s = WorkflowSummary::from_workflow(&wf).unwrap();
    assert_eq!(s.data_bytes, 10_000_000);
    assert!(s.tasks[0].multi_node);
    assert_eq!(s.critical_path_s, 200.0);
    assert_eq!(s.core_histogram.get(&64), Some(&2));
}

fn parsed(toml: &str) -> crate::workflow::Workflow {
    crate::workflow::parse_str(toml, crate::workflow::Format::Toml, "wf.toml").unwrap()
}

#[test]
fn stage_barriers_order_the_summary_and_the_simulation() {
    // 10 x 100 s, then (after the barrier) 10 x 50 s: on a pilot with room for all of
    // them, the second stage starts only when the first is over.
    let wf = parsed(
        r#"
name = "staged"
[[stages]]
name = "a"
[[stages]]
name = "b"
[[tasks]]
name = "a-{index}"
count = 10
command = ["true"]
est_duration_s = 100
stage = "a"
[[tasks]]
name = "b-{index}"
count = 10
command = ["true"]
est_duration_s = 50
stage = "b"
"#,
    );
    let s = WorkflowSummary::from_workflow(&wf).unwrap();
    assert_eq!(s.joins.len(), 1);
    assert_eq!(s.stage_widths, vec![10, 10]);
    assert_eq!(s.critical_path_s, 150.0);
    let o = offer("a", 32, 1, 20.0);
    let p = plan(Strategy::Ttc, &s, std::slice::from_ref(&o)).unwrap();
    assert_eq!(p.predicted_ttc_s, 170.0);
    let r = simulate_with(&p, &s, &[o], &SimOptions::expected());
    assert_eq!(r.ttc_s, 170.0);
}

#[test]
fn a_dependency_on_a_whole_array_waits_for_every_member() {
    let wf = parsed(
        r#"
name = "fan-in"
[[tasks]]
name = "sim-{index}"
count = 4
command = ["true"]
est_duration_s = 100
[[tasks]]
name = "short"
command = ["true"]
est_duration_s = 10
[[tasks]]
name = "reduce"
command = ["true"]
est_duration_s = 30
depends_on = ["sim", "short"]
"#,
    );
    let s = WorkflowSummary::from_workflow(&wf).unwrap();
    assert_eq!(s.critical_path_s, 130.0);
    assert_eq!(s.stage_widths, vec![5, 1]);
    let o = offer("a", 32, 1, 0.0);
    let p = plan(Strategy::Ttc, &s, std::slice::from_ref(&o)).unwrap();
    assert_eq!(p.predicted_ttc_s, 130.0);
}

#[test]
fn a_dependency_cycle_is_an_error() {
    let mut t = bag(2, 1, 1.0);
    t[0].depends_on = vec![1];
    t[1].depends_on = vec![0];
    assert!(matches!(
        WorkflowSummary::from_tasks(t, 0),
        Err(PlanError::Cycle { .. })
    ));
}

#[test]
fn a_task_that_fits_nowhere_is_named_with_the_reason() {
    let s = summary(bag(1, 64, 10.0));
    let err = plan(Strategy::Ttc, &s, &[offer("small", 32, 4, 0.0)]).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("task 0"), "{msg}");
    assert!(
        msg.contains("64 cores on one node; the largest node has 32"),
        "{msg}"
    );
}

#[test]
fn a_task_longer_than_every_queue_is_the_one_named() {
    // Same cores, so one resource class; only the second task is too long for 48 h.
    let s = summary(vec![TaskShape::new(1, 100.0), TaskShape::new(1, 200_000.0)]);
    let err = plan(Strategy::Ttc, &s, &[offer("a", 16, 4, 0.0)]).unwrap_err();
    let PlanError::TaskFitsNowhere { task, reasons } = &err else {
        panic!("{err}");
    };
    assert_eq!(*task, 1, "{err}");
    assert!(reasons.contains("runs 200000 s"), "{reasons}");
    assert!(reasons.contains("allows 172800 s"), "{reasons}");
}

#[test]
fn a_resource_that_runs_none_of_the_tasks_gets_no_pilot() {
    // The 4-core host starts at once but fits no 8-core task: it must not look fast.
    let s = summary(bag(64, 8, 600.0));
    let offers = vec![offer("tiny", 4, 1, 0.0), offer("big", 32, 10, 600.0)];
    let p = plan(Strategy::Ttc, &s, &offers).unwrap();
    assert!(
        p.pilots.iter().all(|p| p.resource == "big"),
        "{:?}",
        p.pilots
    );
    // 16 nodes would run all 64 at once; the queue has 10: 40 run, then 24.
    assert_eq!(p.predicted_ttc_s, 600.0 + 1200.0);
}

#[test]
fn a_resource_that_runs_part_of_the_work_is_credited_with_that_part_only() {
    // 1,000 one-hour 32-core tasks and one GPU task. The 16-core GPU node starts at once
    // and runs only the GPU task; were it credited with all the work, ttc would lean on it
    // and shrink the CPU pilot to nothing.
    let mut tasks = bag(1000, 32, 3600.0);
    tasks.push(TaskShape {
        gpus: 1,
        ..TaskShape::new(1, 600.0)
    });
    let s = summary(tasks);
    let mut gpu = offer("gpu", 16, 1, 0.0);
    gpu.gpus_per_node = 4;
    let cpu = offer("cpu", 32, 1000, 1800.0);
    let offers = vec![gpu, cpu];
    let p = plan(Strategy::Ttc, &s, &offers).unwrap();
    let on_cpu = p
        .pilots
        .iter()
        .find(|p| p.resource == "cpu")
        .expect("a CPU pilot");
    assert!(on_cpu.nodes >= 500, "{:?}", p.pilots);
    assert!(p.predicted_ttc_s < 3.0 * 3600.0, "{}", p.predicted_ttc_s);
}

#[test]
fn a_plan_the_simulator_cannot_finish_is_repaired() {
    // A GPU task waits for a 2 h CPU task. Only `gpu` runs it; the cheapest pilot there (the
    // 1 h `short` queue) ends before its parent does, which the fluid model cannot see.
    let mut gpu_task = TaskShape {
        gpus: 1,
        ..TaskShape::new(1, 1800.0)
    };
    gpu_task.depends_on = vec![0];
    let s = summary(vec![TaskShape::new(32, 7200.0), gpu_task]);
    let mut gpu = offer("gpu", 16, 2, 60.0);
    gpu.gpus_per_node = 4;
    gpu.queues = vec![
        QueueOffer::new("short", 3600.0, 2),
        QueueOffer::new("long", 6.0 * 3600.0, 2),
    ];
    gpu.default_queue = "short".into();
    let offers = vec![offer("cpu", 32, 10, 60.0), gpu];
    let p = plan(Strategy::Ttc, &s, &offers).unwrap();
    let on_gpu = p.pilots.iter().find(|p| p.resource == "gpu").unwrap();
    assert_eq!(on_gpu.queue, "long", "{:?}", p.pilots);
    assert!(
        on_gpu.why.contains("moved from queue `short`"),
        "{}",
        on_gpu.why
    );
    assert_eq!(p.predicted_ttc_s, 60.0 + 7200.0 + 1800.0);
}

#[test]
fn ttc_prefers_one_fitting_pilot_when_more_gain_little() {
    // 64 one-core tasks fit one node; a second resource cannot help much.
    let s = summary(bag(64, 1, 600.0));
    let offers = vec![offer("a", 64, 100, 60.0), offer("b", 64, 100, 120.0)];
    let p = plan(Strategy::Ttc, &s, &offers).unwrap();
    assert_eq!(p.pilots.len(), 1, "{:?}", p.pilots);
    assert_eq!(p.pilots[0].nodes, 1);
    assert_eq!(p.pilots[0].resource, "a");
}

#[test]
fn budget_caps_core_hours() {
    let s = campaign();
    let offers = three_sites();
    let ttc = plan(Strategy::Ttc, &s, &offers).unwrap();
    let cap = ttc.core_hours_requested * 0.7;
    let b = plan(
        Strategy::Budget {
            max_core_hours: Some(cap),
            max_cost: None,
        },
        &s,
        &offers,
    )
    .unwrap();
    assert!(b.core_hours_requested <= cap);
    let too_small = plan(
        Strategy::Budget {
            max_core_hours: Some(1.0),
            max_cost: None,
        },
        &s,
        &offers,
    );
    assert!(matches!(too_small, Err(PlanError::OverBudget { .. })));
}

#[test]
fn ttc_beats_aimes_on_three_sites_with_different_waits() {
    let s = campaign();
    let offers = three_sites();
    let ttc = plan(Strategy::Ttc, &s, &offers).unwrap();
    let aimes = plan(Strategy::Aimes { late_binding: true }, &s, &offers).unwrap();
    assert!(
        ttc.predicted_ttc_s < aimes.predicted_ttc_s,
        "predicted ttc {} vs aimes {}",
        ttc.predicted_ttc_s,
        aimes.predicted_ttc_s
    );
    let seeds = 0..20u64;
    let mean = |p: &Plan| {
        seeds
            .clone()
            .map(|seed| simulate(p, &s, &offers, seed).ttc_s)
            .sum::<f64>()
            / 20.0
    };
    let (t, a) = (mean(&ttc), mean(&aimes));
    eprintln!(
        "three sites: predicted ttc/aimes = {:.0}/{:.0} = {:.2}; simulated mean over 20 seeds {:.0}/{:.0} = {:.2}; pilots ttc {:?}",
        ttc.predicted_ttc_s,
        aimes.predicted_ttc_s,
        ttc.predicted_ttc_s / aimes.predicted_ttc_s,
        t,
        a,
        t / a,
        ttc.pilots.iter().map(|p| (&p.resource, p.nodes, p.walltime_s)).collect::<Vec<_>>()
    );
    assert!(t < a, "simulated ttc {t} vs aimes {a}");
}

#[test]
fn simulation_is_deterministic_for_a_seed() {
    let s = campaign();
    let offers = three_sites();
    let p = plan(Strategy::Aimes { late_binding: true }, &s, &offers).unwrap();
    let opts = SimOptions {
        pilot_failure_prob: 0.3,
        ..SimOptions::sampled(7)
    };
    let a = simulate_with(&p, &s, &offers, &opts);
    let b = simulate_with(&p, &s, &offers, &opts);
    assert_eq!(a, b);
    let c = simulate(&p, &s, &offers, 8);
    assert_ne!(a.per_pilot_start, c.per_pilot_start);
}

#[test]
fn repeated_simulations_are_deterministic_for_a_seed() {
    let s = campaign();
    let offers = three_sites();
    let p = plan(Strategy::Aimes { late_binding: true }, &s, &offers).unwrap();
    let a = simulate_runs(&p, &s, &offers, 5, 42);
    assert_eq!(a, simulate_runs(&p, &s, &offers, 5, 42));
    assert_eq!(a.runs, 5);
    assert!(a.ttc_s.min <= a.ttc_s.p50 && a.ttc_s.p50 <= a.ttc_s.max);
    // Run i is the single simulation with seed 42 + i.
    assert_eq!(
        a.ttc_s.min,
        (42..47)
            .map(|seed| simulate(&p, &s, &offers, seed).ttc_s)
            .fold(f64::INFINITY, f64::min)
    );
    assert_ne!(a.ttc_s, simulate_runs(&p, &s, &offers, 5, 43).ttc_s);
}

#[test]
fn tasks_of_a_failed_pilot_are_rebound_to_the_others() {
    let s = summary(bag(200, 1, 30_000.0));
    let offers = vec![offer("a", 16, 10, 0.0), offer("b", 16, 10, 0.0)];
    let p = fixed_plan(&[("a", 10, 100_000.0), ("b", 10, 100_000.0)]);
    let r = (0..50)
        .map(|seed| {
            let opts = SimOptions {
                pilot_failure_prob: 0.5,
                ..SimOptions::sampled(seed)
            };
            simulate_with(&p, &s, &offers, &opts)
        })
        .find(|r| r.failed_pilots == 1 && r.rebound_tasks > 0)
        .expect("some seed fails exactly one pilot mid-run");
    assert_eq!(r.unfinished_tasks, 0);
    assert!(r.ttc_s > 30_000.0 && r.ttc_s.is_finite());
}

fn fixed_plan(pilots: &[(&str, u32, f64)]) -> Plan {
    Plan {
        strategy: Strategy::Ttc,
        pilots: pilots
            .iter()
            .map(|&(resource, nodes, walltime_s)| PlannedPilot {
                resource: resource.into(),
                queue: "normal".into(),
                nodes,
                walltime_s,
                predicted_wait_s: 0.0,
                why: String::new(),
            })
            .collect(),
        predicted_ttc_s: 0.0,
        core_hours_requested: 0.0,
        expected_idle_core_hours: 0.0,
    }
}

#[test]
fn work_beyond_the_walltime_stays_unfinished() {
    let s = summary(bag(4, 16, 1000.0));
    let o = offer("a", 16, 1, 0.0);
    let p = fixed_plan(&[("a", 1, 2500.0)]);
    let r = simulate_with(&p, &s, &[o], &SimOptions::expected());
    assert_eq!(r.unfinished_tasks, 2);
    assert!(r.ttc_s.is_infinite());
}

#[test]
fn predicted_simulation_packs_waves_exactly() {
    // 8 tasks of 8 cores on one 32-core node: two waves of 100 s after a 50 s wait.
    let s = summary(bag(8, 8, 100.0));
    let o = offer("a", 32, 1, 50.0);
    let p = plan(Strategy::Ttc, &s, std::slice::from_ref(&o)).unwrap();
    let r = simulate_with(&p, &s, &[o], &SimOptions::expected());
    assert_eq!(r.ttc_s, 250.0);
    assert_eq!(p.predicted_ttc_s, 250.0);
    assert!((r.utilisation - 1.0).abs() < 1e-9);
}

#[test]
fn lognormal_fit_keeps_the_median_and_p90() {
    let d = WaitDistribution::fitted(1000.0, 8000.0);
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let samples: Vec<f64> = (0..20_000).map(|_| d.sample(&mut rng)).collect();
    let e = estimate_from_samples(&samples).unwrap();
    assert!((e.p50_s / 1000.0 - 1.0).abs() < 0.05, "{e:?}");
    assert!((e.p90_s / 8000.0 - 1.0).abs() < 0.08, "{e:?}");
}

#[test]
fn trace_replay_draws_only_measured_waits() {
    let s = summary(bag(10, 1, 10.0));
    let offers = vec![offer("a", 16, 10, 100.0)];
    let p = plan(Strategy::Ttc, &s, &offers).unwrap();
    let trace = [("a".to_string(), vec![11.0, 22.0, 33.0])]
        .into_iter()
        .collect();
    let opts = SimOptions {
        waits: WaitDraw::Trace(trace),
        ..SimOptions::sampled(3)
    };
    let r = simulate_with(&p, &s, &offers, &opts);
    assert!([11.0, 22.0, 33.0].contains(&r.per_pilot_start[0]));
}

#[test]
fn pilot_queue_logs_parse_to_waits() {
    let log = "Session: a.json, Tx: 1641.48, Tq: 52.25\n\
               Session: b.json, Tx: 1640.11, Tq: 38.64\n\
               garbage line\n";
    assert_eq!(wait::parse_pilot_queue_log(log), vec![52.25, 38.64]);
}

/// Replays the measured XSEDE pilot waits when the reference traces are beside the repo.
#[test]
fn measured_comet_waits_replay_in_the_simulator() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/reference/traces/xsede-pilot-queue-2016/raw_data/comet");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("skipped: no traces at {}", dir.display());
        return;
    };
    let waits: Vec<f64> = entries
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .flat_map(|text| wait::parse_pilot_queue_log(&text))
        .collect();
    assert!(waits.len() > 50, "{} waits", waits.len());
    let mut o = offer("comet", 24, 100, 0.0);
    o.queue_wait = estimate_from_samples(&waits).unwrap();
    let s = summary(bag(100, 1, 600.0));
    let p = plan(Strategy::Ttc, &s, std::slice::from_ref(&o)).unwrap();
    let trace = [("comet".to_string(), waits.clone())].into_iter().collect();
    let opts = SimOptions {
        waits: WaitDraw::Trace(trace),
        ..SimOptions::sampled(11)
    };
    let r = simulate_with(&p, &s, &[o], &opts);
    assert!(waits.contains(&r.per_pilot_start[0]));
    assert_eq!(r.unfinished_tasks, 0);
}

// ---- properties ----------------------------------------------------------------------

fn arb_offers() -> impl Arbitrary<Value = Vec<ResourceOffer>> {
    prop::collection::vec(
        (
            prop::sample::select(vec![16u32, 32, 48, 128]),
            0u32..=4,
            1u32..=64,
            1u32..=200,
            prop::sample::select(vec![3600.0f64, 12.0 * 3600.0, 48.0 * 3600.0]),
            0.0f64..20_000.0,
            0u32..=8,
        ),
        1..5,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (cores, gpus, max_nodes, total, wall, p50, free))| {
                let mut o = offer(&format!("r{i}"), cores, total, p50);
                o.gpus_per_node = gpus;
                o.free_nodes = free;
                o.queues[0].max_nodes = max_nodes;
                o.queues[0].max_walltime_s = wall;
                o.queues.push(QueueOffer::new("debug", 1800.0, 2));
                // A capability queue for large jobs only (like Polaris `prod`).
                o.queues.push(QueueOffer {
                    min_nodes: (total / 4).max(1),
                    ..QueueOffer::new("prod", 72.0 * 3600.0, total)
                });
                o
            })
            .collect()
    })
}

fn arb_summary() -> impl Arbitrary<Value = WorkflowSummary> {
    prop::collection::vec(
        (
            1u32..=64,
            0u32..=1,
            10.0f64..4000.0,
            any::<bool>(),
            0usize..50,
        ),
        1..40,
    )
    .prop_flat_map(|v| {
        let n = v.len();
        // Optionally a barrier: tasks [0, cut) before tasks [cut, n) (acyclic, as parents
        // always come earlier).
        (Just(v), prop::option::of(0..n))
    })
    .prop_map(|(v, cut)| {
        let n = v.len();
        let joins = cut
            .filter(|&c| c > 0)
            .map(|c| Join {
                members: (0..c).collect(),
                dependents: (c..n).collect(),
            })
            .into_iter()
            .collect();
        let tasks = v
            .iter()
            .enumerate()
            .map(|(i, &(cores, gpus, est_s, mpi, parent))| TaskShape {
                cores,
                gpus,
                mem_mb: 1000,
                processes: 1,
                multi_node: mpi,
                est_s,
                depends_on: if parent < i { vec![parent] } else { vec![] },
            })
            .collect();
        WorkflowSummary::from_parts(tasks, joins, 1_000_000).unwrap()
    })
}

fn pilot_scheduler(o: &ResourceOffer, nodes: u32) -> Scheduler {
    Scheduler::new(
        (0..nodes)
            .map(|n| NodeSpec {
                name: format!("{}-{n}", o.name),
                cores: o.cores_per_node,
                gpus: o.gpus_per_node,
                mem_mb: o.mem_mb_per_node,
            })
            .collect(),
    )
}

fn check_plan(p: &Plan, offers: &[ResourceOffer]) -> Result<(), TestCaseError> {
    prop_assert!(!p.pilots.is_empty());
    for pilot in &p.pilots {
        let o = offers.iter().find(|o| o.name == pilot.resource).unwrap();
        let q = o.queue(&pilot.queue).unwrap();
        prop_assert!(pilot.nodes >= 1);
        prop_assert!(pilot.nodes <= q.max_nodes && pilot.nodes <= o.total_nodes);
        prop_assert!(
            pilot.nodes >= q.min_nodes,
            "{} nodes in queue {} of {} (min {})",
            pilot.nodes,
            q.name,
            o.name,
            q.min_nodes
        );
        prop_assert!(pilot.walltime_s <= q.max_walltime_s);
    }
    Ok(())
}

fn check_every_task_fits(
    p: &Plan,
    s: &WorkflowSummary,
    offers: &[ResourceOffer],
) -> Result<(), TestCaseError> {
    for (i, t) in s.tasks.iter().enumerate() {
        let fits = p.pilots.iter().any(|pilot| {
            let o = offers.iter().find(|o| o.name == pilot.resource).unwrap();
            t.est_s <= pilot.walltime_s
                && pilot_scheduler(o, pilot.nodes)
                    .can_ever_fit(&t.request())
                    .is_ok()
        });
        prop_assert!(fits, "task {} fits no pilot of {:?}", i, p.pilots);
    }
    Ok(())
}

/// Whether any queue of any offer could ever run `t`: a pilot as large as the queue allows,
/// with the queue's longest walltime.
fn some_queue_could_run(t: &TaskShape, offers: &[ResourceOffer]) -> bool {
    offers.iter().any(|o| {
        o.queues.iter().any(|q| {
            let limit = q.max_nodes.min(o.total_nodes);
            q.min_nodes <= limit
                && t.est_s <= q.max_walltime_s
                && pilot_scheduler(o, limit).can_ever_fit(&t.request()).is_ok()
        })
    })
}

/// A plan, or the error that a task really fits nowhere (naming that very task).
fn check_plan_or_misfit(
    strategy: Strategy,
    s: &WorkflowSummary,
    offers: &[ResourceOffer],
) -> Result<Option<Plan>, TestCaseError> {
    match plan(strategy, s, offers) {
        Ok(p) => {
            check_plan(&p, offers)?;
            Ok(Some(p))
        }
        Err(PlanError::TaskFitsNowhere { task, reasons }) => {
            prop_assert!(
                !some_queue_could_run(&s.tasks[task], offers),
                "{}: task {} ({:?}) was said to fit nowhere: {}",
                strategy.name(),
                task,
                s.tasks[task],
                reasons
            );
            Ok(None)
        }
        Err(e) => Err(TestCaseError::fail(format!("{}: {e}", strategy.name()))),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn plans_respect_queue_limits_and_every_task_fits_a_pilot(s in arb_summary(), offers in arb_offers()) {
        let ttc = check_plan_or_misfit(Strategy::Ttc, &s, &offers)?;
        if let Some(p) = &ttc {
            check_every_task_fits(p, &s, &offers)?;
            prop_assert!(p.predicted_ttc_s.is_finite(), "ttc plan never finishes: {:?}", p.pilots);
        }
        let aimes = check_plan_or_misfit(Strategy::Aimes { late_binding: true }, &s, &offers)?;
        // Both strategies agree on whether the workload can run at all.
        prop_assert_eq!(ttc.is_some(), s.tasks.iter().all(|t| some_queue_could_run(t, &offers)));
        if ttc.is_some() {
            prop_assert!(aimes.is_some());
        }
    }

    #[test]
    fn budget_plans_never_exceed_the_cap(
        s in arb_summary(),
        offers in arb_offers(),
        cap in 1.0f64..5000.0,
        cost_cap in 1.0f64..5000.0,
    ) {
        let strategy = Strategy::Budget { max_core_hours: Some(cap), max_cost: Some(cost_cap) };
        match plan(strategy, &s, &offers) {
            Ok(p) => {
                check_plan(&p, &offers)?;
                check_every_task_fits(&p, &s, &offers)?;
                prop_assert!(p.core_hours_requested <= cap + 1e-9);
                prop_assert!(p.predicted_ttc_s.is_finite(), "budget plan never finishes: {:?}", p.pilots);
                prop_assert!(p.cost(&offers) <= cost_cap + 1e-9);
            }
            Err(PlanError::OverBudget { core_hours, cost }) => {
                // The cheapest plan found that finishes, over the cap.
                prop_assert!(core_hours > cap || cost > cost_cap, "{} {} under the caps", core_hours, cost);
            }
            Err(PlanError::NoFinishingPlanInBudget { .. }) | Err(PlanError::TaskFitsNowhere { .. }) => {}
            Err(e) => prop_assert!(false, "unexpected error {}", e),
        }
    }
}
