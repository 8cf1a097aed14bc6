//! Signing-key generation and compact JWS signing.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
    EcdsaSigningAlgorithm, Ed25519KeyPair, KeyPair, RSA_PKCS1_SHA256, RSA_PKCS1_SHA384,
    RSA_PKCS1_SHA512, RSA_PSS_SHA256, RSA_PSS_SHA384, RSA_PSS_SHA512, RsaEncoding, RsaKeyPair,
};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::{CryptoError, SigningAlg, b64};

/// A freshly generated signing key: private key as PKCS#8 DER plus its public JWK.
pub struct KeyMaterial {
    pub kid: String,
    pub alg: SigningAlg,
    pub pkcs8_der: Zeroizing<Vec<u8>>,
    pub public_jwk: Value,
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyMaterial")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("pkcs8_der", &"<redacted>")
            .field("public_jwk", &self.public_jwk)
            .finish()
    }
}

/// Generates a new signing key for `alg`: RSA 2048 for RS*/PS*, P-256 for ES256, P-384 for
/// ES384, Ed25519 for EdDSA.
pub fn generate_key(alg: SigningAlg, kid: &str) -> Result<KeyMaterial, CryptoError> {
    let pkcs8_der: Zeroizing<Vec<u8>> = if alg.is_rsa() {
        let kp = RsaKeyPair::generate(KeySize::Rsa2048)
            .map_err(|_| CryptoError::Internal("RSA key generation failed".into()))?;
        let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der<'static>>::as_der(&kp)
            .map_err(|_| CryptoError::Internal("RSA key encoding failed".into()))?;
        Zeroizing::new(der.as_ref().to_vec())
    } else if let Some(ec) = ecdsa_alg(alg) {
        let doc = EcdsaKeyPair::generate_pkcs8(ec, &SystemRandom::new())
            .map_err(|_| CryptoError::Internal("EC key generation failed".into()))?;
        Zeroizing::new(doc.as_ref().to_vec())
    } else {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| CryptoError::Internal("Ed25519 key generation failed".into()))?;
        Zeroizing::new(doc.as_ref().to_vec())
    };
    let signer = JwsSigner::from_pkcs8(alg, kid, &pkcs8_der)?;
    Ok(KeyMaterial {
        kid: kid.to_owned(),
        alg,
        public_jwk: signer.public_jwk(),
        pkcs8_der,
    })
}

fn ecdsa_alg(alg: SigningAlg) -> Option<&'static EcdsaSigningAlgorithm> {
    match alg {
        SigningAlg::ES256 => Some(&ECDSA_P256_SHA256_FIXED_SIGNING),
        SigningAlg::ES384 => Some(&ECDSA_P384_SHA384_FIXED_SIGNING),
        _ => None,
    }
}

fn rsa_encoding(alg: SigningAlg) -> Option<&'static dyn RsaEncoding> {
    Some(match alg {
        SigningAlg::RS256 => &RSA_PKCS1_SHA256,
        SigningAlg::RS384 => &RSA_PKCS1_SHA384,
        SigningAlg::RS512 => &RSA_PKCS1_SHA512,
        SigningAlg::PS256 => &RSA_PSS_SHA256,
        SigningAlg::PS384 => &RSA_PSS_SHA384,
        SigningAlg::PS512 => &RSA_PSS_SHA512,
        _ => return None,
    })
}

enum SignerKey {
    Rsa(RsaKeyPair, &'static dyn RsaEncoding),
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// A private key parsed once and used for many compact-JWS signatures. `Send + Sync`.
pub struct JwsSigner {
    alg: SigningAlg,
    kid: String,
    key: SignerKey,
    public_jwk: Value,
}

impl std::fmt::Debug for JwsSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwsSigner")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl JwsSigner {
    /// Parses a PKCS#8 DER private key for `alg` (RSA for RS*/PS*, P-256 for ES256, P-384
    /// for ES384, Ed25519 for EdDSA).
    pub fn from_pkcs8(alg: SigningAlg, kid: &str, pkcs8_der: &[u8]) -> Result<Self, CryptoError> {
        let mut jwk = Map::new();
        let key = if let Some(enc) = rsa_encoding(alg) {
            let kp = RsaKeyPair::from_pkcs8(pkcs8_der).map_err(|_| {
                CryptoError::Malformed("private key is not an acceptable RSA PKCS#8 key".into())
            })?;
            let pk = kp.public_key();
            jwk.insert("kty".into(), "RSA".into());
            jwk.insert(
                "n".into(),
                b64::encode(pk.modulus().big_endian_without_leading_zero()).into(),
            );
            jwk.insert(
                "e".into(),
                b64::encode(pk.exponent().big_endian_without_leading_zero()).into(),
            );
            SignerKey::Rsa(kp, enc)
        } else if let Some(ec) = ecdsa_alg(alg) {
            let kp = EcdsaKeyPair::from_pkcs8(ec, pkcs8_der).map_err(|_| {
                CryptoError::Malformed(format!("private key is not a {alg} PKCS#8 EC key"))
            })?;
            let (crv, coord_len) = if alg == SigningAlg::ES256 {
                ("P-256", 32)
            } else {
                ("P-384", 48)
            };
            let point = kp.public_key().as_ref();
            if point.len() != 1 + 2 * coord_len || point.first() != Some(&0x04) {
                return Err(CryptoError::Internal(
                    "unexpected EC public key encoding".into(),
                ));
            }
            jwk.insert("kty".into(), "EC".into());
            jwk.insert("crv".into(), crv.into());
            jwk.insert("x".into(), b64::encode(&point[1..=coord_len]).into());
            jwk.insert("y".into(), b64::encode(&point[1 + coord_len..]).into());
            SignerKey::Ecdsa(kp)
        } else {
            let kp = Ed25519KeyPair::from_pkcs8(pkcs8_der).map_err(|_| {
                CryptoError::Malformed("private key is not an Ed25519 PKCS#8 key".into())
            })?;
            jwk.insert("kty".into(), "OKP".into());
            jwk.insert("crv".into(), "Ed25519".into());
            jwk.insert("x".into(), b64::encode(kp.public_key().as_ref()).into());
            SignerKey::Ed25519(kp)
        };
        jwk.insert("kid".into(), kid.into());
        jwk.insert("alg".into(), alg.as_str().into());
        jwk.insert("use".into(), "sig".into());
        Ok(JwsSigner {
            alg,
            kid: kid.to_owned(),
            key,
            public_jwk: Value::Object(jwk),
        })
    }

    /// The signing algorithm.
    pub fn alg(&self) -> SigningAlg {
        self.alg
    }

    /// The key id put in every header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Produces a compact JWS over `claims` (which must be a JSON object). The header is
    /// `{"alg": alg, "kid": kid}` plus `"typ"` when given (e.g. `Some("JWT")`,
    /// `Some("at+jwt")`).
    pub fn sign(&self, typ: Option<&str>, claims: &Value) -> Result<String, CryptoError> {
        if !claims.is_object() {
            return Err(CryptoError::Malformed(
                "JWS claims must be a JSON object".into(),
            ));
        }
        let mut header = Map::new();
        header.insert("alg".into(), self.alg.as_str().into());
        header.insert("kid".into(), self.kid.clone().into());
        if let Some(typ) = typ {
            header.insert("typ".into(), typ.into());
        }
        let header = serde_json::to_vec(&Value::Object(header))
            .map_err(|_| CryptoError::Internal("header serialization failed".into()))?;
        let payload = serde_json::to_vec(claims)
            .map_err(|_| CryptoError::Internal("claims serialization failed".into()))?;
        let mut out = b64::encode(&header);
        out.push('.');
        out.push_str(&b64::encode(&payload));
        let signature = self.sign_bytes(out.as_bytes())?;
        out.push('.');
        out.push_str(&b64::encode(&signature));
        Ok(out)
    }

    fn sign_bytes(&self, msg: &[u8]) -> Result<Vec<u8>, CryptoError> {
        match &self.key {
            SignerKey::Rsa(kp, enc) => {
                let mut sig = vec![0u8; kp.public_modulus_len()];
                kp.sign(*enc, &SystemRandom::new(), msg, &mut sig)
                    .map_err(|_| CryptoError::Internal("RSA signing failed".into()))?;
                Ok(sig)
            }
            SignerKey::Ecdsa(kp) => kp
                .sign(&SystemRandom::new(), msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| CryptoError::Internal("ECDSA signing failed".into())),
            SignerKey::Ed25519(kp) => Ok(kp.sign(msg).as_ref().to_vec()),
        }
    }

    /// The public JWK: RSA `{"kty":"RSA","n","e"}`, EC `{"kty":"EC","crv","x","y"}`, OKP
    /// `{"kty":"OKP","crv":"Ed25519","x"}`, always plus `"kid"`, `"alg"`, `"use":"sig"`.
    pub fn public_jwk(&self) -> Value {
        self.public_jwk.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn signer_is_send_sync() {
        assert_send_sync::<JwsSigner>();
        assert_send_sync::<crate::SecretBox>();
        assert_send_sync::<crate::JwkSet>();
    }

    #[test]
    fn jwk_shapes() {
        for alg in SigningAlg::ALL {
            let km = generate_key(alg, "k1").unwrap();
            let jwk = km.public_jwk.as_object().unwrap();
            assert_eq!(jwk["kid"], "k1");
            assert_eq!(jwk["alg"], alg.as_str());
            assert_eq!(jwk["use"], "sig");
            for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
                assert!(!jwk.contains_key(private));
            }
            match alg {
                a if a.is_rsa() => {
                    assert_eq!(jwk["kty"], "RSA");
                    let n = b64::decode(jwk["n"].as_str().unwrap(), "n").unwrap();
                    assert_eq!(n.len(), 256);
                    assert_eq!(jwk["e"], "AQAB");
                }
                SigningAlg::ES256 | SigningAlg::ES384 => {
                    assert_eq!(jwk["kty"], "EC");
                    let len = if alg == SigningAlg::ES256 { 32 } else { 48 };
                    let crv = if alg == SigningAlg::ES256 {
                        "P-256"
                    } else {
                        "P-384"
                    };
                    assert_eq!(jwk["crv"], crv);
                    assert_eq!(
                        b64::decode(jwk["x"].as_str().unwrap(), "x").unwrap().len(),
                        len
                    );
                    assert_eq!(
                        b64::decode(jwk["y"].as_str().unwrap(), "y").unwrap().len(),
                        len
                    );
                }
                _ => {
                    assert_eq!(jwk["kty"], "OKP");
                    assert_eq!(jwk["crv"], "Ed25519");
                    assert_eq!(
                        b64::decode(jwk["x"].as_str().unwrap(), "x").unwrap().len(),
                        32
                    );
                }
            }
            let signer = JwsSigner::from_pkcs8(alg, "k1", &km.pkcs8_der).unwrap();
            assert_eq!(signer.public_jwk(), km.public_jwk);
            assert_eq!(signer.alg(), alg);
            assert_eq!(signer.kid(), "k1");
        }
    }

    #[test]
    fn wrong_key_type_rejected() {
        let ec = generate_key(SigningAlg::ES256, "ec").unwrap();
        assert!(matches!(
            JwsSigner::from_pkcs8(SigningAlg::RS256, "x", &ec.pkcs8_der),
            Err(CryptoError::Malformed(_))
        ));
        assert!(JwsSigner::from_pkcs8(SigningAlg::ES384, "x", &ec.pkcs8_der).is_err());
        assert!(JwsSigner::from_pkcs8(SigningAlg::EdDSA, "x", &ec.pkcs8_der).is_err());
        assert!(JwsSigner::from_pkcs8(SigningAlg::ES256, "x", b"garbage").is_err());
    }

    #[test]
    fn header_has_alg_kid_typ() {
        let km = generate_key(SigningAlg::ES256, "kid-7").unwrap();
        let s = JwsSigner::from_pkcs8(km.alg, &km.kid, &km.pkcs8_der).unwrap();
        let t = s
            .sign(Some("at+jwt"), &serde_json::json!({"sub": "a"}))
            .unwrap();
        let h = crate::decode_header(&t).unwrap();
        assert_eq!(h.alg, "ES256");
        assert_eq!(h.kid.as_deref(), Some("kid-7"));
        assert_eq!(h.typ.as_deref(), Some("at+jwt"));
        let t = s.sign(None, &serde_json::json!({})).unwrap();
        let h = crate::decode_header(&t).unwrap();
        assert_eq!(h.typ, None);
        assert_eq!(h.raw.as_object().unwrap().len(), 2);
        // ES256 fixed signature is 64 bytes.
        let sig = t.rsplit('.').next().unwrap();
        assert_eq!(b64::decode(sig, "sig").unwrap().len(), 64);
        assert!(s.sign(None, &serde_json::json!([1])).is_err());
    }

    #[test]
    fn debug_does_not_leak() {
        let km = generate_key(SigningAlg::EdDSA, "k").unwrap();
        let s = format!("{km:?}");
        assert!(s.contains("redacted"));
        let signer = JwsSigner::from_pkcs8(km.alg, &km.kid, &km.pkcs8_der).unwrap();
        assert!(!format!("{signer:?}").is_empty());
    }
}
