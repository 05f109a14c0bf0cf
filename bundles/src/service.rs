//! The running bundle service: probes every resource each interval (with jitter), keeps the
//! last snapshot and the wait history, answers predictions, writes the Redis snapshot.

use crate::estimator::{
    estimate, QueueWaitEstimate, Staleness, WaitHistory, WaitRequest, WaitSample,
};
use crate::model::{PilotLoadView, ResourceSnapshot, Snapshot};
use crate::probe::{probe_broker, probe_pilots, ResourceProber};
use crate::snapshot_store::write_snapshot;
use emanager_shared::access::JobInfo;
use emanager_shared::catalog::{Catalog, ResourceEntry};
use emanager_shared::now_ms;
use rand::Rng;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, RwLock};

/// What a bundle service needs besides its catalog.
#[derive(Clone, Debug)]
pub struct BundleConfig {
    pub site: String,
    pub interval: Duration,
    /// Up to this fraction of the interval is added or taken at random, so several
    /// services do not probe a login node in lockstep.
    pub jitter: f64,
    pub probe_timeout: Duration,
    /// State store to read pilot load from and write the snapshot to.
    pub redis_url: Option<String>,
    /// RabbitMQ management API (`http://user:pass@host:15672`).
    pub amqp_mgmt_url: Option<String>,
    /// Lifetime of the Redis snapshot key.
    pub snapshot_ttl: Duration,
}

impl BundleConfig {
    pub fn new(site: impl Into<String>, interval: Duration) -> BundleConfig {
        BundleConfig {
            site: site.into(),
            interval,
            jitter: 0.1,
            probe_timeout: Duration::from_secs(30).min(interval.max(Duration::from_secs(5))),
            redis_url: None,
            amqp_mgmt_url: None,
            snapshot_ttl: (interval * 3).max(Duration::from_secs(60)),
        }
    }
}

/// Why a prediction could not be made (the API answers 404 / 400 with it).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PredictError {
    #[error("unknown resource `{0}`")]
    UnknownResource(String),
    #[error("resource `{resource}` has no queue `{queue}`; known: {known}")]
    UnknownQueue {
        resource: String,
        queue: String,
        known: String,
    },
    #[error("resource `{0}` names no queue and has no default queue: pass queue=")]
    NoQueue(String),
    #[error("{0}")]
    OverLimit(String),
}

/// Counters for `/metrics`.
#[derive(Clone, Debug, Default)]
pub struct ProbeCounters {
    pub rounds: u64,
    pub failures: BTreeMap<String, u64>,
    pub observations: u64,
    pub snapshot_write_errors: u64,
}

struct State {
    snapshot: Snapshot,
    history: WaitHistory,
    seen_jobs: HashSet<(String, String)>,
    counters: ProbeCounters,
}

impl State {
    /// Records the submit-to-start wait of each running job of ours in the listing (named
    /// `emanager*`, or whose id is a pilot's job id), each job once.
    fn record_own_waits(
        &mut self,
        entry: &ResourceEntry,
        jobs: &[JobInfo],
        pilots: &[PilotLoadView],
    ) {
        let name = &entry.name;
        for job in jobs {
            let own = job.name.starts_with("emanager")
                || pilots
                    .iter()
                    .any(|p| &p.resource == name && p.job_id == job.id);
            let Some(wait_s) = job.wait_s().filter(|_| own) else {
                continue;
            };
            if !self.seen_jobs.insert((name.clone(), job.id.clone())) {
                continue;
            }
            let batch_queue = job.queues.first().cloned().unwrap_or_default();
            let queue = entry
                .queues
                .iter()
                .find(|q| q.submit_queue().as_deref() == Some(&batch_queue))
                .map_or(batch_queue, |q| q.name.clone());
            self.history.observe(
                name,
                &queue,
                WaitSample {
                    nodes: job.nodes_on(entry.cores_per_node),
                    walltime_s: job.walltime_s,
                    wait_s: wait_s as f64,
                },
            );
            self.counters.observations += 1;
        }
    }
}

/// One site's bundle service.
pub struct Bundle {
    config: BundleConfig,
    probers: Vec<ResourceProber>,
    http: reqwest::Client,
    state: RwLock<State>,
}

impl Bundle {
    /// A service for every resource of `catalog`, with `history` as its starting waits
    /// (priors loaded from traces).
    pub fn new(catalog: &Catalog, config: BundleConfig, history: WaitHistory) -> Arc<Bundle> {
        let probers: Vec<ResourceProber> = catalog
            .resources()
            .cloned()
            .map(ResourceProber::new)
            .collect();
        let resources = probers
            .iter()
            .map(|p| ResourceSnapshot {
                name: p.entry.name.clone(),
                access: p.entry.access.to_string(),
                host: p.host(),
                site: config.site.clone(),
                catalog_nodes: p.entry.nodes,
                cores_per_node: p.entry.cores_per_node,
                queues: crate::probe::merge_queues(&p.entry, &[], &[], false, 0),
                stale: true,
                error: Some("not probed yet".into()),
                ..Default::default()
            })
            .collect();
        Arc::new(Bundle {
            state: RwLock::new(State {
                snapshot: Snapshot {
                    site: config.site.clone(),
                    resources,
                    ..Default::default()
                },
                history,
                seen_jobs: HashSet::new(),
                counters: ProbeCounters::default(),
            }),
            probers,
            http: reqwest::Client::new(),
            config,
        })
    }

    pub fn config(&self) -> &BundleConfig {
        &self.config
    }

    /// The last snapshot.
    pub async fn snapshot(&self) -> Snapshot {
        self.state.read().await.snapshot.clone()
    }

    pub async fn counters(&self) -> ProbeCounters {
        self.state.read().await.counters.clone()
    }

    /// Probes everything once, updates the state and the Redis snapshot, returns it.
    pub async fn probe_once(&self) -> Snapshot {
        let now_s = now_ms() / 1000;
        let timeout = self.config.probe_timeout;
        let results = futures::future::join_all(self.probers.iter().map(|p| async move {
            let started = Instant::now();
            let r = p.probe(now_s, timeout).await;
            (r, started.elapsed())
        }))
        .await;
        let mut errors = Vec::new();
        let pilot_queues = match &self.config.amqp_mgmt_url {
            Some(url) => probe_broker(&self.http, url).await.unwrap_or_else(|e| {
                errors.push(e);
                Vec::new()
            }),
            None => Vec::new(),
        };
        let pilots = match &self.config.redis_url {
            Some(url) => probe_pilots(url).await.unwrap_or_else(|e| {
                errors.push(e);
                Vec::new()
            }),
            None => Vec::new(),
        };

        let snapshot = {
            let mut st = self.state.write().await;
            let st = &mut *st;
            st.counters.rounds += 1;
            let taken = now_ms();
            for (prober, (result, latency)) in self.probers.iter().zip(results) {
                let name = &prober.entry.name;
                let Some(res) = st.snapshot.resources.iter_mut().find(|r| &r.name == name) else {
                    continue;
                };
                match result {
                    Ok(probe) => {
                        res.queues = probe.queues;
                        res.probed_ms = taken;
                        res.probe_latency_ms = latency.as_millis() as u64;
                        res.stale = false;
                        res.error = None;
                        st.record_own_waits(&prober.entry, &probe.jobs, &pilots);
                    }
                    Err(e) => {
                        tracing::warn!(resource = %name, error = %e, "probe failed; resource marked stale");
                        *st.counters.failures.entry(name.clone()).or_default() += 1;
                        res.stale = true;
                        res.error = Some(e);
                    }
                }
            }
            st.snapshot.taken_ms = taken;
            st.snapshot.pilot_queues = pilot_queues;
            st.snapshot.pilots = pilots;
            st.snapshot.errors = errors;
            st.snapshot.clone()
        };
        if let Some(url) = &self.config.redis_url {
            if let Err(e) = write_snapshot(url, &snapshot, self.config.snapshot_ttl).await {
                tracing::warn!(error = %e, "writing the Redis snapshot failed");
                self.state.write().await.counters.snapshot_write_errors += 1;
            }
        }
        snapshot
    }

    /// Records a wait observed elsewhere (e.g. the manager's own pilot bookkeeping).
    pub async fn observe(&self, resource: &str, queue: &str, sample: WaitSample) {
        let mut st = self.state.write().await;
        st.history.observe(resource, queue, sample);
        st.counters.observations += 1;
    }

    /// Predicts the wait of `nodes` x `walltime_s` on `queue` (the default queue when
    /// `None`) of `resource`.
    pub async fn predict(
        &self,
        resource: &str,
        queue: Option<&str>,
        nodes: u32,
        walltime_s: u64,
    ) -> Result<QueueWaitEstimate, PredictError> {
        let prober = self
            .probers
            .iter()
            .find(|p| p.entry.name == resource)
            .ok_or_else(|| PredictError::UnknownResource(resource.into()))?;
        let entry = &prober.entry;
        let st = self.state.read().await;
        let res = st
            .snapshot
            .resource(resource)
            .ok_or_else(|| PredictError::UnknownResource(resource.into()))?;
        let queue = match queue.or(entry.default_queue.as_deref()) {
            Some(q) => q.to_string(),
            None if res.queues.len() == 1 => res.queues[0].name.clone(),
            None => return Err(PredictError::NoQueue(resource.into())),
        };
        let probed = res.queues.iter().find(|q| q.name == queue).ok_or_else(|| {
            PredictError::UnknownQueue {
                resource: resource.into(),
                queue: queue.clone(),
                known: res
                    .queues
                    .iter()
                    .map(|q| q.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }
        })?;
        if let Some(max) = probed.max_nodes.filter(|&m| nodes > m) {
            return Err(PredictError::OverLimit(format!(
                "queue `{queue}` of `{resource}` takes at most {max} nodes, asked for {nodes}"
            )));
        }
        if let Some(max) = probed.max_walltime_s.filter(|&m| walltime_s > m) {
            return Err(PredictError::OverLimit(format!(
                "queue `{queue}` of `{resource}` allows at most {max} s of walltime, asked for {walltime_s} s"
            )));
        }
        let stale = res.stale.then(|| Staleness {
            error: res.error.clone().unwrap_or_default(),
            age_s: if res.probed_ms == 0 {
                0
            } else {
                now_ms().saturating_sub(res.probed_ms) / 1000
            },
        });
        let probed = probed.reported.then_some(probed);
        Ok(estimate(
            &st.history,
            resource,
            &queue,
            WaitRequest { nodes, walltime_s },
            probed,
            stale.as_ref(),
        ))
    }

    /// Probes every interval (with jitter) until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            self.probe_once().await;
            let base = self.config.interval.as_secs_f64();
            let j = self.config.jitter.clamp(0.0, 0.5);
            let wait = base * (1.0 + rand::thread_rng().gen_range(-j..=j));
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs_f64(wait.max(0.1))) => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }
}
