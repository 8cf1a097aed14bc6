//! Client authentication at `/cibaAuthorization`, `/token`, `/introspect` and `/revoke`
//! (§3.1, RFC 6749 §2.3, RFC 7523, OIDC Core §9). The application's
//! `tokenEndpointAuthMethod` decides; any failure is 401 `invalid_client`.

use assent_core::jwt::{ClaimError, ClaimRules, JtiRule, MAX_JTI_LEN, SubjectRule, TimeClaimRule};
use assent_core::{
    Application, ApplicationId, EnvironmentId, OAuthError, Timestamp, TokenEndpointAuthMethod,
};
use assent_crypto::{HmacAlg, JwkSet, SigningAlg};
use assent_store::StoreError;
use axum::http::{HeaderMap, header};
use base64::Engine;
use serde_json::Value;
use zeroize::Zeroizing;

use crate::error::OAuthResponseError;
use crate::form::OAuthForm;
use crate::service::Deps;

pub const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// A client assertion may expire at most this far ahead (§3.1).
pub const MAX_ASSERTION_LIFETIME_SECS: i64 = 3600;

/// The one answer to every client-authentication failure. Whatever went wrong (unknown client,
/// wrong secret, bad signature, wrong method, expired or replayed assertion, unusable keys), the
/// caller reads the same words, so it cannot learn which client ids exist or how they
/// authenticate (§3.1). The specific reason goes to the log, under the request's correlation id.
pub const INVALID_CLIENT_TEXT: &str = "The client credentials are invalid.";

fn invalid_client(reason: &str) -> OAuthResponseError {
    tracing::info!(reason, "client authentication failed");
    OAuthResponseError::new(OAuthError::invalid_client(INVALID_CLIENT_TEXT))
}

/// The credentials a request presented, before they are checked.
enum Presented {
    Basic {
        client_id: ApplicationId,
        secret: String,
    },
    Post {
        client_id: ApplicationId,
        secret: String,
    },
    Assertion {
        assertion: String,
    },
}

fn pct_decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

fn basic_credentials(
    headers: &HeaderMap,
) -> Result<Option<(ApplicationId, String)>, OAuthResponseError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| invalid_client("The Authorization header is malformed."))?;
    let Some((scheme, rest)) = value.split_once(' ') else {
        return Err(invalid_client("The Authorization header is malformed."));
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(invalid_client(
            "Only Basic credentials are accepted in the Authorization header.",
        ));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| invalid_client("The Basic credentials are malformed."))?;
    let (id, secret) = decoded
        .split_once(':')
        .ok_or_else(|| invalid_client("The Basic credentials are malformed."))?;
    // RFC 6749 §2.3.1: both parts are form-urlencoded before base64.
    let id =
        pct_decode(id).ok_or_else(|| invalid_client("The Basic credentials are malformed."))?;
    let secret =
        pct_decode(secret).ok_or_else(|| invalid_client("The Basic credentials are malformed."))?;
    Ok(Some((ApplicationId::from(id), secret)))
}

fn presented(headers: &HeaderMap, form: &OAuthForm) -> Result<Presented, OAuthResponseError> {
    let basic = basic_credentials(headers)?;
    let post_secret = form.get("client_secret");
    let assertion = form.get("client_assertion");
    let methods = usize::from(basic.is_some())
        + usize::from(post_secret.is_some())
        + usize::from(assertion.is_some());
    if methods > 1 {
        return Err(OAuthError::invalid_request(
            "The request uses more than one client authentication method.",
        )
        .into());
    }
    if let Some((client_id, secret)) = basic {
        return Ok(Presented::Basic { client_id, secret });
    }
    if let Some(secret) = post_secret {
        let client_id = form
            .get("client_id")
            .ok_or_else(|| invalid_client("client_secret was sent without client_id."))?;
        return Ok(Presented::Post {
            client_id: ApplicationId::from(client_id),
            secret: secret.to_owned(),
        });
    }
    if let Some(assertion) = assertion {
        if form.get("client_assertion_type") != Some(JWT_BEARER_ASSERTION) {
            return Err(invalid_client(
                "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer.",
            ));
        }
        return Ok(Presented::Assertion {
            assertion: assertion.to_owned(),
        });
    }
    Err(invalid_client("Client authentication is required."))
}

/// Authenticates the calling application. `endpoint` is the full URL being called (an
/// accepted assertion `aud`, besides the issuer and the token endpoint).
pub async fn authenticate(
    state: &Deps,
    env_id: &EnvironmentId,
    headers: &HeaderMap,
    form: &OAuthForm,
    endpoint: &str,
    now: Timestamp,
) -> Result<Application, OAuthResponseError> {
    let presented = presented(headers, form)?;
    let (app, expected_method) = match &presented {
        Presented::Basic { client_id, .. } => (
            load_client(state, env_id, client_id).await?,
            TokenEndpointAuthMethod::ClientSecretBasic,
        ),
        Presented::Post { client_id, .. } => (
            load_client(state, env_id, client_id).await?,
            TokenEndpointAuthMethod::ClientSecretPost,
        ),
        Presented::Assertion { assertion } => {
            let claims = assent_crypto::decode_claims_unverified(assertion)
                .map_err(|_| invalid_client("The client assertion is malformed."))?;
            let iss = claims
                .get("iss")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid_client("The client assertion has no iss."))?;
            let header = assent_crypto::decode_header(assertion)
                .map_err(|_| invalid_client("The client assertion is malformed."))?;
            let method = if HmacAlg::parse(&header.alg).is_some() {
                TokenEndpointAuthMethod::ClientSecretJwt
            } else {
                TokenEndpointAuthMethod::PrivateKeyJwt
            };
            (
                load_client(state, env_id, &ApplicationId::from(iss)).await?,
                method,
            )
        }
    };
    if app.token_endpoint_auth_method != expected_method {
        tracing::info!(application_id = %app.id, "client used another authentication method than registered");
        return Err(invalid_client(
            "another authentication method than registered",
        ));
    }
    // A client_id parameter that names another client is an authentication failure; one that
    // matches is harmless (common libraries send it alongside Basic or assertions).
    if let Some(id) = form.get("client_id")
        && id != app.id
    {
        return Err(invalid_client(
            "client_id does not match the authenticated client.",
        ));
    }
    match presented {
        Presented::Basic { secret, .. } | Presented::Post { secret, .. } => {
            let expected = client_secret(state, &app).await?;
            if !assent_crypto::ct_eq(secret.as_bytes(), expected.as_bytes()) {
                return Err(invalid_client("The client credentials are invalid."));
            }
        }
        Presented::Assertion { assertion } => {
            verify_assertion(state, &app, &assertion, endpoint, now).await?;
        }
    }
    Ok(app)
}

async fn load_client(
    state: &Deps,
    env_id: &EnvironmentId,
    client_id: &ApplicationId,
) -> Result<Application, OAuthResponseError> {
    match state.store.get_application(env_id, client_id).await {
        Ok(app) => Ok(app),
        Err(StoreError::NotFound) => Err(invalid_client("The client credentials are invalid.")),
        Err(e) => Err(e.into()),
    }
}

/// The application's client secret, decrypted: opened once per cached application entry (and
/// kept there, wiped when the entry goes); what is returned is a copy wiped when dropped.
pub async fn client_secret(
    state: &Deps,
    app: &Application,
) -> Result<Zeroizing<String>, OAuthResponseError> {
    let entry = state
        .store
        .get_application_entry(&app.environment_id, &app.id)
        .await?;
    let secret = entry
        .secret(|sealed| {
            crate::secrets::open_client_secret(&state.secrets, &app.environment_id, &app.id, sealed)
        })
        .map_err(|_| {
            tracing::error!(application_id = %app.id, "client secret could not be decrypted");
            invalid_client("The client credentials are invalid.")
        })?;
    Ok(Zeroizing::new(secret.to_owned()))
}

/// Checks a client assertion's signature and every claim rule of §3.1.
async fn verify_assertion(
    state: &Deps,
    app: &Application,
    assertion: &str,
    endpoint: &str,
    now: Timestamp,
) -> Result<(), OAuthResponseError> {
    let claims = match app.token_endpoint_auth_method {
        TokenEndpointAuthMethod::ClientSecretJwt => {
            let secret = client_secret(state, app).await?;
            assent_crypto::verify_hmac_jws(assertion, secret.as_bytes(), &HmacAlg::ALL)
                .map_err(|_| invalid_client("The client assertion signature is invalid."))?
        }
        _ => {
            let header = assent_crypto::decode_header(assertion)
                .map_err(|_| invalid_client("The client assertion is malformed."))?;
            let keys = client_keys(state, app, header.kid.as_deref()).await?;
            assent_crypto::verify_jws(assertion, &keys, &SigningAlg::ALL)
                .map_err(|_| invalid_client("The client assertion signature is invalid."))?
        }
    };
    // CIBA §7.1 / R17: the issuer, the token endpoint and the backchannel endpoint (under
    // either of its names) are all acceptable, wherever the assertion is presented.
    let issuer = state.issuer(&app.environment_id);
    let accepted = vec![
        issuer.clone(),
        format!("{issuer}/token"),
        format!("{issuer}/cibaAuthorization"),
        format!("{issuer}/bc-authorize"),
        endpoint.to_owned(),
    ];
    let rules = ClaimRules {
        issuer: Some(app.id.to_string()),
        subject: SubjectRule::Equals(app.id.to_string()),
        audiences: Some(accepted),
        require_exp: true,
        allow_expired: false,
        max_lifetime_secs: Some(MAX_ASSERTION_LIFETIME_SECS),
        nbf: TimeClaimRule::NotInFuture,
        iat: TimeClaimRule::Ignore,
        jti: JtiRule::Required {
            max_len: MAX_JTI_LEN,
        },
    };
    let checked = rules.check(&claims, now).map_err(|e| {
        invalid_client(match e {
            ClaimError::Issuer | ClaimError::Subject | ClaimError::MissingSubject => {
                "The client assertion's iss and sub must be the client id."
            }
            ClaimError::Audience => {
                "The client assertion's aud must be the issuer or the endpoint URL."
            }
            ClaimError::MissingExp | ClaimError::InvalidExp => {
                "The client assertion has no valid exp."
            }
            ClaimError::Expired => "The client assertion has expired.",
            ClaimError::TooFarAhead => {
                "The client assertion must not expire more than one hour from now."
            }
            ClaimError::MissingNbf | ClaimError::InvalidNbf => {
                "The client assertion's nbf is not a number."
            }
            ClaimError::NotYetValid => "The client assertion is not valid yet.",
            ClaimError::MissingIat | ClaimError::InvalidIat | ClaimError::IssuedInFuture => {
                "The client assertion's iat is in the future."
            }
            ClaimError::MissingJti | ClaimError::InvalidJti => "The client assertion has no jti.",
        })
    })?;
    let (Some(jti), Some(exp)) = (checked.jti, checked.expires_at) else {
        // The rules require both; this keeps the single-use record honest if they change.
        return Err(invalid_client("The client assertion has no jti."));
    };
    let fresh = state
        .store
        .use_jti(
            &app.environment_id,
            &format!("client_assertion:{}", app.id),
            &jti,
            exp,
            now,
        )
        .await?;
    if !fresh {
        return Err(invalid_client(
            "The client assertion has already been used.",
        ));
    }
    Ok(())
}

/// The application's public keys: its registered `jwks`, or its `jwksUrl` (cached).
pub async fn client_keys(
    state: &Deps,
    app: &Application,
    kid: Option<&str>,
) -> Result<JwkSet, OAuthResponseError> {
    if let Some(jwks) = &app.jwks {
        return JwkSet::parse(jwks)
            .map_err(|_| invalid_client("The application's registered jwks is unusable."));
    }
    let Some(url) = &app.jwks_url else {
        return Err(invalid_client(
            "The application has no public keys registered.",
        ));
    };
    state
        .jwks_cache
        .get(url, kid)
        .await
        .map_err(|e| {
            tracing::warn!(application_id = %app.id, error = %e, "could not fetch the application's jwksUrl");
            invalid_client("The application's keys could not be retrieved.")
        })
}
