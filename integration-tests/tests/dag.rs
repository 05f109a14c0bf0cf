//! DAG release order and failure propagation end to end on the real services.

use emanager_shared::{TaskId, TaskState};
use integration_tests::Campaign;
use std::time::Duration;

const WF: &str = r#"
name = "dag"
[[stages]]
name = "first"
[[stages]]
name = "second"

[[tasks]]
name = "a-{index}"
count = 4
command = ["/bin/sh", "-c", "sleep 0.2"]
stage = "first"

[[tasks]]
name = "b-{index}"
count = 3
command = ["/bin/true"]
stage = "second"

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
name = "join"
command = ["/bin/true"]
depends_on = ["b", "a-0"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dependents_start_after_their_parents_and_a_failed_parent_cancels_them() {
    let c = Campaign::new(WF, 1, 2).await;
    let out = c.run(Duration::from_secs(120)).await;
    assert_eq!(
        (out.counts.done, out.counts.failed, out.counts.canceled),
        (8, 1, 2),
        "{:?}",
        out.counts
    );
    let rec = |name: &str| {
        let id = TaskId::for_name(&c.id, name);
        let store = c.store.clone();
        let cid = c.id;
        async move { store.task_record(&cid, &id).await.unwrap().unwrap() }
    };
    // Stage barrier: every b starts after every a ended.
    let mut last_a = 0;
    for i in 0..4 {
        last_a = last_a.max(rec(&format!("a-{i}")).await.t1);
    }
    for i in 0..3 {
        let b = rec(&format!("b-{i}")).await;
        assert_eq!(b.state(), TaskState::Done);
        assert!(b.t0 >= last_a, "b-{i} started before stage `first` ended");
    }
    let join = rec("join").await;
    assert_eq!(join.state(), TaskState::Done);
    for (name, parent) in [("child", "bad"), ("grandchild", "child")] {
        let r = rec(name).await;
        assert_eq!(r.state(), TaskState::Canceled, "{name}");
        assert!(
            r.r.contains("parent `bad` failed"),
            "{name}: {} (via {parent})",
            r.r
        );
        assert_eq!(r.t0, 0, "{name} never ran");
    }
    c.cleanup().await;
}
