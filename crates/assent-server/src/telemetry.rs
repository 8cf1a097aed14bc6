//! `GET /metrics`: Prometheus text, behind the admin token (docs/metrics.md lists every metric).
//!
//! Each [`AppState`] owns its own recorder and records into it directly, not through the
//! `metrics` macros and a process-global recorder: a process that builds many states (the
//! tests) keeps their counts apart, and nothing is installed globally. Labels hold only
//! values from fixed sets (route templates, methods, status codes, outcome names), never an
//! environment id, client id or `auth_req_id`.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics::{Counter, Histogram, Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};

use assent_store::{BATCH_SIZE_BOUNDS, COMMIT_DURATION_BOUNDS_MICROS, CacheStats, WriteStats};

use crate::state::AppState;

const HTTP_REQUESTS: &str = "assent_http_requests_total";
const HTTP_DURATION: &str = "assent_http_request_duration_seconds";
const CIBA_POLL_OUTCOMES: &str = "assent_ciba_poll_outcomes_total";
const CIBA_REQUESTS: &str = "assent_ciba_requests_total";
const STORE_COMMITS: &str = "assent_store_commits_total";
const STORE_TRANSITIONS: &str = "assent_store_transitions_total";
const STORE_QUEUED: &str = "assent_store_queued_transitions";
const STORE_BATCH_SIZE: &str = "assent_store_batch_size";
const STORE_COMMIT_DURATION: &str = "assent_store_commit_duration_seconds";
const CACHE_HITS: &str = "assent_directory_cache_hits_total";
const CACHE_MISSES: &str = "assent_directory_cache_misses_total";
const CACHE_INVALIDATIONS: &str = "assent_directory_cache_invalidations_total";

/// Upper bounds of the request-duration histogram, in seconds: 0.5 ms to 5 s.
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The route label of a request that matched no route (the 404 fallbacks).
const UNMATCHED: &str = "unmatched";

const METADATA: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, None);

/// How a poll of the token endpoint with the CIBA grant was answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollOutcome {
    /// `authorization_pending`.
    Pending,
    /// `slow_down`.
    SlowDown,
    /// Approved, and tokens were issued (the request is now redeemed).
    Redeemed,
    /// `access_denied`: denied or cancelled.
    Denied,
    /// `expired_token`.
    Expired,
    /// `invalid_grant`: an unknown, another client's or already redeemed `auth_req_id`.
    InvalidGrant,
    /// Any other error (for example `unauthorized_client`, a store failure).
    Error,
}

impl PollOutcome {
    pub fn label(self) -> &'static str {
        match self {
            PollOutcome::Pending => "pending",
            PollOutcome::SlowDown => "slow_down",
            PollOutcome::Redeemed => "redeemed",
            PollOutcome::Denied => "denied",
            PollOutcome::Expired => "expired",
            PollOutcome::InvalidGrant => "invalid_grant",
            PollOutcome::Error => "error",
        }
    }
}

/// The metrics of one server. Cheap to clone: the recorder is shared.
#[derive(Clone)]
pub struct Metrics {
    recorder: Arc<PrometheusRecorder>,
    /// The handles of each route's counters and histogram, registered on first use: a request
    /// then counts itself without building labels or hashing a key (`http_request`).
    routes: Arc<RwLock<HashMap<String, RouteHandles>>>,
}

/// One route's request counters (by method, then status) and duration histogram.
struct RouteHandles {
    duration: Histogram,
    requests: HashMap<String, HashMap<u16, Counter>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let builder = PrometheusBuilder::new();
        // Only fails on an empty list of buckets.
        let builder = match builder.set_buckets(DURATION_BUCKETS) {
            Ok(b) => b,
            Err(_) => PrometheusBuilder::new(),
        };
        Metrics {
            recorder: Arc::new(builder.build_recorder()),
            routes: Arc::default(),
        }
    }

    /// One answered HTTP request of `route` (a path template or [`UNMATCHED`]).
    pub fn http_request(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        {
            let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(handles) = routes.get(route)
                && let Some(counter) = handles.requests.get(method).and_then(|s| s.get(&status))
            {
                counter.increment(1);
                handles.duration.record(seconds);
                return;
            }
        }
        // First of its route, method and status: register the handles once.
        let mut routes = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        let handles = routes
            .entry(route.to_owned())
            .or_insert_with(|| RouteHandles {
                duration: self.recorder.register_histogram(
                    &Key::from_parts(HTTP_DURATION, vec![Label::new("route", route.to_owned())]),
                    &METADATA,
                ),
                requests: HashMap::new(),
            });
        let counter = handles
            .requests
            .entry(method.to_owned())
            .or_default()
            .entry(status)
            .or_insert_with(|| {
                let labels = vec![
                    Label::new("route", route.to_owned()),
                    Label::new("method", method.to_owned()),
                    Label::new("status", status.to_string()),
                ];
                self.recorder
                    .register_counter(&Key::from_parts(HTTP_REQUESTS, labels), &METADATA)
            });
        counter.increment(1);
        handles.duration.record(seconds);
    }

    /// One CIBA poll answered with `outcome`.
    pub fn ciba_poll(&self, outcome: PollOutcome) {
        let labels = vec![Label::new("outcome", outcome.label())];
        self.recorder
            .register_counter(&Key::from_parts(CIBA_POLL_OUTCOMES, labels), &METADATA)
            .increment(1);
    }

    /// One CIBA request acknowledged (stored, `auth_req_id` returned).
    pub fn ciba_request(&self) {
        self.recorder
            .register_counter(&Key::from_name(CIBA_REQUESTS), &METADATA)
            .increment(1);
    }

    /// The exposition text, with the store's write counters and the directory cache's as of
    /// now.
    pub fn render(&self, stats: WriteStats, cache: Option<CacheStats>) -> String {
        self.recorder
            .register_counter(&Key::from_name(STORE_COMMITS), &METADATA)
            .absolute(stats.commits);
        self.recorder
            .register_counter(&Key::from_name(STORE_TRANSITIONS), &METADATA)
            .absolute(stats.transitions);
        // A queue length, far below 2^53: exact as an f64.
        let queued = stats.queued as f64;
        self.recorder
            .register_gauge(&Key::from_name(STORE_QUEUED), &METADATA)
            .set(queued);
        if let Some(cache) = cache {
            for (name, value) in [
                (CACHE_HITS, cache.hits),
                (CACHE_MISSES, cache.misses),
                (CACHE_INVALIDATIONS, cache.invalidations),
            ] {
                self.recorder
                    .register_counter(&Key::from_name(name), &METADATA)
                    .absolute(value);
            }
        }
        let mut text = self.recorder.handle().render();
        // The store keeps these two as bucket counts already: written out as they are.
        histogram(
            &mut text,
            STORE_BATCH_SIZE,
            "Transitions per committed group commit.",
            BATCH_SIZE_BOUNDS.iter().map(|&b| b.to_string()),
            &stats.batch_sizes,
            &stats.transitions.to_string(),
            stats.commits,
        );
        histogram(
            &mut text,
            STORE_COMMIT_DURATION,
            "Time of a group commit from BEGIN to the end of COMMIT (its fsync included).",
            COMMIT_DURATION_BOUNDS_MICROS.iter().map(|&b| seconds(b)),
            &stats.commit_durations,
            &seconds(stats.commit_micros),
            stats.commits,
        );
        text
    }
}

/// µs as seconds, exactly (`2500` → `0.0025`).
fn seconds(micros: u64) -> String {
    let whole = micros / 1_000_000;
    let frac = micros % 1_000_000;
    if frac == 0 {
        return whole.to_string();
    }
    format!("{whole}.{frac:06}")
        .trim_end_matches('0')
        .to_owned()
}

/// Appends a Prometheus histogram whose cumulative bucket counts are known.
fn histogram(
    text: &mut String,
    name: &str,
    help: &str,
    bounds: impl Iterator<Item = String>,
    cumulative: &[u64],
    sum: &str,
    count: u64,
) {
    use std::fmt::Write;
    let _ = writeln!(text, "# HELP {name} {help}");
    let _ = writeln!(text, "# TYPE {name} histogram");
    for (le, n) in bounds.zip(cumulative) {
        let _ = writeln!(text, "{name}_bucket{{le=\"{le}\"}} {n}");
    }
    let _ = writeln!(text, "{name}_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(text, "{name}_sum {sum}");
    let _ = writeln!(text, "{name}_count {count}");
}

/// Counts every request by its matched route template, method and status, and records its
/// duration. Runs next to the correlation layer, so every answer is counted, the 404s too.
pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // A `MatchedPath` is an `Arc<str>`: cloning it allocates nothing.
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = req.method().clone();
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    state.metrics.http_request(
        route.as_ref().map_or(UNMATCHED, MatchedPath::as_str),
        method.as_str(),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// `GET /metrics` (behind the admin token: see `v1::require_admin`).
pub async fn serve(State(state): State<AppState>) -> Response {
    let body = state
        .metrics
        .render(state.store.write_stats(), state.store.cache_stats());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn microseconds_are_written_as_exact_seconds() {
        assert_eq!(seconds(0), "0");
        assert_eq!(seconds(500), "0.0005");
        assert_eq!(seconds(2_500), "0.0025");
        assert_eq!(seconds(1_000_000), "1");
        assert_eq!(seconds(1_250_000), "1.25");
    }
}
