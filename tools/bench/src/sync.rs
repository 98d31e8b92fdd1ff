//! Sync figures, each against a baseline measured in the same run: push vs replaying the same
//! bodies with a bare HTTP client; pull vs replaying the pages and upserting the rows with one
//! prepared statement; tether_status() at scale; a concurrent writer's worst insert latency
//! during a pull; peak memory.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use serde_json::{json, Value};

use crate::{median, spread};

/// A connection with tether linked statically (same engine as the loadable extension).
pub fn open(path: &Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(30)).unwrap();
    tether::register(&conn).unwrap();
    conn
}

pub fn client_db(path: &Path, url: &str) -> Connection {
    let conn = open(path);
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
         CREATE TABLE IF NOT EXISTS tasks (id INTEGER PRIMARY KEY, title TEXT NOT NULL, status TEXT, priority INTEGER);
         SELECT tether_track('tasks', '{\"backfill\": false}');",
    )
    .unwrap();
    conn.query_row("SELECT tether_config('server_url', ?1)", [url], |_| Ok(()))
        .unwrap();
    conn
}

pub fn fill_queue(conn: &Connection, rows: usize) {
    conn.execute_batch("BEGIN").unwrap();
    let mut insert = conn
        .prepare("INSERT INTO tasks (title, status, priority) VALUES (?1, 'open', ?2)")
        .unwrap();
    for i in 0..rows {
        insert
            .execute((format!("task {i}"), (i % 5) as i64))
            .unwrap();
    }
    drop(insert);
    conn.execute_batch("COMMIT").unwrap();
}

pub fn set(conn: &Connection, key: &str, value: &str) {
    conn.query_row("SELECT tether_config(?1, ?2)", [key, value], |_| Ok(()))
        .unwrap();
}

pub fn ratio_line(what: &str, ours: Duration, baseline: Duration, goal: &str) {
    println!(
        "{what:<44} {:>9.0}ms {:>9.0}ms {:>7.2}x   goal {goal}",
        ours.as_secs_f64() * 1e3,
        baseline.as_secs_f64() * 1e3,
        ours.as_secs_f64() / baseline.as_secs_f64()
    );
}

/// [`push_once`] `rounds` times: min / median / max of both sides, the ratio of the medians, and
/// the client's own time per mutation (push minus replay: the server's work and the loopback HTTP
/// are in both, so the difference is what the client adds).
pub fn push(server_binary: &Path, rows: usize, batch: usize, rounds: usize) {
    let samples: Vec<(Duration, Duration)> = (0..rounds)
        .map(|_| push_once(server_binary, rows, batch))
        .collect();
    let ours: Vec<Duration> = samples.iter().map(|s| s.0).collect();
    let replay: Vec<Duration> = samples.iter().map(|s| s.1).collect();
    let own: Vec<f64> = {
        let mut own: Vec<f64> = samples
            .iter()
            .map(|(o, r)| (o.as_secs_f64() - r.as_secs_f64()) * 1e6 / rows as f64)
            .collect();
        own.sort_by(f64::total_cmp);
        own
    };
    println!(
        "push {rows} at batch {batch}, {rounds} rounds (min / median / max, ms)\n  tether_push()   {}\n  HTTP replay     {}\n  ratio of medians {:.2}x   goal <= 1.2x\n  client's own time (push - replay) {:.1} / {:.1} / {:.1} us per mutation",
        spread(&ours),
        spread(&replay),
        median(ours).as_secs_f64() / median(replay).as_secs_f64(),
        own[0],
        own[own.len() / 2],
        own[own.len() - 1],
    );
}

/// Push `rows` pending mutations to a fresh tether-server with tether_push(), against replaying
/// the same request bodies (made by the same engine on a copy of the database) to another fresh
/// server with a bare HTTP client. Returns (push, replay).
fn push_once(server_binary: &Path, rows: usize, batch: usize) -> (Duration, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.db"), dir.path().join("b.db"));
    let (mut server_a, url_a) =
        tether_harness::start_server(server_binary, &["--listen", "127.0.0.1:0", "--quiet"]);
    let (mut server_b, url_b) =
        tether_harness::start_server(server_binary, &["--listen", "127.0.0.1:0", "--quiet"]);
    let conn = client_db(&a, &url_a);
    set(&conn, "push_batch_size", &batch.to_string());
    fill_queue(&conn, rows);
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .unwrap();
    std::fs::copy(&a, &b).unwrap();

    // The bodies the engine sends, made on the copy; answered "applied" to move on.
    let copy = open(&b);
    let mut bodies = Vec::new();
    while let Some(body) = copy
        .query_row("SELECT tether_push_request()", [], |r| {
            r.get::<_, Option<String>>(0)
        })
        .unwrap()
    {
        let ids: Vec<Value> = serde_json::from_str::<Value>(&body).unwrap()["mutations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["mutation_id"].clone())
            .collect();
        copy.query_row(
            "SELECT tether_push_response(?1)",
            [json!({"applied": ids}).to_string()],
            |_| Ok(()),
        )
        .unwrap();
        bodies.push(body);
    }

    let started = Instant::now();
    let result: String = conn
        .query_row("SELECT tether_push()", [], |r| r.get(0))
        .unwrap();
    let ours = started.elapsed();
    assert_eq!(
        serde_json::from_str::<Value>(&result).unwrap()["pushed"],
        rows,
        "{result}"
    );

    let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
    let started = Instant::now();
    for body in &bodies {
        agent
            .post(&format!("{url_b}/tether/push"))
            .header("Content-Type", "application/json")
            .send(body.as_str())
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
    }
    let baseline = started.elapsed();
    for server in [&mut server_a, &mut server_b] {
        let _ = server.kill();
        let _ = server.wait();
    }
    (ours, baseline)
}

/// A server answering pull requests from precomputed pages (page n for cursor n), so the client
/// is what gets measured. Handles keep-alive connections.
pub struct PageServer {
    pub url: String,
}

pub fn snapshot_pages(rows: usize, page: usize) -> Arc<Vec<String>> {
    let count = rows.div_ceil(page);
    Arc::new(
        (0..count)
            .map(|p| {
                let snapshots: Vec<Value> = (p * page..((p + 1) * page).min(rows))
                    .map(|i| {
                        json!({"entity_id": format!("01JDQ9{i:020}"), "model": "Task", "operation": "upsert",
                               "payload": {"id": i, "tether_id": format!("01JDQ9{i:020}"), "title": format!("task {i}"),
                                           "status": "open", "priority": i % 5, "created_at": "2026-11-25T12:00:00.000000Z",
                                           "updated_at": "2026-11-25T12:00:00.000000Z", "deleted_at": null}})
                    })
                    .collect();
                json!({"snapshots": snapshots, "new_sync_cursor": p + 1, "has_more": p + 1 < count}).to_string()
            })
            .collect(),
    )
}

impl PageServer {
    pub fn start(pages: Arc<Vec<String>>) -> PageServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let pages = pages.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    loop {
                        let mut length = 0;
                        let mut line = String::new();
                        loop {
                            line.clear();
                            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            if line.trim().is_empty() {
                                break;
                            }
                            if let Some(v) =
                                line.to_ascii_lowercase().strip_prefix("content-length:")
                            {
                                length = v.trim().parse().unwrap_or(0);
                            }
                        }
                        let mut body = vec![0; length];
                        if reader.read_exact(&mut body).is_err() {
                            return;
                        }
                        let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        let index = request["last_sync_cursor"].as_u64().unwrap_or(0) as usize;
                        let answer = pages
                            .get(index)
                            .map_or("{\"snapshots\": [], \"has_more\": false}", String::as_str);
                        let head = format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", answer.len());
                        if stream
                            .write_all(head.as_bytes())
                            .and_then(|_| stream.write_all(answer.as_bytes()))
                            .is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        PageServer { url }
    }
}

/// Pull `rows` snapshots in pages of `page` with tether_pull(), against replaying the same page
/// requests with a bare HTTP client plus upserting the same rows with one prepared statement in
/// one transaction.
pub fn pull(rows: usize, page: usize) {
    let pages = snapshot_pages(rows, page);
    let server = PageServer::start(pages.clone());
    let dir = tempfile::tempdir().unwrap();
    let conn = client_db(&dir.path().join("pull.db"), &server.url);
    set(&conn, "pull_page_size", &page.to_string());
    let started = Instant::now();
    let result: String = conn
        .query_row("SELECT tether_pull()", [], |r| r.get(0))
        .unwrap();
    let ours = started.elapsed();
    assert_eq!(
        serde_json::from_str::<Value>(&result).unwrap()["pulled"],
        rows,
        "{result}"
    );

    let plain = Connection::open(dir.path().join("plain.db")).unwrap();
    plain
        .execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
             CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT NOT NULL, status TEXT, priority INTEGER, tether_id TEXT UNIQUE);",
        )
        .unwrap();
    let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
    let started = Instant::now();
    let mut texts = Vec::with_capacity(pages.len());
    for p in 0..pages.len() {
        let body = json!({"client_id": "bench", "last_sync_cursor": if p == 0 { Value::Null } else { json!(p) }, "limit": page}).to_string();
        texts.push(
            agent
                .post(&format!("{}/tether/pull", server.url))
                .send(body.as_str())
                .unwrap()
                .body_mut()
                .with_config()
                .limit(1 << 30)
                .read_to_string()
                .unwrap(),
        );
    }
    plain.execute_batch("BEGIN").unwrap();
    {
        let mut upsert = plain
            .prepare(
                "INSERT INTO tasks (tether_id, title, status, priority) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (tether_id) DO UPDATE SET title = excluded.title, status = excluded.status, priority = excluded.priority",
            )
            .unwrap();
        for text in &texts {
            let page: Value = serde_json::from_str(text).unwrap();
            for s in page["snapshots"].as_array().unwrap() {
                let p = &s["payload"];
                upsert
                    .execute((
                        s["entity_id"].as_str(),
                        p["title"].as_str(),
                        p["status"].as_str(),
                        p["priority"].as_i64(),
                    ))
                    .unwrap();
            }
        }
    }
    plain.execute_batch("COMMIT").unwrap();
    let baseline = started.elapsed();
    ratio_line(
        &format!("pull {rows} in pages of {page} (vs replay + upsert)"),
        ours,
        baseline,
        "<= 1.5x",
    );
}

/// tether_status() with `synced` synced and `pending` pending mutations in the log.
pub fn status(synced: usize, pending: usize) {
    let dir = tempfile::tempdir().unwrap();
    let conn = client_db(&dir.path().join("status.db"), "http://127.0.0.1:9");
    fill_queue(&conn, synced);
    // As a push leaves them: rows that went out were indexed by tether's write transactions
    // first (capture leaves that to tether), then marked synced.
    conn.execute_batch(
        "UPDATE tether_mutation_logs SET sync_status = 'synced', synced_at = CURRENT_TIMESTAMP, indexed = 1",
    )
    .unwrap();
    fill_queue(&conn, pending);
    // The pending rows as captured (the tail tether reads from the end of the log), then once
    // a write of tether's (here a setting) put them into the index.
    for when in ["captured since tether last wrote", "after a tether write"] {
        if when == "after a tether write" {
            set(&conn, "push_batch_size", "100");
        }
        let mut times: Vec<Duration> = (0..21)
            .map(|_| {
                let started = Instant::now();
                conn.query_row("SELECT tether_status()", [], |r| r.get::<_, String>(0))
                    .unwrap();
                started.elapsed()
            })
            .collect();
        times.sort();
        println!(
            "{:<44} {:>9.2}ms median, {:.2}ms worst of 21   goal <= 5 ms   ({when})",
            format!("tether_status() with {synced} synced + {pending} pending"),
            times[10].as_secs_f64() * 1e3,
            times[20].as_secs_f64() * 1e3
        );
    }
}

/// [`lock_hold_once`] `runs` times: every run, then the median and the worst of the writer's
/// worst waits.
pub fn lock_hold(rows: usize, page: usize, runs: usize) {
    let mut during = Vec::new();
    for run in 1..=runs.max(1) {
        let (worst, alone) = lock_hold_once(rows, page);
        println!(
            "run {run}: worst writer insert during a {rows}-row pull {:>7.1}ms (with no pull {:>5.1}ms)",
            worst.as_secs_f64() * 1e3,
            alone.as_secs_f64() * 1e3
        );
        during.push(worst);
    }
    during.sort();
    println!(
        "{:<44} median {:>7.1}ms  worst {:>7.1}ms   goal <= 100 ms in every run",
        format!("worst writer insert, {} runs", during.len()),
        during[during.len() / 2].as_secs_f64() * 1e3,
        during[during.len() - 1].as_secs_f64() * 1e3
    );
}

/// The worst latency of single-row inserts by a concurrent writer (its own connection, another
/// table) while a pull of `rows` rows runs, against the same writer with no pull running.
fn lock_hold_once(rows: usize, page: usize) -> (Duration, Duration) {
    let pages = snapshot_pages(rows, page);
    let server = PageServer::start(pages);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lock.db");
    let conn = client_db(&path, &server.url);
    set(&conn, "pull_page_size", &page.to_string());
    conn.execute_batch("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        .unwrap();

    let writer = |stop: Arc<AtomicBool>, path: std::path::PathBuf| {
        std::thread::spawn(move || {
            let conn = Connection::open(&path).unwrap();
            conn.busy_timeout(Duration::from_secs(30)).unwrap();
            let mut worst = Duration::ZERO;
            let mut count = 0;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                conn.execute("INSERT INTO notes (body) VALUES ('x')", [])
                    .unwrap();
                worst = worst.max(started.elapsed());
                count += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            (worst, count)
        })
    };
    let stop = Arc::new(AtomicBool::new(false));
    let during = writer(stop.clone(), path.clone());
    let started = Instant::now();
    conn.query_row("SELECT tether_pull()", [], |r| r.get::<_, String>(0))
        .unwrap();
    let pull_time = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (worst_during, n_during) = during.join().unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let alone = writer(stop.clone(), path.clone());
    std::thread::sleep(pull_time);
    stop.store(true, Ordering::Relaxed);
    let (worst_alone, _) = alone.join().unwrap();
    assert!(n_during > 0, "the writer never got in during the pull");
    (worst_during, worst_alone)
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// In a child process: RSS after opening the database, then peak RSS after `tether_push()` of
/// everything pending (or `tether_pull()` of everything the page server has). Prints the two
/// figures and the result, or the error.
pub fn memory_child(what: &str, db: &Path, url: &str) {
    let conn = open(db);
    conn.query_row("SELECT tether_config('server_url', ?1)", [url], |_| Ok(()))
        .unwrap();
    conn.query_row("SELECT count(*) FROM tether_mutation_logs", [], |r| {
        r.get::<_, i64>(0)
    })
    .unwrap();
    let baseline = rss_kb();
    let sql = if what == "push" {
        "SELECT tether_push()"
    } else {
        "SELECT tether_pull()"
    };
    let result = conn
        .query_row(sql, [], |r| r.get::<_, String>(0))
        .unwrap_or_else(|e| format!("error: {e}"));
    println!("{baseline} {} {result}", peak_rss_kb());
}

/// Peak RSS above the process baseline while pushing `rows` pending mutations to tether-server
/// and pulling `rows` rows, each in a fresh child process: once with the default settings
/// (batches of 100; no `limit`, so the server sends the whole change set as one page, as
/// tether-server and the Laravel server do), once with batches and pages of 1,000.
pub fn memory(server_binary: &Path, rows: usize) {
    for (label, size) in [("defaults", None), ("batch/page 1000", Some(1000))] {
        let dir = tempfile::tempdir().unwrap();
        let (mut server, url) =
            tether_harness::start_server(server_binary, &["--listen", "127.0.0.1:0", "--quiet"]);
        let push_db = dir.path().join("push.db");
        let conn = client_db(&push_db, &url);
        if let Some(size) = size {
            set(&conn, "push_batch_size", &size.to_string());
        }
        fill_queue(&conn, rows);
        drop(conn);
        let pages_server = PageServer::start(snapshot_pages(rows, size.unwrap_or(rows)));
        let pull_db = dir.path().join("pull.db");
        let conn = client_db(&pull_db, &pages_server.url);
        if let Some(size) = size {
            set(&conn, "pull_page_size", &size.to_string());
        }
        drop(conn);
        let me = std::env::current_exe().unwrap();
        for (what, db, url) in [
            ("push", &push_db, &url),
            ("pull", &pull_db, &pages_server.url),
        ] {
            let out = std::process::Command::new(&me)
                .args(["memory-child", what])
                .arg(db)
                .arg(url)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let mut parts = text.splitn(3, ' ');
            let baseline: f64 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
            let peak: f64 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
            let result = parts.next().unwrap_or("").trim();
            let outcome = if result.contains("\"skipped\":false") {
                "done".to_string()
            } else {
                format!("{result} {}", String::from_utf8_lossy(&out.stderr))
            };
            println!(
                "{:<44} {:>8.1}MB {:>8.1}MB   +{:.1} MB above baseline   goal < 100 MB   {outcome}",
                format!("peak RSS, {what} of {rows}, {label}"),
                peak / 1024.0,
                baseline / 1024.0,
                (peak - baseline) / 1024.0
            );
        }
        let _ = server.kill();
        let _ = server.wait();
    }
}
