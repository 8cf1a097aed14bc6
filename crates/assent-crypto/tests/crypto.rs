#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! End-to-end tests of signing, verification and the key-confusion defences.

use std::collections::HashSet;
use std::sync::OnceLock;

use assent_crypto::{
    CryptoError, HmacAlg, JwkSet, JwsSigner, KeyMaterial, SigningAlg, at_hash,
    decode_claims_unverified, decode_header, generate_key, sign_hmac_jws, verify_hmac_jws,
    verify_jws,
};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED_SIGNING,
    ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, RSA_PKCS1_SHA256,
    RSA_PKCS1_SHA384, RSA_PKCS1_SHA512, RSA_PSS_SHA256, RSA_PSS_SHA384, RSA_PSS_SHA512,
    RsaEncoding, RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// Keys are generated once per test binary (RSA generation is slow in debug builds).
/// Index 0 is environment "A", index 1 is environment "B".
fn keys(alg: SigningAlg) -> &'static [KeyMaterial; 2] {
    static KEYS: OnceLock<Vec<[KeyMaterial; 2]>> = OnceLock::new();
    let all = KEYS.get_or_init(|| {
        SigningAlg::ALL
            .iter()
            .map(|alg| {
                [
                    generate_key(*alg, &format!("a-{alg}")).unwrap(),
                    generate_key(*alg, &format!("b-{alg}")).unwrap(),
                ]
            })
            .collect()
    });
    let idx = SigningAlg::ALL.iter().position(|a| *a == alg).unwrap();
    &all[idx]
}

fn signer(km: &KeyMaterial) -> JwsSigner {
    JwsSigner::from_pkcs8(km.alg, &km.kid, &km.pkcs8_der).unwrap()
}

fn set_of(jwks: &[&Value]) -> JwkSet {
    JwkSet::parse(&json!({ "keys": jwks })).unwrap()
}

fn claims() -> Value {
    json!({"iss": "https://op.example", "sub": "alice", "aud": "client-1", "exp": 1, "nbf": 4_102_444_800_u64})
}

/// Signs an arbitrary header with aws-lc-rs directly (independent of JwsSigner). The
/// signature algorithm is the header's `alg` when it names one of ours (so an RSA key can
/// produce RS* and PS* signatures), else the key's own.
fn sign_raw(km: &KeyMaterial, header: &Value, payload: &Value) -> String {
    let alg = header["alg"]
        .as_str()
        .and_then(SigningAlg::parse)
        .filter(|a| a.is_rsa() && km.alg.is_rsa())
        .unwrap_or(km.alg);
    let input = format!(
        "{}.{}",
        b64(&serde_json::to_vec(header).unwrap()),
        b64(&serde_json::to_vec(payload).unwrap())
    );
    let rng = SystemRandom::new();
    let sig: Vec<u8> = match alg {
        SigningAlg::ES256 | SigningAlg::ES384 => {
            let a = if alg == SigningAlg::ES256 {
                &ECDSA_P256_SHA256_FIXED_SIGNING
            } else {
                &ECDSA_P384_SHA384_FIXED_SIGNING
            };
            let kp = EcdsaKeyPair::from_pkcs8(a, &km.pkcs8_der).unwrap();
            kp.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec()
        }
        SigningAlg::EdDSA => {
            let kp = Ed25519KeyPair::from_pkcs8(&km.pkcs8_der).unwrap();
            kp.sign(input.as_bytes()).as_ref().to_vec()
        }
        rsa => {
            let enc: &'static dyn RsaEncoding = match rsa {
                SigningAlg::RS256 => &RSA_PKCS1_SHA256,
                SigningAlg::RS384 => &RSA_PKCS1_SHA384,
                SigningAlg::RS512 => &RSA_PKCS1_SHA512,
                SigningAlg::PS256 => &RSA_PSS_SHA256,
                SigningAlg::PS384 => &RSA_PSS_SHA384,
                _ => &RSA_PSS_SHA512,
            };
            let kp = RsaKeyPair::from_pkcs8(&km.pkcs8_der).unwrap();
            let mut sig = vec![0; kp.public_modulus_len()];
            kp.sign(enc, &rng, input.as_bytes(), &mut sig).unwrap();
            sig
        }
    };
    format!("{input}.{}", b64(&sig))
}

fn without(jwk: &Value, member: &str) -> Value {
    let mut j = jwk.clone();
    j.as_object_mut().unwrap().remove(member);
    j
}

#[test]
fn every_alg_signs_and_verifies() {
    for alg in SigningAlg::ALL {
        let km = &keys(alg)[0];
        let s = signer(km);
        let token = s.sign(Some("JWT"), &claims()).unwrap();
        let set = set_of(&[&s.public_jwk()]);
        assert_eq!(set.len(), 1);
        let got = verify_jws(&token, &set, &[alg]).unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(Value::Object(got), claims(), "{alg}");
        // Also with the whole allow-list.
        verify_jws(&token, &set, &SigningAlg::ALL).unwrap();
        // And the JWK from generate_key is the same as the signer's.
        assert_eq!(km.public_jwk, s.public_jwk());
    }
}

#[test]
fn exp_and_nbf_are_not_checked() {
    // claims() has exp in 1970 and nbf in 2100: verify_jws must not care.
    let km = &keys(SigningAlg::ES256)[0];
    let s = signer(km);
    let t = s.sign(None, &claims()).unwrap();
    let got = verify_jws(&t, &set_of(&[&km.public_jwk]), &[SigningAlg::ES256]).unwrap();
    assert_eq!(got["exp"], 1);
}

#[test]
fn other_environment_key_does_not_verify() {
    for alg in SigningAlg::ALL {
        let [a, b] = keys(alg);
        let token = signer(a).sign(None, &claims()).unwrap();
        // B's set, kid as published.
        assert_eq!(
            verify_jws(&token, &set_of(&[&b.public_jwk]), &[alg]).unwrap_err(),
            CryptoError::NoMatchingKey,
            "{alg}"
        );
        // B's key published under A's kid: the signature must fail.
        let mut forged = b.public_jwk.clone();
        forged["kid"] = json!(a.kid);
        assert_eq!(
            verify_jws(&token, &set_of(&[&forged]), &[alg]).unwrap_err(),
            CryptoError::BadSignature,
            "{alg}"
        );
        // B's key without a kid, token without a kid.
        let no_kid = sign_raw(a, &json!({"alg": alg.as_str()}), &claims());
        assert_eq!(
            verify_jws(&no_kid, &set_of(&[&without(&b.public_jwk, "kid")]), &[alg]).unwrap_err(),
            CryptoError::BadSignature,
            "{alg}"
        );
    }
}

#[test]
fn tampered_payload_is_bad_signature() {
    for alg in SigningAlg::ALL {
        let km = &keys(alg)[0];
        let token = signer(km).sign(Some("JWT"), &claims()).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let mut evil = claims();
        evil["sub"] = json!("mallory");
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            b64(&serde_json::to_vec(&evil).unwrap()),
            parts[2]
        );
        let set = set_of(&[&km.public_jwk]);
        assert_eq!(
            verify_jws(&tampered, &set, &[alg]).unwrap_err(),
            CryptoError::BadSignature,
            "{alg}"
        );
        // A flipped signature byte too.
        let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        sig[5] ^= 0x80;
        let bad_sig = format!("{}.{}.{}", parts[0], parts[1], b64(&sig));
        assert_eq!(
            verify_jws(&bad_sig, &set, &[alg]).unwrap_err(),
            CryptoError::BadSignature
        );
        // Empty signature.
        let empty = format!("{}.{}.", parts[0], parts[1]);
        assert_eq!(
            verify_jws(&empty, &set, &[alg]).unwrap_err(),
            CryptoError::BadSignature
        );
    }
}

#[test]
fn alg_none_is_unsupported() {
    let km = &keys(SigningAlg::RS256)[0];
    let set = set_of(&[&km.public_jwk]);
    for header in [
        json!({"alg": "none"}),
        json!({"alg": "none", "kid": km.kid}),
        json!({"alg": "None"}),
        json!({"alg": "NONE"}),
        json!({"alg": ""}),
    ] {
        let t = format!(
            "{}.{}.",
            b64(&serde_json::to_vec(&header).unwrap()),
            b64(&serde_json::to_vec(&claims()).unwrap())
        );
        assert!(
            matches!(
                verify_jws(&t, &set, &SigningAlg::ALL),
                Err(CryptoError::UnsupportedAlgorithm(_))
            ),
            "{header}"
        );
        assert!(matches!(
            verify_hmac_jws(&t, b"secret", &HmacAlg::ALL),
            Err(CryptoError::UnsupportedAlgorithm(_))
        ));
    }
}

#[test]
fn hs256_with_public_key_as_secret_is_rejected() {
    for alg in [SigningAlg::RS256, SigningAlg::ES256, SigningAlg::EdDSA] {
        let km = &keys(alg)[0];
        let set = set_of(&[&km.public_jwk]);
        let jwk_json = serde_json::to_vec(&km.public_jwk).unwrap();
        let mut candidates: Vec<Vec<u8>> = vec![jwk_json];
        for member in ["n", "x"] {
            if let Some(v) = km.public_jwk[member].as_str() {
                candidates.push(v.as_bytes().to_vec());
                candidates.push(URL_SAFE_NO_PAD.decode(v).unwrap());
            }
        }
        for secret in candidates {
            for h in HmacAlg::ALL {
                // With and without the victim kid in the header.
                let plain = sign_hmac_jws(h, &secret, &claims()).unwrap();
                let parts: Vec<&str> = plain.split('.').collect();
                let header = json!({"alg": h.as_str(), "kid": km.kid, "typ": "JWT"});
                let input = format!(
                    "{}.{}",
                    b64(&serde_json::to_vec(&header).unwrap()),
                    parts[1]
                );
                let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &secret);
                let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
                let with_kid = format!("{input}.{}", b64(tag.as_ref()));
                for t in [&plain, &with_kid] {
                    assert!(
                        matches!(
                            verify_jws(t, &set, &SigningAlg::ALL),
                            Err(CryptoError::UnsupportedAlgorithm(_))
                        ),
                        "{alg} {h}"
                    );
                }
            }
        }
    }
}

#[test]
fn oct_keys_are_never_verification_keys() {
    let set =
        JwkSet::parse(&json!({"keys":[{"kty":"oct","kid":"s","k": b64(b"secret"),"alg":"HS256"}]}))
            .unwrap();
    assert!(set.is_empty());
    assert!(!set.contains_kid("s"));
}

#[test]
fn rs256_header_with_ec_kid_is_key_mismatch() {
    let rsa = &keys(SigningAlg::RS256)[0];
    let ec = &keys(SigningAlg::ES256)[0];
    let set = set_of(&[&rsa.public_jwk, &ec.public_jwk]);
    let t = sign_raw(rsa, &json!({"alg": "RS256", "kid": ec.kid}), &claims());
    assert_eq!(
        verify_jws(&t, &set, &SigningAlg::ALL).unwrap_err(),
        CryptoError::KeyMismatch
    );
    // The key type alone decides, also for JWKs without an "alg" member.
    let bare = set_of(&[
        &without(&rsa.public_jwk, "alg"),
        &without(&ec.public_jwk, "alg"),
        &without(&keys(SigningAlg::ES384)[0].public_jwk, "alg"),
        &without(&keys(SigningAlg::EdDSA)[0].public_jwk, "alg"),
    ]);
    assert_eq!(
        verify_jws(&t, &bare, &SigningAlg::ALL).unwrap_err(),
        CryptoError::KeyMismatch
    );
    for (header_alg, victim) in [
        ("PS256", &ec.kid),
        ("ES256", &rsa.kid),
        ("ES256", &keys(SigningAlg::ES384)[0].kid),
        ("ES384", &keys(SigningAlg::EdDSA)[0].kid),
        ("EdDSA", &ec.kid),
    ] {
        let signer_km = &keys(SigningAlg::parse(header_alg).unwrap())[0];
        let t = sign_raw(
            signer_km,
            &json!({"alg": header_alg, "kid": victim}),
            &claims(),
        );
        assert_eq!(
            verify_jws(&t, &bare, &SigningAlg::ALL).unwrap_err(),
            CryptoError::KeyMismatch,
            "{header_alg} -> {victim}"
        );
    }
    // ES384 header pointing at a P-256 key.
    let t = sign_raw(
        &keys(SigningAlg::ES384)[0],
        &json!({"alg": "ES384", "kid": ec.kid}),
        &claims(),
    );
    assert_eq!(
        verify_jws(&t, &set, &SigningAlg::ALL).unwrap_err(),
        CryptoError::KeyMismatch
    );
    // EdDSA header pointing at an RSA key.
    let t = sign_raw(
        &keys(SigningAlg::EdDSA)[0],
        &json!({"alg": "EdDSA", "kid": rsa.kid}),
        &claims(),
    );
    assert_eq!(
        verify_jws(&t, &set, &SigningAlg::ALL).unwrap_err(),
        CryptoError::KeyMismatch
    );
}

#[test]
fn jwk_alg_member_must_match_header_alg() {
    // An RSA key published for RS256 must not verify PS256 (or RS512) tokens.
    let ps = &keys(SigningAlg::PS256)[0];
    let mut jwk = ps.public_jwk.clone();
    jwk["alg"] = json!("RS256");
    let set = set_of(&[&jwk]);
    let t = signer(ps).sign(None, &claims()).unwrap();
    assert_eq!(
        verify_jws(&t, &set, &SigningAlg::ALL).unwrap_err(),
        CryptoError::KeyMismatch
    );
    // Without kid: the key is not a candidate at all.
    let t = sign_raw(ps, &json!({"alg": "PS256"}), &claims());
    assert_eq!(
        verify_jws(&t, &set, &SigningAlg::ALL).unwrap_err(),
        CryptoError::NoMatchingKey
    );
    // Without an alg member the RSA key fits both RS* and PS*.
    let set = set_of(&[&without(&ps.public_jwk, "alg")]);
    verify_jws(&t, &set, &SigningAlg::ALL).unwrap();
    let rs = sign_raw(ps, &json!({"alg": "RS256", "kid": ps.kid}), &claims());
    verify_jws(&rs, &set, &SigningAlg::ALL).unwrap();
    // A PKCS#1 v1.5 signature relabelled as PSS fails.
    let parts: Vec<&str> = rs.split('.').collect();
    let relabelled = format!(
        "{}.{}.{}",
        b64(&serde_json::to_vec(&json!({"alg": "PS256", "kid": ps.kid})).unwrap()),
        parts[1],
        parts[2]
    );
    assert_eq!(
        verify_jws(&relabelled, &set, &SigningAlg::ALL).unwrap_err(),
        CryptoError::BadSignature
    );
}

#[test]
fn unknown_kid_is_no_matching_key() {
    let km = &keys(SigningAlg::ES256)[0];
    let set = set_of(&[&km.public_jwk]);
    let t = sign_raw(km, &json!({"alg": "ES256", "kid": "nope"}), &claims());
    assert_eq!(
        verify_jws(&t, &set, &SigningAlg::ALL).unwrap_err(),
        CryptoError::NoMatchingKey
    );
    // An empty set.
    let t = signer(km).sign(None, &claims()).unwrap();
    assert_eq!(
        verify_jws(&t, &set_of(&[]), &SigningAlg::ALL).unwrap_err(),
        CryptoError::NoMatchingKey
    );
    // No kid and no key of the right type.
    let rsa = &keys(SigningAlg::RS256)[0];
    let t = sign_raw(km, &json!({"alg": "ES256"}), &claims());
    assert_eq!(
        verify_jws(&t, &set_of(&[&rsa.public_jwk]), &SigningAlg::ALL).unwrap_err(),
        CryptoError::NoMatchingKey
    );
}

#[test]
fn alg_not_allowed_is_unsupported() {
    let km = &keys(SigningAlg::RS256)[0];
    let set = set_of(&[&km.public_jwk]);
    let t = signer(km).sign(None, &claims()).unwrap();
    for allowed in [
        &[][..],
        &[SigningAlg::PS256][..],
        &[SigningAlg::ES256, SigningAlg::EdDSA][..],
    ] {
        assert!(matches!(
            verify_jws(&t, &set, allowed),
            Err(CryptoError::UnsupportedAlgorithm(_))
        ));
    }
    // Unknown algorithms.
    for alg in ["ES512", "RSA-OAEP", "rs256", "HS256"] {
        let t = sign_raw(km, &json!({"alg": alg, "kid": km.kid}), &claims());
        assert!(matches!(
            verify_jws(&t, &set, &SigningAlg::ALL),
            Err(CryptoError::UnsupportedAlgorithm(_))
        ));
    }
}

#[test]
fn ed25519_alias_in_header_and_jwk() {
    let km = &keys(SigningAlg::EdDSA)[0];
    let set = set_of(&[&km.public_jwk]);
    let t = sign_raw(km, &json!({"alg": "Ed25519", "kid": km.kid}), &claims());
    assert_eq!(decode_header(&t).unwrap().alg, "Ed25519");
    let got = verify_jws(&t, &set, &[SigningAlg::EdDSA]).unwrap();
    assert_eq!(got["sub"], "alice");
    // A JWK that says "alg":"Ed25519" verifies an "EdDSA" header.
    let mut jwk = km.public_jwk.clone();
    jwk["alg"] = json!("Ed25519");
    let t = signer(km).sign(None, &claims()).unwrap();
    verify_jws(&t, &set_of(&[&jwk]), &[SigningAlg::EdDSA]).unwrap();
    // Not allowed when EdDSA is not in the list.
    assert!(matches!(
        verify_jws(&t, &set, &[SigningAlg::RS256]),
        Err(CryptoError::UnsupportedAlgorithm(_))
    ));
}

#[test]
fn crit_header_is_malformed() {
    let km = &keys(SigningAlg::ES256)[0];
    let set = set_of(&[&km.public_jwk]);
    let t = sign_raw(
        km,
        &json!({"alg": "ES256", "kid": km.kid, "crit": ["b64"], "b64": false}),
        &claims(),
    );
    assert!(matches!(
        verify_jws(&t, &set, &SigningAlg::ALL),
        Err(CryptoError::Malformed(_))
    ));
    let secret = b"0123456789abcdef0123456789abcdef";
    let input = format!(
        "{}.{}",
        b64(&serde_json::to_vec(&json!({"alg":"HS256","crit":["exp"]})).unwrap()),
        b64(&serde_json::to_vec(&claims()).unwrap())
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    let t = format!("{input}.{}", b64(tag.as_ref()));
    assert!(matches!(
        verify_hmac_jws(&t, secret, &HmacAlg::ALL),
        Err(CryptoError::Malformed(_))
    ));
}

#[test]
fn header_embedded_jwk_is_ignored() {
    // The attacker signs with their own key and embeds it in the header under the
    // victim's kid: the embedded key must never be used.
    let victim = &keys(SigningAlg::ES256)[0];
    let attacker = &keys(SigningAlg::ES256)[1];
    let set = set_of(&[&victim.public_jwk]);
    let t = sign_raw(
        attacker,
        &json!({"alg": "ES256", "kid": victim.kid, "jwk": attacker.public_jwk}),
        &claims(),
    );
    assert_eq!(
        verify_jws(&t, &set, &SigningAlg::ALL).unwrap_err(),
        CryptoError::BadSignature
    );
}

#[test]
fn without_kid_every_fitting_key_is_tried() {
    let [a, b] = keys(SigningAlg::RS256);
    let ec = &keys(SigningAlg::ES256)[0];
    let ed = &keys(SigningAlg::EdDSA)[0];
    let set = set_of(&[
        &without(&a.public_jwk, "kid"),
        &without(&ec.public_jwk, "kid"),
        &b.public_jwk,
        &ed.public_jwk,
    ]);
    assert_eq!(set.len(), 4);
    for km in [a, b, ec, ed] {
        let t = sign_raw(km, &json!({"alg": km.alg.as_str()}), &claims());
        verify_jws(&t, &set, &SigningAlg::ALL).unwrap();
    }
    // With kid, only the key with that kid is used (a's key has no kid any more).
    let t = signer(a).sign(None, &claims()).unwrap();
    assert_eq!(
        verify_jws(&t, &set, &SigningAlg::ALL).unwrap_err(),
        CryptoError::NoMatchingKey
    );
    verify_jws(
        &signer(b).sign(None, &claims()).unwrap(),
        &set,
        &SigningAlg::ALL,
    )
    .unwrap();
}

#[test]
fn der_ecdsa_signature_is_rejected() {
    let km = &keys(SigningAlg::ES256)[0];
    let input = format!(
        "{}.{}",
        b64(&serde_json::to_vec(&json!({"alg":"ES256","kid": km.kid})).unwrap()),
        b64(&serde_json::to_vec(&claims()).unwrap())
    );
    let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &km.pkcs8_der).unwrap();
    let sig = kp.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
    let t = format!("{input}.{}", b64(sig.as_ref()));
    assert_eq!(
        verify_jws(&t, &set_of(&[&km.public_jwk]), &SigningAlg::ALL).unwrap_err(),
        CryptoError::BadSignature
    );
}

#[test]
fn jwks_given_as_string_and_use_enc_ignored() {
    let km = &keys(SigningAlg::ES384)[0];
    let mut enc = km.public_jwk.clone();
    enc["use"] = json!("enc");
    let text = json!({"keys": [enc]}).to_string();
    let set = JwkSet::parse(&Value::String(text.clone())).unwrap();
    assert!(set.is_empty());
    let t = signer(km).sign(None, &claims()).unwrap();
    assert_eq!(
        verify_jws(&t, &set, &SigningAlg::ALL).unwrap_err(),
        CryptoError::NoMatchingKey
    );
    let good = json!({"keys": [km.public_jwk]}).to_string();
    let set = JwkSet::parse(&Value::String(good.clone())).unwrap();
    assert!(set.contains_kid(&km.kid));
    verify_jws(&t, &set, &SigningAlg::ALL).unwrap();
    verify_jws(&t, &JwkSet::from_json_str(&good).unwrap(), &SigningAlg::ALL).unwrap();
}

#[test]
fn hmac_sign_and_verify() {
    let secret = b"a-client-secret-of-reasonable-length-0123456789";
    for alg in HmacAlg::ALL {
        let t = sign_hmac_jws(alg, secret, &claims()).unwrap();
        let h = decode_header(&t).unwrap();
        assert_eq!(h.alg, alg.as_str());
        assert_eq!(h.typ.as_deref(), Some("JWT"));
        let got = verify_hmac_jws(&t, secret, &[alg]).unwrap();
        assert_eq!(Value::Object(got), claims());
        // Wrong secret.
        assert_eq!(
            verify_hmac_jws(&t, b"another-secret", &[alg]).unwrap_err(),
            CryptoError::BadSignature
        );
        // Alg not in allowed.
        let others: Vec<HmacAlg> = HmacAlg::ALL.into_iter().filter(|a| *a != alg).collect();
        assert!(matches!(
            verify_hmac_jws(&t, secret, &others),
            Err(CryptoError::UnsupportedAlgorithm(_))
        ));
        // Tampered payload.
        let parts: Vec<&str> = t.split('.').collect();
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            b64(b"{\"sub\":\"mallory\"}"),
            parts[2]
        );
        assert_eq!(
            verify_hmac_jws(&tampered, secret, &[alg]).unwrap_err(),
            CryptoError::BadSignature
        );
        // The HMAC token is never accepted by verify_jws.
        let km = &keys(SigningAlg::RS256)[0];
        assert!(matches!(
            verify_jws(&t, &set_of(&[&km.public_jwk]), &SigningAlg::ALL),
            Err(CryptoError::UnsupportedAlgorithm(_))
        ));
    }
    // An asymmetric token is not accepted by verify_hmac_jws.
    let km = &keys(SigningAlg::RS256)[0];
    let t = signer(km).sign(None, &claims()).unwrap();
    assert!(matches!(
        verify_hmac_jws(&t, secret, &HmacAlg::ALL),
        Err(CryptoError::UnsupportedAlgorithm(_))
    ));
    // HS384 signature labelled HS256 fails.
    let t384 = sign_hmac_jws(HmacAlg::HS384, secret, &claims()).unwrap();
    let parts: Vec<&str> = t384.split('.').collect();
    let relabelled = format!(
        "{}.{}.{}",
        b64(br#"{"alg":"HS256","typ":"JWT"}"#),
        parts[1],
        parts[2]
    );
    assert_eq!(
        verify_hmac_jws(&relabelled, secret, &HmacAlg::ALL).unwrap_err(),
        CryptoError::BadSignature
    );
    assert!(sign_hmac_jws(HmacAlg::HS256, b"", &claims()).is_err());
    assert!(sign_hmac_jws(HmacAlg::HS256, secret, &json!("x")).is_err());
}

#[test]
fn hmac_matches_manual_computation() {
    let secret = b"s3cr3t";
    let t = sign_hmac_jws(HmacAlg::HS256, secret, &json!({"a": 1})).unwrap();
    let (input, sig) = t.rsplit_once('.').unwrap();
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let expected = aws_lc_rs::hmac::sign(&key, input.as_bytes());
    assert_eq!(sig, b64(expected.as_ref()));
}

#[test]
fn unverified_claims_and_header() {
    let km = &keys(SigningAlg::EdDSA)[0];
    let t = signer(km).sign(Some("at+jwt"), &claims()).unwrap();
    let c = decode_claims_unverified(&t).unwrap();
    assert_eq!(c["iss"], "https://op.example");
    let h = decode_header(&t).unwrap();
    assert_eq!(h.alg, "EdDSA");
    assert_eq!(h.kid.as_deref(), Some(km.kid.as_str()));
    assert_eq!(h.typ.as_deref(), Some("at+jwt"));
    assert_eq!(h.raw["alg"], "EdDSA");
    // A JWE is refused.
    assert!(matches!(
        decode_header("eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d"),
        Err(CryptoError::Malformed(_))
    ));
    assert!(matches!(
        verify_jws(
            "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d",
            &set_of(&[&km.public_jwk]),
            &SigningAlg::ALL
        ),
        Err(CryptoError::Malformed(_))
    ));
}

fn jsonwebtoken_alg(alg: SigningAlg) -> jsonwebtoken::Algorithm {
    match alg {
        SigningAlg::RS256 => jsonwebtoken::Algorithm::RS256,
        SigningAlg::PS256 => jsonwebtoken::Algorithm::PS256,
        SigningAlg::ES256 => jsonwebtoken::Algorithm::ES256,
        SigningAlg::ES384 => jsonwebtoken::Algorithm::ES384,
        SigningAlg::EdDSA => jsonwebtoken::Algorithm::EdDSA,
        other => panic!("not mapped: {other}"),
    }
}

fn lenient_validation(alg: SigningAlg) -> jsonwebtoken::Validation {
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken_alg(alg));
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.required_spec_claims = HashSet::new();
    v
}

#[test]
fn signatures_verify_with_jsonwebtoken() {
    for alg in [
        SigningAlg::RS256,
        SigningAlg::PS256,
        SigningAlg::ES256,
        SigningAlg::ES384,
        SigningAlg::EdDSA,
    ] {
        let km = &keys(alg)[0];
        let token = signer(km).sign(Some("JWT"), &claims()).unwrap();
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(km.public_jwk.clone()).unwrap();
        let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
        let data = jsonwebtoken::decode::<Value>(&token, &key, &lenient_validation(alg))
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(data.claims, claims());
        assert_eq!(data.header.kid.as_deref(), Some(km.kid.as_str()));
        // And the other environment's key is refused by jsonwebtoken as well.
        let other: jsonwebtoken::jwk::Jwk =
            serde_json::from_value(keys(alg)[1].public_jwk.clone()).unwrap();
        let other = jsonwebtoken::DecodingKey::from_jwk(&other).unwrap();
        assert!(jsonwebtoken::decode::<Value>(&token, &other, &lenient_validation(alg)).is_err());
    }
}

#[test]
fn jsonwebtoken_signatures_verify_with_us() {
    for alg in [SigningAlg::ES256, SigningAlg::EdDSA] {
        let km = &keys(alg)[0];
        let key = if alg == SigningAlg::ES256 {
            jsonwebtoken::EncodingKey::from_ec_der(&km.pkcs8_der)
        } else {
            jsonwebtoken::EncodingKey::from_ed_der(&km.pkcs8_der)
        };
        let mut header = jsonwebtoken::Header::new(jsonwebtoken_alg(alg));
        header.kid = Some(km.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims(), &key).unwrap();
        let got = verify_jws(&token, &set_of(&[&km.public_jwk]), &[alg]).unwrap();
        assert_eq!(Value::Object(got), claims());
    }
}

#[test]
fn at_hash_oidc_vector() {
    // Expected value computed independently with Python hashlib.
    assert_eq!(
        at_hash(
            "jHkWEdUXMU1BwAsC4vtUsZwnNzJnmM4Ax7DmUhDvtyM",
            SigningAlg::RS256
        ),
        "9Xmhwu_6RRJ67XYIo83eVA"
    );
}

/// Keys that can never verify safely are refused when the set is parsed, naming the key;
/// the real keys beside them parse.
#[test]
fn weak_and_invalid_keys_are_refused_by_name() {
    let rsa = &keys(SigningAlg::RS256)[0].public_jwk;
    let ec = &keys(SigningAlg::ES256)[0].public_jwk;
    set_of(&[rsa, ec]);
    let malformed = |set: Value| match JwkSet::parse(&set) {
        Err(CryptoError::Malformed(m)) => m,
        other => panic!("expected Malformed, got {other:?}"),
    };

    // A 1024-bit modulus (odd, top bit set).
    let mut short = rsa.clone();
    short["n"] = json!(b64(&[0xC5; 128]));
    short["kid"] = json!("short-one");
    let m = malformed(json!({"keys": [rsa, short]}));
    assert!(
        m.contains("key 1") && m.contains("short-one") && m.contains("1024 bits"),
        "{m}"
    );

    for bad_e in [&[1u8][..], &[2], &[0, 0, 1], &[1, 0, 0, 0, 0, 0, 0, 0, 1]] {
        let mut k = rsa.clone();
        k["e"] = json!(b64(bad_e));
        let m = malformed(json!({"keys": [k]}));
        assert!(m.contains("key 0") && m.contains("exponent"), "{m}");
    }
    let mut even = rsa.clone();
    even["n"] = json!(b64(&[0xC4; 256]));
    assert!(malformed(json!({"keys": [even]})).contains("even modulus"));

    // A point off the curve: right lengths, wrong coordinates.
    let mut off = ec.clone();
    off["x"] = json!(b64(&[1; 32]));
    off["y"] = json!(b64(&[1; 32]));
    let m = malformed(json!({"keys": [ec, off]}));
    assert!(m.contains("key 1") && m.contains("curve"), "{m}");

    // Private members are named too.
    let mut private = ec.clone();
    private["d"] = json!(b64(&[7; 32]));
    let m = malformed(json!({"keys": [private]}));
    assert!(m.contains("key 0") && m.contains("private"), "{m}");
}

#[test]
fn device_keys_are_es256_or_eddsa_public_keys_only() {
    use assent_crypto::device_public_key;
    for alg in [SigningAlg::ES256, SigningAlg::EdDSA] {
        let km = &keys(alg)[0];
        let (got, stored) = device_public_key(&km.public_jwk, "dev-1").unwrap();
        assert_eq!(got, alg);
        assert_eq!(stored["kid"], "dev-1");
        assert_eq!(stored["alg"], alg.as_str());
        // The stored key verifies what the private key signs, under the device id.
        let signed = JwsSigner::from_pkcs8(alg, "dev-1", &km.pkcs8_der)
            .unwrap()
            .sign(Some("device+jwt"), &claims())
            .unwrap();
        let set = JwkSet::single(&stored).unwrap();
        assert!(verify_jws(&signed, &set, &[alg]).is_ok());
        // Without kid / alg / use the key is still accepted.
        let bare = without(&without(&without(&km.public_jwk, "kid"), "alg"), "use");
        assert_eq!(device_public_key(&bare, "d").unwrap().0, alg);
    }
    let refuse = |jwk: &Value| device_public_key(jwk, "d").unwrap_err().to_string();
    // Other key types and curves.
    assert!(refuse(&keys(SigningAlg::RS256)[0].public_jwk).contains("P-256"));
    assert!(refuse(&keys(SigningAlg::ES384)[0].public_jwk).contains("P-256"));
    assert!(refuse(&json!({"kty": "oct", "k": "c2VjcmV0"})).contains("symmetric"));
    // A private part.
    let mut private = keys(SigningAlg::ES256)[0].public_jwk.clone();
    private["d"] = json!(b64(&[1u8; 32]));
    assert!(refuse(&private).contains("private"));
    // Wrong lengths and off-curve points.
    let mut short = keys(SigningAlg::ES256)[0].public_jwk.clone();
    short["x"] = json!(b64(&[1u8; 31]));
    assert!(refuse(&short).contains("length"));
    let mut off = keys(SigningAlg::ES256)[0].public_jwk.clone();
    off["y"] = json!(b64(&[1u8; 32]));
    assert!(refuse(&off).contains("curve"));
    let mut ed_short = keys(SigningAlg::EdDSA)[0].public_jwk.clone();
    ed_short["x"] = json!(b64(&[1u8; 16]));
    assert!(refuse(&ed_short).contains("length"));
    // An alg member that is not the curve's, and an encryption key.
    let mut wrong_alg = keys(SigningAlg::ES256)[0].public_jwk.clone();
    wrong_alg["alg"] = json!("ES384");
    assert!(refuse(&wrong_alg).contains("alg"));
    let mut enc = keys(SigningAlg::ES256)[0].public_jwk.clone();
    enc["use"] = json!("enc");
    assert!(refuse(&enc).contains("use"));
    assert!(refuse(&json!("not an object")).contains("object"));
    // Small-order and non-canonical Ed25519 points (either sign).
    let ed = |bytes: [u8; 32]| json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&bytes)});
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let mut order8 = [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67,
        0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac,
        0x03, 0x7a,
    ];
    let mut p = [0xffu8; 32];
    p[0] = 0xed;
    p[31] = 0x7f;
    for weak in [identity, [0u8; 32], order8, p] {
        assert!(refuse(&ed(weak)).contains("small-order"), "{weak:?}");
    }
    order8[31] |= 0x80;
    assert!(refuse(&ed(order8)).contains("small-order"));
}
