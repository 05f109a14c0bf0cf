//! The probes: a resource's queues over its access layer, the broker's pilot queues over
//! the RabbitMQ management API, pilot load from the state store. Each returns values or an
//! error string; the caller decides what a failure means (a stale resource, an error line).

use crate::model::{JobSize, PilotLoadView, PilotQueueDepth, QueueSnapshot};
use emanager_shared::access::runner::CommandRunner;
use emanager_shared::access::{
    command_runner_for, job_service_with_runner, JobInfo, JobService, JobState, QueueInfo,
};
use emanager_shared::catalog::{AccessKind, ResourceEntry};
use emanager_shared::store::StateStore;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// Probes one catalog resource.
pub struct ResourceProber {
    pub entry: ResourceEntry,
    service: Box<dyn JobService>,
    runner: Arc<dyn CommandRunner>,
}

/// What one successful resource probe saw.
#[derive(Clone, Debug, Default)]
pub struct ResourceProbe {
    pub queues: Vec<QueueSnapshot>,
    /// Every user's jobs with their sizes (none for `local`), for the backlog and the
    /// waits of our own pilots.
    pub jobs: Vec<JobInfo>,
}

impl ResourceProber {
    /// One runner (host, SSH, `batch_env`) for the service's commands and the probe's own.
    pub fn new(entry: ResourceEntry) -> ResourceProber {
        let runner = command_runner_for(&entry);
        ResourceProber {
            service: job_service_with_runner(&entry, runner.clone()),
            runner,
            entry,
        }
    }

    /// `localhost` or the SSH destination.
    pub fn host(&self) -> String {
        self.runner.host()
    }

    /// Asks the batch system about its queues and jobs, within `timeout`.
    pub async fn probe(&self, now_s: u64, timeout: Duration) -> Result<ResourceProbe, String> {
        let work = async {
            let (reported, jobs) = tokio::try_join!(self.service.queues(), self.service.jobs())
                .map_err(|e| e.to_string())?;
            let sizes_known = self.entry.access != AccessKind::Local;
            Ok(ResourceProbe {
                queues: merge_queues(&self.entry, &reported, &jobs, sizes_known, now_s),
                jobs,
            })
        };
        tokio::time::timeout(timeout, work)
            .await
            .unwrap_or_else(|_| Err(format!("probe timed out after {} s", timeout.as_secs())))
    }
}

/// The catalog's queues with what the batch system reported for them (matched by the name
/// passed at submission), then any reported queue the catalog does not list. With
/// `sizes_known`, each queue gets the sizes of the jobs that wait for it or run in it: nodes
/// as reported or the job's cores over the catalog's cores per node, walltime as requested
/// or the queue's limit.
pub fn merge_queues(
    entry: &ResourceEntry,
    reported: &[QueueInfo],
    jobs: &[JobInfo],
    sizes_known: bool,
    now_s: u64,
) -> Vec<QueueSnapshot> {
    let snapshot = |name: &str, batch_name: &str, info: Option<&QueueInfo>| {
        let spec = entry.queues.iter().find(|q| q.name == name);
        let info = info.cloned().unwrap_or_default();
        let max_walltime_s = spec.map(|s| s.max_walltime_s).or(info.max_walltime_s);
        let of_state = |state: JobState| {
            sizes_known.then(|| {
                jobs.iter()
                    .filter(|j| j.state == state && j.in_queue(batch_name))
                    .map(|j| job_size(j, entry.cores_per_node, max_walltime_s, now_s))
                    .collect()
            })
        };
        QueueSnapshot {
            name: name.to_string(),
            max_walltime_s,
            max_nodes: spec.map(|s| s.max_nodes).or(info.max_nodes),
            nodes_total: info.nodes_total,
            nodes_free: info.nodes_free,
            nodes_busy: info.nodes_busy,
            nodes_down: info.nodes_down,
            jobs_running: info.jobs_running,
            jobs_queued: info.jobs_queued,
            queued_jobs: of_state(JobState::Queued),
            running_jobs: of_state(JobState::Running),
            reported: false,
        }
    };
    let mut out = Vec::new();
    let mut used = Vec::new();
    for spec in &entry.queues {
        let batch_name = spec.submit_queue().unwrap_or_else(|| spec.name.clone());
        let info = reported.iter().find(|q| q.name == batch_name);
        let mut q = snapshot(&spec.name, &batch_name, info);
        q.reported = info.is_some();
        used.push(batch_name);
        out.push(q);
    }
    for info in reported.iter().filter(|q| !used.contains(&q.name)) {
        let mut q = snapshot(&info.name, &info.name, Some(info));
        q.reported = true;
        out.push(q);
    }
    out
}

/// A listed job's size on this resource at `now_s`.
pub fn job_size(
    job: &JobInfo,
    cores_per_node: u32,
    queue_limit_s: Option<u64>,
    now_s: u64,
) -> JobSize {
    let elapsed_s = match (job.state, job.start_ms) {
        (JobState::Running, Some(start)) => now_s.saturating_sub(start / 1000),
        _ => 0,
    };
    JobSize {
        nodes: job.nodes_on(cores_per_node),
        cores: job.cores,
        walltime_s: if job.walltime_s > 0 {
            job.walltime_s
        } else {
            queue_limit_s.unwrap_or(0)
        },
        elapsed_s,
    }
}

#[derive(Deserialize)]
struct MgmtQueue {
    name: String,
    #[serde(default)]
    messages_ready: u64,
    #[serde(default)]
    messages_unacknowledged: u64,
    #[serde(default)]
    consumers: u64,
}

/// `(campaign, pilot)` of a queue named `em.<campaign>.pilot.<pilot>`.
pub fn pilot_queue_name(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix("em.")?;
    let (campaign, pilot) = rest.rsplit_once(".pilot.")?;
    (!campaign.is_empty() && !pilot.is_empty()).then_some((campaign, pilot))
}

/// Parses the management API's `GET /api/queues` body, keeping pilot queues.
pub fn parse_mgmt_queues(body: &str) -> Result<Vec<PilotQueueDepth>, String> {
    let queues: Vec<MgmtQueue> = serde_json::from_str(body)
        .map_err(|e| format!("RabbitMQ management API /api/queues: not the expected JSON: {e}"))?;
    Ok(queues
        .into_iter()
        .filter_map(|q| {
            let (campaign, pilot) = pilot_queue_name(&q.name)?;
            Some(PilotQueueDepth {
                campaign: campaign.to_string(),
                pilot: pilot.to_string(),
                ready: q.messages_ready,
                unacked: q.messages_unacknowledged,
                consumers: q.consumers,
                queue: q.name,
            })
        })
        .collect())
}

/// Pilot queue depths from the RabbitMQ management API at `mgmt_url`
/// (`http://user:pass@host:15672`).
pub async fn probe_broker(
    client: &reqwest::Client,
    mgmt_url: &str,
) -> Result<Vec<PilotQueueDepth>, String> {
    let mut url =
        reqwest::Url::parse(mgmt_url).map_err(|e| format!("--amqp-mgmt-url `{mgmt_url}`: {e}"))?;
    let user = url.username().to_string();
    let pass = url.password().map(str::to_string);
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_path("/api/queues");
    url.set_query(Some(
        "columns=name,messages_ready,messages_unacknowledged,consumers",
    ));
    let shown = url.to_string();
    let mut req = client.get(url).timeout(Duration::from_secs(10));
    if !user.is_empty() {
        req = req.basic_auth(user, pass);
    }
    let resp = req.send().await.map_err(|e| {
        format!("RabbitMQ management API {shown}: {e} (start it: deploy/dev/services-up.sh, or `rabbitmq-plugins enable rabbitmq_management`)")
    })?;
    let status = resp.status();
    let body = resp.text().await.map_err(|e| format!("{shown}: {e}"))?;
    if !status.is_success() {
        return Err(format!(
            "RabbitMQ management API {shown}: HTTP {status}: {body}"
        ));
    }
    parse_mgmt_queues(&body)
}

/// Every campaign's pilots with their load, from the state store.
pub async fn probe_pilots(store: &dyn StateStore) -> Result<Vec<PilotLoadView>, String> {
    let mut out = Vec::new();
    for campaign in store.list_campaigns().await.map_err(|e| e.to_string())? {
        for view in store.pilots(&campaign).await.map_err(|e| e.to_string())? {
            out.push(PilotLoadView {
                campaign: campaign.to_string(),
                pilot: view.record.id.to_string(),
                resource: view.record.resource.clone(),
                job_id: view.record.job_id.clone(),
                state: view.record.state.to_string(),
                cores: view.record.cores,
                busy_cores: view.load.busy_cores,
                tasks_running: view.load.running,
                alive: view.alive,
                heartbeat_age_ms: view.heartbeat_age_ms,
                registered_ms: view.record.registered_ms,
            });
        }
    }
    Ok(out)
}
