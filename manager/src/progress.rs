//! Progress of a running campaign, on stderr: a bar when stderr is a terminal, a plain line
//! every few seconds otherwise (a log file, a batch job's output), nothing with `--quiet` or
//! `--json`. The decision and the texts are pure functions ([`ProgressMode::choose`],
//! [`progress_line`], [`bar_message`], [`line_due`]); `Progress` only draws them.

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

/// How often a plain progress line is printed (the first one at once).
pub const LINE_EVERY: Duration = Duration::from_secs(5);

impl ProgressMode {
    /// The mode for this process: progress goes to stderr, so stderr decides.
    pub fn detect(quiet: bool) -> Self {
        Self::choose(quiet, std::io::stderr().is_terminal())
    }

    /// Quiet wins; else a bar on a terminal (it redraws itself in place), plain periodic
    /// lines elsewhere (a file or pipe would fill with redraws).
    pub fn choose(quiet: bool, stderr_is_terminal: bool) -> Self {
        match (quiet, stderr_is_terminal) {
            (true, _) => ProgressMode::Quiet,
            (false, true) => ProgressMode::Bar,
            (false, false) => ProgressMode::Lines,
        }
    }
}

/// The message beside the bar: done/failed/running, rate, ETA and the pilots.
pub fn bar_message(c: &Counts, elapsed: Duration, pilots: &str) -> String {
    let (rate, eta) = rate_and_eta(c, elapsed);
    let eta = eta.map(format_duration).unwrap_or_else(|| "?".into());
    format!(
        "done {} failed {} running {} | {rate:.0} tasks/s | ETA {eta} | {pilots}",
        c.done, c.failed, c.executing
    )
}

/// One plain progress line, e.g. `[12.0s] 30/42 finished: done 29 failed 1 canceled 0
/// running 2 queued 10 | 2 tasks/s | ETA 6.0s | 1 pilot(s), 2 cores`.
pub fn progress_line(c: &Counts, elapsed: Duration, pilots: &str) -> String {
    let (rate, eta) = rate_and_eta(c, elapsed);
    let eta = eta.map(format_duration).unwrap_or_else(|| "?".into());
    format!(
        "[{}] {}/{} finished: done {} failed {} canceled {} running {} queued {} | {rate:.0} tasks/s | ETA {eta} | {pilots}",
        format_duration(elapsed),
        c.finished(),
        c.total,
        c.done,
        c.failed,
        c.canceled,
        c.executing,
        c.scheduled + c.ready
    )
}

/// Whether a plain line is due at `now`: the first one at once, then one per `every`.
pub fn line_due(last: Option<Instant>, now: Instant, every: Duration) -> bool {
    last.is_none_or(|t| now.saturating_duration_since(t) >= every)
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
            every: LINE_EVERY,
        }
    }

    pub fn update(&mut self, c: &Counts, elapsed: Duration, pilots: &str) {
        match self.mode {
            ProgressMode::Quiet => {}
            ProgressMode::Bar => {
                if let Some(b) = &self.bar {
                    b.set_position(c.finished());
                    b.set_message(bar_message(c, elapsed, pilots));
                }
            }
            ProgressMode::Lines => {
                let now = Instant::now();
                if line_due(self.last_line, now, self.every) {
                    self.last_line = Some(now);
                    eprintln!("{}", progress_line(c, elapsed, pilots));
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
    fn a_terminal_gets_a_bar_anything_else_plain_lines_and_quiet_wins() {
        assert_eq!(ProgressMode::choose(false, true), ProgressMode::Bar);
        assert_eq!(ProgressMode::choose(false, false), ProgressMode::Lines);
        assert_eq!(ProgressMode::choose(true, true), ProgressMode::Quiet);
        assert_eq!(ProgressMode::choose(true, false), ProgressMode::Quiet);
    }

    #[test]
    fn plain_lines_come_at_once_then_every_period() {
        let t0 = Instant::now();
        assert!(line_due(None, t0, LINE_EVERY));
        assert!(!line_due(Some(t0), t0 + Duration::from_secs(4), LINE_EVERY));
        assert!(line_due(Some(t0), t0 + LINE_EVERY, LINE_EVERY));
        assert_eq!(LINE_EVERY, Duration::from_secs(5));
    }

    #[test]
    fn the_progress_texts_show_counts_rate_and_eta() {
        let c = Counts {
            total: 42,
            done: 29,
            failed: 1,
            executing: 2,
            ready: 4,
            scheduled: 6,
            ..Default::default()
        };
        assert_eq!(
            progress_line(&c, Duration::from_secs(15), "1 pilot(s), 2 cores"),
            "[15.0s] 30/42 finished: done 29 failed 1 canceled 0 running 2 queued 10 | 2 tasks/s | ETA 6.0s | 1 pilot(s), 2 cores"
        );
        assert_eq!(
            bar_message(&c, Duration::from_secs(15), "p"),
            "done 29 failed 1 running 2 | 2 tasks/s | ETA 6.0s | p"
        );
        let idle = Counts {
            total: 3,
            ..Default::default()
        };
        assert!(progress_line(&idle, Duration::from_secs(1), "p").contains("ETA ?"));
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_secs(75)), "1m15s");
        assert_eq!(format_duration(Duration::from_secs(3700)), "1h01m");
    }
}
