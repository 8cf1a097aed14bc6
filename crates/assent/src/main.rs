//! `assent`: the server (`assent serve`) and the admin command-line client.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod cli;
mod config;
mod demo;
mod serve;

use std::process::ExitCode;

use clap::Parser;

/// Assent: a self-hosted OpenID Provider built around CIBA.
#[derive(Parser, Debug)]
#[command(name = "assent", version, about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    conn: cli::Connection,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Start the server.
    Serve(config::ServeArgs),
    #[command(flatten)]
    Admin(cli::AdminCommand),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(&cli.conn, args).await,
        Command::Admin(cmd) => cli::run(&cli.conn, cmd).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// auth_req_ids are base64url and may start with '-': they must still parse as the id.
    #[test]
    fn auth_req_ids_may_start_with_a_hyphen() {
        for id in ["-cAbc_123", "--xyz-9", "-e"] {
            let cli = Cli::try_parse_from(["assent", "request", "approve", "--env", "E", id])
                .unwrap_or_else(|e| panic!("{id}: {e}"));
            let Command::Admin(cmd) = cli.command else {
                panic!("expected an admin command")
            };
            assert!(format!("{cmd:?}").contains(&format!("{id:?}")), "{cmd:?}");
        }
    }
}
