//! `GET /{envId}/device/events`: the device's view as Server-Sent Events (§6.1). Each pending
//! request of the device's user is sent once as `event: request` (its `id` is
//! `<created_at ms>.<authReqId>`: a reconnect with `Last-Event-ID` resumes after that request,
//! sending again only requests created up to [`RESUME_OVERLAP_MS`] before it, so none is ever
//! skipped; a device keys what it shows by `authReqId`), and
//! `event: removed` `{"authReqId"}` follows when it is no longer pending (decided, cancelled,
//! expired). A comment line every 15 s keeps the connection open through proxies. The stream
//! waits on the store's `WakeUps` (no thread, no polling loop; a re-check every 15 s catches
//! expiries) and ends when the device is disabled or deleted, and on shutdown.

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::time::Duration;

use assent_core::{AuthReqId, CibaRequest, Device, EnvironmentId, Timestamp};
use assent_store::{WakeKey, WakeUp};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::auth;
use super::error::DeviceError;
use super::requests::{shown, still_enabled};
use crate::state::AppState;

/// How often the stream re-reads without a wake-up, and sends a keep-alive comment.
pub const KEEP_ALIVE_SECS: i64 = 15;

/// An event id: `<created_at ms>.<authReqId>`, in the order requests are listed.
fn event_id(req: &CibaRequest) -> String {
    format!("{}.{}", req.created_at.millis(), req.auth_req_id)
}

fn parse_event_id(id: &str) -> Option<(i64, String)> {
    let (ms, auth_req_id) = id.split_once('.')?;
    Some((ms.parse().ok()?, auth_req_id.to_owned()))
}

/// How far before the last request received a resumed stream sends requests again: requests
/// are committed slightly out of creation order, so resuming exactly after the last one could
/// skip one committed late. Resending is harmless (a device keys requests by `authReqId`).
pub const RESUME_OVERLAP_MS: i64 = 5_000;

/// Whether a stream resumed after event `after` can leave `req` out: the device received it,
/// or received something created well after it.
fn already_received(req: &CibaRequest, after: &(i64, String)) -> bool {
    let (ms, auth_req_id) = after;
    req.auth_req_id.as_str() == auth_req_id
        || req.created_at.millis() < ms.saturating_sub(RESUME_OVERLAP_MS)
}

struct Feed {
    state: AppState,
    device: Device,
    wake: WakeUp,
    /// Pending requests already sent (or, with `Last-Event-ID`, already received).
    sent: HashSet<AuthReqId>,
    resume_after: Option<(i64, String)>,
    queue: VecDeque<Event>,
    started: bool,
    done: bool,
    /// The correlation id of the call that opened the stream (its body is sent after the
    /// request's scope ended), for the `DEVICE_NOTIFIED` entries it causes.
    correlation_id: String,
}

impl Feed {
    /// Reads the pending requests again and queues what changed.
    async fn refresh(&mut self, now: Timestamp) -> Result<(), DeviceError> {
        still_enabled(&self.state, &self.device).await?;
        let env_id = &self.device.environment_id;
        let pending = self
            .state
            .store
            .pending_for_user(env_id, &self.device.user_id, now, super::MAX_LISTED)
            .await?;
        let now_pending: HashSet<&AuthReqId> = pending.iter().map(|r| &r.auth_req_id).collect();
        let gone: Vec<AuthReqId> = self
            .sent
            .iter()
            .filter(|id| !now_pending.contains(id))
            .cloned()
            .collect();
        for id in gone {
            self.sent.remove(&id);
            self.queue.push_back(
                Event::default()
                    .event("removed")
                    .data(json!({ "authReqId": id }).to_string()),
            );
        }
        let fresh: Vec<CibaRequest> = pending
            .into_iter()
            .filter(|r| !self.sent.contains(&r.auth_req_id))
            .collect();
        let mut to_send = Vec::new();
        for req in fresh {
            self.sent.insert(req.auth_req_id.clone());
            if self
                .resume_after
                .as_ref()
                .is_some_and(|after| already_received(&req, after))
            {
                continue;
            }
            to_send.push(req);
        }
        let views = shown(
            &self.state,
            &self.device,
            &to_send,
            now,
            &self.correlation_id,
        )
        .await?;
        for (req, view) in to_send.iter().zip(views) {
            self.queue.push_back(
                Event::default()
                    .event("request")
                    .id(event_id(req))
                    .data(view.to_string()),
            );
        }
        Ok(())
    }

    async fn next(mut self) -> Option<(Result<Event, Infallible>, Feed)> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Some((Ok(event), self));
            }
            if self.done {
                return None;
            }
            if self.started {
                let recheck = self.state.now().plus_secs(KEEP_ALIVE_SECS);
                tokio::select! {
                    () = self.wake.woken() => {}
                    () = self.state.clock.sleep_until(recheck) => {}
                    () = self.state.shutdown.cancelled() => return None,
                }
            }
            self.started = true;
            let now = self.state.now();
            if self.refresh(now).await.is_err() {
                // Disabled, deleted, or the store failed: the device reconnects and is told.
                self.done = true;
            }
        }
    }
}

pub async fn events(
    State(state): State<AppState>,
    Path(env_id): Path<EnvironmentId>,
    headers: HeaderMap,
) -> Result<Response, DeviceError> {
    let now = state.now();
    super::environment(&state, &env_id).await?;
    let device = auth::authenticate(&state, &env_id, &headers, now).await?;
    let resume_after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_event_id);
    let wake = state
        .store
        .subscribe(&WakeKey::user(&env_id, &device.user_id));
    let feed = Feed {
        state,
        device,
        wake,
        sent: HashSet::new(),
        resume_after,
        queue: VecDeque::new(),
        started: false,
        done: false,
        correlation_id: crate::correlation::current().to_string(),
    };
    let stream = futures_util::stream::unfold(feed, Feed::next);
    let keep_alive = KeepAlive::new()
        .interval(Duration::from_secs(KEEP_ALIVE_SECS.unsigned_abs()))
        .text("keep-alive");
    Ok(Sse::new(stream).keep_alive(keep_alive).into_response())
}
