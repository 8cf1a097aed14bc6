//! Authorization-server endpoints (§3): discovery, JWKS, client authentication, the CIBA
//! backchannel request, the token endpoint, tokens, userinfo, introspection and revocation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use axum::http::StatusCode;
use support::*;

#[tokio::test]
async fn happy_poll_flow() {
    let h = Harness::new().await;
    let (client, _user) = h.sandbox().await;
    let id = h.start(&client, "openid").await;
    let r = h.poll(&client, &id).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error(), "authorization_pending");
    assert_sentence(&r, PENDING);
    assert_eq!(h.decide(&client.env_id, &id, "approve").await.status, StatusCode::NO_CONTENT);
    h.clock.advance_secs(2);
    let r = h.poll(&client, &id).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.body["id_token"].is_string());
}
