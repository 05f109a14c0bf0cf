//! (Son of / Open) Grid Engine: `qsub -terse -w e`, `qstat`, then `qacct` once a job has
//! left qstat, `qdel`; `qhost -q`, `qstat -u '*' -r` and `qconf -sq` for queues and jobs.
//!
//! Cores: SGE counts slots through a parallel environment whose name is site-specific.
//! The adapter asks for `-pe smp <nodes x cores>` unless the description's extra
//! directives already name a `-pe`. GPUs are site complexes: pass them as extra
//! directives (`-l gpu=4`).

use super::batch::{self, CanceledJobs};
use super::listing::sge::{instance_down, parse_qhost_queues, parse_qstat_r};
use super::runner::{CommandOutput, CommandRunner};
use super::timefmt::{current_year, format_hms, parse_duration, parse_timestamp};
use super::{
    template, AccessError, JobDescription, JobId, JobInfo, JobService, JobState, JobStatus,
    QueueInfo,
};
use async_trait::async_trait;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

const SYSTEM: &str = "sge";

/// The `#$` lines for a description.
pub fn directives(job: &JobDescription) -> Result<Vec<String>, AccessError> {
    if job.qos.is_some() {
        return Err(AccessError::InvalidJob(
            "SGE has no QOS; use a queue".into(),
        ));
    }
    let mut d = vec![
        format!("-N {}", batch::job_name(&job.name)),
        "-S /bin/bash".to_string(),
        format!("-l h_rt={}", format_hms(job.walltime_s)),
    ];
    let slots = job.nodes * job.cores_per_node.max(1);
    if !job
        .extra_directives
        .iter()
        .any(|x| x.trim_start().starts_with("-pe "))
        && slots > 1
    {
        d.push(format!("-pe smp {slots}"));
    }
    if let Some(q) = &job.queue {
        d.push(format!("-q {q}"));
    }
    if let Some(a) = &job.account {
        d.push(format!("-A {a}"));
    }
    if let Some(r) = &job.reservation {
        d.push(format!("-ar {r}"));
    }
    match batch::directive_dir(job) {
        Some(w) => d.push(format!("-wd {w}")),
        None => d.push("-cwd".to_string()),
    }
    if let Some(o) = &job.stdout {
        d.push(format!("-o {o}"));
    }
    match &job.stderr {
        Some(e) => d.push(format!("-e {e}")),
        None => d.push("-j y".to_string()),
    }
    d.extend(job.extra_directives.iter().cloned());
    Ok(d.into_iter().map(|x| format!("#$ {x}")).collect())
}

/// The job id from `qsub -terse` (`123`, or `123.1-10:1` for arrays).
pub fn parse_qsub(out: &CommandOutput) -> Result<JobId, AccessError> {
    let first = batch::submitted_line(out, SYSTEM)?;
    let id = first.split('.').next().unwrap_or("");
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        return Err(AccessError::parse("job id from qsub -terse", &out.stdout));
    }
    Ok(JobId(id.to_string()))
}

/// The state of a qstat state code (`qw`, `r`, `Eqw`, `dr`...).
pub fn map_state(code: &str) -> JobState {
    if code.contains('E') {
        JobState::Failed
    } else if code.contains('r') || code.contains('t') || code.contains('s') || code.contains('S') {
        JobState::Running
    } else if code.contains('q') || code.contains('h') || code.contains('w') {
        JobState::Queued
    } else if code.contains('d') {
        JobState::Canceled
    } else {
        JobState::Unknown
    }
}

/// The job's row in `qstat -u '*'`; `None` when not listed.
pub fn parse_qstat_job(stdout: &str, id: &JobId) -> Option<JobStatus> {
    stdout.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // job-ID prior name user state date time [queue] slots [ja-task-ID]
        if f.len() < 7 || f[0] != id.as_str() {
            return None;
        }
        let state = map_state(f[4]);
        let when = parse_timestamp(&format!("{} {}", f[5], f[6]), current_year());
        Some(JobStatus {
            state,
            start_time: if state == JobState::Running {
                when
            } else {
                None
            },
            end_time: None,
            reason: match state {
                JobState::Failed => Some(format!("job in error state ({})", f[4])),
                _ => None,
            },
        })
    })
}

/// `key value` pairs of `qacct -j` (first record).
pub fn qacct_fields(stdout: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for line in stdout.lines() {
        if line.starts_with("====") {
            if !map.is_empty() {
                break;
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(char::is_whitespace) {
            map.insert(k.to_string(), v.trim().to_string());
        }
    }
    map
}

/// A finished job's status from `qacct -j ID`; `None` when qacct printed no record.
pub fn parse_qacct(stdout: &str, canceled_by_us: bool) -> Option<JobStatus> {
    let f = qacct_fields(stdout);
    let exit = f.get("exit_status")?;
    let failed = f.get("failed").map(String::as_str).unwrap_or("0");
    let exit_code = exit.split_whitespace().next().unwrap_or("");
    let failed_code = failed.split_whitespace().next().unwrap_or("0");
    let year = current_year();
    let (state, reason) = if canceled_by_us {
        (
            JobState::Canceled,
            Some(format!("deleted (exit_status {exit})")),
        )
    } else if failed_code == "0" && exit_code == "0" {
        (JobState::Done, None)
    } else if failed_code != "0" {
        (
            JobState::Failed,
            Some(format!("failed {failed}; exit_status {exit}")),
        )
    } else {
        (JobState::Failed, Some(format!("exit_status {exit}")))
    };
    Some(JobStatus {
        state,
        start_time: f.get("start_time").and_then(|t| parse_timestamp(t, year)),
        end_time: f.get("end_time").and_then(|t| parse_timestamp(t, year)),
        reason,
    })
}

/// Whether qstat/qdel/qacct said the job does not exist.
pub fn is_unknown_job(message: &str) -> bool {
    message.contains("do not exist")
        || message.contains("does not exist")
        || message.contains("not found")
}

/// Cluster queues from `qstat -f -u '*'`: one queue instance per host; a host is busy
/// when it has used slots, down when its state has `u`, `E`, `d`, `D` or `C`. Running jobs
/// are counted per queue; pending jobs are not bound to a queue until scheduled, so each
/// queue reports all pending jobs.
pub fn parse_qstat_f(stdout: &str) -> Vec<QueueInfo> {
    let mut queues: Vec<QueueInfo> = Vec::new();
    let mut running: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut pending = 0u32;
    let mut in_pending = false;
    for line in stdout.lines() {
        if line.contains("PENDING JOBS") {
            in_pending = true;
            current = None;
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() || line.starts_with("---") || line.starts_with("###") || f[0] == "queuename"
        {
            continue;
        }
        if in_pending {
            if f[0].chars().all(|c| c.is_ascii_digit()) {
                pending += 1;
            }
            continue;
        }
        if let Some((queue, _host)) = f[0].split_once('@') {
            // queuename qtype resv/used/tot load arch [states]
            let used: u32 = f
                .get(2)
                .and_then(|s| s.split('/').nth(1))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let down = instance_down(f.get(5).copied().unwrap_or(""));
            let q = match queues.iter_mut().position(|x| x.name == queue) {
                Some(i) => &mut queues[i],
                None => {
                    queues.push(QueueInfo {
                        name: queue.to_string(),
                        ..Default::default()
                    });
                    queues.last_mut().expect("just pushed")
                }
            };
            q.nodes_total += 1;
            if down {
                q.nodes_down += 1;
            } else if used > 0 {
                q.nodes_busy += 1;
            } else {
                q.nodes_free += 1;
            }
            current = Some(queue.to_string());
        } else if let Some(queue) = &current {
            if f[0].chars().all(|c| c.is_ascii_digit()) {
                running
                    .entry(queue.clone())
                    .or_default()
                    .insert(f[0].to_string());
            }
        }
    }
    for q in &mut queues {
        q.jobs_running = running.get(&q.name).map_or(0, |s| s.len() as u32);
        q.jobs_queued = pending;
    }
    queues
}

/// The queue's `h_rt` from `qconf -sq <queue>` (seconds; `None` for INFINITY).
pub fn parse_qconf_h_rt(stdout: &str) -> Option<u64> {
    stdout.lines().find_map(|line| {
        let mut f = line.split_whitespace();
        (f.next()? == "h_rt")
            .then(|| f.next().and_then(parse_duration))
            .flatten()
    })
}

/// Grid Engine through a [`CommandRunner`].
pub struct SgeJobService {
    runner: Arc<dyn CommandRunner>,
    template: Option<PathBuf>,
    canceled: CanceledJobs,
}

impl SgeJobService {
    pub fn new(runner: Arc<dyn CommandRunner>, template: Option<PathBuf>) -> SgeJobService {
        SgeJobService {
            runner,
            template,
            canceled: CanceledJobs::default(),
        }
    }
}

#[async_trait]
impl JobService for SgeJobService {
    async fn submit(&self, job: &JobDescription) -> Result<JobId, AccessError> {
        let (path, _) = batch::write_script(
            self.runner.as_ref(),
            job,
            SYSTEM,
            &directives(job)?,
            self.template.as_ref(),
            template::SGE_DEFAULT,
        )
        .await?;
        // -w e: refuse a job no queue could ever run (e.g. h_rt above every queue's limit).
        let argv = ["qsub", "-terse", "-w", "e", &path];
        let id = parse_qsub(&self.runner.run(&batch::to_strings(&argv), None).await?)?;
        tracing::info!(job_id = %id, host = %self.runner.host(), "submitted SGE job");
        Ok(id)
    }

    async fn state(&self, id: &JobId) -> Result<JobStatus, AccessError> {
        let qstat = batch::run_ok(self.runner.as_ref(), &["qstat", "-u", "*"]).await?;
        if let Some(status) = parse_qstat_job(&qstat.stdout, id) {
            return Ok(status);
        }
        let out = self
            .runner
            .run(&batch::to_strings(&["qacct", "-j", id.as_str()]), None)
            .await?;
        let canceled = self.canceled.contains(id);
        if let Some(status) = parse_qacct(&out.stdout, canceled) {
            return Ok(status);
        }
        if canceled {
            // A job deleted while pending never reaches the accounting file.
            return Ok(JobStatus::new(JobState::Canceled));
        }
        Ok(JobStatus {
            reason: Some(format!(
                "not in qstat and no accounting record yet: {}",
                out.message()
            )),
            ..JobStatus::new(JobState::Unknown)
        })
    }

    async fn cancel(&self, id: &JobId) -> Result<(), AccessError> {
        let out = self
            .runner
            .run(&batch::to_strings(&["qdel", id.as_str()]), None)
            .await?;
        let msg = out.message();
        if !out.success() {
            if is_unknown_job(&msg) {
                return Err(AccessError::UnknownJob {
                    system: SYSTEM,
                    id: id.clone(),
                    message: msg,
                });
            }
            return Err(AccessError::CommandFailed {
                command: format!("qdel {id}"),
                host: self.runner.host(),
                code: out.code,
                stderr: msg,
            });
        }
        self.canceled.insert(id);
        Ok(())
    }

    /// Node states per queue from `qhost -q`, job counts from `qstat -u '*' -r` (a pending
    /// job counts in every queue it may start in), `h_rt` limits from `qconf -sq`.
    async fn queues(&self) -> Result<Vec<QueueInfo>, AccessError> {
        let runner = self.runner.as_ref();
        let hosts = batch::run_ok(runner, &["qhost", "-q"]).await?;
        let mut queues = parse_qhost_queues(&hosts.stdout);
        let jobs = self.jobs().await?;
        for q in &mut queues {
            for job in jobs.iter().filter(|j| j.in_queue(&q.name)) {
                match job.state {
                    JobState::Running => q.jobs_running += 1,
                    _ => q.jobs_queued += 1,
                }
            }
            let conf = batch::run_ok(runner, &["qconf", "-sq", &q.name]).await?;
            q.max_walltime_s = parse_qconf_h_rt(&conf.stdout);
        }
        Ok(queues)
    }

    async fn jobs(&self) -> Result<Vec<JobInfo>, AccessError> {
        let out = batch::run_ok(self.runner.as_ref(), &["qstat", "-u", "*", "-r"]).await?;
        Ok(parse_qstat_r(&out.stdout))
    }

    async fn tail(&self, path: &str, lines: usize) -> Option<String> {
        batch::tail(self.runner.as_ref(), path, lines).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_request_slots_walltime_and_queue() {
        let job = JobDescription {
            name: "p".into(),
            nodes: 1,
            cores_per_node: 2,
            walltime_s: 120,
            queue: Some("all.q".into()),
            command: vec!["x".into()],
            ..Default::default()
        };
        let d = directives(&job).unwrap().join("\n");
        for want in [
            "#$ -N p",
            "#$ -l h_rt=00:02:00",
            "#$ -pe smp 2",
            "#$ -q all.q",
            "#$ -j y",
            "#$ -cwd",
        ] {
            assert!(d.contains(want), "missing {want} in\n{d}");
        }
        let mut site_pe = job.clone();
        site_pe.extra_directives = vec!["-pe mpi 64".into()];
        assert!(!directives(&site_pe).unwrap().join("\n").contains("-pe smp"));
        let mut qos = job;
        qos.qos = Some("x".into());
        assert!(directives(&qos).is_err());
    }

    #[test]
    fn the_rendered_script_runs_the_job_in_its_advance_reservation() {
        let job = JobDescription {
            name: "p".into(),
            nodes: 1,
            walltime_s: 60,
            queue: Some("all.q".into()),
            reservation: Some("42".into()),
            command: vec!["pilot-agent".into()],
            ..Default::default()
        };
        let script =
            batch::render_script(&job, &directives(&job).unwrap(), template::SGE_DEFAULT, "t")
                .unwrap();
        assert!(script.contains("\n#$ -ar 42\n"), "{script}");
        assert!(script.contains("\n#$ -q all.q\n"), "{script}");
        let none = JobDescription {
            reservation: None,
            ..job
        };
        assert!(!directives(&none).unwrap().join("\n").contains("-ar"));
    }

    #[test]
    fn state_codes_map_to_job_states() {
        assert_eq!(map_state("qw"), JobState::Queued);
        assert_eq!(map_state("hqw"), JobState::Queued);
        assert_eq!(map_state("r"), JobState::Running);
        assert_eq!(map_state("dr"), JobState::Running);
        assert_eq!(map_state("Eqw"), JobState::Failed);
    }
}
