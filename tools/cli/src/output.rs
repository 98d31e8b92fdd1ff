//! What the command line prints: small tables for people, JSON on request (`--json`, one line),
//! progress bars only on a terminal (indicatif hides them when stderr is piped), colour only on
//! a terminal and never with NO_COLOR. `-q` leaves only errors.
use std::cell::RefCell;
use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use tether::sync::{Cycle, Progress};

/// How this run prints.
#[derive(Clone, Copy, Default)]
pub struct Out {
    /// `-q`: errors only.
    pub quiet: bool,
    /// `--json`: JSON on stdout, nothing else there.
    pub json: bool,
    /// `-v`, `-vv`, `-vvv`: the debug level of this run.
    pub verbose: u8,
}

/// Set once stdout is gone (the reader of a pipe quit, as `head` does): later output is dropped
/// and the command finishes its work (a demo still stops its server) instead of panicking.
static STDOUT_GONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// One line on stdout; nothing once stdout is a closed pipe.
pub fn stdout_line(text: impl std::fmt::Display) {
    use std::io::Write;
    use std::sync::atomic::Ordering;
    if STDOUT_GONE.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{text}").and_then(|()| out.flush()).is_err() {
        STDOUT_GONE.store(true, Ordering::Relaxed);
    }
}

impl Out {
    /// A line of the human output (stdout), unless `-q`.
    pub fn line(&self, text: impl std::fmt::Display) {
        if !self.quiet {
            stdout_line(text);
        }
    }

    /// A table row (stdout), unless `-q`.
    pub fn row(&self, key: &str, value: impl std::fmt::Display) {
        self.line(format!("  {key:<18} {value}"));
    }

    /// The JSON result of a command: one line on stdout.
    pub fn json(&self, value: &Value) {
        stdout_line(value);
    }

    /// A note for people on stderr ("(not set)", "stopped"), unless `-q`.
    pub fn note(&self, text: impl std::fmt::Display) {
        if !self.quiet {
            eprintln!("{text}");
        }
    }

    /// `warning: …` on stderr, unless `-q`.
    pub fn warn(&self, text: impl std::fmt::Display) {
        if !self.quiet {
            eprintln!("{} {text}", paint("warning:", YELLOW));
        }
    }

    /// Whether progress bars may show (they still only do on a terminal).
    pub fn bars(&self) -> bool {
        !self.quiet && self.verbose == 0
    }
}

const RED: &str = "\x1b[1;31m";
const YELLOW: &str = "\x1b[33m";

/// Colour for stderr: only on a terminal, never with NO_COLOR (any non-empty value) or
/// TERM=dumb.
pub fn color() -> bool {
    std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
}

fn paint(text: &str, code: &str) -> String {
    if color() {
        format!("{code}{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// An error on stderr: `tether: …` (the prefix red on a colour terminal).
pub fn error(message: &str) {
    eprintln!("{} {message}", paint("tether:", RED));
}

/// The figures a cycle of `kind` prints: a push has no pull figures and a pull no push ones.
fn figures(kind: Cycle) -> &'static [(&'static str, &'static str)] {
    const PUSH: &[(&str, &str)] = &[
        ("Pushed", "pushed"),
        ("Failed", "failed"),
        ("Conflicts", "conflicts"),
    ];
    const PULL: &[(&str, &str)] = &[("Pulled", "pulled"), ("Pull errors", "pull_errors")];
    const SYNC: &[(&str, &str)] = &[
        ("Pushed", "pushed"),
        ("Failed", "failed"),
        ("Conflicts", "conflicts"),
        ("Pulled", "pulled"),
        ("Pull errors", "pull_errors"),
    ];
    match kind {
        Cycle::Push => PUSH,
        Cycle::Pull => PULL,
        Cycle::Sync => SYNC,
    }
}

/// Pushed / Failed / Pulled… (what `kind` does), and a warning naming each rejected mutation.
pub fn cycle_table(out: &Out, result: &Value, kind: Cycle) {
    if result["skipped"] == true {
        out.line("skipped: another sync holds the lock");
        return;
    }
    for (key, field) in figures(kind) {
        out.row(key, &result[*field]);
    }
    let rejections = result["rejections"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if !rejections.is_empty() {
        out.warn(format!(
            "{} mutation(s) rejected by the server:",
            rejections.len()
        ));
        for r in rejections {
            let row = &r["row"];
            out.note(format!(
                "  {} row {} ({} {}): {} {}",
                row["table"].as_str().unwrap_or("(table no longer tracked)"),
                shown(&row["primary_key"]),
                row["model"].as_str().unwrap_or("?"),
                row["entity_id"].as_str().unwrap_or("?"),
                r["reason"].as_str().unwrap_or("?"),
                r["data"]
            ));
        }
    }
    for warning in result["warnings"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let row = &warning["row"];
        out.warn(format!(
            "{} row {}: {}",
            row["table"].as_str().unwrap_or("?"),
            row["primary_key"],
            warning["message"]
                .as_str()
                .map_or_else(|| warning.to_string(), str::to_string)
        ));
    }
    if result["failed"].as_u64().unwrap_or(0) + result["conflicts"].as_u64().unwrap_or(0) > 0 {
        out.note("see them with `tether attention`");
    }
    if let Some(reasons) = result["pull_error_reasons"]
        .as_object()
        .filter(|r| !r.is_empty())
    {
        out.warn("snapshots not applied:");
        for (reason, models) in reasons {
            out.note(format!("  {reason}: {models}"));
        }
    }
}

/// One line per cycle, for `watch`.
pub fn cycle_line(result: &Value, kind: Cycle) -> String {
    if result["skipped"] == true {
        return "skipped (another sync holds the lock)".into();
    }
    figures(kind)
        .iter()
        .map(|(_, field)| format!("{field} {}", result[*field]))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `tether track`: what is tracked now, and the shape warnings.
pub fn track_summary(out: &Out, result: &Value) {
    out.line(format!(
        "tracking {} as model {} (sync key {})",
        shown(&result["table"]),
        shown(&result["model"]),
        shown(&result["sync_key"])
    ));
    out.row("columns", list(&result["columns"]));
    out.row("keys", keys_given(&result["keys"]));
    if result["json_columns"]
        .as_array()
        .is_some_and(|c| !c.is_empty())
    {
        out.row("json columns", list(&result["json_columns"]));
    }
    out.row(
        "queued",
        format!(
            "{} create(s), {} update(s), {} delete(s)",
            result["queued_creates"], result["queued_updates"], result["queued_deletes"]
        ),
    );
    for warning in result["warnings"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        out.warn(
            warning["message"]
                .as_str()
                .map_or_else(|| warning.to_string(), str::to_string),
        );
    }
}

/// When a table's new rows get their sync keys (`keys` of a track result or status table).
fn keys_given(keys: &Value) -> &'static str {
    match keys.as_str() {
        Some("on_sync") => "given when the next sync starts",
        _ => "given on insert",
    }
}

fn list(value: &Value) -> String {
    value
        .as_array()
        .map(|items| items.iter().map(shown).collect::<Vec<_>>().join(", "))
        .unwrap_or_else(|| shown(value))
}

pub fn status_table(out: &Out, status: &Value) {
    for key in [
        "pending",
        "failed",
        "conflicts",
        "diverged",
        "last_sync_cursor",
        "last_sync_at",
        "client_id",
        "server_url",
        "version",
    ] {
        out.row(key, shown(&status[key]));
    }
    for table in status["tables"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let mut state = format!(
            "model {}, {} pending, keys {}",
            shown(&table["model"]),
            table["pending"],
            keys_given(&table["keys"])
        );
        if table["columns_changed"] == true {
            state.push_str(&format!(
                ", columns changed (added {}, removed {}): run `tether track {}` again",
                table["added_columns"],
                table["removed_columns"],
                shown(&table["table"])
            ));
        }
        if table["state"] != "ok" && !table["state"].is_null() {
            state.push_str(&format!(", {}", shown(&table["state"])));
            if !table["problem"].is_null() {
                let problem = shown(&table["problem"]).replace(
                    "tether_untrack it",
                    &format!("`tether untrack {}`", shown(&table["table"])),
                );
                state.push_str(&format!(": {}", crate::hints::for_cli(&problem)));
            }
        }
        for (field, what) in [
            ("server_ignored", "the server ignored"),
            ("not_echoed", "the server never sends back"),
        ] {
            if table[field].as_array().is_some_and(|c| !c.is_empty()) {
                state.push_str(&format!(", {what} {}", list(&table[field])));
            }
        }
        out.row(&format!("table {}", shown(&table["table"])), state);
        for warning in table["warnings"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            out.warn(format!(
                "{}: {}",
                shown(&table["table"]),
                shown(&warning["message"])
            ));
        }
    }
    if !status["repair_error"].is_null() {
        out.warn(format!(
            "repairing tracked tables failed: {}",
            crate::hints::for_cli(&shown(&status["repair_error"]))
        ));
    }
    let quarantined = &status["quarantine"]["count"];
    let waiting = status["failed"].as_u64().unwrap_or(0)
        + status["conflicts"].as_u64().unwrap_or(0)
        + status["diverged"].as_u64().unwrap_or(0)
        + quarantined.as_u64().unwrap_or(0);
    if waiting > 0 {
        out.note(format!(
            "{waiting} row(s) need attention ({quarantined} server row(s) refused here): `tether attention`"
        ));
    }
}

pub fn key_values(out: &Out, values: &Value) {
    if let Some(map) = values.as_object() {
        for (key, value) in map {
            out.row(key, shown(value));
        }
    }
}

pub fn shown(value: &Value) -> String {
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
