//! SIGINT and SIGTERM during a request: the command ends at once, the sync lock is released and
//! the cycle's log row finished, the exit status is 130 or 143; the next push runs (it is not
//! "skipped"). A second Ctrl-C exits even while the cleanup waits.
mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// `tether ARGS…` on `path`, started against a server that never answers; returns once its
/// request has arrived (the sync lock is then held).
fn stalled(path: &Path, stall: &mut Stalling, args: &[&str]) -> Child {
    tether(path, &["config", "server_url", &stall.url]);
    let child = command()
        .arg("--db")
        .arg(path)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    stall.wait_for_request();
    assert_eq!(
        count(path, "SELECT count(*) FROM tether_locks"),
        1,
        "the lock is held while the request waits"
    );
    child
}

fn assert_cleaned_up(path: &Path) {
    assert_eq!(
        count(path, "SELECT count(*) FROM tether_locks"),
        0,
        "the sync lock was released"
    );
    let errors: Vec<Option<String>> = column(
        &open_plain(path),
        "SELECT error FROM tether_sync_log WHERE finished_at IS NOT NULL ORDER BY id DESC LIMIT 1",
    );
    assert!(
        errors[0]
            .as_deref()
            .is_some_and(|e| e.starts_with("interrupted")),
        "{errors:?}"
    );
    assert_eq!(
        count(
            path,
            "SELECT count(*) FROM tether_sync_log WHERE finished_at IS NULL"
        ),
        0
    );
}

#[test]
fn ctrl_c_during_a_push_releases_the_lock_and_exits_130() {
    let server = Server::start(&["--model", TASK]);
    let (_dir, path) = database(&server);
    let mut stall = Stalling::start();
    let child = stalled(&path, &mut stall, &["push"]);
    let signalled = Instant::now();
    kill(&child, libc::SIGINT);
    let out = wait_at_most(child, Duration::from_secs(10));
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(130), "{stdout}{stderr}");
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "ended at once, not after the request's timeout"
    );
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("interrupted") && stderr.contains("sync lock released"),
        "{stderr}"
    );
    assert_cleaned_up(&path);

    // The next push runs and sends the row (under the ids it was first sent with).
    tether(&path, &["config", "server_url", &server.url]);
    let out = tether(&path, &["push", "--json"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let result = one_json_line(&stdout);
    assert_eq!(result["skipped"], false, "{result}");
    assert_eq!(result["pushed"], 1, "{result}");
    assert_eq!(server.rows("x").len(), 1);
}

#[test]
fn sigterm_during_a_pull_exits_143() {
    let (_dir, path) = tracked();
    let mut stall = Stalling::start();
    let child = stalled(&path, &mut stall, &["pull"]);
    kill(&child, libc::SIGTERM);
    let out = wait_at_most(child, Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(143), "{:?}", text(&out));
    assert_cleaned_up(&path);
    let error: String = open_plain(&path)
        .query_row(
            "SELECT error FROM tether_sync_log ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(error.contains("SIGTERM"), "{error}");
}

#[test]
fn a_second_ctrl_c_exits_at_once_while_the_cleanup_waits() {
    let (_dir, path) = tracked();
    let mut stall = Stalling::start();
    let child = stalled(&path, &mut stall, &["sync"]);
    // The cleanup must wait for this lock (up to its busy timeout of 5 s).
    let blocker = open_plain(&path);
    blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let mut child = child;
    kill(&child, libc::SIGINT);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the first Ctrl-C waits for the database to release the lock"
    );
    let second = Instant::now();
    kill(&child, libc::SIGINT);
    let out = wait_at_most(child, Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(130), "{:?}", text(&out));
    assert!(
        second.elapsed() < Duration::from_secs(2),
        "the second Ctrl-C did not wait: {:?}",
        second.elapsed()
    );
    blocker.execute_batch("ROLLBACK").unwrap();
}

#[test]
fn ctrl_c_stops_watch_during_a_request_with_exit_0() {
    let (_dir, path) = tracked();
    let mut stall = Stalling::start();
    let child = stalled(&path, &mut stall, &["watch", "--every", "1s"]);
    kill(&child, libc::SIGINT);
    let out = wait_at_most(child, Duration::from_secs(10));
    let stderr = text(&out).1;
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("stopped"), "{stderr}");
    assert_cleaned_up(&path);
}
