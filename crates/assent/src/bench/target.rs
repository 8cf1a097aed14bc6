//! Which server the bench loads, whether it may, and where its CPU time can be read.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{Result, bail};
use reqwest::Url;

use super::procfs::{self, CpuClock};

/// Where the bench goes when neither --server nor ASSENT_SERVER says.
const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// The server to load and whether it was named on the command line.
#[derive(Debug, PartialEq, Eq)]
pub struct ServerChoice {
    pub url: String,
    pub explicit: bool,
}

pub fn choose_server(flag: Option<&str>, env: Option<&str>) -> ServerChoice {
    let blank = |s: &&str| s.trim().is_empty();
    match (flag.filter(|s| !blank(s)), env.filter(|s| !blank(s))) {
        (Some(url), _) => ServerChoice {
            url: url.trim().to_owned(),
            explicit: true,
        },
        (None, Some(url)) => ServerChoice {
            url: url.trim().to_owned(),
            explicit: false,
        },
        (None, None) => ServerChoice {
            url: DEFAULT_SERVER.to_owned(),
            explicit: false,
        },
    }
}

/// Whether the URL's host is a loopback address or `localhost`.
pub fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => {
            host.eq_ignore_ascii_case("localhost")
                || host.to_ascii_lowercase().ends_with(".localhost")
        }
    }
}

/// Refuses a server off this machine that was not named with --server.
pub fn check_reach(choice: &ServerChoice, url: &Url) -> Result<()> {
    if choice.explicit || is_loopback(url) {
        return Ok(());
    }
    bail!(
        "ASSENT_SERVER is {}, which is not a loopback address; assent bench loads a server \
         hard, so it goes to another machine only when --server names it on the command line",
        choice.url
    )
}

/// The server's stat file and pid, or why its CPU time is not known.
pub fn locate_server(
    pid: Option<u32>,
    local: bool,
    port: u16,
    clock: CpuClock,
) -> Result<Result<(u32, PathBuf), String>> {
    if let Some(pid) = pid {
        let path = procfs::process_stat(pid);
        if clock.read(&path).is_none() {
            bail!(
                "--server-pid {pid}: cannot read {} (no such process?)",
                path.display()
            );
        }
        return Ok(Ok((pid, path)));
    }
    if !local {
        return Ok(Err(
            "the server is not on loopback (give --server-pid if it runs on this machine)"
                .to_owned(),
        ));
    }
    Ok(procfs::find_listener(port).map(|pid| (pid, procfs::process_stat(pid))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::client::parse_server;

    #[test]
    fn the_server_comes_from_the_flag_then_the_environment_then_the_default() {
        assert_eq!(
            choose_server(Some("http://h:1"), Some("http://e:2")),
            ServerChoice {
                url: "http://h:1".into(),
                explicit: true
            }
        );
        assert_eq!(
            choose_server(None, Some(" http://e:2 ")),
            ServerChoice {
                url: "http://e:2".into(),
                explicit: false
            }
        );
        assert_eq!(
            choose_server(Some(" "), None),
            ServerChoice {
                url: DEFAULT_SERVER.into(),
                explicit: false
            }
        );
    }

    #[test]
    fn only_loopback_unless_named_with_server() -> Result<()> {
        for loopback in [
            "http://127.0.0.1:8080",
            "http://127.1.2.3",
            "http://[::1]:8080",
            "http://localhost:8080",
            "http://LocalHost",
            "http://api.localhost:1",
        ] {
            assert!(is_loopback(&parse_server(loopback)?), "{loopback}");
            let implicit = ServerChoice {
                url: loopback.into(),
                explicit: false,
            };
            check_reach(&implicit, &parse_server(loopback)?)?;
        }
        for remote in [
            "http://10.0.0.1:8080",
            "http://[2001:db8::1]",
            "http://assent.example.com",
            "http://localhost.example.com",
        ] {
            let url = parse_server(remote)?;
            assert!(!is_loopback(&url), "{remote}");
            let implicit = ServerChoice {
                url: remote.into(),
                explicit: false,
            };
            let err = check_reach(&implicit, &url).unwrap_err().to_string();
            assert!(err.contains("--server") && err.contains(remote), "{err}");
            let explicit = ServerChoice {
                url: remote.into(),
                explicit: true,
            };
            check_reach(&explicit, &url)?;
        }
        Ok(())
    }
}
