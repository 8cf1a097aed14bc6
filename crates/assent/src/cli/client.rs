//! The HTTP side of the admin CLI: admin-token resolution, one shared `reqwest::Client`,
//! request helpers, management-API error rendering and list pagination.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Connection, Target};

/// Every request gives up after this long (unless built with [`Api::with_timeout`]).
const TIMEOUT: Duration = Duration::from_secs(30);
/// The largest page the server hands out (`limit` above this is rejected).
const MAX_PAGE: u32 = 1000;
/// A guard against a server whose `next` links never end.
const MAX_PAGES: usize = 100_000;
/// File name of the token `assent serve` writes into its data dir on first start.
pub const TOKEN_FILE: &str = "admin-token";

/// Where the admin token came from; shown in hints, never the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `--admin-token` or `ASSENT_ADMIN_TOKEN`.
    Option,
    /// `<data-dir>/admin-token`.
    File(PathBuf),
}

impl fmt::Display for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::Option => f.write_str("--admin-token / ASSENT_ADMIN_TOKEN"),
            TokenSource::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The admin token: the option when given (and not blank), else the trimmed contents of
/// `<data_dir>/admin-token`. Errors name the file looked at but never contain the token.
pub fn resolve_token(option: Option<&str>, data_dir: &Path) -> Result<(String, TokenSource)> {
    if let Some(t) = option.map(str::trim).filter(|t| !t.is_empty()) {
        check_token(t, &TokenSource::Option)?;
        return Ok((t.to_owned(), TokenSource::Option));
    }
    let path = data_dir.join(TOKEN_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "no admin token: --admin-token and ASSENT_ADMIN_TOKEN are not set, and {} does not \
             exist (`assent serve` writes it on first start; use --data-dir or ASSENT_DATA_DIR \
             to point at the server's data directory)",
            path.display()
        ),
        Err(e) => {
            return Err(anyhow!(e))
                .with_context(|| format!("cannot read the admin token from {}", path.display()));
        }
    };
    let token = text.trim();
    if token.is_empty() {
        bail!("the admin token file {} is empty", path.display());
    }
    let source = TokenSource::File(path);
    check_token(token, &source)?;
    Ok((token.to_owned(), source))
}

/// A bearer token must be visible ASCII to fit in an `Authorization` header.
fn check_token(token: &str, source: &TokenSource) -> Result<()> {
    if token.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        bail!("the admin token from {source} contains characters not allowed in an HTTP header")
    }
}

/// One `details` entry of a management-API error.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ErrorDetail {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

/// A non-2xx answer of the management API. `Display` is `<code>: <message>` followed by one
/// `  - <target>: <message>` line per detail (callers print it after `error: `).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub id: Option<String>,
    pub code: String,
    pub message: String,
    pub details: Vec<ErrorDetail>,
    pub hint: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    id: Option<String>,
    code: Option<String>,
    message: Option<String>,
    #[serde(default)]
    details: Vec<ErrorDetail>,
}

impl ApiError {
    /// Reads an error body; a body that is not the API's error shape still gives a useful
    /// message (`HTTP <status>: <start of the body>`).
    pub fn from_response(status: u16, body: &str) -> ApiError {
        let parsed = serde_json::from_str::<ErrorBody>(body)
            .ok()
            .filter(|b| b.code.is_some() || b.message.is_some());
        match parsed {
            Some(b) => ApiError {
                status,
                id: b.id,
                code: b.code.unwrap_or_else(|| format!("HTTP {status}")),
                message: b.message.unwrap_or_default(),
                details: b.details,
                hint: None,
            },
            None => {
                let reason = StatusCode::from_u16(status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("unexpected status");
                let text: String = body.trim().chars().take(200).collect();
                let message = if text.is_empty() {
                    reason.to_owned()
                } else {
                    format!("{reason}: {text}")
                };
                ApiError {
                    status,
                    id: None,
                    code: format!("HTTP {status}"),
                    message: message.split_whitespace().collect::<Vec<_>>().join(" "),
                    details: Vec::new(),
                    hint: None,
                }
            }
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        for d in &self.details {
            let target = d.target.as_deref().filter(|t| !t.is_empty());
            let message = d.message.as_deref().or(d.code.as_deref()).unwrap_or("");
            match target {
                Some(t) => write!(f, "\n  - {t}: {message}")?,
                None => write!(f, "\n  - {message}")?,
            }
        }
        if let Some(h) = &self.hint {
            write!(f, "\n  ({h})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// The management API of one server, reached with one client and one token.
pub struct Api {
    http: reqwest::Client,
    base: Url,
    token: String,
    token_source: TokenSource,
    /// How long one request may take before it is given up.
    timeout: Duration,
    /// `--json`: print the server's JSON instead of tables.
    pub json: bool,
}

impl fmt::Debug for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Api")
            .field("base", &self.base.as_str())
            .field("token", &"<redacted>")
            .field("token_source", &self.token_source)
            .field("json", &self.json)
            .finish()
    }
}

impl Api {
    pub fn new(conn: &Connection, target: &Target) -> Result<Api> {
        Api::with_timeout(conn, target, TIMEOUT)
    }

    /// [`Api::new`] whose requests may take up to `timeout` (deleting a large environment
    /// can take longer than the usual 30 s).
    pub fn with_timeout(conn: &Connection, target: &Target, timeout: Duration) -> Result<Api> {
        let base = parse_server(&target.server)?;
        let (token, token_source) = resolve_token(target.admin_token.as_deref(), &conn.data_dir())?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("assent-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot set up the HTTP client")?;
        Ok(Api {
            http,
            base,
            token,
            token_source,
            timeout,
            json: target.json,
        })
    }

    /// `<server>/v1/<segments…>`, each segment percent-encoded.
    pub fn url(&self, segments: &[&str]) -> Result<Url> {
        endpoint(&self.base, segments)
    }

    pub async fn get(&self, url: Url) -> Result<Value> {
        self.send(Method::GET, url, None)
            .await?
            .ok_or_else(|| anyhow!("the server sent an empty answer"))
    }

    pub async fn post(&self, url: Url, body: &Value) -> Result<Option<Value>> {
        self.send(Method::POST, url, Some(body)).await
    }

    /// A body-less POST (approve, deny, rotate-secret).
    pub async fn post_empty(&self, url: Url) -> Result<Option<Value>> {
        self.send(Method::POST, url, None).await
    }

    pub async fn delete(&self, url: Url) -> Result<()> {
        self.send(Method::DELETE, url, None).await.map(|_| ())
    }

    /// Sends one request; `Ok(None)` for a success without a body (204). Non-2xx answers
    /// become [`ApiError`]; transport failures name the server.
    pub async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<Option<Value>> {
        let mut req = self
            .http
            .request(method, url.clone())
            .bearer_auth(&self.token)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| self.transport_error(&e))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| self.transport_error(&e))?;
        if !status.is_success() {
            let mut err = ApiError::from_response(status.as_u16(), &text);
            if status == StatusCode::UNAUTHORIZED {
                err.hint = Some(format!(
                    "the admin token was taken from {}",
                    self.token_source
                ));
            }
            return Err(err.into());
        }
        if text.trim().is_empty() {
            return Ok(None);
        }
        serde_json::from_str(&text).map(Some).with_context(|| {
            format!(
                "the server answered {} {} with a body that is not JSON",
                status.as_u16(),
                url.path()
            )
        })
    }

    fn transport_error(&self, e: &reqwest::Error) -> anyhow::Error {
        let server = self.base.as_str().trim_end_matches('/');
        if e.is_timeout() {
            anyhow!(
                "the Assent server at {server} did not answer within {} s",
                self.timeout.as_secs()
            )
        } else if e.is_connect() || e.is_request() {
            anyhow!(
                "cannot reach the Assent server at {server}: {} (is `assent serve` running?)",
                root_cause(e)
            )
        } else {
            anyhow!(
                "talking to the Assent server at {server} failed: {}",
                root_cause(e)
            )
        }
    }

    /// Fetches a list, following `_links.next.href` until the last page, or until `limit`
    /// items are collected (then `limit` is also sent as the page size, capped by the server's).
    pub async fn list(&self, mut url: Url, resource: &str, limit: Option<u32>) -> Result<Listing> {
        if let Some(n) = limit {
            url.query_pairs_mut()
                .append_pair("limit", &n.min(MAX_PAGE).to_string());
        }
        let mut listing = Listing::default();
        for _ in 0..MAX_PAGES {
            let page = self.get(url.clone()).await?;
            if listing.count.is_none() {
                listing.count = page.get("count").and_then(Value::as_u64);
            }
            listing.items.extend(page_items(&page, resource)?);
            let wanted = limit.map(|n| n as usize);
            if let Some(n) = wanted.filter(|&n| listing.items.len() >= n) {
                listing.items.truncate(n);
                return Ok(listing);
            }
            match next_page_url(&self.base, &url, &page)? {
                Some(next) => url = next,
                None => return Ok(listing),
            }
        }
        bail!("the server's list of {resource} did not end after {MAX_PAGES} pages")
    }
}

/// The items of a list, gathered across pages.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Listing {
    pub items: Vec<Value>,
    /// The server's total (`count` of the first page), when it sent one.
    pub count: Option<u64>,
}

impl Listing {
    /// The gathered items in the server's list shape (without `_links`), for `--json`.
    pub fn to_json(&self, resource: &str) -> Value {
        let mut embedded = serde_json::Map::new();
        embedded.insert(resource.to_owned(), Value::Array(self.items.clone()));
        json!({
            "_embedded": embedded,
            "count": self.count.unwrap_or(self.items.len() as u64),
            "size": self.items.len(),
        })
    }
}

/// `--server` as a URL to build endpoints on.
pub fn parse_server(server: &str) -> Result<Url> {
    let url = Url::parse(server.trim())
        .with_context(|| format!("--server {server:?} is not a valid URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        bail!("--server {server:?} must be an http:// or https:// URL");
    }
    Ok(url)
}

/// `<base>/v1/<segments…>`: any path already in `base` is kept (a server behind a prefix),
/// its query and fragment dropped; each segment is percent-encoded.
pub fn endpoint(base: &Url, segments: &[&str]) -> Result<Url> {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    {
        let mut path = url
            .path_segments_mut()
            .map_err(|()| anyhow!("{base} cannot be used as a base URL"))?;
        path.pop_if_empty().push("v1");
        for s in segments {
            if s.is_empty() || *s == "." || *s == ".." {
                bail!("invalid id {s:?}");
            }
            path.push(s);
        }
    }
    Ok(url)
}

/// The items of one list page: `_embedded.<resource>`; a page without it is empty.
pub fn page_items(page: &Value, resource: &str) -> Result<Vec<Value>> {
    if !page.is_object() {
        bail!("the server's list of {resource} is not a JSON object");
    }
    match page.get("_embedded").and_then(|e| e.get(resource)) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => Ok(items.clone()),
        Some(_) => bail!("the server's _embedded.{resource} is not an array"),
    }
}

/// Where the next page is, from `_links.next.href` of the page fetched from `current`.
///
/// The server builds the link from its public URL, which may differ from `--server` (a proxy,
/// a container's published port). A link on the same origin as `--server` is followed as is;
/// any other is re-aimed at the current request with the link's query (its cursor), so the
/// admin token never goes to another origin. A link to the page just fetched is an error.
pub fn next_page_url(base: &Url, current: &Url, page: &Value) -> Result<Option<Url>> {
    let Some(href) = page
        .get("_links")
        .and_then(|l| l.get("next"))
        .and_then(|n| n.get("href"))
        .and_then(Value::as_str)
        .filter(|h| !h.trim().is_empty())
    else {
        return Ok(None);
    };
    let link = current
        .join(href.trim())
        .with_context(|| format!("the server's next-page link {href:?} is not a valid URL"))?;
    let next = if link.origin() == base.origin() {
        link
    } else {
        let mut n = current.clone();
        n.set_query(link.query());
        n
    };
    if &next == current {
        bail!("the server's next-page link points at the page just fetched ({next})");
    }
    Ok(Some(next))
}

/// The innermost cause of an error, which for connection failures is the useful part
/// ("Connection refused (os error 111)").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap_or_else(|e| panic!("bad test URL {s}: {e}"))
    }

    fn temp_dir(name: &str) -> PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "assent-cli-test-{name}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir: {e}"));
        dir
    }

    #[test]
    fn token_from_option_wins_and_blank_option_is_ignored() -> Result<()> {
        let dir = temp_dir("opt");
        std::fs::write(dir.join(TOKEN_FILE), "file-token\n")?;
        let (t, s) = resolve_token(Some(" opt-token "), &dir)?;
        assert_eq!((t.as_str(), s), ("opt-token", TokenSource::Option));
        let (t, s) = resolve_token(Some("  "), &dir)?;
        assert_eq!(t, "file-token");
        assert_eq!(s, TokenSource::File(dir.join(TOKEN_FILE)));
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn token_file_missing_or_empty_says_where_it_looked() -> Result<()> {
        let dir = temp_dir("missing");
        let err = resolve_token(None, &dir).err().map(|e| format!("{e:#}"));
        let err = err.unwrap_or_default();
        assert!(
            err.contains(&dir.join(TOKEN_FILE).display().to_string()),
            "{err}"
        );
        assert!(err.contains("--admin-token"), "{err}");

        std::fs::write(dir.join(TOKEN_FILE), " \n")?;
        let err = resolve_token(None, &dir).err().map(|e| format!("{e:#}"));
        assert!(err.unwrap_or_default().contains("is empty"));

        std::fs::write(dir.join(TOKEN_FILE), "se cret\n")?;
        let err = resolve_token(None, &dir).err().map(|e| format!("{e:#}"));
        let err = err.unwrap_or_default();
        assert!(err.contains("not allowed"), "{err}");
        assert!(!err.contains("se cret"), "token leaked: {err}");
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn api_error_formats_code_message_and_details() {
        let body = r#"{"id":"e1","code":"INVALID_DATA","message":"The request could not be completed.",
            "details":[{"code":"INVALID_VALUE","target":"name","message":"name is required."},
                       {"code":"INVALID_VALUE","message":"something else"}]}"#;
        let e = ApiError::from_response(400, body);
        assert_eq!(e.id.as_deref(), Some("e1"));
        assert_eq!(
            e.to_string(),
            "INVALID_DATA: The request could not be completed.\n  - name: name is required.\n  - something else"
        );
        let e = ApiError::from_response(404, r#"{"code":"NOT_FOUND","message":"Gone."}"#);
        assert_eq!(e.to_string(), "NOT_FOUND: Gone.");
    }

    #[test]
    fn api_error_from_a_body_that_is_not_the_error_shape() {
        let e = ApiError::from_response(502, "<html>\nBad gateway\n</html>");
        assert_eq!(
            e.to_string(),
            "HTTP 502: Bad Gateway: <html> Bad gateway </html>"
        );
        let e = ApiError::from_response(401, "");
        assert_eq!(e.to_string(), "HTTP 401: Unauthorized");
        let mut e = ApiError::from_response(401, r#"{"code":"INVALID_TOKEN","message":"No."}"#);
        e.hint = Some("the admin token was taken from x".into());
        assert_eq!(
            e.to_string(),
            "INVALID_TOKEN: No.\n  (the admin token was taken from x)"
        );
    }

    #[test]
    fn endpoints_keep_a_prefix_and_encode_ids() -> Result<()> {
        let base = parse_server("http://127.0.0.1:8080")?;
        assert_eq!(
            endpoint(&base, &["environments", "e 1", "users"])?.as_str(),
            "http://127.0.0.1:8080/v1/environments/e%201/users"
        );
        let base = parse_server("https://x.example/assent/?q=1")?;
        assert_eq!(
            endpoint(&base, &["environments", "a/b"])?.as_str(),
            "https://x.example/assent/v1/environments/a%2Fb"
        );
        assert!(endpoint(&base, &["environments", ".."]).is_err());
        assert!(endpoint(&base, &["environments", ""]).is_err());
        assert!(parse_server("ftp://x").is_err());
        assert!(parse_server("localhost:8080").is_err());
        Ok(())
    }

    #[test]
    fn page_items_reads_embedded() -> Result<()> {
        let page =
            json!({"_embedded": {"users": [{"id": "1"}, {"id": "2"}]}, "count": 2, "size": 2});
        assert_eq!(page_items(&page, "users")?.len(), 2);
        assert!(page_items(&json!({"count": 0, "size": 0}), "users")?.is_empty());
        assert!(page_items(&json!({"_embedded": {"users": {}}}), "users").is_err());
        assert!(page_items(&json!([]), "users").is_err());
        Ok(())
    }

    #[test]
    fn next_link_followed_on_same_origin() -> Result<()> {
        let base = url("http://127.0.0.1:8080");
        let cur = url("http://127.0.0.1:8080/v1/environments?limit=2");
        let page = json!({"_links": {"next": {"href": "http://127.0.0.1:8080/v1/environments?limit=2&cursor=abc%3A1"}}});
        let next = next_page_url(&base, &cur, &page)?;
        assert_eq!(
            next.map(String::from).as_deref(),
            Some("http://127.0.0.1:8080/v1/environments?limit=2&cursor=abc%3A1")
        );
        Ok(())
    }

    #[test]
    fn next_link_on_another_origin_is_reaimed_at_the_server() -> Result<()> {
        let base = url("http://127.0.0.1:8080");
        let cur = url("http://127.0.0.1:8080/v1/environments/E/users?filter=x");
        let page = json!({"_links": {"next": {"href": "https://login.example.com/v1/environments/E/users?filter=x&limit=100&cursor=c2"}}});
        let next = next_page_url(&base, &cur, &page)?;
        assert_eq!(
            next.map(String::from).as_deref(),
            Some("http://127.0.0.1:8080/v1/environments/E/users?filter=x&limit=100&cursor=c2")
        );
        Ok(())
    }

    #[test]
    fn last_page_and_loops() -> Result<()> {
        let base = url("http://h:1");
        let cur = url("http://h:1/v1/environments?cursor=a");
        let none = [
            json!({"_links": {"self": {"href": "http://h:1/v1/environments"}}}),
            json!({}),
            json!({"_links": {"next": {"href": ""}}}),
            json!({"_links": {"next": null}}),
        ];
        for page in none {
            assert_eq!(next_page_url(&base, &cur, &page)?, None);
        }
        let same = json!({"_links": {"next": {"href": "http://h:1/v1/environments?cursor=a"}}});
        assert!(next_page_url(&base, &cur, &same).is_err());
        Ok(())
    }

    #[test]
    fn listing_json_keeps_the_list_shape() {
        let l = Listing {
            items: vec![json!({"id": "1"})],
            count: Some(7),
        };
        assert_eq!(
            l.to_json("users"),
            json!({"_embedded": {"users": [{"id": "1"}]}, "count": 7, "size": 1})
        );
    }
}
