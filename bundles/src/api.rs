//! The HTTP/JSON API (axum): resources, predictions, health, Prometheus metrics, and the
//! OpenAPI description of it all.

use crate::service::{Bundle, PredictError};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use emanager_shared::access::timefmt::parse_duration;
use emanager_shared::now_ms;
use serde::Deserialize;
use serde_json::json;
use std::fmt::Write;
use std::sync::Arc;

/// The router over `bundle`.
pub fn router(bundle: Arc<Bundle>) -> Router {
    Router::new()
        .route("/v1/resources", get(resources))
        .route("/v1/resources/{name}", get(resource))
        .route("/v1/predict", get(predict))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route(
            "/openapi.json",
            get(|| async { Json(crate::openapi::openapi()) }),
        )
        .with_state(bundle)
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

async fn resources(State(b): State<Arc<Bundle>>) -> Response {
    Json(b.snapshot().await).into_response()
}

async fn resource(State(b): State<Arc<Bundle>>, Path(name): Path<String>) -> Response {
    match b.snapshot().await.resource(&name) {
        Some(r) => Json(r.clone()).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("unknown resource `{name}`")),
    }
}

/// `GET /v1/predict` parameters; walltime as seconds or `[D-]HH:MM:SS`.
#[derive(Deserialize)]
struct PredictQuery {
    resource: String,
    queue: Option<String>,
    nodes: Option<u32>,
    walltime: Option<String>,
}

async fn predict(State(b): State<Arc<Bundle>>, Query(q): Query<PredictQuery>) -> Response {
    let walltime_s = match q.walltime.as_deref() {
        None => 3600,
        Some(w) => match w.parse::<u64>().ok().or_else(|| parse_duration(w)) {
            Some(s) => s,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("walltime `{w}` is neither seconds nor [D-]HH:MM:SS"),
                )
            }
        },
    };
    let nodes = q.nodes.unwrap_or(1).max(1);
    match b
        .predict(&q.resource, q.queue.as_deref(), nodes, walltime_s)
        .await
    {
        Ok(est) => Json(json!({
            "resource": q.resource,
            "queue": q.queue,
            "nodes": nodes,
            "walltime_s": walltime_s,
            "estimate": est,
        }))
        .into_response(),
        Err(e @ (PredictError::UnknownResource(_) | PredictError::UnknownQueue { .. })) => {
            error(StatusCode::NOT_FOUND, e.to_string())
        }
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// 200 with `status: ok`, or 503 with `status: unavailable` and the reasons (every resource
/// stale, or Redis unreachable).
async fn healthz(State(b): State<Arc<Bundle>>) -> Response {
    let h = b.health().await;
    let code = if h.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(h)).into_response()
}

async fn metrics(State(b): State<Arc<Bundle>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics_text(&b).await,
    )
        .into_response()
}

/// Prometheus text: probe latency and staleness per resource, queue gauges, the wait
/// estimate of a 1-node job of the queue's walltime limit (at most 1 h), counters.
pub async fn metrics_text(b: &Bundle) -> String {
    let snap = b.snapshot().await;
    let counters = b.counters().await;
    let now = now_ms();
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, lines: Vec<String>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for l in lines {
            let _ = writeln!(out, "{name}{l}");
        }
    };
    let site = &snap.site;
    let res_label = |r: &str| format!("{{site=\"{site}\",resource=\"{r}\"}}");
    family(
        "bundles_probe_rounds_total",
        "counter",
        "Probe rounds run.",
        vec![format!("{{site=\"{site}\"}} {}", counters.rounds)],
    );
    family(
        "bundles_probe_latency_seconds",
        "gauge",
        "Duration of the last successful probe of the resource.",
        snap.resources
            .iter()
            .map(|r| {
                format!(
                    "{} {:.3}",
                    res_label(&r.name),
                    r.probe_latency_ms as f64 / 1000.0
                )
            })
            .collect(),
    );
    family(
        "bundles_resource_stale",
        "gauge",
        "1 when the resource's last probe failed.",
        snap.resources
            .iter()
            .map(|r| format!("{} {}", res_label(&r.name), u8::from(r.stale)))
            .collect(),
    );
    family(
        "bundles_probe_age_seconds",
        "gauge",
        "Seconds since the resource's last successful probe (-1: never).",
        snap.resources
            .iter()
            .map(|r| {
                let age = if r.probed_ms == 0 {
                    -1.0
                } else {
                    now.saturating_sub(r.probed_ms) as f64 / 1000.0
                };
                format!("{} {age:.3}", res_label(&r.name))
            })
            .collect(),
    );
    family(
        "bundles_probe_failures_total",
        "counter",
        "Failed probes of the resource.",
        snap.resources
            .iter()
            .map(|r| {
                let n = counters.failures.get(&r.name).copied().unwrap_or(0);
                format!("{} {n}", res_label(&r.name))
            })
            .collect(),
    );
    let mut queue_lines: [Vec<String>; 4] = Default::default();
    let mut wait_lines = Vec::new();
    for r in &snap.resources {
        for q in &r.queues {
            let l = format!(
                "{{site=\"{site}\",resource=\"{}\",queue=\"{}\"",
                r.name, q.name
            );
            queue_lines[0].push(format!("{l}}} {}", q.nodes_free));
            queue_lines[1].push(format!("{l}}} {}", q.nodes_total));
            queue_lines[2].push(format!("{l}}} {}", q.jobs_running));
            queue_lines[3].push(format!("{l}}} {}", q.jobs_queued));
            let wall = q.max_walltime_s.unwrap_or(3600).min(3600);
            if let Ok(est) = b.predict(&r.name, Some(&q.name), 1, wall).await {
                for (quantile, v) in [("0.1", est.p10_s), ("0.5", est.p50_s), ("0.9", est.p90_s)] {
                    wait_lines.push(format!("{l},nodes=\"1\",quantile=\"{quantile}\"}} {v}"));
                }
            }
        }
    }
    let [free, total, running, queued] = queue_lines;
    family(
        "bundles_queue_nodes_free",
        "gauge",
        "Free nodes of the queue.",
        free,
    );
    family(
        "bundles_queue_nodes_total",
        "gauge",
        "Nodes of the queue.",
        total,
    );
    family(
        "bundles_queue_jobs_running",
        "gauge",
        "Running jobs.",
        running,
    );
    family("bundles_queue_jobs_queued", "gauge", "Queued jobs.", queued);
    family(
        "bundles_queue_wait_estimate_seconds",
        "gauge",
        "Predicted wait of a 1-node job of min(queue limit, 1 h).",
        wait_lines,
    );
    family(
        "bundles_wait_observations_total",
        "counter",
        "Submit-to-start waits of own pilots recorded.",
        vec![format!("{{site=\"{site}\"}} {}", counters.observations)],
    );
    family(
        "bundles_pilot_queue_ready",
        "gauge",
        "Ready messages in a pilot's broker queue.",
        snap.pilot_queues
            .iter()
            .map(|q| format!("{{site=\"{site}\",queue=\"{}\"}} {}", q.queue, q.ready))
            .collect(),
    );
    out
}
