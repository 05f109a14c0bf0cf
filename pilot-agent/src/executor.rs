//! Runs one task: argv without a shell, a sandbox directory, stdout/stderr to files, the
//! task's environment, and its walltime enforced on the whole process group.

use crate::launch::Launch;
use crate::scheduler::Slots;
use emanager_shared::TaskSpec;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// Output files are cut to this size after the task ends.
pub const OUTPUT_CAP_BYTES: u64 = 64 * 1024 * 1024;

/// How a task run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum RunOutcome {
    /// Exited 0.
    Success,
    /// Exited non-zero or was killed by a signal.
    Failed {
        exit_code: Option<i64>,
        reason: String,
    },
    /// Could not be started at all.
    SpawnFailed { reason: String },
    /// Ran past its walltime and was killed with its process group.
    WalltimeExceeded { walltime_s: f64 },
    /// Killed on request (cancel, shutdown).
    Killed,
}

/// The sandbox directory of one attempt of one task.
pub fn sandbox_dir(workdir: &Path, spec: &TaskSpec, attempt: u32) -> PathBuf {
    let safe: String = spec
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    workdir.join(format!("{safe}.{attempt}"))
}

/// The environment EManager adds to every task.
pub fn task_env(
    spec: &TaskSpec,
    attempt: u32,
    slots: &Slots,
    sandbox: &Path,
) -> Vec<(String, String)> {
    let cores: Vec<String> = slots
        .nodes
        .iter()
        .flat_map(|n| n.cores.iter().map(|c| c.to_string()))
        .collect();
    let gpus: Vec<String> = slots
        .nodes
        .iter()
        .flat_map(|n| n.gpus.iter().map(|g| g.to_string()))
        .collect();
    let threads = (spec.cores / spec.processes.max(1)).max(1);
    let mut env = vec![
        ("EMANAGER_TASK_ID".to_string(), spec.id.to_string()),
        ("EMANAGER_TASK_NAME".to_string(), spec.name.clone()),
        ("EMANAGER_ATTEMPT".to_string(), attempt.to_string()),
        (
            "EMANAGER_SANDBOX".to_string(),
            sandbox.display().to_string(),
        ),
        ("EMANAGER_CORES".to_string(), cores.join(",")),
        ("OMP_NUM_THREADS".to_string(), threads.to_string()),
    ];
    if spec.gpus > 0 {
        env.push(("CUDA_VISIBLE_DEVICES".to_string(), gpus.join(",")));
    }
    env
}

/// The argv actually started: the task's own, or `sh -c` when it asked for a shell.
pub fn launch_argv(spec: &TaskSpec) -> Vec<String> {
    if spec.shell {
        vec!["/bin/sh".into(), "-c".into(), spec.command.join(" ")]
    } else {
        spec.command.clone()
    }
}

/// A started task.
pub struct Running {
    child: tokio::process::Child,
    pgid: Option<Pid>,
    walltime: Option<Duration>,
    sandbox: PathBuf,
}

/// Starts the task on its slots (forked, or through the pilot's launcher: see
/// [`Launch::wrap`]); the returned handle is awaited with [`Running::wait`].
pub fn start(
    spec: &TaskSpec,
    attempt: u32,
    slots: &Slots,
    workdir: &Path,
    launch: &Launch,
) -> Result<Running, RunOutcome> {
    let sandbox = sandbox_dir(workdir, spec, attempt);
    let fail = |what: &str, e: std::io::Error| RunOutcome::SpawnFailed {
        reason: format!("{what}: {e}"),
    };
    std::fs::create_dir_all(&sandbox)
        .map_err(|e| fail(&format!("cannot create sandbox {}", sandbox.display()), e))?;
    let stdout = std::fs::File::create(sandbox.join("stdout"))
        .map_err(|e| fail("cannot create stdout file", e))?;
    let stderr = std::fs::File::create(sandbox.join("stderr"))
        .map_err(|e| fail("cannot create stderr file", e))?;
    let (_, argv) = launch
        .wrap(spec, slots, launch_argv(spec))
        .map_err(|reason| RunOutcome::SpawnFailed { reason })?;
    let Some((program, args)) = argv.split_first() else {
        return Err(RunOutcome::SpawnFailed {
            reason: "empty command".into(),
        });
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .current_dir(spec.cwd.as_deref().map(Path::new).unwrap_or(&sandbox))
        .envs(&spec.env)
        .envs(task_env(spec, attempt, slots, &sandbox))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0)
        .kill_on_drop(false);
    let child = cmd.spawn().map_err(|e| RunOutcome::SpawnFailed {
        reason: format!("cannot start `{program}`: {e}"),
    })?;
    let pgid = child.id().map(|id| Pid::from_raw(id as i32));
    Ok(Running {
        child,
        pgid,
        walltime: spec
            .walltime_s
            .filter(|w| *w > 0.0)
            .map(Duration::from_secs_f64),
        sandbox,
    })
}

impl Running {
    pub fn pid(&self) -> Option<u32> {
        self.pgid.map(|p| p.as_raw() as u32)
    }

    /// Waits for the task, killing its process group at its walltime or when `kill` fires.
    pub async fn wait(mut self, kill: tokio::sync::oneshot::Receiver<()>) -> RunOutcome {
        let walltime = self.walltime;
        let sleep = async {
            match walltime {
                Some(w) => tokio::time::sleep(w).await,
                None => std::future::pending().await,
            }
        };
        let outcome = tokio::select! {
            status = self.child.wait() => match status {
                Ok(s) => exit_outcome(s),
                Err(e) => RunOutcome::Failed { exit_code: None, reason: format!("cannot wait for the task: {e}") },
            },
            _ = sleep => {
                self.terminate_group().await;
                RunOutcome::WalltimeExceeded { walltime_s: walltime.map(|w| w.as_secs_f64()).unwrap_or(0.0) }
            }
            Ok(()) = kill => {
                self.terminate_group().await;
                RunOutcome::Killed
            }
        };
        cap_output(&self.sandbox);
        outcome
    }

    /// SIGTERM to the whole group, a grace period, then SIGKILL.
    async fn terminate_group(&mut self) {
        if let Some(pg) = self.pgid {
            let _ = killpg(pg, Signal::SIGTERM);
            let grace = tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await;
            // Even when the leader exited, members of the group may live on.
            let _ = killpg(pg, Signal::SIGKILL);
            if grace.is_err() {
                let _ = self.child.wait().await;
            }
        }
    }
}

fn exit_outcome(s: std::process::ExitStatus) -> RunOutcome {
    use std::os::unix::process::ExitStatusExt;
    if s.success() {
        return RunOutcome::Success;
    }
    match (s.code(), s.signal()) {
        (Some(code), _) => RunOutcome::Failed {
            exit_code: Some(code as i64),
            reason: format!("exited with code {code}"),
        },
        (None, Some(sig)) => RunOutcome::Failed {
            exit_code: Some(128 + sig as i64),
            reason: format!(
                "killed by signal {}",
                Signal::try_from(sig).map(|s| s.as_str()).unwrap_or("?")
            ),
        },
        _ => RunOutcome::Failed {
            exit_code: None,
            reason: "ended without an exit status".into(),
        },
    }
}

fn cap_output(sandbox: &Path) {
    for f in ["stdout", "stderr"] {
        let p = sandbox.join(f);
        if let Ok(m) = std::fs::metadata(&p) {
            if m.len() > OUTPUT_CAP_BYTES {
                if let Ok(file) = std::fs::OpenOptions::new().write(true).open(&p) {
                    let _ = file.set_len(OUTPUT_CAP_BYTES);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::NodeSlots;
    use emanager_shared::TaskId;

    fn slots() -> Slots {
        Slots {
            nodes: vec![NodeSlots {
                node: 0,
                cores: vec![0],
                gpus: vec![],
                mem_mb: 0,
            }],
        }
    }

    fn spec(argv: &[&str]) -> TaskSpec {
        TaskSpec::new(
            TaskId::random(),
            "t/1",
            argv.iter().map(|s| s.to_string()).collect(),
        )
    }

    async fn run(spec: &TaskSpec, dir: &Path) -> RunOutcome {
        let (_tx, rx) = tokio::sync::oneshot::channel();
        match start(
            spec,
            1,
            &slots(),
            dir,
            &Launch::fork_only(vec!["n0".into()]),
        ) {
            Ok(r) => r.wait(rx).await,
            Err(o) => o,
        }
    }

    #[tokio::test]
    async fn output_goes_to_files_in_the_sandbox() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec(&[
            "/bin/sh",
            "-c",
            "echo out; echo err >&2; echo $EMANAGER_TASK_NAME",
        ]);
        assert_eq!(run(&s, dir.path()).await, RunOutcome::Success);
        let sb = sandbox_dir(dir.path(), &s, 1);
        assert!(sb.ends_with("t_1.1"));
        assert_eq!(
            std::fs::read_to_string(sb.join("stdout")).unwrap(),
            "out\nt/1\n"
        );
        assert_eq!(std::fs::read_to_string(sb.join("stderr")).unwrap(), "err\n");
    }

    #[tokio::test]
    async fn exit_codes_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let out = run(&spec(&["/bin/sh", "-c", "exit 3"]), dir.path()).await;
        assert_eq!(
            out,
            RunOutcome::Failed {
                exit_code: Some(3),
                reason: "exited with code 3".into()
            }
        );
    }

    #[tokio::test]
    async fn no_shell_means_no_expansion() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec(&["/bin/echo", "$HOME", "*"]);
        run(&s, dir.path()).await;
        let out = std::fs::read_to_string(sandbox_dir(dir.path(), &s, 1).join("stdout")).unwrap();
        assert_eq!(out, "$HOME *\n");
    }

    #[tokio::test]
    async fn a_missing_program_fails_to_spawn_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        match run(&spec(&["/no/such/program"]), dir.path()).await {
            RunOutcome::SpawnFailed { reason } => {
                assert!(reason.contains("/no/such/program"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn walltime_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("child-pid");
        let mut s = spec(&[
            "/bin/sh",
            "-c",
            &format!("sleep 30 & echo $! > {}; wait", marker.display()),
        ]);
        s.walltime_s = Some(0.5);
        let started = std::time::Instant::now();
        let out = run(&s, dir.path()).await;
        assert_eq!(out, RunOutcome::WalltimeExceeded { walltime_s: 0.5 });
        assert!(started.elapsed() < Duration::from_secs(5));
        let child: i32 = std::fs::read_to_string(&marker)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        // The grandchild `sleep 30` must be gone too (kill(pid, 0) fails, or it is a zombie).
        let alive = nix::sys::signal::kill(Pid::from_raw(child), None).is_ok()
            && !std::fs::read_to_string(format!("/proc/{child}/stat"))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true);
        assert!(!alive, "grandchild {child} survived the walltime kill");
    }
}
