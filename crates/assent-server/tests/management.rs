//! Management API (§5): every resource, validation errors, auth failures, isolation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use axum::http::{Method, StatusCode};
use serde_json::json;
use support::*;

#[tokio::test]
async fn requires_admin_token() {
    let h = Harness::new().await;
    for token in [None, Some("wrong"), Some("")] {
        let r = h
            .admin_with_token(Method::GET, "/v1/environments", None, token)
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.body["code"], "INVALID_TOKEN");
        assert!(r.body["id"].is_string());
    }
}
