//! HTTP: the accept loop (header and body time limits, a body size limit), routes, token auth,
//! Laravel-style request validation, JSON-only errors, a log line per request, and (only with
//! `--test-controls`, only on loopback) fault injection and a frozen clock for tests.
use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::{Body, BodyDataStream, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::models::{attribute, check, integer_value, messages_json, summarize, Messages, Rule};
use crate::push::InjectedFailure;
use crate::store::Store;

/// How the server was started.
pub struct Settings {
    pub token: Option<String>,
    pub strict_duplicates: bool,
    pub test_controls: bool,
    pub quiet: bool,
    /// Largest request body accepted, in bytes; larger ones get 413.
    pub max_body: usize,
    /// Time allowed to send a request's headers, and then its body.
    pub read_timeout: Duration,
    /// Trim strings and turn empty ones into null before validating, as a default Laravel app's
    /// global middleware does.
    pub trim_strings: bool,
}

pub struct Server {
    store: Mutex<Store>,
    settings: Settings,
    faults: Mutex<VecDeque<Fault>>,
}

impl Server {
    pub fn new(store: Store, settings: Settings) -> Self {
        Server {
            store: Mutex::new(store),
            settings,
            faults: Mutex::new(VecDeque::new()),
        }
    }

    /// The store; a request that panicked while holding it left nothing behind (its transaction
    /// was rolled back while unwinding), so a poisoned lock is simply taken over.
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn faults(&self) -> MutexGuard<'_, VecDeque<Fault>> {
        self.faults.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A misbehaviour for upcoming requests (test controls only).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// `/tether/push`, `/tether/pull`, or absent for both.
    #[serde(default)]
    path: Option<String>,
    /// How many matching requests it affects.
    #[serde(default = "one")]
    times: u32,
    /// Answer with this status (and a JSON error) without processing.
    #[serde(default)]
    status: Option<u16>,
    /// Wait this long before answering.
    #[serde(default)]
    delay_ms: Option<u64>,
    /// `html`: answer 200 with an HTML page without processing; `truncated`: process, then send
    /// half of the JSON answer; `drop`: process, then close the connection mid-answer.
    #[serde(default)]
    body: Option<String>,
    /// Push only: `before_commit` applies the mutations, then fails as a database error would
    /// before COMMIT; `panic` panics there instead.
    #[serde(default)]
    fail: Option<String>,
}

fn one() -> u32 {
    1
}

impl Fault {
    fn check(&self) -> Result<(), String> {
        if let Some(body) = &self.body {
            if !["html", "truncated", "drop"].contains(&body.as_str()) {
                return Err(format!(
                    "unknown body fault {body:?} (html, truncated, drop)"
                ));
            }
        }
        if let Some(fail) = &self.fail {
            if !["before_commit", "panic"].contains(&fail.as_str()) {
                return Err(format!(
                    "unknown fail fault {fail:?} (before_commit, panic)"
                ));
            }
        }
        Ok(())
    }

    fn injected_failure(&self) -> Option<InjectedFailure> {
        match self.fail.as_deref() {
            Some("before_commit") => Some(InjectedFailure::BeforeCommit),
            Some("panic") => Some(InjectedFailure::Panic),
            _ => None,
        }
    }
}

fn json_response(status: StatusCode, value: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

/// Laravel's answer to an exception outside debug mode: no detail.
fn server_error() -> Response {
    json_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        json!({"message": "Server Error"}),
    )
}

/// A client-supplied string as the log shows it: quoted, escaped (no control characters, so it
/// cannot forge a log line), and cut after 64 characters.
pub fn shown(text: &str) -> String {
    let mut out = String::from("\"");
    for (i, c) in text.chars().enumerate() {
        if i == 64 {
            out.push_str("...");
            break;
        }
        out.extend(c.escape_debug());
    }
    out.push('"');
    out
}

fn log(
    server: &Server,
    method: &str,
    path: &str,
    status: StatusCode,
    detail: &str,
    start: Instant,
) {
    if !server.settings.quiet {
        eprintln!(
            "{method} {path} {} {detail} {:.1}ms",
            status.as_u16(),
            start.elapsed().as_secs_f64() * 1e3
        );
    }
}

fn authorized(server: &Server, headers: &HeaderMap) -> bool {
    let Some(token) = &server.settings.token else {
        return true;
    };
    // Like Laravel's Request::bearerToken(): the scheme in any case, the token up to a comma.
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let at = v.to_ascii_lowercase().rfind("bearer ")?;
            Some(v[at + 7..].split(',').next().unwrap_or_default().trim())
        });
    // Compare without an early exit, so timing says nothing about the token.
    given.is_some_and(|g| {
        g.len() == token.len()
            && g.bytes()
                .zip(token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    })
}

fn take_fault(server: &Server, path: &str) -> Option<Fault> {
    let mut faults = server.faults();
    let index = faults
        .iter()
        .position(|f| f.path.as_deref().is_none_or(|p| p == path))?;
    let fault = faults[index].clone();
    if faults[index].times <= 1 {
        faults.remove(index);
    } else {
        faults[index].times -= 1;
    }
    Some(fault)
}

/// Why a request could not be processed; becomes its JSON answer.
enum Failure {
    /// HTTP 422, Laravel-style: the first message (and how many more) and field → messages.
    Invalid(Messages),
    /// HTTP 500; the detail goes to the log only.
    Internal(String),
}

/// Collects Laravel validation results in rule order.
#[derive(Default)]
struct Checks(Messages);

impl Checks {
    fn field(&mut self, key: &str, name: &str, value: Option<&Value>, rules: &[Rule]) {
        let errors = check(name, value, rules);
        if !errors.is_empty() {
            self.0.push((key.to_string(), errors));
        }
    }

    fn finish(self) -> Result<(), Failure> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Failure::Invalid(self.0))
        }
    }
}

/// The body as Laravel's `$request->json()` sees it: anything but a JSON object (not JSON at all,
/// a list, a number) is an empty input, so validation then reports the missing fields.
fn input(body: &Bytes, trim_strings: bool) -> Map<String, Value> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) if trim_strings => match laravel_middleware(Value::Object(map)) {
            Value::Object(map) => map,
            _ => Map::new(),
        },
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// What a default Laravel app's global middleware does to every input before validation:
/// TrimStrings (whitespace, and U+FEFF, U+200B, U+200E at either end) then
/// ConvertEmptyStringsToNull, through nested arrays and objects.
fn laravel_middleware(value: Value) -> Value {
    match value {
        Value::String(text) => {
            let trimmed = text.trim_matches(|c: char| {
                // PCRE's \s (ASCII whitespace) and the three marks Laravel names.
                matches!(
                    c,
                    ' ' | '\t'
                        | '\n'
                        | '\r'
                        | '\u{0B}'
                        | '\u{0C}'
                        | '\u{FEFF}'
                        | '\u{200B}'
                        | '\u{200E}'
                )
            });
            if trimmed.is_empty() {
                Value::Null
            } else {
                Value::String(trimmed.to_string())
            }
        }
        Value::Array(items) => Value::Array(items.into_iter().map(laravel_middleware).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, laravel_middleware(v)))
                .collect(),
        ),
        other => other,
    }
}

/// The push request's rules: `client_id` required|string, `mutations` required|array, and
/// `mutations.*.mutation_id` required|string. Returns the mutations.
fn validate_push(map: &Map<String, Value>) -> Result<Vec<&Value>, Failure> {
    let mut checks = Checks::default();
    checks.field(
        "client_id",
        &attribute("client_id"),
        map.get("client_id"),
        &[Rule::Required, Rule::String],
    );
    checks.field(
        "mutations",
        "mutations",
        map.get("mutations"),
        &[Rule::Required, Rule::Array],
    );
    // A JSON object is an array to PHP too: its values are the mutations.
    let items: Vec<(String, &Value)> = match map.get("mutations") {
        Some(Value::Array(list)) => list
            .iter()
            .enumerate()
            .map(|(i, m)| (i.to_string(), m))
            .collect(),
        Some(Value::Object(object)) => object.iter().map(|(k, m)| (k.clone(), m)).collect(),
        _ => Vec::new(),
    };
    for (key, mutation) in &items {
        // Laravel shows the attributes of wildcard rules as they are.
        let field = format!("mutations.{key}.mutation_id");
        checks.field(
            &field,
            &field,
            mutation.get("mutation_id"),
            &[Rule::Required, Rule::String],
        );
    }
    checks.finish()?;
    Ok(items.into_iter().map(|(_, m)| m).collect())
}

/// The pull request's rules: `client_id` required|string, `last_sync_cursor` nullable|integer,
/// `limit` nullable|integer|min:1. Returns the cursor and limit.
fn validate_pull(map: &Map<String, Value>) -> Result<(Option<i64>, Option<i64>), Failure> {
    let mut checks = Checks::default();
    checks.field(
        "client_id",
        &attribute("client_id"),
        map.get("client_id"),
        &[Rule::Required, Rule::String],
    );
    checks.field(
        "last_sync_cursor",
        &attribute("last_sync_cursor"),
        map.get("last_sync_cursor"),
        &[Rule::Nullable, Rule::Integer],
    );
    checks.field(
        "limit",
        "limit",
        map.get("limit"),
        &[Rule::Nullable, Rule::Integer, Rule::Min("1".into(), 1.0)],
    );
    checks.finish()?;
    // Blank strings pass the rules (only `required` looks at them) and mean no value.
    let cursor = map.get("last_sync_cursor").and_then(integer_value);
    let limit = map.get("limit").and_then(integer_value);
    Ok((cursor, limit))
}

#[derive(Clone, Copy)]
enum Endpoint {
    Push,
    Pull,
}

impl Endpoint {
    fn path(self) -> &'static str {
        match self {
            Endpoint::Push => "/tether/push",
            Endpoint::Pull => "/tether/pull",
        }
    }
}

enum BodyError {
    TooLarge,
    Broken,
    TimedOut,
}

/// Reads at most `max` bytes of body within `timeout`.
async fn read_body(
    stream: &mut BodyDataStream,
    max: usize,
    timeout: Duration,
) -> Result<Bytes, BodyError> {
    let read = async {
        let mut data: Vec<u8> = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| BodyError::Broken)?;
            if data.len() + chunk.len() > max {
                return Err(BodyError::TooLarge);
            }
            data.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(data))
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or(Err(BodyError::TimedOut))
}

/// The most of a refused body read (and thrown away) so the client, still sending it, gets the
/// 413 instead of a broken connection.
const DRAIN_MAX: u64 = 64 * 1024 * 1024;

/// Reads and discards the rest of a body refused as too large, within limits: a client that has
/// not finished sending would otherwise see its connection reset instead of the answer.
async fn drain(stream: &mut BodyDataStream, headers: &HeaderMap, timeout: Duration) {
    let expects_continue = headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue || declared_length(headers).is_some_and(|n| n > DRAIN_MAX) {
        // It waits for our go-ahead, or sends more than is worth reading: answer at once.
        return;
    }
    let discard = async {
        let mut seen: u64 = 0;
        while let Some(Ok(chunk)) = stream.next().await {
            seen += chunk.len() as u64;
            if seen > DRAIN_MAX {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(timeout, discard).await;
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// Refuses a body over the limit (`detail` says how it was found out): logged, the rest of the
/// body drained, and Laravel's PostTooLargeException answered (HTTP 413).
async fn too_large(
    server: &Server,
    path: &str,
    detail: &str,
    (body, headers): (&mut BodyDataStream, &HeaderMap),
    start: Instant,
) -> Response {
    log(
        server,
        "POST",
        path,
        StatusCode::PAYLOAD_TOO_LARGE,
        detail,
        start,
    );
    drain(body, headers, server.settings.read_timeout).await;
    json_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        json!({"message": "The POST data is too large."}),
    )
}

/// Runs a request in its own task, so that a panic anywhere in it is logged and answered 500
/// instead of dropping the connection.
async fn guarded(
    server: Arc<Server>,
    endpoint: Endpoint,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let start = Instant::now();
    let task = tokio::spawn(handle(server.clone(), endpoint, headers, body, start));
    match task.await {
        Ok(response) => response,
        Err(e) => {
            request_failed(&server, endpoint, start, &join_failure(e));
            server_error()
        }
    }
}

/// Why a task did not finish: `panic: <its message>`, or `cancelled`.
fn join_failure(e: tokio::task::JoinError) -> String {
    if !e.is_panic() {
        return "cancelled".into();
    }
    let payload = e.into_panic();
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into());
    format!("panic: {text}")
}

/// A request that ended in a 500: always logged, even with `--quiet`, with the reason (which the
/// client is not told).
fn request_failed(server: &Server, endpoint: Endpoint, start: Instant, why: &str) {
    let why: String = why.chars().flat_map(char::escape_debug).collect();
    if server.settings.quiet {
        eprintln!("tether-server: POST {} failed: {why}", endpoint.path());
    } else {
        log(
            server,
            "POST",
            endpoint.path(),
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("error: {why}"),
            start,
        );
    }
}

async fn handle(
    server: Arc<Server>,
    endpoint: Endpoint,
    headers: HeaderMap,
    body: Body,
    start: Instant,
) -> Response {
    let path = endpoint.path();
    let max = server.settings.max_body;
    let timeout = server.settings.read_timeout;
    let mut body = body.into_data_stream();
    if let Some(declared) = declared_length(&headers).filter(|n| *n > max as u64) {
        let detail = format!("body of {declared} bytes over the limit of {max}");
        return too_large(&server, path, &detail, (&mut body, &headers), start).await;
    }
    if !authorized(&server, &headers) {
        let status = StatusCode::UNAUTHORIZED;
        log(&server, "POST", path, status, "unauthenticated", start);
        return json_response(status, json!({"message": "Unauthenticated."}));
    }
    let fault = if server.settings.test_controls {
        take_fault(&server, path)
    } else {
        None
    };
    if let Some(delay) = fault.as_ref().and_then(|f| f.delay_ms) {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if let Some(status) = fault.as_ref().and_then(|f| f.status) {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        log(&server, "POST", path, status, "injected status", start);
        return json_response(status, json!({"message": "Server Error"}));
    }
    if fault.as_ref().and_then(|f| f.body.as_deref()) == Some("html") {
        log(
            &server,
            "POST",
            path,
            StatusCode::OK,
            "injected html",
            start,
        );
        return (
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body><h1>502 Bad Gateway</h1></body></html>",
        )
            .into_response();
    }
    let body = match read_body(&mut body, max, timeout).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => {
            let detail = format!("body over the limit of {max} bytes");
            return too_large(&server, path, &detail, (&mut body, &headers), start).await;
        }
        Err(BodyError::TimedOut) => {
            let status = StatusCode::REQUEST_TIMEOUT;
            log(
                &server,
                "POST",
                path,
                status,
                "body not received in time",
                start,
            );
            return json_response(
                status,
                json!({"message": "The request body did not arrive in time."}),
            );
        }
        Err(BodyError::Broken) => {
            let status = StatusCode::BAD_REQUEST;
            log(
                &server,
                "POST",
                path,
                status,
                "body could not be read",
                start,
            );
            return json_response(
                status,
                json!({"message": "The request body could not be read."}),
            );
        }
    };
    let inject = fault.as_ref().and_then(Fault::injected_failure);
    let worker = server.clone();
    let result = tokio::task::spawn_blocking(move || -> Result<(Value, String), Failure> {
        let map = input(&body, worker.settings.trim_strings);
        let client = map
            .get("client_id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match endpoint {
            Endpoint::Push => {
                let mutations = validate_push(&map)?;
                let mut store = worker.store();
                let outcome = crate::push::push(
                    &mut store,
                    client,
                    &mutations,
                    worker.settings.strict_duplicates,
                    inject,
                )
                .map_err(|e| Failure::Internal(e.to_string()))?;
                let detail = format!(
                    "client={} mutations={} applied={} rejected={} conflicts={}",
                    shown(client),
                    mutations.len(),
                    outcome.applied.len(),
                    outcome.rejected.len(),
                    outcome.conflicts.len()
                );
                Ok((outcome.to_json(), detail))
            }
            Endpoint::Pull => {
                let (cursor, limit) = validate_pull(&map)?;
                let store = worker.store();
                let answer = crate::pull::pull(&store, client, cursor, limit)
                    .map_err(|e| Failure::Internal(e.to_string()))?;
                let detail = format!(
                    "client={} cursor={} snapshots={} has_more={}",
                    shown(client),
                    cursor.map_or("null".into(), |c| c.to_string()),
                    answer["snapshots"].as_array().map_or(0, Vec::len),
                    answer["has_more"]
                );
                Ok((answer, detail))
            }
        }
    })
    .await;
    let (answer, detail) = match result {
        Ok(Ok(done)) => done,
        Ok(Err(Failure::Invalid(messages))) => {
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            let fields: Vec<&str> = messages.iter().map(|(f, _)| f.as_str()).collect();
            let detail = format!("invalid: {}", shown(&fields.join(",")));
            log(&server, "POST", path, status, &detail, start);
            return json_response(
                status,
                json!({"message": summarize(&messages), "errors": messages_json(&messages)}),
            );
        }
        Ok(Err(Failure::Internal(e))) => {
            request_failed(&server, endpoint, start, &e);
            return server_error();
        }
        Err(e) => {
            request_failed(&server, endpoint, start, &join_failure(e));
            return server_error();
        }
    };
    match fault.and_then(|f| f.body) {
        Some(kind) if kind == "truncated" => {
            let text = answer.to_string();
            let detail = format!("{detail} (answer truncated)");
            log(&server, "POST", path, StatusCode::OK, &detail, start);
            (
                [(header::CONTENT_TYPE, "application/json")],
                text[..text.len() / 2].to_string(),
            )
                .into_response()
        }
        Some(kind) if kind == "drop" => {
            let detail = format!("{detail} (connection dropped)");
            log(&server, "POST", path, StatusCode::OK, &detail, start);
            let broken = futures_util::stream::iter([Err::<Bytes, std::io::Error>(
                std::io::Error::other("dropped by fault injection"),
            )]);
            (
                [(header::CONTENT_TYPE, "application/json")],
                Body::from_stream(broken),
            )
                .into_response()
        }
        _ => {
            log(&server, "POST", path, StatusCode::OK, &detail, start);
            json_response(StatusCode::OK, answer)
        }
    }
}

async fn push(State(server): State<Arc<Server>>, headers: HeaderMap, body: Body) -> Response {
    guarded(server, Endpoint::Push, headers, body).await
}

async fn pull(State(server): State<Arc<Server>>, headers: HeaderMap, body: Body) -> Response {
    guarded(server, Endpoint::Pull, headers, body).await
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Faults {
    One(Fault),
    Many(Vec<Fault>),
}

async fn set_faults(State(server): State<Arc<Server>>, body: Bytes) -> Response {
    let list = match serde_json::from_slice::<Faults>(&body) {
        Ok(Faults::One(f)) => vec![f],
        Ok(Faults::Many(list)) => list,
        Err(e) => {
            return json_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"message": format!("bad fault: {e}")}),
            )
        }
    };
    if let Some(e) = list.iter().find_map(|f| f.check().err()) {
        return json_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"message": format!("bad fault: {e}")}),
        );
    }
    let mut faults = server.faults();
    faults.extend(list);
    json_response(StatusCode::OK, json!({"queued": faults.len()}))
}

async fn clear_faults(State(server): State<Arc<Server>>) -> Response {
    server.faults().clear();
    json_response(StatusCode::OK, json!({"queued": 0}))
}

async fn set_clock(State(server): State<Arc<Server>>, body: Bytes) -> Response {
    let frozen = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("frozen_us").cloned());
    match frozen {
        Some(Value::Null) => {
            server.store().freeze_clock(None);
            json_response(StatusCode::OK, json!({"frozen_us": null}))
        }
        Some(Value::Number(n)) if n.is_i64() => {
            server.store().freeze_clock(n.as_i64());
            json_response(StatusCode::OK, json!({"frozen_us": n}))
        }
        _ => json_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"message": "send {\"frozen_us\": <int> | null}"}),
        ),
    }
}

async fn not_found(State(server): State<Arc<Server>>, method: Method, uri: Uri) -> Response {
    let status = StatusCode::NOT_FOUND;
    let path = shown(uri.path());
    log(
        &server,
        method.as_str(),
        &path,
        status,
        "no route",
        Instant::now(),
    );
    json_response(
        status,
        json!({"message": format!("No route for {method} {}.", uri.path())}),
    )
}

async fn method_not_allowed(
    State(server): State<Arc<Server>>,
    method: Method,
    uri: Uri,
) -> Response {
    let status = StatusCode::METHOD_NOT_ALLOWED;
    let path = shown(uri.path());
    log(
        &server,
        method.as_str(),
        &path,
        status,
        "method not allowed",
        Instant::now(),
    );
    json_response(
        status,
        json!({"message": format!("The {method} method is not supported for {}.", uri.path())}),
    )
}

pub fn router(server: Arc<Server>) -> Router {
    let mut router = Router::new()
        .route("/tether/push", post(push))
        .route("/tether/pull", post(pull));
    if server.settings.test_controls {
        router = router
            .route("/_test/faults", post(set_faults).delete(clear_faults))
            .route("/_test/clock", post(set_clock));
    }
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(server)
}

/// Serves HTTP/1.1 until `shutdown` resolves, then lets requests in progress finish (up to 10
/// seconds). Each connection must send a request's headers within `read_timeout` (also the
/// longest an idle kept-alive connection stays open); the body has its own limit in the handler.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    read_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let (closing, closed) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was accepted.
                    eprintln!("tether-server: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let mut closed = closed.clone();
        connections.spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(read_timeout);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => return,
                _ = closed.changed() => connection.as_mut().graceful_shutdown(),
            }
            let _ = connection.await;
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = closing.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
}
