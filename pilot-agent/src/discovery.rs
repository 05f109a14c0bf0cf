//! What the agent has to run tasks on: nodes with cores, GPUs and memory. Discovered from
//! the local host here; flags override everything (`--cores`, `--gpus`, `--mem-mb`).

use crate::scheduler::NodeSpec;

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

/// The nodes of this pilot: the local host, shaped by the overrides.
pub fn discover(o: &Overrides) -> Vec<NodeSpec> {
    vec![NodeSpec {
        name: hostname(),
        cores: o.cores.unwrap_or_else(local_cores),
        gpus: o.gpus.unwrap_or_else(local_gpus),
        mem_mb: o.mem_mb.unwrap_or_else(local_mem_mb),
    }]
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
        let nodes = discover(&Overrides {
            cores: Some(32),
            gpus: Some(0),
            mem_mb: Some(1000),
        });
        assert_eq!(
            (nodes[0].cores, nodes[0].gpus, nodes[0].mem_mb),
            (32, 0, 1000)
        );
    }

    #[test]
    fn the_local_host_has_at_least_one_core() {
        assert!(local_cores() >= 1);
    }
}
