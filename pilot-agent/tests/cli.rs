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

#[test]
fn an_agent_serves_one_campaign_or_one_pool() {
    Command::cargo_bin("pilot-agent")
        .unwrap()
        .env_remove("EMANAGER_CAMPAIGN")
        .env_remove("EMANAGER_POOL")
        .args(["--cores", "1"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "give --campaign ID (the agent of one campaign) or --pool NAME",
        ));
    Command::cargo_bin("pilot-agent")
        .unwrap()
        .args(["--pool", "site-a", "--campaign"])
        .arg("00000000-0000-0000-0000-000000000001")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cannot be used with"));
    Command::cargo_bin("pilot-agent")
        .unwrap()
        .args(["--pool", "site:a"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("is not a pool name"));
}
