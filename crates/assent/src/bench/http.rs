//! The load side's HTTP client: one HTTP/1.1 keep-alive connection per worker (hyper's
//! connection API, no pool), form-encoded POSTs, and the kinds of failure a summary counts.
//! Plain `http://` only: TLS would add the generator's cost to what is measured.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use hyper::body::{Body, Incoming};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Url;
use tokio::net::TcpStream;

/// A request that has no answer after this long counts as a `timeout` error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const FORM: HeaderValue = HeaderValue::from_static("application/x-www-form-urlencoded");

/// What a form value or a Basic credential keeps unencoded: RFC 3986 unreserved characters.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes a form value (or a client id / secret for Basic, RFC 6749 §2.3.1).
pub fn encode(value: &str) -> String {
    utf8_percent_encode(value, UNRESERVED).to_string()
}

/// `Authorization: Basic …` for CLIENT_SECRET_BASIC.
pub fn basic_auth(client_id: &str, secret: &str) -> Result<HeaderValue> {
    use base64::Engine;
    let pair = format!("{}:{}", encode(client_id), encode(secret));
    let text = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    );
    let mut value = HeaderValue::from_str(&text).context("the client credentials")?;
    value.set_sensitive(true);
    Ok(value)
}

/// Refuses anything but `http://`.
pub fn check_scheme(server: &Url) -> Result<()> {
    if server.scheme() != "http" {
        bail!(
            "assent bench speaks plain HTTP/1.1 only (TLS would add its own cost to the \
             measurement): run it on the server's machine against an http:// address"
        );
    }
    Ok(())
}

/// Where the load goes: one socket address (resolved once), the `Host` header and the path
/// prefix of `--server`.
#[derive(Debug)]
pub struct Endpoint {
    addr: SocketAddr,
    host: HeaderValue,
    prefix: String,
}

impl Endpoint {
    /// Resolves `server` and picks the first address that accepts a connection. With
    /// `loopback_only`, a name that resolves to anything but loopback addresses is refused.
    pub async fn resolve(server: &Url, loopback_only: bool) -> Result<Endpoint> {
        check_scheme(server)?;
        let host_str = server.host_str().context("--server has no host")?;
        let authority = match server.port() {
            Some(port) => format!("{host_str}:{port}"),
            None => host_str.to_owned(),
        };
        let host = host_str
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = server.port_or_known_default().unwrap_or(80);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .with_context(|| format!("cannot resolve {host}"))?
            .collect();
        if loopback_only && addrs.iter().any(|a| !a.ip().is_loopback()) {
            bail!("{host} resolves to an address that is not loopback; name it with --server");
        }
        let mut last_error = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(_) => {
                    return Ok(Endpoint {
                        addr,
                        host: HeaderValue::from_str(&authority)
                            .context("the server's host name")?,
                        prefix: server.path().trim_end_matches('/').to_owned(),
                    });
                }
                Err(e) => last_error = Some(e),
            }
        }
        match last_error {
            Some(e) => bail!("cannot reach the Assent server at {server}: {e}"),
            None => bail!("{host} resolves to no address"),
        }
    }

    /// An endpoint of a server this process runs itself (the ceiling's responder).
    pub fn local(addr: SocketAddr) -> Result<Endpoint> {
        Ok(Endpoint {
            addr,
            host: HeaderValue::from_str(&addr.to_string()).context("the responder's address")?,
            prefix: String::new(),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `<prefix><path>` as a request target.
    pub fn uri(&self, path: &str) -> Result<Uri> {
        format!("{}{path}", self.prefix)
            .parse()
            .with_context(|| format!("{path} is not a valid request path"))
    }
}

/// An answer: the status and the whole body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

/// One worker's connection, opened on first use and reopened after the server closes it.
pub struct Connection {
    endpoint: Arc<Endpoint>,
    sender: Option<SendRequest<String>>,
}

impl Connection {
    pub fn new(endpoint: Arc<Endpoint>) -> Connection {
        Connection {
            endpoint,
            sender: None,
        }
    }

    /// POSTs a form; `Err` is the kind of failure (`connection refused`, `timeout`, …).
    pub async fn post(
        &mut self,
        uri: &Uri,
        auth: &HeaderValue,
        form: String,
    ) -> Result<Answer, String> {
        let mut request = Request::new(form);
        *request.method_mut() = Method::POST;
        *request.uri_mut() = uri.clone();
        let headers = request.headers_mut();
        headers.insert(HOST, self.endpoint.host.clone());
        headers.insert(CONTENT_TYPE, FORM);
        headers.insert(AUTHORIZATION, auth.clone());
        match tokio::time::timeout(REQUEST_TIMEOUT, self.send(request)).await {
            Ok(answer) => answer,
            Err(_) => {
                self.sender = None;
                Err("timeout".to_owned())
            }
        }
    }

    async fn send(&mut self, request: Request<String>) -> Result<Answer, String> {
        let sender = self.ready().await?;
        let result = async {
            let response = sender.send_request(request).await?;
            let status = response.status();
            let body = read_body(response.into_body()).await?;
            Ok::<_, hyper::Error>(Answer { status, body })
        }
        .await;
        result.map_err(|e| {
            self.sender = None;
            transport_kind(&e)
        })
    }

    /// The open connection, or a new one when there is none or the server closed it (an idle
    /// keep-alive connection the server ended is not an error).
    async fn ready(&mut self) -> Result<&mut SendRequest<String>, String> {
        if let Some(mut sender) = self.sender.take()
            && sender.ready().await.is_ok()
        {
            return Ok(self.sender.insert(sender));
        }
        let stream = TcpStream::connect(self.endpoint.addr)
            .await
            .map_err(|e| io_kind(&e))?;
        stream.set_nodelay(true).map_err(|e| io_kind(&e))?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| transport_kind(&e))?;
        // The connection's driver; it ends when the sender is dropped or the peer closes.
        tokio::spawn(connection);
        Ok(self.sender.insert(sender))
    }
}

/// Reads a whole body (the answers here are small).
pub(super) async fn read_body(mut body: Incoming) -> Result<Vec<u8>, hyper::Error> {
    let mut out = Vec::new();
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        if let Ok(data) = frame?.into_data() {
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

fn io_kind(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        std::io::ErrorKind::ConnectionReset => "connection reset".to_owned(),
        _ => format!("connection: {e}"),
    }
}

fn transport_kind(e: &hyper::Error) -> String {
    if e.is_incomplete_message() || e.is_canceled() || e.is_closed() {
        return "connection closed".to_owned();
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return io_kind(io);
        }
        source = s.source();
    }
    format!("http: {e}")
}

/// The kind of an unexpected answer: the OAuth `error` value when the body has one, else
/// `HTTP <status>`.
pub fn answer_kind(answer: &Answer) -> String {
    #[derive(serde::Deserialize)]
    struct OAuthError {
        error: String,
    }
    match serde_json::from_slice::<OAuthError>(&answer.body) {
        Ok(e) => e.error,
        Err(_) => format!("HTTP {}", answer.status.as_u16()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_and_basic_credentials_are_percent_encoded() {
        assert_eq!(encode("a-b.c_d~e"), "a-b.c_d~e");
        assert_eq!(
            encode("urn:openid:params:grant-type:ciba"),
            "urn%3Aopenid%3Aparams%3Agrant-type%3Aciba"
        );
        assert_eq!(encode("a b&c=d"), "a%20b%26c%3Dd");
        let header = basic_auth("client:1", "s/ecret").unwrap();
        assert!(header.is_sensitive());
        use base64::Engine;
        let encoded = header.to_str().unwrap().strip_prefix("Basic ").unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        assert_eq!(decoded, b"client%3A1:s%2Fecret");
    }

    #[test]
    fn unexpected_answers_are_named_by_their_oauth_error_or_status() {
        let answer = |status: u16, body: &str| Answer {
            status: StatusCode::from_u16(status).unwrap(),
            body: body.as_bytes().to_vec(),
        };
        assert_eq!(
            answer_kind(&answer(
                400,
                r#"{"error":"slow_down","error_description":"x"}"#
            )),
            "slow_down"
        );
        assert_eq!(answer_kind(&answer(500, "oops")), "HTTP 500");
        assert_eq!(answer_kind(&answer(429, "")), "HTTP 429");
    }

    #[tokio::test]
    async fn a_connection_is_reused_and_reopened_after_the_server_closes_it() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Answers two requests on its first connection, then closes it; answers one on the
        // next. Counts the connections it accepted.
        let server = tokio::spawn(async move {
            let mut accepted = 0;
            for answers in [2, 1] {
                let (mut stream, _) = listener.accept().await.unwrap();
                accepted += 1;
                let mut buf = vec![0u8; 4096];
                for _ in 0..answers {
                    let mut seen = Vec::new();
                    while !String::from_utf8_lossy(&seen).contains("\r\n\r\nx") {
                        let n = stream.read(&mut buf).await.unwrap();
                        assert!(n > 0, "client closed early");
                        seen.extend_from_slice(&buf[..n]);
                    }
                    let text = String::from_utf8_lossy(&seen).into_owned();
                    assert!(text.starts_with("POST /p HTTP/1.1\r\n"), "{text}");
                    assert!(
                        text.to_ascii_lowercase().contains("authorization: basic"),
                        "{text}"
                    );
                    stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await
                        .unwrap();
                }
                stream.shutdown().await.unwrap();
            }
            accepted
        });
        let endpoint = Arc::new(Endpoint::local(addr).unwrap());
        let uri = endpoint.uri("/p").unwrap();
        let auth = basic_auth("c", "s").unwrap();
        let mut conn = Connection::new(endpoint);
        for _ in 0..2 {
            let answer = conn.post(&uri, &auth, "x".into()).await.unwrap();
            assert_eq!(
                (answer.status.as_u16(), answer.body.as_slice()),
                (200, &b"ok"[..])
            );
        }
        // Give the closed connection's driver its chance to see the close, as an idle
        // worker's would; then the next request opens a new connection without an error.
        let mut tries = 0;
        loop {
            match conn.post(&uri, &auth, "x".into()).await {
                Ok(answer) => {
                    assert_eq!(answer.body, b"ok");
                    break;
                }
                Err(kind) => {
                    // The close raced the request: the one failure a keep-alive client can
                    // meet; the retry must succeed.
                    assert_eq!(kind, "connection closed");
                    tries += 1;
                    assert!(tries < 2, "reopening failed twice");
                }
            }
        }
        assert_eq!(server.await.unwrap(), 2);
    }
}
