//! Merging several sites' snapshots and the `emanager resources` table.

use emanager_bundles::model::{PilotQueueDepth, QueueSnapshot, ResourceSnapshot, Snapshot};
use emanager_bundles::{merge, render_table};

fn resource(name: &str, probed_ms: u64, stale: bool, free: u32) -> ResourceSnapshot {
    ResourceSnapshot {
        name: name.into(),
        access: "slurm".into(),
        probed_ms,
        stale,
        error: stale.then(|| "ssh: connection refused".to_string()),
        queues: vec![QueueSnapshot {
            name: "debug".into(),
            max_walltime_s: Some(3600),
            nodes_total: 4,
            nodes_free: free,
            reported: true,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn snapshot(site: &str, taken_ms: u64, resources: Vec<ResourceSnapshot>) -> Snapshot {
    Snapshot {
        site: site.into(),
        taken_ms,
        resources,
        pilot_queues: vec![PilotQueueDepth {
            queue: "em.c.pilot.p".into(),
            campaign: "c".into(),
            pilot: "p".into(),
            ready: taken_ms,
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[test]
fn merge_prefers_a_good_probe_over_a_newer_stale_one() {
    let a = snapshot(
        "a",
        100,
        vec![resource("x", 90, false, 1), resource("y", 90, false, 1)],
    );
    let b = snapshot(
        "b",
        200,
        vec![resource("x", 50, true, 3), resource("z", 190, false, 2)],
    );
    let m = merge(&[a, b]);
    assert_eq!(m.site, "a+b");
    assert_eq!(m.taken_ms, 200);
    let names: Vec<&str> = m.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["x", "y", "z"]);
    assert!(!m.resource("x").unwrap().stale);
    assert_eq!(m.pilot_queues.len(), 1);
    assert_eq!(m.pilot_queues[0].ready, 200, "newest snapshot wins");
}

#[test]
fn merge_keeps_a_stale_resource_when_no_site_has_a_good_one() {
    let m = merge(&[snapshot("a", 1, vec![resource("x", 0, true, 0)])]);
    assert!(m.resource("x").unwrap().stale);
}

#[test]
fn table_lists_every_queue_and_flags_stale_resources_with_their_error() {
    let snaps = [snapshot(
        "a",
        1,
        vec![resource("x", 1, false, 3), resource("y", 0, true, 0)],
    )];
    let table = render_table(&snaps);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("SITE"), "{table}");
    assert!(
        lines[1].contains("x") && lines[1].contains("3/4") && lines[1].contains("01:00:00"),
        "{table}"
    );
    assert!(lines[2].contains("never STALE"), "{table}");
    assert!(table.contains("! a/y: ssh: connection refused"), "{table}");
    assert!(table.contains("em.c.pilot.p"), "{table}");
}
