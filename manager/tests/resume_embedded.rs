//! Resume in embedded mode: a manager stopped between a task's end (FAILED for good, or
//! CANCELED) and cancelling its dependents left them WAITING; the next manager cancels them,
//! each with the reason the live run would have given.

use emanager::campaign::{self, CampaignOptions, PilotRequest};
use emanager::driver::{self, RunContext};
use emanager::pilots::Launcher;
use emanager::progress::{Progress, ProgressMode};
use emanager::services::Services;
use emanager::workflow::{self, Format};
use emanager_shared::{CampaignId, TaskId, TaskState, Transition};
use std::time::Duration;

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
    let opts = CampaignOptions {
        pilots: vec![PilotRequest::local(1)],
        lookahead_s: 2.0,
        heartbeat_ms: 200,
        workdir: workdir.path().to_path_buf(),
        max_pilot_replacements: 0,
        pilot_start_timeout_s: 30,
        catalog_toml: None,
        catalog_dir: None,
    };
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

    let ctx = RunContext {
        campaign: c,
        store: store.clone(),
        broker: services.broker.clone(),
        launcher: Launcher::InProcess {
            broker: services.broker.clone(),
            store: store.clone(),
        },
        workflow: wf,
        opts,
        progress: Progress::new(ProgressMode::Quiet, 6),
        interrupt: None,
    };
    let out = tokio::time::timeout(Duration::from_secs(60), driver::drive(ctx))
        .await
        .expect("the resumed campaign ends (no dependent is left WAITING)")
        .unwrap();
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
