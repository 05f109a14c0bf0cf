//! Scale check of the workflow language: a one-million-task array between two stage
//! barriers must parse, validate and build its DAG in under 5 s and 1 GB.
//!
//! `cargo run --release -p emanager-bench --bin workflow_scale [-- TASKS]`
//! Prints the time of each step and the peak RSS (VmHWM from /proc/self/status).

use emanager::workflow::{self, dag::Dag, Format};
use std::time::Instant;

/// Three stages: one `prep` task, the array, one `reduce` task; plus a task that depends on
/// the whole array by its base name.
fn workflow_text(tasks: u64) -> String {
    format!(
        r#"name = "scale"
[defaults]
retries = 1
env = {{ OMP_NUM_THREADS = "1" }}

[[stages]]
name = "prep"
[[stages]]
name = "sim"
[[stages]]
name = "reduce"

[[tasks]]
name = "prep"
stage = "prep"
command = ["./prep"]

[[tasks]]
name = "sim-{{index}}"
count = {tasks}
stage = "sim"
command = ["./sim", "--seed", "{{index}}"]
env = {{ SEED = "{{index}}" }}
output_files = ["out/{{index}}.h5"]
est_duration_s = 60

[[tasks]]
name = "reduce"
stage = "reduce"
command = ["./reduce"]

[[tasks]]
name = "plot"
depends_on = ["sim"]
command = ["./plot"]
"#
    )
}

/// Peak resident set size in MiB, from /proc/self/status.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// CPU time (user + system) of this process in seconds, from /proc/self/stat: on a loaded
/// machine it tells the work apart from the waiting.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime) are 11 and 12 after the name and state.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn main() {
    let tasks: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("TASKS is a number"))
        .unwrap_or(1_000_000);
    let text = workflow_text(tasks);

    let cpu0 = cpu_seconds().unwrap_or(f64::NAN);
    let t0 = Instant::now();
    let wf = match workflow::parse_str(&text, Format::Toml, "scale.toml") {
        Ok(wf) => wf,
        Err(e) => panic!("the scale workflow is invalid: {e}"),
    };
    let parsed = t0.elapsed();
    let t1 = Instant::now();
    let mut dag = Dag::new(&wf);
    let built = t1.elapsed();
    let total = t0.elapsed();
    let cpu = cpu_seconds().unwrap_or(f64::NAN) - cpu0;
    let rss_after_build = peak_rss_mb().unwrap_or(f64::NAN);

    // Run the whole graph in index order, as a dispatcher would, to check every task is
    // released exactly once.
    let t2 = Instant::now();
    let mut ready = dag.roots();
    let mut released = ready.len();
    while let Some(t) = ready.pop() {
        let next = dag.complete(t);
        released += next.len();
        ready.extend(next);
    }
    let drained = t2.elapsed();
    assert_eq!(
        released,
        wf.tasks.len(),
        "every task is released exactly once"
    );

    println!("workflow_scale: {} tasks", wf.tasks.len());
    println!(
        "  parse + validate + expand  {:>8.3} s",
        parsed.as_secs_f64()
    );
    println!(
        "  build DAG                  {:>8.3} s",
        built.as_secs_f64()
    );
    println!(
        "  total                      {:>8.3} s  (budget 5 s)",
        total.as_secs_f64()
    );
    println!("  of which CPU (user + sys)  {:>8.3} s", cpu);
    println!(
        "  peak RSS after DAG         {:>8.1} MiB (budget 1024 MiB)",
        rss_after_build
    );
    println!(
        "  release all (complete)     {:>8.3} s",
        drained.as_secs_f64()
    );
    let ok = total.as_secs_f64() < 5.0 && rss_after_build < 1024.0;
    println!("  {}", if ok { "OK" } else { "OVER BUDGET" });
    if !ok {
        std::process::exit(1);
    }
}
