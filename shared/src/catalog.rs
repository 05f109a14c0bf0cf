//! The resource catalog (`resources.toml`): what machines a campaign may use, how to reach
//! them, their nodes and queues, and how to start the agent there. Parsed strictly
//! (`deny_unknown_fields`) and validated, so a typo or an impossible value is an error
//! naming the resource and the field, not a pilot that fails hours later.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// How jobs are started on a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessKind {
    /// A process on this host.
    Local,
    Slurm,
    Sge,
    Pbs,
    Lsf,
}

impl fmt::Display for AccessKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            AccessKind::Local => "local",
            AccessKind::Slurm => "slurm",
            AccessKind::Sge => "sge",
            AccessKind::Pbs => "pbs",
            AccessKind::Lsf => "lsf",
        };
        f.write_str(s)
    }
}

/// How tasks are launched inside an allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LaunchMethod {
    /// A child process of the agent, on the agent's own node.
    Fork,
    /// A SLURM job step (`srun`), on any node of the allocation.
    Srun,
    /// Open MPI's `mpirun` with a host list.
    Mpirun,
    /// MPICH/PALS `mpiexec` with a host list (Polaris, Aurora).
    Mpiexec,
}

impl LaunchMethod {
    pub const ALL: [LaunchMethod; 4] = [
        LaunchMethod::Fork,
        LaunchMethod::Srun,
        LaunchMethod::Mpirun,
        LaunchMethod::Mpiexec,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LaunchMethod::Fork => "fork",
            LaunchMethod::Srun => "srun",
            LaunchMethod::Mpirun => "mpirun",
            LaunchMethod::Mpiexec => "mpiexec",
        }
    }
}

impl fmt::Display for LaunchMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for LaunchMethod {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        LaunchMethod::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                format!("unknown launch method `{s}`; known: fork, srun, mpirun, mpiexec")
            })
    }
}

/// A queue (SGE, PBS, LSF) or partition (SLURM) and its limits.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSpec {
    pub name: String,
    /// `[D-]HH:MM:SS` in the file; seconds here.
    #[serde(rename = "max_walltime", deserialize_with = "de_walltime")]
    pub max_walltime_s: u64,
    pub max_nodes: u32,
    #[serde(default = "one")]
    pub min_nodes: u32,
    /// QOS to pass with this queue (SLURM), e.g. Perlmutter's `debug`.
    #[serde(default)]
    pub qos: Option<String>,
    /// The queue/partition passed to the batch system when it differs from `name`; `""`
    /// passes none (Perlmutter selects by QOS and constraint, not partition).
    #[serde(default)]
    pub partition: Option<String>,
    /// Advance reservation jobs of this queue run in (overrides the resource's
    /// `reservation`): SLURM `--reservation`, PBS `-q` (the reservation's queue), LSF `-U`,
    /// SGE `-ar`.
    #[serde(default)]
    pub reservation: Option<String>,
}

impl QueueSpec {
    /// What goes into `JobDescription::queue`.
    pub fn submit_queue(&self) -> Option<String> {
        match self.partition.as_deref() {
            Some("") => None,
            Some(p) => Some(p.to_string()),
            None => Some(self.name.clone()),
        }
    }
}

fn one() -> u32 {
    1
}

fn de_walltime<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let s = String::deserialize(d)?;
    crate::access::timefmt::parse_duration(&s).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "max_walltime `{s}` is not a duration ([D-]HH:MM:SS, e.g. \"02:00:00\")"
        ))
    })
}

/// How to start the pilot agent on the resource.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    /// Path of `pilot-agent` on the resource.
    #[serde(default = "default_agent_path")]
    pub path: String,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Modules loaded before the agent (`module load <m>`).
    #[serde(default)]
    pub modules: Vec<String>,
    /// Shell lines run before the agent, after the modules.
    #[serde(default)]
    pub pre_commands: Vec<String>,
    /// Working directory of the pilot job (may use `$VARS`, expanded by the job's shell
    /// only in pre_commands; here it is taken literally).
    #[serde(default)]
    pub workdir: Option<String>,
}

fn default_agent_path() -> String {
    "pilot-agent".to_string()
}

/// One machine of the catalog.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceEntry {
    /// Filled from the table key.
    #[serde(skip)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub access: AccessKind,
    /// `user@host` of the login node; batch commands run there over SSH.
    #[serde(default)]
    pub ssh: Option<String>,
    /// Environment of every batch command (sbatch, squeue, qstat, the probes), here or
    /// over SSH: `{ SLURM_CONF = "/etc/slurm-b/slurm.conf" }` picks one of several
    /// clusters. Not the pilot's environment (that is `agent.environment`), although
    /// `sbatch` passes its own environment on to the job.
    #[serde(default)]
    pub batch_env: BTreeMap<String, String>,
    pub nodes: u32,
    pub cores_per_node: u32,
    #[serde(default)]
    pub gpus_per_node: u32,
    #[serde(default)]
    pub memory_per_node_gb: Option<u32>,
    #[serde(default)]
    pub queues: Vec<QueueSpec>,
    #[serde(default)]
    pub default_queue: Option<String>,
    #[serde(default)]
    pub account: Option<String>,
    /// Advance reservation every pilot job of the resource runs in, unless its queue names
    /// one (see [`QueueSpec::reservation`]).
    #[serde(default)]
    pub reservation: Option<String>,
    #[serde(default = "default_launch")]
    pub launch_methods: Vec<LaunchMethod>,
    #[serde(default)]
    pub agent: AgentSpec,
    /// Site job script template replacing the built-in one (relative to the catalog file).
    #[serde(default)]
    pub template: Option<PathBuf>,
    /// Directives added to every job (without the `#SBATCH`/`#PBS` prefix).
    #[serde(default)]
    pub extra_directives: Vec<String>,
    /// Relative cost of one core-hour (1.0 = reference).
    #[serde(default = "default_cost")]
    pub cost_per_core_hour: f64,
}

fn default_launch() -> Vec<LaunchMethod> {
    vec![LaunchMethod::Fork]
}

fn default_cost() -> f64 {
    1.0
}

impl ResourceEntry {
    /// The queue named `name`, or the default queue when `None`.
    pub fn queue(&self, name: Option<&str>) -> Option<&QueueSpec> {
        let name = name.or(self.default_queue.as_deref())?;
        self.queues.iter().find(|q| q.name == name)
    }

    /// The reservation of a pilot job in `queue` (the queue's own, else the resource's).
    pub fn reservation_for<'a>(&'a self, queue: Option<&'a QueueSpec>) -> Option<&'a str> {
        queue
            .and_then(|q| q.reservation.as_deref())
            .or(self.reservation.as_deref())
    }

    /// The agent's pre-commands with module loads first, as a job script runs them.
    pub fn agent_pre_commands(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .agent
            .modules
            .iter()
            .map(|m| format!("module load {m}"))
            .collect();
        out.extend(self.agent.pre_commands.iter().cloned());
        out
    }

    fn validate(&self) -> Result<(), CatalogError> {
        let bad = |field: &str, message: String| {
            Err(CatalogError::Invalid {
                resource: self.name.clone(),
                field: field.to_string(),
                message,
            })
        };
        if self.nodes == 0 {
            return bad("nodes", "must be at least 1".into());
        }
        if self.cores_per_node == 0 {
            return bad("cores_per_node", "must be at least 1".into());
        }
        if self.memory_per_node_gb == Some(0) {
            return bad("memory_per_node_gb", "must be at least 1 when given".into());
        }
        if !(self.cost_per_core_hour.is_finite() && self.cost_per_core_hour >= 0.0) {
            return bad("cost_per_core_hour", "must be a number >= 0".into());
        }
        if let Some(ssh) = &self.ssh {
            if self.access == AccessKind::Local {
                return bad(
                    "ssh",
                    "`access = \"local\"` runs on this host; remove `ssh`".into(),
                );
            }
            if ssh.trim().is_empty() || ssh.contains(char::is_whitespace) || ssh.starts_with('-') {
                return bad("ssh", format!("`{ssh}` is not a `user@host` destination"));
            }
        }
        if !self.batch_env.is_empty() && self.access == AccessKind::Local {
            return bad(
                "batch_env",
                "`access = \"local\"` runs no batch commands; the pilot's environment is `agent.environment`".into(),
            );
        }
        for (name, value) in &self.batch_env {
            if !is_env_name(name) {
                return bad(
                    "batch_env",
                    format!("`{name}` is not a variable name (letters, digits and `_`, not starting with a digit)"),
                );
            }
            if value.contains('\0') {
                return bad(
                    "batch_env",
                    format!("`{name}`: the value contains a NUL byte"),
                );
            }
        }
        if let Some(r) = &self.reservation {
            if self.access == AccessKind::Local {
                return bad(
                    "reservation",
                    "`access = \"local\"` runs pilots on this host, outside any batch reservation; remove `reservation`".into(),
                );
            }
            if let Err(why) = check_reservation_name(r) {
                return bad("reservation", why);
            }
        }
        if self.launch_methods.is_empty() {
            return bad(
                "launch_methods",
                "needs at least one (fork, srun, mpirun, mpiexec)".into(),
            );
        }
        if self.access != AccessKind::Local && self.queues.is_empty() {
            return bad(
                "queues",
                format!("a {} resource needs at least one queue", self.access),
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, q) in self.queues.iter().enumerate() {
            let field = |f: &str| format!("queues[{i}].{f}");
            if q.name.trim().is_empty() {
                return bad(&field("name"), "is empty".into());
            }
            if !seen.insert(q.name.as_str()) {
                return bad(
                    &field("name"),
                    format!("queue `{}` is listed twice", q.name),
                );
            }
            if q.max_walltime_s == 0 {
                return bad(
                    &field("max_walltime"),
                    format!("queue `{}`: must be > 0", q.name),
                );
            }
            if q.max_nodes == 0 {
                return bad(
                    &field("max_nodes"),
                    format!("queue `{}`: must be at least 1", q.name),
                );
            }
            if q.max_nodes > self.nodes {
                return bad(
                    &field("max_nodes"),
                    format!(
                        "queue `{}` allows {} nodes but the resource has {} (`nodes`); lower `max_nodes` to at most {} or raise `nodes`",
                        q.name, q.max_nodes, self.nodes, self.nodes
                    ),
                );
            }
            if let Some(r) = &q.reservation {
                if self.access == AccessKind::Local {
                    return bad(
                        &field("reservation"),
                        format!("queue `{}`: `access = \"local\"` runs pilots on this host, outside any batch reservation; remove `reservation`", q.name),
                    );
                }
                if let Err(why) = check_reservation_name(r) {
                    return bad(&field("reservation"), format!("queue `{}`: {why}", q.name));
                }
            }
            if q.min_nodes == 0 || q.min_nodes > q.max_nodes {
                return bad(
                    &field("min_nodes"),
                    format!(
                        "queue `{}`: must be between 1 and max_nodes ({})",
                        q.name, q.max_nodes
                    ),
                );
            }
        }
        if let Some(dq) = &self.default_queue {
            if !self.queues.iter().any(|q| &q.name == dq) {
                let known: Vec<&str> = self.queues.iter().map(|q| q.name.as_str()).collect();
                return bad(
                    "default_queue",
                    format!("`{dq}` is not one of the queues ({})", known.join(", ")),
                );
            }
        }
        Ok(())
    }
}

/// Whether `name` can be passed as a reservation (`--reservation=NAME`, `-q NAME`, `-U NAME`,
/// `-ar NAME`): one word that is not an option. `Err` says what is wrong with it.
pub fn check_reservation_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the reservation name is empty".into());
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "`{}` is not a reservation name (one word, no spaces or line breaks)",
            name.escape_debug()
        ));
    }
    if name.starts_with('-') {
        return Err(format!(
            "`{name}` is not a reservation name (it would be read as an option)"
        ));
    }
    Ok(())
}

/// A portable environment variable name: `[A-Za-z_][A-Za-z0-9_]*`. Anything else could be
/// read by `env` as an option or a command, or be refused by the shell.
fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    resources: BTreeMap<String, ResourceEntry>,
}

/// Errors loading or querying the catalog; each names the file, resource or field.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: String, message: String },
    #[error("resource `{resource}`: field `{field}`: {message}")]
    Invalid {
        resource: String,
        field: String,
        message: String,
    },
    #[error("unknown resource `{name}`; known: {}", known.join(", "))]
    UnknownResource { name: String, known: Vec<String> },
}

/// All resources of a `resources.toml`, validated.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Catalog {
    resources: BTreeMap<String, ResourceEntry>,
}

impl Catalog {
    /// Reads and validates a catalog file; template paths become relative to its folder.
    pub fn load(path: impl AsRef<Path>) -> Result<Catalog, CatalogError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Catalog::parse_in(&text, base).map_err(|e| match e {
            CatalogError::Syntax { message, .. } => CatalogError::Syntax {
                path: path.display().to_string(),
                message,
            },
            other => other,
        })
    }

    /// Parses catalog text read from a file in `base` (relative template paths are taken
    /// from there): what a campaign that stored its catalog's text needs to read it back.
    pub fn parse_in(text: &str, base: &Path) -> Result<Catalog, CatalogError> {
        let mut catalog = Catalog::parse(text)?;
        for r in catalog.resources.values_mut() {
            if let Some(t) = &r.template {
                if t.is_relative() {
                    r.template = Some(base.join(t));
                }
            }
        }
        Ok(catalog)
    }

    /// Parses and validates catalog text.
    pub fn parse(text: &str) -> Result<Catalog, CatalogError> {
        let file: CatalogFile = toml::from_str(text).map_err(|e| CatalogError::Syntax {
            path: "resources.toml".into(),
            message: e.to_string(),
        })?;
        let mut resources = file.resources;
        for (name, r) in resources.iter_mut() {
            r.name = name.clone();
            r.validate()?;
        }
        Ok(Catalog { resources })
    }

    /// The resource called `name`, or an error listing the known ones.
    pub fn get(&self, name: &str) -> Result<&ResourceEntry, CatalogError> {
        self.resources
            .get(name)
            .ok_or_else(|| CatalogError::UnknownResource {
                name: name.to_string(),
                known: self.resources.keys().cloned().collect(),
            })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.resources.keys().map(String::as_str)
    }

    pub fn resources(&self) -> impl Iterator<Item = &ResourceEntry> {
        self.resources.values()
    }
}
