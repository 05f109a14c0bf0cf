//! The deployable files in `deploy/` stay valid: the compose file and the RabbitMQ
//! definitions parse and say what docs/operations.md promises, Redis persists, the units and
//! batch templates start the binaries with flags that exist.

use std::path::PathBuf;

fn deploy(path: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn compose_file_runs_rabbitmq_with_management_redis_with_aof_and_the_bundle_service() {
    let c: serde_yaml::Value = serde_yaml::from_str(&deploy("compose.yaml")).expect("valid YAML");
    let services = c["services"].as_mapping().expect("services");
    let image = |s: &str| {
        c["services"][s]["image"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        image("rabbitmq").contains("management"),
        "{}",
        image("rabbitmq")
    );
    assert!(image("redis").starts_with("redis"));
    let redis_cmd: Vec<&str> = c["services"]["redis"]["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(redis_cmd.iter().any(|a| a.ends_with("emanager.conf")));
    let bundles: Vec<&str> = c["services"]["bundles"]["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    for flag in ["bundle-service", "--catalog", "--listen", "--redis-url"] {
        assert!(bundles.contains(&flag), "bundle command lacks {flag}");
    }
    // Every bind-mounted file exists.
    for (name, svc) in services {
        for v in svc["volumes"].as_sequence().into_iter().flatten() {
            let src = v.as_str().unwrap().split(':').next().unwrap();
            if src.starts_with('.') {
                let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("../deploy")
                    .join(src);
                assert!(p.exists(), "{name:?} mounts missing {}", p.display());
            }
        }
    }
}

#[test]
fn rabbitmq_definitions_give_a_vhost_a_least_privilege_user_and_a_quorum_policy() {
    let d: serde_json::Value =
        serde_json::from_str(&deploy("rabbitmq/definitions.json")).expect("valid JSON");
    assert_eq!(d["vhosts"][0]["name"], "emanager");
    let user = &d["users"][0];
    assert_eq!(user["name"], "emanager");
    assert_eq!(
        user["tags"].as_array().map(Vec::len),
        Some(0),
        "no admin tags"
    );
    let perm = &d["permissions"][0];
    assert_eq!(perm["vhost"], "emanager");
    for what in ["configure", "write", "read"] {
        let re = perm[what].as_str().unwrap();
        assert_ne!(re, ".*", "{what} is not restricted");
        assert!(re.starts_with('^') && re.contains("em\\."), "{what}: {re}");
    }
    let policy = d["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pattern"] == "^em\\.")
        .expect("a policy for ^em\\.");
    assert_eq!(policy["apply-to"], "queues");
    assert!(policy["definition"]["delivery-limit"].as_u64().unwrap() >= 1);
    assert_eq!(
        policy["definition"]["dead-letter-exchange"], "emanager.dlx",
        "the DLX shared/src/broker/amqp.rs declares"
    );
}

#[test]
fn redis_configuration_persists_with_aof_every_second() {
    let conf = deploy("redis/emanager.conf");
    let lines: Vec<&str> = conf
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    assert!(lines.contains(&"appendonly yes"));
    assert!(lines.contains(&"appendfsync everysec"));
    assert!(lines.contains(&"maxmemory-policy noeviction"));
}

#[test]
fn units_and_batch_templates_use_flags_the_agent_has() {
    let help = std::process::Command::new(integration_tests::workspace_bin("pilot-agent"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout).to_string();
    for file in [
        "systemd/pilot-agent@.service",
        "systemd/pilot-agent-pool@.service",
        "templates/agent.sbatch",
        "templates/agent.qsub",
        "templates/agent.sge",
    ] {
        let text = deploy(file);
        let flags: Vec<&str> = text
            .split_whitespace()
            .filter(|w| w.starts_with("--") && w.len() > 2)
            .map(|w| w.split('=').next().unwrap())
            .filter(|w| !w.starts_with("--export") && !w.starts_with("--signal"))
            .filter(|w| !matches!(*w, "--nodes" | "--time" | "--output" | "--job-name"))
            .collect();
        assert!(!flags.is_empty(), "{file}");
        for f in flags {
            let f = f.trim_end_matches(['"', '\'']);
            assert!(help.contains(f), "{file}: pilot-agent has no flag {f}");
        }
    }
    let unit = deploy("systemd/pilot-agent@.service");
    assert!(unit.contains("--campaign %i") && unit.contains("KillSignal=SIGTERM"));
    let pool_unit = deploy("systemd/pilot-agent-pool@.service");
    assert!(pool_unit.contains("--pool %i") && pool_unit.contains("KillSignal=SIGTERM"));
    let bundle = deploy("systemd/bundle-service.service");
    for flag in ["--catalog", "--listen", "--redis-url"] {
        assert!(bundle.contains(flag), "bundle-service.service lacks {flag}");
    }
}

/// `${NAME...}` references in a compose file.
fn compose_variables(text: &str) -> Vec<String> {
    let mut names: Vec<String> = text
        .split("${")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn compose_requires_passwords_that_the_env_example_defines_and_serves_remote_agents() {
    let text = deploy("compose.yaml");
    let env = deploy("systemd/emanager.env.example");
    let defined: Vec<&str> = env
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
        .collect();
    let used = compose_variables(&text);
    assert!(
        used.contains(&"EMANAGER_REDIS_PASSWORD".to_string())
            && used.contains(&"EMANAGER_AMQP_PASSWORD".to_string()),
        "{used:?}"
    );
    for v in &used {
        assert!(
            defined.contains(&v.as_str()),
            "compose.yaml uses ${{{v}}}, which emanager.env.example does not define"
        );
    }
    let c: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let strings = |v: &serde_yaml::Value| -> Vec<String> {
        v.as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(String::from))
            .collect()
    };
    let redis_cmd = strings(&c["services"]["redis"]["command"]);
    let pass = redis_cmd.iter().position(|a| a == "--requirepass");
    assert!(
        pass.is_some_and(|i| redis_cmd[i + 1].contains("${EMANAGER_REDIS_PASSWORD:?")),
        "Redis requires the password from .env: {redis_cmd:?}"
    );
    // Agents on compute nodes reach the broker and Redis: not published on loopback only.
    for (svc, port) in [("rabbitmq", "5672:5672"), ("redis", "6379:6379")] {
        let ports = strings(&c["services"][svc]["ports"]);
        assert!(
            ports.iter().any(|p| p == port),
            "{svc} is not reachable from other hosts: {ports:?}"
        );
    }
    let bundles = strings(&c["services"]["bundles"]["command"]);
    let arg = |flag: &str| {
        let i = bundles.iter().position(|a| a == flag).unwrap_or_else(|| {
            panic!("the bundle service lacks {flag}: {bundles:?}");
        });
        bundles[i + 1].clone()
    };
    assert!(arg("--redis-url").contains("${EMANAGER_REDIS_PASSWORD"));
    assert!(arg("--amqp-mgmt-url").contains("@rabbitmq:15672"));
}

#[test]
fn agent_units_export_metrics_on_a_port_prometheus_can_scrape() {
    for unit in [
        "systemd/pilot-agent@.service",
        "systemd/pilot-agent-pool@.service",
    ] {
        let text = deploy(unit);
        assert!(
            !text.contains("127.0.0.1:0"),
            "{unit}: a random loopback port cannot be scraped"
        );
        assert!(text.contains("EnvironmentFile=/etc/emanager/emanager.env"));
    }
    let env = deploy("systemd/emanager.env.example");
    let addr = env
        .lines()
        .find_map(|l| l.strip_prefix("EMANAGER_AGENT_METRICS_ADDR="))
        .expect("the env file sets EMANAGER_AGENT_METRICS_ADDR");
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    assert!(port > 0 && !addr.starts_with("127."), "{addr}");
}
