//! What is wrong with this process right now, for `/healthz` (see [`crate::metrics::serve`]).
//!
//! Two kinds of signal, both process-wide:
//! - a **problem** a component reports while it lasts ([`unhealthy`] when the broker or the
//!   state store fails, [`healthy`] when it answers again);
//! - a **loop** that must keep turning ([`watch`] it with a limit, [`beat`] it each turn): a
//!   loop that has not turned within its limit is a problem too (a hung run loop, a heartbeat
//!   task that died).
//!
//! `/healthz` answers 200 `ok` when there is no problem, else 503 with one line per problem.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

struct Problem {
    why: String,
    since: Instant,
}

struct Loop {
    limit: Duration,
    last: Instant,
}

#[derive(Default)]
struct Health {
    problems: BTreeMap<&'static str, Problem>,
    loops: BTreeMap<&'static str, Loop>,
}

static HEALTH: Mutex<Option<Health>> = Mutex::new(None);
/// Set while any problem is recorded: lets [`healthy`] on the hot path skip the lock.
static ANY_PROBLEM: AtomicBool = AtomicBool::new(false);

fn with<T>(f: impl FnOnce(&mut Health) -> T) -> T {
    let mut guard = HEALTH.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(Health::default))
}

/// `component` is failing (`why` says how); kept, with its start, until [`healthy`].
pub fn unhealthy(component: &'static str, why: impl Into<String>) {
    let why = why.into();
    with(|h| {
        h.problems
            .entry(component)
            .and_modify(|p| p.why = why.clone())
            .or_insert(Problem {
                why,
                since: Instant::now(),
            });
    });
    ANY_PROBLEM.store(true, Ordering::Release);
}

/// `component` works again. Cheap when nothing is wrong.
pub fn healthy(component: &'static str) {
    if !ANY_PROBLEM.load(Ordering::Acquire) {
        return;
    }
    with(|h| {
        h.problems.remove(component);
        ANY_PROBLEM.store(!h.problems.is_empty(), Ordering::Release);
    });
}

/// From now on, `name` must [`beat`] at least every `limit`.
pub fn watch(name: &'static str, limit: Duration) {
    with(|h| {
        h.loops.insert(
            name,
            Loop {
                limit,
                last: Instant::now(),
            },
        );
    });
}

/// `name` turned once.
pub fn beat(name: &'static str) {
    with(|h| {
        if let Some(l) = h.loops.get_mut(name) {
            l.last = Instant::now();
        }
    });
}

/// `name` ended on purpose: no longer watched.
pub fn unwatch(name: &'static str) {
    with(|h| {
        h.loops.remove(name);
    });
}

/// `Ok` when nothing is wrong, else one line per problem (component, why, for how long).
pub fn check() -> Result<(), Vec<String>> {
    let now = Instant::now();
    let lines: Vec<String> = with(|h| {
        let problems = h.problems.iter().map(|(c, p)| {
            format!(
                "{c}: {} (for {:.0} s)",
                p.why,
                now.duration_since(p.since).as_secs_f64()
            )
        });
        let stalls = h
            .loops
            .iter()
            .filter(|(_, l)| now.duration_since(l.last) > l.limit)
            .map(|(name, l)| {
                format!(
                    "{name}: has not turned for {:.0} s (limit {:.0} s)",
                    now.duration_since(l.last).as_secs_f64(),
                    l.limit.as_secs_f64()
                )
            });
        problems.chain(stalls).collect()
    });
    if lines.is_empty() {
        Ok(())
    } else {
        Err(lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The problems of this test's own components (other tests of the crate run in
    /// parallel and may report theirs).
    fn mine() -> Vec<String> {
        check()
            .err()
            .unwrap_or_default()
            .into_iter()
            .filter(|l| l.starts_with("health test "))
            .collect()
    }

    #[test]
    fn problems_and_stalled_loops_show_until_they_clear() {
        unhealthy("health test broker", "connection refused");
        unhealthy("health test broker", "connection reset");
        let lines = mine();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with("health test broker: connection reset (for "),
            "{lines:?}"
        );
        healthy("health test broker");
        assert!(mine().is_empty(), "{:?}", mine());

        watch("health test loop", Duration::from_millis(50));
        beat("health test loop");
        assert!(mine().is_empty());
        std::thread::sleep(Duration::from_millis(80));
        let lines = mine();
        assert!(
            lines.len() == 1 && lines[0].starts_with("health test loop: has not turned for"),
            "{lines:?}"
        );
        beat("health test loop");
        assert!(mine().is_empty());
        std::thread::sleep(Duration::from_millis(80));
        unwatch("health test loop");
        assert!(mine().is_empty());
    }
}
