//! What the command line prints: small tables for people, JSON on request, progress bars only
//! on a terminal (indicatif hides them when stderr is piped).
use std::cell::RefCell;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use tether::sync::{Cycle, Progress};

fn row(key: &str, value: impl std::fmt::Display) {
    println!("  {key:<18} {value}");
}

/// Pushed / Failed / Pulled…, and a warning naming each rejected mutation.
pub fn cycle_table(result: &Value) {
    if result["skipped"] == true {
        println!("skipped: another sync holds the lock");
        return;
    }
    for (key, field) in [
        ("Pushed", "pushed"),
        ("Failed", "failed"),
        ("Conflicts", "conflicts"),
        ("Pulled", "pulled"),
        ("Pull errors", "pull_errors"),
    ] {
        row(key, &result[field]);
    }
    let rejections = result["rejections"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if !rejections.is_empty() {
        eprintln!(
            "warning: {} mutation(s) rejected by the server:",
            rejections.len()
        );
        for r in rejections {
            let row = &r["row"];
            eprintln!(
                "  {} row {} ({} {}): {} {}",
                row["table"].as_str().unwrap_or("?"),
                row["primary_key"],
                row["model"].as_str().unwrap_or("?"),
                row["entity_id"].as_str().unwrap_or("?"),
                r["reason"].as_str().unwrap_or("?"),
                r["data"]
            );
        }
    }
    if let Some(reasons) = result["pull_error_reasons"]
        .as_object()
        .filter(|r| !r.is_empty())
    {
        eprintln!("warning: snapshots not applied:");
        for (reason, models) in reasons {
            eprintln!("  {reason}: {models}");
        }
    }
}

/// One line per cycle, for `watch`.
pub fn cycle_line(result: &Value) -> String {
    if result["skipped"] == true {
        return "skipped (another sync holds the lock)".into();
    }
    format!(
        "pushed {} failed {} conflicts {} pulled {} pull_errors {}",
        result["pushed"],
        result["failed"],
        result["conflicts"],
        result["pulled"],
        result["pull_errors"]
    )
}

pub fn status_table(status: &Value) {
    for key in [
        "pending",
        "failed",
        "conflicts",
        "last_sync_cursor",
        "last_sync_at",
        "client_id",
        "server_url",
        "version",
    ] {
        row(key, shown(&status[key]));
    }
    for table in status["tables"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let mut state = format!(
            "model {}, {} pending",
            shown(&table["model"]),
            table["pending"]
        );
        if table["columns_changed"] == true {
            state.push_str(&format!(
                ", columns changed (added {}, removed {}): run `tether track {}` again",
                table["added_columns"],
                table["removed_columns"],
                shown(&table["table"])
            ));
        }
        if table["triggers_installed"] != true {
            state.push_str(", capture triggers missing");
        }
        row(&format!("table {}", shown(&table["table"])), state);
    }
}

pub fn key_values(values: &Value) {
    if let Some(map) = values.as_object() {
        for (key, value) in map {
            row(key, shown(value));
        }
    }
}

fn shown(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!(
        "[{:02}:{:02}:{:02}Z]",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60
    )
}

/// Progress bars for the push (known size) and the pull (a running count).
pub struct Bars {
    current: RefCell<Option<(Cycle, ProgressBar)>>,
}

impl Bars {
    pub fn new() -> Bars {
        Bars {
            current: RefCell::new(None),
        }
    }

    pub fn show(&self, progress: Progress) {
        let mut current = self.current.borrow_mut();
        if current.as_ref().map(|(stage, _)| *stage) != Some(progress.stage) {
            if let Some((_, bar)) = current.take() {
                bar.finish_and_clear();
            }
            let bar = match progress.total {
                Some(total) => ProgressBar::new(total as u64).with_style(
                    ProgressStyle::with_template("pushing {bar:30} {pos}/{len} mutations")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                ),
                None => ProgressBar::new_spinner().with_style(
                    ProgressStyle::with_template("pulling {spinner} {pos} rows")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                ),
            };
            *current = Some((progress.stage, bar));
        }
        if let Some((_, bar)) = current.as_ref() {
            bar.set_position(progress.done as u64);
        }
    }

    pub fn finish(&self) {
        if let Some((_, bar)) = self.current.borrow_mut().take() {
            bar.finish_and_clear();
        }
    }
}
