//! `assent bench`: a load generator against a running Assent.
//!
//! It finds the server like the admin commands do ([`target`]), creates its own SANDBOX environment
//! ([`provision`]), runs the scenarios ([`scenarios`], [`ceiling`]) with a live progress line
//! ([`run`]), prints a summary ([`report`]) and deletes the environment again, also after an
//! error or Ctrl-C. Latencies go to a log-bucket [`histogram`]; the server's CPU time comes from
//! `/proc` ([`procfs`]) when it runs on this machine. The load is sent by a lean HTTP/1.1
//! client ([`http`]), one keep-alive connection per worker, because on a small machine the
//! generator's own CPU is taken from the server's.

mod ceiling;
mod histogram;
mod http;
mod procfs;
mod provision;
mod report;
mod run;
mod scenarios;
mod target;

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use tokio_util::sync::CancellationToken;

use crate::cli::Connection;
use crate::cli::client::{Api, parse_server};
use http::Endpoint;
use procfs::CpuClock;
use provision::{BenchEnv, Provisioned};
use report::{EnvOutcome, Report};
use run::{Bounds, CpuMeter, Measured, run_workers, with_cpu};
use scenarios::Oauth;
use target::{check_reach, choose_server, is_loopback, locate_server};

/// The bound of a run given neither --duration nor --count.
const DEFAULT_DURATION: Duration = Duration::from_secs(10);
/// Deleting an environment holding a million requests can take a while.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// Whole flows: request, automatic approval, polls until the tokens.
    Flow,
    /// Acknowledgements of `/cibaAuthorization` only.
    Init,
    /// Seeded pending requests, each polled at its interval.
    Poll,
    /// This machine's limits: signatures per second on one core, a trivial HTTP responder.
    Ceiling,
    /// flow, init, poll and ceiling, in that order.
    All,
}

/// Load a running server and report throughput, latency, errors and CPU per operation.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Base URL of the running server [default: ASSENT_SERVER, else http://127.0.0.1:8080]. The
    /// bench goes to a server that is not on loopback only when it is named here, on the
    /// command line.
    #[arg(long)]
    pub server: Option<String>,
    /// Admin token; when absent, read from <data-dir>/admin-token. Prefer the
    /// ASSENT_ADMIN_TOKEN environment variable: a value here is visible in `ps`.
    #[arg(long, env = "ASSENT_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// A scenario to run; repeat for several [default: all].
    #[arg(long = "scenario", value_enum, value_name = "SCENARIO")]
    pub scenarios: Vec<Scenario>,
    /// How long each scenario starts new operations, in seconds [default: 10, or no limit
    /// when --count is given]; operations under way then finish.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub duration: Option<u64>,
    /// Stop each scenario after this many operations (with --duration: whichever comes first).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Concurrent workers (simulated relying parties), each on its own keep-alive connection.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub concurrency: u64,
    /// How many pending requests the poll scenario starts (through the public API) before it
    /// polls them.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub pending: u64,
    /// The server's process id, for its CPU time [default: the process listening on the
    /// server's port, when the server is on loopback].
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The scenarios to run, in order, each once.
fn expand(asked: &[Scenario]) -> Vec<Scenario> {
    let all = [
        Scenario::Flow,
        Scenario::Init,
        Scenario::Poll,
        Scenario::Ceiling,
    ];
    let mut out = Vec::new();
    if asked.is_empty() {
        return all.to_vec();
    }
    for s in asked {
        let add: &[Scenario] = if *s == Scenario::All {
            &all
        } else {
            std::slice::from_ref(s)
        };
        for a in add {
            if !out.contains(a) {
                out.push(*a);
            }
        }
    }
    out
}

/// Runs a step unless Ctrl-C comes first.
async fn interruptible<T>(
    cancel: &CancellationToken,
    f: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::select! {
        biased;
        () = cancel.cancelled() => Err(anyhow!("interrupted")),
        r = f => r,
    }
}

/// The first Ctrl-C (or SIGTERM) stops the run, which then cleans up; a second one quits at once.
fn watch_interrupts(cancel: CancellationToken, created: Arc<OnceLock<String>>) {
    tokio::spawn(async move {
        if interrupt().await.is_err() {
            return;
        }
        eprintln!(
            "\ninterrupted: stopping and deleting the bench environment (interrupt again to quit at once)"
        );
        cancel.cancel();
        if interrupt().await.is_ok() {
            match created.get() {
                Some(id) => eprintln!(
                    "interrupted again: quitting; the bench environment {id} is left behind \
                     (`assent env delete --env {id} --yes` deletes it)"
                ),
                None => eprintln!("interrupted again: quitting"),
            }
            std::process::exit(130);
        }
    });
}

async fn interrupt() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}

/// What every part of one run reads.
struct Plan<'a> {
    args: &'a BenchArgs,
    scenarios: Vec<Scenario>,
    bounds: Bounds,
    clock: CpuClock,
    /// Cancelled by Ctrl-C.
    cancel: CancellationToken,
    /// The bench environment's id once it exists (for the message of a second Ctrl-C).
    created: Arc<OnceLock<String>>,
}

/// Everything a scenario against the server needs.
struct ServerSide {
    oauth: Arc<Oauth>,
    provisioned: Provisioned,
    meter: CpuMeter,
}

/// Runs `assent bench`.
pub async fn run(conn: &Connection, args: BenchArgs) -> Result<()> {
    let (ticks_per_second, ticks_assumed) = procfs::clock_ticks_per_second();
    let plan = Plan {
        args: &args,
        scenarios: expand(&args.scenarios),
        bounds: Bounds {
            duration: args
                .duration
                .map(Duration::from_secs)
                .or(args.count.is_none().then_some(DEFAULT_DURATION)),
            count: args.count,
        },
        clock: CpuClock { ticks_per_second },
        cancel: CancellationToken::new(),
        created: Arc::new(OnceLock::new()),
    };
    watch_interrupts(plan.cancel.clone(), plan.created.clone());
    let mut report = Report {
        server: None,
        server_pid: None,
        server_cpu_note: None,
        clock_ticks_per_second: ticks_per_second,
        clock_ticks_assumed: ticks_assumed,
        concurrency: usize::try_from(args.concurrency).unwrap_or(usize::MAX),
        duration: plan.bounds.duration,
        count: plan.bounds.count,
        pending: args.pending,
        environment: None,
        interrupted: false,
        scenarios: Vec::new(),
    };
    let result = if plan.scenarios.iter().any(|s| *s != Scenario::Ceiling) {
        with_server(conn, &plan, &mut report).await
    } else {
        run_plan(None, &plan, &mut report).await
    };
    report.interrupted = plan.cancel.is_cancelled();
    if !report.scenarios.is_empty() || (args.json && report.environment.is_some()) {
        if args.json {
            let text =
                serde_json::to_string_pretty(&report.to_json()).context("cannot format JSON")?;
            println!("{text}");
        } else {
            print!("{}", report.table());
        }
    }
    result?;
    if report.interrupted {
        bail!("interrupted");
    }
    Ok(())
}

/// Checks the server and the token, provisions, runs the plan and deletes what it created.
async fn with_server(conn: &Connection, plan: &Plan<'_>, report: &mut Report) -> Result<()> {
    let (args, cancel, clock) = (plan.args, &plan.cancel, plan.clock);
    let choice = choose_server(
        args.server.as_deref(),
        std::env::var("ASSENT_SERVER").ok().as_deref(),
    );
    let url = parse_server(&choice.url)?;
    check_reach(&choice, &url)?;
    http::check_scheme(&url)?;
    let target = crate::cli::Target {
        admin_token: args.admin_token.clone(),
        server: choice.url.clone(),
        json: false,
    };
    let api = Api::new(conn, &target)?;
    let cleanup_api = Api::with_timeout(conn, &target, CLEANUP_TIMEOUT)?;
    // A read that needs the token: an unreachable server or a wrong token is reported before
    // anything is created.
    let mut probe = api.url(&["environments"])?;
    probe.query_pairs_mut().append_pair("limit", "1");
    interruptible(cancel, async {
        api.get(probe)
            .await
            .context("cannot use the management API")
    })
    .await?;
    let endpoint =
        Arc::new(interruptible(cancel, Endpoint::resolve(&url, !choice.explicit)).await?);
    let server_stat = locate_server(
        args.server_pid,
        is_loopback(&url),
        endpoint.addr().port(),
        clock,
    )?;
    report.server = Some(url.as_str().trim_end_matches('/').to_owned());
    match &server_stat {
        Ok((pid, _)) => report.server_pid = Some(*pid),
        Err(note) => report.server_cpu_note = Some(note.clone()),
    }
    let meter = CpuMeter {
        clock,
        server: server_stat.map(|(_, path)| path),
    };

    let name = provision::bench_name();
    let env = provision::create_environment(&api, &name).await?;
    let _ = plan.created.set(env.id.clone());
    eprintln!("created the bench environment {} ({})", env.name, env.id);
    report.environment = Some(EnvOutcome {
        id: env.id.clone(),
        name: env.name.clone(),
        deleted: false,
    });
    let result = async {
        let provisioned = interruptible(cancel, provision::populate(&api, &env)).await?;
        let oauth = Arc::new(Oauth::new(
            endpoint,
            &env.id,
            &provisioned.client_id,
            &provisioned.secret,
        )?);
        let side = ServerSide {
            oauth,
            provisioned,
            meter,
        };
        run_plan(Some(&side), plan, report).await
    }
    .await;
    let cleanup = delete(&cleanup_api, &env).await;
    match (&result, &cleanup) {
        (_, Ok(())) => {
            if let Some(e) = report.environment.as_mut() {
                e.deleted = true;
            }
        }
        // The run's own error is what is returned; this one must still be seen.
        (Err(_), Err(e)) => eprintln!("error: {e:#}"),
        (Ok(()), Err(_)) => {}
    }
    result.and(cleanup)
}

async fn delete(api: &Api, env: &BenchEnv) -> Result<()> {
    match provision::delete(api, env).await {
        Ok(()) => {
            eprintln!("deleted the bench environment {}", env.name);
            Ok(())
        }
        Err(e) => Err(e.context(format!(
            "could not delete the bench environment {} ({}); `assent env delete --env {} --yes` \
             deletes it",
            env.name, env.id, env.id
        ))),
    }
}

/// Runs the scenarios in order, adding each result to the report as it ends (so an error or
/// Ctrl-C still reports what was measured).
async fn run_plan(server: Option<&ServerSide>, plan: &Plan<'_>, report: &mut Report) -> Result<()> {
    let (bounds, clock, cancel) = (plan.bounds, plan.clock, &plan.cancel);
    let workers = report.concurrency;
    for scenario in &plan.scenarios {
        if cancel.is_cancelled() {
            break;
        }
        match scenario {
            Scenario::Ceiling => {
                for alg in ceiling::ALGORITHMS {
                    if cancel.is_cancelled() {
                        break;
                    }
                    report
                        .scenarios
                        .push(ceiling::signatures(alg, bounds, cancel, clock).await?);
                }
                if !cancel.is_cancelled() {
                    report
                        .scenarios
                        .push(ceiling::http(workers, bounds, cancel, clock).await?);
                }
            }
            // `expand` has replaced it by the scenarios it names.
            Scenario::All => {}
            Scenario::Flow => {
                let m = flow(need(server)?, bounds, cancel, workers).await;
                report.scenarios.push(m);
            }
            Scenario::Init => {
                let m = init(need(server)?, bounds, cancel, workers).await;
                report.scenarios.push(m);
            }
            Scenario::Poll => {
                let (seeding, polling) =
                    poll(need(server)?, bounds, cancel, workers, plan.args.pending).await;
                report.scenarios.push(seeding);
                report.scenarios.extend(polling);
            }
        }
    }
    Ok(())
}

fn need(server: Option<&ServerSide>) -> Result<&ServerSide> {
    server.context("a scenario against the server was planned without one")
}

/// The user worker `i` works for (users are dealt round robin).
fn nth(users: &[String], i: usize) -> &str {
    users.get(i % users.len().max(1)).map_or("", String::as_str)
}

fn measured(
    name: &str,
    side: &ServerSide,
    tally: run::Tally,
    elapsed: Duration,
    cpu: run::CpuUse,
) -> Measured {
    Measured {
        name: name.to_owned(),
        tally,
        elapsed,
        cpu,
        server_cpu_note: side.meter.server.as_ref().err().cloned(),
    }
}

async fn flow(
    side: &ServerSide,
    bounds: Bounds,
    cancel: &CancellationToken,
    workers: usize,
) -> Measured {
    let users = &side.provisioned.approving;
    let ((tally, elapsed), cpu) = with_cpu(
        &side.meter,
        run_workers("flow", bounds, None, cancel, workers, |i, shared| {
            let form = scenarios::authorization_form(nth(users, i), None);
            scenarios::flow_worker(side.oauth.clone(), form, shared)
        }),
    )
    .await;
    measured("flow", side, tally, elapsed, cpu)
}

async fn init(
    side: &ServerSide,
    bounds: Bounds,
    cancel: &CancellationToken,
    workers: usize,
) -> Measured {
    let users = &side.provisioned.undecided;
    let ((tally, elapsed), cpu) = with_cpu(
        &side.meter,
        run_workers("init", bounds, None, cancel, workers, |i, shared| {
            let form = scenarios::authorization_form(nth(users, i), None);
            scenarios::init_worker(side.oauth.clone(), form, shared)
        }),
    )
    .await;
    measured("init", side, tally, elapsed, cpu)
}

/// Seeds `pending` requests (measured as `poll-seed`), then polls them (`poll`; not run when
/// the seeding was interrupted).
async fn poll(
    side: &ServerSide,
    bounds: Bounds,
    cancel: &CancellationToken,
    workers: usize,
    pending: u64,
) -> (Measured, Option<Measured>) {
    let users = &side.provisioned.undecided;
    let seeded = Arc::new(Mutex::new(Vec::new()));
    let seed_bounds = Bounds {
        duration: None,
        count: Some(pending),
    };
    let ((tally, elapsed), cpu) = with_cpu(
        &side.meter,
        run_workers(
            "poll: seeding",
            seed_bounds,
            Some(pending),
            cancel,
            workers,
            |i, shared| {
                let form = scenarios::authorization_form(
                    nth(users, i),
                    Some(provision::MAX_REQUEST_EXPIRY_SECONDS),
                );
                scenarios::seed_worker(side.oauth.clone(), form, seeded.clone(), shared)
            },
        ),
    )
    .await;
    let seeding = measured("poll-seed", side, tally, elapsed, cpu);
    if cancel.is_cancelled() {
        return (seeding, None);
    }
    let seeded = std::mem::take(&mut *seeded.lock().unwrap_or_else(PoisonError::into_inner));
    let parts = Mutex::new(scenarios::deal(seeded, workers, Instant::now()));
    let ((tally, elapsed), cpu) = with_cpu(
        &side.meter,
        run_workers("poll", bounds, None, cancel, workers, |i, shared| {
            let mine = parts
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_mut(i)
                .map(std::mem::take)
                .unwrap_or_default();
            scenarios::poll_worker(side.oauth.clone(), mine, shared)
        }),
    )
    .await;
    (seeding, Some(measured("poll", side, tally, elapsed, cpu)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_expand_in_order_without_repeats() {
        use Scenario::*;
        assert_eq!(expand(&[]), vec![Flow, Init, Poll, Ceiling]);
        assert_eq!(expand(&[All]), vec![Flow, Init, Poll, Ceiling]);
        assert_eq!(expand(&[Poll, Flow, Poll]), vec![Poll, Flow]);
        assert_eq!(expand(&[Ceiling, All]), vec![Ceiling, Flow, Init, Poll]);
    }

    #[test]
    fn arguments_parse_with_their_defaults_and_bounds() {
        use clap::Parser;
        #[derive(Parser, Debug)]
        struct Cli {
            #[command(flatten)]
            bench: BenchArgs,
        }
        let cli = Cli::try_parse_from(["bench"]).unwrap();
        assert_eq!((cli.bench.concurrency, cli.bench.pending), (64, 1000));
        assert!(cli.bench.scenarios.is_empty() && cli.bench.duration.is_none());
        let cli = Cli::try_parse_from([
            "bench",
            "--scenario",
            "flow",
            "--scenario",
            "poll",
            "--duration",
            "1",
            "--pending",
            "50",
            "--json",
        ])
        .unwrap();
        assert_eq!(cli.bench.scenarios, vec![Scenario::Flow, Scenario::Poll]);
        assert_eq!(
            (cli.bench.duration, cli.bench.pending, cli.bench.json),
            (Some(1), 50, true)
        );
        for bad in [
            &["bench", "--concurrency", "0"][..],
            &["bench", "--duration", "0"],
            &["bench", "--scenario", "nope"],
            &["bench", "--pending", "0"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }
}
