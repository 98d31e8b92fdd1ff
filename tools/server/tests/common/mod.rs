//! Starts the real tether-server binary on 127.0.0.1 (ephemeral port) and talks HTTP to it.
#![allow(dead_code)]
use std::process::Child;

use serde_json::{json, Value};

pub struct TestServer {
    child: Child,
    pub url: String,
    agent: ureq::Agent,
    /// Where stderr goes, for servers started with [`TestServer::start_logged`].
    log: Option<(tempfile::TempDir, std::path::PathBuf)>,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

impl TestServer {
    pub fn start(args: &[&str]) -> TestServer {
        let mut all = vec!["--listen", "127.0.0.1:0", "--test-controls", "--quiet"];
        all.extend_from_slice(args);
        let (child, url) = tether_harness::start_server(
            std::path::Path::new(env!("CARGO_BIN_EXE_tether-server")),
            &all,
        );
        TestServer {
            child,
            url,
            agent: agent(),
            log: None,
        }
    }

    /// Starts a server that logs a line per request (stderr kept in a file, see [`Self::log`]).
    pub fn start_logged(args: &[&str]) -> TestServer {
        use std::io::{BufRead, BufReader};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stderr.log");
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tether-server"))
            .args(["--listen", "127.0.0.1:0", "--test-controls"])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&path).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"))
            .to_string();
        TestServer {
            child,
            url,
            agent: agent(),
            log: Some((dir, path)),
        }
    }

    /// What the server wrote on stderr so far.
    pub fn log(&self) -> String {
        let (_, path) = self.log.as_ref().expect("started with start_logged");
        std::fs::read_to_string(path).unwrap()
    }

    /// `127.0.0.1:PORT`, for raw connections.
    pub fn address(&self) -> String {
        self.url.trim_start_matches("http://").to_string()
    }

    /// POSTs a raw body; returns the status and the body text.
    pub fn post_raw(&self, path: &str, body: &str, token: Option<&str>) -> (u16, String) {
        let mut request = self
            .agent
            .post(&format!("{}{path}", self.url))
            .header("Content-Type", "application/json");
        if let Some(token) = token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        match request.send(body) {
            Ok(mut response) => (
                response.status().as_u16(),
                response.body_mut().read_to_string().unwrap_or_default(),
            ),
            Err(e) => (0, format!("transport error: {e}")),
        }
    }

    pub fn post(&self, path: &str, body: &Value) -> Value {
        let (status, text) = self.post_raw(path, &body.to_string(), None);
        assert_eq!(status, 200, "{path} answered {status}: {text}");
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{path} answered non-JSON {text:?}: {e}"))
    }

    pub fn push(&self, client: &str, mutations: Value) -> Value {
        self.post(
            "/tether/push",
            &json!({"client_id": client, "mutations": mutations}),
        )
    }

    pub fn pull(&self, client: &str, cursor: Option<i64>, limit: Option<i64>) -> Value {
        let mut body = json!({"client_id": client, "last_sync_cursor": cursor});
        if let Some(limit) = limit {
            body["limit"] = json!(limit);
        }
        self.post("/tether/pull", &body)
    }

    pub fn freeze_clock(&self, at_us: Option<i64>) {
        self.post("/_test/clock", &json!({"frozen_us": at_us}));
    }

    pub fn fault(&self, fault: Value) {
        self.post("/_test/faults", &fault);
    }

    /// Every snapshot a client receives when pulling from `cursor` to the end in pages of `limit`.
    pub fn pull_all(&self, client: &str, limit: Option<i64>) -> (Vec<Value>, Vec<Value>) {
        let (mut snapshots, mut pages, mut cursor) = (Vec::new(), Vec::new(), None);
        for _ in 0..10_000 {
            let page = self.pull(client, cursor, limit);
            snapshots.extend(page["snapshots"].as_array().unwrap().iter().cloned());
            let next = page["new_sync_cursor"].as_i64();
            let more = page["has_more"].as_bool().unwrap();
            if more {
                assert!(
                    next > cursor,
                    "the cursor advances while has_more: {cursor:?} -> {next:?}"
                );
            }
            cursor = next;
            pages.push(page);
            if !more {
                return (snapshots, pages);
            }
        }
        panic!("pull never finished");
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A unique, ULID-shaped id for tests.
pub fn id() -> String {
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("01JDQ9{:020}", n)
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

pub fn mutation(op: &str, model: &str, entity: &str, payload: Value, timestamp: i64) -> Value {
    json!({"mutation_id": id(), "entity_id": entity, "model": model, "operation": op, "payload": payload, "version": 1, "timestamp": timestamp})
}

pub fn fixture(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} does not parse: {e}"))
}

/// Creates one Task through a push and returns its sync key.
pub fn create_task(server: &TestServer, client: &str, title: &str) -> String {
    let entity = id();
    let answer = server.push(
        client,
        json!([mutation(
            "create",
            "Task",
            &entity,
            json!({ "title": title }),
            now_ms()
        )]),
    );
    assert_eq!(
        answer["applied"].as_array().map(Vec::len),
        Some(1),
        "{answer}"
    );
    entity
}
