//! `assent device listen`: long-polls, shows each request once, asks on standard input,
//! decides; and how a request and its time left are shown.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use super::enrolled::{Decision, Device, Refused, auth_req_id};
use crate::cli::table::{cell, key_values};
use crate::cli::{note, out, outln};

/// `wait` of `listen`'s long poll: the most the server holds an answer.
const LONG_POLL_SECS: u64 = 60;
/// `listen` polls again no sooner than this after an answer with nothing new in it, so a
/// request that stays pending (or a server that does not hold the answer) is not a busy loop.
const MIN_POLL_GAP: Duration = Duration::from_secs(2);

/// `listen`: long-polls, shows each request once, asks, decides. Returns at the end of
/// `input` (also while waiting for requests), and with `once` after the first decision (whose
/// failure is then the error). On a terminal (`interactive`), what was typed while no question
/// was asked is discarded, so a stray `y` cannot approve a request not yet shown; piped answers
/// are used in order and echoed after each prompt.
pub(super) async fn listen<R: AsyncBufRead + Unpin>(
    device: &Device,
    input: &mut R,
    interactive: bool,
    once: bool,
) -> Result<()> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut shown = 0u64;
    loop {
        let started = Instant::now();
        let Some(pending) = poll_unless_input_ends(device, input).await? else {
            return Ok(());
        };
        // A request no longer listed is decided or expired for good: forget it.
        seen.retain(|id| pending.iter().any(|r| auth_req_id(r) == Some(id.as_str())));
        let mut new = false;
        for request in &pending {
            let Some(id) = auth_req_id(request) else {
                continue;
            };
            if !seen.insert(id.to_owned()) {
                continue;
            }
            new = true;
            if shown > 0 {
                out("\n")?;
            }
            shown += 1;
            out(&describe_request(request, OffsetDateTime::now_utc()))?;
            if interactive {
                discard_typed_ahead(input).await?;
            }
            let Some(decision) = ask(input, !interactive).await? else {
                return Ok(());
            };
            match device.decide(request, decision).await {
                Ok(()) => outln(&format!("{} {id}", decision.done()))?,
                Err(e) if once => return Err(e),
                Err(e) if e.downcast_ref::<Refused>().is_some() => note(&format!("error: {e:#}")),
                Err(e) => return Err(e),
            }
            if once {
                return Ok(());
            }
        }
        let elapsed = started.elapsed();
        if !new && elapsed < MIN_POLL_GAP {
            tokio::time::sleep(MIN_POLL_GAP - elapsed).await;
        }
    }
}

/// One long poll, given up (`None`) when `input` ends first. Input that arrives meanwhile is
/// only looked at (`fill_buf`), not consumed.
async fn poll_unless_input_ends<R: AsyncBufRead + Unpin>(
    device: &Device,
    input: &mut R,
) -> Result<Option<Vec<Value>>> {
    let poll = device.pending(LONG_POLL_SECS);
    tokio::pin!(poll);
    let mut watch_input = true;
    loop {
        tokio::select! {
            pending = &mut poll => return pending.map(Some),
            more = input.fill_buf(), if watch_input => {
                let more = more.context("cannot read standard input")?;
                if more.is_empty() {
                    return Ok(None);
                }
                watch_input = false;
            }
        }
    }
}

/// Drops what is already buffered from `input`, without waiting for more.
async fn discard_typed_ahead<R: AsyncBufRead + Unpin>(input: &mut R) -> Result<()> {
    let buffered = tokio::time::timeout(Duration::ZERO, input.fill_buf()).await;
    if let Ok(Ok(buf)) = buffered {
        let n = buf.len();
        input.consume(n);
    }
    Ok(())
}

/// Asks `Approve? [y/n] ` until the answer is y or n (yes / no, any case); `None` at the end
/// of the input. With `echo` (input not a terminal) the answer read is shown after the prompt.
async fn ask<R: AsyncBufRead + Unpin>(input: &mut R, echo: bool) -> Result<Option<Decision>> {
    loop {
        out("Approve? [y/n] ")?;
        let mut line = String::new();
        let read = input
            .read_line(&mut line)
            .await
            .context("cannot read the answer from standard input")?;
        if read == 0 {
            outln("")?;
            return Ok(None);
        }
        if echo {
            outln(line.trim_end_matches(['\n', '\r']))?;
        }
        if let Some(d) = parse_answer(&line) {
            return Ok(Some(d));
        }
    }
}

fn parse_answer(line: &str) -> Option<Decision> {
    match line.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Some(Decision::Approve),
        "n" | "no" => Some(Decision::Deny),
        _ => None,
    }
}

/// What `listen` shows of a request before asking.
fn describe_request(r: &Value, now: OffsetDateTime) -> String {
    let plain = |s: String| -> String {
        s.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    };
    key_values(&[
        ("request", plain(cell(r, "authReqId"))),
        ("application", plain(cell(r, "applicationName"))),
        ("binding message", plain(cell(r, "bindingMessage"))),
        ("scope", plain(cell(r, "scope"))),
        ("acr values", plain(cell(r, "acrValues"))),
        (
            "authorization details",
            plain(cell(r, "authorizationDetails")),
        ),
        ("time left", time_left(r.get("expiresAt"), now)),
    ])
}

/// `1m 52s` until an RFC 3339 expiry, `expired` once past, `-` without one.
pub(super) fn time_left(expires_at: Option<&Value>, now: OffsetDateTime) -> String {
    let Some(text) = expires_at.and_then(Value::as_str) else {
        return "-".to_owned();
    };
    let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) else {
        return text.to_owned();
    };
    let secs = (at - now).whole_seconds();
    match secs {
        s if s <= 0 => "expired".to_owned(),
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {}s", s / 60, s % 60),
        s => format!("{}h {}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn answers_are_y_or_n_and_the_end_of_input_stops() {
        let mut input: &[u8] = b"maybe\n\nY\n";
        assert_eq!(
            ask(&mut input, false).await.unwrap(),
            Some(Decision::Approve)
        );
        let mut input: &[u8] = b"no\r\n";
        assert_eq!(ask(&mut input, true).await.unwrap(), Some(Decision::Deny));
        let mut input: &[u8] = b"n";
        assert_eq!(ask(&mut input, false).await.unwrap(), Some(Decision::Deny));
        let mut input: &[u8] = b"what\n";
        assert_eq!(ask(&mut input, false).await.unwrap(), None);
        let mut input: &[u8] = b"";
        assert_eq!(ask(&mut input, false).await.unwrap(), None);
    }

    #[test]
    fn time_left_and_what_listen_shows() {
        let now = OffsetDateTime::parse("2026-01-01T10:00:00Z", &Rfc3339).unwrap();
        let left = |s: &str| time_left(Some(&json!(s)), now);
        assert_eq!(left("2026-01-01T10:01:52.500Z"), "1m 52s");
        assert_eq!(left("2026-01-01T10:00:09Z"), "9s");
        assert_eq!(left("2026-01-01T12:30:00Z"), "2h 30m");
        assert_eq!(left("2026-01-01T09:59:59Z"), "expired");
        assert_eq!(left("soon"), "soon");
        assert_eq!(time_left(None, now), "-");

        let r = json!({"authReqId": "r1", "applicationName": "Pump\u{1b}[2J", "bindingMessage": "A\nB",
            "scope": "openid email", "acrValues": null, "authorizationDetails": [{"type": "payment"}],
            "expiresAt": "2026-01-01T10:02:00Z"});
        let text = describe_request(&r, now);
        assert!(text.contains("application:           Pump [2J\n"), "{text}");
        assert!(text.contains("binding message:       A B\n"), "{text}");
        assert!(text.contains("acr values:            -\n"), "{text}");
        assert!(
            text.contains("authorization details: {\"type\":\"payment\"}\n"),
            "{text}"
        );
        assert!(text.contains("time left:             2m 0s\n"), "{text}");
    }
}
