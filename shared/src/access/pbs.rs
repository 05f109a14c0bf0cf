//! PBS Professional / OpenPBS (Polaris, Aurora): `qsub`, `qstat -xf` (`-x` keeps finished
//! jobs), `qdel`, `qstat -Qf` for queue limits, `pbsnodes -a` for node states and `qstat -f`
//! for every job's size.
//! Torque's `qstat` has no `-x`; it is not supported.

use super::batch::{self, CanceledJobs};
use super::listing::pbs::parse_qstat_f_jobs;
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

const SYSTEM: &str = "pbs";

/// The `#PBS` lines for a description.
pub fn directives(job: &JobDescription) -> Result<Vec<String>, AccessError> {
    if job.qos.is_some() {
        return Err(AccessError::InvalidJob(
            "PBS has no QOS; use a queue".into(),
        ));
    }
    let mut select = format!("select={}", job.nodes);
    if job.cores_per_node > 0 {
        select.push_str(&format!(":ncpus={}", job.cores_per_node));
    }
    if job.gpus_per_node > 0 {
        select.push_str(&format!(":ngpus={}", job.gpus_per_node));
    }
    let mut d = vec![
        format!("-N {}", batch::job_name(&job.name)),
        format!("-l {select}"),
        format!("-l walltime={}", format_hms(job.walltime_s)),
    ];
    // A PBS reservation is a queue named after it (R1234).
    if let Some(q) = job.reservation.as_ref().or(job.queue.as_ref()) {
        d.push(format!("-q {q}"));
    }
    if let Some(a) = &job.account {
        d.push(format!("-A {a}"));
    }
    if let Some(o) = &job.stdout {
        d.push(format!("-o {o}"));
    }
    match &job.stderr {
        Some(e) => d.push(format!("-e {e}")),
        None => d.push("-j oe".to_string()),
    }
    d.extend(job.extra_directives.iter().cloned());
    Ok(d.into_iter().map(|x| format!("#PBS {x}")).collect())
}

/// The job id printed by `qsub` (`1234.polaris-pbs-01.hsn.cm.polaris.alcf.anl.gov`).
pub fn parse_qsub(out: &CommandOutput) -> Result<JobId, AccessError> {
    let id = batch::submitted_line(out, SYSTEM)?;
    if !id.starts_with(|c: char| c.is_ascii_digit()) || id.contains(char::is_whitespace) {
        return Err(AccessError::parse("job id from qsub", &out.stdout));
    }
    Ok(JobId(id.to_string()))
}

/// `key = value` attributes of each object in `qstat -f`/`-Qf` output, keyed by the
/// object header (`Job Id: 1.srv` -> `1.srv`, `Queue: debug` -> `debug`). Continuation
/// lines (starting with a tab) are joined to the value before them.
pub fn parse_objects(stdout: &str) -> Vec<(String, BTreeMap<String, String>)> {
    let mut out: Vec<(String, BTreeMap<String, String>)> = Vec::new();
    let mut last_key: Option<String> = None;
    for line in stdout.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with([' ', '\t']) {
            let name = line
                .split_once(':')
                .map(|(_, v)| v.trim())
                .unwrap_or(line.trim());
            out.push((name.to_string(), BTreeMap::new()));
            last_key = None;
            continue;
        }
        let Some((_, attrs)) = out.last_mut() else {
            continue;
        };
        if line.starts_with('\t') {
            if let Some(k) = &last_key {
                if let Some(v) = attrs.get_mut(k) {
                    v.push_str(line.trim());
                }
            }
            continue;
        }
        if let Some((k, v)) = line.trim().split_once(" = ") {
            attrs.insert(k.trim().to_string(), v.trim().to_string());
            last_key = Some(k.trim().to_string());
        }
    }
    out
}

/// The job's status from `qstat -xf ID`; `None` when no job was printed.
pub fn parse_qstat_job(stdout: &str, canceled_by_us: bool) -> Option<JobStatus> {
    let (_, a) = parse_objects(stdout).into_iter().next()?;
    let code = a.get("job_state")?.as_str();
    let exit = a.get("Exit_status").map(String::as_str);
    let state = match code {
        "Q" | "H" | "W" | "T" | "S" | "U" | "M" => JobState::Queued,
        "R" | "E" | "B" => JobState::Running,
        "F" | "X" if canceled_by_us => JobState::Canceled,
        "F" | "X" => match exit {
            Some("0") => JobState::Done,
            Some(_) => JobState::Failed,
            None => JobState::Canceled, // deleted before it ran: no exit status
        },
        _ => JobState::Unknown,
    };
    let year = current_year();
    let mut reason = a.get("comment").cloned();
    if state == JobState::Failed {
        let e = exit.unwrap_or("?");
        reason = Some(match reason {
            Some(c) => format!("Exit_status {e}: {c}"),
            None => format!("Exit_status {e}"),
        });
    }
    Some(JobStatus {
        state,
        start_time: a.get("stime").and_then(|t| parse_timestamp(t, year)),
        end_time: if state.is_final() {
            a.get("obittime")
                .or(a.get("mtime"))
                .and_then(|t| parse_timestamp(t, year))
        } else {
            None
        },
        reason,
    })
}

/// Whether PBS said it does not know the job.
pub fn is_unknown_job(message: &str) -> bool {
    message.contains("Unknown Job Id") || message.contains("Job has finished")
}

/// Queues from `qstat -Qf` (execution queues only; routing queues have no nodes).
pub fn parse_qstat_queues(stdout: &str) -> Vec<QueueInfo> {
    parse_objects(stdout)
        .into_iter()
        .filter(|(_, a)| {
            a.get("queue_type")
                .is_none_or(|t| t.eq_ignore_ascii_case("execution"))
        })
        .map(|(name, a)| {
            let counts: BTreeMap<&str, u32> = a
                .get("state_count")
                .map(|s| {
                    s.split_whitespace()
                        .filter_map(|kv| kv.split_once(':'))
                        .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
                        .collect()
                })
                .unwrap_or_default();
            let count = |k: &str| counts.get(k).copied().unwrap_or(0);
            QueueInfo {
                max_walltime_s: a
                    .get("resources_max.walltime")
                    .and_then(|w| parse_duration(w)),
                max_nodes: a
                    .get("resources_max.nodect")
                    .or(a.get("resources_max.nodes"))
                    .and_then(|n| n.parse().ok()),
                jobs_running: count("Running") + count("Exiting") + count("Begun"),
                jobs_queued: count("Queued") + count("Held") + count("Waiting") + count("Transit"),
                name,
                ..Default::default()
            }
        })
        .collect()
}

/// Node counts (total, free, busy, down) from `pbsnodes -a`.
pub fn parse_pbsnodes(stdout: &str) -> (u32, u32, u32, u32) {
    let (mut total, mut free, mut busy, mut down) = (0, 0, 0, 0);
    for (_, a) in parse_objects(stdout) {
        let Some(state) = a.get("state") else {
            continue;
        };
        total += 1;
        if state.contains("down") || state.contains("offline") || state.contains("unknown") {
            down += 1;
        } else if state.contains("job") || state.contains("resv") || state.contains("busy") {
            busy += 1;
        } else {
            free += 1;
        }
    }
    (total, free, busy, down)
}

/// PBS Pro through a [`CommandRunner`].
pub struct PbsJobService {
    runner: Arc<dyn CommandRunner>,
    template: Option<PathBuf>,
    canceled: CanceledJobs,
}

impl PbsJobService {
    pub fn new(runner: Arc<dyn CommandRunner>, template: Option<PathBuf>) -> PbsJobService {
        PbsJobService {
            runner,
            template,
            canceled: CanceledJobs::default(),
        }
    }
}

#[async_trait]
impl JobService for PbsJobService {
    async fn submit(&self, job: &JobDescription) -> Result<JobId, AccessError> {
        let (path, _) = batch::write_script(
            self.runner.as_ref(),
            job,
            SYSTEM,
            &directives(job)?,
            self.template.as_ref(),
            template::PBS_DEFAULT,
        )
        .await?;
        parse_qsub(
            &self
                .runner
                .run(&batch::to_strings(&["qsub", &path]), None)
                .await?,
        )
    }

    async fn state(&self, id: &JobId) -> Result<JobStatus, AccessError> {
        let out = self
            .runner
            .run(&batch::to_strings(&["qstat", "-xf", id.as_str()]), None)
            .await?;
        if let Some(status) = parse_qstat_job(&out.stdout, self.canceled.contains(id)) {
            return Ok(status);
        }
        if out.success() || is_unknown_job(&out.message()) {
            return Ok(JobStatus {
                reason: Some(format!("PBS has no record of job {id}: {}", out.message())),
                ..JobStatus::new(JobState::Unknown)
            });
        }
        Err(AccessError::CommandFailed {
            command: format!("qstat -xf {id}"),
            host: self.runner.host(),
            code: out.code,
            stderr: out.message(),
        })
    }

    async fn cancel(&self, id: &JobId) -> Result<(), AccessError> {
        let out = self
            .runner
            .run(&batch::to_strings(&["qdel", id.as_str()]), None)
            .await?;
        if !out.success() {
            let msg = out.message();
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

    async fn queues(&self) -> Result<Vec<QueueInfo>, AccessError> {
        let runner = self.runner.as_ref();
        let mut queues =
            parse_qstat_queues(&batch::run_ok(runner, &["qstat", "-Qf"]).await?.stdout);
        let nodes = batch::run_ok(runner, &["pbsnodes", "-a"]).await?;
        let (total, free, busy, down) = parse_pbsnodes(&nodes.stdout);
        // PBS queues share the machine's nodes: each reports the machine's counts.
        for q in &mut queues {
            (q.nodes_total, q.nodes_free, q.nodes_busy, q.nodes_down) = (total, free, busy, down);
        }
        Ok(queues)
    }

    async fn jobs(&self) -> Result<Vec<JobInfo>, AccessError> {
        let out = batch::run_ok(self.runner.as_ref(), &["qstat", "-f"]).await?;
        Ok(parse_qstat_f_jobs(&out.stdout))
    }

    async fn tail(&self, path: &str, lines: usize) -> Option<String> {
        batch::tail(self.runner.as_ref(), path, lines).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rendered_script_submits_to_the_reservation_queue_in_place_of_the_queue() {
        let job = JobDescription {
            name: "p".into(),
            nodes: 1,
            walltime_s: 60,
            queue: Some("debug".into()),
            reservation: Some("R1234".into()),
            command: vec!["pilot-agent".into()],
            ..Default::default()
        };
        let script =
            batch::render_script(&job, &directives(&job).unwrap(), template::PBS_DEFAULT, "t")
                .unwrap();
        assert!(script.contains("\n#PBS -q R1234\n"), "{script}");
        assert!(!script.contains("-q debug"), "{script}");
        let none = JobDescription {
            reservation: None,
            ..job
        };
        assert!(directives(&none)
            .unwrap()
            .contains(&"#PBS -q debug".to_string()));
    }

    #[test]
    fn directives_use_select_and_walltime() {
        let job = JobDescription {
            name: "p".into(),
            nodes: 4,
            cores_per_node: 32,
            gpus_per_node: 4,
            walltime_s: 3600,
            queue: Some("debug-scaling".into()),
            account: Some("proj".into()),
            extra_directives: vec!["-l filesystems=home:grand".into()],
            command: vec!["x".into()],
            ..Default::default()
        };
        let d = directives(&job).unwrap().join("\n");
        for want in [
            "#PBS -l select=4:ncpus=32:ngpus=4",
            "#PBS -l walltime=01:00:00",
            "#PBS -q debug-scaling",
            "#PBS -A proj",
            "#PBS -j oe",
            "#PBS -l filesystems=home:grand",
        ] {
            assert!(d.contains(want), "missing {want} in\n{d}");
        }
    }
}
