//! Where batch commands run: on this host, or on a login node over SSH. Commands are argv;
//! over SSH each argument is single-quoted for the remote shell, so no user string is ever
//! interpreted by a shell. Both runners can add environment variables to every command
//! (the catalog's `batch_env`, e.g. `SLURM_CONF` to pick one of several clusters).

use super::AccessError;
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::os::unix::fs::DirBuilderExt;
use std::process::Stdio;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// What a finished command printed and how it exited.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CommandOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CommandOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// stderr, or stdout when stderr is empty, trimmed: what a batch command said.
    pub fn message(&self) -> String {
        let err = self.stderr.trim();
        if err.is_empty() {
            self.stdout.trim().to_string()
        } else {
            err.to_string()
        }
    }
}

/// Runs one command (argv, optional stdin) and returns its output. The seam between the
/// adapters and the host their batch commands live on.
#[async_trait]
pub trait CommandRunner: Send + Sync {
    async fn run(
        &self,
        argv: &[String],
        stdin: Option<&[u8]>,
    ) -> Result<CommandOutput, AccessError>;

    /// "localhost" or the SSH destination, for messages.
    fn host(&self) -> String;

    /// Writes `content` to `path` on the runner's host (creating its directory) through
    /// the same channel as the commands: `sh -c 'mkdir -p "$1" && cat > "$2"'` with stdin.
    async fn write_file(&self, path: &str, content: &[u8]) -> Result<(), AccessError> {
        let dir = match path.rfind('/') {
            Some(0) => "/".to_string(),
            Some(i) => path[..i].to_string(),
            None => ".".to_string(),
        };
        let argv: Vec<String> = [
            "sh",
            "-c",
            "mkdir -p \"$1\" && cat > \"$2\" && chmod +x \"$2\"",
            "sh",
            &dir,
            path,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let out = self.run(&argv, Some(content)).await?;
        if out.success() {
            Ok(())
        } else {
            Err(AccessError::CommandFailed {
                command: format!("write {path}"),
                host: self.host(),
                code: out.code,
                stderr: out.message(),
            })
        }
    }
}

/// Environment variables added to every command of a runner.
pub type CommandEnv = BTreeMap<String, String>;

/// Runs commands on this host with `tokio::process`, with `env` added to the inherited
/// environment.
#[derive(Clone, Debug, Default)]
pub struct LocalRunner {
    env: CommandEnv,
}

impl LocalRunner {
    /// A runner whose commands get `env` on top of this process's environment.
    pub fn with_env(env: CommandEnv) -> LocalRunner {
        LocalRunner { env }
    }
}

#[async_trait]
impl CommandRunner for LocalRunner {
    async fn run(
        &self,
        argv: &[String],
        stdin: Option<&[u8]>,
    ) -> Result<CommandOutput, AccessError> {
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| AccessError::InvalidJob("empty command".into()))?;
        let mut cmd = Command::new(program);
        cmd.args(args).envs(&self.env);
        run_command(cmd, stdin, &shown(&self.env, argv), "localhost").await
    }

    fn host(&self) -> String {
        "localhost".into()
    }
}

/// Runs commands on `destination` (`user@host`) over one persistent, multiplexed OpenSSH
/// connection: the first command opens a ControlMaster that stays up
/// (`ControlPersist`), later commands reuse its socket. Key authentication only
/// (`BatchMode=yes`): a password prompt would hang a daemon.
///
/// Variables of `env` reach the remote command as `env K=V ... argv` (each word quoted):
/// sshd passes only the variables its `AcceptEnv` allows, so `SendEnv` would not do.
#[derive(Clone, Debug)]
pub struct SshRunner {
    destination: String,
    control_dir: String,
    env: CommandEnv,
}

impl SshRunner {
    pub fn new(destination: &str) -> SshRunner {
        let uid = nix::unistd::getuid();
        SshRunner {
            destination: destination.to_string(),
            control_dir: format!("/tmp/emanager-ssh-{uid}"),
            env: CommandEnv::new(),
        }
    }

    /// The same runner, adding `env` to every remote command.
    pub fn with_env(mut self, env: CommandEnv) -> SshRunner {
        self.env = env;
        self
    }

    /// The ssh argv that runs `argv` remotely (after `env K=V ...` when there is an env).
    pub fn ssh_argv(&self, argv: &[String]) -> Vec<String> {
        let mut out: Vec<String> = vec![
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "ControlMaster=auto".into(),
            "-o".into(),
            format!("ControlPath={}/%C", self.control_dir),
            "-o".into(),
            "ControlPersist=600".into(),
            "-o".into(),
            "ConnectTimeout=15".into(),
            "-o".into(),
            "ServerAliveInterval=30".into(),
            self.destination.clone(),
            "--".into(),
        ];
        let mut words: Vec<String> = Vec::new();
        if !self.env.is_empty() {
            words.push("env".into());
            words.extend(env_words(&self.env));
        }
        words.extend(argv.iter().cloned());
        out.push(
            words
                .iter()
                .map(|a| shell_quote(a))
                .collect::<Vec<_>>()
                .join(" "),
        );
        out
    }
}

#[async_trait]
impl CommandRunner for SshRunner {
    async fn run(
        &self,
        argv: &[String],
        stdin: Option<&[u8]>,
    ) -> Result<CommandOutput, AccessError> {
        // The control sockets grant the connection: only this user may reach them.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.control_dir)?;
        let mut cmd = Command::new("ssh");
        cmd.args(self.ssh_argv(argv));
        let out = run_command(cmd, stdin, &shown(&self.env, argv), &self.destination).await?;
        if out.code == Some(255) {
            return Err(AccessError::Ssh {
                destination: self.destination.clone(),
                message: out.message(),
            });
        }
        Ok(out)
    }

    fn host(&self) -> String {
        self.destination.clone()
    }
}

/// `K=V` words, in name order.
fn env_words(env: &CommandEnv) -> impl Iterator<Item = String> + '_ {
    env.iter().map(|(k, v)| format!("{k}={v}"))
}

/// The command as logs and errors show it: `K=V ... argv`.
fn shown(env: &CommandEnv, argv: &[String]) -> String {
    env_words(env)
        .chain(argv.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ")
}

async fn run_command(
    mut cmd: Command,
    stdin: Option<&[u8]>,
    shown: &str,
    host: &str,
) -> Result<CommandOutput, AccessError> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    tracing::debug!(command = %shown, host, "running");
    let mut child = cmd.spawn().map_err(|source| AccessError::Spawn {
        command: shown.to_string(),
        host: host.to_string(),
        source,
    })?;
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(data).await?;
        pipe.shutdown().await?;
        drop(pipe);
    }
    let out = child.wait_with_output().await?;
    Ok(CommandOutput {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Quotes one argument for a POSIX shell: `it's` -> `'it'\''s'`.
pub fn shell_quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
    {
        return arg.to_string();
    }
    format!("'{}'", arg.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quote_leaves_plain_words_and_quotes_the_rest() {
        assert_eq!(shell_quote("sbatch"), "sbatch");
        assert_eq!(shell_quote("--parsable"), "--parsable");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote("$(rm -rf /)"), "'$(rm -rf /)'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn ssh_argv_multiplexes_and_quotes_the_remote_command() {
        let r = SshRunner::new("alice@login1");
        let argv = r.ssh_argv(&["scancel".into(), "1; reboot".into()]);
        assert!(argv.contains(&"ControlMaster=auto".to_string()));
        assert!(argv.contains(&"BatchMode=yes".to_string()));
        assert_eq!(argv.last().unwrap(), "scancel '1; reboot'");
        assert_eq!(argv[argv.len() - 3], "alice@login1");
    }

    fn conf_b() -> CommandEnv {
        [(
            "SLURM_CONF".to_string(),
            "/etc/slurm-b/slurm.conf".to_string(),
        )]
        .into()
    }

    #[test]
    fn ssh_argv_without_env_has_no_env_prefix() {
        let r = SshRunner::new("alice@login1").with_env(CommandEnv::new());
        let argv = r.ssh_argv(&["sinfo".into(), "-h".into()]);
        assert_eq!(argv.last().unwrap(), "sinfo -h");
    }

    #[test]
    fn ssh_argv_puts_the_env_before_the_command_through_env() {
        let r = SshRunner::new("root@localhost").with_env(conf_b());
        let argv = r.ssh_argv(&["sbatch".into(), "--parsable".into(), "/tmp/j.sh".into()]);
        assert_eq!(
            argv.last().unwrap(),
            "env SLURM_CONF=/etc/slurm-b/slurm.conf sbatch --parsable /tmp/j.sh"
        );
        assert_eq!(argv[argv.len() - 2], "--");
    }

    #[test]
    fn ssh_argv_quotes_env_values_and_keeps_name_order() {
        let env: CommandEnv = [
            ("B_VAR".to_string(), "two words; $(reboot)".to_string()),
            ("A_VAR".to_string(), "it's".to_string()),
        ]
        .into();
        let r = SshRunner::new("alice@login1").with_env(env);
        let argv = r.ssh_argv(&["squeue".into()]);
        assert_eq!(
            argv.last().unwrap(),
            "env 'A_VAR=it'\\''s' 'B_VAR=two words; $(reboot)' squeue"
        );
    }

    #[test]
    fn shown_command_names_the_env() {
        assert_eq!(
            shown(&conf_b(), &["sinfo".into(), "-h".into()]),
            "SLURM_CONF=/etc/slurm-b/slurm.conf sinfo -h"
        );
    }

    #[tokio::test]
    async fn local_runner_adds_its_env_to_the_command() {
        let out = LocalRunner::with_env(conf_b())
            .run(
                &["sh".into(), "-c".into(), "echo \"$SLURM_CONF\"".into()],
                None,
            )
            .await
            .unwrap();
        assert_eq!(out.stdout, "/etc/slurm-b/slurm.conf\n");
    }

    #[tokio::test]
    async fn local_runner_passes_stdin_and_captures_output() {
        let out = LocalRunner::default()
            .run(&["cat".to_string()], Some(b"hello"))
            .await
            .unwrap();
        assert!(out.success());
        assert_eq!(out.stdout, "hello");
    }
}
