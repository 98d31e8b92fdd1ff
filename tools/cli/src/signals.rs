//! SIGINT (Ctrl-C) and SIGTERM. Both are blocked in every thread from the start of `main` and
//! taken by one thread with `sigwait`, so they never cut a thread short at a random place.
//!
//! The first signal ends the command: a request in flight is abandoned (the process exits, which
//! closes its connection), and what a cycle leaves behind is put right on a connection of its own
//! first: the sync lock this process holds is released and its sync-log row is finished as
//! interrupted, so the next `tether push` runs at once instead of answering "skipped". One-shot
//! commands then exit 130 (SIGINT) or 143 (SIGTERM); `watch`, for which a signal is the way to
//! stop, exits 0. The demo stops its server and removes its temporary files. A second signal
//! exits at once, whatever is still running.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// What the process is doing, which decides how a signal ends it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One command (sync, push, status, …): exit 128 + the signal's number.
    Once = 0,
    /// `watch`: stop, exit 0.
    Watch = 1,
    /// `demo`: stop the server, remove the temporary databases, exit 128 + the signal's number.
    Demo = 2,
}

static MODE: AtomicU8 = AtomicU8::new(Mode::Once as u8);
/// The first signal received (0: none yet).
static SIGNAL: AtomicI32 = AtomicI32::new(0);
/// `watch` polls this between cycles.
static STOP: AtomicBool = AtomicBool::new(false);
/// The database of the cycle running now, if any.
static ACTIVE: Mutex<Option<PathBuf>> = Mutex::new(None);
/// The demo's server process and temporary directory.
static DEMO: Mutex<Demo> = Mutex::new(Demo {
    child: None,
    dir: None,
});

struct Demo {
    child: Option<u32>,
    dir: Option<PathBuf>,
}

/// Blocks SIGINT and SIGTERM in this thread (and so in every thread started after it) and
/// starts the thread that takes them. Call first thing in `main`, before any thread exists.
/// Child processes inherit the mask: start them with [`unblocked`].
pub fn install() {
    // SAFETY: plain libc calls on a sigset_t owned here; the set is initialised by sigemptyset
    // before use.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            // The default handling stays: a signal kills the process as before.
            return;
        }
        set
    };
    let started = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let mut signal = 0;
            // SAFETY: the set lives in this closure; sigwait writes the signal to `signal`.
            if unsafe { libc::sigwait(&set, &mut signal) } != 0 {
                continue;
            }
            if SIGNAL
                .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
            {
                // The second one: no more waiting for anything.
                eprintln!(
                    "tether: interrupted again: exiting now (a sync lock left behind is taken \
                     over by the next cycle on this machine, as this process is gone)"
                );
                std::process::exit(128 + SIGNAL.load(Ordering::SeqCst));
            }
            first_signal(signal);
        });
    if started.is_err() {
        // Nobody would take the signals: unblock them again.
        // SAFETY: as above.
        unsafe {
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        }
    }
}

/// `command` with SIGINT and SIGTERM unblocked in the child, which else would inherit this
/// process's mask and ignore them.
pub fn unblocked(command: &mut std::process::Command) -> &mut std::process::Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec the closure only calls sigemptyset, sigaddset and
    // sigprocmask, which are async-signal-safe, on a set on its own stack.
    unsafe {
        command.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGTERM);
            if libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

pub fn set_mode(mode: Mode) {
    MODE.store(mode as u8, Ordering::SeqCst);
}

fn mode() -> Mode {
    match MODE.load(Ordering::SeqCst) {
        1 => Mode::Watch,
        2 => Mode::Demo,
        _ => Mode::Once,
    }
}

/// `watch`: whether a signal asked it to stop.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// A cycle starts on the database at `path`: a signal from now on cleans up after it.
pub fn cycle_started(path: &Path) {
    *ACTIVE.lock().unwrap_or_else(|e| e.into_inner()) = Some(path.to_path_buf());
}

/// The cycle ended (its lock is released by the engine).
pub fn cycle_ended() {
    *ACTIVE.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// After a one-shot command's cycle returned: if a signal arrived meanwhile, its handling exits
/// the process (with 130 or 143, after its cleanup); nothing more is printed here.
pub fn hold_if_interrupted() {
    if SIGNAL.load(Ordering::SeqCst) != 0 && mode() == Mode::Once {
        loop {
            std::thread::park();
        }
    }
}

/// Starts the demo's server with `command`, which a signal then stops (also one arriving while
/// it starts: the signal's handling waits for this).
pub fn demo_spawn(command: &mut std::process::Command) -> std::io::Result<std::process::Child> {
    let mut demo = DEMO.lock().unwrap_or_else(|e| e.into_inner());
    let child = unblocked(command).spawn()?;
    demo.child = Some(child.id());
    Ok(child)
}

/// The demo's temporary directory, removed if a signal ends the demo.
pub fn demo_dir(dir: &Path) {
    DEMO.lock().unwrap_or_else(|e| e.into_inner()).dir = Some(dir.to_path_buf());
}

fn name(signal: i32) -> &'static str {
    if signal == libc::SIGTERM {
        "SIGTERM"
    } else {
        "SIGINT (Ctrl-C)"
    }
}

fn first_signal(signal: i32) {
    let active = ACTIVE.lock().unwrap_or_else(|e| e.into_inner()).clone();
    match mode() {
        Mode::Watch => {
            STOP.store(true, Ordering::SeqCst);
            // Between cycles the loop notices within 100 ms and says "stopped" itself.
            if let Some(db) = active {
                finish_on_another_thread(db, signal, 0, "stopped");
            }
        }
        Mode::Once => match active {
            Some(db) => finish_on_another_thread(
                db,
                signal,
                128 + signal,
                "tether: interrupted: the request in flight was abandoned and the sync lock \
                 released; what was not sent goes with the next sync or push",
            ),
            None => std::process::exit(128 + signal),
        },
        Mode::Demo => {
            let demo = DEMO.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(child) = demo.child {
                // SAFETY: signals the demo's own server process.
                unsafe {
                    libc::kill(child as libc::pid_t, libc::SIGTERM);
                }
            }
            if let Some(dir) = &demo.dir {
                let _ = std::fs::remove_dir_all(dir);
            }
            eprintln!("tether: demo stopped by {}", name(signal));
            std::process::exit(128 + signal);
        }
    }
}

/// Cleans up after the interrupted cycle and exits with `code`. On its own thread, so that the
/// signal thread still takes a second signal (which exits at once) while this waits for the
/// database.
fn finish_on_another_thread(db: PathBuf, signal: i32, code: i32, message: &'static str) {
    let spawned = std::thread::Builder::new()
        .name("interrupted".into())
        .spawn(move || {
            if let Err(e) = release(&db, signal) {
                eprintln!(
                    "tether: could not release the sync lock of {}: {e} (the next cycle on this \
                     machine takes it over, as this process is gone)",
                    db.display()
                );
            }
            eprintln!("{message}");
            std::process::exit(code);
        });
    if spawned.is_err() {
        std::process::exit(code);
    }
}

/// On a connection of its own: the sync lock held by this process goes, and this process's
/// unfinished sync-log rows are finished as interrupted. Rows of other processes are not
/// touched.
fn release(db: &Path, signal: i32) -> rusqlite::Result<()> {
    let mut conn = rusqlite::Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let host = tether::engine::lock::host_name();
    let pid = i64::from(std::process::id());
    let error = format!(
        "interrupted: the process was stopped by {} during the cycle",
        name(signal)
    );
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute(
        "DELETE FROM tether_locks WHERE name = 'sync' AND pid = ?1 AND host IS ?2",
        (pid, &host),
    )?;
    tx.execute(
        "UPDATE tether_sync_log SET finished_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), error = ?3
          WHERE finished_at IS NULL AND pid = ?1 AND host IS ?2",
        (pid, &host, &error),
    )?;
    tx.commit()
}
