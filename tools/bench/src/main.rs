//! `tether-bench capture [ROWS] [ROUNDS] [unique] [on_sync]`: capture overhead of INSERT, UPDATE and DELETE on a
//! tracked table against the same statements on an untracked copy, side by side in one run,
//! from a writer connection that loaded the extension, from one that did not, and from one that
//! did not but keeps temporary files in memory (`PRAGMA temp_store = MEMORY`: the statement
//! journal SQLite gives every write to a table whose triggers call functions then never spills
//! to a file; BENCHMARKS.md). With `on_sync` the table is tracked with `{"keys": "on_sync"}`:
//! the keys are then given by a pass that runs when a sync starts, timed on its own after the
//! INSERTs (and before the UPDATEs, which then change keyed rows, as after a sync).
//!
//! With TETHER_BENCH_AFTER_TRACK set to SQL files (separated by `:`), they run right after tracking
//! in every round: they replace generated triggers with variants (`bench/variants/`), to measure
//! what a trigger's parts cost in the same method (BENCHMARKS.md, "The floor of an UPDATE and a DELETE").
//!
//! Set TETHER_EXTENSION to a release build (`cargo build --release` at the repository root)
//! for meaningful figures; the debug build is used otherwise.
use std::time::{Duration, Instant};

mod sync;

use rusqlite::Connection;
use tether_harness::{load, open_loaded, open_plain};

const SCHEMA: &str =
    "(id INTEGER PRIMARY KEY, title TEXT NOT NULL, status TEXT, priority INTEGER, due_date TEXT)";
/// The same with a UNIQUE column: its tracked copy also gets the REPLACE-watch triggers.
const SCHEMA_UNIQUE: &str =
    "(id INTEGER PRIMARY KEY, title TEXT NOT NULL UNIQUE, status TEXT, priority INTEGER, due_date TEXT)";

#[derive(Clone, Copy, PartialEq)]
enum Writer {
    Loaded,
    Plain,
    PlainTempInMemory,
}

impl Writer {
    fn name(self) -> &'static str {
        match self {
            Writer::Loaded => "loaded",
            Writer::Plain => "plain",
            Writer::PlainTempInMemory => "plain, temp_store=MEMORY",
        }
    }
}

/// Times one operation over `rows` rows on `table`, in one transaction with one prepared statement.
fn time_op(conn: &Connection, table: &str, op: &str, rows: i64) -> Duration {
    let sql = match op {
        "insert" => format!("INSERT INTO {table} (title, status, priority, due_date) VALUES (?1, 'open', ?2, '2026-12-01')"),
        "update" => format!("UPDATE {table} SET title = ?1, priority = ?2 WHERE id = ?3"),
        _ => format!("DELETE FROM {table} WHERE id = ?1"),
    };
    let start = Instant::now();
    conn.execute_batch("BEGIN").unwrap();
    {
        let mut stmt = conn.prepare(&sql).unwrap();
        for i in 1..=rows {
            match op {
                "insert" => stmt.execute((format!("task {i}"), i % 5)).unwrap(),
                "update" => stmt
                    .execute((format!("edited {i}"), (i + 1) % 5, i))
                    .unwrap(),
                _ => stmt.execute([i]).unwrap(),
            };
        }
    }
    conn.execute_batch("COMMIT").unwrap();
    start.elapsed()
}

pub fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// "min / median / max" of the samples, in milliseconds.
pub fn spread(samples: &[Duration]) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let min = samples.iter().min().copied().unwrap_or_default();
    let max = samples.iter().max().copied().unwrap_or_default();
    format!(
        "{:.1} / {:.1} / {:.1}",
        ms(min),
        ms(median(samples.to_vec())),
        ms(max)
    )
}

fn capture(rows: i64, rounds: usize, unique: bool, keys_on_sync: bool) {
    let schema = if unique { SCHEMA_UNIQUE } else { SCHEMA };
    let options = if keys_on_sync {
        r#"{"backfill": false, "keys": "on_sync"}"#
    } else {
        r#"{"backfill": false}"#
    };
    println!("capture overhead: {rows} rows per operation, one transaction each, {rounds} rounds (a fresh database each)");
    println!("table: {schema}, tracked with {options}");
    if let Ok(variant) = std::env::var("TETHER_BENCH_AFTER_TRACK") {
        println!("then, in every round: {variant}");
    }
    println!("baseline: the same statements on an untracked table of the same shape, same connection, same run");
    println!("times in ms, min / median / max of the rounds; ratio = median tracked / median untracked\n");
    println!(
        "{:<26} {:<9} {:>26} {:>26} {:>8}",
        "writer", "operation", "untracked", "tracked", "ratio"
    );
    for writer in [Writer::Loaded, Writer::Plain, Writer::PlainTempInMemory] {
        let mut samples: Vec<[(Duration, Duration); 3]> = Vec::new();
        let mut key_passes: Vec<Duration> = Vec::new();
        for round in 0..rounds {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("bench.db");
            let setup = open_loaded(&path);
            setup
                .execute_batch(&format!(
                    "PRAGMA journal_mode = WAL; CREATE TABLE untracked {schema}; CREATE TABLE tracked {schema};
                     SELECT tether_track('tracked', '{options}');"
                ))
                .unwrap();
            if let Ok(variants) = std::env::var("TETHER_BENCH_AFTER_TRACK") {
                for variant in variants.split(':') {
                    let sql = std::fs::read_to_string(variant)
                        .unwrap_or_else(|e| panic!("TETHER_BENCH_AFTER_TRACK {variant}: {e}"));
                    setup.execute_batch(&sql).unwrap();
                }
            }
            let conn = open_plain(&path);
            match writer {
                Writer::Loaded => load(&conn).unwrap(),
                Writer::Plain => {}
                Writer::PlainTempInMemory => {
                    conn.execute_batch("PRAGMA temp_store = MEMORY").unwrap()
                }
            }
            let mut ops = [(Duration::ZERO, Duration::ZERO); 3];
            let mut key_pass = Duration::ZERO;
            for (i, op) in ["insert", "update", "delete"].into_iter().enumerate() {
                if op == "update" && keys_on_sync {
                    // What a sync does first (tether_pull_request runs the same pass).
                    let start = Instant::now();
                    setup
                        .query_row("SELECT tether_pull_request()", [], |_| Ok(()))
                        .unwrap();
                    key_pass = start.elapsed();
                    let keyless: i64 = conn
                        .query_row(
                            "SELECT count(*) FROM tracked WHERE tether_id IS NULL",
                            [],
                            |r| r.get(0),
                        )
                        .unwrap();
                    assert_eq!(keyless, 0, "every row got its key");
                }
                // Alternate which table goes first, so warm-up favours neither.
                let (base, tracked) = if round % 2 == 0 {
                    let b = time_op(&conn, "untracked", op, rows);
                    (b, time_op(&conn, "tracked", op, rows))
                } else {
                    let t = time_op(&conn, "tracked", op, rows);
                    (time_op(&conn, "untracked", op, rows), t)
                };
                ops[i] = (base, tracked);
            }
            let captured: i64 = conn
                .query_row("SELECT count(*) FROM tether_mutation_logs", [], |r| {
                    r.get(0)
                })
                .unwrap();
            assert_eq!(captured, 3 * rows, "every write was captured");
            samples.push(ops);
            key_passes.push(key_pass);
        }
        for (i, op) in ["INSERT", "UPDATE", "DELETE"].into_iter().enumerate() {
            let base: Vec<Duration> = samples.iter().map(|s| s[i].0).collect();
            let tracked: Vec<Duration> = samples.iter().map(|s| s[i].1).collect();
            println!(
                "{:<26} {op:<9} {:>26} {:>26} {:>7.2}x",
                writer.name(),
                spread(&base),
                spread(&tracked),
                median(tracked.clone()).as_secs_f64() / median(base.clone()).as_secs_f64()
            );
            if i == 0 && keys_on_sync {
                let with_keys: Vec<Duration> = samples
                    .iter()
                    .zip(&key_passes)
                    .map(|(s, k)| s[0].1 + *k)
                    .collect();
                println!(
                    "{:<26} {:<9} {:>26} {:>26} {:>7.2}x",
                    writer.name(),
                    "+ keys",
                    "(the pass alone)",
                    spread(&key_passes),
                    median(with_keys).as_secs_f64() / median(base.clone()).as_secs_f64()
                );
            }
        }
    }
}

fn post(agent: &ureq::Agent, url: &str, body: &str) -> String {
    agent
        .post(url)
        .send(body)
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap()
}

fn rate_line(what: &str, took: Duration, count: usize, unit: &str) {
    let rate = count as f64 / took.as_secs_f64();
    println!(
        "{what:<34} {:>8.0}ms {rate:>9.0} {unit}",
        took.as_secs_f64() * 1e3
    );
}

/// `tether-bench server [ROWS]`: how fast the reference server takes pushes and serves pulls,
/// so client benchmarks know it is not their bottleneck.
fn server(rows: usize) {
    let binary = std::env::current_exe()
        .unwrap()
        .with_file_name("tether-server");
    let (mut child, url) =
        tether_harness::start_server(&binary, &["--listen", "127.0.0.1:0", "--quiet"]);
    let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
    println!("tether-server throughput, {rows} rows, client and server on this machine (loopback HTTP)\n");
    println!("{:<34} {:>10} {:>14}", "operation", "time", "rate");
    let mut n = 0u64;
    for batch in [100usize, 1000] {
        let start = Instant::now();
        for chunk in (0..rows).collect::<Vec<_>>().chunks(batch) {
            let mutations: Vec<serde_json::Value> = chunk
                .iter()
                .map(|_| {
                    n += 1;
                    serde_json::json!({"mutation_id": format!("M{batch}-{n:020}"), "entity_id": format!("E{batch}-{n:020}"),
                        "model": "Task", "operation": "create", "payload": {"title": format!("task {n}"), "status": "open", "priority": 2},
                        "version": 1, "timestamp": 1_764_072_000_000i64})
                })
                .collect();
            let body =
                serde_json::json!({"client_id": "bench", "mutations": mutations}).to_string();
            let text = post(&agent, &format!("{url}/tether/push"), &body);
            assert!(text.starts_with("{\"applied\""), "{text}");
        }
        let took = start.elapsed();
        rate_line(&format!("push, batches of {batch}"), took, rows, "mut/s");
    }
    let start = Instant::now();
    let (mut cursor, mut pulled) = (serde_json::Value::Null, 0usize);
    loop {
        let body =
            serde_json::json!({"client_id": "bench", "last_sync_cursor": cursor, "limit": 1000})
                .to_string();
        let text = post(&agent, &format!("{url}/tether/pull"), &body);
        let page: serde_json::Value = serde_json::from_str(&text).unwrap();
        pulled += page["snapshots"].as_array().unwrap().len();
        cursor = page["new_sync_cursor"].clone();
        if page["has_more"] != true {
            break;
        }
    }
    let took = start.elapsed();
    assert_eq!(pulled, 2 * rows, "every pushed row is pulled once");
    rate_line("pull, pages of 1000", took, pulled, "rows/s");
    let _ = child.kill();
    let _ = child.wait();
}

fn number(args: &[String], index: usize, default: usize) -> usize {
    args.get(index)
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn header(what: &str) {
    println!("{what}: tether (ours) against a baseline measured in the same run\n");
    println!(
        "{:<44} {:>11} {:>11} {:>8}",
        "figure", "ours", "baseline", "ratio"
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("capture") => {
            let rows = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100_000);
            let rounds = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(5);
            let flag = |name: &str| args.iter().skip(4).any(|a| a == name);
            capture(rows, rounds, flag("unique"), flag("on_sync"));
        }
        Some("server") => server(args.get(2).and_then(|s| s.parse().ok()).unwrap_or(50_000)),
        Some("push") => {
            let rows = number(&args, 2, 100_000);
            let binary = std::env::current_exe()
                .unwrap()
                .with_file_name("tether-server");
            let rounds = number(&args, 3, 5);
            for batch in [100, 1000] {
                sync::push(&binary, rows, batch, rounds);
            }
        }
        Some("pull") => {
            header("pull");
            sync::pull(number(&args, 2, 100_000), 1000);
        }
        Some("status") => sync::status(number(&args, 2, 1_000_000), number(&args, 3, 10_000)),
        Some("lock") => sync::lock_hold(number(&args, 2, 100_000), 1000, number(&args, 3, 5)),
        Some("memory") => {
            let binary = std::env::current_exe()
                .unwrap()
                .with_file_name("tether-server");
            header("memory");
            sync::memory(&binary, number(&args, 2, 1_000_000));
        }
        Some("memory-child") => {
            sync::memory_child(&args[2], std::path::Path::new(&args[3]), &args[4])
        }
        _ => {
            eprintln!(
                "usage: tether-bench capture [ROWS=100000] [ROUNDS=5] | server [ROWS=50000] | push [ROWS=100000] [ROUNDS=5]\n\
                 \x20      | pull [ROWS=100000] | status [SYNCED=1000000] [PENDING=10000] | lock [ROWS=100000]\n\
                 \x20      | memory [ROWS=1000000]"
            );
            std::process::exit(2);
        }
    }
}
