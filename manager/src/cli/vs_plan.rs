//! `emanager report CAMPAIGN --vs-plan`: a planned campaign's prediction next to what
//! happened: time to completion, each planned pilot's queue wait, the pilots adaptive
//! execution added, and core-hours. The comparison is pure (records in, rows out).

use crate::campaign::PlanRecord;
use emanager_shared::model::{CampaignMeta, PilotRecord};
use emanager_shared::PilotState;
use serde::Serialize;

/// One pilot, planned or not, with its predicted and achieved queue wait.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PilotRow {
    pub resource: String,
    /// `None` for a pilot the plan did not have (added, replacing one).
    pub planned: Option<usize>,
    pub pilot: Option<String>,
    pub state: Option<String>,
    pub predicted_wait_s: Option<f64>,
    /// Submission to registration; `None` when it never started.
    pub achieved_wait_s: Option<f64>,
}

/// The whole comparison.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    pub strategy: String,
    pub predicted_ttc_s: f64,
    /// Created to finished (or now, while it runs).
    pub achieved_ttc_s: f64,
    pub finished: bool,
    /// Achieved over predicted time to completion.
    pub ttc_ratio: f64,
    pub core_hours_planned: f64,
    /// Cores x walltime of every pilot that started or was submitted.
    pub core_hours_requested: f64,
    pub pilots: Vec<PilotRow>,
}

/// Pairs each planned pilot with the first pilot launched on its resource (by submission
/// time); the pilots left over were added by the manager.
pub fn compare(
    plan: &PlanRecord,
    meta: &CampaignMeta,
    pilots: &[PilotRecord],
    now_ms: u64,
) -> Comparison {
    let end = if meta.finished_ms > 0 {
        meta.finished_ms
    } else {
        now_ms
    };
    let achieved_ttc_s = end.saturating_sub(meta.created_ms) as f64 / 1000.0;
    let mut launched: Vec<&PilotRecord> = pilots.iter().collect();
    launched.sort_by_key(|p| (p.submitted_ms, p.registered_ms));
    let mut used = vec![false; launched.len()];
    let row_of = |p: &PilotRecord, planned: Option<usize>, predicted: Option<f64>| PilotRow {
        resource: p.resource.clone(),
        planned,
        pilot: Some(p.id.to_string()),
        state: Some(p.state.to_string()),
        predicted_wait_s: predicted,
        achieved_wait_s: (p.registered_ms > 0 && p.submitted_ms > 0)
            .then(|| p.registered_ms.saturating_sub(p.submitted_ms) as f64 / 1000.0),
    };
    let mut rows = Vec::new();
    for (i, planned) in plan.pilots.iter().enumerate() {
        let found = launched
            .iter()
            .enumerate()
            .find(|(k, p)| !used[*k] && p.resource == planned.resource)
            .map(|(k, p)| (k, *p));
        match found {
            Some((k, p)) => {
                used[k] = true;
                rows.push(row_of(p, Some(i), Some(planned.predicted_wait_s)));
            }
            None => rows.push(PilotRow {
                resource: planned.resource.clone(),
                planned: Some(i),
                pilot: None,
                state: None,
                predicted_wait_s: Some(planned.predicted_wait_s),
                achieved_wait_s: None,
            }),
        }
    }
    for (k, p) in launched.iter().enumerate() {
        if !used[k] {
            rows.push(row_of(p, None, None));
        }
    }
    let core_hours_requested = pilots
        .iter()
        .filter(|p| p.state != PilotState::New)
        .map(|p| {
            let walltime_s = if p.walltime_end_ms > 0 && p.registered_ms > 0 {
                p.walltime_end_ms.saturating_sub(p.registered_ms) as f64 / 1000.0
            } else {
                // Local pilots without a walltime hold their cores until the campaign ends.
                end.saturating_sub(p.submitted_ms.max(meta.created_ms)) as f64 / 1000.0
            };
            p.cores as f64 * walltime_s / 3600.0
        })
        .sum();
    Comparison {
        strategy: plan.strategy.clone(),
        predicted_ttc_s: plan.predicted_ttc_s,
        achieved_ttc_s,
        finished: meta.finished_ms > 0,
        ttc_ratio: achieved_ttc_s / plan.predicted_ttc_s.max(1e-3),
        core_hours_planned: plan.core_hours_requested,
        core_hours_requested,
        pilots: rows,
    }
}

fn secs(s: Option<f64>) -> String {
    s.map(|s| crate::progress::format_duration(std::time::Duration::from_secs_f64(s.max(0.0))))
        .unwrap_or_else(|| "-".into())
}

/// The comparison as text: TTC first, then one row per pilot.
pub fn human(c: &Comparison) -> String {
    let mut out = format!(
        "plan ({}) vs achieved: time to completion {} predicted, {} {} ({:.2}x); core-hours {:.2} planned, {:.2} requested\n",
        c.strategy,
        secs(Some(c.predicted_ttc_s)),
        secs(Some(c.achieved_ttc_s)),
        if c.finished { "achieved" } else { "so far" },
        c.ttc_ratio,
        c.core_hours_planned,
        c.core_hours_requested
    );
    let rows: Vec<Vec<String>> = c
        .pilots
        .iter()
        .map(|p| {
            vec![
                p.planned
                    .map(|i| format!("#{}", i + 1))
                    .unwrap_or_else(|| "added".into()),
                p.resource.clone(),
                p.pilot
                    .as_deref()
                    .map(|id| id[..8.min(id.len())].to_string())
                    .unwrap_or_else(|| "-".into()),
                p.state.clone().unwrap_or_else(|| "never launched".into()),
                secs(p.predicted_wait_s),
                secs(p.achieved_wait_s),
            ]
        })
        .collect();
    out.push_str(&super::output::table(
        &[
            "PLANNED",
            "RESOURCE",
            "PILOT",
            "STATE",
            "WAIT PREDICTED",
            "WAIT ACHIEVED",
        ],
        &rows,
    ));
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::PlannedPilotRecord;
    use emanager_shared::{CampaignId, CampaignState, PilotId};

    fn planned(resource: &str, wait: f64) -> PlannedPilotRecord {
        PlannedPilotRecord {
            resource: resource.into(),
            queue: "q".into(),
            nodes: 1,
            walltime_s: 3600.0,
            predicted_wait_s: wait,
            why: String::new(),
        }
    }

    fn pilot(resource: &str, submitted: u64, registered: u64) -> PilotRecord {
        let mut p = PilotRecord::new(PilotId::random(), resource);
        p.state = PilotState::Done;
        p.cores = 4;
        p.submitted_ms = submitted;
        p.registered_ms = registered;
        p.walltime_end_ms = registered + 3_600_000;
        p
    }

    #[test]
    fn planned_pilots_meet_their_launches_and_the_rest_are_added() {
        let plan = PlanRecord {
            strategy: "ttc".into(),
            predicted_ttc_s: 100.0,
            core_hours_requested: 8.0,
            pilots: vec![planned("a", 30.0), planned("b", 60.0), planned("c", 10.0)],
            replan_interval_s: 60,
            max_pilots: 6,
        };
        let meta = CampaignMeta {
            id: CampaignId::random(),
            name: "x".into(),
            state: CampaignState::Done,
            created_ms: 1_000_000,
            finished_ms: 1_150_000,
            task_count: 1,
            spec_digest: String::new(),
            workflow_format: "toml".into(),
            workflow_source: String::new(),
            options_json: String::new(),
        };
        let pilots = vec![
            pilot("b", 1_000_100, 1_090_100),
            pilot("a", 1_000_000, 1_020_000),
            pilot("a", 1_050_000, 1_055_000), // added behind plan
        ];
        let c = compare(&plan, &meta, &pilots, 0);
        assert_eq!(c.achieved_ttc_s, 150.0);
        assert!((c.ttc_ratio - 1.5).abs() < 1e-9);
        let waits: Vec<(Option<usize>, &str, Option<f64>)> = c
            .pilots
            .iter()
            .map(|p| (p.planned, p.resource.as_str(), p.achieved_wait_s))
            .collect();
        assert_eq!(
            waits,
            [
                (Some(0), "a", Some(20.0)),
                (Some(1), "b", Some(90.0)),
                (Some(2), "c", None),
                (None, "a", Some(5.0)),
            ]
        );
        assert_eq!(c.pilots[2].state, None, "c was never launched");
        assert!(
            (c.core_hours_requested - 12.0).abs() < 1e-9,
            "3 pilots x 4 cores x 1 h"
        );
        let text = human(&c);
        assert!(text.contains("(1.50x)"), "{text}");
        assert!(text.contains("never launched"), "{text}");
        assert!(text.contains("added"), "{text}");
    }
}
