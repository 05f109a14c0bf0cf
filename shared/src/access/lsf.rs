//! IBM Spectrum LSF: `bsub` (script on stdin, so `#BSUB` lines are read), `bjobs -o`,
//! `bkill`; `bqueues -w`, `bhosts -w` and `bjobs -u all -o` for queues and jobs.

use super::batch::{self, CanceledJobs};
use super::listing::lsf::{bjobs_jobs_argv, no_jobs, parse_bhosts, parse_bjobs_jobs};
use super::runner::{CommandOutput, CommandRunner};
use super::timefmt::{current_year, parse_timestamp};
use super::{
    template, AccessError, JobDescription, JobId, JobInfo, JobService, JobState, JobStatus,
    QueueInfo,
};
use async_trait::async_trait;
use std::path::PathBuf;
use std::sync::Arc;

const SYSTEM: &str = "lsf";
const BJOBS_FORMAT: &str = "jobid stat exit_code start_time finish_time pend_reason delimiter='|'";

/// The `#BSUB` lines for a description.
pub fn directives(job: &JobDescription) -> Result<Vec<String>, AccessError> {
    if job.qos.is_some() {
        return Err(AccessError::InvalidJob(
            "LSF has no QOS; use a queue".into(),
        ));
    }
    let cores = job.cores_per_node.max(1);
    // -W is [hours:]minutes; round up so the job gets at least what it asked for.
    let minutes = job.walltime_s.div_ceil(60);
    let mut d = vec![
        format!("-J {}", batch::job_name(&job.name)),
        format!("-n {}", job.nodes * cores),
        format!("-R \"span[ptile={cores}]\""),
        format!("-W {}:{:02}", minutes / 60, minutes % 60),
    ];
    if job.gpus_per_node > 0 {
        d.push(format!("-gpu \"num={}\"", job.gpus_per_node));
    }
    if let Some(q) = &job.queue {
        d.push(format!("-q {q}"));
    }
    if let Some(a) = &job.account {
        d.push(format!("-P {a}"));
    }
    if let Some(r) = &job.reservation {
        d.push(format!("-U {r}"));
    }
    if let Some(w) = batch::directive_dir(job) {
        d.push(format!("-cwd {w}"));
    }
    if let Some(o) = &job.stdout {
        d.push(format!("-o {o}"));
    }
    if let Some(e) = &job.stderr {
        d.push(format!("-e {e}"));
    }
    d.extend(job.extra_directives.iter().cloned());
    Ok(d.into_iter().map(|x| format!("#BSUB {x}")).collect())
}

/// The job id from `Job <123> is submitted to queue <normal>.`
pub fn parse_bsub(out: &CommandOutput) -> Result<JobId, AccessError> {
    let id = out.stdout.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("Job <")?;
        let (id, tail) = rest.split_once('>')?;
        tail.contains("is submitted").then(|| id.to_string())
    });
    match id {
        Some(id) if out.success() => Ok(JobId(id)),
        _ if !out.success() || out.message().contains("not submitted") => {
            Err(AccessError::Rejected {
                system: SYSTEM,
                message: out.message(),
            })
        }
        _ => Err(AccessError::parse("job id from bsub", &out.stdout)),
    }
}

/// The state of a bjobs STAT.
pub fn map_state(stat: &str) -> JobState {
    match stat {
        "PEND" | "PSUSP" | "WAIT" => JobState::Queued,
        "RUN" | "USUSP" | "SSUSP" | "PROV" => JobState::Running,
        "DONE" => JobState::Done,
        "EXIT" => JobState::Failed,
        _ => JobState::Unknown,
    }
}

/// The job's status from `bjobs -noheader -o "jobid stat exit_code start_time finish_time
/// pend_reason delimiter='|'" ID`; `None` when no row for it.
pub fn parse_bjobs(stdout: &str, id: &JobId, canceled_by_us: bool) -> Option<JobStatus> {
    stdout.lines().find_map(|line| {
        let f: Vec<&str> = line.trim().split('|').collect();
        if f.len() < 5 || f[0] != id.as_str() {
            return None;
        }
        let mut state = map_state(f[1]);
        if state == JobState::Failed && canceled_by_us {
            state = JobState::Canceled;
        }
        let year = current_year();
        let reason = match state {
            JobState::Failed => Some(format!("EXIT (exit code {})", f[2])),
            JobState::Queued => f
                .get(5)
                .map(|r| r.trim().to_string())
                .filter(|r| !r.is_empty() && r != "-"),
            JobState::Unknown => Some(format!("LSF state {}", f[1])),
            _ => None,
        };
        Some(JobStatus {
            state,
            start_time: parse_timestamp(f[3], year),
            end_time: if state.is_final() {
                parse_timestamp(f[4], year)
            } else {
                None
            },
            reason,
        })
    })
}

/// Whether LSF said it does not know the job.
pub fn is_unknown_job(message: &str) -> bool {
    message.contains("is not found") || message.contains("No matching job found")
}

/// Queues from `bqueues -w` (NJOBS PEND RUN SUSP counts; limits come from the catalog).
pub fn parse_bqueues(stdout: &str) -> Vec<QueueInfo> {
    stdout
        .lines()
        .skip_while(|l| !l.starts_with("QUEUE_NAME"))
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // QUEUE_NAME PRIO STATUS MAX JL/U JL/P JL/H NJOBS PEND RUN SUSP
            if f.len() < 11 {
                return None;
            }
            Some(QueueInfo {
                name: f[0].to_string(),
                jobs_queued: f[8].parse().ok()?,
                jobs_running: f[9].parse().ok()?,
                ..Default::default()
            })
        })
        .collect()
}

/// LSF through a [`CommandRunner`].
pub struct LsfJobService {
    runner: Arc<dyn CommandRunner>,
    template: Option<PathBuf>,
    canceled: CanceledJobs,
}

impl LsfJobService {
    pub fn new(runner: Arc<dyn CommandRunner>, template: Option<PathBuf>) -> LsfJobService {
        LsfJobService {
            runner,
            template,
            canceled: CanceledJobs::default(),
        }
    }
}

#[async_trait]
impl JobService for LsfJobService {
    async fn submit(&self, job: &JobDescription) -> Result<JobId, AccessError> {
        let (_, script) = batch::write_script(
            self.runner.as_ref(),
            job,
            SYSTEM,
            &directives(job)?,
            self.template.as_ref(),
            template::LSF_DEFAULT,
        )
        .await?;
        // bsub reads #BSUB lines only from a script given on stdin.
        parse_bsub(
            &self
                .runner
                .run(&batch::to_strings(&["bsub"]), Some(script.as_bytes()))
                .await?,
        )
    }

    async fn state(&self, id: &JobId) -> Result<JobStatus, AccessError> {
        let argv = ["bjobs", "-noheader", "-o", BJOBS_FORMAT, id.as_str()];
        let out = self.runner.run(&batch::to_strings(&argv), None).await?;
        if let Some(status) = parse_bjobs(&out.stdout, id, self.canceled.contains(id)) {
            return Ok(status);
        }
        if is_unknown_job(&out.message()) || out.success() {
            return Ok(JobStatus {
                reason: Some(format!("LSF has no record of job {id}: {}", out.message())),
                ..JobStatus::new(JobState::Unknown)
            });
        }
        Err(AccessError::CommandFailed {
            command: argv.join(" "),
            host: self.runner.host(),
            code: out.code,
            stderr: out.message(),
        })
    }

    async fn cancel(&self, id: &JobId) -> Result<(), AccessError> {
        let out = self
            .runner
            .run(&batch::to_strings(&["bkill", id.as_str()]), None)
            .await?;
        let msg = out.message();
        if is_unknown_job(&msg) {
            return Err(AccessError::UnknownJob {
                system: SYSTEM,
                id: id.clone(),
                message: msg,
            });
        }
        if !out.success() {
            return Err(AccessError::CommandFailed {
                command: format!("bkill {id}"),
                host: self.runner.host(),
                code: out.code,
                stderr: msg,
            });
        }
        self.canceled.insert(id);
        Ok(())
    }

    /// Job counts from `bqueues -w`; host states from `bhosts -w`. LSF queues share the
    /// cluster's hosts (mapping hosts to queues needs `bqueues -l`): each reports the
    /// cluster's counts.
    async fn queues(&self) -> Result<Vec<QueueInfo>, AccessError> {
        let runner = self.runner.as_ref();
        let mut queues = parse_bqueues(&batch::run_ok(runner, &["bqueues", "-w"]).await?.stdout);
        let hosts = parse_bhosts(&batch::run_ok(runner, &["bhosts", "-w"]).await?.stdout);
        for q in &mut queues {
            (q.nodes_total, q.nodes_free, q.nodes_busy, q.nodes_down) =
                (hosts.total, hosts.free, hosts.busy, hosts.down);
        }
        Ok(queues)
    }

    async fn jobs(&self) -> Result<Vec<JobInfo>, AccessError> {
        let argv = bjobs_jobs_argv();
        let out = self.runner.run(&argv, None).await?;
        if no_jobs(&out.message()) && out.stdout.trim().is_empty() {
            return Ok(Vec::new());
        }
        if !out.success() {
            return Err(AccessError::CommandFailed {
                command: argv.join(" "),
                host: self.runner.host(),
                code: out.code,
                stderr: out.message(),
            });
        }
        Ok(parse_bjobs_jobs(&out.stdout))
    }

    async fn tail(&self, path: &str, lines: usize) -> Option<String> {
        batch::tail(self.runner.as_ref(), path, lines).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rendered_script_runs_the_job_in_its_advance_reservation() {
        let job = JobDescription {
            name: "p".into(),
            nodes: 1,
            walltime_s: 60,
            queue: Some("batch".into()),
            reservation: Some("user1#0".into()),
            command: vec!["pilot-agent".into()],
            ..Default::default()
        };
        let script =
            batch::render_script(&job, &directives(&job).unwrap(), template::LSF_DEFAULT, "t")
                .unwrap();
        assert!(script.contains("\n#BSUB -U user1#0\n"), "{script}");
        assert!(script.contains("\n#BSUB -q batch\n"), "{script}");
        let none = JobDescription {
            reservation: None,
            ..job
        };
        assert!(!directives(&none).unwrap().join("\n").contains("-U"));
    }

    #[test]
    fn directives_round_walltime_up_to_minutes() {
        let job = JobDescription {
            name: "p".into(),
            nodes: 2,
            cores_per_node: 42,
            walltime_s: 3601,
            queue: Some("batch".into()),
            command: vec!["x".into()],
            ..Default::default()
        };
        let d = directives(&job).unwrap().join("\n");
        for want in [
            "#BSUB -n 84",
            "#BSUB -R \"span[ptile=42]\"",
            "#BSUB -W 1:01",
            "#BSUB -q batch",
        ] {
            assert!(d.contains(want), "missing {want} in\n{d}");
        }
    }
}
