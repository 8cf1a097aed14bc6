//! `assent <admin subcommands>`: a client of a running server's management API (§5).
//!
//! [`Connection`] says how to reach the server, [`AdminCommand`] what to do, [`run`] does it.
//! Tables go to stdout; `--json` prints the server's JSON instead. Failures are returned as
//! `anyhow` errors whose text is ready to print after `error: ` (a management-API error is a
//! [`client::ApiError`]: `<code>: <message>` and one `  - <target>: <message>` line per detail).

/// A clap value enum spelled as on the wire, with `as_str`.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $name {
            $(#[value(name = $wire)] $variant),+
        }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $wire),+
                }
            }
        }
    };
}

mod activity;
mod app;
pub mod client;
pub mod device;
mod device_admin;
mod env;
mod key;
mod request;
pub mod table;
mod user;

use std::io::Write;

use anyhow::{Context, Result};
use serde_json::Value;

pub use app::AppCommand;
pub use device_admin::DeviceAdminCommand;
pub use env::EnvCommand;
pub use key::KeyCommand;
pub use request::RequestCommand;
pub use user::UserCommand;

/// Where the data lives. `global = true` so it works after any subcommand; `serve`,
/// `secret-key` and the admin commands (which look for admin-token there) all use it.
#[derive(clap::Args, Debug, Clone)]
pub struct Connection {
    /// Data directory: where `serve` keeps its database and keys, and where admin commands
    /// look for admin-token when --admin-token is not given [default: ./assent-data].
    #[arg(long = "data-dir", global = true, env = "ASSENT_DATA_DIR")]
    pub data_dir: Option<std::path::PathBuf>,
}

impl Connection {
    pub const DEFAULT_DATA_DIR: &'static str = "./assent-data";

    pub fn data_dir(&self) -> std::path::PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| std::path::PathBuf::from(Self::DEFAULT_DATA_DIR))
    }
}

/// Which server an admin command talks to, with which token, and how it prints. Only on admin
/// commands (`serve` has its own --admin-token; --server and --json mean nothing there);
/// `global = true` within them, so they work after the subcommand.
#[derive(clap::Args, Debug, Clone)]
pub struct Target {
    /// Admin token; when absent, read from <data-dir>/admin-token (written by `assent serve` on
    /// first start). A value on the command line is visible to other users in `ps`: prefer the
    /// ASSENT_ADMIN_TOKEN environment variable, or the token file.
    #[arg(
        long,
        global = true,
        env = "ASSENT_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
    /// Base URL of a running server.
    #[arg(
        long,
        global = true,
        env = "ASSENT_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: String,
    /// Print the server's JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(clap::Subcommand, Debug)]
pub enum AdminCommand {
    /// Environments
    Env {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        cmd: EnvCommand,
    },
    /// Applications (relying parties) of an environment, and their secrets
    App {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        cmd: AppCommand,
    },
    /// Users of an environment
    User {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        cmd: UserCommand,
    },
    /// Token-signing keys of an environment
    Key {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        cmd: KeyCommand,
    },
    /// Pending CIBA requests
    Request {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        cmd: RequestCommand,
    },
    /// Device keys of a user, and one-time codes to enrol one
    DeviceAdmin {
        #[command(flatten)]
        target: Target,
        #[command(subcommand)]
        cmd: DeviceAdminCommand,
    },
}

/// Runs one admin command against the server described by `conn` and the command's target.
pub async fn run(conn: &Connection, cmd: AdminCommand) -> anyhow::Result<()> {
    match cmd {
        AdminCommand::Env { target, cmd } => env::run(&client::Api::new(conn, &target)?, cmd).await,
        AdminCommand::App { target, cmd } => app::run(&client::Api::new(conn, &target)?, cmd).await,
        AdminCommand::User { target, cmd } => {
            user::run(&client::Api::new(conn, &target)?, cmd).await
        }
        AdminCommand::Key { target, cmd } => key::run(&client::Api::new(conn, &target)?, cmd).await,
        AdminCommand::Request { target, cmd } => {
            request::run(&client::Api::new(conn, &target)?, cmd).await
        }
        AdminCommand::DeviceAdmin { target, cmd } => {
            device_admin::run(&client::Api::new(conn, &target)?, cmd).await
        }
    }
}

/// `--env`: the environment a command works in.
#[derive(clap::Args, Debug, Clone)]
pub struct EnvArg {
    /// Environment id.
    #[arg(long = "env", env = "ASSENT_ENV", value_name = "ENV_ID")]
    pub env: String,
}

/// `--limit` of list commands.
#[derive(clap::Args, Debug, Clone)]
pub struct Paging {
    /// Stop after this many items (default: fetch every page).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: Option<u32>,
}

/// Writes to stdout; a closed pipe (`assent … | head`) ends output quietly.
fn out(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to standard output"),
    }
}

/// One line to stdout.
fn outln(line: &str) -> Result<()> {
    out(&format!("{line}\n"))
}

/// A status note to stderr (kept off stdout so scripts can capture ids and secrets).
fn note(line: &str) {
    eprintln!("{line}");
}

/// Pretty JSON to stdout.
fn print_json(v: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(v).context("cannot format JSON")?;
    outln(&text)
}

/// The `id` of a resource the server returned.
fn id_of(v: &Value) -> Result<String> {
    v.get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .context("the server's answer has no id")
}

/// Prints a list as a table (or a line saying it is empty), with a count when it was cut short.
fn print_listing(
    api: &client::Api,
    resource: &str,
    what: &str,
    listing: &client::Listing,
    table: &table::Table,
) -> Result<()> {
    if api.json {
        return print_json(&listing.to_json(resource));
    }
    if table.is_empty() {
        return outln(&format!("No {what}."));
    }
    out(&table.render())?;
    let shown = listing.items.len() as u64;
    if let Some(total) = listing.count.filter(|&total| total > shown) {
        note(&format!(
            "(showing {shown} of {total} {what}; raise --limit to see more)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    /// The shape main.rs uses.
    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        conn: Connection,
        #[command(subcommand)]
        cmd: Command,
    }

    #[derive(clap::Subcommand, Debug)]
    enum Command {
        Serve,
        #[command(flatten)]
        Admin(AdminCommand),
    }

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_the_documented_commands() -> Result<()> {
        let cases: &[&[&str]] = &[
            &["env", "create", "--name", "Demo", "--type", "SANDBOX"],
            &[
                "env",
                "create",
                "--name",
                "D",
                "--type",
                "production",
                "--description",
                "x",
            ],
            &["env", "list", "--json"],
            &["env", "delete", "E1"],
            &[
                "app",
                "create",
                "--env",
                "E",
                "--name",
                "N",
                "--grant-types",
                "CIBA,REFRESH_TOKEN",
                "--auth-method",
                "CLIENT_SECRET_BASIC",
                "--delivery-mode",
                "POLL",
                "--jwks-url",
                "https://x/jwks",
                "--id-token-alg",
                "RS256",
            ],
            &["app", "list", "--env", "E", "--limit", "5"],
            &["app", "show", "--env", "E", "A"],
            &["app", "secret", "--env", "E", "A"],
            &["app", "rotate-secret", "--env", "E", "A"],
            &[
                "user",
                "create",
                "--env",
                "E",
                "--username",
                "u",
                "--email",
                "u@x",
                "--given-name",
                "G",
                "--family-name",
                "F",
                "--phone",
                "+1",
                "--password-stdin",
                "--auto-decision",
                "APPROVE",
                "--auto-decision-delay-ms",
                "50",
            ],
            &["user", "list", "--env", "E", "--username", "u"],
            &["user", "delete", "--env", "E", "U"],
            &["key", "rotate", "--env", "E", "--algorithm", "EdDSA"],
            &["key", "list", "--env", "E"],
            &[
                "request",
                "list",
                "--env",
                "E",
                "--status",
                "PENDING",
                "--user-id",
                "U",
                "--app-id",
                "A",
            ],
            &["request", "show", "--env", "E", "R"],
            &["request", "approve", "--env", "E", "R"],
            &["request", "deny", "--env", "E", "R"],
            &["request", "cancel", "--env", "E", "R"],
            &[
                "--data-dir",
                "/d",
                "env",
                "--server",
                "http://h:1",
                "--admin-token",
                "t",
                "list",
            ],
            &[
                "env",
                "list",
                "--server",
                "http://h:1",
                "--admin-token",
                "t",
                "--data-dir",
                "/d",
                "--json",
            ],
        ];
        for args in cases {
            let argv = std::iter::once("assent").chain(args.iter().copied());
            Cli::try_parse_from(argv).with_context(|| format!("{args:?}"))?;
        }
        let bad: &[&[&str]] = &[
            &["env", "create", "--name", "D", "--type", "STAGING"],
            &[
                "app",
                "create",
                "--env",
                "E",
                "--name",
                "N",
                "--jwks-url",
                "u",
                "--jwks-file",
                "f",
            ],
            &[
                "user",
                "create",
                "--env",
                "E",
                "--username",
                "u",
                "--password",
                "p",
                "--password-stdin",
            ],
            &["app", "list", "--env", "E", "--limit", "0"],
        ];
        for args in bad {
            let argv = std::iter::once("assent").chain(args.iter().copied());
            assert!(
                Cli::try_parse_from(argv).is_err(),
                "{args:?} should not parse"
            );
        }
        Ok(())
    }

    #[test]
    fn key_rotate_defaults_to_rs256() -> Result<()> {
        let cli = Cli::try_parse_from(["assent", "key", "rotate", "--env", "E"])?;
        match cli.cmd {
            Command::Admin(AdminCommand::Key {
                cmd: KeyCommand::Rotate { algorithm, .. },
                ..
            }) => {
                assert_eq!(algorithm.as_str(), "RS256");
            }
            other => anyhow::bail!("unexpected parse: {other:?}"),
        }
        Ok(())
    }
}
