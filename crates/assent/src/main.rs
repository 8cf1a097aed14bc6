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
