//! The OpenAPI description of the HTTP API, served at `/openapi.json` and checked in at
//! `docs/bundles.openapi.json`.

use serde_json::json;

/// The OpenAPI 3.0 description of [`crate::api::router`]; `docs/bundles.openapi.json` is this,
/// pretty-printed (`bundle-service --print-openapi`).
pub fn openapi() -> serde_json::Value {
    let schema_ref = |name: &str| json!({ "$ref": format!("#/components/schemas/{name}") });
    let ok = |desc: &str, schema: serde_json::Value| json!({ "description": desc, "content": { "application/json": { "schema": schema } } });
    let err = |desc: &str| ok(desc, schema_ref("Error"));
    let int = || json!({ "type": "integer", "format": "int64", "minimum": 0 });
    let nullable_int = || json!({ "type": "integer", "format": "int64", "nullable": true });
    let string = || json!({ "type": "string" });
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "EManager bundle service",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Resources, queues and pilot load of one site, and queue-wait predictions. See docs/bundles.md."
        },
        "paths": {
            "/v1/resources": { "get": {
                "summary": "The site's snapshot: every resource with its queues, pilot queues, pilot load.",
                "responses": { "200": ok("The last snapshot", schema_ref("Snapshot")) }
            }},
            "/v1/resources/{name}": { "get": {
                "summary": "One resource of the snapshot.",
                "parameters": [{ "name": "name", "in": "path", "required": true, "schema": string() }],
                "responses": {
                    "200": ok("The resource", schema_ref("ResourceSnapshot")),
                    "404": err("Unknown resource")
                }
            }},
            "/v1/predict": { "get": {
                "summary": "Predicted queue wait of a job of `nodes` x `walltime`.",
                "parameters": [
                    { "name": "resource", "in": "query", "required": true, "schema": string() },
                    { "name": "queue", "in": "query", "required": false, "schema": string(),
                      "description": "Default: the resource's default queue." },
                    { "name": "nodes", "in": "query", "required": false,
                      "schema": { "type": "integer", "minimum": 1, "default": 1 } },
                    { "name": "walltime", "in": "query", "required": false, "schema": string(),
                      "description": "Seconds or [D-]HH:MM:SS; default 3600." }
                ],
                "responses": {
                    "200": ok("The estimate", schema_ref("Prediction")),
                    "400": err("Bad walltime, or over the queue's limits"),
                    "404": err("Unknown resource or queue")
                }
            }},
            "/healthz": { "get": {
                "summary": "Health: unavailable (503) with the reasons when every resource is stale or Redis is unreachable.",
                "responses": {
                    "200": ok("Healthy: `status` is `ok`, `reasons` empty", schema_ref("Health")),
                    "503": ok("Unavailable: `status` is `unavailable`, with the reasons", schema_ref("Health"))
                }
            }},
            "/metrics": { "get": {
                "summary": "Prometheus text exposition.",
                "responses": { "200": { "description": "Metrics",
                    "content": { "text/plain": { "schema": string() } } } }
            }},
            "/openapi.json": { "get": {
                "summary": "This description.",
                "responses": { "200": ok("OpenAPI 3.0", json!({ "type": "object" })) }
            }}
        },
        "components": { "schemas": {
            "Error": { "type": "object", "required": ["error"], "properties": { "error": string() } },
            "JobSize": { "type": "object", "properties": {
                "nodes": int(), "cores": int(), "walltime_s": int(), "elapsed_s": int() } },
            "QueueSnapshot": { "type": "object", "properties": {
                "name": string(), "max_walltime_s": nullable_int(), "max_nodes": nullable_int(),
                "nodes_total": int(), "nodes_free": int(), "nodes_busy": int(), "nodes_down": int(),
                "jobs_running": int(), "jobs_queued": int(),
                "queued_jobs": { "type": "array", "nullable": true, "items": schema_ref("JobSize") },
                "running_jobs": { "type": "array", "nullable": true, "items": schema_ref("JobSize") },
                "reported": { "type": "boolean" } } },
            "ResourceSnapshot": { "type": "object", "properties": {
                "name": string(), "access": string(), "host": string(), "site": string(),
                "catalog_nodes": int(), "cores_per_node": int(),
                "queues": { "type": "array", "items": schema_ref("QueueSnapshot") },
                "probed_ms": int(), "probe_latency_ms": int(), "stale": { "type": "boolean" },
                "error": { "type": "string", "nullable": true } } },
            "PilotQueueDepth": { "type": "object", "properties": {
                "queue": string(), "campaign": string(), "pilot": string(),
                "ready": int(), "unacked": int(), "consumers": int() } },
            "PilotLoadView": { "type": "object", "properties": {
                "campaign": string(), "pilot": string(), "resource": string(), "job_id": string(),
                "state": string(), "cores": int(), "busy_cores": int(), "tasks_running": int(),
                "alive": { "type": "boolean" }, "heartbeat_age_ms": nullable_int(),
                "registered_ms": int() } },
            "Snapshot": { "type": "object", "properties": {
                "site": string(), "taken_ms": int(),
                "resources": { "type": "array", "items": schema_ref("ResourceSnapshot") },
                "pilot_queues": { "type": "array", "items": schema_ref("PilotQueueDepth") },
                "pilots": { "type": "array", "items": schema_ref("PilotLoadView") },
                "errors": { "type": "array", "items": string() },
                "interval_ms": int(),
                "stopped_updating_s": { "type": "integer", "format": "int64", "nullable": true,
                    "description": "Set by readers of the Redis snapshot when its service stopped updating it: seconds since the last update; its resources are then stale." } } },
            "Health": { "type": "object", "required": ["status", "reasons"], "properties": {
                "status": { "type": "string", "enum": ["ok", "unavailable"] },
                "reasons": { "type": "array", "items": string() },
                "site": string(), "last_probe_ms": int(), "resources": int(),
                "stale": { "type": "array", "items": string() } } },
            "Evidence": { "type": "object", "required": ["kind"],
                "description": "What the estimate used; more fields per kind.",
                "properties": { "kind": { "type": "string", "enum": [
                    "observed", "backlog", "backfill", "fits_free_nodes", "prior",
                    "stale_probe", "queue_not_probed", "no_data"] } } },
            "QueueWaitEstimate": { "type": "object", "properties": {
                "p10_s": int(), "p50_s": int(), "p90_s": int(),
                "evidence": { "type": "array", "items": schema_ref("Evidence") } } },
            "Prediction": { "type": "object", "properties": {
                "resource": string(), "queue": { "type": "string", "nullable": true },
                "nodes": int(), "walltime_s": int(), "estimate": schema_ref("QueueWaitEstimate") } }
        }}
    })
}
