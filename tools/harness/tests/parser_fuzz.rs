//! Property: whatever bytes arrive as a server answer, the parsers answer with a result or a
//! clear SQL error, never a panic, and the queue stays well-formed.
use rusqlite::types::Value as Sql;
use tether_harness::*;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(repo_root().join("tests/fixtures").join(name)).unwrap()
}

/// A fixture with random damage: cut short, bytes replaced, or JSON tokens swapped.
fn damaged(rng: &mut Rng, text: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    match rng.next_u64() % 4 {
        0 => bytes.truncate((rng.next_u64() as usize) % (bytes.len() + 1)),
        1 => {
            for _ in 0..1 + rng.next_u64() % 8 {
                let at = (rng.next_u64() as usize) % bytes.len();
                bytes[at] = b"{}[]\":,0-9aenulltrue\\ "[(rng.next_u64() as usize) % 22];
            }
        }
        2 => {
            let swapped = text
                .replacen("[", "{", (rng.next_u64() % 3) as usize)
                .replacen(
                    "\"payload\"",
                    "\"payload\": null, \"x\"",
                    (rng.next_u64() % 2) as usize,
                )
                .replacen("true", "\"true\"", (rng.next_u64() % 2) as usize)
                .replacen("1764072005456000", "-1e999", (rng.next_u64() % 2) as usize);
            return swapped;
        }
        _ => {
            let insert: Vec<u8> = (0..rng.next_u64() % 16)
                .map(|_| (rng.next_u64() % 256) as u8)
                .collect();
            let at = (rng.next_u64() as usize) % (bytes.len() + 1);
            bytes.splice(at..at, insert);
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn answers_of_any_shape_never_panic() {
    let (_dir, path) = temp_db();
    let conn = open_loaded(&path);
    conn.execute_batch("CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, status TEXT, priority INTEGER); SELECT tether_track('tasks');").unwrap();
    for i in 0..20 {
        conn.execute("INSERT INTO tasks (title) VALUES (?1)", [format!("t{i}")])
            .unwrap();
    }
    conn.query_row("SELECT tether_push_request()", [], |_| Ok(()))
        .unwrap();
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let sources = [
        fixture("push-response.json"),
        fixture("pull-response.json"),
        fixture("pull-response-last.json"),
    ];
    let (mut ok, mut refused) = (0, 0);
    for round in 0..3000 {
        let body: Sql = match round % 3 {
            0 => Sql::Blob(
                (0..rng.next_u64() % 64)
                    .map(|_| (rng.next_u64() % 256) as u8)
                    .collect(),
            ),
            1 => {
                let source = &sources[(rng.next_u64() % 3) as usize];
                Sql::Text(damaged(&mut rng, source))
            }
            _ => Sql::Text(
                String::from_utf8_lossy(
                    &(0..rng.next_u64() % 64)
                        .map(|_| (rng.next_u64() % 256) as u8)
                        .collect::<Vec<_>>(),
                )
                .into_owned(),
            ),
        };
        for function in ["tether_push_response", "tether_pull_response"] {
            match conn.query_row(&format!("SELECT {function}(?1)"), [&body], |r| {
                r.get::<_, String>(0)
            }) {
                Ok(_) => ok += 1,
                Err(e) => {
                    let message = e.to_string();
                    assert!(
                        !message.contains("internal error") && !message.contains("panic"),
                        "{function} panicked on {body:?}: {message}"
                    );
                    assert!(
                        message.starts_with(function),
                        "errors name the function: {message}"
                    );
                    refused += 1;
                }
            }
        }
    }
    assert!(
        ok > 0 && refused > 0,
        "both outcomes were exercised: {ok} ok, {refused} refused"
    );
    let bad: i64 = conn
        .query_row("SELECT count(*) FROM tether_mutation_logs WHERE sync_status NOT IN ('pending', 'synced', 'failed', 'conflict')", [], |r| r.get(0))
        .unwrap();
    assert_eq!(bad, 0);
}
