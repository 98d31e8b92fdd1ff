//! Errors that say what to do, in the command line's own terms: the extension's messages suggest
//! SQL (`SELECT tether_config('server_url', …)`), which is right in SQL and wrong here, so those
//! suggestions become `tether config …` commands. And which errors are about the configuration
//! (retrying cannot help: `watch` stops on them) rather than the moment (the network, the server
//! being down).

/// `message` with each SQL suggestion `[SELECT ]tether_config('KEY', 'VALUE')` (two arguments)
/// written as the command doing the same, and `tether_track("T", options)` as `tether track T`.
pub fn for_cli(message: &str) -> String {
    let message = tether_config_calls(message);
    tether_track_calls(&message).replace("tether_status()", "`tether status`")
}

fn tether_config_calls(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find("tether_config(") {
        let call = &rest[at + "tether_config(".len()..];
        let translated = call.find(')').and_then(|end| {
            let args = quoted_args(&call[..end])?;
            let [Some(key), value] = args.as_slice() else {
                return None;
            };
            let value = match value.as_deref() {
                None => "--unset".to_string(),
                Some("https://your-server.example" | "http://your-server.example") => {
                    "URL".to_string()
                }
                Some(same @ ("TOKEN" | "…")) => same.to_string(),
                Some(other) => shell_word(other),
            };
            Some((format!("tether config {key} {value}"), end + 1))
        });
        match translated {
            Some((command, length)) => {
                let before = &rest[..at];
                let before = before.strip_suffix("SELECT ").unwrap_or(before);
                out.push_str(before);
                out.push_str(&command);
                rest = &call[length..];
            }
            None => {
                out.push_str(&rest[..at + "tether_config(".len()]);
                rest = call;
            }
        }
    }
    out.push_str(rest);
    out
}

/// `'a', NULL` → `[Some("a"), None]`; `None` unless every argument is a single-quoted SQL
/// literal or NULL.
fn quoted_args(text: &str) -> Option<Vec<Option<String>>> {
    let mut args = Vec::new();
    let mut chars = text.trim().chars().peekable();
    loop {
        if chars.peek() == Some(&'…') {
            chars.next();
            args.push(Some("…".to_string()));
        } else if chars.peek() == Some(&'N') {
            let word: String = chars.by_ref().take(4).collect();
            if word != "NULL" {
                return None;
            }
            args.push(None);
        } else {
            args.push(Some(quoted(&mut chars)?));
        }
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        match chars.next() {
            None => return Some(args),
            Some(',') => {
                while chars.peek() == Some(&' ') {
                    chars.next();
                }
            }
            Some(_) => return None,
        }
    }
}

/// One single-quoted SQL literal, its quotes doubled inside.
fn quoted(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<String> {
    if chars.next()? != '\'' {
        return None;
    }
    let mut arg = String::new();
    loop {
        match chars.next()? {
            '\'' if chars.peek() == Some(&'\'') => {
                chars.next();
                arg.push('\'');
            }
            '\'' => return Some(arg),
            c => arg.push(c),
        }
    }
}

fn tether_track_calls(message: &str) -> String {
    let Some(at) = message.find("call tether_track(") else {
        return message.to_string();
    };
    let call = &message[at + "call tether_track(".len()..];
    let Some(end) = call.find(", options)") else {
        return message.to_string();
    };
    let table = call[..end].trim_matches('"');
    format!(
        "{}run `tether track {} --columns A,B` (or `--except C`){}",
        &message[..at],
        shell_word(table),
        &call[end + ", options)".len()..]
    )
}

/// `text` as one shell word: as it is when it needs no quoting, else in single quotes.
pub fn shell_word(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@%+=,*".contains(c));
    if plain {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// The status of an error answer, as the transport words it (`answered HTTP 404`).
pub fn http_status(message: &str) -> Option<u16> {
    let at = message.find("answered HTTP ")? + "answered HTTP ".len();
    let digits = message.get(at..at + 3)?;
    digits.parse().ok()
}

/// Whether retrying as it is cannot help: nothing to sync with, the server refusing the
/// credentials or the address, TLS set up wrong, a setting out of range. A network that is
/// down, a timeout, a server error (5xx), 408 or 429 are worth retrying.
pub fn is_configuration_error(message: &str) -> bool {
    if let Some(status) = http_status(message) {
        return (300..400).contains(&status)
            || matches!(status, 400 | 401 | 403 | 404 | 405 | 410 | 422);
    }
    [
        "no server configured",
        "seems to speak plain HTTP",
        "invalid peer certificate",
        "ca_file",
        "max_response_bytes",
        "environment variable TETHER_",
        "no client id",
    ]
    .iter()
    .any(|needle| message.contains(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_suggestions_become_commands() {
        assert_eq!(
            for_cli("no server configured (server_url, or push_url): SELECT tether_config('server_url', 'https://your-server.example')"),
            "no server configured (server_url, or push_url): tether config server_url URL"
        );
        assert_eq!(
            for_cli("set it with SELECT tether_config('auth_token', 'TOKEN') or TETHER_AUTH_TOKEN"),
            "set it with tether config auth_token TOKEN or TETHER_AUTH_TOKEN"
        );
        assert_eq!(
            for_cli("raise it with tether_config('max_response_bytes', …)"),
            "raise it with tether config max_response_bytes …"
        );
        assert_eq!(
            for_cli("use SELECT tether_config('server_url', 'http://h:1/a b')."),
            "use tether config server_url 'http://h:1/a b'."
        );
        assert_eq!(
            for_cli("or remove it (SELECT tether_config('push_url', NULL)) to use"),
            "or remove it (tether config push_url --unset) to use"
        );
        // Not a suggestion with two literals: left alone.
        assert_eq!(
            for_cli("tether_config(key, NULL) removes it"),
            "tether_config(key, NULL) removes it"
        );
        assert_eq!(
            for_cli("renamed?): call tether_track(\"notes\", options) naming the columns"),
            "renamed?): run `tether track notes --columns A,B` (or `--except C`) naming the columns"
        );
    }

    #[test]
    fn configuration_errors_are_told_from_passing_ones() {
        for message in [
            "POST http://h/tether/push answered HTTP 401: \"x\"",
            "POST http://h/tether/push answered HTTP 404: \"x\"",
            "POST http://h/tether/push answered HTTP 302 redirecting to …",
            "no server configured (server_url, or push_url): …",
            "POST https://h/tether/push failed: io: … — the server seems to speak plain HTTP, not HTTPS",
        ] {
            assert!(is_configuration_error(message), "{message}");
        }
        for message in [
            "POST http://h/tether/push failed: connection refused",
            "POST http://h/tether/push failed: timed out",
            "POST http://h/tether/push answered HTTP 503: \"x\"",
            "POST http://h/tether/push answered HTTP 429: \"x\"",
            "lost the sync lock to another cycle",
        ] {
            assert!(!is_configuration_error(message), "{message}");
        }
    }
}
