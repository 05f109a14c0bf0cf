//! Progress of a running campaign: a bar on a terminal, periodic plain lines otherwise, or
//! nothing with `--quiet`.

use crate::driver::Counts;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressMode {
    Bar,
    Lines,
    Quiet,
}

impl ProgressMode {
    /// A bar when stderr is a terminal, plain lines otherwise; quiet wins.
    pub fn detect(quiet: bool) -> Self {
        if quiet {
            ProgressMode::Quiet
        } else if std::io::stderr().is_terminal() {
            ProgressMode::Bar
        } else {
            ProgressMode::Lines
        }
    }
}

pub struct Progress {
    mode: ProgressMode,
    bar: Option<ProgressBar>,
    last_line: Option<Instant>,
    every: Duration,
}

/// Tasks per second and the estimated time left.
pub fn rate_and_eta(c: &Counts, elapsed: Duration) -> (f64, Option<Duration>) {
    let secs = elapsed.as_secs_f64().max(1e-3);
    let rate = c.finished() as f64 / secs;
    let left = c.total.saturating_sub(c.finished());
    let eta = (rate > 0.0).then(|| Duration::from_secs_f64(left as f64 / rate));
    (rate, eta)
}

pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

impl Progress {
    pub fn new(mode: ProgressMode, total: u64) -> Self {
        let bar = (mode == ProgressMode::Bar).then(|| {
            let b = ProgressBar::new(total);
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        Progress {
            mode,
            bar,
            last_line: None,
            every: Duration::from_secs(5),
        }
    }

    pub fn update(&mut self, c: &Counts, elapsed: Duration, pilots: &str) {
        let (rate, eta) = rate_and_eta(c, elapsed);
        let eta = eta.map(format_duration).unwrap_or_else(|| "?".into());
        match self.mode {
            ProgressMode::Quiet => {}
            ProgressMode::Bar => {
                if let Some(b) = &self.bar {
                    b.set_position(c.finished());
                    b.set_message(format!(
                        "done {} failed {} running {} | {rate:.0} tasks/s | ETA {eta} | {pilots}",
                        c.done, c.failed, c.executing
                    ));
                }
            }
            ProgressMode::Lines => {
                if self
                    .last_line
                    .map(|t| t.elapsed() >= self.every)
                    .unwrap_or(true)
                {
                    self.last_line = Some(Instant::now());
                    eprintln!(
                        "[{}] {}/{} finished: done {} failed {} canceled {} running {} queued {} | {rate:.0} tasks/s | ETA {eta} | {pilots}",
                        format_duration(elapsed),
                        c.finished(),
                        c.total,
                        c.done,
                        c.failed,
                        c.canceled,
                        c.executing,
                        c.scheduled + c.ready
                    );
                }
            }
        }
    }

    pub fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_follows_the_rate() {
        let c = Counts {
            total: 100,
            done: 50,
            ..Default::default()
        };
        let (rate, eta) = rate_and_eta(&c, Duration::from_secs(10));
        assert_eq!(rate, 5.0);
        assert_eq!(eta, Some(Duration::from_secs(10)));
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_secs(75)), "1m15s");
        assert_eq!(format_duration(Duration::from_secs(3700)), "1h01m");
    }
}
