//! Errors of resource access, typed so the pilot manager can tell a refusal by the
//! scheduler (give up on this resource) from a broken connection (retry).

use super::JobId;

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The batch system refused the request; `message` is its output verbatim, e.g.
    /// "sbatch: error: invalid partition specified: nope".
    #[error("{system} rejected the job: {message}")]
    Rejected {
        system: &'static str,
        message: String,
    },
    /// The batch system does not know this job (any more).
    #[error("{system} does not know job {id}: {message}")]
    UnknownJob {
        system: &'static str,
        id: JobId,
        message: String,
    },
    /// A command exited non-zero for a reason other than the two above.
    #[error("`{command}` on {host} failed (exit {code:?}): {stderr}")]
    CommandFailed {
        command: String,
        host: String,
        code: Option<i32>,
        stderr: String,
    },
    /// A command could not be started at all (not installed, not on PATH).
    #[error("cannot run `{command}` on {host}: {source}")]
    Spawn {
        command: String,
        host: String,
        #[source]
        source: std::io::Error,
    },
    /// The SSH connection to the login node failed (exit 255).
    #[error("ssh to {destination} failed: {message}")]
    Ssh {
        destination: String,
        message: String,
    },
    /// The batch system printed something this adapter does not understand.
    #[error("cannot parse {what} from: {output:?}")]
    Parse { what: &'static str, output: String },
    /// The job script template could not be read or names an unknown placeholder.
    #[error("job script template {source_name}: {message}")]
    Template {
        source_name: String,
        message: String,
    },
    /// The description asks for something this adapter cannot express.
    #[error("invalid job description: {0}")]
    InvalidJob(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl AccessError {
    pub(crate) fn parse(what: &'static str, output: &str) -> AccessError {
        AccessError::Parse {
            what,
            output: output.chars().take(500).collect(),
        }
    }
}
