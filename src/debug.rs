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
