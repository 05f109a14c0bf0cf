//! Campaigns run end to end in embedded mode through the library (the in-process broker and
//! store, in-process pilots, real task processes), read back with `report_json` as
//! `emanager report --json` would print them.

use emanager::campaign::{self, CampaignOptions, PilotRequest};
use emanager::driver::{self, RunContext};
use emanager::pilots::Launcher;
use emanager::progress::{Progress, ProgressMode};
use emanager::services::Services;
use emanager::workflow::{self, Format};
use emanager_shared::{CampaignId, TaskId, TaskState, Transition};
use std::time::Duration;

/// The options of a campaign with one in-process pilot of `cores` cores.
fn options(workdir: &std::path::Path, cores: u32) -> CampaignOptions {
    CampaignOptions {
        pilots: vec![PilotRequest::local(cores)],
        lookahead_s: 2.0,
        heartbeat_ms: 200,
        workdir: workdir.to_path_buf(),
        max_pilot_replacements: 0,
        pilot_start_timeout_s: 30,
        ..CampaignOptions::default()
    }
}

/// Runs a recorded campaign to its end with an in-process pilot.
async fn drive(
    services: &Services,
    c: CampaignId,
    wf: workflow::Workflow,
    opts: CampaignOptions,
) -> driver::Outcome {
    let total = wf.tasks.len() as u64;
    let ctx = RunContext {
        campaign: c,
        store: services.store.clone(),
        broker: services.broker.clone(),
        launcher: Launcher::InProcess {
            broker: services.broker.clone(),
            store: services.store.clone(),
        },
        workflow: wf,
        opts,
        progress: Progress::new(ProgressMode::Quiet, total),
        interrupt: None,
    };
    tokio::time::timeout(Duration::from_secs(60), driver::drive(ctx))
        .await
        .expect("the campaign ends in time")
        .expect("the campaign runs")
}

const PRIORITIES: &str = r#"
name = "priorities"

# Longest estimate first would start `long` first; priority comes before the estimate.
[[tasks]]
name = "long"
command = ["/bin/sleep", "0.2"]
est_duration_s = 1.5

[[tasks]]
name = "mid"
command = ["/bin/sleep", "0.2"]
priority = 5

[[tasks]]
name = "high"
command = ["/bin/sleep", "0.2"]
priority = 10

[[tasks]]
name = "negative"
command = ["/bin/sleep", "0.2"]
priority = -1
est_duration_s = 1.5
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_tasks_start_in_priority_order_higher_first() {
    let services = Services::embedded();
    let wf = workflow::parse_str(PRIORITIES, Format::Toml, "priorities.toml").unwrap();
    let workdir = tempfile::tempdir().unwrap();
    let opts = options(workdir.path(), 1);
    let c = CampaignId::random();
    campaign::create(
        services.store.as_ref(),
        c,
        &wf,
        PRIORITIES,
        Format::Toml,
        &opts,
    )
    .await
    .unwrap();
    let out = drive(&services, c, wf, opts).await;
    assert_eq!(out.counts.done, 4, "{:?}", out.counts);
    let report = emanager::cli::report_json(services.store.as_ref(), &c)
        .await
        .unwrap();
    let mut started: Vec<(u64, String)> = report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["start_ms"].as_u64().unwrap(),
                t["task"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    started.sort();
    let order: Vec<&str> = started.iter().map(|(_, n)| n.as_str()).collect();
    // One core: each starts after the previous ended.
    assert_eq!(order, ["high", "mid", "long", "negative"], "{report}");
}

const WF: &str = r#"
name = "resume"

[[tasks]]
name = "bad"
command = ["/bin/false"]
retries = 0

[[tasks]]
name = "child"
command = ["/bin/true"]
depends_on = ["bad"]

[[tasks]]
name = "grandchild"
command = ["/bin/true"]
depends_on = ["child"]

[[tasks]]
name = "gone"
command = ["/bin/true"]

[[tasks]]
name = "orphan"
command = ["/bin/true"]
depends_on = ["gone"]

[[tasks]]
name = "fine"
command = ["/bin/true"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_cancels_the_waiting_dependents_of_failed_and_canceled_tasks() {
    let services = Services::embedded();
    let store = services.store.clone();
    let wf = workflow::parse_str(WF, Format::Toml, "resume.toml").unwrap();
    let workdir = tempfile::tempdir().unwrap();
    let opts = options(workdir.path(), 1);
    let c = CampaignId::random();
    campaign::create(store.as_ref(), c, &wf, WF, Format::Toml, &opts)
        .await
        .unwrap();
    // What a manager killed right after these transitions leaves behind: `bad` FAILED for
    // good, `gone` CANCELED by the user, their dependents still WAITING.
    let id = |name: &str| TaskId::for_name(&c, name);
    let applied = store
        .transition(
            &c,
            &[
                Transition::new(id("bad"), 0, TaskState::Failed)
                    .with_reason("exited with code 1")
                    .failure(),
                Transition::new(id("gone"), 0, TaskState::Canceled)
                    .with_reason("canceled by the user"),
            ],
        )
        .await
        .unwrap();
    assert!(
        applied
            .iter()
            .all(|o| *o == emanager_shared::TransitionOutcome::Applied),
        "{applied:?}"
    );
    for name in ["child", "grandchild", "orphan"] {
        let r = store.task_record(&c, &id(name)).await.unwrap().unwrap();
        assert_eq!(r.state(), TaskState::Waiting, "{name}");
    }

    let out = drive(&services, c, wf, opts).await;
    assert_eq!(
        (out.counts.done, out.counts.failed, out.counts.canceled),
        (1, 1, 4),
        "{:?}",
        out.counts
    );
    for (name, reason) in [
        ("child", "parent `bad` failed"),
        ("grandchild", "parent `bad` failed"),
        ("orphan", "parent `gone` was canceled"),
    ] {
        let r = store.task_record(&c, &id(name)).await.unwrap().unwrap();
        assert_eq!(
            (r.state(), r.r.as_str()),
            (TaskState::Canceled, reason),
            "{name}"
        );
    }
    let fine = store.task_record(&c, &id("fine")).await.unwrap().unwrap();
    assert_eq!(fine.state(), TaskState::Done);
}
