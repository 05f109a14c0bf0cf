//! The AIMES baseline (aimes.emgr `strategy.py`): one pilot per chosen resource, pilot cores
//! = ceil(total task cores / pilots) rounded up to whole nodes, walltime = the n longest task
//! durations (n = pilots) + staging (total I/O MB x 5 s) + 600 s + 4 s per task.

use super::estimate::Profile;
use super::summary::WorkflowSummary;
use super::{PlanError, PlannedPilot, ResourceOffer};

/// Staging time per megabyte (1 MB = 10^6 bytes) of input plus output.
pub(crate) const STAGING_S_PER_MB: f64 = 5.0;
/// Fixed pilot overhead.
pub(crate) const OVERHEAD_S: f64 = 600.0;
/// Overhead per task.
pub(crate) const PER_TASK_S: f64 = 4.0;

/// AIMES pilot walltime for `n_pilots` pilots, before queue limits.
pub(crate) fn walltime_s(summary: &WorkflowSummary, n_pilots: usize) -> f64 {
    let mut durations: Vec<f64> = summary.tasks.iter().map(|t| t.est_s).collect();
    let n = n_pilots.min(durations.len());
    let compute: f64 = if n == 0 {
        0.0
    } else {
        let cut = durations.len() - n;
        durations.select_nth_unstable_by(cut, |a, b| a.total_cmp(b));
        durations[cut..].iter().sum()
    };
    let staging = summary.data_bytes as f64 / 1e6 * STAGING_S_PER_MB;
    compute + staging + OVERHEAD_S + PER_TASK_S * summary.task_count as f64
}

/// AIMES nodes per pilot for `n_pilots` pilots of `cores_per_node`, before queue limits.
pub(crate) fn nodes(summary: &WorkflowSummary, n_pilots: usize, cores_per_node: u32) -> u32 {
    let n = n_pilots.max(1) as u64;
    let cores = summary.total_task_cores().div_ceil(n);
    cores.div_ceil(u64::from(cores_per_node.max(1))).max(1) as u32
}

pub(crate) fn pilots(
    summary: &WorkflowSummary,
    offers: &[ResourceOffer],
    profile: &Profile,
    late_binding: bool,
) -> Result<Vec<PlannedPilot>, PlanError> {
    // Resources that can run at least one task; early binding takes the first of them.
    let mut chosen: Vec<usize> = (0..offers.len())
        .filter(|&o| {
            (0..profile.shapes.len()).any(|s| profile.fit[o][s] != super::estimate::Fit::Never)
        })
        .collect();
    if !late_binding {
        chosen.truncate(1);
    }
    let n = chosen.len();
    let walltime = walltime_s(summary, n);
    chosen
        .into_iter()
        .map(|o| {
            let offer = &offers[o];
            let queue =
                offer
                    .queue(&offer.default_queue)
                    .ok_or_else(|| PlanError::UnknownQueue {
                        resource: offer.name.clone(),
                        queue: offer.default_queue.clone(),
                    })?;
            let want_nodes = nodes(summary, n, offer.cores_per_node);
            let minimum = ResourceOffer::node_minimum(queue);
            let nodes = want_nodes.min(offer.node_limit(queue)).max(minimum);
            let wall = walltime.min(queue.max_walltime_s);
            let mut why = format!(
                "aimes: 1 of {n} pilots, ceil({} task cores / {n}) on {}-core nodes",
                summary.total_task_cores(),
                offer.cores_per_node
            );
            if nodes < want_nodes {
                why.push_str(&format!(
                    "; {want_nodes} nodes cut to the queue limit {nodes}"
                ));
            }
            if nodes > want_nodes {
                why.push_str(&format!(
                    "; {want_nodes} nodes raised to the queue minimum {nodes}"
                ));
            }
            if wall < walltime {
                why.push_str(&format!(
                    "; walltime {walltime:.0} s cut to the queue limit"
                ));
            }
            Ok(PlannedPilot {
                resource: offer.name.clone(),
                queue: queue.name.clone(),
                nodes,
                walltime_s: wall,
                predicted_wait_s: offer.predicted_wait_s(queue, nodes, wall),
                why,
            })
        })
        .collect()
}
