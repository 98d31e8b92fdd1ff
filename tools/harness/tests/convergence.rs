//! Several clients make random offline changes and sync in random order; in the end every
//! client equals the server. The seed is printed; TETHER_SEED=N replays a run.
use std::collections::BTreeMap;

use rusqlite::Connection;
use tether_harness::*;

const TASK: &str = r#"{"name": "Task", "fields": {"title": "required|max:40", "priority": "nullable|integer"}, "soft_deletes": true}"#;

fn state(conn: &Connection) -> BTreeMap<String, (String, Option<i64>)> {
    conn.prepare("SELECT tether_id, title, priority FROM tasks")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn random_change(rng: &mut Rng, conn: &Connection, who: usize, step: usize) {
    let ids: Vec<i64> = column(conn, "SELECT id FROM tasks");
    let title = format!("c{who} s{step} r{}", rng.below(1000));
    match (rng.below(10), ids.is_empty()) {
        (0..=3, _) | (_, true) => {
            conn.execute(
                "INSERT INTO tasks (title, priority) VALUES (?1, ?2)",
                (&title, rng.below(5) as i64),
            )
            .unwrap();
        }
        (4..=7, false) => {
            let id = ids[rng.below(ids.len() as u64) as usize];
            conn.execute(
                "UPDATE tasks SET title = ?1, priority = ?2 WHERE id = ?3",
                (&title, rng.below(5) as i64, id),
            )
            .unwrap();
        }
        _ => {
            let id = ids[rng.below(ids.len() as u64) as usize];
            conn.execute("DELETE FROM tasks WHERE id = ?1", [id])
                .unwrap();
        }
    }
}

#[test]
fn random_offline_changes_converge() {
    let seed: u64 = std::env::var("TETHER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| now_ms() as u64 | 1);
    println!("TETHER_SEED={seed}");
    let mut rng = Rng(seed);
    let server = Server::start(&["--model", TASK]);
    let clients: Vec<(tempfile::TempDir, Connection)> = (0..3)
        .map(|i| {
            let (dir, path) = temp_db();
            let conn = open_loaded(&path);
            conn.execute_batch("CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT NOT NULL, priority INTEGER); SELECT tether_track('tasks');").unwrap();
            conn.query_row("SELECT tether_config('server_url', ?1)", [&server.url], |_| Ok(())).unwrap();
            // Small batches and pages so paging paths run too.
            conn.query_row("SELECT tether_config('push_batch_size', ?1)", [[2, 0, 5][i]], |_| Ok(())).unwrap();
            conn.query_row("SELECT tether_config('pull_page_size', ?1)", [[3, 1, 100][i]], |_| Ok(())).unwrap();
            (dir, conn)
        })
        .collect();
    for step in 0..12 {
        for (who, (_, conn)) in clients.iter().enumerate() {
            for _ in 0..rng.below(4) {
                random_change(&mut rng, conn, who, step);
            }
        }
        for _ in 0..rng.below(4) {
            let who = rng.below(clients.len() as u64) as usize;
            let result = json(&clients[who].1, "SELECT tether_sync()");
            assert_eq!(result["pull_errors"], 0, "seed {seed}: {result}");
        }
        std::thread::sleep(std::time::Duration::from_millis(rng.below(3)));
    }
    for _ in 0..2 {
        for (_, conn) in &clients {
            json(conn, "SELECT tether_sync()");
        }
    }
    let server_state: BTreeMap<String, (String, Option<i64>)> = server
        .rows("any")
        .into_iter()
        .map(|(k, v)| {
            (
                k,
                (
                    v["title"].as_str().unwrap().to_string(),
                    v["priority"].as_i64(),
                ),
            )
        })
        .collect();
    for (who, (_, conn)) in clients.iter().enumerate() {
        assert_eq!(
            state(conn),
            server_state,
            "seed {seed}: client {who} differs from the server"
        );
        assert_eq!(
            json(conn, "SELECT tether_status()")["pending"],
            0,
            "seed {seed}"
        );
    }
}
