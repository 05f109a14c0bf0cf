//! LSF's hosts and jobs: `bhosts -w` (host states) and `bjobs -u all -noheader -o ...`
//! (every user's unfinished jobs with slots, execution hosts and times).

use super::{JobInfo, NodeCounts};
use crate::access::lsf::map_state;
use crate::access::timefmt::{current_year, parse_timestamp};
use crate::access::JobState;
use std::collections::BTreeSet;

/// `bjobs -o` fields of [`parse_bjobs_jobs`]. The list is the one of the LSF plugin of
/// aiida-core, whose captured output from CERN's cluster is our fixture: the order matters,
/// some fields (`exit_reason`, `user`, `%complete`, the second `exec_host`) are not used.
pub const BJOBS_JOBS_FORMAT: &str = "id stat exit_reason exec_host user slots max_req_proc \
     exec_host queue finish_time start_time %complete submit_time name delimiter='|'";

/// The argv of the listing.
pub fn bjobs_jobs_argv() -> Vec<String> {
    ["bjobs", "-u", "all", "-noheader", "-o", BJOBS_JOBS_FORMAT]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Whether bjobs said there is nothing to list (it says so on stderr).
pub fn no_jobs(message: &str) -> bool {
    message.contains("No unfinished job found") || message.contains("No job found")
}

/// Distinct hosts of an `exec_host` value (`hostA:hostA:hostB`, `4*hostA:2*hostB`); 0
/// for `-`.
pub fn exec_host_count(exec_host: &str) -> u32 {
    let hosts: BTreeSet<&str> = exec_host
        .split(':')
        .map(|h| h.rsplit('*').next().unwrap_or(h).trim())
        .filter(|h| !h.is_empty() && *h != "-")
        .collect();
    hosts.len() as u32
}

/// Queued and running jobs from `bjobs -noheader -o BJOBS_JOBS_FORMAT`. Cores are the
/// allocated slots, else the requested maximum; nodes the distinct execution hosts of a
/// running job. A running job's walltime is its finish time (its run limit, marked `L`)
/// minus its start; a pending job's is unknown. Dates have no year: a finish before the
/// start is taken to be in the next year.
pub fn parse_bjobs_jobs(stdout: &str) -> Vec<JobInfo> {
    let year = current_year();
    stdout
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.trim().splitn(14, '|').map(str::trim).collect();
            if f.len() < 14 {
                return None;
            }
            let state = map_state(f[1]);
            if !matches!(state, JobState::Queued | JobState::Running) {
                return None;
            }
            let number = |s: &str| s.parse::<u32>().ok();
            let time = |s: &str| parse_timestamp(s.trim_end_matches(" X"), year);
            let start_ms = time(f[10]).filter(|_| state == JobState::Running);
            let walltime_s = match (start_ms, time(f[9])) {
                (Some(start), Some(mut finish)) => {
                    if finish < start {
                        finish += 365 * 86_400_000;
                    }
                    (finish - start) / 1000
                }
                _ => 0,
            };
            Some(JobInfo {
                id: f[0].to_string(),
                name: f[13].to_string(),
                queues: vec![f[8].to_string()],
                state,
                nodes: exec_host_count(f[3]),
                cores: number(f[5]).or_else(|| number(f[6])).unwrap_or(0),
                walltime_s,
                submit_ms: time(f[12]),
                start_ms,
            })
        })
        .collect()
}

/// Whether a `bhosts -w` status takes the host away from new jobs for a while (down), or
/// only because it is full or loaded (busy); `None` for `ok`.
fn closed_is_down(status: &str, run: u32, max: Option<u32>) -> Option<bool> {
    match status {
        "ok" => None,
        "closed_Full" | "closed_Excl" | "closed_cu_Excl" | "closed_Busy" => Some(false),
        // Plain `closed` is what bhosts prints without -w: full, or closed for a reason.
        "closed" => Some(max.is_none_or(|m| run < m)),
        // unavail, unreach, closed_Adm, closed_Lock, closed_Wind, closed_LIM, closed_EGO...
        _ => Some(true),
    }
}

/// Host counts of the whole cluster from `bhosts -w` (HOST_NAME STATUS JL/U MAX NJOBS RUN
/// SSUSP USUSP RSV): down when unavailable, unreachable or closed by an administrator,
/// window or lock; busy when it has jobs or is closed because full, exclusive or loaded.
pub fn parse_bhosts(stdout: &str) -> NodeCounts {
    let mut counts = NodeCounts::default();
    for line in stdout.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 9 || f[0] == "HOST_NAME" {
            continue;
        }
        let number = |s: &str| s.parse::<u32>().ok();
        let (max, njobs, run) = (number(f[3]), number(f[4]), number(f[5]));
        let (Some(njobs), Some(run)) = (njobs, run) else {
            continue;
        };
        match closed_is_down(f[1], run, max) {
            None => counts.add(false, njobs > 0),
            Some(down) => counts.add(down, true),
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_hosts_are_counted_once() {
        assert_eq!(exec_host_count("hostA:hostA:hostB"), 2);
        assert_eq!(exec_host_count("4*hostA:2*hostB"), 2);
        assert_eq!(exec_host_count("-"), 0);
    }
}
