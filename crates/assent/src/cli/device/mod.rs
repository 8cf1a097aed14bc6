//! `assent device …`: this machine as one user's authentication device (§6.1). Not an admin
//! command: `enroll` trades a one-time code for a device id and keeps the new private key in a
//! local key file (mode 0600); every later call is authenticated by a fresh JWS of that key.
//!
//! [`key_file`] is the key file on disk, [`http`] the calls and the server's answers (and the
//! enrolment), [`enrolled`] this machine as the enrolled device (its JWS and decisions),
//! [`listen`] the interactive loop.

mod enrolled;
mod http;
mod key_file;
mod listen;

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Result, anyhow};
use assent_crypto::SigningAlg;
use serde_json::Value;
use time::OffsetDateTime;

use super::table::{Table, cell};
use super::{EnvArg, out, outln, print_json};
use enrolled::{Decision, Device, auth_req_id, not_pending};
use http::enroll;
use key_file::{default_device_name, key_file_path};
use listen::{listen, time_left};

wire_enum! {
    /// Algorithm of the device key.
    DeviceAlg { Es256 => "ES256", EdDsa => "EdDSA" }
}

impl DeviceAlg {
    fn signing_alg(self) -> SigningAlg {
        match self {
            DeviceAlg::Es256 => SigningAlg::ES256,
            DeviceAlg::EdDsa => SigningAlg::EdDSA,
        }
    }
}

/// `assent device [--key-file PATH] <subcommand>`.
#[derive(clap::Args, Debug)]
pub struct DeviceArgs {
    #[command(flatten)]
    key_file: KeyFileArg,
    #[command(subcommand)]
    cmd: DeviceCommand,
}

/// Where the device key lives.
#[derive(clap::Args, Debug, Clone)]
pub struct KeyFileArg {
    /// The device key file: written by `enroll` (mode 0600), read by every other subcommand
    /// [default: $XDG_CONFIG_HOME/assent/device.json, else ~/.config/assent/device.json].
    #[arg(long, global = true, env = "ASSENT_DEVICE_KEY", value_name = "PATH")]
    key_file: Option<PathBuf>,
}

/// `--server` of the subcommands that read the key file.
#[derive(clap::Args, Debug, Clone)]
pub struct ServerOverride {
    /// Base URL of the server, instead of the one recorded in the key file at enrolment.
    #[arg(long, value_name = "URL")]
    server: Option<String>,
}

#[derive(clap::Subcommand, Debug)]
pub enum DeviceCommand {
    /// Enrol this machine as a device of the user an admin made a one-time code for
    /// (`assent device-admin enroll-code`): makes a key pair, registers its public key and
    /// writes the key file
    Enroll {
        /// Base URL of the server.
        #[arg(long, env = "ASSENT_SERVER", value_name = "URL")]
        server: String,
        #[command(flatten)]
        env: EnvArg,
        /// The one-time enrolment code.
        #[arg(long, allow_hyphen_values = true)]
        code: String,
        /// Display name of this device [default: "assent CLI on <hostname>"].
        #[arg(long)]
        name: Option<String>,
        /// Algorithm of the new key.
        #[arg(long, value_enum, ignore_case = true, default_value = "ES256")]
        algorithm: DeviceAlg,
        /// Replace an existing key file (the device enrolled with it stays registered until
        /// an admin deletes it).
        #[arg(long)]
        force: bool,
    },
    /// List the pending requests of this device's user
    List {
        #[command(flatten)]
        server: ServerOverride,
        /// Print the server's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Approve a pending request of this device's user
    Approve {
        #[command(flatten)]
        server: ServerOverride,
        /// The request's auth_req_id.
        #[arg(value_name = "AUTH_REQ_ID", allow_hyphen_values = true)]
        id: String,
    },
    /// Deny a pending request of this device's user
    Deny {
        #[command(flatten)]
        server: ServerOverride,
        /// The request's auth_req_id.
        #[arg(value_name = "AUTH_REQ_ID", allow_hyphen_values = true)]
        id: String,
    },
    /// Wait for requests; show each one and ask on standard input whether to approve it
    /// (y/n; the end of the input stops)
    Listen {
        #[command(flatten)]
        server: ServerOverride,
        /// Stop after the first decision.
        #[arg(long)]
        once: bool,
    },
}

pub async fn run(args: DeviceArgs) -> Result<()> {
    let path = key_file_path(&args.key_file)?;
    match args.cmd {
        DeviceCommand::Enroll {
            server,
            env,
            code,
            name,
            algorithm,
            force,
        } => {
            let name = name.unwrap_or_else(default_device_name);
            enroll(&path, &server, &env.env, &code, &name, algorithm, force).await
        }
        DeviceCommand::List { server, json } => {
            let device = Device::load(&path, &server)?;
            let pending = device.pending(0).await?;
            if json {
                return print_json(&Value::Array(pending));
            }
            if pending.is_empty() {
                return outln("No pending requests.");
            }
            let now = OffsetDateTime::now_utc();
            let mut t = Table::new([
                "AUTH REQ ID",
                "APPLICATION",
                "BINDING MESSAGE",
                "SCOPE",
                "TIME LEFT",
            ]);
            for r in &pending {
                t.row([
                    cell(r, "authReqId"),
                    cell(r, "applicationName"),
                    cell(r, "bindingMessage"),
                    cell(r, "scope"),
                    time_left(r.get("expiresAt"), now),
                ]);
            }
            out(&t.render())
        }
        DeviceCommand::Approve { server, id } => {
            decide_one(&Device::load(&path, &server)?, &id, Decision::Approve).await
        }
        DeviceCommand::Deny { server, id } => {
            decide_one(&Device::load(&path, &server)?, &id, Decision::Deny).await
        }
        DeviceCommand::Listen { server, once } => {
            let device = Device::load(&path, &server)?;
            let mut input = tokio::io::BufReader::new(tokio::io::stdin());
            listen(&device, &mut input, std::io::stdin().is_terminal(), once).await
        }
    }
}

/// `approve` / `deny`: the request as listed (for its binding message), then the decision.
async fn decide_one(device: &Device, id: &str, decision: Decision) -> Result<()> {
    let pending = device.pending(0).await?;
    let request = pending
        .iter()
        .find(|r| auth_req_id(r) == Some(id))
        .ok_or_else(|| anyhow!(not_pending(id)))?;
    device.decide(request, decision).await?;
    outln(&format!("{} {id}", decision.done()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct T {
        #[command(flatten)]
        args: DeviceArgs,
    }

    #[test]
    fn parses_the_device_subcommands() {
        let ok: &[&[&str]] = &[
            &[
                "enroll",
                "--server",
                "http://h:1",
                "--env",
                "E",
                "--code",
                "-c0de",
            ],
            &[
                "--key-file",
                "/k",
                "enroll",
                "--server",
                "http://h:1",
                "--env",
                "E",
                "--code",
                "c",
                "--name",
                "N",
                "--algorithm",
                "eddsa",
                "--force",
            ],
            &["list", "--json", "--key-file", "/k"],
            &["list", "--server", "http://other:2"],
            &["approve", "-r1"],
            &["deny", "r1", "--server", "http://h:1"],
            &["listen", "--once"],
        ];
        for args in ok {
            let argv = std::iter::once("t").chain(args.iter().copied());
            T::try_parse_from(argv).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        }
        let cli = T::try_parse_from(["t", "enroll", "--server", "s", "--env", "E", "--code", "c"])
            .unwrap();
        let DeviceCommand::Enroll {
            algorithm, force, ..
        } = cli.args.cmd
        else {
            panic!("not enroll")
        };
        assert_eq!((algorithm, force), (DeviceAlg::Es256, false));
        for bad in [
            &["enroll", "--env", "E", "--code", "c", "--server"][..],
            &["enroll", "--server", "s", "--env", "E"],
            &[
                "enroll",
                "--server",
                "s",
                "--env",
                "E",
                "--code",
                "c",
                "--algorithm",
                "RS256",
            ],
            &["approve"],
        ] {
            let argv = std::iter::once("t").chain(bad.iter().copied());
            assert!(T::try_parse_from(argv).is_err(), "{bad:?} should not parse");
        }
    }
}
