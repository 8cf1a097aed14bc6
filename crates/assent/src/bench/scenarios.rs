//! The scenarios against the server's OAuth endpoints, as a relying party would call them:
//! `flow` (request → automatic approval → polls → tokens), `init` (acknowledgements only) and
//! `poll` (seeded pending requests, each polled at its interval).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Result;
use hyper::header::HeaderValue;
use hyper::{StatusCode, Uri};
use serde::Deserialize;
use serde::de::IgnoredAny;

use super::http::{Answer, Connection, Endpoint, answer_kind, basic_auth, encode};
use super::run::{Shared, Tally};

/// The CIBA grant's form up to the `auth_req_id` value.
const CIBA_GRANT_FORM: &str = "grant_type=urn%3Aopenid%3Aparams%3Agrant-type%3Aciba&auth_req_id=";
/// CIBA §7.3: a client polls every 5 s when the acknowledgement names no interval.
const DEFAULT_INTERVAL: u64 = 5;
/// CIBA §7.3 / spec §3.3: each `slow_down` adds this to the interval.
const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);
/// After a failure to reach the server, a worker waits this long before its next try, so a
/// dead server is not hammered in a tight loop.
const TRANSPORT_BACKOFF: Duration = Duration::from_millis(100);

/// When the next poll of a request may be sent: `interval` after the previous one was sent,
/// and never earlier than `interval` − 0.5 s after its answer came. The server measures the
/// interval between the polls' arrivals with 0.5 s of tolerance (spec §3.3); the previous
/// poll arrived before its answer, so the second bound keeps a poll whose arrival was delayed
/// from making the next one look too soon.
pub fn next_poll(sent: Instant, answered: Instant, interval: Duration) -> Instant {
    let tolerance = Duration::from_millis(500);
    (sent + interval).max(answered + interval.saturating_sub(tolerance))
}

/// The bench application's two endpoints and its credentials.
#[derive(Debug)]
pub struct Oauth {
    pub endpoint: Arc<Endpoint>,
    ciba: Uri,
    token: Uri,
    auth: HeaderValue,
}

impl Oauth {
    pub fn new(
        endpoint: Arc<Endpoint>,
        env_id: &str,
        client_id: &str,
        secret: &str,
    ) -> Result<Oauth> {
        let env = encode(env_id);
        Ok(Oauth {
            ciba: endpoint.uri(&format!("/{env}/as/cibaAuthorization"))?,
            token: endpoint.uri(&format!("/{env}/as/token"))?,
            auth: basic_auth(client_id, secret)?,
            endpoint,
        })
    }
}

/// The `/cibaAuthorization` form for a user (and, for seeded requests, a long expiry).
pub fn authorization_form(username: &str, requested_expiry: Option<u64>) -> String {
    let mut form = format!("scope=openid&login_hint={}", encode(username));
    if let Some(secs) = requested_expiry {
        form.push_str(&format!("&requested_expiry={secs}"));
    }
    form
}

fn token_form(auth_req_id: &str) -> String {
    format!("{CIBA_GRANT_FORM}{}", encode(auth_req_id))
}

/// A successful acknowledgement (spec §3.2).
#[derive(Deserialize)]
struct Ack {
    auth_req_id: String,
    interval: Option<u64>,
}

/// A token response: only that it has an access token is checked.
#[derive(Deserialize)]
struct Tokens {
    #[serde(rename = "access_token")]
    _access_token: IgnoredAny,
}

/// Why an operation failed: an answer of the wrong kind, or no answer at all.
enum Failure {
    Answer(String),
    Transport(String),
}

impl Failure {
    /// Counts the failure; after a transport failure, waits before the next try.
    async fn count(self, tally: &mut Tally, shared: &Shared) {
        match self {
            Failure::Answer(kind) => tally.error(shared, kind),
            Failure::Transport(kind) => {
                tally.error(shared, kind);
                shared.sleep_until(Instant::now() + TRANSPORT_BACKOFF).await;
            }
        }
    }
}

fn ack_of(result: Result<Answer, String>) -> Result<Ack, Failure> {
    let answer = result.map_err(Failure::Transport)?;
    if answer.status != StatusCode::OK {
        return Err(Failure::Answer(answer_kind(&answer)));
    }
    serde_json::from_slice(&answer.body)
        .map_err(|_| Failure::Answer("malformed acknowledgement".to_owned()))
}

/// `init`: acknowledgements, one after another on one connection.
pub async fn init_worker(oauth: Arc<Oauth>, form: String, shared: Arc<Shared>) -> Tally {
    let mut conn = Connection::new(oauth.endpoint.clone());
    let mut tally = Tally::default();
    while shared.claim() {
        let started = Instant::now();
        let Some(result) = shared
            .or_cancel(conn.post(&oauth.ciba, &oauth.auth, form.clone()))
            .await
        else {
            break;
        };
        match ack_of(result) {
            Ok(_) => tally.ok(&shared, started.elapsed()),
            Err(failure) => failure.count(&mut tally, &shared).await,
        }
    }
    tally
}

/// `flow`: a request for a user who approves at once, then polls of `/token` (the first at
/// once, then one per interval) until the tokens come; one flow is the whole of it.
pub async fn flow_worker(oauth: Arc<Oauth>, form: String, shared: Arc<Shared>) -> Tally {
    let mut conn = Connection::new(oauth.endpoint.clone());
    let mut tally = Tally::default();
    'flows: while shared.claim() {
        let started = Instant::now();
        let Some(result) = shared
            .or_cancel(conn.post(&oauth.ciba, &oauth.auth, form.clone()))
            .await
        else {
            break;
        };
        let ack = match ack_of(result) {
            Ok(ack) => ack,
            Err(failure) => {
                failure.count(&mut tally, &shared).await;
                continue;
            }
        };
        let mut interval = Duration::from_secs(ack.interval.unwrap_or(DEFAULT_INTERVAL));
        let poll = token_form(&ack.auth_req_id);
        loop {
            let sent = Instant::now();
            let Some(result) = shared
                .or_cancel(conn.post(&oauth.token, &oauth.auth, poll.clone()))
                .await
            else {
                break 'flows;
            };
            let answer = match result {
                Ok(answer) => answer,
                Err(kind) => {
                    Failure::Transport(kind).count(&mut tally, &shared).await;
                    continue 'flows;
                }
            };
            if answer.status == StatusCode::OK {
                match serde_json::from_slice::<Tokens>(&answer.body) {
                    Ok(_) => tally.ok(&shared, started.elapsed()),
                    Err(_) => tally.error(&shared, "malformed token response".to_owned()),
                }
                continue 'flows;
            }
            match answer_kind(&answer).as_str() {
                "authorization_pending" => tally.pending_answers += 1,
                "slow_down" => {
                    tally.error(&shared, "slow_down".to_owned());
                    interval += SLOW_DOWN_STEP;
                }
                other => {
                    tally.error(&shared, other.to_owned());
                    continue 'flows;
                }
            }
            if !shared
                .sleep_until(next_poll(sent, Instant::now(), interval))
                .await
            {
                break 'flows;
            }
        }
    }
    tally
}

/// A pending request the `poll` scenario polls.
#[derive(Debug)]
pub struct Seeded {
    auth_req_id: Box<str>,
    interval: Duration,
}

/// The `poll` scenario's seeding: acknowledgements like `init`, keeping each `auth_req_id`
/// and interval (in `into`, once per worker at its end).
pub async fn seed_worker(
    oauth: Arc<Oauth>,
    form: String,
    into: Arc<Mutex<Vec<Seeded>>>,
    shared: Arc<Shared>,
) -> Tally {
    let mut conn = Connection::new(oauth.endpoint.clone());
    let mut tally = Tally::default();
    let mut seeded = Vec::new();
    while shared.claim() {
        let started = Instant::now();
        let Some(result) = shared
            .or_cancel(conn.post(&oauth.ciba, &oauth.auth, form.clone()))
            .await
        else {
            break;
        };
        match ack_of(result) {
            Ok(ack) => {
                tally.ok(&shared, started.elapsed());
                seeded.push(Seeded {
                    auth_req_id: ack.auth_req_id.into_boxed_str(),
                    interval: Duration::from_secs(ack.interval.unwrap_or(DEFAULT_INTERVAL)),
                });
            }
            Err(failure) => failure.count(&mut tally, &shared).await,
        }
    }
    into.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .append(&mut seeded);
    tally
}

/// Deals the seeded requests to `workers` workers, the first polls spread evenly over one
/// interval from `start` (rather than all at once).
pub fn deal(seeded: Vec<Seeded>, workers: usize, start: Instant) -> Vec<Vec<(Seeded, Instant)>> {
    let total = seeded.len().max(1) as f64;
    let mut parts: Vec<Vec<(Seeded, Instant)>> = (0..workers.max(1)).map(|_| Vec::new()).collect();
    let n = parts.len();
    for (j, s) in seeded.into_iter().enumerate() {
        let first = start + s.interval.mul_f64(j as f64 / total);
        if let Some(part) = parts.get_mut(j % n) {
            part.push((s, first));
        }
    }
    parts
}

/// `poll`: this worker's share of the pending requests, each polled when its interval has
/// passed since its previous poll was sent. `authorization_pending` is the expected answer;
/// `slow_down` is an error (and lengthens that request's interval, as a client must); a
/// request that can no longer be pending (expired, denied, unknown) is dropped.
pub async fn poll_worker(
    oauth: Arc<Oauth>,
    mine: Vec<(Seeded, Instant)>,
    shared: Arc<Shared>,
) -> Tally {
    let mut conn = Connection::new(oauth.endpoint.clone());
    let mut tally = Tally::default();
    let mut due: BinaryHeap<Reverse<(Instant, usize)>> = mine
        .iter()
        .enumerate()
        .map(|(i, (_, first))| Reverse((*first, i)))
        .collect();
    let mut requests: Vec<Seeded> = mine.into_iter().map(|(s, _)| s).collect();
    while let Some(Reverse((at, i))) = due.pop() {
        if !shared.before_deadline(at) || !shared.sleep_until(at).await || !shared.claim() {
            break;
        }
        let Some(request) = requests.get_mut(i) else {
            continue;
        };
        let sent = Instant::now();
        let Some(result) = shared
            .or_cancel(conn.post(&oauth.token, &oauth.auth, token_form(&request.auth_req_id)))
            .await
        else {
            break;
        };
        let mut again = true;
        match result {
            Ok(answer) => match answer_kind(&answer).as_str() {
                "authorization_pending" if answer.status == StatusCode::BAD_REQUEST => {
                    tally.ok(&shared, sent.elapsed());
                }
                "slow_down" => {
                    tally.error(&shared, "slow_down".to_owned());
                    request.interval += SLOW_DOWN_STEP;
                }
                other => {
                    again = !matches!(other, "expired_token" | "invalid_grant" | "access_denied")
                        && answer.status != StatusCode::OK;
                    tally.error(&shared, other.to_owned());
                }
            },
            Err(kind) => Failure::Transport(kind).count(&mut tally, &shared).await,
        }
        if again {
            let next = next_poll(sent, Instant::now(), request.interval);
            due.push(Reverse((next, i)));
        }
    }
    tally
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_are_encoded() {
        assert_eq!(
            authorization_form("assent-bench-1a2b-pending-1", None),
            "scope=openid&login_hint=assent-bench-1a2b-pending-1"
        );
        assert_eq!(
            authorization_form("a b", Some(86_400)),
            "scope=openid&login_hint=a%20b&requested_expiry=86400"
        );
        assert_eq!(
            token_form("abc-_.x"),
            "grant_type=urn%3Aopenid%3Aparams%3Agrant-type%3Aciba&auth_req_id=abc-_.x"
        );
    }

    #[test]
    fn the_next_poll_keeps_the_interval_between_arrivals() {
        let t = Instant::now();
        let second = Duration::from_secs(1);
        // A quick answer: one interval after the previous poll was sent.
        let quick = next_poll(t, t + Duration::from_millis(20), second);
        assert_eq!(quick - t, second);
        // A slow answer (the poll may have arrived just before it): at least interval − 0.5 s
        // after the answer.
        let slow = next_poll(t, t + Duration::from_millis(800), second);
        assert_eq!(slow - t, Duration::from_millis(1300));
    }

    #[test]
    fn seeded_requests_are_dealt_round_robin_with_first_polls_spread_over_one_interval() {
        let start = Instant::now();
        let seeded: Vec<Seeded> = (0..10)
            .map(|i| Seeded {
                auth_req_id: format!("r{i}").into_boxed_str(),
                interval: Duration::from_secs(1),
            })
            .collect();
        let parts = deal(seeded, 3, start);
        assert_eq!(
            parts.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![4, 3, 3]
        );
        let ids: Vec<&str> = parts[1].iter().map(|(s, _)| &*s.auth_req_id).collect();
        assert_eq!(ids, vec!["r1", "r4", "r7"]);
        let (_, last_first) = &parts[0][3]; // r9
        assert_eq!(*last_first - start, Duration::from_millis(900));
        assert!(
            parts
                .iter()
                .flatten()
                .all(|(_, t)| *t >= start && *t < start + Duration::from_secs(1))
        );
        assert_eq!(deal(Vec::new(), 0, start).len(), 1);
    }
}
