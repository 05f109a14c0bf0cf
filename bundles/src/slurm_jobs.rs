//! Per-job sizes from SLURM, which `JobService::queues` only counts: the backlog model needs
//! the node-seconds queued ahead and when running jobs end, and the estimator learns from
//! the submit-to-start times of our own pilot jobs.

use crate::model::JobSize;
use emanager_shared::access::runner::CommandRunner;
use emanager_shared::access::slurm::map_state;
use emanager_shared::access::timefmt::parse_duration;
use emanager_shared::access::{AccessError, JobState};

/// `squeue` format of [`parse_squeue_sizes`]: id, partition, state, nodes, time limit,
/// submit time, start time, name (times as epoch seconds with `SLURM_TIME_FORMAT=%s`).
pub const SQUEUE_SIZES_FORMAT: &str = "%i|%P|%T|%D|%l|%V|%S|%j";

/// One job line of `squeue -o SQUEUE_SIZES_FORMAT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlurmJob {
    pub id: String,
    pub partition: String,
    pub state: JobState,
    pub nodes: u32,
    /// Time limit in seconds (0 when `UNLIMITED`).
    pub walltime_s: u64,
    pub submit_s: Option<u64>,
    /// Actual start for running jobs, the expected start for pending ones.
    pub start_s: Option<u64>,
    pub name: String,
}

impl SlurmJob {
    /// Its size with the time run so far at `now_s`.
    pub fn size(&self, now_s: u64) -> JobSize {
        let elapsed_s = match (self.state, self.start_s) {
            (JobState::Running, Some(start)) => now_s.saturating_sub(start),
            _ => 0,
        };
        JobSize {
            nodes: self.nodes,
            walltime_s: self.walltime_s,
            elapsed_s,
        }
    }

    /// Seconds from submit to start, for a job that has started.
    pub fn wait_s(&self) -> Option<u64> {
        match (self.state, self.submit_s, self.start_s) {
            (JobState::Running, Some(sub), Some(start)) => Some(start.saturating_sub(sub)),
            _ => None,
        }
    }
}

/// Parses `squeue -h -o SQUEUE_SIZES_FORMAT`; lines that do not have the fields are skipped
/// (a job name may contain `|`: the name is everything after the seventh).
pub fn parse_squeue_sizes(stdout: &str) -> Vec<SlurmJob> {
    stdout
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.trim().splitn(8, '|').collect();
            if f.len() < 8 {
                return None;
            }
            let epoch = |s: &str| s.trim().parse::<u64>().ok().filter(|&t| t > 0);
            Some(SlurmJob {
                id: f[0].to_string(),
                partition: f[1].to_string(),
                state: map_state(f[2]),
                nodes: f[3].trim().parse().ok()?,
                walltime_s: parse_duration(f[4]).unwrap_or(0),
                submit_s: epoch(f[5]),
                start_s: epoch(f[6]),
                name: f[7].to_string(),
            })
        })
        .collect()
}

/// Runs the squeue of [`parse_squeue_sizes`] through `runner`.
pub async fn squeue_sizes(runner: &dyn CommandRunner) -> Result<Vec<SlurmJob>, AccessError> {
    let argv: Vec<String> = [
        "env",
        "SLURM_TIME_FORMAT=%s",
        "squeue",
        "-h",
        "-o",
        SQUEUE_SIZES_FORMAT,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = runner.run(&argv, None).await?;
    if !out.success() {
        return Err(AccessError::CommandFailed {
            command: "squeue".into(),
            host: runner.host(),
            code: out.code,
            stderr: out.message(),
        });
    }
    Ok(parse_squeue_sizes(&out.stdout))
}
