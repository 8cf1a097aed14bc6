//! `assent`: the server (`assent serve`) and the admin command-line client.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod bench;
mod cli;
mod config;
mod demo;
mod secret_key;
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
    /// The at-rest key (check it, rotate it with the server stopped)
    #[command(subcommand)]
    SecretKey(secret_key::SecretKeyCommand),
    #[command(flatten)]
    Admin(cli::AdminCommand),
    /// Act as a user's authentication device (no admin token): enrol a key with a one-time
    /// code, then list, approve and deny that user's requests
    Device(cli::device::DeviceArgs),
    /// Load a running server with CIBA traffic and report throughput, latency, errors and
    /// CPU per operation (it creates, and then deletes, its own SANDBOX environment)
    Bench(bench::BenchArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(&cli.conn, args).await,
        Command::SecretKey(cmd) => secret_key::run(cli.conn.data_dir.clone(), cmd).await,
        Command::Admin(cmd) => cli::run(&cli.conn, cmd).await,
        Command::Device(args) => cli::device::run(args).await,
        Command::Bench(args) => bench::run(&cli.conn, args).await,
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
    use clap::CommandFactory;

    /// Every subcommand and every argument says what it is (`--help` has no blank entries).
    #[test]
    fn every_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") || arg.is_hide_set() {
                    continue;
                }
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                if help.trim().is_empty() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_name() == "help" {
                    continue;
                }
                let about = sub.get_about().map(|h| h.to_string()).unwrap_or_default();
                let path = format!("{path} {}", sub.get_name());
                if about.trim().is_empty() {
                    missing.push(format!("{path} (about)"));
                }
                walk(sub, &path, missing);
            }
        }
        let mut cmd = Cli::command();
        cmd.build();
        let mut missing = Vec::new();
        walk(&cmd, "assent", &mut missing);
        assert!(missing.is_empty(), "without help: {missing:#?}");
    }

    /// `--server` and `--json` belong to admin commands; `serve` neither lists nor takes them.
    #[test]
    fn serve_takes_no_admin_target_arguments() {
        let mut cmd = Cli::command();
        cmd.build();
        let serve = cmd.find_subcommand_mut("serve").unwrap();
        let help = serve.render_long_help().to_string();
        assert!(
            !help.contains("--server") && !help.contains("--json"),
            "{help}"
        );
        assert!(
            help.contains("--secret-key-file") && help.contains("visible"),
            "{help}"
        );
        assert!(
            help.contains("--admin-token") && help.contains("--data-dir"),
            "{help}"
        );
        for extra in ["--server", "--json"] {
            let mut argv = vec!["assent", "serve", extra];
            if extra == "--server" {
                argv.push("http://x");
            }
            assert!(Cli::try_parse_from(argv).is_err(), "serve {extra}");
        }
        let cli =
            Cli::try_parse_from(["assent", "env", "list", "--server", "http://h:1", "--json"])
                .unwrap();
        assert!(format!("{:?}", cli.command).contains("http://h:1"));
        for extra in ["--server", "--admin-token"] {
            assert!(
                Cli::try_parse_from(["assent", "secret-key", "rotate", extra, "x"]).is_err(),
                "secret-key rotate {extra}"
            );
        }
        let token = "t".repeat(20);
        let cli = Cli::try_parse_from(["assent", "serve", "--admin-token", &token]).unwrap();
        assert!(format!("{:?}", cli.command).contains(&token));
    }

    /// `env delete` takes --env like every other command (the positional id is a hidden alias)
    /// and --yes.
    #[test]
    fn env_delete_takes_env_and_yes() {
        for argv in [
            &["assent", "env", "delete", "--env", "E1", "--yes"][..],
            &["assent", "env", "delete", "--env", "E1"],
            &["assent", "env", "delete", "E1", "--yes"],
        ] {
            let cli = Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
            let text = format!("{:?}", cli.command);
            assert!(text.contains("\"E1\""), "{text}");
            assert_eq!(
                text.contains("yes: true"),
                argv.contains(&"--yes"),
                "{text}"
            );
        }
        for argv in [
            &["assent", "env", "delete"][..],
            &["assent", "env", "delete", "--yes"],
            &["assent", "env", "delete", "--env", "E1", "E2"],
        ] {
            assert!(Cli::try_parse_from(argv).is_err(), "{argv:?}");
        }
    }

    #[test]
    fn secret_key_subcommands_parse() {
        for argv in [
            &["assent", "secret-key", "check"][..],
            &["assent", "secret-key", "check", "--secret-key-file", "/k"],
            &[
                "assent",
                "secret-key",
                "rotate",
                "--new-key-file",
                "/n",
                "--data-dir",
                "/d",
            ],
        ] {
            Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        }
        let mut cmd = Cli::command();
        cmd.build();
        let rotate = cmd
            .find_subcommand_mut("secret-key")
            .unwrap()
            .find_subcommand_mut("rotate")
            .unwrap();
        let help = rotate.render_long_help().to_string();
        assert!(help.contains("STOPPED"), "{help}");
    }

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
