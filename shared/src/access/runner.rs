//! Where batch commands run: on this host, or on a login node over SSH. Commands are argv;
//! over SSH each argument is single-quoted for the remote shell, so no user string is ever
//! interpreted by a shell.

use super::AccessError;
use async_trait::async_trait;
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

/// Runs commands on this host with `tokio::process`.
#[derive(Clone, Debug, Default)]
pub struct LocalRunner;

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
        cmd.args(args);
        run_command(cmd, stdin, &argv.join(" "), "localhost").await
    }

    fn host(&self) -> String {
        "localhost".into()
    }
}

/// Runs commands on `destination` (`user@host`) over one persistent, multiplexed OpenSSH
/// connection: the first command opens a ControlMaster that stays up
/// (`ControlPersist`), later commands reuse its socket. Key authentication only
/// (`BatchMode=yes`): a password prompt would hang a daemon.
#[derive(Clone, Debug)]
pub struct SshRunner {
    destination: String,
    control_dir: String,
}

impl SshRunner {
    pub fn new(destination: &str) -> SshRunner {
        let uid = nix::unistd::getuid();
        SshRunner {
            destination: destination.to_string(),
            control_dir: format!("/tmp/emanager-ssh-{uid}"),
        }
    }

    /// The ssh argv that runs `argv` remotely.
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
        out.push(
            argv.iter()
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
        let out = run_command(cmd, stdin, &argv.join(" "), &self.destination).await?;
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

    #[tokio::test]
    async fn local_runner_passes_stdin_and_captures_output() {
        let out = LocalRunner
            .run(&["cat".to_string()], Some(b"hello"))
            .await
            .unwrap();
        assert!(out.success());
        assert_eq!(out.stdout, "hello");
    }
}
