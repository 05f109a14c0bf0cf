//! What the four batch adapters share: checking a description, rendering the job script
//! from a template, writing it through the runner, remembering which jobs we canceled.

use super::runner::{shell_quote, CommandOutput, CommandRunner};
use super::template;
use super::{AccessError, JobDescription, JobId};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;

/// A job name every batch system accepts: `[A-Za-z0-9_.-]`, at most 64 characters, not
/// starting with a digit (PBS).
pub fn job_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "em-");
        out.truncate(64);
    }
    out
}

/// Rejects descriptions that cannot become a job script: no command, zero sizes, line
/// breaks in anything that ends up on a directive line.
pub fn check(job: &JobDescription) -> Result<(), AccessError> {
    let invalid = |m: String| Err(AccessError::InvalidJob(m));
    if job.command.is_empty() {
        return invalid("`command` is empty".into());
    }
    if job.nodes == 0 {
        return invalid("`nodes` must be at least 1".into());
    }
    if job.walltime_s == 0 {
        return invalid("`walltime_s` must be at least 1".into());
    }
    let single_line = [
        ("queue", job.queue.as_deref()),
        ("account", job.account.as_deref()),
        ("qos", job.qos.as_deref()),
        ("reservation", job.reservation.as_deref()),
        ("working_dir", job.working_dir.as_deref()),
        ("stdout", job.stdout.as_deref()),
        ("stderr", job.stderr.as_deref()),
    ];
    for (field, value) in single_line {
        if value.is_some_and(|v| v.contains(['\n', '\r'])) {
            return invalid(format!("`{field}` contains a line break"));
        }
    }
    if job
        .extra_directives
        .iter()
        .any(|d| d.contains(['\n', '\r']))
    {
        return invalid("an extra directive contains a line break".into());
    }
    for key in job.environment.keys() {
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return invalid(format!("environment variable name `{key}` is not valid"));
        }
    }
    Ok(())
}

/// The template text: the site's file when given, else the built-in default.
pub fn template_text(
    override_path: Option<&PathBuf>,
    default: &'static str,
) -> Result<String, AccessError> {
    match override_path {
        None => Ok(default.to_string()),
        Some(path) => std::fs::read_to_string(path).map_err(|e| AccessError::Template {
            source_name: path.display().to_string(),
            message: e.to_string(),
        }),
    }
}

/// The working directory when a directive can carry it as is: absolute, no `$VAR`, `~` or
/// whitespace (directives are not expanded by a shell). Otherwise only the script's `cd`
/// applies it.
pub fn directive_dir(job: &JobDescription) -> Option<&str> {
    job.working_dir.as_deref().filter(|d| {
        d.starts_with('/') && !d.contains(['$', '~']) && !d.contains(char::is_whitespace)
    })
}

/// Quotes a path for the job script, leaving a leading `$VAR/`, `${VAR}/` or `~/` to the
/// job's shell: catalog paths like `$HOME/emanager/bin/pilot-agent` or
/// `$MEMBERWORK/proj` are only known on the resource. The rest is single-quoted.
pub fn quote_path(path: &str) -> String {
    if let Some(rest) = path.strip_prefix("~/") {
        return format!("\"$HOME\"/{}", shell_quote(rest));
    }
    if let Some(after) = path.strip_prefix('$') {
        let (name, rest) = match after.strip_prefix('{') {
            Some(braced) => match braced.split_once('}') {
                Some((n, r)) => (n, r),
                None => return shell_quote(path),
            },
            None => {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], &after[end..])
            }
        };
        let valid = !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if valid && (rest.is_empty() || rest.starts_with('/')) {
            let rest = if rest.is_empty() {
                String::new()
            } else {
                shell_quote(rest)
            };
            return format!("\"${{{name}}}\"{rest}");
        }
    }
    shell_quote(path)
}

/// Renders the job script: `directives` are the adapter's lines with their prefix.
pub fn render_script(
    job: &JobDescription,
    directives: &[String],
    template_text: &str,
    template_name: &str,
) -> Result<String, AccessError> {
    let environment: Vec<String> = job
        .environment
        .iter()
        .map(|(k, v)| format!("export {k}={}", shell_quote(v)))
        .collect();
    // A relative working directory is taken from the home directory, wherever the job
    // starts (the batch system's own default differs between systems).
    let workdir = match &job.working_dir {
        Some(dir) if !dir.starts_with(['/', '$', '~']) => quote_path(&format!("~/{dir}")),
        Some(dir) => quote_path(dir),
        None => "\"$HOME\"".to_string(),
    };
    let command: Vec<String> = job
        .command
        .iter()
        .enumerate()
        .map(|(i, a)| {
            if i == 0 {
                quote_path(a)
            } else {
                shell_quote(a)
            }
        })
        .collect();
    let values: BTreeMap<&str, String> = [
        ("directives", directives.join("\n")),
        ("job_name", job_name(&job.name)),
        ("walltime_s", job.walltime_s.to_string()),
        ("environment", environment.join("\n")),
        ("pre_commands", job.pre_commands.join("\n")),
        ("workdir", workdir),
        ("command", command.join(" ")),
    ]
    .into_iter()
    .collect();
    template::render(template_text, &values).map_err(|message| AccessError::Template {
        source_name: template_name.to_string(),
        message,
    })
}

/// Where the script goes on the runner's host: beside the job's output, else in /tmp.
pub fn script_path(job: &JobDescription, system: &str) -> String {
    let dir = job
        .working_dir
        .clone()
        .unwrap_or_else(|| "/tmp".to_string());
    let unique = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "{dir}/.emanager-jobs/{}-{system}-{}.sh",
        job_name(&job.name),
        &unique[..12]
    )
}

/// Renders the script and writes it on the runner's host; returns its path and text.
pub async fn write_script(
    runner: &dyn CommandRunner,
    job: &JobDescription,
    system: &str,
    directives: &[String],
    override_path: Option<&PathBuf>,
    default: &'static str,
) -> Result<(String, String), AccessError> {
    check(job)?;
    let text = template_text(override_path, default)?;
    let name = override_path
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| format!("built-in {system} template"));
    let script = render_script(job, directives, &text, &name)?;
    let path = script_path(job, system);
    runner.write_file(&path, script.as_bytes()).await?;
    Ok((path, script))
}

/// The first non-empty line a submission command printed, trimmed; a non-zero exit is the
/// batch system refusing the job, with its words.
pub fn submitted_line<'a>(
    out: &'a CommandOutput,
    system: &'static str,
) -> Result<&'a str, AccessError> {
    if !out.success() {
        return Err(AccessError::Rejected {
            system,
            message: out.message(),
        });
    }
    Ok(out
        .stdout
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim())
}

/// Runs `argv`; a non-zero exit becomes `CommandFailed`.
pub async fn run_ok(
    runner: &dyn CommandRunner,
    argv: &[&str],
) -> Result<CommandOutput, AccessError> {
    let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    let out = runner.run(&argv, None).await?;
    if out.success() {
        Ok(out)
    } else {
        Err(AccessError::CommandFailed {
            command: argv.join(" "),
            host: runner.host(),
            code: out.code,
            stderr: out.message(),
        })
    }
}

/// The last `lines` lines of `path` on the runner's host (`tail`, argv, no shell).
pub async fn tail(runner: &dyn CommandRunner, path: &str, lines: usize) -> Option<String> {
    let argv = to_strings(&["tail", "-n", &lines.to_string(), "--", path]);
    runner
        .run(&argv, None)
        .await
        .ok()
        .filter(|o| o.success())
        .map(|o| o.stdout)
}

pub fn to_strings(argv: &[&str]) -> Vec<String> {
    argv.iter().map(|s| s.to_string()).collect()
}

/// Jobs this service canceled: batch systems without accounting cannot tell a canceled
/// job from a finished one once it has left the queue.
#[derive(Debug, Default)]
pub struct CanceledJobs(Mutex<HashSet<JobId>>);

impl CanceledJobs {
    pub fn insert(&self, id: &JobId) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone());
    }

    pub fn contains(&self, id: &JobId) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> JobDescription {
        JobDescription {
            name: "pilot 1".into(),
            nodes: 1,
            cores_per_node: 2,
            walltime_s: 60,
            command: vec!["pilot-agent".into(), "--campaign".into(), "c 1".into()],
            environment: [("RUST_LOG".to_string(), "info,x=debug".to_string())].into(),
            pre_commands: vec!["module load cray-python".into()],
            ..Default::default()
        }
    }

    #[test]
    fn paths_keep_a_leading_variable_for_the_job_shell() {
        assert_eq!(
            quote_path("$HOME/em/bin/pilot-agent"),
            "\"${HOME}\"/em/bin/pilot-agent"
        );
        assert_eq!(quote_path("${MEMBERWORK}/p x"), "\"${MEMBERWORK}\"'/p x'");
        assert_eq!(quote_path("~/bin/a"), "\"$HOME\"/bin/a");
        assert_eq!(quote_path("$SCRATCH"), "\"${SCRATCH}\"");
        assert_eq!(quote_path("$(reboot)/x"), "'$(reboot)/x'");
        assert_eq!(quote_path("$HOME;reboot"), "'$HOME;reboot'");
        assert_eq!(quote_path("/usr/bin/env"), "/usr/bin/env");
    }

    #[test]
    fn a_relative_working_directory_is_taken_from_home_and_never_a_directive() {
        let mut j = job();
        j.working_dir = Some("emanager-runs".into());
        assert_eq!(directive_dir(&j), None);
        let s = render_script(&j, &[], template::SLURM_DEFAULT, "t").unwrap();
        assert!(s.contains("cd \"$HOME\"/emanager-runs || exit 1"), "{s}");
        j.working_dir = Some("/scratch/em".into());
        assert_eq!(directive_dir(&j), Some("/scratch/em"));
    }

    #[test]
    fn job_names_are_sanitised() {
        assert_eq!(job_name("pilot 1/x"), "pilot_1_x");
        assert_eq!(job_name("1abc"), "em-1abc");
        assert_eq!(job_name(""), "em-");
    }

    #[test]
    fn script_quotes_command_and_environment() {
        let s = render_script(
            &job(),
            &["#SBATCH --nodes=1".into()],
            template::SLURM_DEFAULT,
            "t",
        )
        .unwrap();
        assert!(s.contains("#SBATCH --nodes=1\n"), "{s}");
        assert!(s.contains("export RUST_LOG=info,x=debug"), "{s}");
        assert!(s.contains("module load cray-python"));
        assert!(s.contains("exec pilot-agent --campaign 'c 1'"), "{s}");
        assert!(s.contains("cd \"$HOME\" || exit 1"));
        assert!(s.contains("+ 60 ))"));
    }

    #[test]
    fn rendered_scripts_are_valid_bash_for_every_adapter() {
        let mut j = job();
        j.working_dir = Some("$SCRATCH/em dir".into());
        j.command[0] = "$HOME/bin/pilot-agent".into();
        j.command.push("it's".into());
        let cases = [
            (
                crate::access::slurm::directives(&j),
                template::SLURM_DEFAULT,
            ),
            (
                crate::access::sge::directives(&j).unwrap(),
                template::SGE_DEFAULT,
            ),
            (
                crate::access::pbs::directives(&j).unwrap(),
                template::PBS_DEFAULT,
            ),
            (
                crate::access::lsf::directives(&j).unwrap(),
                template::LSF_DEFAULT,
            ),
        ];
        for (directives, text) in cases {
            let script = render_script(&j, &directives, text, "t").unwrap();
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("job.sh");
            std::fs::write(&path, &script).unwrap();
            let out = std::process::Command::new("bash")
                .arg("-n")
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}\n{script}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                script.contains("exec \"${HOME}\"/bin/pilot-agent --campaign 'c 1' 'it'\\''s'"),
                "{script}"
            );
        }
    }

    #[test]
    fn line_breaks_in_directive_values_are_rejected() {
        let mut j = job();
        j.queue = Some("debug\n#SBATCH --uid=0".into());
        assert!(matches!(check(&j), Err(AccessError::InvalidJob(m)) if m.contains("queue")));
        let mut j = job();
        j.command.clear();
        assert!(check(&j).is_err());
        let mut j = job();
        j.environment.insert("A B".into(), "x".into());
        assert!(check(&j).is_err());
    }
}
