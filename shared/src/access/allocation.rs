//! Allocation discovery for the agent: which batch system started us, on which nodes,
//! with how many cores/GPUs each, until when. Pure: it reads an environment map and files
//! through a closure, so every batch system is tested without one.

use super::hostlist;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The batch system an allocation came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BatchSystem {
    Slurm,
    Pbs,
    Lsf,
    Sge,
}

/// What the agent runs on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Allocation {
    pub batch_system: BatchSystem,
    pub job_id: String,
    /// Node names, first is the one the agent runs on (batch host).
    pub nodes: Vec<String>,
    pub cores_per_node: u32,
    pub gpus_per_node: u32,
    /// When the allocation ends (ms since epoch), when known.
    pub end_time_ms: Option<u64>,
}

/// Detects the allocation from the environment; `files` reads a file (node files) and
/// returns `None` when it cannot. `None` when no batch system is recognised.
pub fn detect(
    env: &HashMap<String, String>,
    files: &dyn Fn(&str) -> Option<String>,
) -> Option<Allocation> {
    slurm(env)
        .or_else(|| pbs(env, files))
        .or_else(|| lsf(env, files))
        .or_else(|| sge(env, files))
}

fn get<'a>(env: &'a HashMap<String, String>, key: &str) -> Option<&'a str> {
    env.get(key)
        .map(String::as_str)
        .filter(|v| !v.trim().is_empty())
}

fn num(env: &HashMap<String, String>, key: &str) -> Option<u32> {
    get(env, key)?.trim().parse().ok()
}

/// End of the allocation: the batch system's own variable, else the one EManager's job
/// script templates export (`EMANAGER_JOB_END_TIME`, epoch seconds).
fn end_time(env: &HashMap<String, String>, own: Option<&str>) -> Option<u64> {
    own.and_then(|k| get(env, k))
        .or_else(|| get(env, "EMANAGER_JOB_END_TIME"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|s| *s > 0)
        .map(|s| s * 1000)
}

/// GPUs visible to the job: `CUDA_VISIBLE_DEVICES` / `ROCR_VISIBLE_DEVICES` lists.
fn visible_gpus(env: &HashMap<String, String>) -> Option<u32> {
    [
        "CUDA_VISIBLE_DEVICES",
        "ROCR_VISIBLE_DEVICES",
        "ZE_AFFINITY_MASK",
    ]
    .iter()
    .find_map(|k| get(env, k))
    .filter(|v| *v != "NoDevFiles")
    .map(|v| v.split(',').filter(|x| !x.trim().is_empty()).count() as u32)
}

/// SLURM_CPUS_ON_NODE; else the first count of SLURM_JOB_CPUS_PER_NODE (`64(x2),32`).
fn slurm_cores(env: &HashMap<String, String>) -> Option<u32> {
    num(env, "SLURM_CPUS_ON_NODE").or_else(|| {
        let v = get(env, "SLURM_JOB_CPUS_PER_NODE")?;
        v.split([',', '(']).next()?.trim().parse().ok()
    })
}

fn slurm(env: &HashMap<String, String>) -> Option<Allocation> {
    let job_id = get(env, "SLURM_JOB_ID").or_else(|| get(env, "SLURM_JOBID"))?;
    let list = get(env, "SLURM_JOB_NODELIST").or_else(|| get(env, "SLURM_NODELIST"))?;
    let nodes = hostlist::expand(list).ok()?;
    let gpus = num(env, "SLURM_GPUS_ON_NODE")
        .or_else(|| {
            get(env, "SLURM_GPUS_PER_NODE").and_then(|v| v.rsplit(':').next()?.parse().ok())
        })
        .or_else(|| visible_gpus(env))
        .unwrap_or(0);
    Some(Allocation {
        batch_system: BatchSystem::Slurm,
        job_id: job_id.to_string(),
        nodes,
        cores_per_node: slurm_cores(env).unwrap_or(1),
        gpus_per_node: gpus,
        end_time_ms: end_time(env, Some("SLURM_JOB_END_TIME")),
    })
}

/// Hosts in first-seen order with how many lines (slots) each has.
fn count_hosts<'a>(names: impl Iterator<Item = &'a str>) -> Vec<(String, u32)> {
    let mut hosts: Vec<(String, u32)> = Vec::new();
    for name in names.map(str::trim).filter(|n| !n.is_empty()) {
        match hosts.iter_mut().find(|(h, _)| h == name) {
            Some((_, n)) => *n += 1,
            None => hosts.push((name.to_string(), 1)),
        }
    }
    hosts
}

fn pbs(
    env: &HashMap<String, String>,
    files: &dyn Fn(&str) -> Option<String>,
) -> Option<Allocation> {
    let job_id = get(env, "PBS_JOBID")?;
    let nodefile = files(get(env, "PBS_NODEFILE")?)?;
    let hosts = count_hosts(nodefile.lines());
    if hosts.is_empty() {
        return None;
    }
    // The node file repeats a host once per MPI rank (mpiprocs); NCPUS is the cores of the
    // select chunk when set.
    let cores = num(env, "NCPUS").unwrap_or(hosts[0].1);
    Some(Allocation {
        batch_system: BatchSystem::Pbs,
        job_id: job_id.to_string(),
        nodes: hosts.into_iter().map(|(h, _)| h).collect(),
        cores_per_node: cores,
        gpus_per_node: num(env, "NGPUS").or_else(|| visible_gpus(env)).unwrap_or(0),
        end_time_ms: end_time(env, None),
    })
}

fn lsf(
    env: &HashMap<String, String>,
    files: &dyn Fn(&str) -> Option<String>,
) -> Option<Allocation> {
    let job_id = get(env, "LSB_JOBID")?;
    let text = match get(env, "LSB_DJOB_HOSTFILE").and_then(files) {
        Some(t) => t,
        None => get(env, "LSB_HOSTS")?
            .split_whitespace()
            .collect::<Vec<_>>()
            .join("\n"),
    };
    let mut hosts = count_hosts(text.lines());
    // On CSM systems (Summit) the first host is the launch node with one slot while the
    // compute nodes have many: it is not a node to run tasks on.
    if hosts.len() > 1 && hosts[0].1 == 1 && hosts[1..].iter().all(|(_, n)| *n > 1) {
        hosts.remove(0);
    }
    let cores = hosts.first()?.1;
    Some(Allocation {
        batch_system: BatchSystem::Lsf,
        job_id: job_id.to_string(),
        nodes: hosts.into_iter().map(|(h, _)| h).collect(),
        cores_per_node: cores,
        gpus_per_node: visible_gpus(env).unwrap_or(0),
        end_time_ms: end_time(env, None),
    })
}

fn sge(
    env: &HashMap<String, String>,
    files: &dyn Fn(&str) -> Option<String>,
) -> Option<Allocation> {
    let job_id = get(env, "JOB_ID")?;
    // Without a parallel environment there is no PE_HOSTFILE: one host, NSLOTS slots.
    let (nodes, cores) = match get(env, "PE_HOSTFILE").and_then(files) {
        Some(text) => {
            // host slots queue processor-range
            let rows: Vec<(String, u32)> = text
                .lines()
                .filter_map(|l| {
                    let mut f = l.split_whitespace();
                    Some((f.next()?.to_string(), f.next()?.parse().ok()?))
                })
                .collect();
            let cores = rows.iter().map(|(_, n)| *n).min()?;
            (rows.into_iter().map(|(h, _)| h).collect(), cores)
        }
        None => (
            vec![get(env, "HOSTNAME")?.to_string()],
            num(env, "NSLOTS").unwrap_or(1),
        ),
    };
    Some(Allocation {
        batch_system: BatchSystem::Sge,
        job_id: job_id.to_string(),
        nodes,
        cores_per_node: cores,
        gpus_per_node: visible_gpus(env).unwrap_or(0),
        end_time_ms: end_time(env, None),
    })
}
