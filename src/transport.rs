//! The HTTP transport: one thin adapter over ureq. Everything it reports names the URL without
//! credentials; the token travels only in the Authorization header.
use std::io::Read;
use std::time::Duration;

use serde_json::Value;
use ureq::tls::{Certificate, RootCerts, TlsConfig};

use crate::bail;
use crate::engine::excerpt;
use crate::error::{Cause, Error, Result};
use crate::settings::{is_secret_header, redact_url, url_userinfo, Settings};

pub struct Http {
    agent: ureq::Agent,
    headers: Vec<(String, String)>,
    /// What no error may quote: the token, the values of headers that look secret, the
    /// credentials of the URLs. Longest first, none empty.
    secrets: Vec<String>,
    debug_level: u64,
    max_response_bytes: u64,
    /// Where the URLs came from, for errors that say what to change: `server_url` (without a
    /// trailing '/'), the effective `push_url` and `pull_url`, and whether a token is set.
    origin: Origin,
}

#[derive(Default)]
struct Origin {
    server_url: Option<String>,
    push_url: Option<String>,
    pull_url: Option<String>,
    has_token: bool,
}

/// The setting a request URL comes from: `server_url` with a route appended, or a URL set
/// whole (`push_url`, `pull_url`).
enum Source {
    Server { route: &'static str },
    Whole { key: &'static str },
    Unknown,
}

/// Sent as `X-Tether-Client-Version`.
pub const CLIENT_VERSION: &str = concat!("tether-sqlite/", env!("CARGO_PKG_VERSION"));

fn roots(ca_file: Option<&str>) -> Result<RootCerts> {
    let Some(path) = ca_file else {
        return Ok(RootCerts::WebPki);
    };
    let pem = std::fs::read(path)
        .map_err(|e| Error::new(format!("ca_file {path:?} cannot be read: {e}")))?;
    let mut certs: Vec<Certificate<'static>> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .map(|c| Certificate::from_der(c.as_ref()).to_owned())
        .collect();
    let mut added = 0;
    for item in ureq::tls::parse_pem(&pem) {
        if let Ok(ureq::tls::PemItem::Certificate(cert)) = item {
            certs.push(cert);
            added += 1;
        }
    }
    if added == 0 {
        bail!("ca_file {path:?} holds no PEM certificate");
    }
    Ok(RootCerts::new_with_certs(&certs))
}

impl Http {
    pub fn new(settings: &Settings) -> Result<Http> {
        let timeout = Duration::from_millis(settings.number("timeout_ms").max(1));
        let tls = TlsConfig::builder()
            .root_certs(roots(settings.get("ca_file"))?)
            .build();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            // A redirect is answered with an error, never followed: following turns a POST
            // into a GET and could carry the Authorization and custom headers to another host.
            .max_redirects(0)
            .timeout_global(Some(timeout))
            .tls_config(tls)
            .user_agent(CLIENT_VERSION)
            .build()
            .into();
        let mut secrets = Vec::new();
        let mut headers = vec![
            ("Content-Type".to_string(), "application/json".to_string()),
            ("Accept".to_string(), "application/json".to_string()),
            (
                "X-Tether-Client-Version".to_string(),
                CLIENT_VERSION.to_string(),
            ),
        ];
        if let Some(Value::Object(extra)) = settings
            .get("headers")
            .and_then(|h| serde_json::from_str(h).ok())
        {
            for (name, value) in extra {
                let value = value.as_str().unwrap_or_default().to_string();
                if is_secret_header(&name) {
                    secrets.push(value.clone());
                }
                headers.push((name, value));
            }
        }
        if let Some(token) = settings.get("auth_token") {
            secrets.push(token.to_string());
            headers.push(("Authorization".to_string(), format!("Bearer {token}")));
        }
        for name in ["server_url", "push_url", "pull_url"] {
            if let Some(userinfo) = settings.get(name).and_then(url_userinfo) {
                secrets.push(userinfo.to_string());
                if let Some((_, password)) = userinfo.split_once(':') {
                    secrets.push(password.to_string());
                }
            }
        }
        Ok(Http {
            agent,
            headers,
            secrets: spellings(secrets),
            debug_level: settings.number("debug_level"),
            max_response_bytes: settings.number("max_response_bytes").max(1),
            origin: Origin {
                server_url: settings
                    .get("server_url")
                    .map(|u| u.trim_end_matches('/').to_string()),
                push_url: settings.get("push_url").map(str::to_string),
                pull_url: settings.get("pull_url").map(str::to_string),
                has_token: settings.get("auth_token").is_some(),
            },
        })
    }

    /// POSTs `body` and returns the answer's text, decoded (gzip) and at most
    /// `max_response_bytes` long. Any status ≥ 300 is an error with `Cause::Http(status)`
    /// (redirects are never followed); a longer answer is `Cause::TooLarge`; no answer at all, or
    /// an encoding tether cannot decode, is an error naming the URL and the cause. No error
    /// quotes a secret (see `scrub`); the answer returned is the server's, untouched.
    pub fn post(&self, url: &str, body: &str) -> Result<String> {
        let shown = redact_url(url);
        let started = std::time::Instant::now();
        let answer = self
            .exchange(url, &shown, body)
            .map_err(|e| self.scrub_error(e));
        if self.debug_level >= 2 {
            let ms = started.elapsed().as_secs_f64() * 1e3;
            match &answer {
                Ok(text) => eprintln!(
                    "[TETHER] POST {shown}: {} bytes out, {} bytes back, {ms:.0} ms",
                    body.len(),
                    text.len()
                ),
                Err(e) => eprintln!("[TETHER] POST {shown}: {e} ({ms:.0} ms)"),
            }
        }
        if self.debug_level >= 3 {
            eprintln!("[TETHER]   request: {}", excerpt(&self.scrub(body)));
            if let Ok(text) = &answer {
                eprintln!("[TETHER]   answer: {}", excerpt(&self.scrub(text)));
            }
        }
        answer
    }

    fn exchange(&self, url: &str, shown: &str, body: &str) -> Result<String> {
        let mut request = self.agent.post(url);
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let mut response = request.send(body).map_err(|e| {
            let cause = describe(&e);
            Error::new(format!(
                "POST {shown} failed: {cause}{}",
                self.send_hint(url, &cause)
            ))
        })?;
        let status = response.status().as_u16();
        if (300..400).contains(&status) && !REDIRECTS.contains(&status) {
            // 304 Not Modified and the rest: no redirect, no address to go to.
            return Err(Error::with_cause(
                format!("POST {shown} answered HTTP {status}, which a POST never expects"),
                Cause::Http(status),
            ));
        }
        if REDIRECTS.contains(&status) {
            let target = match response.headers().get("location").map(|l| l.to_str()) {
                Some(Ok(location)) => {
                    shorten(&self.scrub(&redact_url(&resolve(url, location.trim()))))
                }
                Some(Err(_)) => "an unreadable Location".to_string(),
                None => "nowhere (no Location header)".to_string(),
            };
            return Err(Error::with_cause(
                format!(
                    "POST {shown} answered HTTP {status} redirecting to {target}; set server_url to \
                     the final address (tether does not follow redirects: they turn POST into GET \
                     and could carry credentials to another host)"
                ),
                Cause::Http(status),
            ));
        }
        // ureq decodes gzip itself and then drops the header; any coding still named here
        // (deflate, br, an unusual spelling) reached us undecoded.
        let encoding = response
            .headers()
            .get("content-encoding")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string())
            .filter(|v| !v.is_empty() && !v.eq_ignore_ascii_case("identity"));
        if status >= 400 {
            let text = match &encoding {
                Some(coding) => format!("(a body in Content-Encoding {coding:?})"),
                None => {
                    let start = prefix(response.body_mut().as_reader(), ERROR_EXCERPT_BYTES);
                    // Scrubbed before the excerpt cuts it, so no secret is cut in half.
                    excerpt(&self.scrub(&String::from_utf8_lossy(&start)))
                }
            };
            return Err(Error::with_cause(
                format!(
                    "POST {shown} answered HTTP {status}: {text}{}",
                    self.status_hint(url, status)
                ),
                Cause::Http(status),
            ));
        }
        if let Some(coding) = encoding {
            bail!(
                "POST {shown}: HTTP {status}, the answer has Content-Encoding {coding:?}, which \
                 tether cannot decode (it asks for gzip or no encoding)"
            );
        }
        let too_large = || {
            Error::with_cause(
                format!(
                    "POST {shown}: the answer is larger than max_response_bytes ({} bytes); raise \
                     it with tether_config('max_response_bytes', …)",
                    self.max_response_bytes
                ),
                Cause::TooLarge,
            )
        };
        // The declared length (absent when ureq decompresses) refuses a large answer before
        // reading it; the count below holds for every answer, decoded or not.
        let declared = response.body().content_length();
        if declared.is_some_and(|n| n > self.max_response_bytes) {
            return Err(too_large());
        }
        let reader = response.body_mut().as_reader();
        let bytes = read_at_most(reader, self.max_response_bytes, declared)
            .map_err(|e| {
                Error::new(format!(
                    "POST {shown}: HTTP {status}, reading the answer failed: {}",
                    describe_io(e)
                ))
            })?
            .ok_or_else(too_large)?;
        String::from_utf8(bytes).map_err(|_| {
            Error::new(format!(
                "POST {shown}: HTTP {status}, the answer is not UTF-8 text"
            ))
        })
    }
}

impl Http {
    /// Which setting `url` comes from.
    fn source(&self, url: &str) -> Source {
        let origin = &self.origin;
        if let Some(server) = &origin.server_url {
            for route in ["/tether/push", "/tether/pull"] {
                if url == format!("{server}{route}") {
                    return Source::Server { route };
                }
            }
        }
        if origin.push_url.as_deref() == Some(url) {
            Source::Whole { key: "push_url" }
        } else if origin.pull_url.as_deref() == Some(url) {
            Source::Whole { key: "pull_url" }
        } else {
            Source::Unknown
        }
    }

    /// What to do about an answer with an error status, said after the answer's excerpt; empty
    /// when there is nothing better to say than the status. Names settings and shows URLs
    /// without credentials, never a secret.
    fn status_hint(&self, url: &str, status: u16) -> String {
        let set_token = "set it with SELECT tether_config('auth_token', 'TOKEN') or the \
                         environment variable TETHER_AUTH_TOKEN";
        match status {
            401 if self.origin.has_token => format!(
                "; the server refused the auth_token sent (as an `Authorization: Bearer` \
                 header): check the token, and {set_token}"
            ),
            401 => format!("; the server wants a token and no auth_token is set: {set_token}"),
            403 if self.origin.has_token => format!(
                "; the server refused access with the auth_token sent: check that the token is \
                 the one for this server and allowed to sync, and {set_token}"
            ),
            403 => format!("; the server refused access and no auth_token is set: {set_token}"),
            404 | 405 => {
                let tried = self.scrub(&redact_url(url));
                match self.source(url) {
                    Source::Server { route } => {
                        let server = self.origin.server_url.as_deref().unwrap_or_default();
                        // A server_url that already ends with a route: the same without it.
                        let fixed = ["/tether/push", "/tether/pull", "/tether"]
                            .iter()
                            .find_map(|tail| server.strip_suffix(tail))
                            .filter(|s| s.contains("://"))
                            .map(|s| self.scrub(&redact_url(s)))
                            .unwrap_or_else(|| "https://your-server.example".to_string());
                        format!(
                            "; no Tether route there: tether appends {route} to server_url \
                             ({}), so the URL tried was {tried}; set server_url to the address \
                             the Tether routes live under, without /tether/push or \
                             /tether/pull: SELECT tether_config('server_url', '{fixed}')",
                            self.scrub(&redact_url(server))
                        )
                    }
                    Source::Whole { key } => format!(
                        "; no Tether route there: the URL tried was {tried}, set whole by {key}; \
                         check {key}, or remove it (SELECT tether_config('{key}', NULL)) to use \
                         server_url with {} appended",
                        if key == "push_url" {
                            "/tether/push"
                        } else {
                            "/tether/pull"
                        }
                    ),
                    Source::Unknown => format!("; no Tether route there (URL tried: {tried})"),
                }
            }
            _ => String::new(),
        }
    }

    /// What to do when no answer came, said after the cause; empty when the cause says it.
    fn send_hint(&self, url: &str, cause: &str) -> String {
        // rustls's words for a first answer that is not a TLS record: plain HTTP, most often.
        let plain_answer =
            cause.contains("InvalidContentType") || cause.contains("received corrupt message");
        if !(plain_answer && url.starts_with("https://")) {
            return String::new();
        }
        let (key, value) = match self.source(url) {
            Source::Server { .. } => (
                "server_url",
                self.origin.server_url.clone().unwrap_or_default(),
            ),
            Source::Whole { key } => (key, url.to_string()),
            Source::Unknown => ("server_url", url.to_string()),
        };
        let plain = format!(
            "http://{}",
            value.strip_prefix("https://").unwrap_or(&value)
        );
        format!(
            " — the server seems to speak plain HTTP, not HTTPS: if it has no TLS, use an \
             http:// URL: SELECT tether_config('{key}', '{}')",
            self.scrub(&redact_url(&plain))
        )
    }

    /// `text` with every secret replaced by `***`: as it is, with '/' escaped as JSON encoders
    /// often do, and as `excerpt` escapes each of those; a secret that an excerpt cut short
    /// (its start just before the closing `…`) goes too. Auth layers quote what they refused.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), HIDDEN);
            }
        }
        for secret in &self.secrets {
            out = scrub_cut(&out, secret);
        }
        out
    }

    /// The same error with its message scrubbed (see `scrub`).
    pub(crate) fn scrub_error(&self, error: Error) -> Error {
        let message = self.scrub(error.message());
        if message == error.message() {
            return error;
        }
        Error::with_cause(message, error.cause())
    }
}

/// The statuses that redirect; any other 3xx is an answer a POST never expects.
const REDIRECTS: [u16; 5] = [301, 302, 303, 307, 308];

/// Shown in place of a secret.
const HIDDEN: &str = "***";

/// Shortest start of a secret hidden when an excerpt's cut leaves it at the end: fewer leading
/// characters tell nothing, and hiding them would make excerpts unreadable.
const CUT_SECRET_MIN: usize = 4;

/// Every spelling of each secret an error may hold, longest first (so that a secret holding
/// another goes whole), without empty ones or repeats.
fn spellings(secrets: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for secret in secrets.into_iter().filter(|s| !s.is_empty()) {
        let json_escaped = secret.replace('/', "\\/");
        for form in [secret, json_escaped] {
            let debug = format!("{form:?}");
            let debug = debug[1..debug.len() - 1].to_string();
            out.push(form);
            out.push(debug);
        }
    }
    out.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    out.dedup();
    out
}

/// `text` without the start of `secret` left just before an excerpt's `…` (or its `"…`).
fn scrub_cut(text: &str, secret: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('…') {
        let before = &rest[..at];
        let (head, quote) = match before.strip_suffix('"') {
            Some(head) => (head, "\""),
            None => (before, ""),
        };
        let cut = secret
            .char_indices()
            .map(|(i, _)| i)
            .chain([secret.len()])
            .filter(|&i| i >= CUT_SECRET_MIN && i < secret.len())
            .rev()
            .find(|&i| head.ends_with(&secret[..i]));
        match cut {
            Some(i) => {
                out.push_str(&head[..head.len() - i]);
                out.push_str(HIDDEN);
                out.push_str(quote);
            }
            None => out.push_str(before),
        }
        out.push('…');
        rest = &rest[at + '…'.len_utf8()..];
    }
    out.push_str(rest);
    out
}

/// Bytes of an error answer read for its excerpt in the message.
const ERROR_EXCERPT_BYTES: u64 = 16 * 1024;

/// The decoded body, or `None` as soon as it proves longer than `limit`. The buffer never holds
/// more than `limit` bytes (no doubling past it), whatever the server sends.
fn read_at_most(
    mut reader: impl Read,
    limit: u64,
    declared: Option<u64>,
) -> std::io::Result<Option<Vec<u8>>> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut out = Vec::with_capacity(declared.map_or(0, |n| n as usize).min(limit));
    let mut chunk = vec![0; 64 * 1024];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => return Ok(Some(out)),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n > limit - out.len() {
            return Ok(None);
        }
        let needed = out.len() + n;
        if needed > out.capacity() {
            let grown = needed.max(out.capacity().saturating_mul(2)).min(limit);
            out.reserve_exact(grown - out.len());
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

/// At most `limit` bytes from the start of `reader`; a failure ends the reading, keeping what
/// came (only used to quote an error answer).
fn prefix(reader: impl Read, limit: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = reader.take(limit).read_to_end(&mut out);
    out
}

/// `location` (absolute, scheme-relative, absolute-path or relative) resolved against `base`.
fn resolve(base: &str, location: &str) -> String {
    let scheme_end = location.find(':').filter(|&colon| {
        let scheme = &location[..colon];
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    if scheme_end.is_some() {
        return location.to_string();
    }
    let Some((scheme, rest)) = base.split_once("://") else {
        return location.to_string();
    };
    if let Some(network) = location.strip_prefix("//") {
        return format!("{scheme}://{network}");
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    if location.starts_with('/') {
        return format!("{scheme}://{authority}{location}");
    }
    let path = &path[..path.find(['?', '#']).unwrap_or(path.len())];
    let directory = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    let directory = if directory.is_empty() { "/" } else { directory };
    format!("{scheme}://{authority}{directory}{location}")
}

/// A URL cut to a length fit for a message.
fn shorten(url: &str) -> String {
    match url.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &url[..cut]),
        None => url.to_string(),
    }
}

fn describe(error: &ureq::Error) -> String {
    match error {
        ureq::Error::Timeout(_) => "timed out".to_string(),
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection refused: is the server running at that address? Check server_url: \
             SELECT tether_config('server_url', 'https://your-server.example')"
                .to_string()
        }
        other => other.to_string(),
    }
}

/// A reading failure, with ureq's own error (a timeout, a broken gzip stream) unwrapped.
fn describe_io(error: std::io::Error) -> String {
    describe(&ureq::Error::from(error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_resolve_against_the_request_url() {
        let base = "http://u:p@h:8/api/tether/push?x=1";
        assert_eq!(resolve(base, "https://other/x"), "https://other/x");
        assert_eq!(resolve(base, "//other:9/y"), "http://other:9/y");
        assert_eq!(resolve(base, "/v2/push"), "http://u:p@h:8/v2/push");
        assert_eq!(resolve(base, "push2"), "http://u:p@h:8/api/tether/push2");
        assert_eq!(resolve("http://h", "a"), "http://h/a");
        assert_eq!(
            resolve(base, "/r?next=http://x"),
            "http://u:p@h:8/r?next=http://x"
        );
        assert_eq!(
            shorten(&redact_url(&resolve(base, "/v2"))),
            "http://***@h:8/v2"
        );
    }

    #[test]
    fn reading_stops_at_the_limit_without_growing_past_it() {
        let body = vec![b'x'; 300_000];
        let read = read_at_most(&body[..], 300_000, None).unwrap().unwrap();
        assert_eq!(read.len(), 300_000);
        assert!(read.capacity() <= 300_000);
        assert!(read_at_most(&body[..], 299_999, None).unwrap().is_none());
        assert_eq!(read_at_most(&b""[..], 1, None).unwrap().unwrap(), b"");
        let read = read_at_most(&body[..10], 1000, Some(10)).unwrap().unwrap();
        assert_eq!(read.capacity(), 10);
    }

    fn with_secrets(secrets: &[&str]) -> Http {
        Http {
            agent: ureq::Agent::new_with_defaults(),
            headers: Vec::new(),
            secrets: spellings(secrets.iter().map(|s| s.to_string()).collect()),
            debug_level: 0,
            max_response_bytes: 1,
            origin: Origin::default(),
        }
    }

    #[test]
    fn secrets_are_scrubbed_in_every_spelling() {
        let http = with_secrets(&["tok/\"en-77", "", "pw"]);
        let token = "tok/\"en-77";
        assert_eq!(http.scrub(&format!("x {token} y")), "x *** y");
        assert_eq!(
            http.scrub("x tok\\/\"en-77 y"),
            "x *** y",
            "JSON-escaped '/'"
        );
        let quoted = excerpt(&format!("{{\"m\": \"{token}\"}}"));
        assert!(!http.scrub(&quoted).contains("en-77"), "{quoted}");
        assert_eq!(http.scrub("a pw b"), "a *** b");
        assert_eq!(http.scrub("nothing"), "nothing");
        // Cut by an excerpt: the start of a secret before the closing `…` goes.
        let long = format!("{}{token}", "z".repeat(195));
        let cut = excerpt(&long);
        assert!(cut.contains("tok/"), "{cut}");
        let scrubbed = http.scrub(&cut);
        assert!(!scrubbed.contains("tok/"), "{scrubbed}");
        assert!(scrubbed.ends_with("***\"…"), "{scrubbed}");
        // What is not a secret's start stays.
        assert_eq!(http.scrub("\"abc\"…"), "\"abc\"…");
        let error = http.scrub_error(Error::with_cause(
            format!("HTTP 401: {token}"),
            Cause::Http(401),
        ));
        assert_eq!(
            (error.message(), error.http_status()),
            ("HTTP 401: ***", Some(401))
        );
    }
}
