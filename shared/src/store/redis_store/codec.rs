//! How records are laid out in Redis hashes and streams, and read back.

use super::*;

pub(super) fn meta_fields(m: &CampaignMeta) -> Vec<(&'static str, String)> {
    vec![
        ("id", m.id.to_string()),
        ("name", m.name.clone()),
        ("state", m.state.as_str().to_string()),
        ("created_ms", m.created_ms.to_string()),
        ("finished_ms", m.finished_ms.to_string()),
        ("task_count", m.task_count.to_string()),
        ("spec_digest", m.spec_digest.clone()),
        ("workflow_format", m.workflow_format.clone()),
        ("workflow_source", m.workflow_source.clone()),
        ("options_json", m.options_json.clone()),
    ]
}

pub(super) fn field<'a>(h: &'a HashMap<String, String>, k: &str) -> &'a str {
    h.get(k).map(String::as_str).unwrap_or("")
}

pub(super) fn num<T: std::str::FromStr + Default>(h: &HashMap<String, String>, k: &str) -> T {
    field(h, k).parse().unwrap_or_default()
}

pub(super) fn meta_from(key: &str, h: &HashMap<String, String>) -> StoreResult<CampaignMeta> {
    let corrupt = |reason: String| StoreError::Corrupt {
        key: key.to_string(),
        reason,
    };
    Ok(CampaignMeta {
        id: field(h, "id")
            .parse()
            .map_err(|e| corrupt(format!("id: {e}")))?,
        name: field(h, "name").to_string(),
        state: field(h, "state").parse().map_err(corrupt)?,
        created_ms: num(h, "created_ms"),
        finished_ms: num(h, "finished_ms"),
        task_count: num(h, "task_count"),
        spec_digest: field(h, "spec_digest").to_string(),
        workflow_format: field(h, "workflow_format").to_string(),
        workflow_source: field(h, "workflow_source").to_string(),
        options_json: field(h, "options_json").to_string(),
    })
}

pub(super) fn pilot_fields(r: &PilotRecord) -> Vec<(&'static str, String)> {
    vec![
        ("id", r.id.to_string()),
        ("state", r.state.as_str().to_string()),
        ("resource", r.resource.clone()),
        ("job_id", r.job_id.clone()),
        ("host", r.host.clone()),
        ("nodes", r.nodes.to_string()),
        ("cores", r.cores.to_string()),
        ("gpus", r.gpus.to_string()),
        ("mem_mb", r.mem_mb.to_string()),
        ("walltime_end_ms", r.walltime_end_ms.to_string()),
        ("drain_margin_ms", r.drain_margin_ms.to_string()),
        ("agent_pid", r.agent_pid.to_string()),
        ("log_path", r.log_path.clone()),
        ("version", r.version.clone()),
        ("registered_ms", r.registered_ms.to_string()),
        ("reason", r.reason.clone()),
        ("pool", r.pool.clone()),
    ]
}

/// The fields `put_pilot` writes: all of them, but a `submitted_ms` of 0 is left out so the
/// recorded submission time survives the agent's registration.
pub(super) fn pilot_put_fields(r: &PilotRecord) -> Vec<(&'static str, String)> {
    let mut f = pilot_fields(r);
    if r.submitted_ms > 0 {
        f.push(("submitted_ms", r.submitted_ms.to_string()));
    }
    f
}

pub(super) fn pilot_from(
    key: &str,
    h: &HashMap<String, String>,
) -> StoreResult<(PilotRecord, PilotLoad, u64)> {
    let corrupt = |reason: String| StoreError::Corrupt {
        key: key.to_string(),
        reason,
    };
    let rec = PilotRecord {
        id: field(h, "id")
            .parse()
            .map_err(|e| corrupt(format!("id: {e}")))?,
        state: field(h, "state").parse().map_err(corrupt)?,
        resource: field(h, "resource").to_string(),
        job_id: field(h, "job_id").to_string(),
        host: field(h, "host").to_string(),
        nodes: num(h, "nodes"),
        cores: num(h, "cores"),
        gpus: num(h, "gpus"),
        mem_mb: num(h, "mem_mb"),
        walltime_end_ms: num(h, "walltime_end_ms"),
        drain_margin_ms: num(h, "drain_margin_ms"),
        agent_pid: num(h, "agent_pid"),
        log_path: field(h, "log_path").to_string(),
        version: field(h, "version").to_string(),
        registered_ms: num(h, "registered_ms"),
        submitted_ms: num(h, "submitted_ms"),
        reason: field(h, "reason").to_string(),
        pool: field(h, "pool").to_string(),
    };
    let load = PilotLoad {
        busy_cores: num(h, "busy_cores"),
        running: num(h, "running"),
        queued: num(h, "queued"),
    };
    Ok((rec, load, num(h, "beat_ms")))
}

pub(super) fn value_str(v: &Value) -> String {
    redis::from_redis_value::<String>(v).unwrap_or_default()
}

pub(super) fn parse_event(id: String, map: &HashMap<String, Value>) -> Option<Event> {
    let get = |k: &str| map.get(k).map(value_str).unwrap_or_default();
    let kind = match get("k").as_str() {
        "t" => EventKind::Task {
            task: get("t").parse().ok()?,
            state: TaskState::from_code(get("s").parse().ok()?)?,
            attempt: get("a").parse().unwrap_or(0),
            pilot: get("p").parse().ok(),
            exit_code: get("x").parse().ok(),
            reason: get("r"),
        },
        "p" => EventKind::Pilot {
            pilot: get("p").parse().ok()?,
            state: get("s").parse().ok()?,
            reason: get("r"),
        },
        _ => return None,
    };
    Some(Event { id, kind })
}

pub(super) fn pilot_wait_fields(w: &PilotWait) -> [(&'static str, String); 9] {
    [
        ("resource", w.resource.clone()),
        ("queue", w.queue.clone()),
        ("nodes", w.nodes.to_string()),
        ("walltime_s", w.walltime_s.to_string()),
        ("submitted_ms", w.submitted_ms.to_string()),
        ("started_ms", w.started_ms.to_string()),
        ("campaign", w.campaign.to_string()),
        ("pilot", w.pilot.to_string()),
        ("job_id", w.job_id.clone()),
    ]
}

pub(super) fn parse_pilot_wait(map: &HashMap<String, Value>) -> Option<PilotWait> {
    let get = |k: &str| map.get(k).map(value_str);
    Some(PilotWait {
        resource: get("resource").filter(|r| !r.is_empty())?,
        queue: get("queue").unwrap_or_default(),
        nodes: get("nodes")?.parse().ok()?,
        walltime_s: get("walltime_s")?.parse().ok()?,
        submitted_ms: get("submitted_ms")?.parse().ok()?,
        started_ms: get("started_ms")?.parse().ok()?,
        campaign: get("campaign")?.parse().ok()?,
        pilot: get("pilot")?.parse().ok()?,
        job_id: get("job_id").unwrap_or_default(),
    })
}

pub(super) fn parse_stream_reply(reply: Option<redis::streams::StreamReadReply>) -> Vec<Event> {
    let mut out = Vec::new();
    for key in reply.map(|r| r.keys).unwrap_or_default() {
        for entry in key.ids {
            match parse_event(entry.id.clone(), &entry.map) {
                Some(e) => out.push(e),
                None => tracing::warn!(id = %entry.id, "skipping malformed event entry"),
            }
        }
    }
    out
}
