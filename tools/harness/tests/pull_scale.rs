//! Applying a pulled delete of a parent row does not read the whole child table: the children
//! a local ON DELETE CASCADE would remove are found through the child's foreign key index. Work
//! is counted in SQLite virtual-machine instructions (`vm_work`), not time.
use serde_json::json;
use tether_harness::{key_of, open_loaded, pull_request, temp_db, vm_work};

/// The work of applying a pulled delete of one project that has one task, while `others` tasks
/// belong to other projects.
fn parent_delete_work(others: usize) -> u64 {
    let (_dir, path) = temp_db();
    let conn = open_loaded(&path);
    conn.execute_batch(
        "PRAGMA foreign_keys = ON;
         CREATE TABLE projects (id INTEGER PRIMARY KEY, name TEXT);
         SELECT tether_track('projects');
         CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT,
                             project_id INTEGER REFERENCES projects (id) ON DELETE CASCADE);
         CREATE INDEX tasks_project ON tasks (project_id);
         SELECT tether_track('tasks');
         BEGIN;
         INSERT INTO projects (name) VALUES ('deleted on the server'), ('kept');
         INSERT INTO tasks (title, project_id) VALUES ('child of the deleted one', 1);",
    )
    .unwrap();
    {
        let mut insert = conn
            .prepare("INSERT INTO tasks (title, project_id) VALUES (?1, 2)")
            .unwrap();
        for i in 0..others {
            insert.execute([format!("task {i}")]).unwrap();
        }
    }
    // As after a sync: nothing waits to be sent (a pending queue is read per pulled page).
    conn.execute_batch(
        "UPDATE tether_mutation_logs SET sync_status = 'synced', synced_at = CURRENT_TIMESTAMP;
         COMMIT;",
    )
    .unwrap();
    let project = key_of(&conn, "projects", 1);
    pull_request(&conn);
    let page = json!({"snapshots": [{"entity_id": project, "model": "Project",
                                     "operation": "delete", "payload": []}],
                      "new_sync_cursor": 1, "has_more": false});
    let (work, result) = vm_work(
        &conn,
        "SELECT tether_pull_response(?1)",
        Some(&page.to_string()),
    );
    assert!(result.contains("\"pulled\":1"), "{result}");
    let left: i64 = conn
        .query_row("SELECT count(*) FROM tasks", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        left as usize, others,
        "the cascade removed the deleted project's task only"
    );
    work
}

#[test]
fn a_pulled_parent_delete_does_not_read_the_whole_child_table() {
    let small = parent_delete_work(1_000);
    let large = parent_delete_work(20_000);
    println!("work of applying the delete: {small} with 1,000 other tasks, {large} with 20,000");
    assert!(
        large < small * 2,
        "with 20,000 other tasks the delete took {large} units of work, with 1,000 {small}"
    );
}
