#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
//! Cryptographic primitives for the Assent OpenID Provider.
//!
//! All cryptography is done by `aws-lc-rs`:
//! - [`SecretBox`]: AES-256-GCM at-rest encryption (nonce || ciphertext || tag).
//! - [`generate_key`] / [`JwsSigner`]: asymmetric signing keys and compact JWS signing.
//! - [`decode_header`], [`JwkSet`], [`verify_jws`], [`verify_hmac_jws`]: JWS verification with
//!   strict algorithm / key-type matching (the key-confusion defence).
//! - [`at_hash`], [`sha256`], [`random_token`], [`ct_eq`], [`hmac_sha256_hex`]: hashing helpers.
//! - [`hash_password`] / [`verify_password`]: argon2id.
//!
//! Error messages never contain secret material.

mod alg;
mod b64;
mod error;
mod hash;
mod keys;
mod password;
mod secretbox;
mod verify;

pub use alg::{HmacAlg, SigningAlg};
pub use error::CryptoError;
pub use hash::{
    at_hash, ct_eq, hmac_sha256_hex, random_bytes, random_token, sha256, sha256_b64url,
};
pub use keys::{JwsSigner, KeyMaterial, generate_key};
pub use password::{hash_password, verify_password};
pub use secretbox::SecretBox;
pub use verify::{
    JwkSet, JwsHeader, decode_claims_unverified, decode_header, device_public_key, sign_hmac_jws,
    verify_hmac_jws, verify_jws,
};
