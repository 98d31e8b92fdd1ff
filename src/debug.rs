//! `debug_level` 1–3: `[TETHER]` lines on stderr. 1: one line per cycle; 2: one per request;
//! 3: also body excerpts. Nothing here ever holds a secret: URLs are redacted by the caller and
//! request bodies carry no token.
use crate::settings::Settings;

pub fn enabled(settings: &Settings, level: u64) -> bool {
    settings.number("debug_level") >= level
}

pub fn log(settings: &Settings, level: u64, message: impl FnOnce() -> String) {
    if enabled(settings, level) {
        eprintln!("[TETHER] {}", message());
    }
}

/// A test hook: when `TETHER_TEST_KILL_POINT` names this point, says so on stderr
/// (`tether-kill-point: NAME`) and waits to be killed, so a crash test proves where the process
/// died; with `TETHER_TEST_PAUSE_MS` it goes on after that many milliseconds instead (a process
/// suspended there, or a machine asleep). Costs one cached environment lookup otherwise.
#[allow(dead_code)] // called from the engine as kill points are placed
pub fn kill_point(name: &str) {
    static POINT: std::sync::OnceLock<Option<(String, Option<u64>)>> = std::sync::OnceLock::new();
    let wanted = POINT.get_or_init(|| {
        let point = std::env::var("TETHER_TEST_KILL_POINT").ok()?;
        let pause = std::env::var("TETHER_TEST_PAUSE_MS")
            .ok()
            .and_then(|ms| ms.parse().ok());
        Some((point, pause))
    });
    let Some((point, pause)) = wanted else {
        return;
    };
    if point != name {
        return;
    }
    eprintln!("tether-kill-point: {name}");
    match pause {
        Some(ms) => std::thread::sleep(std::time::Duration::from_millis(*ms)),
        None => loop {
            std::thread::sleep(std::time::Duration::from_secs(60));
        },
    }
}
