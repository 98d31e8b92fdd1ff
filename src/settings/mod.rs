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
use crate::functions::{self, connection, required_text, text_arg, Kind};

mod keys;

use keys::{key, normalize, Key, Shape, KEYS, REDACTED};

/// Settings given for one connection only (never written to the file).
#[derive(Default)]
pub struct ConnectionSettings {
    values: Mutex<HashMap<&'static str, String>>,
    /// Per connection, like the values: when its tracked tables were last found in line.
    schema_watch: crate::reconcile::SchemaWatch,
}

impl ConnectionSettings {
    pub fn schema_watch(&self) -> &crate::reconcile::SchemaWatch {
        &self.schema_watch
    }
}

/// Effective, validated settings for one connection at one moment.
pub struct Settings {
    values: HashMap<&'static str, String>,
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
                Some(v.clone())
            } else if let Some(v) = stored.get(key.name) {
                Some(v.clone())
            } else if let Some(v) = environment(key)? {
                Some(v)
            } else {
                key.default.map(str::to_string)
            };
            if let Some(found) = found {
                values.insert(key.name, found);
            }
        }
        if !values.contains_key("client_id") {
            if let Some(id) = crate::identity::generated_client_id(conn)? {
                values.insert("client_id", id);
            }
        }
        let server = values
            .get("server_url")
            .map(|v| v.trim_end_matches('/').to_string());
        for (name, path) in [("push_url", "/tether/push"), ("pull_url", "/tether/pull")] {
            if let (false, Some(server)) = (values.contains_key(name), &server) {
                values.insert(name, format!("{server}{path}"));
            }
        }
        Ok(Settings { values })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
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

/// The `TETHER_*` variable of `key`, validated; `None` when unset or blank. A value that is not
/// UTF-8 is refused like a malformed one (naming the variable, never showing the value): ignoring
/// it would drop a token or a URL without a word.
fn environment(key: &Key) -> Result<Option<String>> {
    let Some(raw) = std::env::var_os(key.env) else {
        return Ok(None);
    };
    let Ok(raw) = raw.into_string() else {
        bail!(
            "environment variable {}: the value is not valid UTF-8 text",
            key.env
        );
    };
    if raw.trim().is_empty() {
        return Ok(None);
    }
    normalize(key, &raw)
        .map(Some)
        .map_err(|e| Error::new(format!("environment variable {}: {}", key.env, e.message())))
}

/// `https://user:pass@host/x` → `https://***@host/x`: credentials never leave in clear.
/// Everything up to the last '@' is hidden, even past a '/', '?' or '#': a password holding one
/// of those unencoded ends the authority early for a parser, but is still a password (such URLs
/// are refused when set; this covers values stored before).
/// The environment variable a setting falls back to (`TETHER_…`), for tools that say where a
/// value comes from.
pub fn environment_variable(name: &str) -> Option<&'static str> {
    KEYS.iter().find(|k| k.name == name).map(|k| k.env)
}

pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.rfind('@') {
        Some(at) => format!("{scheme}://{REDACTED}@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// What `redact_url` hides: everything between `scheme://` and the last '@', if any.
pub(crate) fn url_userinfo(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    rest.rfind('@').map(|at| &rest[..at])
}

/// A header whose value is a secret by its name: redacted by `tether_config`, scrubbed from
/// anything quoted from a server answer.
pub(crate) fn is_secret_header(name: &str) -> bool {
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
}

fn redact_headers(headers: Json) -> Json {
    let Json::Object(map) = headers else {
        return headers;
    };
    Json::Object(
        map.into_iter()
            .map(|(k, v)| {
                if is_secret_header(&k) {
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
            let name = required_text(ctx, 0, "the setting name")?;
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
            let name = required_text(ctx, 0, "the setting name")?;
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
    fn urls_lose_credentials_when_shown() {
        assert_eq!(
            redact_url("https://u:p@h.example/x"),
            "https://***@h.example/x"
        );
        assert_eq!(redact_url("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
        // A password with an unencoded '/', '?' or '#' (refused when set, but maybe stored).
        for url in [
            "http://u:9/pw@h:8/tether/pull",
            "http://u:9?pw@h:8/tether/pull",
            "http://u:9#pw@h:8/tether/pull",
        ] {
            assert_eq!(redact_url(url), "http://***@h:8/tether/pull", "{url}");
        }
        // An '@' after the host (refused when set) hides more than needed, never less.
        assert_eq!(redact_url("https://u:p@h.example/x@y"), "https://***@y");
        assert_eq!(url_userinfo("http://h/x"), None);
        assert_eq!(url_userinfo("http://u:p@h/x"), Some("u:p"));
    }
}
