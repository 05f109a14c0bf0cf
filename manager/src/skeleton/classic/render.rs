//! The original tool's own text outputs, `as_shell()` and `getSetup()`, reproduced from
//! generated stages: what the tests compare with the reference expansions.

use super::defs::Source;
use super::generate::{file_dir, GenStage};

/// The original `as_shell()` output: one `task ...` line per task.
pub fn shell_lines(stages: &[GenStage]) -> Vec<String> {
    let mut out = Vec::new();
    for s in stages {
        let d = &s.def;
        for t in &s.tasks {
            let mut line = format!(
                "task {} {} {} {} {} {} {} {} {}",
                d.task_type,
                d.task_mode,
                d.processes,
                t.length.text,
                d.read_buffer,
                d.write_buffer,
                t.inputs.len(),
                t.outputs.len(),
                d.interleave
            );
            for f in &t.inputs {
                line.push(' ');
                line.push_str(&f.path());
            }
            for f in &t.outputs {
                line.push_str(&format!(" {} {}", f.path(), f.size.text));
            }
            out.push(line);
        }
    }
    out
}

/// The original `getSetup()` output: `mkdir -p` lines, then one `dd` per filesystem input.
pub fn setup_lines(stages: &[GenStage]) -> Vec<String> {
    let mut dirs: Vec<String> = Vec::new();
    let mut add = |d: String| {
        if !dirs.contains(&d) {
            dirs.push(d);
        }
    };
    for s in stages {
        let Some(t0) = s.tasks.first() else { continue };
        for (k, input) in s.def.inputs.iter().enumerate() {
            if matches!(input.source, Some((Source::Filesystem, _))) {
                add(file_dir(&format!("{}_Input_{k}_1", s.def.name)));
            }
            for f in &t0.outputs {
                add(file_dir(&f.name));
            }
        }
    }
    let mut out: Vec<String> = dirs.into_iter().map(|d| format!("mkdir -p {d}")).collect();
    for s in stages {
        for f in &s.setup_files {
            out.push(format!(
                "dd if=/dev/zero of='{}'  bs='{}' count=1",
                f.path(),
                f.size.text
            ));
        }
    }
    out
}
