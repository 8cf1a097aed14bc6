//! Sealing under the at-rest key: application client secrets and signing keys' private keys.
//! Every sealed value is bound (AES-GCM associated data) to what it is and whose it is, so a
//! sealed blob copied onto another row does not open. The AADs are written here once; the
//! server and `assent secret-key rotate` both use them.

use assent_core::{ApplicationId, EnvironmentId};
use assent_crypto::{CryptoError, SecretBox};
use assent_store::SealedKind;

/// Associated data binding a sealed client secret to its application.
pub fn client_secret_aad(env_id: &EnvironmentId, app_id: &ApplicationId) -> Vec<u8> {
    format!("client-secret:{env_id}:{app_id}").into_bytes()
}

/// Associated data binding a sealed private key to its environment and kid.
pub fn signing_key_aad(env_id: &EnvironmentId, kid: &str) -> Vec<u8> {
    format!("signing-key:{env_id}:{kid}").into_bytes()
}

/// The associated data of a stored sealed value of `kind` (`id`: application id or kid).
pub fn aad(kind: SealedKind, env_id: &EnvironmentId, id: &str) -> Vec<u8> {
    match kind {
        SealedKind::ApplicationSecret => client_secret_aad(env_id, &ApplicationId::from(id)),
        SealedKind::SigningKey => signing_key_aad(env_id, id),
    }
}

/// Seals an application's client secret.
pub fn seal_client_secret(
    secrets: &SecretBox,
    env_id: &EnvironmentId,
    app_id: &ApplicationId,
    secret: &str,
) -> Result<Vec<u8>, CryptoError> {
    secrets.seal(secret.as_bytes(), &client_secret_aad(env_id, app_id))
}

/// Opens an application's sealed client secret. Fails when the at-rest key is not the one it
/// was sealed with, or the blob belongs to another application.
pub fn open_client_secret(
    secrets: &SecretBox,
    env_id: &EnvironmentId,
    app_id: &ApplicationId,
    sealed: &[u8],
) -> Result<String, CryptoError> {
    let plain = secrets.open(sealed, &client_secret_aad(env_id, app_id))?;
    Ok(String::from_utf8_lossy(&plain).into_owned())
}

/// Seals a signing key's PKCS#8 private key.
pub fn seal_signing_key(
    secrets: &SecretBox,
    env_id: &EnvironmentId,
    kid: &str,
    pkcs8_der: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    secrets.seal(pkcs8_der, &signing_key_aad(env_id, kid))
}

/// Opens a signing key's sealed PKCS#8 private key (zeroed when dropped).
pub fn open_signing_key(
    secrets: &SecretBox,
    env_id: &EnvironmentId,
    kid: &str,
    sealed: &[u8],
) -> Result<impl std::ops::Deref<Target = Vec<u8>> + use<>, CryptoError> {
    secrets.open(sealed, &signing_key_aad(env_id, kid))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sb(byte: u8) -> SecretBox {
        SecretBox::new(&[byte; 32])
    }

    #[test]
    fn client_secret_round_trip() {
        let s = sb(1);
        let sealed = seal_client_secret(&s, &"env-1".into(), &"app-1".into(), "s3cret").unwrap();
        assert_eq!(
            open_client_secret(&s, &"env-1".into(), &"app-1".into(), &sealed).unwrap(),
            "s3cret"
        );
    }

    /// A blob moved to another application, another environment, or read with another key
    /// does not open.
    #[test]
    fn client_secret_bound_to_its_application_and_key() {
        let s = sb(1);
        let sealed = seal_client_secret(&s, &"env-1".into(), &"app-1".into(), "s3cret").unwrap();
        assert!(open_client_secret(&s, &"env-1".into(), &"app-2".into(), &sealed).is_err());
        assert!(open_client_secret(&s, &"env-2".into(), &"app-1".into(), &sealed).is_err());
        assert!(open_client_secret(&sb(2), &"env-1".into(), &"app-1".into(), &sealed).is_err());
        // Nor as a signing key of the same ids: the kinds are bound too.
        assert!(open_signing_key(&s, &"env-1".into(), "app-1", &sealed).is_err());
    }

    #[test]
    fn signing_key_round_trip_and_binding() {
        let s = sb(3);
        let sealed = seal_signing_key(&s, &"env-1".into(), "kid-1", b"pkcs8").unwrap();
        assert_eq!(
            open_signing_key(&s, &"env-1".into(), "kid-1", &sealed)
                .unwrap()
                .as_slice(),
            b"pkcs8"
        );
        assert!(open_signing_key(&s, &"env-1".into(), "kid-2", &sealed).is_err());
        assert!(open_client_secret(&s, &"env-1".into(), &"kid-1".into(), &sealed).is_err());
    }

    /// The AADs are part of the at-rest format: changing them would lock out every existing
    /// database. These are the bytes sealed data has always been bound to.
    #[test]
    fn aads_are_stable() {
        assert_eq!(
            aad(SealedKind::ApplicationSecret, &"e".into(), "a"),
            b"client-secret:e:a".to_vec()
        );
        assert_eq!(
            aad(SealedKind::SigningKey, &"e".into(), "k"),
            b"signing-key:e:k".to_vec()
        );
    }
}
