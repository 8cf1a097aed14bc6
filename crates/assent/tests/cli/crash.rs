//! A real `assent serve` killed with SIGKILL in the middle of a burst of acknowledgements
//! (issue #8): after a restart on the same data dir, every `auth_req_id` that was acknowledged
//! is found, and no redeemed request can be redeemed again. Group commit answers a caller only
//! after the commit that holds its write; this is the test that would catch an answer sent
//! before it.

use super::*;

const CIBA_GRANT: &str = "urn:openid:params:grant-type:ciba";

struct Demo {
    env: String,
    client_id: String,
    secret: String,
}

fn demo(server: &Running) -> Demo {
    let stdout = server.stdout.lock().unwrap().clone();
    Demo {
        env: exported(&stdout, "ENV"),
        client_id: exported(&stdout, "CLIENT_ID"),
        secret: exported(&stdout, "CLIENT_SECRET"),
    }
}

async fn acknowledge(http: &reqwest::Client, base: &str, d: &Demo) -> Option<String> {
    let r = http
        .post(format!("{base}/{}/as/cibaAuthorization", d.env))
        .basic_auth(&d.client_id, Some(&d.secret))
        .form(&[("scope", "openid"), ("login_hint", "demo")])
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    let body: Value = r.json().await.ok()?;
    body["auth_req_id"].as_str().map(str::to_owned)
}

async fn poll(http: &reqwest::Client, base: &str, d: &Demo, id: &str) -> Value {
    http.post(format!("{base}/{}/as/token", d.env))
        .basic_auth(&d.client_id, Some(&d.secret))
        .form(&[("grant_type", CIBA_GRANT), ("auth_req_id", id)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_burst_loses_no_acknowledged_request_and_redeems_nothing_twice() {
    let dir = temp_dir("crash");
    let port = free_port();
    let mut server = serve(&dir, port);
    let d = demo(&server);
    let base = server.base.clone();
    let token = admin_token(&dir);
    let http = reqwest::Client::new();

    // Three requests approved and redeemed before the crash.
    let mut redeemed = Vec::new();
    for _ in 0..3 {
        let id = acknowledge(&http, &base, &d).await.expect("acknowledged");
        let r = http
            .post(format!(
                "{base}/v1/environments/{}/cibaRequests/{id}/approve",
                d.env
            ))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
        let tokens = poll(&http, &base, &d, &id).await;
        assert!(tokens["access_token"].is_string(), "{tokens}");
        redeemed.push(id);
    }

    // A burst of acknowledgements from 16 clients; the server is killed once 200 are answered,
    // with the clients still sending.
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let enough = Arc::new(tokio::sync::Notify::new());
    let stop = tokio_util::sync::CancellationToken::new();
    let mut clients = Vec::new();
    for _ in 0..16 {
        let (http, base, acknowledged, enough, stop) = (
            reqwest::Client::new(),
            base.clone(),
            acknowledged.clone(),
            enough.clone(),
            stop.clone(),
        );
        let d = Demo {
            env: d.env.clone(),
            client_id: d.client_id.clone(),
            secret: d.secret.clone(),
        };
        clients.push(tokio::spawn(async move {
            while !stop.is_cancelled() {
                match acknowledge(&http, &base, &d).await {
                    Some(id) => {
                        let mut all = acknowledged.lock().unwrap();
                        all.push(id);
                        if all.len() >= 200 {
                            enough.notify_one();
                        }
                    }
                    // The server is gone: nothing more will be acknowledged.
                    None => break,
                }
            }
        }));
    }
    enough.notified().await;
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    stop.cancel();
    for c in clients {
        c.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 200, "{}", acknowledged.len());

    // Restarted on the same data dir: every acknowledged request is there.
    let mut server = serve(&dir, port);
    for id in &acknowledged {
        let r = http
            .get(format!(
                "{base}/v1/environments/{}/cibaRequests/{id}",
                d.env
            ))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            reqwest::StatusCode::OK,
            "acknowledged {id} lost: {}",
            r.text().await.unwrap()
        );
    }
    // And nothing redeemed before the crash is redeemed again.
    for id in &redeemed {
        let again = poll(&http, &base, &d, id).await;
        assert_eq!(again["error"], "invalid_grant", "{again}");
        assert!(again.get("access_token").is_none(), "{again}");
    }
    assert!(sigterm(&mut server.child).success());
}
