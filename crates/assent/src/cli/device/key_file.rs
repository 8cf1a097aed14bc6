//! The device key file: where it is, written 0600 from its creation (refused when it exists,
//! unless forced), read only when no one else may read it, and a `Debug` that hides the key.

use std::ffi::OsString;
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::KeyFileArg;

/// What `enroll` writes and every other subcommand reads. `Debug` never shows the private key.
#[derive(Serialize, Deserialize, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(super) struct KeyFile {
    pub(super) server: String,
    pub(super) environment_id: String,
    pub(super) issuer: String,
    pub(super) device_id: String,
    pub(super) algorithm: String,
    /// PKCS#8 DER, base64url without padding.
    pub(super) private_key_pkcs8: String,
    pub(super) public_key_jwk: Value,
}

impl fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyFile")
            .field("server", &self.server)
            .field("environment_id", &self.environment_id)
            .field("issuer", &self.issuer)
            .field("device_id", &self.device_id)
            .field("algorithm", &self.algorithm)
            .field("private_key_pkcs8", &"<redacted>")
            .field("public_key_jwk", &self.public_key_jwk)
            .finish()
    }
}

/// `--key-file`, or the XDG default.
pub(super) fn key_file_path(arg: &KeyFileArg) -> Result<PathBuf> {
    match &arg.key_file {
        Some(p) if !p.as_os_str().is_empty() => Ok(p.clone()),
        _ => default_key_file(
            std::env::var_os("XDG_CONFIG_HOME"),
            std::env::var_os("HOME"),
        ),
    }
}

/// `$XDG_CONFIG_HOME/assent/device.json` (when set to an absolute path, as the XDG spec asks),
/// else `$HOME/.config/assent/device.json`.
fn default_key_file(xdg_config_home: Option<OsString>, home: Option<OsString>) -> Result<PathBuf> {
    let config = match (xdg_config_home.map(PathBuf::from), home) {
        (Some(x), _) if x.is_absolute() => x,
        (_, Some(h)) if !h.is_empty() => PathBuf::from(h).join(".config"),
        _ => bail!(
            "no place for the device key file: neither XDG_CONFIG_HOME nor HOME is set; \
             pass --key-file or set ASSENT_DEVICE_KEY"
        ),
    };
    Ok(config.join("assent").join("device.json"))
}

pub(super) fn exists_error(path: &Path) -> anyhow::Error {
    anyhow!(
        "the key file {} already exists: pass --force to replace it, or --key-file to write \
         another file",
        path.display()
    )
}

/// Writes the key file with mode 0600 from its creation (the directory, if new, 0700).
/// Without `force` an existing file is refused; with it, the new file is written beside it and
/// renamed over it, so the old one's wider mode (if any) does not carry over.
pub(super) fn write_key_file(path: &Path, contents: &[u8], force: bool) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_private_dir(dir)
            .with_context(|| format!("cannot create the directory {}", dir.display()))?;
    }
    if !force {
        return match write_new_file(path, contents) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(exists_error(path)),
            other => other.with_context(|| format!("cannot write {}", path.display())),
        };
    }
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file name", path.display()))?;
    let mut tmp_name = OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", assent_crypto::random_token(6)));
    let tmp = path.with_file_name(tmp_name);
    write_new_file(&tmp, contents).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow!(e).context(format!("cannot replace {}", path.display()))
    })
}

/// Creates `path` (which must not exist) with mode 0600 and writes `contents`; a half-written
/// file is removed.
fn write_new_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    let written = file.write_all(contents).and_then(|()| file.sync_all());
    if written.is_err() {
        let _ = std::fs::remove_file(path);
    }
    written
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Reads the key file, refusing one that others may read or write (as ssh does).
pub(super) fn read_key_file(path: &Path) -> Result<KeyFile> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "no device key file at {}: enrol this device first (assent device enroll --server \
             URL --env ENV_ID --code CODE), or point --key-file / ASSENT_DEVICE_KEY at its key file",
            path.display()
        ),
        Err(e) => {
            return Err(anyhow!(e)).with_context(|| format!("cannot open {}", path.display()));
        }
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = file
            .metadata()
            .with_context(|| format!("cannot read the permissions of {}", path.display()))?;
        check_private(path, meta.permissions().mode())?;
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a device key file", path.display()))
}

/// A key file must be the owner's alone: no group or other permission bits.
fn check_private(path: &Path, mode: u32) -> Result<()> {
    if mode & 0o077 != 0 {
        bail!(
            "permissions {:04o} for {} are too open: a device key must be readable and writable \
             by its owner only; fix it with: chmod 600 {}",
            mode & 0o7777,
            path.display(),
            path.display()
        );
    }
    Ok(())
}

pub(super) fn default_device_name() -> String {
    let host = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|h| h.trim().to_owned())
        .chain(std::env::var("HOSTNAME").ok())
        .find(|h| !h.is_empty());
    match host {
        Some(h) => format!("assent CLI on {h}"),
        None => "assent CLI".to_owned(),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use assent_crypto::SigningAlg;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::super::http::{ENROLLING_KID, public_jwk_to_enroll};

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "assent-device-test-{name}-{}-{}",
            std::process::id(),
            assent_crypto::random_token(6)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    pub(in super::super) fn key_file(alg: SigningAlg) -> KeyFile {
        let key = assent_crypto::generate_key(alg, ENROLLING_KID).unwrap();
        KeyFile {
            server: "http://127.0.0.1:1".into(),
            environment_id: "env-1".into(),
            issuer: "http://127.0.0.1:1/env-1/as".into(),
            device_id: "dev-1".into(),
            algorithm: alg.as_str().into(),
            private_key_pkcs8: URL_SAFE_NO_PAD.encode(key.pkcs8_der.as_slice()),
            public_key_jwk: public_jwk_to_enroll(&key.public_jwk),
        }
    }

    #[cfg(unix)]
    #[test]
    fn key_file_is_0600_from_creation_in_a_0700_directory() {
        let dir = temp_dir("create");
        let path = dir.join("nested").join("device.json");
        write_key_file(&path, b"{}", false).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.join("nested")), 0o700);
        assert_eq!(std::fs::read(&path).unwrap(), b"{}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_existing_key_file_is_refused_without_force_and_replaced_with_it() {
        let dir = temp_dir("exists");
        let path = dir.join("device.json");
        std::fs::write(&path, "old").unwrap();
        let err = write_key_file(&path, b"new", false)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(
            err.contains("--force") && err.contains("--key-file"),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        write_key_file(&path, b"new", true).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600);
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 1, "a temporary file was left behind");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir("perm");
        let path = dir.join("device.json");
        let text = serde_json::to_string(&key_file(SigningAlg::ES256)).unwrap();
        write_key_file(&path, text.as_bytes(), false).unwrap();
        assert_eq!(read_key_file(&path).unwrap().device_id, "dev-1");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_key_file(&path).unwrap_err().to_string();
        assert!(err.contains("0644") && err.contains("too open"), "{err}");
        assert!(
            err.contains(&format!("chmod 600 {}", path.display())),
            "{err}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(read_key_file(&path).is_err());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(read_key_file(&path).is_ok());

        let missing = read_key_file(&dir.join("none.json"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("assent device enroll"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn default_key_file_follows_xdg() {
        let p = default_key_file(Some("/x/cfg".into()), Some("/home/a".into())).unwrap();
        assert_eq!(p, PathBuf::from("/x/cfg/assent/device.json"));
        let p = default_key_file(Some("relative".into()), Some("/home/a".into())).unwrap();
        assert_eq!(p, PathBuf::from("/home/a/.config/assent/device.json"));
        let p = default_key_file(Some("".into()), Some("/home/a".into())).unwrap();
        assert_eq!(p, PathBuf::from("/home/a/.config/assent/device.json"));
        assert!(default_key_file(None, None).is_err());
    }

    #[test]
    fn the_key_file_round_trips_with_the_documented_members() {
        let file = key_file(SigningAlg::ES256);
        let v = serde_json::to_value(&file).unwrap();
        let mut members: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        members.sort_unstable();
        assert_eq!(
            members,
            [
                "algorithm",
                "deviceId",
                "environmentId",
                "issuer",
                "privateKeyPkcs8",
                "publicKeyJwk",
                "server"
            ]
        );
        assert!(v["publicKeyJwk"].get("kid").is_none());
        assert!(v["publicKeyJwk"].get("d").is_none());
        let back: KeyFile = serde_json::from_value(v).unwrap();
        assert_eq!(back, file);
    }
}
