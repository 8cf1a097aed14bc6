//! Compact-JWS decoding and verification, public JWK sets, and HMAC JWS.
//!
//! Verification is done with `aws-lc-rs` directly. Algorithm selection is driven by the
//! caller's allow-list and the key's type, never by the token alone: `none` and symmetric
//! algorithms are refused by [`verify_jws`], a key must fit the header algorithm by type
//! (and by its own `alg` member when it has one), and header-embedded keys (`jwk`, `jku`,
//! `x5u`, `x5c`) are never used.

use aws_lc_rs::hmac;
use serde_json::{Map, Value};

use crate::error::sanitize;
use crate::{CryptoError, HmacAlg, SigningAlg, b64};

/// The header of a compact JWS, decoded without verifying. `raw` is the whole header object.
#[derive(Clone, Debug, PartialEq)]
pub struct JwsHeader {
    pub alg: String,
    pub kid: Option<String>,
    pub typ: Option<String>,
    pub cty: Option<String>,
    pub enc: Option<String>,
    pub crit: Option<Value>,
    pub raw: Value,
}

/// The three segments of a compact JWS.
struct Compact<'a> {
    header: &'a str,
    payload: &'a str,
    signature: &'a str,
    /// `header '.' payload`, the JWS signing input.
    signing_input: &'a str,
}

fn split(token: &str) -> Result<Compact<'_>, CryptoError> {
    let dots = token.bytes().filter(|b| *b == b'.').count();
    match dots {
        2 => {}
        4 => {
            return Err(CryptoError::Malformed(
                "encrypted tokens (JWE) are not supported here".into(),
            ));
        }
        _ => {
            return Err(CryptoError::Malformed(
                "not a compact JWS (expected 3 segments)".into(),
            ));
        }
    }
    let mut it = token.splitn(3, '.');
    let (Some(header), Some(payload), Some(signature)) = (it.next(), it.next(), it.next()) else {
        return Err(CryptoError::Malformed("not a compact JWS".into()));
    };
    let signing_input = &token[..header.len() + 1 + payload.len()];
    Ok(Compact {
        header,
        payload,
        signature,
        signing_input,
    })
}

fn optional_string(obj: &Map<String, Value>, name: &str) -> Result<Option<String>, CryptoError> {
    match obj.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(CryptoError::Malformed(format!(
            "JWS header member {name:?} is not a string"
        ))),
    }
}

fn parse_header(segment: &str) -> Result<JwsHeader, CryptoError> {
    if segment.is_empty() {
        return Err(CryptoError::Malformed("empty JWS header".into()));
    }
    let bytes = b64::decode(segment, "JWS header")?;
    let raw: Value = serde_json::from_slice(&bytes)
        .map_err(|_| CryptoError::Malformed("JWS header is not JSON".into()))?;
    let Value::Object(obj) = &raw else {
        return Err(CryptoError::Malformed(
            "JWS header is not a JSON object".into(),
        ));
    };
    let alg = optional_string(obj, "alg")?
        .ok_or_else(|| CryptoError::Malformed("JWS header has no alg".into()))?;
    Ok(JwsHeader {
        alg,
        kid: optional_string(obj, "kid")?,
        typ: optional_string(obj, "typ")?,
        cty: optional_string(obj, "cty")?,
        enc: optional_string(obj, "enc")?,
        crit: obj.get("crit").cloned(),
        raw: raw.clone(),
    })
}

/// Decodes the header of a compact JWS without verifying anything. Rejects anything that
/// is not three base64url segments with a JSON-object header (a 5-segment JWE gives
/// `Malformed`).
pub fn decode_header(token: &str) -> Result<JwsHeader, CryptoError> {
    parse_header(split(token)?.header)
}

fn parse_claims(segment: &str) -> Result<Map<String, Value>, CryptoError> {
    let bytes = b64::decode(segment, "JWS payload")?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(CryptoError::Malformed(
            "JWS payload is not a JSON object".into(),
        )),
        Err(_) => Err(CryptoError::Malformed("JWS payload is not JSON".into())),
    }
}

/// Decodes the claims of a compact JWS WITHOUT verifying the signature (e.g. to read
/// `iss` before choosing the key set). The payload must be a JSON object. Never trust the
/// result for anything but key selection.
pub fn decode_claims_unverified(token: &str) -> Result<Map<String, Value>, CryptoError> {
    let parts = split(token)?;
    parse_header(parts.header)?;
    parse_claims(parts.payload)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Curve {
    P256,
    P384,
}

#[derive(Clone, Debug)]
enum KeyData {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// Uncompressed point `0x04 || x || y`.
    Ec {
        curve: Curve,
        point: Vec<u8>,
    },
    Ed25519 {
        x: Vec<u8>,
    },
}

#[derive(Clone, Debug)]
struct PublicJwk {
    kid: Option<String>,
    alg: Option<String>,
    data: KeyData,
}

impl PublicJwk {
    /// The key type fits the algorithm.
    fn type_fits(&self, alg: SigningAlg) -> bool {
        match &self.data {
            KeyData::Rsa { .. } => alg.is_rsa(),
            KeyData::Ec { curve, .. } => match curve {
                Curve::P256 => alg == SigningAlg::ES256,
                Curve::P384 => alg == SigningAlg::ES384,
            },
            KeyData::Ed25519 { .. } => alg == SigningAlg::EdDSA,
        }
    }

    /// The key's own `alg` member, if any, names the same algorithm (Ed25519 == EdDSA).
    fn alg_member_fits(&self, alg: SigningAlg) -> bool {
        match &self.alg {
            None => true,
            Some(a) => SigningAlg::parse(a) == Some(alg),
        }
    }

    fn fits(&self, alg: SigningAlg) -> bool {
        self.type_fits(alg) && self.alg_member_fits(alg)
    }

    /// Checks the signature with jsonwebtoken's aws-lc-rs backend; the key's type was already
    /// matched to `alg` by the caller (the key-confusion defence lives there, not here).
    fn verify(&self, alg: SigningAlg, msg: &[u8], signature_b64: &str) -> bool {
        use jsonwebtoken::{Algorithm, DecodingKey};
        let key = match &self.data {
            KeyData::Rsa { n, e } => DecodingKey::from_rsa_raw_components(n, e),
            KeyData::Ec { point, .. } => DecodingKey::from_ec_der(point),
            KeyData::Ed25519 { x } => DecodingKey::from_ed_der(x),
        };
        let algorithm = match (&self.data, alg) {
            (KeyData::Rsa { .. }, SigningAlg::RS256) => Algorithm::RS256,
            (KeyData::Rsa { .. }, SigningAlg::RS384) => Algorithm::RS384,
            (KeyData::Rsa { .. }, SigningAlg::RS512) => Algorithm::RS512,
            (KeyData::Rsa { .. }, SigningAlg::PS256) => Algorithm::PS256,
            (KeyData::Rsa { .. }, SigningAlg::PS384) => Algorithm::PS384,
            (KeyData::Rsa { .. }, SigningAlg::PS512) => Algorithm::PS512,
            (
                KeyData::Ec {
                    curve: Curve::P256, ..
                },
                SigningAlg::ES256,
            ) => Algorithm::ES256,
            (
                KeyData::Ec {
                    curve: Curve::P384, ..
                },
                SigningAlg::ES384,
            ) => Algorithm::ES384,
            (KeyData::Ed25519 { .. }, SigningAlg::EdDSA) => Algorithm::EdDSA,
            _ => return false,
        };
        jsonwebtoken::crypto::verify(signature_b64, msg, &key, algorithm).unwrap_or(false)
    }
}

/// A parsed set of public verification keys.
#[derive(Clone, Debug, Default)]
pub struct JwkSet {
    keys: Vec<PublicJwk>,
}

/// JWK members that only private (or symmetric) keys have.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

fn jwk_b64(obj: &Map<String, Value>, name: &str) -> Result<Vec<u8>, CryptoError> {
    match obj.get(name) {
        Some(Value::String(s)) => b64::decode(s, &format!("JWK member {name:?}")),
        Some(_) => Err(CryptoError::Malformed(format!(
            "JWK member {name:?} is not a string"
        ))),
        None => Err(CryptoError::Malformed(format!("JWK lacks {name:?}"))),
    }
}

fn strip_leading_zeros(mut v: Vec<u8>) -> Vec<u8> {
    let zeros = v.iter().take_while(|b| **b == 0).count();
    v.drain(..zeros);
    v
}

fn optional_jwk_string(
    obj: &Map<String, Value>,
    name: &str,
) -> Result<Option<String>, CryptoError> {
    match obj.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(CryptoError::Malformed(format!(
            "JWK member {name:?} is not a string"
        ))),
    }
}

/// Smallest RSA modulus accepted (NIST SP 800-131A; smaller keys are refused when registered
/// rather than failing every later verification).
pub const RSA_MIN_BITS: usize = 2048;
/// Largest RSA modulus accepted (what aws-lc-rs verifies).
pub const RSA_MAX_BITS: usize = 8192;

fn bit_length(be: &[u8]) -> usize {
    match be.first() {
        None => 0,
        Some(b) => (be.len() - 1) * 8 + (8 - b.leading_zeros() as usize),
    }
}

/// RSA public keys: a modulus of 2048..=8192 bits and an odd public exponent of at least 3 and
/// at most 2^32 + 1 (65537 in practice); `e = 1` or an even `e` makes signatures forgeable or
/// unverifiable. `n` and `e` are big-endian without leading zeros.
fn check_rsa_strength(n: &[u8], e: &[u8]) -> Result<(), CryptoError> {
    let bits = bit_length(n);
    if bits < RSA_MIN_BITS {
        return Err(CryptoError::Malformed(format!(
            "RSA key is {bits} bits; at least {RSA_MIN_BITS} are required"
        )));
    }
    if bits > RSA_MAX_BITS {
        return Err(CryptoError::Malformed(format!(
            "RSA key is {bits} bits; at most {RSA_MAX_BITS} are supported"
        )));
    }
    let exponent = if e.len() <= 8 {
        e.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
    } else {
        u64::MAX
    };
    if exponent < 3 || exponent % 2 == 0 || exponent > (1u64 << 32) + 1 {
        return Err(CryptoError::Malformed(
            "RSA key has an unusable public exponent (e must be odd, at least 3, e.g. 65537)"
                .into(),
        ));
    }
    if n.last().is_some_and(|b| b % 2 == 0) {
        return Err(CryptoError::Malformed("RSA key has an even modulus".into()));
    }
    Ok(())
}

/// EC public keys must be points on their curve (an off-curve point enables invalid-curve
/// attacks and never verifies anything): aws-lc-rs parses and validates the point.
fn check_ec_point(curve: Curve, point: &[u8]) -> Result<(), CryptoError> {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED, ParsedPublicKey};
    let alg = match curve {
        Curve::P256 => &ECDSA_P256_SHA256_FIXED,
        Curve::P384 => &ECDSA_P384_SHA384_FIXED,
    };
    ParsedPublicKey::new(alg, point)
        .map(|_| ())
        .map_err(|_| CryptoError::Malformed("EC key is not a point on its curve".into()))
}

/// Parses one JWK; `Ok(None)` for keys that are ignored (encryption keys, symmetric keys,
/// unsupported key types or curves).
fn parse_jwk(value: &Value) -> Result<Option<PublicJwk>, CryptoError> {
    let Value::Object(obj) = value else {
        return Err(CryptoError::Malformed("JWK is not a JSON object".into()));
    };
    let kty = optional_jwk_string(obj, "kty")?
        .ok_or_else(|| CryptoError::Malformed("JWK lacks \"kty\"".into()))?;
    if kty == "oct" {
        // Symmetric keys are never verification keys for verify_jws.
        return Ok(None);
    }
    if PRIVATE_MEMBERS.iter().any(|m| obj.contains_key(*m)) {
        return Err(CryptoError::Malformed(
            "JWK set contains private key material".into(),
        ));
    }
    match obj.get("use") {
        None => {}
        Some(Value::String(u)) if u == "sig" => {}
        Some(_) => return Ok(None),
    }
    if let Some(ops) = obj.get("key_ops") {
        let verifies = ops
            .as_array()
            .is_some_and(|a| a.iter().any(|o| o.as_str() == Some("verify")));
        if !verifies {
            return Ok(None);
        }
    }
    let kid = optional_jwk_string(obj, "kid")?;
    let alg = optional_jwk_string(obj, "alg")?;
    let data = match kty.as_str() {
        "RSA" => {
            let n = strip_leading_zeros(jwk_b64(obj, "n")?);
            let e = strip_leading_zeros(jwk_b64(obj, "e")?);
            check_rsa_strength(&n, &e)?;
            KeyData::Rsa { n, e }
        }
        "EC" => {
            let (curve, len) = match optional_jwk_string(obj, "crv")?.as_deref() {
                Some("P-256") => (Curve::P256, 32),
                Some("P-384") => (Curve::P384, 48),
                _ => return Ok(None),
            };
            let x = jwk_b64(obj, "x")?;
            let y = jwk_b64(obj, "y")?;
            if x.len() != len || y.len() != len {
                return Err(CryptoError::Malformed(
                    "EC JWK coordinates have the wrong length".into(),
                ));
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            check_ec_point(curve, &point)?;
            KeyData::Ec { curve, point }
        }
        "OKP" => {
            if optional_jwk_string(obj, "crv")?.as_deref() != Some("Ed25519") {
                return Ok(None);
            }
            let x = jwk_b64(obj, "x")?;
            if x.len() != 32 {
                return Err(CryptoError::Malformed(
                    "Ed25519 JWK x has the wrong length".into(),
                ));
            }
            KeyData::Ed25519 { x }
        }
        _ => return Ok(None),
    };
    Ok(Some(PublicJwk { kid, alg, data }))
}

/// Says which key of a set is wrong: its position and, when it has one, its `kid`.
fn name_key(index: usize, key: &Value, e: CryptoError) -> CryptoError {
    let reason = match e {
        CryptoError::Malformed(m) => m,
        other => other.to_string(),
    };
    let kid = key.get("kid").and_then(Value::as_str);
    CryptoError::Malformed(match kid {
        Some(kid) => format!("key {index} (kid {:?}): {reason}", sanitize(kid)),
        None => format!("key {index}: {reason}"),
    })
}

impl JwkSet {
    /// Parses a JWK set given as a JSON object `{"keys":[...]}` or as a JSON string that
    /// contains such an object. Keys with `"use":"enc"` (or `key_ops` without `verify`),
    /// symmetric `oct` keys and unsupported key types / curves are ignored; a key carrying
    /// private members (`d`, `p`, `q`, ...), an RSA key below 2048 bits or with a bad exponent,
    /// or an EC point off its curve makes the whole set `Malformed`, naming the key.
    pub fn parse(value: &Value) -> Result<JwkSet, CryptoError> {
        match value {
            Value::Object(obj) => {
                let Some(Value::Array(keys)) = obj.get("keys") else {
                    return Err(CryptoError::Malformed(
                        "JWK set has no \"keys\" array".into(),
                    ));
                };
                let mut out = Vec::with_capacity(keys.len());
                for (index, k) in keys.iter().enumerate() {
                    match parse_jwk(k) {
                        Ok(Some(jwk)) => out.push(jwk),
                        Ok(None) => {}
                        Err(e) => return Err(name_key(index, k, e)),
                    }
                }
                Ok(JwkSet { keys: out })
            }
            Value::String(s) => match serde_json::from_str::<Value>(s) {
                Ok(v @ Value::Object(_)) => JwkSet::parse(&v),
                _ => Err(CryptoError::Malformed(
                    "JWK set string does not contain a JSON object".into(),
                )),
            },
            _ => Err(CryptoError::Malformed(
                "JWK set is not a JSON object".into(),
            )),
        }
    }

    /// Parses a JWK set from JSON text (`{"keys":[...]}`).
    pub fn from_json_str(s: &str) -> Result<JwkSet, CryptoError> {
        let v: Value = serde_json::from_str(s)
            .map_err(|_| CryptoError::Malformed("JWK set is not JSON".into()))?;
        if !v.is_object() {
            return Err(CryptoError::Malformed(
                "JWK set is not a JSON object".into(),
            ));
        }
        JwkSet::parse(&v)
    }

    /// Whether a usable key with this `kid` is in the set.
    pub fn contains_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// Number of usable verification keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no usable verification key is in the set.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// A device's public key (§6.1), checked when it is registered: one JWK, EC P-256 (ES256) or
/// OKP Ed25519 (EdDSA), a point on its curve, no private members, `use` (if any) `sig`, an
/// `alg` member (if any) that names the algorithm of its curve. Returns the algorithm and the
/// key as stored: the JWK's public members only, with `kid` set to `kid` (the device id) and
/// `alg` and `use` filled in.
pub fn device_public_key(jwk: &Value, kid: &str) -> Result<(SigningAlg, Value), CryptoError> {
    let Value::Object(obj) = jwk else {
        return Err(CryptoError::Malformed(
            "the key is not a JSON object".into(),
        ));
    };
    let unsupported =
        || CryptoError::Malformed("the key must be EC P-256 (ES256) or OKP Ed25519 (EdDSA)".into());
    let key = parse_jwk(jwk)?.ok_or_else(|| match obj.get("kty").and_then(Value::as_str) {
        Some("oct") => CryptoError::Malformed("a symmetric key cannot be a device key".into()),
        _ if obj.get("use").is_some_and(|u| u != "sig") => {
            CryptoError::Malformed("the key's \"use\" must be \"sig\"".into())
        }
        _ if obj.contains_key("key_ops") => {
            CryptoError::Malformed("the key's \"key_ops\" must include \"verify\"".into())
        }
        _ => unsupported(),
    })?;
    let (alg, public) = match &key.data {
        KeyData::Ec {
            curve: Curve::P256, ..
        } => (SigningAlg::ES256, ["kty", "crv", "x", "y"].as_slice()),
        KeyData::Ed25519 { x } => {
            if ed25519_weak(x) {
                return Err(CryptoError::Malformed(
                    "the Ed25519 key is a small-order or non-canonical point".into(),
                ));
            }
            (SigningAlg::EdDSA, ["kty", "crv", "x"].as_slice())
        }
        KeyData::Ec { .. } | KeyData::Rsa { .. } => return Err(unsupported()),
    };
    if !key.alg_member_fits(alg) {
        return Err(CryptoError::Malformed(format!(
            "the key's \"alg\" must be {} for its curve",
            alg.as_str()
        )));
    }
    let mut stored = Map::new();
    for name in public {
        if let Some(v) = obj.get(*name) {
            stored.insert((*name).to_owned(), v.clone());
        }
    }
    stored.insert("kid".into(), kid.into());
    stored.insert("alg".into(), alg.as_str().into());
    stored.insert("use".into(), "sig".into());
    Ok((alg, Value::Object(stored)))
}

/// An Ed25519 public key that cofactorless verification cannot be trusted with: a point of
/// small order (identity, order 2, 4 or 8: signatures over many messages verify without the
/// private key) or a non-canonical encoding (y ≥ p). `x` is the 32-byte encoding; the sign
/// bit is ignored, so both signs of each point are refused.
fn ed25519_weak(x: &[u8]) -> bool {
    let Ok(mut y) = <[u8; 32]>::try_from(x) else {
        return true;
    };
    y[31] &= 0x7f;
    // y = 0 (order 4), y = 1 (the identity), y = p - 1 (order 2), and the two y of order 8.
    let mut small: [[u8; 32]; 5] = [[0; 32], [0; 32], [0xff; 32], [0; 32], [0; 32]];
    small[1][0] = 1;
    small[2][0] = 0xec;
    small[2][31] = 0x7f;
    small[3] = [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98,
        0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53,
        0xfc, 0x05,
    ];
    small[4] = [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67,
        0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac,
        0x03, 0x7a,
    ];
    // y ≥ p = 2^255 - 19: little-endian 0xed..0xff, then thirty 0xff, then 0x7f.
    let non_canonical = y[0] >= 0xed && y[1..31].iter().all(|b| *b == 0xff) && y[31] == 0x7f;
    non_canonical || small.contains(&y)
}

impl JwkSet {
    /// The set holding only `jwk` (a key returned by [`device_public_key`]).
    pub fn single(jwk: &Value) -> Result<JwkSet, CryptoError> {
        match parse_jwk(jwk)? {
            Some(key) => Ok(JwkSet { keys: vec![key] }),
            None => Err(CryptoError::Malformed(
                "not a usable verification key".into(),
            )),
        }
    }
}

fn reject_crit(header: &JwsHeader) -> Result<(), CryptoError> {
    if header.crit.is_some() {
        return Err(CryptoError::Malformed(
            "JWS header \"crit\" names extensions that are not understood".into(),
        ));
    }
    Ok(())
}

fn decode_signature(segment: &str) -> Result<Vec<u8>, CryptoError> {
    if segment.is_empty() {
        return Err(CryptoError::BadSignature);
    }
    b64::decode(segment, "JWS signature")
}

/// Verifies a compact JWS signed with an asymmetric key from `keys` and returns its claims.
///
/// - the header `alg` must be a [`SigningAlg`] in `allowed` (`"Ed25519"` counts as EdDSA);
///   `none`, `HS*` and unknown algorithms give `UnsupportedAlgorithm`;
/// - with a header `kid`, only keys with that kid are candidates (none: `NoMatchingKey`), and
///   they must fit the algorithm by type and by their own `alg` member (else `KeyMismatch`);
///   without a `kid`, every fitting key is tried (none: `NoMatchingKey`);
/// - a header `crit` gives `Malformed`;
/// - a signature that no candidate verifies gives `BadSignature`.
///
/// Time-based and audience/issuer claims are NOT checked: callers do that.
pub fn verify_jws(
    token: &str,
    keys: &JwkSet,
    allowed: &[SigningAlg],
) -> Result<Map<String, Value>, CryptoError> {
    let parts = split(token)?;
    let header = parse_header(parts.header)?;
    let alg = SigningAlg::parse(&header.alg)
        .filter(|a| allowed.contains(a))
        .ok_or_else(|| CryptoError::UnsupportedAlgorithm(sanitize(&header.alg)))?;
    reject_crit(&header)?;

    let candidates: Vec<&PublicJwk> = match &header.kid {
        Some(kid) => {
            let with_kid: Vec<&PublicJwk> = keys
                .keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid.as_str()))
                .collect();
            if with_kid.is_empty() {
                return Err(CryptoError::NoMatchingKey);
            }
            let fitting: Vec<&PublicJwk> = with_kid.into_iter().filter(|k| k.fits(alg)).collect();
            if fitting.is_empty() {
                return Err(CryptoError::KeyMismatch);
            }
            fitting
        }
        None => {
            let fitting: Vec<&PublicJwk> = keys.keys.iter().filter(|k| k.fits(alg)).collect();
            if fitting.is_empty() {
                return Err(CryptoError::NoMatchingKey);
            }
            fitting
        }
    };

    // Refuse a signature that is not base64url before any key is tried.
    decode_signature(parts.signature)?;
    let msg = parts.signing_input.as_bytes();
    if candidates
        .iter()
        .any(|k| k.verify(alg, msg, parts.signature))
    {
        parse_claims(parts.payload)
    } else {
        Err(CryptoError::BadSignature)
    }
}

/// Verifies an HMAC-signed compact JWS (client_secret_jwt, login_hint_token) with the
/// shared `secret`. The header `alg` must be HS256/384/512 and in `allowed`, otherwise
/// `UnsupportedAlgorithm`. The MAC comparison is constant-time.
pub fn verify_hmac_jws(
    token: &str,
    secret: &[u8],
    allowed: &[HmacAlg],
) -> Result<Map<String, Value>, CryptoError> {
    let parts = split(token)?;
    let header = parse_header(parts.header)?;
    let alg = HmacAlg::parse(&header.alg)
        .filter(|a| allowed.contains(a))
        .ok_or_else(|| CryptoError::UnsupportedAlgorithm(sanitize(&header.alg)))?;
    reject_crit(&header)?;
    if secret.is_empty() {
        return Err(CryptoError::Malformed("empty HMAC secret".into()));
    }
    let signature = decode_signature(parts.signature)?;
    let key = hmac::Key::new(alg.aws_alg(), secret);
    hmac::verify(&key, parts.signing_input.as_bytes(), &signature)
        .map_err(|_| CryptoError::BadSignature)?;
    parse_claims(parts.payload)
}

/// Signs `claims` (a JSON object) with HMAC; header `{"alg": alg, "typ": "JWT"}`.
pub fn sign_hmac_jws(alg: HmacAlg, secret: &[u8], claims: &Value) -> Result<String, CryptoError> {
    if !claims.is_object() {
        return Err(CryptoError::Malformed(
            "JWS claims must be a JSON object".into(),
        ));
    }
    if secret.is_empty() {
        return Err(CryptoError::Malformed("empty HMAC secret".into()));
    }
    let mut header = Map::new();
    header.insert("alg".into(), alg.as_str().into());
    header.insert("typ".into(), "JWT".into());
    let header = serde_json::to_vec(&Value::Object(header))
        .map_err(|_| CryptoError::Internal("header serialization failed".into()))?;
    let payload = serde_json::to_vec(claims)
        .map_err(|_| CryptoError::Internal("claims serialization failed".into()))?;
    let mut out = b64::encode(&header);
    out.push('.');
    out.push_str(&b64::encode(&payload));
    let key = hmac::Key::new(alg.aws_alg(), secret);
    let tag = hmac::sign(&key, out.as_bytes());
    out.push('.');
    out.push_str(&b64::encode(tag.as_ref()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tok(header: &Value, payload: &Value, sig: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            b64::encode(&serde_json::to_vec(header).unwrap()),
            b64::encode(&serde_json::to_vec(payload).unwrap()),
            b64::encode(sig)
        )
    }

    #[test]
    fn header_decoding() {
        let t = tok(
            &json!({"alg":"RS256","kid":"k","typ":"JWT","cty":"x","x-extra":1}),
            &json!({"a":1}),
            b"sig",
        );
        let h = decode_header(&t).unwrap();
        assert_eq!(h.alg, "RS256");
        assert_eq!(h.kid.as_deref(), Some("k"));
        assert_eq!(h.typ.as_deref(), Some("JWT"));
        assert_eq!(h.cty.as_deref(), Some("x"));
        assert_eq!(h.enc, None);
        assert_eq!(h.crit, None);
        assert_eq!(h.raw["x-extra"], 1);
        let claims = decode_claims_unverified(&t).unwrap();
        assert_eq!(claims["a"], 1);
    }

    #[test]
    fn header_rejections() {
        let good_payload = b64::encode(b"{}");
        let cases = [
            String::new(),
            "abc".to_string(),
            "a.b".to_string(),
            format!(
                "{}.{good_payload}.sig.x",
                b64::encode(b"{\"alg\":\"RS256\"}")
            ),
            format!("{}.{good_payload}.", b64::encode(b"[1,2]")),
            format!("{}.{good_payload}.", b64::encode(b"not json")),
            format!("{}.{good_payload}.", b64::encode(b"{\"kid\":\"k\"}")),
            format!("{}.{good_payload}.", b64::encode(b"{\"alg\":5}")),
            format!(
                "{}.{good_payload}.",
                b64::encode(b"{\"alg\":\"RS256\",\"kid\":3}")
            ),
            format!("{}=.{good_payload}.", b64::encode(b"{\"alg\":\"RS256\"}")),
            format!("!!.{good_payload}."),
            format!(".{good_payload}."),
        ];
        for c in &cases {
            assert!(
                matches!(decode_header(c), Err(CryptoError::Malformed(_))),
                "{c:?}"
            );
        }
        // JWE (5 segments) is Malformed.
        let jwe = format!(
            "{}.a.b.c.d",
            b64::encode(b"{\"alg\":\"RSA-OAEP\",\"enc\":\"A256GCM\"}")
        );
        assert!(matches!(
            decode_header(&jwe),
            Err(CryptoError::Malformed(_))
        ));
    }

    #[test]
    fn claims_must_be_object() {
        let h = json!({"alg":"RS256"});
        assert!(decode_claims_unverified(&tok(&h, &json!([1]), b"")).is_err());
        assert!(decode_claims_unverified(&tok(&h, &json!("s"), b"")).is_err());
        let bad = format!(
            "{}.{}.",
            b64::encode(b"{\"alg\":\"RS256\"}"),
            b64::encode(b"nope")
        );
        assert!(matches!(
            decode_claims_unverified(&bad),
            Err(CryptoError::Malformed(_))
        ));
    }

    /// The P-256 base point (SEC 2), a point certainly on the curve.
    const P256_GX: [u8; 32] = [
        0x6B, 0x17, 0xD1, 0xF2, 0xE1, 0x2C, 0x42, 0x47, 0xF8, 0xBC, 0xE6, 0xE5, 0x63, 0xA4, 0x40,
        0xF2, 0x77, 0x03, 0x7D, 0x81, 0x2D, 0xEB, 0x33, 0xA0, 0xF4, 0xA1, 0x39, 0x45, 0xD8, 0x98,
        0xC2, 0x96,
    ];
    const P256_GY: [u8; 32] = [
        0x4F, 0xE3, 0x42, 0xE2, 0xFE, 0x1A, 0x7F, 0x9B, 0x8E, 0xE7, 0xEB, 0x4A, 0x7C, 0x0F, 0x9E,
        0x16, 0x2B, 0xCE, 0x33, 0x57, 0x6B, 0x31, 0x5E, 0xCE, 0xCB, 0xB6, 0x40, 0x68, 0x37, 0xBF,
        0x51, 0xF5,
    ];

    #[test]
    fn jwk_set_parsing() {
        let rsa_n = b64::encode(&[0xc5; 256]);
        let set = json!({"keys": [
            {"kty":"RSA","kid":"r","n": rsa_n, "e":"AQAB"},
            {"kty":"RSA","kid":"enc","use":"enc","n": rsa_n, "e":"AQAB"},
            {"kty":"RSA","kid":"wrap","key_ops":["wrapKey"],"n": rsa_n, "e":"AQAB"},
            {"kty":"oct","kid":"sym","k":"c2VjcmV0"},
            {"kty":"EC","kid":"p521","crv":"P-521","x":"AA","y":"AA"},
            {"kty":"OKP","kid":"x25519","crv":"X25519","x":"AA"},
            {"kty":"OKP","kid":"ed","crv":"Ed25519","x": b64::encode(&[1u8; 32])},
            {"kty":"EC","kid":"p256","crv":"P-256","x": b64::encode(&P256_GX),"y": b64::encode(&P256_GY)},
            {"kty":"weird","kid":"w"}
        ]});
        let parsed = JwkSet::parse(&set).unwrap();
        assert_eq!(parsed.len(), 3);
        assert!(!parsed.is_empty());
        assert!(parsed.contains_kid("r"));
        assert!(parsed.contains_kid("ed"));
        assert!(parsed.contains_kid("p256"));
        for ignored in ["enc", "wrap", "sym", "p521", "x25519", "w"] {
            assert!(!parsed.contains_kid(ignored), "{ignored}");
        }
        // The same set given as a JSON string, and via from_json_str.
        let s = Value::String(set.to_string());
        assert_eq!(JwkSet::parse(&s).unwrap().len(), 3);
        assert_eq!(JwkSet::from_json_str(&set.to_string()).unwrap().len(), 3);
        assert!(JwkSet::parse(&json!({"keys": []})).unwrap().is_empty());
    }

    #[test]
    fn jwk_set_rejections() {
        let n = b64::encode(&[0xc5; 256]);
        for bad in [
            json!({}),
            json!({"keys": {}}),
            json!([]),
            json!(5),
            json!("not json"),
            json!("[1]"),
            json!({"keys": [1]}),
            json!({"keys": [{"kid": "no-kty"}]}),
            json!({"keys": [{"kty":"RSA","n": n}]}),
            json!({"keys": [{"kty":"RSA","n": n, "e": "AQAB", "d": "AQAB"}]}),
            json!({"keys": [{"kty":"RSA","n": n, "e": "AQAB", "p": "AQAB"}]}),
            json!({"keys": [{"kty":"EC","crv":"P-256","x":"AQAB","y":"AQAB"}]}),
            json!({"keys": [{"kty":"EC","crv":"P-256","x": b64::encode(&[1u8; 32]),"y": b64::encode(&[2u8; 32]),"d":"AA"}]}),
            json!({"keys": [{"kty":"OKP","crv":"Ed25519","x": b64::encode(&[1u8; 31])}]}),
            json!({"keys": [{"kty":"OKP","crv":"Ed25519","x": b64::encode(&[1u8; 32]), "d": "AA"}]}),
        ] {
            assert!(
                matches!(JwkSet::parse(&bad), Err(CryptoError::Malformed(_))),
                "{bad}"
            );
        }
        assert!(JwkSet::from_json_str("{").is_err());
        assert!(JwkSet::from_json_str("\"{}\"").is_err());
    }

    #[test]
    fn rsa_leading_zero_is_tolerated() {
        let mut n = vec![0u8];
        n.extend_from_slice(&[0xc5; 256]);
        let set = JwkSet::parse(
            &json!({"keys":[{"kty":"RSA","kid":"r","n": b64::encode(&n),"e":"AQAB"}]}),
        )
        .unwrap();
        match &set.keys[0].data {
            KeyData::Rsa { n, .. } => assert_eq!(n.len(), 256),
            _ => panic!("not RSA"),
        }
    }

    #[test]
    fn error_messages_do_not_echo_long_input() {
        let alg = "X".repeat(500);
        let t = tok(&json!({"alg": alg}), &json!({}), b"s");
        let err = verify_jws(&t, &JwkSet::default(), &SigningAlg::ALL).unwrap_err();
        assert!(err.to_string().len() < 100);
    }
}
