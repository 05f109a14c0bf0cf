//! What the agent has to run tasks on: nodes with cores, GPUs and memory, and until when.
//! Inside a batch allocation (SLURM, PBS, LSF, SGE) the batch system's environment says it
//! (`emanager_shared::access::allocation`); elsewhere it is the local host. Flags override
//! everything (`--cores` per node, `--gpus` per node, `--mem-mb` per node).

use crate::scheduler::NodeSpec;
use emanager_shared::access::allocation::{self, Allocation};
use std::collections::HashMap;

/// The local host's name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Cores this process may run on.
pub fn local_cores() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

/// Total memory of this host in MiB, from `/proc/meminfo`.
pub fn local_mem_mb() -> u64 {
    parse_meminfo(&std::fs::read_to_string("/proc/meminfo").unwrap_or_default()).unwrap_or(0)
}

fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024)
}

/// GPUs visible to this process: `CUDA_VISIBLE_DEVICES` when set, else `nvidia-smi -L`.
pub fn local_gpus() -> u32 {
    if let Ok(v) = std::env::var("CUDA_VISIBLE_DEVICES") {
        return v.split(',').filter(|s| !s.trim().is_empty()).count() as u32;
    }
    std::process::Command::new("nvidia-smi")
        .arg("-L")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.starts_with("GPU "))
                .count() as u32
        })
        .unwrap_or(0)
}

/// Overrides given on the command line.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub cores: Option<u32>,
    pub gpus: Option<u32>,
    pub mem_mb: Option<u64>,
}

/// What discovery found: the nodes (the agent's own first) and the allocation, if any.
#[derive(Clone, Debug, PartialEq)]
pub struct Discovered {
    pub nodes: Vec<NodeSpec>,
    pub allocation: Option<Allocation>,
}

/// The nodes of this pilot: the batch allocation found in this process's environment, else
/// the local host; shaped by the overrides.
pub fn discover(o: &Overrides) -> Discovered {
    let env: HashMap<String, String> = std::env::vars().collect();
    let read = |path: &str| std::fs::read_to_string(path).ok();
    discover_from(o, allocation::detect(&env, &read), &hostname())
}

/// [`discover`] with the allocation and host name given (pure, for tests).
pub fn discover_from(o: &Overrides, alloc: Option<Allocation>, host: &str) -> Discovered {
    let mem = || o.mem_mb.unwrap_or_else(local_mem_mb);
    let nodes = match &alloc {
        Some(a) if !a.nodes.is_empty() => {
            let mut names = a.nodes.clone();
            // The agent runs on the batch host; make it node 0 (the one tasks fork on).
            let short = host.split('.').next().unwrap_or(host);
            if let Some(i) = names
                .iter()
                .position(|n| n == host || n.split('.').next() == Some(short))
            {
                let me = names.remove(i);
                names.insert(0, me);
            }
            let mem_mb = mem();
            names
                .into_iter()
                .map(|name| NodeSpec {
                    name,
                    cores: o.cores.unwrap_or(a.cores_per_node.max(1)),
                    gpus: o.gpus.unwrap_or(a.gpus_per_node),
                    mem_mb,
                })
                .collect()
        }
        _ => vec![NodeSpec {
            name: host.to_string(),
            cores: o.cores.unwrap_or_else(local_cores),
            gpus: o.gpus.unwrap_or_else(local_gpus),
            mem_mb: mem(),
        }],
    };
    Discovered {
        nodes,
        allocation: alloc,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_total_is_read_in_mib() {
        let text = "MemTotal:       24576000 kB\nMemFree:  100 kB\n";
        assert_eq!(parse_meminfo(text), Some(24000));
        assert_eq!(parse_meminfo("garbage"), None);
    }

    #[test]
    fn overrides_win() {
        let nodes = discover_from(
            &Overrides {
                cores: Some(32),
                gpus: Some(0),
                mem_mb: Some(1000),
            },
            None,
            "h",
        )
        .nodes;
        assert_eq!(
            (nodes[0].cores, nodes[0].gpus, nodes[0].mem_mb),
            (32, 0, 1000)
        );
    }

    fn slurm_allocation() -> Allocation {
        let env: HashMap<String, String> = [
            ("SLURM_JOB_ID", "77"),
            ("SLURM_JOB_NODELIST", "nid[001-003]"),
            ("SLURM_CPUS_ON_NODE", "64"),
            ("SLURM_JOB_END_TIME", "2000000000"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        allocation::detect(&env, &|_| None).expect("a SLURM allocation")
    }

    #[test]
    fn an_allocation_gives_every_node_with_the_agents_own_node_first() {
        let d = discover_from(
            &Overrides {
                mem_mb: Some(4096),
                ..Default::default()
            },
            Some(slurm_allocation()),
            "nid002.cluster",
        );
        let names: Vec<&str> = d.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["nid002", "nid001", "nid003"]);
        assert!(d.nodes.iter().all(|n| n.cores == 64 && n.mem_mb == 4096));
        let a = d.allocation.unwrap();
        assert_eq!(
            (a.job_id.as_str(), a.end_time_ms),
            ("77", Some(2_000_000_000_000))
        );
    }

    #[test]
    fn cores_override_applies_per_node_of_an_allocation() {
        let d = discover_from(
            &Overrides {
                cores: Some(8),
                mem_mb: Some(1),
                ..Default::default()
            },
            Some(slurm_allocation()),
            "login",
        );
        assert_eq!(d.nodes.len(), 3);
        assert!(d.nodes.iter().all(|n| n.cores == 8));
    }

    #[test]
    fn the_local_host_has_at_least_one_core() {
        assert!(local_cores() >= 1);
    }
}
