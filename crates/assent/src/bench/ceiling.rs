//! `ceiling`: this machine's limits, measured in the same run as the scenarios: JWS signatures
//! per second on one core (the server's own signing code, `assent-crypto`), and a trivial HTTP
//! responder (200 "ok", one thread) driven by the scenarios' client code, so the cost of the
//! client itself is visible next to the server's.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use assent_crypto::{JwsSigner, SigningAlg};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::http::{Connection, Endpoint, basic_auth, read_body};
use super::procfs::{self, CpuClock};
use super::run::{Bounds, CpuMeter, CpuUse, Measured, Shared, Tally, run_workers, with_cpu};

/// Signing rates are steady within this; a longer --duration does not lengthen them.
const SIGNING_TIME: Duration = Duration::from_secs(2);
/// The algorithms measured: the ID tokens' and access tokens' default, and two others offered.
pub const ALGORITHMS: [SigningAlg; 3] = [SigningAlg::RS256, SigningAlg::ES256, SigningAlg::EdDSA];

const NOT_THE_SERVER: &str = "measured inside assent bench";

/// Signatures of an ID-token-sized claims set with a key of `alg`, one after another on one
/// thread (so on one core), each timed.
pub async fn signatures(
    alg: SigningAlg,
    bounds: Bounds,
    cancel: &CancellationToken,
    clock: CpuClock,
) -> Result<Measured> {
    let key = assent_crypto::generate_key(alg, "bench")
        .map_err(|e| anyhow!("cannot generate a {} key: {e}", alg.as_str()))?;
    let signer = Arc::new(
        JwsSigner::from_pkcs8(alg, &key.kid, &key.pkcs8_der)
            .map_err(|e| anyhow!("cannot load the {} key: {e}", alg.as_str()))?,
    );
    let bounds = Bounds {
        duration: Some(
            bounds
                .duration
                .map_or(SIGNING_TIME, |d| d.min(SIGNING_TIME)),
        ),
        count: bounds.count,
    };
    let meter = CpuMeter {
        clock,
        server: Err(NOT_THE_SERVER.to_owned()),
    };
    let name = format!("ceiling {}", alg.as_str());
    let ((tally, elapsed), cpu) = with_cpu(
        &meter,
        run_workers(&name, bounds, None, cancel, 1, |_, shared| {
            let signer = signer.clone();
            async move {
                tokio::task::spawn_blocking(move || sign_until_done(&signer, &shared))
                    .await
                    .unwrap_or_else(|e| {
                        let mut tally = Tally::default();
                        tally
                            .errors
                            .insert(format!("signing thread failed: {e}"), 1);
                        tally
                    })
            }
        }),
    )
    .await;
    Ok(Measured {
        name,
        tally,
        elapsed,
        cpu: CpuUse {
            server: None,
            bench: cpu.bench,
        },
        server_cpu_note: Some(NOT_THE_SERVER.to_owned()),
    })
}

fn sign_until_done(signer: &JwsSigner, shared: &Shared) -> Tally {
    let env = "5f1c6a53-3a0f-4a53-9d4e-0c8f3f0d8e21";
    let claims = json!({
        "iss": format!("http://127.0.0.1:8080/{env}/as"),
        "sub": "0b6f0a6e-6f2b-4c1e-8f5e-2d8a8b1c9d10",
        "aud": "c3d2f0a1-7e4b-4b8e-9a51-6f0e2d1c3b4a",
        "iat": 1_790_000_000,
        "exp": 1_790_003_600,
        "auth_time": 1_790_000_000,
        "amr": ["sim"],
        "at_hash": "q3FzZ8a1hV0QmI9kYpGzVQ",
        "env": env,
    });
    let mut tally = Tally::default();
    while shared.claim() {
        let started = Instant::now();
        match signer.sign(Some("JWT"), &claims) {
            Ok(_) => tally.ok(shared, started.elapsed()),
            Err(e) => tally.error(shared, format!("signing failed: {e}")),
        }
    }
    tally
}

/// The trivial responder on its own thread (a current-thread runtime, so one core at most),
/// answering every request with 200 "ok" over HTTP/1.1 keep-alive.
struct Responder {
    endpoint: Arc<Endpoint>,
    /// The responder thread's stat file, for its CPU time.
    stat: Option<PathBuf>,
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Responder {
    fn start() -> Result<Responder> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .context("cannot open a loopback port for the ceiling's responder")?;
        listener
            .set_nonblocking(true)
            .context("cannot set up the responder's socket")?;
        let endpoint = Arc::new(Endpoint::local(
            listener.local_addr().context("the responder's address")?,
        )?);
        let stop = CancellationToken::new();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let token = stop.clone();
        let thread = std::thread::Builder::new()
            .name("bench-responder".to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("cannot start its runtime: {e}")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!("cannot listen: {e}")));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(procfs::current_thread_stat()));
                    loop {
                        let stream = tokio::select! {
                            () = token.cancelled() => break,
                            accepted = listener.accept() => match accepted {
                                Ok((stream, _)) => stream,
                                Err(_) => continue,
                            },
                        };
                        let _ = stream.set_nodelay(true);
                        tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(
                            TokioIo::new(stream),
                            hyper::service::service_fn(answer_ok),
                        ));
                    }
                });
            })
            .context("cannot start the responder thread")?;
        let stat = ready_rx
            .recv()
            .map_err(|_| anyhow!("the responder thread ended before it was ready"))?
            .map_err(|e| anyhow!("the ceiling's responder {e}"))?;
        Ok(Responder {
            endpoint,
            stat,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn answer_ok(request: Request<Incoming>) -> Result<Response<String>, Infallible> {
    // Read the body, as a real server does (and so the connection stays reusable).
    let _ = read_body(request.into_body()).await;
    Ok(Response::new("ok".to_owned()))
}

/// `concurrency` workers POSTing a token-poll-sized form to the responder, each on its own
/// keep-alive connection, through the same client code as the scenarios. The server column is
/// the responder thread's CPU; the bench column is the rest of this process.
pub async fn http(
    concurrency: usize,
    bounds: Bounds,
    cancel: &CancellationToken,
    clock: CpuClock,
) -> Result<Measured> {
    let responder = Responder::start()?;
    let uri = Arc::new(responder.endpoint.uri("/")?);
    let auth = Arc::new(basic_auth(
        "c3d2f0a1-7e4b-4b8e-9a51-6f0e2d1c3b4a",
        &"s".repeat(86),
    )?);
    let form = format!(
        "grant_type=urn%3Aopenid%3Aparams%3Agrant-type%3Aciba&auth_req_id={}",
        "x".repeat(43)
    );
    let meter = CpuMeter {
        clock,
        server: responder
            .stat
            .clone()
            .ok_or_else(|| "the responder thread's /proc entry is unknown".to_owned()),
    };
    let name = "ceiling http".to_owned();
    let endpoint = responder.endpoint.clone();
    let ((tally, elapsed), cpu) = with_cpu(
        &meter,
        run_workers(&name, bounds, None, cancel, concurrency, |_, shared| {
            let (endpoint, uri, auth, form) =
                (endpoint.clone(), uri.clone(), auth.clone(), form.clone());
            async move {
                let mut conn = Connection::new(endpoint);
                let mut tally = Tally::default();
                while shared.claim() {
                    let started = Instant::now();
                    let Some(result) = shared.or_cancel(conn.post(&uri, &auth, form.clone())).await
                    else {
                        break;
                    };
                    match result {
                        Ok(a) if a.status == StatusCode::OK && a.body == b"ok" => {
                            tally.ok(&shared, started.elapsed());
                        }
                        Ok(a) => tally.error(&shared, format!("HTTP {}", a.status.as_u16())),
                        Err(kind) => tally.error(&shared, kind),
                    }
                }
                tally
            }
        }),
    )
    .await;
    drop(responder);
    let bench = match (cpu.bench, cpu.server) {
        (Some(all), Some(responder)) => all.checked_sub(responder),
        _ => None,
    };
    Ok(Measured {
        name,
        tally,
        elapsed,
        cpu: CpuUse {
            server: cpu.server,
            bench,
        },
        server_cpu_note: meter.server.err(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock() -> CpuClock {
        CpuClock {
            ticks_per_second: procfs::clock_ticks_per_second().0,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn signing_counts_exactly_the_signatures_asked_for() {
        let bounds = Bounds {
            duration: None,
            count: Some(25),
        };
        let m = signatures(
            SigningAlg::EdDSA,
            bounds,
            &CancellationToken::new(),
            clock(),
        )
        .await
        .unwrap();
        assert_eq!(m.operations(), 25);
        assert_eq!(m.tally.error_count(), 0);
        assert!(m.cpu.server.is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_responder_answers_every_request_of_the_count() {
        let bounds = Bounds {
            duration: None,
            count: Some(200),
        };
        let m = http(4, bounds, &CancellationToken::new(), clock())
            .await
            .unwrap();
        assert_eq!(m.operations(), 200, "{:?}", m.tally.errors);
        assert_eq!(m.tally.error_count(), 0);
        assert!(m.server_cpu_note.is_none());
        assert!(m.cpu.server.is_some());
    }
}
