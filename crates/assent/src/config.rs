//! `assent serve` configuration: flags, the same names as `ASSENT_*` environment variables, and
//! an optional TOML file (`--config`). Flags and variables win over the file; the file wins over
//! the defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use assent_server::listener::ListenerConfig;
use serde::Deserialize;

#[derive(clap::Args, Debug, Default)]
pub struct ServeArgs {
    /// TOML configuration file (keys: listen, public_url, data_dir, database_url, admin_token,
    /// admin_token_file, secret_key, secret_key_file, allow_private_notification_targets,
    /// log_format, header_read_timeout, body_read_timeout, idle_timeout, max_connections,
    /// shutdown_timeout).
    #[arg(long, env = "ASSENT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on: IP:PORT ([::1]:8080 for IPv6) or HOST:PORT [default: 127.0.0.1:8080].
    #[arg(long, env = "ASSENT_LISTEN")]
    pub listen: Option<String>,
    /// Base URL of every issuer, as clients reach it [default: http://<listen>].
    #[arg(long, env = "ASSENT_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Database: sqlite://<path> (default: <data-dir>/assent.db).
    #[arg(long, env = "ASSENT_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Admin token of the management API [default: read from, or generated into, the admin
    /// token file]. A value on the command line is visible to other users in `ps`: prefer the
    /// ASSENT_ADMIN_TOKEN environment variable or --admin-token-file.
    #[arg(long, env = "ASSENT_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// File holding the admin token [default: <data-dir>/admin-token, generated on first start].
    #[arg(long, env = "ASSENT_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Key that encrypts client secrets and private keys at rest: 32 bytes as 64 hex digits or
    /// base64 [default: <data-dir>/secret-key, generated on the first start of an empty data
    /// dir]. A value on the command line is visible to other users in `ps`: prefer
    /// --secret-key-file or the ASSENT_SECRET_KEY environment variable.
    #[arg(long, env = "ASSENT_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
    /// File holding the at-rest key (as for --secret-key); an alternative to --secret-key.
    #[arg(long, env = "ASSENT_SECRET_KEY_FILE", value_name = "PATH")]
    pub secret_key_file: Option<PathBuf>,
    /// Development and tests only: allow http and loopback/private addresses for outbound
    /// calls (application jwksUrl).
    #[arg(long, env = "ASSENT_ALLOW_PRIVATE_NOTIFICATION_TARGETS")]
    pub allow_private_notification_targets: bool,
    /// Log format: human or json [default: human]. Levels come from ASSENT_LOG (e.g. "debug").
    #[arg(long, env = "ASSENT_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Seconds a client has to send a request's line and headers [default: 10].
    #[arg(long, env = "ASSENT_HEADER_READ_TIMEOUT", value_name = "SECONDS")]
    pub header_read_timeout: Option<u64>,
    /// Seconds a client has to send a request's body once its headers are in [default: 30].
    #[arg(long, env = "ASSENT_BODY_READ_TIMEOUT", value_name = "SECONDS")]
    pub body_read_timeout: Option<u64>,
    /// Seconds a keep-alive connection with no request in flight stays open [default: 60].
    #[arg(long, env = "ASSENT_IDLE_TIMEOUT", value_name = "SECONDS")]
    pub idle_timeout: Option<u64>,
    /// Most client connections open at once [default: the open-files limit minus 128, at most
    /// 10000].
    #[arg(long, env = "ASSENT_MAX_CONNECTIONS")]
    pub max_connections: Option<u32>,
    /// Seconds to let requests in flight finish after SIGTERM/Ctrl-C [default: 10].
    #[arg(long, env = "ASSENT_SHUTDOWN_TIMEOUT", value_name = "SECONDS")]
    pub shutdown_timeout: Option<u64>,
    /// Seed a SANDBOX environment, a CIBA application and a user, and print a curl walkthrough.
    #[arg(long)]
    pub demo: bool,
}

/// The TOML file's keys (all optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub public_url: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub admin_token: Option<String>,
    pub admin_token_file: Option<PathBuf>,
    pub secret_key: Option<String>,
    pub secret_key_file: Option<PathBuf>,
    pub allow_private_notification_targets: Option<bool>,
    pub log_format: Option<String>,
    pub header_read_timeout: Option<u64>,
    pub body_read_timeout: Option<u64>,
    pub idle_timeout: Option<u64>,
    pub max_connections: Option<u32>,
    pub shutdown_timeout: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

/// The resolved configuration.
#[derive(Debug)]
pub struct Settings {
    /// `IP:PORT` or `HOST:PORT`, checked by [`check_listen`]; resolved when binding.
    pub listen: String,
    pub public_url: String,
    pub data_dir: PathBuf,
    pub database_url: String,
    /// Given directly (flag, variable or file); otherwise read from or generated into
    /// `admin_token_file`.
    pub admin_token: Option<String>,
    pub admin_token_file: PathBuf,
    pub secret_key: Option<String>,
    pub secret_key_file: Option<PathBuf>,
    pub allow_private_notification_targets: bool,
    pub log_format: LogFormat,
    pub demo: bool,
    pub connections: ListenerConfig,
}

impl Settings {
    pub fn resolve(
        args: ServeArgs,
        data_dir_flag: Option<PathBuf>,
        admin_token_flag: Option<String>,
    ) -> anyhow::Result<Settings> {
        let file = match &args.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        let listen = args
            .listen
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:8080".to_owned());
        check_listen(&listen)?;
        let public_url = args
            .public_url
            .or(file.public_url)
            .unwrap_or_else(|| format!("http://{listen}"));
        let public_url = public_url.trim_end_matches('/').to_owned();
        match reqwest::Url::parse(&public_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.query().is_none() => {}
            _ => bail!("public_url must be an http(s) URL without a query, got {public_url:?}"),
        }
        let data_dir = data_dir_flag
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(crate::cli::Connection::DEFAULT_DATA_DIR));
        let database_url = args
            .database_url
            .or(file.database_url)
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("assent.db").display()));
        let admin_token_file = args
            .admin_token_file
            .or(file.admin_token_file)
            .unwrap_or_else(|| data_dir.join("admin-token"));
        let log_format = match args.log_format.or(file.log_format).as_deref() {
            None | Some("human") => LogFormat::Human,
            Some("json") => LogFormat::Json,
            Some(other) => bail!("log_format must be human or json, got {other:?}"),
        };
        let admin_token = admin_token_flag
            .filter(|t| !t.is_empty())
            .or(file.admin_token);
        if admin_token.as_deref().is_some_and(|t| t.trim().len() < 16) {
            bail!("admin_token must be at least 16 characters");
        }
        let defaults = ListenerConfig::default();
        let seconds =
            |name: &str, flag: Option<u64>, file: Option<u64>, default: Duration| match flag
                .or(file)
            {
                None => Ok(default),
                Some(0) => bail!("{name} must be at least 1 second"),
                Some(s) => Ok(Duration::from_secs(s)),
            };
        let connections = ListenerConfig {
            header_read_timeout: seconds(
                "header_read_timeout",
                args.header_read_timeout,
                file.header_read_timeout,
                defaults.header_read_timeout,
            )?,
            body_read_timeout: seconds(
                "body_read_timeout",
                args.body_read_timeout,
                file.body_read_timeout,
                defaults.body_read_timeout,
            )?,
            idle_timeout: seconds(
                "idle_timeout",
                args.idle_timeout,
                file.idle_timeout,
                defaults.idle_timeout,
            )?,
            max_connections: match args.max_connections.or(file.max_connections) {
                None => defaults.max_connections,
                Some(0) => bail!("max_connections must be at least 1"),
                Some(n) => n,
            },
            shutdown_timeout: seconds(
                "shutdown_timeout",
                args.shutdown_timeout,
                file.shutdown_timeout,
                defaults.shutdown_timeout,
            )?,
        };
        Ok(Settings {
            listen,
            public_url,
            data_dir,
            database_url,
            admin_token,
            admin_token_file,
            secret_key: args.secret_key.or(file.secret_key),
            secret_key_file: args.secret_key_file.or(file.secret_key_file),
            allow_private_notification_targets: args.allow_private_notification_targets
                || file.allow_private_notification_targets.unwrap_or(false),
            log_format,
            demo: args.demo,
            connections,
        })
    }
}

/// `IP:PORT` (IPv6 in brackets) or `HOST:PORT` with a non-empty host and a numeric port.
fn check_listen(listen: &str) -> anyhow::Result<()> {
    if listen.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let valid_host_port = listen.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            && port.parse::<u16>().is_ok()
    });
    if !valid_host_port {
        bail!(
            "listen must be IP:PORT or HOST:PORT (e.g. 127.0.0.1:8080, [::1]:8080, 0.0.0.0:8080, localhost:8080), got {listen:?}"
        );
    }
    Ok(())
}

fn load_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid configuration file {}", path.display()))
}

/// Parses a 32-byte key given as 64 hex digits or as base64 (standard or URL-safe). Errors
/// say what is wrong in words and never echo the value.
pub fn parse_secret_key(text: &str) -> anyhow::Result<[u8; 32]> {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
    let text = text.trim();
    let expected = "secret_key must be 32 bytes as 64 hex digits or base64";
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut key = [0u8; 32];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
                .map_err(|_| anyhow::anyhow!("{expected} (not hex)"))?;
        }
        return Ok(key);
    }
    let chars = text.chars().count();
    let decoded = [STANDARD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok());
    match decoded {
        None => bail!("{expected} (got {chars} characters, which are neither)"),
        Some(bytes) => bytes.try_into().map_err(|bytes: Vec<u8>| {
            anyhow::anyhow!(
                "{expected} (got {chars} characters of base64, which decode to {} bytes)",
                bytes.len()
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_values_apply_below_flags() {
        let dir = std::env::temp_dir().join(format!("assent-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("assent.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9999\"\npublic_url = \"https://id.example.com/\"\ndata_dir = \"/tmp/x\"\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            ..ServeArgs::default()
        };
        let s = Settings::resolve(args, None, None).unwrap();
        assert_eq!(s.listen, "127.0.0.1:9999");
        assert_eq!(s.public_url, "https://id.example.com");
        assert_eq!(s.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(s.database_url, "sqlite:///tmp/x/assent.db");
        let args = ServeArgs {
            config: Some(path.clone()),
            listen: Some("127.0.0.1:7000".parse().unwrap()),
            ..ServeArgs::default()
        };
        let s = Settings::resolve(args, Some(PathBuf::from("/tmp/y")), None).unwrap();
        assert_eq!(s.listen, "127.0.0.1:7000");
        assert_eq!(s.data_dir, PathBuf::from("/tmp/y"));
        std::fs::write(&path, "bogus_key = 1\n").unwrap();
        let args = ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        };
        assert!(Settings::resolve(args, None, None).is_err());
    }

    #[test]
    fn listen_addresses() {
        for ok in [
            "127.0.0.1:8080",
            "[::1]:8080",
            "0.0.0.0:0",
            "localhost:18481",
            "id.example.com:443",
        ] {
            assert!(check_listen(ok).is_ok(), "{ok}");
        }
        for bad in [
            "localhost",
            "8080",
            ":8080",
            "127.0.0.1:99999",
            "host name:80",
            "127.0.0.1:http",
            "",
        ] {
            let e = check_listen(bad).unwrap_err().to_string();
            assert!(e.contains("IP:PORT"), "{bad}: {e}");
        }
    }

    #[test]
    fn connection_knobs() {
        let s = Settings::resolve(ServeArgs::default(), None, None).unwrap();
        assert_eq!(s.connections, ListenerConfig::default());
        assert_eq!(s.connections.shutdown_timeout, Duration::from_secs(10));
        let dir = std::env::temp_dir().join(format!("assent-config-conn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("assent.toml");
        std::fs::write(
            &path,
            "header_read_timeout = 3\nbody_read_timeout = 4\nidle_timeout = 5\nmax_connections = 6\nshutdown_timeout = 7\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            idle_timeout: Some(9),
            ..ServeArgs::default()
        };
        let s = Settings::resolve(args, None, None).unwrap();
        assert_eq!(
            s.connections,
            ListenerConfig {
                header_read_timeout: Duration::from_secs(3),
                body_read_timeout: Duration::from_secs(4),
                idle_timeout: Duration::from_secs(9),
                max_connections: 6,
                shutdown_timeout: Duration::from_secs(7),
            }
        );
        let zero = ServeArgs {
            header_read_timeout: Some(0),
            ..ServeArgs::default()
        };
        let e = Settings::resolve(zero, None, None).unwrap_err().to_string();
        assert!(e.contains("header_read_timeout"), "{e}");
        let zero = ServeArgs {
            max_connections: Some(0),
            ..ServeArgs::default()
        };
        assert!(Settings::resolve(zero, None, None).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn secret_keys() {
        assert_eq!(parse_secret_key(&"ab".repeat(32)).unwrap(), [0xab; 32]);
        assert!(parse_secret_key("short").is_err());
        assert!(parse_secret_key(&"ab".repeat(31)).is_err());
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert_eq!(parse_secret_key(&b64).unwrap(), [7u8; 32]);
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xfb; 32]);
        assert_eq!(parse_secret_key(&url).unwrap(), [0xfb; 32]);
    }

    /// Malformed keys are explained in words, without the decoder's internals or the value.
    #[test]
    fn malformed_secret_keys_are_explained() {
        let e = parse_secret_key("not-a-key-a").unwrap_err().to_string();
        assert_eq!(
            e,
            "secret_key must be 32 bytes as 64 hex digits or base64 (got 11 characters, which are neither)"
        );
        assert!(!e.contains("symbol"), "{e}");
        let e = parse_secret_key("c2hvcnQ=").unwrap_err().to_string();
        assert_eq!(
            e,
            "secret_key must be 32 bytes as 64 hex digits or base64 (got 8 characters of base64, which decode to 5 bytes)"
        );
        let e = parse_secret_key(&"zz".repeat(32)).unwrap_err().to_string();
        assert!(e.starts_with("secret_key must be 32 bytes"), "{e}");
        assert!(!e.contains("zz"), "{e}");
    }
}
