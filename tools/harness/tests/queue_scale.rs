//! The work of preparing one push batch does not grow with the length of the queue: a push of
//! N pending mutations stays linear in N. Work is counted in SQLite virtual-machine instructions
//! (a progress handler sees every statement on the connection, tether's own included), which
//! depends on the queries, not on the machine's speed.
use serde_json::json;
use tether_harness::{
    apply_snapshots, key_of, mutation_ids, open_loaded, pull_request, set_config, temp_db, vm_work,
};

/// The work of the first `tether_push_request()` (a batch of 100) and of recording the server's
/// answer, with `pending` mutations queued. With `trouble`, a pulled snapshot of the last row
/// waits for its pending change, and the answer refuses ten of the hundred.
fn first_batch_work(pending: usize, trouble: bool) -> (u64, u64) {
    let (_dir, path) = temp_db();
    let conn = open_loaded(&path);
    conn.execute_batch(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT);
         SELECT tether_track('tasks');",
    )
    .unwrap();
    conn.execute_batch("BEGIN").unwrap();
    {
        let mut insert = conn
            .prepare("INSERT INTO tasks (title) VALUES (?1)")
            .unwrap();
        for i in 0..pending {
            insert.execute([format!("task {i}")]).unwrap();
        }
    }
    conn.execute_batch("COMMIT").unwrap();
    // Capture leaves its rows out of the queue's index of unsynced rows; tether's next write
    // transaction (this one) puts them in, once. What is measured below is a batch's own work.
    set_config(&conn, "push_batch_size", 100);
    if trouble {
        let last = key_of(&conn, "tasks", pending as i64);
        pull_request(&conn);
        apply_snapshots(
            &conn,
            &[(&last, "Task", "upsert", json!({"title": "from the server"}))],
        );
        let waiting: i64 = conn
            .query_row("SELECT count(*) FROM tether_deferred_snapshots", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(
            waiting, 1,
            "the snapshot waits for the row's pending change"
        );
    }
    let (request, body) = vm_work(&conn, "SELECT tether_push_request()", None);
    let ids = mutation_ids(&serde_json::from_str(&body).unwrap());
    let refused = if trouble { 10 } else { 0 };
    let answer = json!({
        "applied": ids[refused..],
        "rejected": ids[..refused].iter().map(|id| json!({
            "mutation_id": id, "reason": "validation_failed",
            "data": {"messages": {"title": ["The title is not allowed."]}}
        })).collect::<Vec<_>>(),
    });
    let (response, result) = vm_work(
        &conn,
        "SELECT tether_push_response(?1)",
        Some(&answer.to_string()),
    );
    let result: serde_json::Value = serde_json::from_str(&result).unwrap();
    assert_eq!(result["failed"], refused, "{result}");
    (request, response)
}

/// Twenty times the queue: the batch is the same 100 mutations, so the work stays about the same
/// (b-tree depth grows a little). A scan of every pending mutation per batch multiplies it.
fn assert_flat(trouble: bool) {
    let small = first_batch_work(1_000, trouble);
    let large = first_batch_work(20_000, trouble);
    println!("work of the first batch (request, answer): {small:?} with 1,000 queued, {large:?} with 20,000");
    assert!(
        large.0 < small.0 * 2,
        "preparing a batch with 20,000 queued took {} units of work, with 1,000 queued {}",
        large.0,
        small.0
    );
    assert!(
        large.1 < small.1 * 2,
        "recording the answer with 20,000 queued took {} units of work, with 1,000 queued {}",
        large.1,
        small.1
    );
}

#[test]
fn preparing_a_push_batch_does_not_scan_the_whole_queue() {
    assert_flat(false);
}

#[test]
fn refusals_and_a_waiting_snapshot_do_not_make_a_batch_scan_the_whole_queue() {
    assert_flat(true);
}
