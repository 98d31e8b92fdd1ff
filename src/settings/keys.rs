//! The settings `tether_config` knows: name, environment variable, shape, default, and the
//! validation that turns a raw value into its stored form.
use crate::bail;
use crate::error::{Error, Result};
use serde_json::Value as Json;

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Shape {
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

pub(super) struct Key {
    pub(super) name: &'static str,
    pub(super) env: &'static str,
    pub(super) shape: Shape,
    pub(super) default: Option<&'static str>,
}

pub(super) const KEYS: &[Key] = &[
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
        name: "push_batch_bytes",
        env: "TETHER_PUSH_BATCH_BYTES",
        shape: Shape::Positive,
        default: Some("524288"),
    },
    Key {
        name: "max_response_bytes",
        env: "TETHER_MAX_RESPONSE_BYTES",
        shape: Shape::Positive,
        default: Some("67108864"),
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

pub(super) const REDACTED: &str = "***";

pub(super) fn key(name: &str) -> Result<&'static Key> {
    KEYS.iter().find(|k| k.name == name).ok_or_else(|| {
        let known: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
        Error::new(format!(
            "unknown setting {name:?}; known settings: {}",
            known.join(", ")
        ))
    })
}

/// Checks `raw` for `key` and returns the form it is stored in. Errors name the key and never
/// echo a secret.
pub(super) fn normalize(key: &Key, raw: &str) -> Result<String> {
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
            // The authority ends at the first '/', '?' or '#'. An '@' after it is, nearly always,
            // a password holding one of those unencoded: the HTTP library then takes the user
            // name for the host and sends the rest of the password in the path, and the
            // password no longer looks like one to anything that hides credentials.
            let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            if rest[authority_end..].contains('@') {
                bail!(
                    "{name} has an '@' after the end of its host, which makes it ambiguous (a \
                     password holding '/', '?' or '#' ends the host early); percent-encode the \
                     password ('/' as %2F, '?' as %3F, '#' as %23, '@' as %40), got {:?}",
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
                // No control character can be sent in a header value but the tab: anything else
                // would be stored, then fail every request without naming the header.
                if v.as_str()
                    .is_none_or(|s| s.chars().any(|c| c.is_control() && c != '\t'))
                {
                    bail!(
                        "{name}: the value of header {header:?} must be text without control \
                         characters (line breaks included)"
                    );
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
        for url in [
            "http://u:9/pw-77@h:8",
            "http://u:9?pw-77@h:8",
            "http://u:9#pw-77@h:8",
            "https://h/a@b",
        ] {
            let err = normalize(key("server_url").unwrap(), url).unwrap_err();
            let message = err.message();
            assert!(message.contains("server_url"), "{message}");
            assert!(message.contains("percent-encode"), "{message}");
            assert!(!message.contains("pw-77"), "{message}");
        }
        assert!(normalize(key("push_url").unwrap(), "https://u:p%2F@h/tether/push").is_ok());
        let headers = key("headers").unwrap();
        for bad in ["a\u{1}b", "a\rb", "a\u{7f}b", "a\u{85}b"] {
            let err =
                normalize(headers, &serde_json::json!({"X-Api-Key": bad}).to_string()).unwrap_err();
            assert!(err.message().contains("X-Api-Key"), "{err}");
        }
        assert!(normalize(headers, r#"{"X-Trace": "a\tb"}"#).is_ok());
        let secret_err = normalize(key("auth_token").unwrap(), "bad\ntoken").unwrap_err();
        assert!(!secret_err.message().contains("bad"), "{secret_err}");
        assert_eq!(
            normalize(key("sync_lock").unwrap(), "OFF").unwrap(),
            "false"
        );
    }
}
