//! The running bundle service: probes every resource each interval (with jitter), learns the
//! waits of our own pilots (from the job listings and the manager's pilot-wait stream),
//! keeps the last snapshot and the wait history, answers predictions, writes the Redis
//! snapshot, and knows whether it is healthy.

use crate::estimator::{
    estimate, QueueWaitEstimate, Staleness, WaitHistory, WaitRequest, WaitSample,
};
use crate::health::{health, Health};
use crate::model::{ResourceSnapshot, Snapshot};
use crate::observations::{read_new_pilot_waits, OwnWaits, StreamCursor};
use crate::probe::{probe_broker, probe_pilots, ResourceProber};
use crate::snapshot_store::write_snapshot;
use emanager_shared::catalog::{Catalog, ResourceEntry};
use emanager_shared::now_ms;
use emanager_shared::store::RedisStore;
use rand::Rng;
use std::collections::BTreeMap;
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
    /// State store to read pilot load and pilot waits from and write the snapshot to.
    pub redis_url: Option<String>,
    /// RabbitMQ management API (`http://user:pass@host:15672`).
    pub amqp_mgmt_url: Option<String>,
    /// How long the Redis snapshot is kept after the service's last write. Readers mark it
    /// stale much sooner (three intervals), so a stopped service's resources show as stale
    /// with their age instead of vanishing.
    pub snapshot_retention: Duration,
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
            snapshot_retention: default_retention(interval),
        }
    }
}

/// A day, or ten intervals when that is longer.
pub fn default_retention(interval: Duration) -> Duration {
    (interval * 10).max(Duration::from_secs(86_400))
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
    /// Waits of our own pilots learned (listings, the pilot-wait stream, `observe`).
    pub observations: u64,
    pub snapshot_write_errors: u64,
}

struct State {
    snapshot: Snapshot,
    waits: OwnWaits,
    counters: ProbeCounters,
    /// Where this service is in the pilot-wait stream.
    waits_cursor: StreamCursor,
    /// The last round's Redis failure (connection or operation), for `/healthz`.
    redis_error: Option<String>,
}

/// One site's bundle service.
pub struct Bundle {
    config: BundleConfig,
    probers: Vec<ResourceProber>,
    http: reqwest::Client,
    state: RwLock<State>,
    /// The state store, once connected (it reconnects by itself afterwards).
    store: tokio::sync::Mutex<Option<RedisStore>>,
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
                    interval_ms: config.interval.as_millis() as u64,
                    ..Default::default()
                },
                waits: OwnWaits::new(history),
                counters: ProbeCounters::default(),
                waits_cursor: StreamCursor::default(),
                redis_error: None,
            }),
            probers,
            http: reqwest::Client::new(),
            store: tokio::sync::Mutex::new(None),
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
        let st = self.state.read().await;
        ProbeCounters {
            observations: st.waits.observations,
            ..st.counters.clone()
        }
    }

    /// Probes everything once (every resource, then the site's broker and store), updates
    /// the state and the Redis snapshot, returns it.
    pub async fn probe_once(&self) -> Snapshot {
        futures::future::join_all((0..self.probers.len()).map(|i| self.probe_resource(i))).await;
        self.probe_site().await
    }

    /// Probes resource `i` and puts the result in the snapshot at once: a failure marks it
    /// stale with the error, a success replaces its queues and teaches the waits of our own
    /// jobs in its listing.
    async fn probe_resource(&self, i: usize) {
        let prober = &self.probers[i];
        let started = Instant::now();
        let result = prober
            .probe(now_ms() / 1000, self.config.probe_timeout)
            .await;
        let (latency, finished_ms) = (started.elapsed(), now_ms());
        let mut st = self.state.write().await;
        let st = &mut *st;
        let name = &prober.entry.name;
        let Some(res) = st.snapshot.resources.iter_mut().find(|r| &r.name == name) else {
            return;
        };
        match result {
            Ok(probe) => {
                res.queues = probe.queues;
                res.probed_ms = finished_ms;
                res.probe_latency_ms = latency.as_millis() as u64;
                res.stale = false;
                res.error = None;
                st.waits
                    .learn_from_listing(&prober.entry, &probe.jobs, &st.snapshot.pilots);
            }
            Err(e) => {
                tracing::warn!(resource = %name, error = %e, "probe failed; resource marked stale");
                *st.counters.failures.entry(name.clone()).or_default() += 1;
                res.stale = true;
                res.error = Some(e);
            }
        }
    }

    /// The site's round: pilot queues from the broker, pilot load and new pilot waits from
    /// the store; then the snapshot (with the resources as last probed) goes to Redis.
    async fn probe_site(&self) -> Snapshot {
        let mut errors = Vec::new();
        let pilot_queues = match &self.config.amqp_mgmt_url {
            Some(url) => probe_broker(&self.http, url).await.unwrap_or_else(|e| {
                errors.push(e);
                Vec::new()
            }),
            None => Vec::new(),
        };
        let mut redis_errors = Vec::new();
        let mut pilots = Vec::new();
        let mut waits = Vec::new();
        let mut cursor = self.state.read().await.waits_cursor.clone();
        match self.redis_store().await {
            None => {}
            Some(Err(e)) => redis_errors.push(e),
            Some(Ok(store)) => {
                match probe_pilots(&store).await {
                    Ok(p) => pilots = p,
                    Err(e) => redis_errors.push(e),
                }
                match read_new_pilot_waits(&store, &mut cursor).await {
                    Ok(w) => waits = w,
                    Err(e) => redis_errors.push(e),
                }
            }
        }
        errors.extend(redis_errors.iter().cloned());

        let snapshot = {
            let mut st = self.state.write().await;
            let st = &mut *st;
            st.counters.rounds += 1;
            let entries: Vec<ResourceEntry> =
                self.probers.iter().map(|p| p.entry.clone()).collect();
            st.waits.learn_pilot_waits(&entries, &waits);
            st.waits_cursor = cursor;
            st.snapshot.taken_ms = now_ms();
            st.snapshot.pilot_queues = pilot_queues;
            st.snapshot.pilots = pilots;
            st.snapshot.errors = errors;
            st.snapshot.clone()
        };
        if let Some(url) = &self.config.redis_url {
            if let Err(e) = write_snapshot(url, &snapshot, self.config.snapshot_retention).await {
                tracing::warn!(error = %e, "writing the Redis snapshot failed");
                self.state.write().await.counters.snapshot_write_errors += 1;
                redis_errors.push(format!("writing the snapshot: {e:#}"));
            }
        }
        self.state.write().await.redis_error = redis_errors.into_iter().next();
        snapshot
    }

    /// The state store at `redis_url`, connected on first use; `None` without one.
    async fn redis_store(&self) -> Option<Result<RedisStore, String>> {
        let url = self.config.redis_url.as_ref()?;
        let mut cached = self.store.lock().await;
        if let Some(store) = cached.as_ref() {
            return Some(Ok(store.clone()));
        }
        Some(match RedisStore::connect(url).await {
            Ok(store) => {
                *cached = Some(store.clone());
                Ok(store)
            }
            Err(e) => Err(format!("{e} (start Redis: deploy/dev/services-up.sh)")),
        })
    }

    /// Records a wait observed elsewhere: it counts as an observed wait of our own pilots.
    pub async fn observe(&self, resource: &str, queue: &str, sample: WaitSample) {
        self.state
            .write()
            .await
            .waits
            .observe(resource, queue, sample);
    }

    /// Whether the service can be relied on now (see [`crate::health`]).
    pub async fn health(&self) -> Health {
        let st = self.state.read().await;
        health(&st.snapshot, st.redis_error.as_deref())
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
            &st.waits.history,
            resource,
            &queue,
            WaitRequest { nodes, walltime_s },
            probed,
            stale.as_ref(),
        ))
    }

    /// Probes every interval (with jitter) until `shutdown` turns true: each resource on its
    /// own schedule (a slow login node delays nobody else), and the site's round (broker,
    /// store, the Redis snapshot). Rounds start at a fixed rate (one that overruns is
    /// followed at once by the next), so a job submitted at any moment is seen by a probe
    /// that starts within one interval: the snapshot shows it within one interval plus that
    /// probe's duration.
    pub async fn run(self: Arc<Self>, shutdown: watch::Receiver<bool>) {
        // Resources first, so the first snapshot written has them; the schedules count from
        // when that round started.
        let started = tokio::time::Instant::now();
        self.probe_once().await;
        let mut loops = Vec::new();
        for i in 0..self.probers.len() {
            let b = self.clone();
            let round = move || {
                let b = b.clone();
                async move { b.probe_resource(i).await }
            };
            loops.push(tokio::spawn(self.clone().every_interval(
                started,
                shutdown.clone(),
                round,
            )));
        }
        let b = self.clone();
        let round = move || {
            let b = b.clone();
            async move {
                b.probe_site().await;
            }
        };
        loops.push(tokio::spawn(
            self.clone().every_interval(started, shutdown, round),
        ));
        for l in loops {
            let _ = l.await;
        }
    }

    /// Runs `round` at a fixed rate of one interval (with jitter), the first one interval
    /// after `since`, until `shutdown` turns true.
    async fn every_interval<F, Fut>(
        self: Arc<Self>,
        since: tokio::time::Instant,
        mut shutdown: watch::Receiver<bool>,
        round: F,
    ) where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let mut next = since;
        loop {
            let base = self.config.interval.as_secs_f64();
            let j = self.config.jitter.clamp(0.0, 0.5);
            let period = base * (1.0 + rand::thread_rng().gen_range(-j..=j));
            next += Duration::from_secs_f64(period.max(0.1));
            let now = tokio::time::Instant::now();
            if next < now {
                next = now;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
            round().await;
        }
    }
}
