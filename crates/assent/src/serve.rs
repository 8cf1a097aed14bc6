//! `assent serve`: prepare the data dir, the at-rest key and the admin token, open the store,
//! serve HTTP until SIGTERM/Ctrl-C (connection limits and the shutdown deadline are in
//! `assent_server::listener`), and run scheduled work and purge expired rows in the
//! background.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use assent_crypto::SecretBox;
use assent_server::{AppState, ServerConfig, SystemClock};
use assent_store::{Store, StoreConfig};

use crate::cli::Connection;
use crate::config::{LogFormat, ServeArgs, Settings};

/// How often expired rows (jtis, tokens, long-expired requests) are purged.
const PURGE_EVERY: Duration = Duration::from_secs(600);

pub async fn run(conn: &Connection, mut args: ServeArgs) -> anyhow::Result<()> {
    let admin_token = args.admin_token.take();
    let settings = Settings::resolve(args, conn.data_dir.clone(), admin_token)?;
    init_tracing(settings.log_format);
    // Bind before anything is written: a port in use fails with nothing created.
    let listener = tokio::net::TcpListener::bind(settings.listen.as_str())
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;

    if !settings.data_dir.exists() {
        std::fs::create_dir_all(&settings.data_dir).with_context(|| {
            format!(
                "cannot create the data directory {}",
                settings.data_dir.display()
            )
        })?;
        // Only a directory Assent created is made private; an existing one is left as it is.
        restrict_dir(&settings.data_dir);
        tracing::info!(path = %settings.data_dir.display(), "created the data directory (mode 0700)");
    }

    let admin_token = match &settings.admin_token {
        Some(t) => t.clone(),
        None => load_or_create_admin_token(&settings.admin_token_file)?,
    };

    let store: Arc<dyn Store> =
        assent_store::open(&StoreConfig::new(&settings.database_url)).await?;
    // The key the data is sealed with, or a refusal; generated only for an empty database.
    let secret_key = crate::secret_key::establish(store.as_ref(), &settings).await?;
    let config = ServerConfig {
        public_url: settings.public_url.clone(),
        admin_token,
        allow_private_notification_targets: settings.allow_private_notification_targets,
    };
    if settings.allow_private_notification_targets {
        tracing::warn!(
            "allow_private_notification_targets is on: outbound calls may reach http and private addresses (development only)"
        );
    }
    let state = AppState::new(
        store.clone(),
        config,
        SecretBox::new(&secret_key),
        Arc::new(SystemClock),
    );
    let app = assent_server::router(state.clone());

    tracing::info!(
        listen = %settings.listen,
        public_url = %settings.public_url,
        data_dir = %settings.data_dir.display(),
        "Assent is listening"
    );

    if settings.demo {
        let seeded = crate::demo::seed(app.clone(), &state).await?;
        crate::demo::print_walkthrough(&seeded, &settings);
    }

    // Runs scheduled work (automatic SANDBOX decisions), including what came due while no
    // server ran; ends with the state's shutdown.
    let worker = assent_server::work::start(&state);
    tracing::info!(worker = worker.id(), "scheduled-work worker started");
    drop(state.spawn_background(purge_loop(state.clone())));
    let shutdown_timeout = settings.connections.shutdown_timeout;
    // The signal also cancels the state's token, so long-lived streams end and the
    // connections can drain.
    let cancel = state.shutdown.clone();
    let signalled = Arc::new(std::sync::OnceLock::new());
    let signal = {
        let signalled = signalled.clone();
        async move {
            shutdown_signal().await;
            let _ = signalled.set(std::time::Instant::now());
            cancel.cancel();
        }
    };
    let served = assent_server::listener::serve(listener, app, settings.connections, signal)
        .await
        .context("the HTTP server failed");
    // One deadline for the whole shutdown, counted from the signal: what the connections
    // left of it is what the background tasks get.
    let remaining = signalled.get().map_or(shutdown_timeout, |at| {
        shutdown_timeout.saturating_sub(at.elapsed())
    });
    if !state.shut_down(remaining).await {
        tracing::warn!(
            deadline_secs = shutdown_timeout.as_secs(),
            "background tasks did not stop within the shutdown deadline"
        );
    }
    served?;
    tracing::info!("Assent stopped");
    Ok(())
}

fn init_tracing(format: LogFormat) {
    let (filter, warning) = log_filter(std::env::var("ASSENT_LOG").ok().as_deref());
    // Logs go to stderr; stdout is kept for what a person asked for (the demo walkthrough).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Human => builder.try_init(),
    };
    if let Some(warning) = warning {
        tracing::warn!("{warning}");
    }
}

/// The log filter from `ASSENT_LOG`, or the default; an invalid filter falls back to the
/// default with a warning to log (never silently).
fn log_filter(value: Option<&str>) -> (tracing_subscriber::EnvFilter, Option<String>) {
    use tracing_subscriber::EnvFilter;
    const DEFAULT: &str = "info,sqlx=warn";
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => (EnvFilter::new(DEFAULT), None),
        Some(v) => match EnvFilter::try_new(v) {
            Ok(filter) => (filter, None),
            Err(e) => (
                EnvFilter::new(DEFAULT),
                Some(format!(
                    "ASSENT_LOG={v:?} is not a valid log filter ({e}); logging at the default level, info. Examples: ASSENT_LOG=debug, ASSENT_LOG=info,assent_server=debug"
                )),
            ),
        },
    }
}

#[cfg(unix)]
fn restrict_dir(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700));
}
#[cfg(not(unix))]
fn restrict_dir(_path: &Path) {}

/// Writes a new secret file with mode 0600, failing if it already exists.
pub(crate) fn write_secret_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

fn load_or_create_admin_token(path: &Path) -> anyhow::Result<String> {
    if path.exists() {
        let token = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the admin token file {}", path.display()))?
            .trim()
            .to_owned();
        if token.is_empty() {
            bail!("the admin token file {} is empty", path.display());
        }
        tracing::info!(path = %path.display(), "admin token read from file");
        return Ok(token);
    }
    let token = assent_crypto::random_token(32);
    write_secret_file(path, &format!("{token}\n"))?;
    tracing::info!(path = %path.display(), "generated an admin token (mode 0600); the management API and CLI use it");
    Ok(token)
}

async fn purge_loop(state: AppState) {
    let mut tick = tokio::time::interval(PURGE_EVERY);
    loop {
        tick.tick().await;
        match state.store.purge_expired(state.now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "purged expired rows"),
            Err(e) => tracing::warn!(error = %e, "purge of expired rows failed"),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_log_filters_are_reported_not_ignored() {
        assert!(log_filter(None).1.is_none());
        assert!(log_filter(Some("debug")).1.is_none());
        assert!(log_filter(Some("info,assent_server=trace")).1.is_none());
        let (filter, warning) = log_filter(Some("info,[="));
        let warning = warning.expect("a warning for an invalid filter");
        assert!(
            warning.contains("ASSENT_LOG=\"info,[=\" is not a valid log filter"),
            "{warning}"
        );
        assert!(warning.contains("info"), "{warning}");
        assert_eq!(
            filter.max_level_hint(),
            Some(tracing_subscriber::filter::LevelFilter::INFO)
        );
    }
}
