//! `tether_config`: settings persisted in the database, with a per-connection override,
//! `TETHER_*` environment fallback and defaults. Every value is validated before it is stored,
//! and secrets never leave in clear.
use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use rusqlite::functions::Context;
use rusqlite::types::Value;
use rusqlite::Connection;
use serde_json::{json, Map, Value as Json};

use crate::bail;
use crate::error::{Error, Result};
use crate::functions::{self, connection, text_arg, Kind};

#[derive(Clone, Copy, PartialEq)]
enum Shape {
    Url,
    Text,
    Secret,
    Headers,
    /// A whole number ≥ 0.
    Count,
    /// A whole number ≥ 1.
    Positive,
    Bool,
    /// 0 to 3.
    Level,
    Identifier,
}

struct Key {
    name: &'static str,
    env: &'static str,
    shape: Shape,
    default: Option<&'static str>,
}

const KEYS: &[Key] = &[
    Key {
        name: "server_url",
        env: "TETHER_SERVER_URL",
        shape: Shape::Url,
        default: None,
    },
    Key {
        name: "push_url",
        env: "TETHER_SERVER_PUSH_URL",
        shape: Shape::Url,
        default: None,
    },
    Key {
        name: "pull_url",
        env: "TETHER_SERVER_PULL_URL",
        shape: Shape::Url,
        default: None,
    },
    Key {
        name: "client_id",
        env: "TETHER_CLIENT_ID",
        shape: Shape::Text,
        default: None,
    },
    Key {
        name: "auth_token",
        env: "TETHER_AUTH_TOKEN",
        shape: Shape::Secret,
        default: None,
    },
    Key {
        name: "headers",
        env: "TETHER_HEADERS",
        shape: Shape::Headers,
        default: Some("{}"),
    },
    Key {
        name: "sync_key",
        env: "TETHER_SYNC_KEY",
        shape: Shape::Identifier,
        default: Some("tether_id"),
    },
    Key {
        name: "push_batch_size",
        env: "TETHER_PUSH_BATCH_SIZE",
        shape: Shape::Count,
        default: Some("100"),
    },
    Key {
        name: "pull_page_size",
        env: "TETHER_PULL_PAGE_SIZE",
        shape: Shape::Positive,
        default: None,
    },
    Key {
        name: "max_retry_attempts",
        env: "TETHER_MAX_RETRY_ATTEMPTS",
        shape: Shape::Count,
        default: Some("3"),
    },
    Key {
        name: "sync_lock",
        env: "TETHER_SYNC_LOCK",
        shape: Shape::Bool,
        default: Some("true"),
    },
    Key {
        name: "timeout_ms",
        env: "TETHER_TIMEOUT_MS",
        shape: Shape::Positive,
        default: Some("30000"),
    },
    Key {
        name: "ca_file",
        env: "TETHER_CA_FILE",
        shape: Shape::Text,
        default: None,
    },
    Key {
        name: "retention_days",
        env: "TETHER_RETENTION_DAYS",
        shape: Shape::Count,
        default: Some("7"),
    },
    Key {
        name: "auto_sync",
        env: "TETHER_AUTO_SYNC",
        shape: Shape::Bool,
        default: Some("false"),
    },
    Key {
        name: "auto_sync_throttle",
        env: "TETHER_AUTO_SYNC_THROTTLE",
        shape: Shape::Count,
        default: Some("0"),
    },
    Key {
        name: "debug_level",
        env: "TETHER_DEBUG_LEVEL",
        shape: Shape::Level,
        default: Some("0"),
    },
];

const REDACTED: &str = "***";

fn key(name: &str) -> Result<&'static Key> {
    KEYS.iter().find(|k| k.name == name).ok_or_else(|| {
        let known: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
        Error::new(format!(
            "unknown setting {name:?}; known settings: {}",
            known.join(", ")
        ))
    })
}

/// Settings given for one connection only (never written to the file).
#[derive(Default)]
pub struct ConnectionSettings {
    values: Mutex<HashMap<&'static str, String>>,
}

/// Checks `raw` for `key` and returns the form it is stored in. Errors name the key and never
/// echo a secret.
fn normalize(key: &Key, raw: &str) -> Result<String> {
    let name = key.name;
    let value = raw.trim();
    match key.shape {
        Shape::Url => {
            let rest = value
                .strip_prefix("https://")
                .or_else(|| value.strip_prefix("http://"))
                .ok_or_else(|| {
                    Error::new(format!(
                        "{name} must be an http:// or https:// URL, got {:?}",
                        shown_in_error(value)
                    ))
                })?;
            if rest.is_empty() || rest.starts_with('/') || value.chars().any(char::is_whitespace) {
                bail!(
                    "{name} must be an http:// or https:// URL with a host, got {:?}",
                    shown_in_error(value)
                );
            }
            Ok(value.to_string())
        }
        Shape::Text | Shape::Identifier => {
            if value.is_empty() || value.contains('\0') {
                bail!("{name} must be non-empty text");
            }
            Ok(value.to_string())
        }
        Shape::Secret => {
            if value.is_empty() || value.chars().any(|c| c.is_control()) {
                bail!("{name} must be non-empty text without control characters");
            }
            Ok(value.to_string())
        }
        Shape::Headers => {
            let parsed: Json = serde_json::from_str(value).map_err(|_| {
                Error::new(format!(
                    "{name} must be a JSON object of header names to text values"
                ))
            })?;
            let Json::Object(map) = parsed else {
                bail!("{name} must be a JSON object of header names to text values");
            };
            for (header, v) in &map {
                let token_ok = !header.is_empty()
                    && header
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                if !token_ok {
                    bail!("{name}: {header:?} is not a valid HTTP header name");
                }
                if v.as_str().is_none_or(|s| s.contains(['\r', '\n'])) {
                    bail!("{name}: the value of header {header:?} must be text on one line");
                }
            }
            Ok(Json::Object(map).to_string())
        }
        Shape::Count | Shape::Positive | Shape::Level => {
            let number: i64 = value
                .parse()
                .map_err(|_| Error::new(format!("{name} must be a whole number, got {value:?}")))?;
            let (low, high) = match key.shape {
                Shape::Count => (0, i64::MAX),
                Shape::Positive => (1, i64::MAX),
                _ => (0, 3),
            };
            if number < low || number > high {
                match key.shape {
                    Shape::Level => bail!("{name} must be between 0 and 3, got {number}"),
                    _ => bail!("{name} must be {low} or more, got {number}"),
                }
            }
            Ok(number.to_string())
        }
        Shape::Bool => match value.to_ascii_lowercase().as_str() {
            "1" | "true" | "on" | "yes" => Ok("true".into()),
            "0" | "false" | "off" | "no" => Ok("false".into()),
            _ => bail!("{name} must be true or false, got {value:?}"),
        },
    }
}

/// A URL as it may appear in an error: anything that could hold credentials is hidden.
fn shown_in_error(url: &str) -> String {
    match url.rfind('@') {
        Some(at) => format!("{REDACTED}@{}", &url[at + 1..]),
        None => url.to_string(),
    }
}

/// Where an effective value came from.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Source {
    Connection,
    Database,
    Environment,
    Default,
}

/// Effective, validated settings for one connection at one moment.
pub struct Settings {
    values: HashMap<&'static str, (String, Source)>,
}

impl Settings {
    pub fn load(conn: &Connection, session: &ConnectionSettings) -> Result<Settings> {
        let mut stored: HashMap<String, String> = HashMap::new();
        let mut stmt = conn.prepare("SELECT key, value FROM tether_settings")?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
            let (k, v) = row?;
            stored.insert(k, v);
        }
        let session = session.values.lock();
        let mut values = HashMap::new();
        for key in KEYS {
            let found = if let Some(v) = session.get(key.name) {
                Some((v.clone(), Source::Connection))
            } else if let Some(v) = stored.get(key.name) {
                Some((v.clone(), Source::Database))
            } else if let Some(v) = std::env::var(key.env).ok().filter(|v| !v.trim().is_empty()) {
                let v = normalize(key, &v).map_err(|e| {
                    Error::new(format!("environment variable {}: {}", key.env, e.message()))
                })?;
                Some((v, Source::Environment))
            } else {
                key.default.map(|d| (d.to_string(), Source::Default))
            };
            if let Some(found) = found {
                values.insert(key.name, found);
            }
        }
        if !values.contains_key("client_id") {
            if let Some(id) = crate::identity::generated_client_id(conn)? {
                values.insert("client_id", (id, Source::Default));
            }
        }
        let server = values
            .get("server_url")
            .map(|(v, _)| v.trim_end_matches('/').to_string());
        for (name, path) in [("push_url", "/tether/push"), ("pull_url", "/tether/pull")] {
            if let (false, Some(server)) = (values.contains_key(name), &server) {
                values.insert(name, (format!("{server}{path}"), Source::Default));
            }
        }
        Ok(Settings { values })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(|(v, _)| v.as_str())
    }

    pub fn source(&self, name: &str) -> Option<Source> {
        self.values.get(name).map(|(_, s)| *s)
    }

    pub fn number(&self, name: &str) -> u64 {
        self.get(name).and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    pub fn flag(&self, name: &str) -> bool {
        self.get(name) == Some("true")
    }

    /// The value as shown to users: typed, secrets redacted.
    fn shown(&self, key: &Key) -> Json {
        let Some(value) = self.get(key.name) else {
            return Json::Null;
        };
        match key.shape {
            Shape::Secret => json!(REDACTED),
            Shape::Url => json!(redact_url(value)),
            Shape::Headers => serde_json::from_str(value)
                .map(redact_headers)
                .unwrap_or(Json::Null),
            Shape::Count | Shape::Positive | Shape::Level => {
                value.parse::<i64>().map_or(Json::Null, Json::from)
            }
            Shape::Bool => json!(value == "true"),
            Shape::Text | Shape::Identifier => json!(value),
        }
    }

    /// Every effective setting as a JSON object, secrets redacted.
    pub fn to_json(&self) -> Json {
        Json::Object(
            KEYS.iter()
                .map(|k| (k.name.to_string(), self.shown(k)))
                .collect(),
        )
    }
}

/// `https://user:pass@host/x` → `https://***@host/x`: credentials never leave in clear.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{REDACTED}@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

fn redact_headers(headers: Json) -> Json {
    let Json::Object(map) = headers else {
        return headers;
    };
    let sensitive = |name: &str| {
        let name = name.to_ascii_lowercase();
        [
            "authorization",
            "cookie",
            "token",
            "secret",
            "key",
            "password",
        ]
        .iter()
        .any(|s| name.contains(s))
    };
    Json::Object(
        map.into_iter()
            .map(|(k, v)| {
                if sensitive(&k) {
                    (k, json!(REDACTED))
                } else {
                    (k, v)
                }
            })
            .collect::<Map<_, _>>(),
    )
}

fn scalar(settings: &Settings, key: &Key) -> Value {
    match settings.shown(key) {
        Json::Null => Value::Null,
        Json::Number(n) => n.as_i64().map_or(Value::Null, Value::Integer),
        Json::Bool(b) => Value::Text(b.to_string()),
        Json::String(s) => Value::Text(s),
        other => Value::Text(other.to_string()),
    }
}

/// `tether_config(key, value [, scope])`: stores (or with NULL removes) a setting.
fn set(
    conn: &Connection,
    session: &ConnectionSettings,
    key: &'static Key,
    value: Option<&str>,
    scope: &str,
) -> Result<()> {
    let normalized = value.map(|v| normalize(key, v)).transpose()?;
    match scope {
        "database" => {
            crate::db::write_txn(conn, |conn| {
                match &normalized {
                    Some(v) => conn.execute(
                        "INSERT INTO tether_settings (key, value) VALUES (?1, ?2)
                         ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = CURRENT_TIMESTAMP",
                        (key.name, v),
                    )?,
                    None => conn.execute("DELETE FROM tether_settings WHERE key = ?1", [key.name])?,
                };
                Ok(())
            })?;
        }
        "connection" => {
            let mut values = session.values.lock();
            match normalized {
                Some(v) => values.insert(key.name, v),
                None => values.remove(key.name),
            };
        }
        other => bail!("scope must be 'database' or 'connection', got {other:?}"),
    }
    Ok(())
}

/// Called after `tether_config` changed a setting on this connection.
pub type AfterSet = Arc<dyn Fn(&Connection, &Settings) -> Result<()> + Send + Sync>;

pub fn register(
    conn: &Connection,
    session: Arc<ConnectionSettings>,
    after_set: AfterSet,
) -> Result<()> {
    let reader = session.clone();
    functions::register(
        conn,
        "tether_config",
        &[0, 1],
        Kind::Reads,
        move |ctx: &Context<'_>| {
            let conn = connection(ctx)?;
            let settings = Settings::load(&conn, &reader)?;
            if ctx.is_empty() {
                return Ok(Value::Text(settings.to_json().to_string()));
            }
            let name = text_arg(ctx, 0, "the setting name")?
                .ok_or_else(|| Error::new("the setting name is NULL"))?;
            Ok(scalar(&settings, key(&name)?))
        },
    )?;
    functions::register(
        conn,
        "tether_config",
        &[2, 3],
        Kind::Writes,
        move |ctx: &Context<'_>| {
            let conn = connection(ctx)?;
            let name = text_arg(ctx, 0, "the setting name")?
                .ok_or_else(|| Error::new("the setting name is NULL"))?;
            let key = key(&name)?;
            let value = text_arg(ctx, 1, &format!("the value of {name}"))?;
            let scope = if ctx.len() == 3 {
                text_arg(ctx, 2, "the scope")?.unwrap_or_else(|| "database".into())
            } else {
                "database".into()
            };
            set(&conn, &session, key, value.as_deref(), &scope)?;
            let settings = Settings::load(&conn, &session)?;
            after_set(&conn, &settings)?;
            Ok(scalar(&settings, key))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_key_and_hides_secrets() {
        let batch = key("push_batch_size").unwrap();
        let err = normalize(batch, "-1").unwrap_err();
        assert!(err.message().contains("push_batch_size"), "{err}");
        assert!(normalize(key("server_url").unwrap(), "example.com")
            .unwrap_err()
            .message()
            .contains("server_url"));
        assert!(normalize(key("headers").unwrap(), "not json")
            .unwrap_err()
            .message()
            .contains("headers"));
        let secret_err = normalize(key("auth_token").unwrap(), "bad\ntoken").unwrap_err();
        assert!(!secret_err.message().contains("bad"), "{secret_err}");
        assert_eq!(
            normalize(key("sync_lock").unwrap(), "OFF").unwrap(),
            "false"
        );
    }

    #[test]
    fn urls_lose_credentials_when_shown() {
        assert_eq!(
            redact_url("https://u:p@h.example/x@y"),
            "https://***@h.example/x@y"
        );
        assert_eq!(redact_url("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
    }
}
