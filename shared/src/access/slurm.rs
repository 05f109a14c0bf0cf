//! SLURM: `sbatch --parsable`, `squeue` (then `scontrol show job` once a job has left
//! squeue; no `sacct`: many sites and the dev cluster run without accounting), `scancel`,
//! `sinfo`. Times are read as epoch seconds (`SLURM_TIME_FORMAT=%s`).

use super::batch::{self, CanceledJobs};
use super::listing::slurm::{parse_squeue_jobs, squeue_jobs_argv};
use super::runner::{CommandOutput, CommandRunner};
use super::timefmt::{current_year, format_hms, parse_duration, parse_timestamp};
use super::{
    template, AccessError, JobDescription, JobId, JobInfo, JobService, JobState, JobStatus,
    QueueInfo,
};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

const SYSTEM: &str = "slurm";
const SQUEUE_FORMAT: &str = "%i|%T|%S|%e|%r";
const SINFO_FORMAT: &str = "%R|%l|%s|%F|%a";

/// The `#SBATCH` lines for a description.
pub fn directives(job: &JobDescription) -> Vec<String> {
    let mut d = vec![
        format!("--job-name={}", batch::job_name(&job.name)),
        format!("--nodes={}", job.nodes),
        "--ntasks-per-node=1".to_string(),
    ];
    if job.cores_per_node > 0 {
        d.push(format!("--cpus-per-task={}", job.cores_per_node));
    }
    if job.gpus_per_node > 0 {
        d.push(format!("--gpus-per-node={}", job.gpus_per_node));
    }
    d.push(format!("--time={}", format_hms(job.walltime_s)));
    let optional = [
        ("partition", &job.queue),
        ("account", &job.account),
        ("qos", &job.qos),
        ("reservation", &job.reservation),
        ("output", &job.stdout),
        ("error", &job.stderr),
    ];
    for (flag, value) in optional {
        if let Some(v) = value {
            d.push(format!("--{flag}={v}"));
        }
    }
    if let Some(dir) = batch::directive_dir(job) {
        d.push(format!("--chdir={dir}"));
    }
    d.extend(job.extra_directives.iter().cloned());
    d.into_iter().map(|x| format!("#SBATCH {x}")).collect()
}

/// The job id from `sbatch --parsable` (`123` or `123;cluster`); a refusal is `Rejected`
/// with sbatch's words.
pub fn parse_sbatch(out: &CommandOutput) -> Result<JobId, AccessError> {
    let first = batch::submitted_line(out, SYSTEM)?;
    let id = first.split(';').next().unwrap_or("").trim();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit() || c == '_') {
        return Err(AccessError::parse(
            "job id from sbatch --parsable",
            &out.stdout,
        ));
    }
    Ok(JobId(id.to_string()))
}

/// The state a SLURM state name maps to (`CANCELLED by 0` -> Canceled).
pub fn map_state(name: &str) -> JobState {
    match name.split_whitespace().next().unwrap_or("") {
        "PENDING" | "CONFIGURING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED"
        | "RESV_DEL_HOLD" | "SUSPENDED" | "STOPPED" => JobState::Queued,
        "RUNNING" | "COMPLETING" | "STAGE_OUT" | "SIGNALING" | "RESIZING" => JobState::Running,
        "COMPLETED" => JobState::Done,
        "CANCELLED" => JobState::Canceled,
        "FAILED" | "TIMEOUT" | "NODE_FAIL" | "PREEMPTED" | "OUT_OF_MEMORY" | "BOOT_FAIL"
        | "DEADLINE" | "REVOKED" | "SPECIAL_EXIT" => JobState::Failed,
        _ => JobState::Unknown,
    }
}

fn status(state_name: &str, start: &str, end: &str, reason: Option<String>) -> JobStatus {
    let state = map_state(state_name);
    let year = current_year();
    let started = !matches!(state, JobState::Queued | JobState::Unknown);
    let reason = match reason {
        Some(r) if !r.is_empty() && r != "None" => Some(r),
        _ if state == JobState::Unknown => Some(format!("unknown SLURM state {state_name}")),
        _ => None,
    };
    JobStatus {
        state,
        // A pending job's StartTime is SLURM's estimate, not a start.
        start_time: if started {
            parse_timestamp(start, year)
        } else {
            None
        },
        end_time: if state.is_final() {
            parse_timestamp(end, year)
        } else {
            None
        },
        reason,
    }
}

/// The job's status from `squeue -h -t all -j ID -o '%i|%T|%S|%e|%r'`; `None` when the
/// job is not listed.
pub fn parse_squeue_job(stdout: &str, id: &JobId) -> Option<JobStatus> {
    stdout.lines().find_map(|line| {
        let f: Vec<&str> = line.trim().split('|').collect();
        if f.len() < 5 || f[0] != id.as_str() {
            return None;
        }
        let reason = match map_state(f[1]) {
            JobState::Failed | JobState::Canceled | JobState::Queued => Some(f[4].to_string()),
            _ => None,
        };
        Some(status(f[1], f[2], f[3], reason))
    })
}

/// `Key=Value` pairs of `scontrol show job` (values end at the next space).
pub fn scontrol_fields(stdout: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for token in stdout.split_whitespace() {
        if let Some((k, v)) = token.split_once('=') {
            map.entry(k.to_string()).or_insert_with(|| v.to_string());
        }
    }
    map
}

/// The job's status from `scontrol show job ID`; `None` when it printed no job.
pub fn parse_scontrol_job(stdout: &str) -> Option<JobStatus> {
    let f = scontrol_fields(stdout);
    let state = f.get("JobState")?;
    let empty = String::new();
    let get = |k: &str| f.get(k).unwrap_or(&empty).as_str();
    let mut reason = match get("Reason") {
        "None" | "" => None,
        r => Some(r.to_string()),
    };
    if map_state(state) == JobState::Failed {
        let exit = get("ExitCode");
        reason = Some(match reason {
            Some(r) => format!("{state}: {r} (exit code {exit})"),
            None => format!("{state} (exit code {exit})"),
        });
    }
    Some(status(state, get("StartTime"), get("EndTime"), reason))
}

/// Whether SLURM said it does not know the job.
pub fn is_invalid_job(message: &str) -> bool {
    message.contains("Invalid job id specified")
}

/// Partitions from `sinfo -h -o '%R|%l|%s|%F|%a'` (name, time limit, max job size in
/// nodes, allocated/idle/other/total, availability).
pub fn parse_sinfo(stdout: &str) -> Result<Vec<QueueInfo>, AccessError> {
    let mut queues: Vec<QueueInfo> = Vec::new();
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.trim().split('|').collect();
        if f.len() < 4 {
            return Err(AccessError::parse("partition line from sinfo", line));
        }
        let counts: Vec<u32> = f[3].split('/').filter_map(|n| n.parse().ok()).collect();
        let [alloc, idle, other, total] = counts[..] else {
            return Err(AccessError::parse("node counts (A/I/O/T) from sinfo", line));
        };
        let max_nodes = f[2].rsplit('-').next().and_then(|n| n.parse().ok());
        let q = QueueInfo {
            name: f[0].to_string(),
            max_walltime_s: parse_duration(f[1]),
            max_nodes,
            nodes_total: total,
            nodes_free: idle,
            nodes_busy: alloc,
            nodes_down: other,
            ..Default::default()
        };
        // sinfo prints one line per partition and node state group with %R: sum them.
        match queues.iter_mut().find(|x| x.name == q.name) {
            Some(x) => {
                x.nodes_total += q.nodes_total;
                x.nodes_free += q.nodes_free;
                x.nodes_busy += q.nodes_busy;
                x.nodes_down += q.nodes_down;
            }
            None => queues.push(q),
        }
    }
    Ok(queues)
}

/// Adds running and pending job counts from `squeue -h -o '%P|%T'` to the partitions.
pub fn add_job_counts(queues: &mut [QueueInfo], squeue_stdout: &str) {
    for line in squeue_stdout.lines() {
        let Some((partitions, state)) = line.trim().split_once('|') else {
            continue;
        };
        for p in partitions.split(',') {
            if let Some(q) = queues.iter_mut().find(|q| q.name == p) {
                match map_state(state) {
                    JobState::Running => q.jobs_running += 1,
                    JobState::Queued => q.jobs_queued += 1,
                    _ => {}
                }
            }
        }
    }
}

/// SLURM through a [`CommandRunner`] (this host or a login node over SSH).
pub struct SlurmJobService {
    runner: Arc<dyn CommandRunner>,
    template: Option<PathBuf>,
    canceled: CanceledJobs,
}

impl SlurmJobService {
    pub fn new(runner: Arc<dyn CommandRunner>, template: Option<PathBuf>) -> SlurmJobService {
        SlurmJobService {
            runner,
            template,
            canceled: CanceledJobs::default(),
        }
    }
}

#[async_trait]
impl JobService for SlurmJobService {
    async fn submit(&self, job: &JobDescription) -> Result<JobId, AccessError> {
        let (path, _) = batch::write_script(
            self.runner.as_ref(),
            job,
            SYSTEM,
            &directives(job),
            self.template.as_ref(),
            template::SLURM_DEFAULT,
        )
        .await?;
        let out = self
            .runner
            .run(&batch::to_strings(&["sbatch", "--parsable", &path]), None)
            .await?;
        let id = parse_sbatch(&out)?;
        tracing::info!(job_id = %id, host = %self.runner.host(), "submitted SLURM job");
        Ok(id)
    }

    async fn state(&self, id: &JobId) -> Result<JobStatus, AccessError> {
        let argv = [
            "env",
            "SLURM_TIME_FORMAT=%s",
            "squeue",
            "-h",
            "-t",
            "all",
            "-j",
            id.as_str(),
            "-o",
            SQUEUE_FORMAT,
        ];
        let out = self.runner.run(&batch::to_strings(&argv), None).await?;
        if out.success() {
            if let Some(status) = parse_squeue_job(&out.stdout, id) {
                return Ok(status);
            }
        } else if !is_invalid_job(&out.message()) {
            return Err(AccessError::CommandFailed {
                command: argv.join(" "),
                host: self.runner.host(),
                code: out.code,
                stderr: out.message(),
            });
        }
        // Gone from squeue: slurmctld may still hold it (MinJobAge).
        let argv = [
            "env",
            "SLURM_TIME_FORMAT=%s",
            "scontrol",
            "show",
            "job",
            id.as_str(),
        ];
        let out = self.runner.run(&batch::to_strings(&argv), None).await?;
        if let Some(status) = parse_scontrol_job(&out.stdout) {
            return Ok(status);
        }
        if self.canceled.contains(id) {
            return Ok(JobStatus::new(JobState::Canceled));
        }
        Ok(JobStatus {
            reason: Some(format!(
                "SLURM has no record of job {id} (purged after MinJobAge; no accounting queried): {}",
                out.message()
            )),
            ..JobStatus::new(JobState::Unknown)
        })
    }

    async fn cancel(&self, id: &JobId) -> Result<(), AccessError> {
        // -v: without it scancel 22.05 exits 0 silently for unknown jobs.
        let out = self
            .runner
            .run(&batch::to_strings(&["scancel", "-v", id.as_str()]), None)
            .await?;
        let msg = out.message();
        if is_invalid_job(&msg) {
            return Err(AccessError::UnknownJob {
                system: SYSTEM,
                id: id.clone(),
                message: msg,
            });
        }
        if !out.success() || msg.contains("error:") {
            return Err(AccessError::CommandFailed {
                command: format!("scancel {id}"),
                host: self.runner.host(),
                code: out.code,
                stderr: msg,
            });
        }
        self.canceled.insert(id);
        Ok(())
    }

    async fn queues(&self) -> Result<Vec<QueueInfo>, AccessError> {
        let runner = self.runner.as_ref();
        let sinfo = batch::run_ok(runner, &["sinfo", "-h", "-o", SINFO_FORMAT]).await?;
        let mut queues = parse_sinfo(&sinfo.stdout)?;
        let squeue = batch::run_ok(runner, &["squeue", "-h", "-o", "%P|%T"]).await?;
        add_job_counts(&mut queues, &squeue.stdout);
        Ok(queues)
    }

    async fn jobs(&self) -> Result<Vec<JobInfo>, AccessError> {
        let argv = squeue_jobs_argv();
        let out = self.runner.run(&argv, None).await?;
        if !out.success() {
            return Err(AccessError::CommandFailed {
                command: argv.join(" "),
                host: self.runner.host(),
                code: out.code,
                stderr: out.message(),
            });
        }
        Ok(parse_squeue_jobs(&out.stdout))
    }

    async fn tail(&self, path: &str, lines: usize) -> Option<String> {
        batch::tail(self.runner.as_ref(), path, lines).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_cover_every_field() {
        let job = JobDescription {
            name: "p1".into(),
            nodes: 2,
            cores_per_node: 64,
            gpus_per_node: 4,
            walltime_s: 5400,
            queue: Some("batch".into()),
            account: Some("ABC123".into()),
            qos: Some("debug".into()),
            reservation: Some("resv1".into()),
            extra_directives: vec!["--constraint=gpu".into()],
            working_dir: Some("/scratch/x".into()),
            stdout: Some("/scratch/x/out".into()),
            command: vec!["a".into()],
            ..Default::default()
        };
        let d = directives(&job).join("\n");
        for want in [
            "#SBATCH --job-name=p1",
            "#SBATCH --nodes=2",
            "#SBATCH --cpus-per-task=64",
            "#SBATCH --gpus-per-node=4",
            "#SBATCH --time=01:30:00",
            "#SBATCH --partition=batch",
            "#SBATCH --account=ABC123",
            "#SBATCH --qos=debug",
            "#SBATCH --reservation=resv1",
            "#SBATCH --chdir=/scratch/x",
            "#SBATCH --output=/scratch/x/out",
            "#SBATCH --constraint=gpu",
        ] {
            assert!(d.contains(want), "missing {want} in\n{d}");
        }
        assert!(!d.contains("--error"));
    }

    #[test]
    fn the_rendered_script_runs_the_job_in_its_reservation() {
        let job = JobDescription {
            name: "p".into(),
            nodes: 1,
            walltime_s: 60,
            queue: Some("debug".into()),
            reservation: Some("hackathon".into()),
            command: vec!["pilot-agent".into()],
            ..Default::default()
        };
        let script =
            batch::render_script(&job, &directives(&job), template::SLURM_DEFAULT, "t").unwrap();
        assert!(
            script.contains("\n#SBATCH --reservation=hackathon\n"),
            "{script}"
        );
        assert!(script.contains("\n#SBATCH --partition=debug\n"), "{script}");
        let none = JobDescription {
            reservation: None,
            ..job
        };
        assert!(!directives(&none).join("\n").contains("--reservation"));
    }

    #[test]
    fn states_map_to_job_states() {
        assert_eq!(map_state("PENDING"), JobState::Queued);
        assert_eq!(map_state("COMPLETING"), JobState::Running);
        assert_eq!(map_state("CANCELLED by 0"), JobState::Canceled);
        assert_eq!(map_state("TIMEOUT"), JobState::Failed);
        assert_eq!(map_state("WEIRD"), JobState::Unknown);
    }
}
