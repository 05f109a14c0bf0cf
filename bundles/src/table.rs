//! `emanager resources`: the snapshots as a terminal table, one line per queue.

use crate::model::Snapshot;
use emanager_shared::access::timefmt::format_hms;
use std::fmt::Write;

/// One line per resource and queue: its site, nodes free/total (down), jobs running/queued,
/// queued node-hours when known, walltime limit, and the probe's age (`STALE` when the last
/// probe failed or its service stopped updating, with the error below); then pilot queues.
/// Give it one [`crate::merge`]d snapshot for one view over sites.
pub fn render_table(snapshots: &[Snapshot]) -> String {
    let now = emanager_shared::now_ms();
    let mut rows: Vec<[String; 9]> = vec![[
        "SITE",
        "RESOURCE",
        "QUEUE",
        "FREE/TOTAL",
        "DOWN",
        "RUN",
        "QUEUED",
        "MAX WALL",
        "PROBED",
    ]
    .map(String::from)];
    let mut notes = Vec::new();
    for snap in snapshots {
        for r in &snap.resources {
            let probed = if r.probed_ms == 0 {
                "never".to_string()
            } else {
                format!("{}s ago", now.saturating_sub(r.probed_ms) / 1000)
            };
            let probed = if r.stale {
                format!("{probed} STALE")
            } else {
                probed
            };
            let site = if r.site.is_empty() {
                &snap.site
            } else {
                &r.site
            };
            if let Some(e) = &r.error {
                notes.push(format!("{site}/{}: {e}", r.name));
            }
            for q in &r.queues {
                let queued = match q.queued_node_s() {
                    Some(ns) => format!("{} ({:.1} nh)", q.jobs_queued, ns as f64 / 3600.0),
                    None => q.jobs_queued.to_string(),
                };
                rows.push([
                    site.clone(),
                    r.name.clone(),
                    q.name.clone(),
                    if q.reported {
                        format!("{}/{}", q.nodes_free, q.nodes_total)
                    } else {
                        "-".into()
                    },
                    q.nodes_down.to_string(),
                    q.jobs_running.to_string(),
                    queued,
                    q.max_walltime_s.map_or("-".into(), format_hms),
                    probed.clone(),
                ]);
            }
        }
    }
    let mut widths = [0usize; 9];
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    let pilot_queues: Vec<_> = snapshots.iter().flat_map(|s| &s.pilot_queues).collect();
    if !pilot_queues.is_empty() {
        let _ = writeln!(out, "\nPILOT QUEUE  READY  UNACKED  CONSUMERS");
        for q in pilot_queues {
            let _ = writeln!(
                out,
                "{}  {}  {}  {}",
                q.queue, q.ready, q.unacked, q.consumers
            );
        }
    }
    for note in notes.iter().chain(snapshots.iter().flat_map(|s| &s.errors)) {
        let _ = writeln!(out, "! {note}");
    }
    out
}
