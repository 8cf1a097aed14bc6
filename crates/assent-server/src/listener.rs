//! Assent's own accept loop (HTTP/1.1 over hyper): connection limits, client timeouts and a
//! shutdown deadline.
//!
//! Why the timeouts look the way they do: later endpoints (long polls, device long polls, event
//! streams) have the *server* hold an answer for up to 60 s or forever. A timeout on the whole
//! request or response would cut them, so there is none. Every timeout here measures only what
//! the *client* owes us:
//!
//! - **header-read timeout**: the request line and headers must arrive within it, counted from
//!   the accept (first request) or from the first byte of the next request on a keep-alive
//!   connection. Partial request lines and one-byte-per-second headers are cut by it.
//! - **body-read timeout**: counted from the moment the headers are in; it fires only while a
//!   handler is *waiting* for body bytes that have not come, so a handler that holds its answer
//!   after reading the body (or never reads one) is not affected. The client gets a 408 in the
//!   endpoint's error style and the connection is closed.
//! - **idle timeout**: a keep-alive connection with no request in flight (every response fully
//!   handed to the socket) and no byte of a next request is closed after it. A response still
//!   being streamed counts as in flight, so event streams are never "idle".
//!
//! A cap on open connections keeps the process below its file-descriptor limit: at the cap the
//! loop stops accepting (new connections wait in the kernel's listen backlog) and logs a
//! rate-limited warning; accept errors (EMFILE…) back off instead of spinning.
//!
//! Shutdown: stop accepting, close connections with no request in flight at once, let requests
//! in flight finish (their connections then close), and after the shutdown deadline cut whatever
//! remains and say how many. HTTP/2 is not offered (clients of Assent speak HTTP/1.1).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use axum::response::IntoResponse;
use hyper::body::{Body as HttpBody, Bytes, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

/// File descriptors kept free for everything that is not a client connection (database, log,
/// outbound `jwksUrl` fetches) when the default connection cap is derived from RLIMIT_NOFILE.
const RESERVED_FDS: u64 = 128;
/// The default cap never exceeds this, whatever the descriptor limit.
const MAX_DEFAULT_CONNECTIONS: u64 = 10_000;
/// At most one "connection limit reached" / "accept failed" warning per this period.
const WARN_EVERY: Duration = Duration::from_secs(10);
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// After the shutdown deadline, how long cut connections get to notice before we return.
const ABORT_GRACE: Duration = Duration::from_secs(1);

/// The connection knobs (`--header-read-timeout`, `--body-read-timeout`, `--idle-timeout`,
/// `--max-connections`, `--shutdown-timeout`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerConfig {
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: u32,
    pub shutdown_timeout: Duration,
}

impl ListenerConfig {
    pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
    pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
    pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
}

impl Default for ListenerConfig {
    fn default() -> Self {
        ListenerConfig {
            header_read_timeout: Self::DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: Self::DEFAULT_BODY_READ_TIMEOUT,
            idle_timeout: Self::DEFAULT_IDLE_TIMEOUT,
            max_connections: default_max_connections(open_files_limit()),
            shutdown_timeout: Self::DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }
}

/// The soft RLIMIT_NOFILE of this process (`None`: unlimited or unknown). Read from
/// `/proc/self/limits`, so no `unsafe` FFI is needed; `None` where that file does not exist.
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_files_limit(&limits)
}

fn parse_open_files_limit(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The default connection cap: the descriptor limit minus [`RESERVED_FDS`] (half the limit
/// when it is tiny), at most [`MAX_DEFAULT_CONNECTIONS`]; 896 when the limit is unknown (the
/// common soft limit of 1024 minus the reserve).
pub fn default_max_connections(open_files_limit: Option<u64>) -> u32 {
    let limit = open_files_limit.unwrap_or(1024);
    let usable = if limit > 2 * RESERVED_FDS {
        limit - RESERVED_FDS
    } else {
        limit / 2
    };
    u32::try_from(usable.clamp(1, MAX_DEFAULT_CONNECTIONS)).unwrap_or(1)
}

/// Serves `app` on `listener` until `shutdown` completes, then drains (see the module doc).
/// Returns once every connection is closed or the shutdown deadline has cut the rest.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: ListenerConfig,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let max = config.max_connections.max(1);
    let config = Arc::new(config);
    let slots = Arc::new(Semaphore::new(max as usize));
    let (stage_tx, stage_rx) = watch::channel(Stage::Running);
    let mut cap_warning = LogLimiter::new(WARN_EVERY);
    let mut accept_warning = LogLimiter::new(WARN_EVERY);
    tokio::pin!(shutdown);

    'accept: loop {
        let permit = match slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if let Some(suppressed) = cap_warning.due(Instant::now()) {
                    tracing::warn!(
                        max_connections = max,
                        suppressed,
                        "connection limit reached: new connections wait until one closes (raise --max-connections, and the file descriptor limit, if this is normal load)"
                    );
                }
                tokio::select! {
                    permit = slots.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break 'accept,
                    },
                    () = &mut shutdown => break 'accept,
                }
            }
        };
        let mut backoff = ACCEPT_BACKOFF_MIN;
        let (stream, peer) = loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = &mut shutdown => break 'accept,
            };
            match accepted {
                Ok(connection) => break connection,
                Err(e) if is_connection_error(&e) => {
                    tracing::debug!(error = %e, "a connection failed before it was accepted");
                }
                Err(e) => {
                    if let Some(suppressed) = accept_warning.due(Instant::now()) {
                        tracing::warn!(
                            error = %e,
                            suppressed,
                            retry_in_ms = backoff.as_millis() as u64,
                            "accept failed; backing off"
                        );
                    }
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {},
                        () = &mut shutdown => break 'accept,
                    }
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                }
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(
            stream,
            peer,
            app.clone(),
            config.clone(),
            stage_rx.clone(),
            permit,
        ));
    }

    drop(listener);
    let open = open_connections(&slots, max);
    tracing::info!(
        connections = open,
        deadline_secs = config.shutdown_timeout.as_secs(),
        "no longer accepting connections; closing idle ones and finishing requests in flight"
    );
    let _ = stage_tx.send(Stage::Draining);
    match tokio::time::timeout(config.shutdown_timeout, slots.acquire_many(max)).await {
        Ok(_) => tracing::info!("all connections closed"),
        Err(_) => {
            tracing::warn!(
                connections = open_connections(&slots, max),
                "shutdown deadline reached; cutting the connections still open"
            );
            let _ = stage_tx.send(Stage::Abort);
            let _ = tokio::time::timeout(ABORT_GRACE, slots.acquire_many(max)).await;
        }
    }
    Ok(())
}

fn open_connections(slots: &Semaphore, max: u32) -> usize {
    (max as usize).saturating_sub(slots.available_permits())
}

/// Errors about one connection (not about the listener): accept the next one at once.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Where the server is in its life; every connection task watches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Running,
    /// Shutting down: finish what is in flight, close the rest.
    Draining,
    /// The shutdown deadline passed: close everything now.
    Abort,
}

/// What one connection is doing, as far as the timeouts care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request head, since the accept or since the first byte after idleness.
    ReadingHead { since: Instant },
    /// No request in flight and no byte of the next one yet.
    Idle { since: Instant },
    /// Requests whose responses are not yet fully handed to the socket.
    Busy { requests: usize },
}

/// Why a connection is closed by us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Close {
    HeaderReadTimeout,
    IdleTimeout,
    ShuttingDown,
}

impl Close {
    fn as_str(self) -> &'static str {
        match self {
            Close::HeaderReadTimeout => "header read timeout",
            Close::IdleTimeout => "idle timeout",
            Close::ShuttingDown => "shutting down",
        }
    }
}

/// The connection's [`Phase`], updated by the socket wrapper and the service.
struct Activity(watch::Sender<Phase>);

impl Activity {
    fn bytes_received(&self) {
        self.0.send_if_modified(|phase| match phase {
            Phase::Idle { .. } => {
                *phase = Phase::ReadingHead {
                    since: Instant::now(),
                };
                true
            }
            _ => false,
        });
    }

    fn request_started(self: &Arc<Self>) -> InFlight {
        self.0.send_modify(|phase| {
            *phase = match *phase {
                Phase::Busy { requests } => Phase::Busy {
                    requests: requests + 1,
                },
                _ => Phase::Busy { requests: 1 },
            }
        });
        InFlight(self.clone())
    }
}

/// A request in flight; dropped when its response body has been sent (or abandoned).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.0.send_modify(|phase| {
            *phase = match *phase {
                Phase::Busy { requests } if requests > 1 => Phase::Busy {
                    requests: requests - 1,
                },
                _ => Phase::Idle {
                    since: Instant::now(),
                },
            }
        });
    }
}

/// Resolves when the connection should be closed by us: a deadline of its phase passed, or
/// the server is draining and nothing is in flight.
async fn close_when_due(
    phase: &mut watch::Receiver<Phase>,
    config: &ListenerConfig,
    draining: bool,
) -> Close {
    loop {
        let current = *phase.borrow_and_update();
        let deadline = match current {
            Phase::Busy { .. } => None,
            _ if draining => return Close::ShuttingDown,
            Phase::ReadingHead { since } => {
                Some((since + config.header_read_timeout, Close::HeaderReadTimeout))
            }
            Phase::Idle { since } => Some((since + config.idle_timeout, Close::IdleTimeout)),
        };
        let changed = match deadline {
            Some((at, why)) => tokio::select! {
                () = tokio::time::sleep_until(at) => return why,
                changed = phase.changed() => changed,
            },
            None => phase.changed().await,
        };
        if changed.is_err() {
            // The sender lives as long as the connection; nothing more will change.
            std::future::pending::<()>().await;
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    config: Arc<ListenerConfig>,
    mut stage: watch::Receiver<Stage>,
    _slot: OwnedSemaphorePermit,
) {
    let (phase_tx, mut phase) = watch::channel(Phase::ReadingHead {
        since: Instant::now(),
    });
    let activity = Arc::new(Activity(phase_tx));
    let io = TokioIo::new(TrackedIo {
        stream,
        activity: activity.clone(),
    });
    let body_read_timeout = config.body_read_timeout;
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let in_flight = activity.request_started();
        handle(app.clone(), request, body_read_timeout, in_flight)
    });
    // hyper's own header timeout also runs while a keep-alive connection is idle; ours tells
    // the two apart, so hyper's is off.
    let connection = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .header_read_timeout(None)
        .serve_connection(io, service);
    tokio::pin!(connection);
    let mut draining = false;
    loop {
        let now = *stage.borrow_and_update();
        match now {
            Stage::Running => {}
            Stage::Draining if !draining => {
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
            Stage::Draining => {}
            Stage::Abort => return,
        }
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection closed with an error");
                }
                return;
            }
            why = close_when_due(&mut phase, &config, draining) => {
                tracing::debug!(%peer, reason = why.as_str(), "closing the connection");
                return;
            }
            changed = stage.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

async fn handle(
    app: Router,
    request: Request<Incoming>,
    body_read_timeout: Duration,
    in_flight: InFlight,
) -> Result<Response<InFlightBody>, Infallible> {
    let timed_out = Arc::new(AtomicBool::new(false));
    let management = request.uri().path().starts_with("/v1");
    let request = request.map(|incoming| {
        Body::new(TimedBody {
            inner: incoming,
            deadline: Box::pin(tokio::time::sleep(body_read_timeout)),
            timeout: body_read_timeout,
            timed_out: timed_out.clone(),
        })
    });
    let response = match app.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let response = if timed_out.load(Ordering::Relaxed) {
        body_timeout_response(&response, management, body_read_timeout)
    } else {
        response
    };
    Ok(response.map(|body| InFlightBody {
        inner: body,
        _in_flight: in_flight,
    }))
}

/// The 408 that replaces whatever the handler made of a body that did not arrive in time, in
/// the endpoint's error style, with the handler's correlation id; the connection is closed.
fn body_timeout_response(
    handled: &Response<Body>,
    management: bool,
    timeout: Duration,
) -> Response<Body> {
    let correlation_id = handled
        .headers()
        .get(&crate::correlation::X_CORRELATION_ID)
        .cloned();
    let id = correlation_id
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| uuid::Uuid::parse_str(v).ok())
        .unwrap_or_else(uuid::Uuid::new_v4);
    let message = format!(
        "The request body was not received within {} seconds.",
        timeout.as_secs()
    );
    tracing::info!(status = 408, "request body read timeout");
    let body = if management {
        serde_json::json!({"id": id.to_string(), "code": "INVALID_DATA", "message": message})
    } else {
        let error =
            assent_core::OAuthError::new(assent_core::OAuthErrorCode::InvalidRequest, message);
        serde_json::json!({
            "error": error.code.as_str(),
            "error_description": crate::error::describe(&error, &id),
        })
    };
    let mut response = (StatusCode::REQUEST_TIMEOUT, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(v) = correlation_id {
        headers.insert(crate::correlation::X_CORRELATION_ID.clone(), v);
    }
    response
}

/// The request body did not arrive within the body-read timeout.
#[derive(Debug, thiserror::Error)]
#[error("the request body was not received within {0:?}")]
pub struct BodyReadTimeout(Duration);

/// A request body that fails once its deadline has passed while the handler waits for bytes.
struct TimedBody {
    inner: Incoming,
    deadline: Pin<Box<Sleep>>,
    timeout: Duration,
    timed_out: Arc<AtomicBool>,
}

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => {
                if this.deadline.as_mut().poll(cx).is_ready() {
                    this.timed_out.store(true, Ordering::Relaxed);
                    Poll::Ready(Some(Err(BodyReadTimeout(this.timeout).into())))
                } else {
                    Poll::Pending
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that keeps its request "in flight" until it is sent or dropped.
struct InFlightBody {
    inner: Body,
    _in_flight: InFlight,
}

impl HttpBody for InFlightBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The socket, telling [`Activity`] when bytes arrive.
struct TrackedIo {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for TrackedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.stream).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.bytes_received();
        }
        result
    }
}

impl AsyncWrite for TrackedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Lets a repeated warning through at most once per period and counts the ones held back.
#[derive(Debug)]
struct LogLimiter {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimiter {
    fn new(every: Duration) -> Self {
        LogLimiter {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(held back since the last one)` when a warning may be logged now.
    fn due(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.every => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests;
