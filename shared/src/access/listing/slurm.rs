//! SLURM's job listing with sizes: `squeue -h -o '%i|%P|%T|%D|%l|%V|%S|%j'` with
//! `SLURM_TIME_FORMAT=%s`, so submit and start times are epoch seconds.

use super::JobInfo;
use crate::access::slurm::map_state;
use crate::access::timefmt::parse_duration;

/// `squeue` format of [`parse_squeue_jobs`]: id, partition(s), state, nodes, time limit,
/// submit time, start time, name.
pub const SQUEUE_JOBS_FORMAT: &str = "%i|%P|%T|%D|%l|%V|%S|%j";

/// The argv of the listing (times as epoch seconds).
pub fn squeue_jobs_argv() -> Vec<String> {
    [
        "env",
        "SLURM_TIME_FORMAT=%s",
        "squeue",
        "-h",
        "-o",
        SQUEUE_JOBS_FORMAT,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Parses `squeue -h -o SQUEUE_JOBS_FORMAT`. Lines without the fields are skipped; a job
/// name may contain `|` (the name is everything after the seventh). A job submitted to
/// several partitions lists them all; `UNLIMITED` time limits are 0 (unknown).
pub fn parse_squeue_jobs(stdout: &str) -> Vec<JobInfo> {
    stdout
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.trim().splitn(8, '|').collect();
            if f.len() < 8 {
                return None;
            }
            let epoch_ms = |s: &str| {
                s.trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|&t| t > 0)
                    .map(|t| t * 1000)
            };
            Some(JobInfo {
                id: f[0].to_string(),
                queues: f[1].split(',').map(str::to_string).collect(),
                state: map_state(f[2]),
                nodes: f[3].trim().parse().ok()?,
                cores: 0,
                walltime_s: parse_duration(f[4]).unwrap_or(0),
                submit_ms: epoch_ms(f[5]),
                start_ms: epoch_ms(f[6]),
                name: f[7].to_string(),
            })
        })
        .collect()
}
