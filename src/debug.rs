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
/// died. Costs one cached environment lookup otherwise.
#[allow(dead_code)] // called from the engine as kill points are placed
pub fn kill_point(name: &str) {
    static POINT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let wanted = POINT.get_or_init(|| std::env::var("TETHER_TEST_KILL_POINT").ok());
    if wanted.as_deref() == Some(name) {
        eprintln!("tether-kill-point: {name}");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(60));
        }
    }
}
