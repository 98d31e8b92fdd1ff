//! tether_config: persistence, validation, secrets, per-connection values.
use tether_harness::*;

#[test]
fn settings_persist_for_every_connection() {
    let (_dir, path) = temp_db();
    let a = open_loaded(&path);
    let set: String = a
        .query_row(
            "SELECT tether_config('server_url', 'https://api.example.com/')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(set, "https://api.example.com/");
    let b = open_loaded(&path);
    let push: String = b
        .query_row("SELECT tether_config('push_url')", [], |r| r.get(0))
        .unwrap();
    assert_eq!(push, "https://api.example.com/tether/push");
    let all = json(&b, "SELECT tether_config()");
    assert_eq!(all["pull_url"], "https://api.example.com/tether/pull");
    assert_eq!(all["push_batch_size"], 100);
    assert_eq!(all["sync_lock"], true);
    assert_eq!(all["pull_page_size"], serde_json::Value::Null);
    b.query_row("SELECT tether_config('push_batch_size', '0')", [], |_| {
        Ok(())
    })
    .unwrap();
    assert_eq!(json(&a, "SELECT tether_config()")["push_batch_size"], 0);
    b.query_row("SELECT tether_config('push_batch_size', NULL)", [], |_| {
        Ok(())
    })
    .unwrap();
    assert_eq!(
        json(&a, "SELECT tether_config()")["push_batch_size"],
        100,
        "NULL restores the default"
    );
}

#[test]
fn bad_values_name_the_key_and_store_nothing() {
    let (_dir, path) = temp_db();
    let conn = open_loaded(&path);
    for (key, value, expect) in [
        ("push_batch_size", "-1", "push_batch_size"),
        ("push_batch_size", "'many'", "push_batch_size"),
        ("server_url", "'api.example.com'", "server_url"),
        ("headers", "'not json'", "headers"),
        ("headers", "'{\"X-A\": 1}'", "headers"),
        ("debug_level", "4", "debug_level"),
        ("sync_lock", "'maybe'", "sync_lock"),
        ("timeout_ms", "0", "timeout_ms"),
        ("no_such_key", "1", "unknown setting"),
    ] {
        let err = error_of(&conn, &format!("SELECT tether_config('{key}', {value})"));
        assert!(err.contains(expect), "{key}={value}: {err}");
    }
    let stored: i64 = conn
        .query_row("SELECT count(*) FROM tether_settings", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, 0);
}

#[test]
fn the_token_never_shows_and_can_live_in_one_connection() {
    let (_dir, path) = temp_db();
    let conn = open_loaded(&path);
    let shown: String = conn
        .query_row(
            "SELECT tether_config('auth_token', 'tok-secret-1', 'connection')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(shown, "***");
    assert_eq!(json(&conn, "SELECT tether_config()")["auth_token"], "***");
    let stored: i64 = conn
        .query_row("SELECT count(*) FROM tether_settings", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        stored, 0,
        "a connection-scoped token is not written to the file"
    );
    let other = open_loaded(&path);
    assert_eq!(
        json(&other, "SELECT tether_config()")["auth_token"],
        serde_json::Value::Null
    );

    conn.query_row(
        "SELECT tether_config('auth_token', 'tok-secret-2')",
        [],
        |_| Ok(()),
    )
    .unwrap();
    conn.query_row(
        "SELECT tether_config('server_url', 'https://user:pw@api.example.com')",
        [],
        |_| Ok(()),
    )
    .unwrap();
    conn.query_row(
        "SELECT tether_config('headers', '{\"X-Api-Key\": \"k-secret\", \"X-Trace\": \"on\"}')",
        [],
        |_| Ok(()),
    )
    .unwrap();
    let everything = format!(
        "{} {} {}",
        json(&conn, "SELECT tether_config()"),
        json(&conn, "SELECT tether_status()"),
        error_of(&conn, "SELECT tether_config('auth_token', '')"),
    );
    for secret in ["tok-secret", "pw@", "k-secret"] {
        assert!(
            !everything.contains(secret),
            "{secret} leaked: {everything}"
        );
    }
    assert!(
        everything.contains("X-Trace"),
        "harmless headers stay visible"
    );
}

#[test]
fn rejected_values_do_not_echo_secrets() {
    let (_dir, path) = temp_db();
    let conn = open_loaded(&path);
    for call in [
        "tether_config('server_url', 'user:hunter2@api.example.com')",
        "tether_config('push_url', 'ftp://user:hunter2@api.example.com')",
        "tether_config('headers', '{\"Authorization\": \"Bearer hunter2\"')",
        "tether_config('headers', '[\"hunter2\"]')",
        "tether_config('auth_token', 'hunter2' || char(1))",
    ] {
        let err = error_of(&conn, &format!("SELECT {call}"));
        assert!(!err.contains("hunter2"), "{call} leaked: {err}");
    }
}

#[test]
fn scope_must_be_known() {
    let (_dir, path) = temp_db();
    let conn = open_loaded(&path);
    let err = error_of(&conn, "SELECT tether_config('debug_level', 1, 'galaxy')");
    assert!(err.contains("scope"), "{err}");
}
