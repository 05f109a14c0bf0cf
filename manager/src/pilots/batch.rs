//! Batch pilots: the catalog's resources with their job services, and the pilot job of a
//! request (agent command, working directory, logs, launch methods).

use super::*;

/// The batch resources a campaign may submit pilots to: its catalog, with one job service
/// per resource, kept for as long as their jobs live.
#[derive(Default)]
pub struct Sites {
    catalog: Option<Catalog>,
    services: HashMap<String, Arc<dyn JobService>>,
}

/// What a pilot job needs to reach the campaign's services and run the agent.
pub struct AgentTarget<'a> {
    pub agent_bin: &'a Path,
    pub amqp_url: &'a str,
    pub redis_url: &'a str,
}

impl Sites {
    /// The sites of a campaign's options (no catalog: local pilots only).
    pub fn from_options(opts: &CampaignOptions) -> anyhow::Result<Sites> {
        let catalog = match &opts.catalog_toml {
            Some(text) => {
                let dir = opts
                    .catalog_dir
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("."));
                Some(
                    Catalog::parse_in(text, &dir)
                        .context("the campaign's resource catalog no longer parses")?,
                )
            }
            None => None,
        };
        Ok(Sites {
            catalog,
            services: HashMap::new(),
        })
    }

    /// The catalog entry of a batch resource; `None` for `local` and local-access entries.
    pub fn batch_resource(&self, name: &str) -> Option<&ResourceEntry> {
        if name == "local" {
            return None;
        }
        self.catalog
            .as_ref()?
            .get(name)
            .ok()
            .filter(|r| r.access != AccessKind::Local)
    }

    fn service(&mut self, r: &ResourceEntry) -> Arc<dyn JobService> {
        self.services
            .entry(r.name.clone())
            .or_insert_with(|| Arc::from(job_service_for(r)))
            .clone()
    }

    /// Follows a job submitted by an earlier manager (resume).
    pub fn watch(&mut self, resource: &str, job: &str) -> Option<LaunchedPilot> {
        let r = self.batch_resource(resource)?.clone();
        let service = self.service(&r);
        Some(LaunchedPilot::Batch(BatchJob::new(
            service,
            JobId(job.to_string()),
            resource,
        )))
    }

    /// Starts submitting the pilot job of `pilot` in the background; returns it (polled
    /// like any launch: `Submitted`, then the job's states, or `Refused` with the batch
    /// system's message) and the agent's log path. An impossible request fails here.
    pub fn submit(
        &mut self,
        campaign: &CampaignId,
        pilot: PilotId,
        req: &PilotRequest,
        opts: &CampaignOptions,
        target: &AgentTarget<'_>,
    ) -> Result<(LaunchedPilot, String), AccessError> {
        let r = self.batch_resource(&req.resource).cloned().ok_or_else(|| {
            AccessError::InvalidJob(format!(
                "resource `{}` is not a batch resource of the campaign's catalog",
                req.resource
            ))
        })?;
        let p = pilot_job(campaign, pilot, req, opts, target, &r)?;
        let service = self.service(&r);
        let resource = r.name.clone();
        let handle = tokio::spawn(async move {
            let id = service.submit(&p.job).await?;
            let mut b = BatchJob::new(service, id, &resource);
            b.output = p.output;
            Ok(b)
        });
        Ok((
            LaunchedPilot::Submitting(Submission {
                handle,
                resource: r.name.clone(),
            }),
            p.log,
        ))
    }
}

/// A pilot job ready to submit, and where its agent log and the job's own output go.
pub struct PilotJob {
    pub job: JobDescription,
    /// The agent's log (`host:path` for a resource reached over SSH).
    pub log: String,
    /// The job's stdout/stderr, as the resource's job service can read it.
    pub output: Option<String>,
}

/// The pilot job of `pilot` on resource `r`: the agent with the campaign's services, its
/// working directory and log, the resource's launch methods and drain margin.
///
/// The job runs in the catalog's `agent.workdir`; else, on this host, in the manager's own
/// workdir (so sandboxes and logs land where `status` points), and over SSH in
/// `emanager-runs` below the login's home directory.
pub fn pilot_job(
    campaign: &CampaignId,
    pilot: PilotId,
    req: &PilotRequest,
    opts: &CampaignOptions,
    target: &AgentTarget<'_>,
    r: &ResourceEntry,
) -> Result<PilotJob, AccessError> {
    let walltime = req.walltime_s.unwrap_or(3600);
    let workdir = match (&r.agent.workdir, &r.ssh) {
        (Some(w), _) => w.clone(),
        (None, None) => absolute(&opts.workdir).display().to_string(),
        (None, Some(_)) => "emanager-runs".to_string(),
    };
    let rel_log = format!("{campaign}/pilot-{}.log", pilot.short());
    let methods: Vec<&str> = r.launch_methods.iter().map(|m| m.as_str()).collect();
    let mut args: Vec<String> = [
        "--campaign",
        &campaign.to_string(),
        "--pilot",
        &pilot.to_string(),
        "--resource",
        &r.name,
        "--amqp-url",
        target.amqp_url,
        "--redis-url",
        target.redis_url,
        // Relative to the job's working directory; the agent makes them absolute.
        "--workdir",
        ".",
        "--log-file",
        &rel_log,
        "--heartbeat-ms",
        &opts.heartbeat_ms.to_string(),
        "--drain-margin-s",
        &drain_margin_s(walltime).to_string(),
        "--launch-methods",
        &methods.join(","),
        "--idle-timeout-s",
        "600",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if opts.agent_log_json {
        args.extend(["--log-format".to_string(), "json".to_string()]);
    }
    let mut r = r.clone();
    // The catalog's default agent path on this host is the agent beside this manager.
    if r.ssh.is_none() && (r.agent.path.is_empty() || r.agent.path == "pilot-agent") {
        // A bare name (found on PATH) stays as it is.
        let bin = target.agent_bin;
        r.agent.path = if bin.components().count() > 1 {
            absolute(bin).display().to_string()
        } else {
            bin.display().to_string()
        };
    } else if r.agent.path.is_empty() {
        r.agent.path = "pilot-agent".into();
    }
    r.agent.workdir = Some(workdir.clone());
    let mut job =
        JobDescription::for_pilot(&r, req.queue.as_deref(), req.nodes.max(1), walltime, &args)?;
    if let Some(resv) = &req.reservation {
        job.reservation = Some(resv.clone());
    }
    job.name = format!("em-{}", pilot.short());
    let log = Path::new(&workdir).join(&rel_log).display().to_string();
    let log = match &r.ssh {
        Some(host) => format!("{host}:{log}"),
        None => log,
    };
    // The job's own output (what the job script says before the agent logs anything). The
    // batch system opens it before the script runs, so its folder must exist: on this host
    // the campaign's folder (made here), remotely the folder the script was written to.
    let plain = !workdir.contains(['$', '~']) && !workdir.contains(char::is_whitespace);
    let name = format!("pilot-{}.job.out", pilot.short());
    let output = match (&r.ssh, plain) {
        (None, true) => {
            let dir = Path::new(&workdir).join(campaign.to_string());
            let _ = std::fs::create_dir_all(&dir);
            let p = dir.join(&name).display().to_string();
            job.stdout = Some(p.clone());
            Some(p)
        }
        (Some(_), true) => {
            // Beside the job script (a relative folder is below the login's home).
            let p = format!("{workdir}/.emanager-jobs/{name}");
            job.stdout = Some(p.clone());
            Some(p)
        }
        (_, false) => None,
    };
    Ok(PilotJob { job, log, output })
}
