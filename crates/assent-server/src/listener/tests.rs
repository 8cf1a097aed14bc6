//! The accept loop on a real socket (127.0.0.1:0) with 1 s timeouts. Waits are bounded and
//! generous ("closed before 10 s"); nothing asserts timing precision.

use std::sync::Mutex;

use axum::extract::State;
use axum::routing::{get, post};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

use super::*;

const SEC: Duration = Duration::from_secs(1);
const LONG: Duration = Duration::from_secs(30);
/// The generous bound of every "must happen" wait.
const BOUND: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Hold {
    entered: Notify,
    release: Notify,
}

fn test_app(hold: Arc<Hold>) -> Router {
    async fn echo(body: Bytes) -> String {
        body.len().to_string()
    }
    /// Reads its body, then holds the answer until the test releases it.
    async fn held(State(hold): State<Arc<Hold>>, body: Bytes) -> String {
        hold.entered.notify_one();
        hold.release.notified().await;
        format!("held {}", body.len())
    }
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/echo", post(echo))
        .route("/v1/echo", post(echo))
        .route("/hold", get(held).post(held))
        .with_state(hold)
}

struct Server {
    addr: SocketAddr,
    hold: Arc<Hold>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
}

impl Server {
    async fn start(config: ListenerConfig) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hold = Arc::new(Hold::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, test_app(hold.clone()), config, async {
            let _ = stopped.await;
        }));
        Server {
            addr,
            hold,
            stop: Some(stop),
            task,
        }
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.unwrap()
    }

    fn shutdown(&mut self) {
        let _ = self.stop.take().unwrap().send(());
    }
}

fn config(header: Duration, body: Duration, idle: Duration) -> ListenerConfig {
    ListenerConfig {
        header_read_timeout: header,
        body_read_timeout: body,
        idle_timeout: idle,
        max_connections: 100,
        shutdown_timeout: LONG,
    }
}

/// Reads until the server closes the connection (EOF or reset); fails after [`BOUND`].
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut all = Vec::new();
    let result = tokio::time::timeout(BOUND, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&all).into_owned();
    assert!(
        result.is_ok(),
        "the server did not close the connection within {BOUND:?}; got {text:?}"
    );
    text
}

/// Reads one response (head and `Content-Length` body) within [`BOUND`].
async fn read_response(stream: &mut TcpStream) -> String {
    let mut all = Vec::new();
    tokio::time::timeout(BOUND, async {
        let mut buf = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&all).to_ascii_lowercase();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                if all.len() >= end + 4 + length {
                    return;
                }
            }
            let n = stream.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "closed before a full response: {:?}",
                String::from_utf8_lossy(&all)
            );
            all.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("no response within the bound");
    String::from_utf8(all).unwrap()
}

async fn get_healthz(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    read_response(stream).await
}

/// A log capture for the current thread (tests run on a current-thread runtime, so the tasks
/// the server spawns log here too).
fn capture_logs() -> (Arc<Mutex<Vec<u8>>>, tracing::subscriber::DefaultGuard) {
    #[derive(Clone)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let logs = Arc::new(Mutex::new(Vec::new()));
    let sink = Sink(logs.clone());
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}

fn text(logs: &Arc<Mutex<Vec<u8>>>) -> String {
    String::from_utf8_lossy(&logs.lock().unwrap()).into_owned()
}

#[tokio::test]
async fn a_partial_request_line_is_closed_after_the_header_read_timeout() {
    let server = Server::start(config(SEC, LONG, LONG)).await;
    let mut slow = server.connect().await;
    slow.write_all(b"GET /heal").await.unwrap();
    // A complete request on another connection is served meanwhile.
    let mut good = server.connect().await;
    assert!(get_healthz(&mut good).await.starts_with("HTTP/1.1 200"));
    assert_eq!(read_until_closed(&mut slow).await, "");
}

#[tokio::test]
async fn headers_sent_one_byte_at_a_time_are_cut_by_the_header_read_timeout() {
    let server = Server::start(config(SEC, LONG, LONG)).await;
    let mut slow = server.connect().await;
    // Bytes keep arriving, so a timeout that restarts on every read would never fire.
    let request = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let started = Instant::now();
    let mut cut = false;
    for byte in request.iter().take(request.len() - 2) {
        if slow.write_all(&[*byte]).await.is_err() {
            cut = true;
            break;
        }
        let mut probe = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(200), slow.read(&mut probe)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                cut = true;
                break;
            }
            Ok(Ok(n)) => panic!("unexpected answer {:?}", &probe[..n]),
            Err(_) => {}
        }
        assert!(started.elapsed() < BOUND, "not cut within {BOUND:?}");
    }
    assert!(cut, "the whole slow header was accepted");
}

#[tokio::test]
async fn a_keep_alive_request_sent_slowly_is_cut_by_the_header_read_timeout() {
    // Idle timeout long: what cuts the second, partial request is the header timeout counted
    // from its first byte.
    let server = Server::start(config(SEC, LONG, LONG)).await;
    let mut conn = server.connect().await;
    assert!(get_healthz(&mut conn).await.starts_with("HTTP/1.1 200"));
    conn.write_all(b"GET /hea").await.unwrap();
    assert_eq!(read_until_closed(&mut conn).await, "");
}

#[tokio::test]
async fn a_short_body_gets_408_after_the_body_read_timeout() {
    let server = Server::start(config(LONG, SEC, LONG)).await;
    // The full body is fine.
    let mut good = server.connect().await;
    good.write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
        .await
        .unwrap();
    let answer = read_response(&mut good).await;
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("\r\n\r\n5"),
        "{answer}"
    );
    // Content-Length larger than what is sent: 408 in the OAuth style, then the close.
    let mut short = server.connect().await;
    short
        .write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nonly ten b")
        .await
        .unwrap();
    let answer = read_until_closed(&mut short).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"error\":\"invalid_request\""), "{answer}");
    assert!(answer.contains("not received within 1 seconds"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    // The management API answers in its own style.
    let mut short = server.connect().await;
    short
        .write_all(b"POST /v1/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nten bytes.")
        .await
        .unwrap();
    let answer = read_until_closed(&mut short).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"INVALID_DATA\""), "{answer}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let server = Server::start(config(LONG, LONG, SEC)).await;
    let mut conn = server.connect().await;
    assert!(get_healthz(&mut conn).await.starts_with("HTTP/1.1 200"));
    // Still usable before the timeout…
    assert!(get_healthz(&mut conn).await.starts_with("HTTP/1.1 200"));
    // …then closed once idle.
    assert_eq!(read_until_closed(&mut conn).await, "");
}

#[tokio::test]
async fn answers_held_by_the_server_outlive_every_timeout() {
    let server = Server::start(config(SEC, SEC, SEC)).await;
    let mut get = server.connect().await;
    get.write_all(b"GET /hold HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    server.hold.entered.notified().await;
    let mut post = server.connect().await;
    post.write_all(b"POST /hold HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
        .await
        .unwrap();
    server.hold.entered.notified().await;
    // Longer than the header, body and idle timeouts together.
    tokio::time::sleep(3 * SEC + SEC / 2).await;
    server.hold.release.notify_waiters();
    let answer = read_response(&mut get).await;
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("held 0"),
        "{answer}"
    );
    let answer = read_response(&mut post).await;
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("held 5"),
        "{answer}"
    );
}

#[tokio::test]
async fn the_connection_cap_is_honoured_and_logged() {
    let (logs, _guard) = capture_logs();
    let server = Server::start(ListenerConfig {
        max_connections: 2,
        ..config(LONG, LONG, LONG)
    })
    .await;
    let mut first = server.connect().await;
    let mut second = server.connect().await;
    assert!(get_healthz(&mut first).await.starts_with("HTTP/1.1 200"));
    assert!(get_healthz(&mut second).await.starts_with("HTTP/1.1 200"));
    let mut third = server.connect().await;
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(SEC, third.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "the third connection was served while the cap was full"
    );
    assert!(
        text(&logs).contains("connection limit reached"),
        "{}",
        text(&logs)
    );
    drop(first);
    assert!(read_response(&mut third).await.starts_with("HTTP/1.1 200"));
    assert!(get_healthz(&mut second).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn shutdown_closes_idle_connections_at_once_and_finishes_requests_in_flight() {
    let (logs, _guard) = capture_logs();
    // Idle and shutdown timeouts long: only the shutdown itself can close the idle connection.
    let mut server = Server::start(config(LONG, LONG, LONG)).await;
    let mut idle = server.connect().await;
    assert!(get_healthz(&mut idle).await.starts_with("HTTP/1.1 200"));
    let mut busy = server.connect().await;
    busy.write_all(b"GET /hold HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    server.hold.entered.notified().await;
    server.shutdown();
    assert_eq!(read_until_closed(&mut idle).await, "");
    // New connections are refused (the listener is closed) or never served.
    assert!(
        !server.task.is_finished(),
        "serve returned with a request in flight"
    );
    server.hold.release.notify_waiters();
    let answer = read_until_closed(&mut busy).await;
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("held 0"),
        "{answer}"
    );
    tokio::time::timeout(BOUND, server.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        text(&logs).contains("all connections closed"),
        "{}",
        text(&logs)
    );
}

#[tokio::test]
async fn the_shutdown_deadline_cuts_what_remains() {
    let (logs, _guard) = capture_logs();
    let mut server = Server::start(ListenerConfig {
        shutdown_timeout: SEC,
        ..config(LONG, LONG, LONG)
    })
    .await;
    let mut busy = server.connect().await;
    busy.write_all(b"GET /hold HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    server.hold.entered.notified().await;
    server.shutdown();
    tokio::time::timeout(BOUND, server.task)
        .await
        .expect("serve did not return within the bound")
        .unwrap()
        .unwrap();
    assert_eq!(read_until_closed(&mut busy).await, "");
    let logs = text(&logs);
    assert!(
        logs.contains("shutdown deadline reached") && logs.contains("connections=1"),
        "{logs}"
    );
}

#[test]
fn warnings_are_rate_limited() {
    let start = Instant::now();
    let mut limiter = LogLimiter::new(Duration::from_secs(10));
    assert_eq!(limiter.due(start), Some(0));
    assert_eq!(limiter.due(start + Duration::from_secs(1)), None);
    assert_eq!(limiter.due(start + Duration::from_secs(9)), None);
    assert_eq!(limiter.due(start + Duration::from_secs(10)), Some(2));
    assert_eq!(limiter.due(start + Duration::from_secs(11)), None);
}

#[test]
fn the_default_cap_stays_below_the_descriptor_limit() {
    let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                  Max cpu time              unlimited            unlimited            seconds   \n\
                  Max open files            1024                 524288               files     \n";
    assert_eq!(parse_open_files_limit(limits), Some(1024));
    assert_eq!(
        parse_open_files_limit(
            "Max open files            unlimited            unlimited            files"
        ),
        None
    );
    assert_eq!(default_max_connections(Some(1024)), 896);
    assert_eq!(default_max_connections(None), 896);
    assert_eq!(default_max_connections(Some(100)), 50);
    assert_eq!(default_max_connections(Some(1)), 1);
    assert_eq!(default_max_connections(Some(1 << 20)), 10_000);
    if let Some(limit) = open_files_limit() {
        assert!(u64::from(ListenerConfig::default().max_connections) < limit);
    }
}
