//! The `pilot-agent` binary's command line.

use assert_cmd::Command;
use predicates::prelude::*;

#[test]
fn help_shows_an_example() {
    Command::cargo_bin("pilot-agent")
        .unwrap()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("Example"));
}

#[test]
fn an_unreachable_broker_is_reported_with_its_url() {
    Command::cargo_bin("pilot-agent")
        .unwrap()
        .args([
            "--campaign",
            "00000000-0000-0000-0000-000000000001",
            "--amqp-url",
            "amqp://guest:guest@127.0.0.1:1/%2f",
        ])
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .code(3)
        .stderr(predicate::str::contains(
            "cannot reach the message broker at amqp://guest:***@127.0.0.1:1/%2f",
        ));
}
