//! Running one scenario: workers that share the bounds (a deadline, a count) and live counters,
//! each keeping its own histogram and error kinds (merged at the end, so workers never contend
//! on them); a progress line; CPU time read before and after.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::histogram::Histogram;
use super::procfs::CpuClock;

/// When a scenario stops starting operations.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub duration: Option<Duration>,
    pub count: Option<u64>,
}

/// What the workers of one scenario share.
#[derive(Debug)]
pub struct Shared {
    deadline: Option<Instant>,
    count: Option<u64>,
    claimed: AtomicU64,
    ops: AtomicU64,
    errors: AtomicU64,
    /// Cancelled on Ctrl-C: workers drop what they are doing.
    pub cancel: CancellationToken,
}

impl Shared {
    fn new(bounds: Bounds, cancel: CancellationToken) -> Shared {
        Shared {
            deadline: bounds.duration.map(|d| Instant::now() + d),
            count: bounds.count,
            claimed: AtomicU64::new(0),
            ops: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            cancel,
        }
    }

    /// Whether another operation may start; claims one of the count when it may.
    pub fn claim(&self) -> bool {
        if self.cancel.is_cancelled() || self.deadline.is_some_and(|d| Instant::now() >= d) {
            return false;
        }
        match self.count {
            Some(n) => self.claimed.fetch_add(1, Relaxed) < n,
            None => true,
        }
    }

    /// Whether an operation due at `due` would still be inside the run.
    pub fn before_deadline(&self, due: Instant) -> bool {
        self.deadline.is_none_or(|d| due < d)
    }

    /// Runs `f` unless Ctrl-C comes first (`None`).
    pub async fn or_cancel<T>(&self, f: impl Future<Output = T>) -> Option<T> {
        tokio::select! {
            biased;
            () = self.cancel.cancelled() => None,
            v = f => Some(v),
        }
    }

    /// Sleeps until `until`; `false` when Ctrl-C came first.
    pub async fn sleep_until(&self, until: Instant) -> bool {
        self.or_cancel(tokio::time::sleep_until(until.into()))
            .await
            .is_some()
    }
}

/// One worker's results.
#[derive(Debug, Default)]
pub struct Tally {
    pub latency: Histogram,
    pub errors: BTreeMap<String, u64>,
    /// `authorization_pending` answers inside whole flows (each costs the flow an interval).
    pub pending_answers: u64,
}

impl Tally {
    pub fn ok(&mut self, shared: &Shared, took: Duration) {
        self.latency.record(took);
        shared.ops.fetch_add(1, Relaxed);
    }

    pub fn error(&mut self, shared: &Shared, kind: String) {
        *self.errors.entry(kind).or_default() += 1;
        shared.errors.fetch_add(1, Relaxed);
    }

    pub fn merge(&mut self, other: &Tally) {
        self.latency.merge(&other.latency);
        for (kind, n) in &other.errors {
            *self.errors.entry(kind.clone()).or_default() += n;
        }
        self.pending_answers += other.pending_answers;
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Where CPU time is read: the server's process (when known) and this process.
#[derive(Debug, Clone)]
pub struct CpuMeter {
    pub clock: CpuClock,
    /// The server's stat file, or why there is none.
    pub server: Result<PathBuf, String>,
}

/// CPU time consumed during a scenario.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUse {
    pub server: Option<Duration>,
    pub bench: Option<Duration>,
}

/// Reads a CPU counter before and after.
struct CpuSpan<'a> {
    clock: CpuClock,
    path: Option<&'a std::path::Path>,
    start: Option<Duration>,
}

impl<'a> CpuSpan<'a> {
    fn start(clock: CpuClock, path: Option<&'a std::path::Path>) -> Self {
        let start = path.and_then(|p| clock.read(p));
        CpuSpan { clock, path, start }
    }

    fn end(&self) -> Option<Duration> {
        let end = self.clock.read(self.path?)?;
        end.checked_sub(self.start?)
    }
}

/// Measures `f` by the CPU the server's process and this process spend while it runs.
pub async fn with_cpu<T>(meter: &CpuMeter, f: impl Future<Output = T>) -> (T, CpuUse) {
    let own = super::procfs::own_stat();
    let server = CpuSpan::start(meter.clock, meter.server.as_deref().ok());
    let bench = CpuSpan::start(meter.clock, Some(&own));
    let value = f.await;
    let used = CpuUse {
        server: server.end(),
        bench: bench.end(),
    };
    (value, used)
}

/// A scenario's results.
#[derive(Debug)]
pub struct Measured {
    pub name: String,
    pub tally: Tally,
    /// From the first operation's start to the last worker's end.
    pub elapsed: Duration,
    pub cpu: CpuUse,
    /// Why the server's CPU column is empty, when it is.
    pub server_cpu_note: Option<String>,
}

impl Measured {
    pub fn operations(&self) -> u64 {
        self.tally.latency.count()
    }

    pub fn per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.operations() as f64 / secs
        } else {
            0.0
        }
    }

    /// CPU µs per successful operation.
    pub fn per_operation(&self, cpu: Option<Duration>) -> Option<f64> {
        let ops = self.operations();
        cpu.filter(|_| ops > 0)
            .map(|d| d.as_secs_f64() * 1e6 / ops as f64)
    }
}

/// Runs `workers` copies of `worker` under `bounds` with a progress line labelled `label`
/// (`total`: the count a progress line shows progress towards, e.g. while seeding).
pub async fn run_workers<F, Fut>(
    label: &str,
    bounds: Bounds,
    total: Option<u64>,
    cancel: &CancellationToken,
    workers: usize,
    worker: F,
) -> (Tally, Duration)
where
    F: Fn(usize, Arc<Shared>) -> Fut,
    Fut: Future<Output = Tally> + Send + 'static,
{
    let shared = Arc::new(Shared::new(bounds, cancel.clone()));
    let started = Instant::now();
    let progress = Progress::start(label, shared.clone(), total);
    let handles: Vec<_> = (0..workers)
        .map(|i| tokio::spawn(worker(i, shared.clone())))
        .collect();
    let mut tally = Tally::default();
    for handle in handles {
        match handle.await {
            Ok(t) => tally.merge(&t),
            Err(e) => {
                *tally
                    .errors
                    .entry(format!("worker failed: {e}"))
                    .or_default() += 1
            }
        }
    }
    let elapsed = started.elapsed();
    progress.finish().await;
    (tally, elapsed)
}

/// The live progress line on stderr: rewritten in place every 500 ms on a terminal, a plain
/// line per second otherwise.
struct Progress {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    fn start(label: &str, shared: Arc<Shared>, total: Option<u64>) -> Progress {
        let stop = CancellationToken::new();
        let terminal = std::io::stderr().is_terminal();
        let every = if terminal {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(1)
        };
        let label = label.to_owned();
        let token = stop.clone();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut ticks = tokio::time::interval_at((started + every).into(), every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    () = token.cancelled() => break,
                    _ = ticks.tick() => {}
                }
                let line = progress_line(
                    &label,
                    started.elapsed(),
                    shared.ops.load(Relaxed),
                    total,
                    shared.errors.load(Relaxed),
                );
                let mut err = std::io::stderr().lock();
                let _ = if terminal {
                    write!(err, "\r\x1b[2K{line}")
                } else {
                    writeln!(err, "{line}")
                };
                let _ = err.flush();
            }
            if terminal {
                let _ = write!(std::io::stderr(), "\r\x1b[2K");
            }
        });
        Progress { stop, task }
    }

    async fn finish(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

fn progress_line(
    label: &str,
    elapsed: Duration,
    ops: u64,
    total: Option<u64>,
    errors: u64,
) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { ops as f64 / secs } else { 0.0 };
    let done = match total {
        Some(t) => format!("{}/{}", group(ops), group(t)),
        None => group(ops),
    };
    format!(
        "{label}: {secs:.1} s, {done} ops, {}/s, {} errors",
        group(rate.round() as u64),
        group(errors)
    )
}

/// `1234567` as `1,234,567`.
pub fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1_234_567), "1,234,567");
    }

    #[test]
    fn progress_line_shows_rate_and_errors() {
        let line = progress_line("init", Duration::from_secs(2), 5000, None, 3);
        assert_eq!(line, "init: 2.0 s, 5,000 ops, 2,500/s, 3 errors");
        let line = progress_line("seeding", Duration::from_secs(1), 10, Some(50), 0);
        assert_eq!(line, "seeding: 1.0 s, 10/50 ops, 10/s, 0 errors");
    }

    #[test]
    fn a_count_bound_hands_out_exactly_that_many_claims() {
        let shared = Shared::new(
            Bounds {
                duration: None,
                count: Some(3),
            },
            CancellationToken::new(),
        );
        let claims = (0..10).filter(|_| shared.claim()).count();
        assert_eq!(claims, 3);
    }

    #[test]
    fn cancelling_stops_claims() {
        let cancel = CancellationToken::new();
        let shared = Shared::new(
            Bounds {
                duration: None,
                count: None,
            },
            cancel.clone(),
        );
        assert!(shared.claim());
        cancel.cancel();
        assert!(!shared.claim());
    }

    #[test]
    fn a_deadline_bounds_claims_and_due_times() {
        let shared = Shared::new(
            Bounds {
                duration: Some(Duration::ZERO),
                count: None,
            },
            CancellationToken::new(),
        );
        assert!(!shared.claim());
        assert!(!shared.before_deadline(Instant::now()));
        let open = Shared::new(
            Bounds {
                duration: None,
                count: None,
            },
            CancellationToken::new(),
        );
        assert!(open.before_deadline(Instant::now() + Duration::from_secs(3600)));
    }

    #[test]
    fn tallies_merge_latencies_and_error_kinds() {
        let shared = Shared::new(
            Bounds {
                duration: None,
                count: None,
            },
            CancellationToken::new(),
        );
        let mut a = Tally::default();
        a.ok(&shared, Duration::from_millis(1));
        a.error(&shared, "slow_down".into());
        let mut b = Tally::default();
        b.error(&shared, "slow_down".into());
        b.error(&shared, "HTTP 500".into());
        b.pending_answers = 2;
        a.merge(&b);
        assert_eq!(a.latency.count(), 1);
        assert_eq!(a.errors.get("slow_down"), Some(&2));
        assert_eq!(a.error_count(), 3);
        assert_eq!(a.pending_answers, 2);
        assert_eq!(shared.errors.load(Relaxed), 3);
        assert_eq!(shared.ops.load(Relaxed), 1);
    }
}
