//! `GET /metrics` (docs/metrics.md): Prometheus text behind the admin token, labelled by route
//! template and outcome, never by an id.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support::*;
use axum::http::{Method, StatusCode};

/// The value of the sample of `name` whose labels include every one of `labels`
/// (`key="value"`), or `None` when there is no such line.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(series, _)| {
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            metric == name && labels.iter().all(|label| rest.contains(label))
        })
        .map(|(_, value)| value.parse().unwrap())
}

async fn scrape(h: &Harness) -> String {
    let r = h
        .get("/metrics", Some(&format!("Bearer {ADMIN_TOKEN}")))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    r.text
}

#[tokio::test]
async fn a_flow_is_counted_by_route_and_outcome_without_ids() {
    let h = Harness::new().await;
    let (client, user) = h.sandbox().await;
    let id = h.start(&client, "openid").await;
    let r = h.poll(&client, &id).await;
    assert_eq!(r.error(), "authorization_pending");
    // Polled again at once: slow_down.
    let r = h.poll(&client, &id).await;
    assert_eq!(r.error(), "slow_down");
    assert_eq!(
        h.decide(&client.env_id, &id, "approve").await.status,
        StatusCode::NO_CONTENT
    );
    h.clock.advance_secs(10);
    let r = h.poll(&client, &id).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    let text = scrape(&h).await;
    let token = r#"route="/{env_id}/as/token""#;
    let requests = "assent_http_requests_total";
    assert_eq!(
        sample(
            &text,
            requests,
            &[token, r#"method="POST""#, r#"status="400""#]
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            requests,
            &[token, r#"method="POST""#, r#"status="200""#]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "assent_http_request_duration_seconds_count",
            &[token]
        ),
        Some(3.0),
        "{text}"
    );
    let outcomes = "assent_ciba_poll_outcomes_total";
    for (outcome, n) in [("pending", 1.0), ("slow_down", 1.0), ("redeemed", 1.0)] {
        let label = format!(r#"outcome="{outcome}""#);
        assert_eq!(sample(&text, outcomes, &[&label]), Some(n), "{text}");
    }
    assert_eq!(sample(&text, "assent_ciba_requests_total", &[]), Some(1.0));
    assert!(sample(&text, "assent_store_commits_total", &[]).unwrap() > 0.0);
    assert!(sample(&text, "assent_store_transitions_total", &[]).unwrap() > 0.0);
    assert_eq!(
        sample(&text, "assent_store_queued_transitions", &[]),
        Some(0.0)
    );
    // The batch-size and commit-duration histograms count every commit, and the mean batch
    // is the transitions over the commits.
    let commits = sample(&text, "assent_store_commits_total", &[]).unwrap();
    let transitions = sample(&text, "assent_store_transitions_total", &[]).unwrap();
    for histogram in [
        "assent_store_batch_size",
        "assent_store_commit_duration_seconds",
    ] {
        assert_eq!(
            sample(&text, &format!("{histogram}_count"), &[]),
            Some(commits),
            "{text}"
        );
        assert_eq!(
            sample(&text, &format!("{histogram}_bucket"), &[r#"le="+Inf""#]),
            Some(commits),
            "{text}"
        );
    }
    assert_eq!(
        sample(&text, "assent_store_batch_size_sum", &[]),
        Some(transitions)
    );
    assert_eq!(
        sample(&text, "assent_store_batch_size_bucket", &[r#"le="256""#]),
        Some(commits)
    );
    assert!(sample(&text, "assent_store_commit_duration_seconds_sum", &[]).unwrap() > 0.0);
    // The flow read the environment and the application more than once: the cache answered.
    assert!(sample(&text, "assent_directory_cache_hits_total", &[]).unwrap() > 0.0);
    assert!(sample(&text, "assent_directory_cache_misses_total", &[]).unwrap() > 0.0);
    for secret in [
        client.env_id.as_str(),
        client.id.as_str(),
        id.as_str(),
        user.as_str(),
        client.secret.as_str(),
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
}

#[tokio::test]
async fn routes_are_labelled_by_template_and_misses_without_their_path() {
    let h = Harness::new().await;
    let env = h.create_env("SANDBOX").await;
    let r = h
        .admin(Method::GET, &format!("/v1/environments/{env}"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = h
        .admin(Method::GET, &format!("/v1/nothing/{env}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = h.get(&format!("/{env}/nothing"), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let text = scrape(&h).await;
    assert_eq!(
        sample(
            &text,
            "assent_http_requests_total",
            &[
                r#"route="/v1/environments/{env_id}""#,
                r#"method="GET""#,
                r#"status="200""#
            ]
        ),
        Some(1.0),
        "{text}"
    );
    // Both 404s matched no route: labelled `unmatched`, not by their paths.
    assert_eq!(
        sample(
            &text,
            "assent_http_requests_total",
            &[r#"route="unmatched""#, r#"method="GET""#, r#"status="404""#]
        ),
        Some(2.0),
        "{text}"
    );
    assert!(!text.contains(&env), "{text}");
    assert!(!text.contains("nothing"), "{text}");
}

#[tokio::test]
async fn metrics_need_the_admin_token() {
    let h = Harness::new().await;
    for auth in [None, Some("Bearer wrong"), Some("Basic x")] {
        let r = h.get("/metrics", auth).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.body["code"], "INVALID_TOKEN");
        assert!(r.body["id"].is_string());
    }
}

#[tokio::test]
async fn denied_and_expired_polls_are_counted() {
    let h = Harness::new().await;
    let (client, _user) = h.sandbox().await;
    let denied = h.start(&client, "openid").await;
    let expired = h.start(&client, "openid").await;
    assert_eq!(
        h.decide(&client.env_id, &denied, "deny").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(h.poll(&client, &denied).await.error(), "access_denied");
    h.clock.advance_secs(24 * 3600);
    assert_eq!(h.poll(&client, &expired).await.error(), "expired_token");
    let text = scrape(&h).await;
    let outcomes = "assent_ciba_poll_outcomes_total";
    for outcome in ["denied", "expired"] {
        let label = format!(r#"outcome="{outcome}""#);
        assert_eq!(sample(&text, outcomes, &[&label]), Some(1.0), "{text}");
    }
    assert_eq!(sample(&text, "assent_ciba_requests_total", &[]), Some(2.0));
}
