//! Grid Engine's hosts and jobs: `qhost -q` (every execution host with its queue instances)
//! and `qstat -u '*' -r` (every job with its slots, hard resources and requested queues).

use super::{JobInfo, NodeCounts};
use crate::access::sge::map_state;
use crate::access::timefmt::{current_year, parse_duration, parse_timestamp};
use crate::access::{JobState, QueueInfo};

/// Whether queue-instance states (`qhost -q`, `qstat -f`) make the instance unusable:
/// unknown (`u`, execd not reporting), error (`E`), disabled (`d`/`D`), calendar-disabled
/// (`C`).
pub fn instance_down(states: &str) -> bool {
    states.contains(['u', 'E', 'd', 'D', 'C'])
}

/// Cluster queues from `qhost -q`: each host is a node of every queue with an instance on
/// it. A node is down when its host does not report (load `-`) or its instance is down
/// ([`instance_down`]), busy when the instance has used slots, else free. The `global`
/// pseudo-host is skipped. Job counts and limits are left to the caller.
pub fn parse_qhost_queues(stdout: &str) -> Vec<QueueInfo> {
    let mut counts: Vec<(String, NodeCounts)> = Vec::new();
    let mut host_reporting = false;
    let mut in_host = false;
    for line in stdout.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() || line.starts_with("---") || f[0] == "HOSTNAME" {
            continue;
        }
        if !line.starts_with(char::is_whitespace) {
            // HOSTNAME ARCH NCPU NSOC NCOR NTHR LOAD MEMTOT MEMUSE SWAPTO SWAPUS
            in_host = f[0] != "global";
            host_reporting = f.get(6).is_some_and(|load| *load != "-");
            continue;
        }
        if !in_host || f.len() < 3 {
            continue;
        }
        // queue qtype resv/used/tot [states]
        let used: u32 = f[2]
            .split('/')
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let states = f.get(3).copied().unwrap_or("");
        let down = !host_reporting || instance_down(states);
        let i = match counts.iter().position(|(q, _)| q == f[0]) {
            Some(i) => i,
            None => {
                counts.push((f[0].to_string(), NodeCounts::default()));
                counts.len() - 1
            }
        };
        counts[i].1.add(down, used > 0);
    }
    counts
        .into_iter()
        .map(|(name, n)| QueueInfo {
            name,
            nodes_total: n.total,
            nodes_free: n.free,
            nodes_busy: n.busy,
            nodes_down: n.down,
            ..Default::default()
        })
        .collect()
}

/// An `h_rt` value: seconds (`600`) or `[HH:]MM:SS`.
fn h_rt_seconds(value: &str) -> Option<u64> {
    let v = value.trim();
    if v.chars().all(|c| c.is_ascii_digit()) {
        return v.parse().ok();
    }
    parse_duration(v)
}

/// Jobs from `qstat -u '*' -r`: queued and running jobs with their slots, `h_rt` and
/// queues (the master queue of a running job; the hard-requested queues of a pending one,
/// none meaning any). Jobs in error or being deleted before they ran are left out. The
/// date column is the submission time of a pending job and the start of a running one.
pub fn parse_qstat_r(stdout: &str) -> Vec<JobInfo> {
    let year = current_year();
    let mut jobs: Vec<JobInfo> = Vec::new();
    let mut label = String::new();
    for line in stdout.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() || line.starts_with("---") || f[0] == "job-ID" {
            continue;
        }
        if f[0].chars().all(|c| c.is_ascii_digit()) && f.len() >= 8 {
            // job-ID prior name user state date time [queue] slots [ja-task-ID]
            let (queue, slots) = match f[7].split_once('@') {
                Some((q, _)) => (Some(q), f.get(8)),
                None => (None, f.get(7)),
            };
            let state = map_state(f[4]);
            let when = parse_timestamp(&format!("{} {}", f[5], f[6]), year);
            jobs.push(JobInfo {
                id: f[0].to_string(),
                name: f[2].to_string(),
                queues: queue.map(|q| vec![q.to_string()]).unwrap_or_default(),
                state,
                cores: slots.and_then(|s| s.parse().ok()).unwrap_or(0),
                submit_ms: if state == JobState::Queued {
                    when
                } else {
                    None
                },
                start_ms: if state == JobState::Running {
                    when
                } else {
                    None
                },
                ..Default::default()
            });
            label.clear();
            continue;
        }
        let Some(job) = jobs.last_mut() else {
            continue;
        };
        // Detail lines: `Label: value` (labels are words), continued on lines without one.
        let text = line.trim();
        let value = match text.split_once(':') {
            Some((l, v)) if !l.is_empty() && l.chars().all(|c| c.is_alphabetic() || c == ' ') => {
                label = l.to_string();
                v.trim()
            }
            _ => text,
        };
        match label.as_str() {
            "Full jobname" => job.name = value.to_string(),
            "Hard Resources" => {
                for res in value.split_whitespace() {
                    if let Some(v) = res.strip_prefix("h_rt=") {
                        job.walltime_s = h_rt_seconds(v).unwrap_or(0);
                    }
                }
            }
            "Hard requested queues" if job.state == JobState::Queued => {
                job.queues = value
                    .split(',')
                    .map(|q| q.split('@').next().unwrap_or("").trim().to_string())
                    .filter(|q| !q.is_empty() && !q.contains('*'))
                    .collect();
            }
            _ => {}
        }
    }
    jobs.retain(|j| matches!(j.state, JobState::Queued | JobState::Running));
    jobs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h_rt_is_seconds_or_clock_time() {
        assert_eq!(h_rt_seconds("600"), Some(600));
        assert_eq!(h_rt_seconds("1:00:00"), Some(3600));
    }
}
