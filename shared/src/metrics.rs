//! Prometheus metrics: one process-wide registry every component registers its series in,
//! and a tiny HTTP exporter (`GET /metrics`, `GET /healthz`).
//!
//! The registry is global because a process exports one `/metrics` page: in embedded mode
//! the manager and its in-process agents share it. Series are cheap atomics, so components
//! update them whether or not an exporter runs. Every series is documented in
//! `docs/operations.md`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

/// The series types components hold (cheap to clone, atomic updates).
pub use prometheus_client::metrics::{counter::Counter, gauge::Gauge, histogram::Histogram};

/// A gauge family keyed by one `state` label.
pub type StateGauges = Family<StateLabel, Gauge>;

/// The label of [`StateGauges`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

/// A gauge family of build/identity information (value 1).
pub type InfoGauge = Family<Vec<(String, String)>, Gauge>;

static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
static EXPORTING: AtomicBool = AtomicBool::new(false);

fn registry() -> &'static Mutex<Registry> {
    REGISTRY.get_or_init(|| Mutex::new(Registry::default()))
}

fn with_registry(f: impl FnOnce(&mut Registry)) {
    let mut r = registry().lock().unwrap_or_else(|e| e.into_inner());
    f(&mut r);
}

/// Registers a counter; the exported name gets the `_total` suffix.
pub fn counter(name: &str, help: &str) -> Counter {
    let c = Counter::default();
    with_registry(|r| r.register(name, help, c.clone()));
    c
}

/// Registers a gauge.
pub fn gauge(name: &str, help: &str) -> Gauge {
    let g = Gauge::default();
    with_registry(|r| r.register(name, help, g.clone()));
    g
}

/// Registers a gauge family with a `state` label.
pub fn state_gauges(name: &str, help: &str) -> StateGauges {
    let f = StateGauges::default();
    with_registry(|r| r.register(name, help, f.clone()));
    f
}

/// Registers an info gauge (value 1) with the given labels.
pub fn info(name: &str, help: &str, labels: &[(&str, &str)]) {
    let f = InfoGauge::default();
    f.get_or_create(
        &labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
    .set(1);
    with_registry(|r| r.register(name, help, f));
}

/// Registers a histogram with exponential buckets from `start` seconds (factor 2).
pub fn histogram(name: &str, help: &str, start: f64, buckets: u16) -> Histogram {
    let h = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        start, 2.0, buckets,
    ));
    with_registry(|r| r.register(name, help, h.clone()));
    h
}

/// Whether an exporter runs in this process (lets callers skip costly samples).
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// The registry in the Prometheus text format (OpenMetrics 1.0).
pub fn encode() -> String {
    let mut out = String::new();
    let r = registry().lock().unwrap_or_else(|e| e.into_inner());
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &r) {
        tracing::warn!(error = %e, "cannot encode metrics");
    }
    out
}

/// `/healthz`: 200 `ok`, or 503 with one line per problem (see [`crate::health`]).
async fn healthz() -> (axum::http::StatusCode, String) {
    match crate::health::check() {
        Ok(()) => (axum::http::StatusCode::OK, "ok\n".into()),
        Err(lines) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            lines.join("\n") + "\n",
        ),
    }
}

/// Starts the exporter on `addr` (`127.0.0.1:0` picks a free port) and returns the bound
/// address. It serves until the process ends.
pub async fn serve(addr: &str) -> anyhow::Result<SocketAddr> {
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for metrics on {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(|| async {
                (
                    [(
                        "content-type",
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    encode(),
                )
            }),
        )
        .route("/healthz", get(healthz));
    EXPORTING.store(true, Ordering::Relaxed);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics exporter stopped");
        }
    });
    tracing::info!(%bound, "metrics on http://{bound}/metrics");
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn exporter_serves_registered_series() {
        let c = counter("em_test_things", "Things counted by the test.");
        c.inc_by(3);
        let addr = serve("127.0.0.1:0").await.unwrap();
        let body = http_get(addr, "/metrics").await;
        assert!(body.contains("em_test_things_total 3"), "{body}");
        let ok = http_get(addr, "/healthz").await;
        assert!(
            ok.starts_with("HTTP/1.0 200") && ok.ends_with("ok\n"),
            "{ok}"
        );
        crate::health::unhealthy("metrics test", "made up for the test");
        let sick = http_get(addr, "/healthz").await;
        crate::health::healthy("metrics test");
        assert!(sick.starts_with("HTTP/1.0 503"), "{sick}");
        assert!(
            sick.contains("metrics test: made up for the test"),
            "{sick}"
        );
    }

    async fn http_get(addr: SocketAddr, path: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }
}
