//! The RabbitMQ and Redis the test suite talks to, resolved once per test process.
//!
//! - With a Docker engine (`DOCKER_HOST`, or a Docker socket that accepts a connection),
//!   `testcontainers` starts a RabbitMQ (with its management plugin) and a Redis for this
//!   test process. Their host ports are chosen free and then fixed, so a broker restart keeps
//!   the address that agents already hold. The containers are removed when the process exits.
//! - Without one, the services at `EMANAGER_AMQP_URL`, `EMANAGER_REDIS_URL` and
//!   `EMANAGER_AMQP_MGMT_URL` (defaults: this machine's, as `deploy/dev/services-up.sh`
//!   starts them).
//!
//! `EMANAGER_TEST_SERVICES=host` uses the URLs even when Docker is there;
//! `EMANAGER_TEST_SERVICES=containers` requires Docker. A test never skips: when the services
//! it needs are missing, it fails saying how to start them.

use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use testcontainers::core::{ExecCommand, IntoContainerPort, WaitFor};
use testcontainers::runners::SyncRunner;
use testcontainers::{Container, GenericImage, ImageExt};

use emanager_shared::{DEFAULT_AMQP_URL, DEFAULT_REDIS_URL};

pub const DEFAULT_MGMT_URL: &str = "http://guest:guest@127.0.0.1:15672";
const RABBITMQ_IMAGE: (&str, &str) = ("rabbitmq", "3.13-management");
const REDIS_IMAGE: (&str, &str) = ("redis", "7.2");

/// Where the services are.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub amqp_url: String,
    /// Redis with a trailing `/`, so a database number can be appended.
    pub redis_url: String,
    /// The RabbitMQ management API, with credentials.
    pub mgmt_url: String,
    /// True when the services are containers of this test process.
    pub containers: bool,
}

/// The output of a `rabbitmqctl` run, wherever the broker is.
#[derive(Debug, Clone)]
pub struct CtlOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

struct Containers {
    rabbitmq: Container<GenericImage>,
    _redis: Container<GenericImage>,
}

static ENDPOINTS: OnceLock<Endpoints> = OnceLock::new();
/// Taken (and so removed) at process exit.
static CONTAINERS: Mutex<Option<Containers>> = Mutex::new(None);

/// The endpoints of this test process, starting the containers the first time when Docker is
/// there.
pub fn endpoints() -> &'static Endpoints {
    ENDPOINTS.get_or_init(|| match mode() {
        Mode::Host => host_endpoints(),
        Mode::Containers => start_containers(),
    })
}

pub fn amqp_url() -> String {
    endpoints().amqp_url.clone()
}

pub fn redis_url() -> String {
    endpoints().redis_url.clone()
}

/// The Redis URL of database `db` (tests that need a Redis of their own use a spare one).
pub fn redis_db_url(db: u32) -> String {
    format!("{}{db}", endpoints().redis_url)
}

pub fn mgmt_url() -> String {
    endpoints().mgmt_url.clone()
}

/// The management API's address without credentials (`http://host:port`).
pub fn mgmt_base() -> String {
    let url = mgmt_url();
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
            format!("{scheme}://{host}")
        }
        None => url,
    }
}

/// How to get the services, said in a failure message.
pub fn how_to_start() -> &'static str {
    if endpoints().containers {
        "the suite's containers stopped answering: check `docker ps` and the Docker engine"
    } else {
        "run `deploy/dev/services-up.sh` (or `rabbitmq-server -detached` and `redis-server --daemonize yes`), or point EMANAGER_AMQP_URL / EMANAGER_REDIS_URL at running services"
    }
}

/// Runs `rabbitmqctl ARGS` against the suite's broker (on this machine, or inside its
/// container).
pub fn rabbitmqctl(args: &[&str]) -> CtlOutput {
    if endpoints().containers {
        let guard = CONTAINERS.lock().unwrap_or_else(|e| e.into_inner());
        let c = guard
            .as_ref()
            .expect("the containers run while the tests do");
        let mut argv = vec!["rabbitmqctl"];
        argv.extend_from_slice(args);
        match c.rabbitmq.exec(ExecCommand::new(argv)) {
            Ok(mut r) => CtlOutput {
                stdout: String::from_utf8_lossy(&r.stdout_to_vec().unwrap_or_default()).into(),
                stderr: String::from_utf8_lossy(&r.stderr_to_vec().unwrap_or_default()).into(),
                success: r.exit_code().ok().flatten() == Some(0),
            },
            Err(e) => CtlOutput {
                success: false,
                stdout: String::new(),
                stderr: format!("docker exec rabbitmqctl: {e}"),
            },
        }
    } else {
        match std::process::Command::new("rabbitmqctl")
            .args(args)
            .output()
        {
            Ok(o) => CtlOutput {
                success: o.status.success(),
                stdout: String::from_utf8_lossy(&o.stdout).into(),
                stderr: String::from_utf8_lossy(&o.stderr).into(),
            },
            Err(e) => CtlOutput {
                success: false,
                stdout: String::new(),
                stderr: format!(
                    "cannot run rabbitmqctl ({e}): install RabbitMQ with deploy/dev/services-up.sh"
                ),
            },
        }
    }
}

/// Stops the RabbitMQ node and starts it again, as an operator restarting the broker would:
/// an outage of ten to twenty seconds. The broker keeps its address.
pub fn restart_rabbitmq() {
    if endpoints().containers {
        {
            let guard = CONTAINERS.lock().unwrap_or_else(|e| e.into_inner());
            let c = guard
                .as_ref()
                .expect("the containers run while the tests do");
            c.rabbitmq.stop().expect("stop the RabbitMQ container");
            c.rabbitmq
                .start()
                .expect("start the RabbitMQ container again");
        }
        await_rabbitmq();
        return;
    }
    let quiet = |cmd: &str, args: &[&str]| {
        std::process::Command::new(cmd)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    assert!(quiet("rabbitmqctl", &["stop"]), "rabbitmqctl stop failed");
    assert!(
        quiet("rabbitmq-server", &["-detached"]),
        "cannot start rabbitmq-server again: run `deploy/dev/services-up.sh`"
    );
    await_rabbitmq();
}

fn await_rabbitmq() {
    let end = Instant::now() + Duration::from_secs(60);
    while Instant::now() < end {
        if rabbitmqctl(&["await_startup", "--timeout", "5"]).success {
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!(
        "RabbitMQ did not come back within a minute: {}",
        how_to_start()
    );
}

#[derive(Debug, PartialEq)]
enum Mode {
    Host,
    Containers,
}

fn mode() -> Mode {
    match std::env::var("EMANAGER_TEST_SERVICES").as_deref() {
        Ok("host") => Mode::Host,
        Ok("containers") => {
            assert!(
                docker_engine_reachable(),
                "EMANAGER_TEST_SERVICES=containers but no Docker engine answers (DOCKER_HOST unset, no socket at /var/run/docker.sock): start Docker, or unset it to use this machine's services"
            );
            Mode::Containers
        }
        Ok("") | Err(_) => {
            if docker_engine_reachable() {
                Mode::Containers
            } else {
                Mode::Host
            }
        }
        Ok(other) => panic!(
            "EMANAGER_TEST_SERVICES={other:?} is not understood: use `host` (the services at EMANAGER_AMQP_URL / EMANAGER_REDIS_URL) or `containers` (testcontainers, needs Docker)"
        ),
    }
}

fn docker_engine_reachable() -> bool {
    if std::env::var("DOCKER_HOST").is_ok_and(|h| !h.is_empty()) {
        return true;
    }
    let home_socket = std::env::var("HOME")
        .map(|h| format!("{h}/.docker/run/docker.sock"))
        .unwrap_or_default();
    ["/var/run/docker.sock", home_socket.as_str()]
        .iter()
        .filter(|p| !p.is_empty() && Path::new(p).exists())
        .any(|p| std::os::unix::net::UnixStream::connect(p).is_ok())
}

fn host_endpoints() -> Endpoints {
    let var = |name: &str, default: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| default.to_string())
    };
    let mut redis_url = var("EMANAGER_REDIS_URL", DEFAULT_REDIS_URL);
    if !redis_url.ends_with('/') {
        redis_url.push('/');
    }
    Endpoints {
        amqp_url: var("EMANAGER_AMQP_URL", DEFAULT_AMQP_URL),
        redis_url,
        mgmt_url: var("EMANAGER_AMQP_MGMT_URL", DEFAULT_MGMT_URL),
        containers: false,
    }
}

/// A local port that was free a moment ago (for a container, or a test's own server).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a free local port")
}

fn start_containers() -> Endpoints {
    let fail = |what: &str, e: testcontainers::TestcontainersError| -> ! {
        panic!(
            "a Docker engine answers, but the {what} container did not start: {e}.\nFix Docker (can it pull {}:{} and {}:{}?), or set EMANAGER_TEST_SERVICES=host to use the services at EMANAGER_AMQP_URL / EMANAGER_REDIS_URL (deploy/dev/services-up.sh starts them)",
            RABBITMQ_IMAGE.0, RABBITMQ_IMAGE.1, REDIS_IMAGE.0, REDIS_IMAGE.1
        )
    };
    let (amqp, mgmt, redis) = (free_port(), free_port(), free_port());
    let rabbitmq = GenericImage::new(RABBITMQ_IMAGE.0, RABBITMQ_IMAGE.1)
        .with_wait_for(WaitFor::message_on_stdout("Server startup complete"))
        .with_mapped_port(amqp, 5672.tcp())
        .with_mapped_port(mgmt, 15672.tcp())
        .with_startup_timeout(Duration::from_secs(180))
        .start()
        .unwrap_or_else(|e| fail("RabbitMQ", e));
    let redis_container = GenericImage::new(REDIS_IMAGE.0, REDIS_IMAGE.1)
        .with_wait_for(WaitFor::message_on_stdout("Ready to accept connections"))
        .with_mapped_port(redis, 6379.tcp())
        .with_cmd(["redis-server", "--save", "", "--appendonly", "no"])
        .start()
        .unwrap_or_else(|e| fail("Redis", e));
    *CONTAINERS.lock().unwrap_or_else(|e| e.into_inner()) = Some(Containers {
        rabbitmq,
        _redis: redis_container,
    });
    // Statics are never dropped and testcontainers has no reaper: an exit hook is the one
    // way to remove the containers when the test harness exits. The project denies unsafe
    // code; this test-only crate allows it here alone.
    // SAFETY: registers a plain `extern "C" fn()` that touches only a Mutex; it runs once,
    // at exit, after the tests.
    #[allow(unsafe_code)]
    unsafe {
        libc::atexit(remove_containers);
    }
    Endpoints {
        amqp_url: format!("amqp://guest:guest@127.0.0.1:{amqp}/%2f"),
        redis_url: format!("redis://127.0.0.1:{redis}/"),
        mgmt_url: format!("http://guest:guest@127.0.0.1:{mgmt}"),
        containers: true,
    }
}

/// Removes the containers when the test process exits (statics are never dropped).
extern "C" fn remove_containers() {
    if let Ok(mut guard) = CONTAINERS.lock() {
        drop(guard.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_management_base_drops_the_credentials() {
        let e = endpoints();
        assert!(!mgmt_base().contains('@'), "{}", mgmt_base());
        assert!(e
            .mgmt_url
            .ends_with(mgmt_base().split("://").nth(1).unwrap()));
    }

    #[test]
    fn redis_urls_take_a_database_number() {
        assert!(redis_url().ends_with('/'));
        assert!(redis_db_url(9).ends_with("/9"));
    }

    #[test]
    fn the_broker_answers_rabbitmqctl_where_it_runs() {
        let out = rabbitmqctl(&["status"]);
        assert!(
            out.success,
            "rabbitmqctl status failed: {}\n{}",
            out.stderr,
            how_to_start()
        );
    }
}
