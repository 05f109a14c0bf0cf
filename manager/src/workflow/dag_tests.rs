//! The DAG alone: release order, failure propagation, cycles; random DAGs by proptest.

use super::dag::{parent_failed_reason, Dag};
use super::{Group, Stage, TaskDef, Workflow};
use emanager_shared::{TaskId, TaskSpec};
use proptest::prelude::*;

/// A workflow of tasks `t0..tN` with the given explicit parents.
fn workflow(parents: &[Vec<usize>]) -> Workflow {
    let tasks = parents
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let spec = TaskSpec::new(TaskId(uuid::Uuid::nil()), format!("t{i}"), vec!["x".into()]);
            TaskDef::new(spec, p.clone())
        })
        .collect();
    Workflow::new("w", tasks)
}

#[test]
fn diamond_releases_the_join_after_both_branches() {
    // t0 -> t1, t0 -> t2, (t1, t2) -> t3
    let mut dag = Dag::new(&workflow(&[vec![], vec![0], vec![0], vec![1, 2]]));
    assert_eq!(dag.roots(), [0]);
    let mut ready = dag.complete(0);
    ready.sort();
    assert_eq!(ready, [1, 2]);
    assert!(dag.complete(1).is_empty());
    assert!(dag.is_waiting(3));
    assert_eq!(dag.complete(2), [3]);
    assert!(!dag.is_waiting(3));
}

#[test]
fn completing_twice_releases_nothing_more() {
    let mut dag = Dag::new(&workflow(&[vec![], vec![], vec![0, 1]]));
    assert!(dag.complete(0).is_empty());
    assert!(dag.complete(0).is_empty());
    assert!(dag.is_waiting(2));
    assert_eq!(dag.complete(1), [2]);
}

#[test]
fn failure_cancels_every_transitive_dependent_naming_the_parent() {
    let wf = workflow(&[vec![], vec![0], vec![1], vec![]]);
    let dag = Dag::new(&wf);
    let mut doomed = dag.dependents(0);
    doomed.sort();
    assert_eq!(doomed, [1, 2]);
    assert_eq!(
        dag.cancellations(&wf, 1),
        [(2, "parent `t1` failed".to_string())]
    );
    assert_eq!(parent_failed_reason("sim-3"), "parent `sim-3` failed");
}

#[test]
fn fail_cancels_each_dependent_once() {
    // t0, t1 -> t2 -> t3
    let mut dag = Dag::new(&workflow(&[vec![], vec![], vec![0, 1], vec![2]]));
    let mut first = dag.fail(0);
    first.sort();
    assert_eq!(first, [2, 3]);
    assert!(dag.fail(1).is_empty(), "already canceled");
}

#[test]
fn cycle_is_found_in_depends_on_order() {
    // t0 depends on t2, t2 on t1, t1 on t0.
    let dag = Dag::new(&workflow(&[vec![2], vec![0], vec![1], vec![]]));
    let cycle = dag.find_cycle().expect("a cycle");
    assert_eq!(cycle.len(), 3);
    let wf = workflow(&[vec![2], vec![0], vec![1], vec![]]);
    for k in 0..cycle.len() {
        let (a, b) = (cycle[k], cycle[(k + 1) % cycle.len()]);
        assert!(wf.tasks[a].depends_on.contains(&b), "{a} depends on {b}");
    }
}

/// Random DAGs: parents have lower indices; tasks get non-decreasing stages and may depend on
/// a group of earlier tasks.
fn random_workflow() -> impl Strategy<Value = Workflow> {
    (1usize..40).prop_flat_map(|n| {
        (
            proptest::collection::vec(
                proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
                n,
            ),
            proptest::collection::vec(0usize..3, n),
            proptest::collection::vec(any::<Option<prop::sample::Index>>(), n),
        )
            .prop_map(move |(parents, mut stages, groups)| {
                stages.sort();
                let parents: Vec<Vec<usize>> = parents
                    .iter()
                    .enumerate()
                    .map(|(i, ps)| {
                        let mut v: Vec<usize> = if i == 0 {
                            vec![]
                        } else {
                            ps.iter().map(|p| p.index(i)).collect()
                        };
                        v.sort();
                        v.dedup();
                        v
                    })
                    .collect();
                let mut wf = workflow(&parents);
                for s in 0..3 {
                    wf.stages.push(Stage {
                        name: format!("s{s}"),
                        description: None,
                        group: s,
                    });
                    let members = (0..n).filter(|&i| stages[i] == s).collect();
                    wf.groups.push(Group {
                        name: format!("stage:s{s}"),
                        members,
                    });
                }
                for (i, t) in wf.tasks.iter_mut().enumerate() {
                    t.stage = Some(stages[i]);
                }
                // An array-like group: the first half of the tasks before task i.
                for (i, g) in groups.iter().enumerate() {
                    if let (Some(g), true) = (g, i > 0) {
                        let end = g.index(i) + 1;
                        wf.groups.push(Group {
                            name: format!("g{i}"),
                            members: (0..end).collect(),
                        });
                        let id = wf.groups.len() - 1;
                        wf.tasks[i].depends_on_groups.push(id);
                    }
                }
                wf
            })
    })
}

/// Whether `a` must come before `b`.
fn must_precede(wf: &Workflow, a: usize, b: usize) -> bool {
    let t = &wf.tasks[b];
    t.depends_on.contains(&a)
        || t.depends_on_groups
            .iter()
            .any(|&g| wf.groups[g].members.contains(&a))
        || matches!((wf.tasks[a].stage, t.stage), (Some(x), Some(y)) if x < y)
}

proptest! {
    #[test]
    fn random_dags_release_every_task_once_in_topological_order(
        wf in random_workflow(),
        picks in proptest::collection::vec(any::<prop::sample::Index>(), 40),
    ) {
        let dag0 = Dag::new(&wf);
        prop_assert!(dag0.find_cycle().is_none());
        let mut dag = dag0.clone();
        let mut ready = dag.roots();
        let mut order = Vec::new();
        let mut released = vec![0u32; wf.tasks.len()];
        for &r in &ready {
            released[r] += 1;
        }
        let mut k = 0;
        while !ready.is_empty() {
            let next = ready.swap_remove(picks[k % picks.len()].index(ready.len()));
            k += 1;
            order.push(next);
            for c in dag.complete(next) {
                released[c] += 1;
                ready.push(c);
            }
        }
        prop_assert!(released.iter().all(|&r| r == 1), "released {:?}", released);
        let mut position = vec![0; wf.tasks.len()];
        for (p, &t) in order.iter().enumerate() {
            position[t] = p;
        }
        for a in 0..wf.tasks.len() {
            for b in 0..wf.tasks.len() {
                if must_precede(&wf, a, b) {
                    prop_assert!(position[a] < position[b], "{} before {}", a, b);
                }
            }
        }
    }

    #[test]
    fn fail_returns_the_union_of_dependents_each_once(
        wf in random_workflow(),
        failing in proptest::collection::vec(any::<prop::sample::Index>(), 1..5),
    ) {
        let pure = Dag::new(&wf);
        let mut dag = pure.clone();
        let mut expected = std::collections::BTreeSet::new();
        let mut got = Vec::new();
        for f in failing {
            let i = f.index(wf.tasks.len());
            expected.extend(pure.dependents(i));
            got.extend(dag.fail(i));
        }
        got.sort();
        prop_assert_eq!(got, expected.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn an_edge_back_to_the_start_makes_a_cycle_exactly_when_it_closes_a_path(
        wf in random_workflow(),
        from in any::<prop::sample::Index>(),
    ) {
        let mut wf = wf;
        let a = from.index(wf.tasks.len());
        let closes = a == 0 || Dag::new(&wf).dependents(0).contains(&a);
        wf.tasks[0].depends_on.push(a); // t0 now waits for a
        prop_assert_eq!(Dag::new(&wf).find_cycle().is_some(), closes);
    }
}
