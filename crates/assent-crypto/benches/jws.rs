//! Microbenchmarks of the JWS hot paths: signing ID-token-sized claims with a key parsed once
//! (RS256, PS256, ES256, EdDSA; RSA keys are 2048-bit as Assent generates them) and verifying
//! an HS256 client assertion (client_secret_jwt). Run with
//! `cargo bench -p assent-crypto --bench jws`.

use std::hint::black_box;
use std::time::Duration;

use assent_crypto::{CryptoError, HmacAlg, JwsSigner, SigningAlg};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};

/// Claims the size of an Assent ID token for a CIBA grant.
fn id_token_claims() -> Value {
    json!({
        "iss": "https://auth.example.com/0f1e2d3c-4b5a-4697-8877-665544332211/as",
        "sub": "99887766-5544-4332-a110-ffeeddccbbaa",
        "aud": "11223344-5566-4778-899a-abbccddeeff0",
        "iat": 1_800_000_000,
        "exp": 1_800_003_600,
        "auth_time": 1_799_999_990,
        "acr": "Single_Factor",
        "amr": ["pwd"],
        "sid": "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d",
        "at_hash": "77QmUPtjPfzWtF2AnpK9RQ",
        "urn:openid:params:jwt:claim:auth_req_id": "a1b2c3d4-e5f6-4789-abcd-0123456789ab",
        "env": "0f1e2d3c-4b5a-4697-8877-665544332211",
        "org": "f0e1d2c3-b4a5-4968-8776-554433221100",
    })
}

/// A client_secret_jwt assertion's claims (RFC 7523 §3).
fn assertion_claims() -> Value {
    json!({
        "iss": "11223344-5566-4778-899a-abbccddeeff0",
        "sub": "11223344-5566-4778-899a-abbccddeeff0",
        "aud": "https://auth.example.com/0f1e2d3c-4b5a-4697-8877-665544332211/as/token",
        "jti": "e1d2c3b4-a596-4878-8969-5a4b3c2d1e0f",
        "exp": 1_800_000_060,
        "iat": 1_800_000_000,
    })
}

fn bench_sign(c: &mut Criterion) -> Result<(), CryptoError> {
    let claims = id_token_claims();
    let mut group = c.benchmark_group("sign_id_token");
    for alg in [
        SigningAlg::RS256,
        SigningAlg::PS256,
        SigningAlg::ES256,
        SigningAlg::EdDSA,
    ] {
        let key = assent_crypto::generate_key(alg, "bench-kid")?;
        let signer = JwsSigner::from_pkcs8(alg, &key.kid, &key.pkcs8_der)?;
        signer.sign(Some("JWT"), &claims)?;
        group.bench_function(alg.as_str(), |b| {
            b.iter(|| signer.sign(Some("JWT"), black_box(&claims)))
        });
    }
    group.finish();
    Ok(())
}

fn bench_hmac_verify(c: &mut Criterion) -> Result<(), CryptoError> {
    let secret = b"a-client-secret-of-forty-three-characters-x";
    let token = assent_crypto::sign_hmac_jws(HmacAlg::HS256, secret, &assertion_claims())?;
    assent_crypto::verify_hmac_jws(&token, secret, &HmacAlg::ALL)?;
    c.bench_function("verify_hmac_jws/HS256", |b| {
        b.iter(|| assent_crypto::verify_hmac_jws(black_box(&token), secret, &HmacAlg::ALL))
    });
    Ok(())
}

/// Runs every bench; a setup failure (key generation, a first sign or verify) is reported and
/// makes the bench binary fail instead of measuring something broken.
fn benches(c: &mut Criterion) {
    let results = [bench_sign(c), bench_hmac_verify(c)];
    if let Some(err) = results.into_iter().find_map(Result::err) {
        eprintln!("bench setup failed: {err}");
        std::process::exit(1);
    }
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = jws;
    config = config();
    targets = benches
}
criterion_main!(jws);
