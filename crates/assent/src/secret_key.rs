//! The at-rest key: where it comes from, the database's key check (a MAC of a fixed label under
//! the key, never the key), and `assent secret-key check | rotate`.
//!
//! The rule: a database that holds data sealed under a key only ever starts with that key. A key
//! is generated only when the default `<data-dir>/secret-key` file is missing AND the database
//! holds neither a key check nor any sealed value.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use assent_crypto::SecretBox;
use assent_server::secrets;
use assent_store::{META_KEY_CHECK, Resealed, SealedKind, SealedValue, Store};

use crate::config::{ServeArgs, Settings, parse_secret_key};

/// Where the at-rest key comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// The `secret_key` setting, as a value.
    Value,
    /// The `secret_key_file` setting.
    File(PathBuf),
    /// `<data-dir>/secret-key`, generated on the first start of an empty data dir.
    Default(PathBuf),
}

impl KeySource {
    pub fn of(settings: &Settings) -> anyhow::Result<KeySource> {
        match (&settings.secret_key, &settings.secret_key_file) {
            (Some(_), Some(_)) => bail!(
                "give the at-rest key either as secret_key (--secret-key, ASSENT_SECRET_KEY) or as secret_key_file (--secret-key-file, ASSENT_SECRET_KEY_FILE), not both"
            ),
            (Some(_), None) => Ok(KeySource::Value),
            (None, Some(path)) => Ok(KeySource::File(path.clone())),
            (None, None) => Ok(KeySource::Default(settings.data_dir.join("secret-key"))),
        }
    }

    fn describe(&self) -> String {
        match self {
            KeySource::Value => {
                "secret_key (--secret-key, ASSENT_SECRET_KEY or the configuration file)".into()
            }
            KeySource::File(p) => format!("the key file {} (secret_key_file)", p.display()),
            KeySource::Default(p) => format!("the key file {}", p.display()),
        }
    }

    fn path(&self) -> Option<&Path> {
        match self {
            KeySource::Value => None,
            KeySource::File(p) | KeySource::Default(p) => Some(p),
        }
    }
}

/// Reads the key; `None` only when the default key file does not exist (yet).
fn load(source: &KeySource, settings: &Settings) -> anyhow::Result<Option<[u8; 32]>> {
    match source {
        KeySource::Value => {
            let text = settings.secret_key.as_deref().unwrap_or_default();
            parse_secret_key(text).map(Some)
        }
        KeySource::File(path) => read_key_file(path).map(Some),
        KeySource::Default(path) if !path.exists() => Ok(None),
        KeySource::Default(path) => read_key_file(path).map(Some),
    }
}

fn read_key_file(path: &Path) -> anyhow::Result<[u8; 32]> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the secret key file {}", path.display()))?;
    parse_secret_key(&text).with_context(|| format!("invalid key in {}", path.display()))
}

/// How a sealed value is bound (the same AADs the server seals with).
fn aad(v: &SealedValue) -> Vec<u8> {
    secrets::aad(v.kind, &v.environment_id, &v.id)
}

fn describe_value(v: &SealedValue) -> String {
    let what = match v.kind {
        SealedKind::ApplicationSecret => "the client secret of application",
        SealedKind::SigningKey => "the signing key",
    };
    format!("{what} {} (environment {})", v.id, v.environment_id)
}

/// What the database says about a key.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// The recorded key check matches.
    Matches,
    /// No check recorded, but the key opens a sealed value (a database from before key checks).
    OpensSealedData,
    /// No check recorded and nothing sealed: any key fits.
    NoSealedData,
    /// The key is not the one the data was sealed with.
    Mismatch,
}

async fn verdict(store: &dyn Store, key: &[u8; 32]) -> anyhow::Result<Verdict> {
    let secrets = SecretBox::new(key);
    if let Some(check) = store.get_server_meta(META_KEY_CHECK).await? {
        return Ok(if secrets.matches_key_check(&check) {
            Verdict::Matches
        } else {
            Verdict::Mismatch
        });
    }
    Ok(match store.list_sealed_values().await?.first() {
        None => Verdict::NoSealedData,
        Some(v) if secrets.open(&v.sealed, &aad(v)).is_ok() => Verdict::OpensSealedData,
        Some(_) => Verdict::Mismatch,
    })
}

/// Whether the database holds anything sealed under some key (a check or a sealed value).
async fn holds_sealed_data(store: &dyn Store) -> anyhow::Result<bool> {
    Ok(store.get_server_meta(META_KEY_CHECK).await?.is_some()
        || !store.list_sealed_values().await?.is_empty())
}

fn mismatch(source: &KeySource, settings: &Settings) -> anyhow::Error {
    let mut msg = format!(
        "the at-rest key from {} does not match the database {}: its client secrets and signing keys were sealed under another key. \
         Start with the key this database was created with (restore its secret-key file, or give it with --secret-key-file or --secret-key); \
         to change keys, stop the server and run `assent secret-key rotate`",
        source.describe(),
        settings.database_url
    );
    if let Some(staged) = source.path().map(staged_path).filter(|p| p.exists()) {
        msg.push_str(&format!(
            ". Note: {} exists; a key rotation may have stopped after re-sealing the database, in which case that file holds the key",
            staged.display()
        ));
    }
    anyhow::anyhow!(msg)
}

fn missing(path: &Path, settings: &Settings) -> anyhow::Error {
    anyhow::anyhow!(
        "the database {} holds data sealed under an at-rest key, but the key file {} does not exist; \
         Assent never generates a new key for existing data. Restore the secret-key file from your backup, \
         or give the key with --secret-key-file or --secret-key",
        settings.database_url,
        path.display()
    )
}

/// Start-up: the key `serve` must use for this database, or a refusal. Records the key check
/// when the database has none yet; generates the default key file only for a database that
/// holds no sealed data.
pub async fn establish(store: &dyn Store, settings: &Settings) -> anyhow::Result<[u8; 32]> {
    let source = KeySource::of(settings)?;
    let key = match load(&source, settings)? {
        Some(key) => key,
        None => {
            let path = source.path().unwrap_or(Path::new("secret-key"));
            if holds_sealed_data(store).await? {
                return Err(missing(path, settings));
            }
            let key = SecretBox::generate_key();
            crate::serve::write_secret_file(path, &format!("{}\n", hex(&key)))?;
            tracing::info!(path = %path.display(), "generated the at-rest secret key (back it up: without it client secrets and signing keys cannot be decrypted)");
            key
        }
    };
    match verdict(store, &key).await? {
        Verdict::Matches => {}
        Verdict::Mismatch => return Err(mismatch(&source, settings)),
        Verdict::OpensSealedData | Verdict::NoSealedData => {
            store
                .put_server_meta(META_KEY_CHECK, &SecretBox::new(&key).key_check())
                .await
                .context("cannot record the at-rest key check")?;
            tracing::info!("recorded the at-rest key check in the database");
        }
    }
    Ok(key)
}

fn hex(key: &[u8; 32]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

fn staged_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".new");
    path.with_file_name(name)
}

fn old_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".old");
    path.with_file_name(name)
}

// --- `assent secret-key …` ---------------------------------------------------------------------

/// Which key and database: the same settings as `assent serve`.
#[derive(clap::Args, Debug)]
pub struct KeyArgs {
    /// TOML configuration file, as for `assent serve`.
    #[arg(long, env = "ASSENT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Database: sqlite://<path> [default: <data-dir>/assent.db].
    #[arg(long, env = "ASSENT_DATABASE_URL")]
    pub database_url: Option<String>,
    /// The current at-rest key, as for `assent serve` (values on the command line are visible
    /// in `ps`: prefer --secret-key-file or ASSENT_SECRET_KEY).
    #[arg(long, env = "ASSENT_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
    /// File holding the current at-rest key [default: <data-dir>/secret-key].
    #[arg(long, env = "ASSENT_SECRET_KEY_FILE")]
    pub secret_key_file: Option<PathBuf>,
}

/// The at-rest key that encrypts client secrets and signing private keys.
#[derive(clap::Subcommand, Debug)]
pub enum SecretKeyCommand {
    /// Check that the configured at-rest key is the one the database's data is sealed with
    Check {
        #[command(flatten)]
        args: KeyArgs,
    },
    /// Re-seal every client secret and signing key under a new at-rest key, in one transaction.
    ///
    /// Run it with the server STOPPED: a running server keeps the old key in memory (and
    /// `rotate` cannot tell whether one uses the database). The new key replaces the key file
    /// (the old one is kept as <file>.old); with --secret-key given as a value, a generated key
    /// is written to <data-dir>/secret-key. Backups of the database made before the rotation
    /// still need the old key.
    Rotate {
        #[command(flatten)]
        args: KeyArgs,
        /// Take the new key from this file (32 bytes as 64 hex digits or base64) instead of
        /// generating one.
        #[arg(long, value_name = "PATH")]
        new_key_file: Option<PathBuf>,
    },
}

pub async fn run(data_dir: Option<PathBuf>, cmd: SecretKeyCommand) -> anyhow::Result<()> {
    match cmd {
        SecretKeyCommand::Check { args } => check(data_dir, args).await,
        SecretKeyCommand::Rotate { args, new_key_file } => {
            rotate(data_dir, args, new_key_file).await
        }
    }
}

fn settings(data_dir: Option<PathBuf>, args: KeyArgs) -> anyhow::Result<Settings> {
    let serve_args = ServeArgs {
        config: args.config,
        database_url: args.database_url,
        secret_key: args.secret_key,
        secret_key_file: args.secret_key_file,
        ..ServeArgs::default()
    };
    Settings::resolve(serve_args, data_dir, None)
}

/// Opens an existing database (never creates one).
async fn open_existing(settings: &Settings) -> anyhow::Result<std::sync::Arc<dyn Store>> {
    if let Some(path) = settings.database_url.strip_prefix("sqlite://")
        && !Path::new(path).exists()
    {
        bail!("there is no database at {path}");
    }
    Ok(assent_store::open(&assent_store::StoreConfig::new(&settings.database_url)).await?)
}

/// The current key, verified against the database.
async fn current_key(
    store: &dyn Store,
    source: &KeySource,
    settings: &Settings,
) -> anyhow::Result<([u8; 32], Verdict)> {
    let Some(key) = load(source, settings)? else {
        let path = source.path().unwrap_or(Path::new("secret-key"));
        if holds_sealed_data(store).await? {
            return Err(missing(path, settings));
        }
        bail!(
            "there is no key file {} (a first `assent serve` generates it)",
            path.display()
        );
    };
    match verdict(store, &key).await? {
        Verdict::Mismatch => Err(mismatch(source, settings)),
        v => Ok((key, v)),
    }
}

async fn check(data_dir: Option<PathBuf>, args: KeyArgs) -> anyhow::Result<()> {
    let settings = settings(data_dir, args)?;
    let source = KeySource::of(&settings)?;
    let store = open_existing(&settings).await?;
    let (_, verdict) = current_key(store.as_ref(), &source, &settings).await?;
    let how = match verdict {
        Verdict::Matches => "matches the key check recorded in",
        Verdict::OpensSealedData => {
            "opens the sealed data (no key check recorded yet: the next start records it) of"
        }
        _ => "may be used with (it holds no sealed data yet)",
    };
    println!(
        "The at-rest key from {} {how} the database {}.",
        source.describe(),
        settings.database_url
    );
    Ok(())
}

async fn rotate(
    data_dir: Option<PathBuf>,
    args: KeyArgs,
    new_key_file: Option<PathBuf>,
) -> anyhow::Result<()> {
    let settings = settings(data_dir, args)?;
    let source = KeySource::of(&settings)?;
    let store = open_existing(&settings).await?;
    let (old_key, _) = current_key(store.as_ref(), &source, &settings).await?;
    let new_key = match &new_key_file {
        Some(path) => read_key_file(path)?,
        None => SecretBox::generate_key(),
    };
    if new_key == old_key {
        bail!("the new key is the current key; nothing to rotate");
    }
    let (old_box, new_box) = (SecretBox::new(&old_key), SecretBox::new(&new_key));
    let values = store.list_sealed_values().await?;
    let mut resealed = Vec::with_capacity(values.len());
    for v in values {
        let aad = aad(&v);
        let plain = old_box.open(&v.sealed, &aad).map_err(|_| {
            anyhow::anyhow!(
                "{} cannot be opened with the current key; nothing was changed",
                describe_value(&v)
            )
        })?;
        let new_sealed = new_box.seal(&plain, &aad)?;
        resealed.push(Resealed { old: v, new_sealed });
    }

    // Where the new key goes: the key file in use; for a key given as a value, a generated key
    // goes to the default file, a key from --new-key-file stays where it is.
    let target = match (&source, &new_key_file) {
        (KeySource::File(p) | KeySource::Default(p), _) => Some(p.clone()),
        (KeySource::Value, None) => Some(settings.data_dir.join("secret-key")),
        (KeySource::Value, Some(_)) => None,
    };
    // The new key is on disk (0600, synced) before the database depends on it.
    let staged = target.as_deref().map(staged_path);
    if let Some(staged) = &staged {
        if staged.exists() {
            bail!(
                "{} exists: an earlier rotation did not finish. If `assent secret-key check --secret-key-file {}` succeeds, \
                 that file holds the key: move it into place; otherwise delete it. Then run the rotation again",
                staged.display(),
                staged.display()
            );
        }
        crate::serve::write_secret_file(staged, &format!("{}\n", hex(&new_key)))?;
    }
    if let Err(e) = store
        .reseal_all(&resealed, (META_KEY_CHECK, &new_box.key_check()))
        .await
    {
        if let Some(staged) = &staged {
            let _ = std::fs::remove_file(staged);
        }
        return Err(anyhow::Error::new(e).context(
            "re-sealing failed and nothing was changed (was a server writing to the database?)",
        ));
    }
    let secrets = resealed
        .iter()
        .filter(|r| r.old.kind == SealedKind::ApplicationSecret)
        .count();
    println!(
        "Re-sealed {secrets} client secrets and {} signing keys under the new at-rest key.",
        resealed.len() - secrets
    );
    match (target, staged) {
        (Some(target), Some(staged)) => {
            let old = old_path(&target);
            if target.exists() {
                std::fs::rename(&target, &old).with_context(|| {
                    format!(
                        "the database now needs the key in {}, but {} could not be moved aside",
                        staged.display(),
                        target.display()
                    )
                })?;
                println!("The old key was kept in {}.", old.display());
            }
            std::fs::rename(&staged, &target).with_context(|| {
                format!(
                    "the database now needs the key in {}, which could not be moved to {}",
                    staged.display(),
                    target.display()
                )
            })?;
            println!("The new key is in {}.", target.display());
            if source == KeySource::Value {
                println!(
                    "Start the server without --secret-key / ASSENT_SECRET_KEY / secret_key (or with --secret-key-file {}).",
                    target.display()
                );
            }
        }
        _ => {
            if let Some(path) = &new_key_file {
                println!(
                    "Start the server with the new key: --secret-key-file {} (or its value in ASSENT_SECRET_KEY).",
                    path.display()
                );
            }
        }
    }
    println!(
        "Backups of the database made before now still need the old key; keep it as long as them."
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use assent_core::SigningAlgorithm;
    use assent_store::SqliteStore;
    use assent_store::prelude::*;
    use assent_store::testsuite::{NOW, application, environment, signing_key};

    const K1: [u8; 32] = [1; 32];
    const K2: [u8; 32] = [2; 32];

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("assent-key-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn settings_with(dir: &Path, key: Option<&[u8; 32]>) -> Settings {
        let args = ServeArgs {
            secret_key: key.map(hex),
            ..ServeArgs::default()
        };
        Settings::resolve(args, Some(dir.to_path_buf()), None).unwrap()
    }

    async fn error_of(store: &dyn Store, settings: &Settings) -> String {
        format!("{:#}", establish(store, settings).await.unwrap_err())
    }

    /// A database from before key checks: sealed data under K1, no check row.
    async fn legacy_store(with_secret: bool) -> SqliteStore {
        let store = SqliteStore::open_temporary().await.unwrap();
        let env = environment();
        store.create_environment(&env).await.unwrap();
        let sealer = SecretBox::new(&K1);
        if with_secret {
            let app = application(&env.id);
            let sealed = sealer
                .seal(
                    b"client secret",
                    &secrets::client_secret_aad(&env.id, &app.id),
                )
                .unwrap();
            store.create_application(&app, &sealed).await.unwrap();
        } else {
            let mut key = signing_key(&env.id, SigningAlgorithm::ES256, NOW);
            key.private_key_sealed = sealer
                .seal(b"pkcs8", &secrets::signing_key_aad(&env.id, &key.id))
                .unwrap();
            store.insert_signing_key(&key, NOW).await.unwrap();
        }
        store
    }

    #[tokio::test]
    async fn a_database_from_before_key_checks_is_verified_by_opening_sealed_data() {
        for with_secret in [true, false] {
            let store = legacy_store(with_secret).await;
            let dir = temp_dir(&format!("legacy-{with_secret}"));
            let err = error_of(&store, &settings_with(&dir, Some(&K2))).await;
            assert!(err.contains("does not match"), "{err}");
            assert_eq!(store.get_server_meta(META_KEY_CHECK).await.unwrap(), None);
            // No key at all: refused, and no key generated for the sealed data.
            let err = error_of(&store, &settings_with(&dir, None)).await;
            assert!(err.contains("does not exist"), "{err}");
            assert!(!dir.join("secret-key").exists());
            // The right key opens a sealed value: accepted, and the check recorded.
            let key = establish(&store, &settings_with(&dir, Some(&K1)))
                .await
                .unwrap();
            assert_eq!(key, K1);
            assert_eq!(
                store.get_server_meta(META_KEY_CHECK).await.unwrap(),
                Some(SecretBox::new(&K1).key_check())
            );
            let err = error_of(&store, &settings_with(&dir, Some(&K2))).await;
            assert!(err.contains("does not match"), "{err}");
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    #[tokio::test]
    async fn a_key_is_generated_only_for_an_empty_database() {
        let store = SqliteStore::open_temporary().await.unwrap();
        let dir = temp_dir("fresh");
        let file = dir.join("secret-key");
        let key = establish(&store, &settings_with(&dir, None)).await.unwrap();
        assert_eq!(read_key_file(&file).unwrap(), key);
        let check = store
            .get_server_meta(META_KEY_CHECK)
            .await
            .unwrap()
            .unwrap();
        assert!(SecretBox::new(&key).matches_key_check(&check));
        // The next start reads the file.
        assert_eq!(
            establish(&store, &settings_with(&dir, None)).await.unwrap(),
            key
        );
        // The file lost: the database has a key check, so no new key is generated.
        std::fs::remove_file(&file).unwrap();
        let err = error_of(&store, &settings_with(&dir, None)).await;
        assert!(
            err.contains("does not exist") && err.contains("Restore"),
            "{err}"
        );
        assert!(!file.exists());
        // Another key given directly: refused, naming where it came from.
        let err = error_of(&store, &settings_with(&dir, Some(&K2))).await;
        assert!(
            err.contains("does not match") && err.contains("--secret-key"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_key_and_a_key_file_together_are_refused() {
        let dir = temp_dir("both");
        let args = ServeArgs {
            secret_key: Some(hex(&K1)),
            secret_key_file: Some(dir.join("k")),
            ..ServeArgs::default()
        };
        let settings = Settings::resolve(args, Some(dir.clone()), None).unwrap();
        let err = KeySource::of(&settings).unwrap_err().to_string();
        assert!(err.contains("not both"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
