//! `local`: the pilot is a process on this host, in its own process group so cancel and
//! the walltime limit reach everything it started. State comes from the child itself.

use super::{
    AccessError, JobDescription, JobId, JobInfo, JobService, JobState, JobStatus, QueueInfo,
};
use crate::now_ms;
use async_trait::async_trait;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::fs::File;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::process::{Child, Command};

/// Time between SIGTERM and SIGKILL when a local job is canceled or overruns.
const KILL_GRACE: Duration = Duration::from_secs(3);

struct LocalJob {
    child: Child,
    pgid: i32,
    started_ms: u64,
    /// Set once the child was reaped or we decided its fate.
    status: Option<JobStatus>,
    canceled: bool,
    timed_out: bool,
}

/// Runs pilot jobs as local processes.
#[derive(Clone, Default)]
pub struct LocalJobService {
    jobs: Arc<Mutex<HashMap<JobId, LocalJob>>>,
}

impl LocalJobService {
    pub fn new() -> LocalJobService {
        LocalJobService::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, LocalJob>> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// stdout and stderr of the job: files when given; stderr shares stdout's file (one
/// descriptor, one offset) when only stdout is given.
fn output_files(job: &JobDescription) -> Result<(Stdio, Stdio), AccessError> {
    let out = job.stdout.as_ref().map(File::create).transpose()?;
    let err = match (&job.stderr, &out) {
        (Some(p), _) => Some(File::create(p)?),
        (None, Some(f)) => Some(f.try_clone()?),
        (None, None) => None,
    };
    let stdio = |f: Option<File>| f.map(Stdio::from).unwrap_or_else(Stdio::null);
    Ok((stdio(out), stdio(err)))
}

fn terminate(pgid: i32) {
    let _ = killpg(Pid::from_raw(pgid), Signal::SIGTERM);
}

fn kill_after_grace(pgid: i32) {
    tokio::spawn(async move {
        tokio::time::sleep(KILL_GRACE).await;
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    });
}

/// The status of a reaped child.
fn finished(job: &LocalJob, code: Option<i32>) -> JobStatus {
    let (state, reason) = if job.canceled {
        (JobState::Canceled, Some("canceled".to_string()))
    } else if job.timed_out {
        (JobState::Failed, Some("walltime exceeded".to_string()))
    } else if code == Some(0) {
        (JobState::Done, None)
    } else {
        let why = match code {
            Some(c) => format!("exit code {c}"),
            None => "killed by a signal".to_string(),
        };
        (JobState::Failed, Some(why))
    };
    JobStatus {
        state,
        start_time: Some(job.started_ms),
        end_time: Some(now_ms()),
        reason,
    }
}

#[async_trait]
impl JobService for LocalJobService {
    async fn submit(&self, job: &JobDescription) -> Result<JobId, AccessError> {
        if let Some(r) = &job.reservation {
            return Err(AccessError::InvalidJob(format!(
                "reservation `{r}`: a local job runs on this host, outside any batch reservation"
            )));
        }
        let (program, args) = job
            .command
            .split_first()
            .ok_or_else(|| AccessError::InvalidJob("`command` is empty".into()))?;
        let (stdout, stderr) = output_files(job)?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .envs(&job.environment)
            .env(
                "EMANAGER_JOB_END_TIME",
                ((now_ms() / 1000) + job.walltime_s).to_string(),
            )
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0);
        if let Some(dir) = &job.working_dir {
            cmd.current_dir(dir);
        }
        let child = cmd.spawn().map_err(|source| AccessError::Spawn {
            command: job.command.join(" "),
            host: "localhost".into(),
            source,
        })?;
        let pid = child.id().map(|p| p as i32).unwrap_or(0);
        let id = JobId(format!("local-{pid}"));
        self.lock().insert(
            id.clone(),
            LocalJob {
                child,
                pgid: pid,
                started_ms: now_ms(),
                status: None,
                canceled: false,
                timed_out: false,
            },
        );
        if job.walltime_s > 0 {
            let jobs = self.jobs.clone();
            let (id2, walltime) = (id.clone(), Duration::from_secs(job.walltime_s));
            tokio::spawn(async move {
                tokio::time::sleep(walltime).await;
                let mut jobs = jobs.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(j) = jobs.get_mut(&id2) {
                    if j.status.is_none() && matches!(j.child.try_wait(), Ok(None)) {
                        j.timed_out = true;
                        terminate(j.pgid);
                        kill_after_grace(j.pgid);
                    }
                }
            });
        }
        Ok(id)
    }

    async fn state(&self, id: &JobId) -> Result<JobStatus, AccessError> {
        let mut jobs = self.lock();
        let job = jobs.get_mut(id).ok_or_else(|| AccessError::UnknownJob {
            system: "local",
            id: id.clone(),
            message: "not started by this service".into(),
        })?;
        if let Some(s) = &job.status {
            return Ok(s.clone());
        }
        match job.child.try_wait()? {
            Some(exit) => {
                let status = finished(job, exit.code());
                job.status = Some(status.clone());
                Ok(status)
            }
            None => Ok(JobStatus {
                start_time: Some(job.started_ms),
                ..JobStatus::new(JobState::Running)
            }),
        }
    }

    async fn cancel(&self, id: &JobId) -> Result<(), AccessError> {
        let mut jobs = self.lock();
        let job = jobs.get_mut(id).ok_or_else(|| AccessError::UnknownJob {
            system: "local",
            id: id.clone(),
            message: "not started by this service".into(),
        })?;
        if job.status.is_none() && matches!(job.child.try_wait(), Ok(None)) {
            job.canceled = true;
            terminate(job.pgid);
            kill_after_grace(job.pgid);
        }
        Ok(())
    }

    async fn queues(&self) -> Result<Vec<QueueInfo>, AccessError> {
        let mut jobs = self.lock();
        let running = jobs
            .values_mut()
            .filter_map(|j| {
                (j.status.is_none() && matches!(j.child.try_wait(), Ok(None))).then_some(())
            })
            .count() as u32;
        Ok(vec![QueueInfo {
            name: "local".into(),
            max_walltime_s: None,
            max_nodes: Some(1),
            nodes_total: 1,
            nodes_free: u32::from(running == 0),
            nodes_busy: u32::from(running > 0),
            nodes_down: 0,
            jobs_running: running,
            jobs_queued: 0,
        }])
    }

    /// Local pilots are processes started at once: nothing queues here.
    async fn jobs(&self) -> Result<Vec<JobInfo>, AccessError> {
        Ok(Vec::new())
    }

    async fn tail(&self, path: &str, lines: usize) -> Option<String> {
        let text = tokio::fs::read_to_string(path).await.ok()?;
        let all: Vec<&str> = text.lines().collect();
        Some(all[all.len().saturating_sub(lines)..].join("\n"))
    }
}
