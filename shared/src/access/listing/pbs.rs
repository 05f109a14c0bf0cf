//! PBS Professional's jobs: `qstat -f` (every job, full attributes): nodes from
//! `Resource_List.nodect` (else the chunks of `Resource_List.select`), cores from
//! `Resource_List.ncpus`, walltime from `Resource_List.walltime`.

use super::JobInfo;
use crate::access::pbs::parse_objects;
use crate::access::timefmt::{current_year, parse_duration, parse_timestamp};
use crate::access::JobState;

/// Queued or running from a PBS `job_state` letter; `None` for finished or unknown ones.
fn listed_state(code: &str) -> Option<JobState> {
    match code {
        "Q" | "H" | "W" | "T" | "S" | "U" | "M" => Some(JobState::Queued),
        "R" | "E" | "B" => Some(JobState::Running),
        _ => None,
    }
}

/// Nodes of a `select` statement: the chunk counts summed (`2:ncpus=64+1:ncpus=8` is 3).
/// A chunk without a count is one.
pub fn select_chunks(select: &str) -> u32 {
    select
        .split('+')
        .map(|chunk| {
            chunk
                .split(':')
                .next()
                .and_then(|n| n.trim().parse::<u32>().ok())
                .unwrap_or(1)
        })
        .sum()
}

/// Queued and running jobs from `qstat -f`. The submission time is `qtime` (else `ctime`),
/// the start `stime`.
pub fn parse_qstat_f_jobs(stdout: &str) -> Vec<JobInfo> {
    let year = current_year();
    parse_objects(stdout)
        .into_iter()
        .filter_map(|(id, a)| {
            let state = listed_state(a.get("job_state")?)?;
            let get = |k: &str| a.get(k).map(String::as_str);
            let time = |k: &str| get(k).and_then(|t| parse_timestamp(t, year));
            Some(JobInfo {
                name: get("Job_Name").unwrap_or("").to_string(),
                queues: get("queue")
                    .map(|q| vec![q.to_string()])
                    .unwrap_or_default(),
                state,
                nodes: get("Resource_List.nodect")
                    .and_then(|n| n.parse().ok())
                    .or_else(|| get("Resource_List.select").map(select_chunks))
                    .unwrap_or(0),
                cores: get("Resource_List.ncpus")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0),
                walltime_s: get("Resource_List.walltime")
                    .and_then(parse_duration)
                    .unwrap_or(0),
                submit_ms: time("qtime").or_else(|| time("ctime")),
                start_ms: if state == JobState::Running {
                    time("stime")
                } else {
                    None
                },
                id,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_chunks_are_summed() {
        assert_eq!(select_chunks("4:ncpus=64:ngpus=4"), 4);
        assert_eq!(select_chunks("2:ncpus=64+1:ncpus=8"), 3);
        assert_eq!(select_chunks("ncpus=8"), 1);
    }
}
