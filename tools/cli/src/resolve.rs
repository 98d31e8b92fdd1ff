//! `tether attention`, `tether retry`, `tether discard`: what needs a person, and settling it
//! (the SQL view `tether_attention` and the functions `tether_retry` / `tether_discard`).
use rusqlite::Connection;
use serde_json::{json, Value};

use crate::output::{self, Out};
use crate::{query_json, sql_message};

/// Every row of `tether_attention`, oldest first.
pub fn attention(conn: &Connection, out: &Out) -> Result<u8, String> {
    let rows: Vec<String> = conn
        .prepare(
            "SELECT json_object('kind', kind, 'table', table_name, 'model', model,
                                'sync_key', sync_key, 'local_pk', json(local_pk),
                                'operation', operation, 'reason', reason, 'message', message,
                                'mutation_id', mutation_id, 'retry_count', retry_count,
                                'since', since)
               FROM tether_attention ORDER BY since, sync_key",
        )
        .and_then(|mut stmt| {
            stmt.query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()
        })
        .map_err(sql_message)?;
    let rows: Vec<Value> = rows
        .iter()
        .map(|text| serde_json::from_str(text).unwrap_or(Value::Null))
        .collect();
    if out.json {
        out.json(&json!({ "rows": rows }));
        return Ok(0);
    }
    if rows.is_empty() {
        out.line("nothing needs attention");
        return Ok(0);
    }
    for row in &rows {
        out.line(format!(
            "{:<11} {} row {} ({}) {}: {} {} [since {}]",
            output::shown(&row["kind"]),
            output::shown(&row["table"]),
            output::shown(&row["local_pk"]),
            output::shown(&row["sync_key"]),
            output::shown(&row["operation"]),
            output::shown(&row["reason"]),
            output::shown(&row["message"]),
            output::shown(&row["since"]),
        ));
    }
    if rows.iter().any(|row| row["kind"] != "quarantined") {
        out.note(
            "fix the row and sync, or `tether retry [TABLE [KEY]]` to send it again, or \
             `tether discard TABLE [KEY]` to take the server's version",
        );
    }
    if rows.iter().any(|row| row["kind"] == "quarantined") {
        out.note(
            "quarantined rows are server rows this database refused: they apply by themselves \
             at the end of a pull once the cause (a missing parent, a constraint) is gone",
        );
    }
    Ok(0)
}

/// `tether retry` / `tether discard`: `function` on every row, a table's, or one row.
pub fn settle(
    conn: &Connection,
    function: &str,
    table: Option<String>,
    key: Option<String>,
    out: &Out,
) -> Result<u8, String> {
    let result = match (table, key) {
        (None, _) => query_json(conn, &format!("SELECT {function}()"), [])?,
        (Some(table), None) => query_json(conn, &format!("SELECT {function}(?1)"), [table])?,
        (Some(table), Some(key)) => query_json(
            conn,
            &format!("SELECT {function}(?1, ?2)"),
            // As text: tether finds an integer key from its digits too, and "007" stays "007".
            (table, key),
        )?,
    };
    if out.json {
        out.json(&result);
        return Ok(0);
    }
    let done = if function == "tether_retry" {
        "retried"
    } else {
        "discarded"
    };
    out.line(format!(
        "{done} {} row(s), {} mutation(s) settled",
        result[done], result["mutations"]
    ));
    for row in result["rows"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        out.row(
            &format!(
                "{} {}",
                output::shown(&row["table"]),
                output::shown(&row["primary_key"])
            ),
            format!(
                "{} ({})",
                output::shown(&row["outcome"]),
                output::shown(&row["entity_id"])
            ),
        );
    }
    if result["more_rows"].as_u64().unwrap_or(0) > 0 {
        out.note(format!("… and {} more row(s)", result["more_rows"]));
    }
    if result["skipped"].as_u64().unwrap_or(0) > 0 {
        out.warn(format!(
            "{} row(s) of tables no longer tracked were left as they are",
            result["skipped"]
        ));
    }
    if result["pull_from_start"] == true {
        out.note(
            "rows without a known server version stay as they are until the next pull, which \
             starts from the beginning",
        );
    }
    if function == "tether_retry" && result[done].as_u64().unwrap_or(0) > 0 {
        out.note("queued: `tether sync` sends them");
    }
    Ok(0)
}
