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

#[test]
fn a_snapshot_older_than_three_intervals_is_from_a_stopped_service() {
    let now = 10_000_000;
    let mut fresh = snapshot(
        "a",
        now - 150_000,
        vec![resource("x", now - 150_000, false, 1)],
    );
    fresh.interval_ms = 60_000;
    assert!(
        !fresh.mark_if_service_stopped(now),
        "2.5 intervals: still live"
    );
    assert!(!fresh.resource("x").unwrap().stale);

    let mut stopped = snapshot(
        "a",
        now - 600_000,
        vec![
            resource("x", now - 600_000, false, 1),
            resource("y", now - 900_000, true, 0),
        ],
    );
    stopped.interval_ms = 60_000;
    assert!(stopped.mark_if_service_stopped(now));
    assert_eq!(stopped.stopped_updating_s, Some(600));
    let x = stopped.resource("x").unwrap();
    assert!(x.stale);
    assert_eq!(
        x.error.as_deref(),
        Some("bundle service of site `a` stopped updating: last snapshot 600 s ago (expected every 60 s)")
    );
    let y = stopped.resource("y").unwrap();
    assert!(
        y.error
            .as_deref()
            .unwrap()
            .ends_with("; last probe error: ssh: connection refused"),
        "{y:?}"
    );
}

#[test]
fn snapshots_of_older_services_without_an_interval_stop_after_a_minute() {
    let mut s = snapshot("a", 0, vec![resource("x", 0, false, 1)]);
    assert!(!s.mark_if_service_stopped(60_000));
    assert!(s.mark_if_service_stopped(60_001));
}

#[test]
fn merge_prefers_a_live_site_over_a_stopped_one_and_says_which_stopped() {
    let now = 10_000_000;
    let mut stopped = snapshot(
        "old",
        now - 600_000,
        vec![resource("x", now - 600_000, false, 4)],
    );
    stopped.interval_ms = 60_000;
    stopped.mark_if_service_stopped(now);
    let live = snapshot(
        "new",
        now - 1_000,
        vec![resource("x", now - 2_000, true, 1)],
    );
    let m = merge(&[stopped.clone(), live]);
    // Both are stale: the more recent probe wins, the live site's failed one.
    let x = m.resource("x").unwrap();
    assert!(x.stale && x.probed_ms == now - 2_000, "{x:?}");
    assert!(
        m.errors
            .contains(&"old: bundle service stopped updating 600 s ago".to_string()),
        "{:?}",
        m.errors
    );
    let good = snapshot(
        "new",
        now - 1_000,
        vec![resource("x", now - 2_000, false, 1)],
    );
    let m = merge(&[stopped, good]);
    assert!(
        !m.resource("x").unwrap().stale,
        "a live site's good probe wins"
    );
}

#[test]
fn the_merged_table_names_each_resource_by_its_own_site() {
    let mut a = resource("x", 1, false, 3);
    a.site = "a".into();
    let mut b = resource("y", 1, true, 0);
    b.site = "b".into();
    let m = merge(&[snapshot("a", 2, vec![a]), snapshot("b", 1, vec![b])]);
    assert_eq!(m.site, "a+b");
    let table = render_table(&[m]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("a ") && l.contains(" x ")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("b ") && l.contains(" y ")),
        "{table}"
    );
    assert!(table.contains("! b/y: ssh: connection refused"), "{table}");
}
