//! HTTP: routes, token auth, JSON-only errors, a log line per request, and (only with
//! `--test-controls`, only on loopback) fault injection and a frozen clock for tests.
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::store::Store;

pub struct Server {
    pub store: Mutex<Store>,
    pub token: Option<String>,
    pub strict_duplicates: bool,
    pub test_controls: bool,
    pub quiet: bool,
    faults: Mutex<VecDeque<Fault>>,
}

impl Server {
    pub fn new(
        store: Store,
        token: Option<String>,
        strict_duplicates: bool,
        test_controls: bool,
        quiet: bool,
    ) -> Self {
        Server {
            store: Mutex::new(store),
            token,
            strict_duplicates,
            test_controls,
            quiet,
            faults: Mutex::new(VecDeque::new()),
        }
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
}

fn one() -> u32 {
    1
}

fn json_response(status: StatusCode, value: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

fn log(
    server: &Server,
    method: &str,
    path: &str,
    status: StatusCode,
    detail: &str,
    start: Instant,
) {
    if !server.quiet {
        eprintln!(
            "{method} {path} {} {detail} {:.1}ms",
            status.as_u16(),
            start.elapsed().as_secs_f64() * 1e3
        );
    }
}

fn authorized(server: &Server, headers: &HeaderMap) -> bool {
    let Some(token) = &server.token else {
        return true;
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
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
    let mut faults = server.faults.lock().unwrap();
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
    /// HTTP 422, Laravel-style: a message and field → problems.
    Unprocessable(Value),
    Internal(String),
}

impl Failure {
    fn into_response(self) -> Response {
        match self {
            Failure::Unprocessable(body) => json_response(StatusCode::UNPROCESSABLE_ENTITY, body),
            Failure::Internal(e) => json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"message": format!("Server Error: {e}")}),
            ),
        }
    }
}

fn unprocessable(message: &str, field: &str, problem: &str) -> Failure {
    Failure::Unprocessable(json!({"message": message, "errors": {field: [problem]}}))
}

/// Checks the request body.
fn parse_body(body: &Bytes) -> Result<serde_json::Map<String, Value>, Failure> {
    let value: Value = serde_json::from_slice(body).map_err(|_| {
        unprocessable(
            "The request body must be JSON.",
            "body",
            "The body must be a JSON object.",
        )
    })?;
    let Value::Object(map) = value else {
        return Err(unprocessable(
            "The request body must be a JSON object.",
            "body",
            "The body must be a JSON object.",
        ));
    };
    match map.get("client_id") {
        Some(Value::String(s)) if !s.is_empty() => Ok(map),
        _ => Err(unprocessable(
            "The client id field is required.",
            "client_id",
            "The client id field is required.",
        )),
    }
}

enum Endpoint {
    Push,
    Pull,
}

async fn handle(
    server: Arc<Server>,
    endpoint: Endpoint,
    path: &'static str,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let start = Instant::now();
    if !authorized(&server, &headers) {
        let status = StatusCode::UNAUTHORIZED;
        log(&server, "POST", path, status, "unauthenticated", start);
        return json_response(status, json!({"message": "Unauthenticated."}));
    }
    let fault = if server.test_controls {
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
    let map = match parse_body(&body) {
        Ok(map) => map,
        Err(failure) => {
            log(
                &server,
                "POST",
                path,
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid body",
                start,
            );
            return failure.into_response();
        }
    };
    let client = map["client_id"].as_str().unwrap_or_default().to_string();
    let worker = server.clone();
    let result = tokio::task::spawn_blocking(move || -> Result<(Value, String), Failure> {
        let mut store = worker
            .store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match endpoint {
            Endpoint::Push => {
                let Some(Value::Array(mutations)) = map.get("mutations") else {
                    return Err(unprocessable(
                        "The mutations field must be an array.",
                        "mutations",
                        "The mutations field must be an array.",
                    ));
                };
                for (i, m) in mutations.iter().enumerate() {
                    if !m.get("mutation_id").is_some_and(Value::is_string) {
                        let field = format!("mutations.{i}.mutation_id");
                        return Err(unprocessable(
                            &format!("The {field} field is required."),
                            &field,
                            &format!("The {field} field is required."),
                        ));
                    }
                }
                let outcome =
                    crate::push::push(&mut store, &client, mutations, worker.strict_duplicates)
                        .map_err(|e| Failure::Internal(e.to_string()))?;
                let detail = format!(
                    "client={client} mutations={} applied={} rejected={} conflicts={}",
                    mutations.len(),
                    outcome.applied.len(),
                    outcome.rejected.len(),
                    outcome.conflicts.len()
                );
                Ok((outcome.to_json(), detail))
            }
            Endpoint::Pull => {
                let cursor = match map.get("last_sync_cursor") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(v.as_i64().ok_or_else(|| {
                        unprocessable(
                            "The last sync cursor must be an integer.",
                            "last_sync_cursor",
                            "The last sync cursor must be an integer.",
                        )
                    })?),
                };
                let limit = match map.get("limit") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(v.as_i64().filter(|l| *l >= 1).ok_or_else(|| {
                        unprocessable(
                            "The limit must be an integer of at least 1.",
                            "limit",
                            "The limit must be an integer of at least 1.",
                        )
                    })?),
                };
                let answer = crate::pull::pull(&store, &client, cursor, limit)
                    .map_err(|e| Failure::Internal(e.to_string()))?;
                let detail = format!(
                    "client={client} cursor={} snapshots={} has_more={}",
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
        Ok(Err(failure)) => {
            let response = failure.into_response();
            log(
                &server,
                "POST",
                path,
                response.status(),
                "rejected request",
                start,
            );
            return response;
        }
        Err(_) => {
            return json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"message": "Server Error"}),
            )
        }
    };
    match fault.and_then(|f| f.body) {
        Some(kind) if kind == "truncated" => {
            let text = answer.to_string();
            log(
                &server,
                "POST",
                path,
                StatusCode::OK,
                &format!("{detail} (answer truncated)"),
                start,
            );
            (
                [(header::CONTENT_TYPE, "application/json")],
                text[..text.len() / 2].to_string(),
            )
                .into_response()
        }
        Some(kind) if kind == "drop" => {
            log(
                &server,
                "POST",
                path,
                StatusCode::OK,
                &format!("{detail} (connection dropped)"),
                start,
            );
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

async fn push(State(server): State<Arc<Server>>, headers: HeaderMap, body: Bytes) -> Response {
    handle(server, Endpoint::Push, "/tether/push", headers, body).await
}

async fn pull(State(server): State<Arc<Server>>, headers: HeaderMap, body: Bytes) -> Response {
    handle(server, Endpoint::Pull, "/tether/pull", headers, body).await
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Faults {
    One(Fault),
    Many(Vec<Fault>),
}

async fn set_faults(State(server): State<Arc<Server>>, body: Bytes) -> Response {
    match serde_json::from_slice::<Faults>(&body) {
        Ok(Faults::One(f)) => server.faults.lock().unwrap().push_back(f),
        Ok(Faults::Many(list)) => server.faults.lock().unwrap().extend(list),
        Err(e) => {
            return json_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"message": format!("bad fault: {e}")}),
            )
        }
    }
    json_response(
        StatusCode::OK,
        json!({"queued": server.faults.lock().unwrap().len()}),
    )
}

async fn clear_faults(State(server): State<Arc<Server>>) -> Response {
    server.faults.lock().unwrap().clear();
    json_response(StatusCode::OK, json!({"queued": 0}))
}

async fn set_clock(State(server): State<Arc<Server>>, body: Bytes) -> Response {
    let frozen = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("frozen_us").cloned());
    match frozen {
        Some(Value::Null) | Some(Value::Number(_)) => {
            let at = frozen.and_then(|v| v.as_i64());
            server.store.lock().unwrap().freeze_clock(at);
            json_response(StatusCode::OK, json!({"frozen_us": at}))
        }
        _ => json_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"message": "send {\"frozen_us\": <int> | null}"}),
        ),
    }
}

async fn not_found(method: Method, uri: Uri) -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        json!({"message": format!("No route for {method} {}.", uri.path())}),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    json_response(
        StatusCode::METHOD_NOT_ALLOWED,
        json!({"message": format!("The {method} method is not supported for {}.", uri.path())}),
    )
}

pub fn router(server: Arc<Server>) -> Router {
    let mut router = Router::new()
        .route("/tether/push", post(push))
        .route("/tether/pull", post(pull));
    if server.test_controls {
        router = router
            .route("/_test/faults", post(set_faults).delete(clear_faults))
            .route("/_test/clock", post(set_clock));
    }
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(256 * 1024 * 1024))
        .with_state(server)
}
