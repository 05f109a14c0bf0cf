//! Human tables and JSON for the CLI. JSON field names are stable (docs/cli.md).

use crate::driver::{Ending, Outcome};
use crate::progress::format_duration;
use crate::workflow::WorkflowErrors;

/// A plain text table with aligned columns.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < width.len() {
                width[i] = width[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{:<w$}  ", c, w = width[i]));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out.push('\n');
        out.push_str(&line(r.clone()));
    }
    out
}

pub fn print_workflow_errors(errors: &WorkflowErrors, json: bool) {
    if json {
        let list: Vec<_> = errors
            .0
            .iter()
            .map(|e| serde_json::json!({"location": e.location, "message": e.message}))
            .collect();
        println!("{}", serde_json::json!({"valid": false, "errors": list}));
    } else {
        for e in &errors.0 {
            eprintln!("{}: {}", e.location, e.message);
        }
    }
}

pub fn outcome_json(o: &Outcome) -> serde_json::Value {
    serde_json::json!({
        "campaign": o.campaign.to_string(),
        "ending": match o.ending { Ending::Finished => "finished", Ending::Canceled => "canceled", Ending::Interrupted => "interrupted" },
        "counts": o.counts,
        "elapsed_s": o.elapsed.as_secs_f64(),
        "throughput_tasks_per_s": o.counts.finished() as f64 / o.elapsed.as_secs_f64().max(1e-3),
        "first_task_after_s": o.first_task_after.map(|d| d.as_secs_f64()),
        "pilots": o.pilots,
        "failures": o.failures.iter().map(|(t, r)| serde_json::json!({"task": t, "reason": r})).collect::<Vec<_>>(),
        "decisions": decisions_json(&o.decisions),
    })
}

/// A campaign's decisions as JSON: `[{"at_ms": ..., "text": ...}]`.
pub fn decisions_json(d: &[(u64, String)]) -> serde_json::Value {
    d.iter()
        .map(|(at, text)| serde_json::json!({"at_ms": at, "text": text}))
        .collect()
}

pub fn print_outcome(o: &Outcome, json: bool, quiet: bool) {
    if json {
        println!("{}", outcome_json(o));
        return;
    }
    if quiet {
        return;
    }
    let c = &o.counts;
    let secs = o.elapsed.as_secs_f64().max(1e-3);
    println!(
        "campaign {}: {} tasks: {} DONE, {} FAILED, {} CANCELED in {} ({:.1} tasks/s{})",
        o.campaign,
        c.total,
        c.done,
        c.failed,
        c.canceled,
        format_duration(o.elapsed),
        c.finished() as f64 / secs,
        o.first_task_after
            .map(|d| format!(", first task after {:.3}s", d.as_secs_f64()))
            .unwrap_or_default()
    );
    if !o.pilots.is_empty() {
        let rows: Vec<Vec<String>> = o
            .pilots
            .iter()
            .map(|p| {
                vec![
                    p.id.short(),
                    p.state.to_string(),
                    p.cores.to_string(),
                    p.done.to_string(),
                    p.reason.clone(),
                ]
            })
            .collect();
        println!(
            "{}",
            table(&["PILOT", "STATE", "CORES", "TASKS DONE", "NOTE"], &rows)
        );
    }
    if !o.failures.is_empty() {
        println!("failed tasks:");
        for (t, r) in o.failures.iter().take(20) {
            println!("  {t}: {r}");
        }
        if o.failures.len() > 20 {
            println!(
                "  ... and {} more (emanager report {} lists all)",
                o.failures.len() - 20,
                o.campaign
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tables_align_columns() {
        let t = super::table(&["A", "BB"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "A    BB\nxxx  y");
    }
}
