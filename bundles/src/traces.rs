//! Readers of recorded queue waits used as the estimator's prior: Standard Workload Format
//! logs (Parallel Workloads Archive) and the XSEDE pilot queue measurements
//! (`Session: ..., Tx: <s>, Tq: <s>` lines, one file per pilot size and walltime).

use crate::estimator::WaitSample;

/// Waits from an SWF log. Field 3 is the wait, 5 the allocated processors (8 requested
/// when 5 is unknown), 9 the requested time; `procs_per_node` turns processors into nodes.
/// Comment lines (`;`) and jobs whose wait is unknown (`-1`) are skipped.
pub fn parse_swf(text: &str, procs_per_node: u32) -> Vec<WaitSample> {
    let ppn = i64::from(procs_per_node.max(1));
    text.lines()
        .filter(|l| !l.trim_start().starts_with(';'))
        .filter_map(|line| {
            let f: Vec<i64> = line
                .split_whitespace()
                .map(|x| x.parse::<f64>().map(|v| v as i64))
                .collect::<Result<_, _>>()
                .ok()?;
            if f.len() < 9 || f[2] < 0 {
                return None;
            }
            let procs = if f[4] > 0 { f[4] } else { f[7] };
            if procs <= 0 {
                return None;
            }
            Some(WaitSample {
                nodes: u32::try_from((procs + ppn - 1) / ppn).ok()?,
                walltime_s: u64::try_from(f[8]).unwrap_or(0),
                wait_s: f[2] as f64,
            })
        })
        .collect()
}

/// Waits from one XSEDE pilot measurement file: every `Tq:` value, for pilots of `cores`
/// cores and `walltime_s` requested (both from the file name, see [`xsede_file_size`]).
pub fn parse_xsede_pilot(
    text: &str,
    cores: u32,
    walltime_s: u64,
    cores_per_node: u32,
) -> Vec<WaitSample> {
    let nodes = cores.div_ceil(cores_per_node.max(1)).max(1);
    text.lines()
        .filter_map(|l| l.rsplit_once("Tq:"))
        .filter_map(|(_, v)| v.trim().parse::<f64>().ok())
        .map(|wait_s| WaitSample {
            nodes,
            walltime_s,
            wait_s,
        })
        .collect()
}

/// `(cores, walltime_s)` from a name like `exp_16c_30m_sleep.txt`.
pub fn xsede_file_size(file_name: &str) -> Option<(u32, u64)> {
    let mut cores = None;
    let mut minutes = None;
    for part in file_name.split(['_', '.']) {
        if let Some(c) = part.strip_suffix('c').and_then(|c| c.parse().ok()) {
            cores = Some(c);
        } else if let Some(m) = part.strip_suffix('m').and_then(|m| m.parse::<u64>().ok()) {
            minutes = Some(m);
        }
    }
    Some((cores?, minutes? * 60))
}

/// Loads a trace file by its kind: `.swf` as SWF, anything else as an XSEDE pilot file
/// named by size (`exp_<cores>c_<min>m_*.txt`); `cores_per_node` turns processors or
/// cores into nodes.
pub fn load_trace(path: &std::path::Path, cores_per_node: u32) -> anyhow::Result<Vec<WaitSample>> {
    use anyhow::Context;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading wait trace {}", path.display()))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if name.ends_with(".swf") {
        return Ok(parse_swf(&text, cores_per_node));
    }
    let (cores, walltime_s) = xsede_file_size(name).with_context(|| {
        format!(
            "{}: not .swf and no `<cores>c_<minutes>m` in the name (XSEDE pilot trace)",
            path.display()
        )
    })?;
    Ok(parse_xsede_pilot(&text, cores, walltime_s, cores_per_node))
}
