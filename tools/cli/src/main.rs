//! `tether`: what `php artisan tether:sync|push|pull|status` are to Laravel users, plus tracking,
//! configuration, scheduling (`watch`) and a self-contained demo. Links the extension statically.
mod demo;
mod hints;
mod output;
mod resolve;
mod signals;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::error::ErrorKind;
use clap::{ArgAction, CommandFactory, Parser, Subcommand, ValueEnum};
use rusqlite::{Connection, OpenFlags};
use serde_json::{json, Value};
use tether::settings::ConnectionSettings;
use tether::sync::{run_cycle_with_progress, Cycle};

use output::Out;

/// Exit status when mutations were rejected (the cycle itself worked).
const REJECTED: u8 = 3;

const EXIT_CODES: &str = "\
Exit status:
  0    done (also `config KEY` when KEY is not set, and `watch` stopped by a signal)
  1    error: no or unreadable database, nothing tracked, server unreachable or refusing,
       a bad setting; `watch` stops with 1 on configuration errors
  2    usage error: unknown or missing arguments (--db included), conflicting options
  3    the server rejected mutations (sync, push)
  130  interrupted by SIGINT (Ctrl-C); 143 by SIGTERM. The request in flight is abandoned and
       the sync lock released; a second signal exits at once.";

#[derive(Parser)]
#[command(
    name = "tether",
    version,
    about = "Sync a SQLite database with a Tether server",
    before_help = "Every command that works on a database takes --db PATH (or TETHER_DB), before or after the command's name.",
    after_help = EXIT_CODES
)]
struct Cli {
    /// The SQLite database file (also accepted here, before the command)
    #[arg(long, value_name = "PATH", hide = true)]
    db: Option<PathBuf>,
    /// Print only errors: no tables, notes, warnings or progress bars
    #[arg(short, long, global = true, conflicts_with_all = ["verbose", "json"])]
    quiet: bool,
    /// Debug output on stderr for this run: -v a line per cycle, -vv per request, -vvv with
    /// bodies (sets debug_level for this run only; no progress bar)
    #[arg(short, long, global = true, action = ArgAction::Count)]
    verbose: u8,
    /// Print the result as one line of JSON on stdout (each command's shape: see README)
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

/// `--db`, for every command that works on a database.
#[derive(clap::Args)]
struct DbArg {
    /// The SQLite database file; it must exist [default: $TETHER_DB]
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Push pending mutations, then pull server changes
    #[command(after_help = EXIT_CODES)]
    Sync(DbArg),
    /// Push pending mutations only
    #[command(after_help = EXIT_CODES)]
    Push(DbArg),
    /// Pull server changes only
    #[command(after_help = EXIT_CODES)]
    Pull(DbArg),
    /// Queue counts, cursor, last sync, client id, tracked tables
    #[command(after_help = EXIT_CODES)]
    Status(DbArg),
    /// Changes the server refused or answered with a conflict, rows left diverged, server rows
    /// this database refused: what needs a person
    #[command(after_help = EXIT_CODES)]
    Attention(DbArg),
    /// Send rows whose changes were refused or conflicted again, with their current state
    #[command(after_help = EXIT_CODES)]
    Retry {
        #[command(flatten)]
        db: DbArg,
        /// Only this table's rows (default: every row that needs attention)
        table: Option<String>,
        /// Only this row: its primary key, sync key or a mutation id (as `tether attention`
        /// shows them)
        #[arg(allow_hyphen_values = true)]
        key: Option<String>,
    },
    /// Give up refused or conflicting local changes and take the server's version
    #[command(after_help = EXIT_CODES)]
    Discard {
        #[command(flatten)]
        db: DbArg,
        /// The table whose rows to discard
        table: String,
        /// Only this row: its primary key, sync key or a mutation id (as `tether attention`
        /// shows them)
        #[arg(allow_hyphen_values = true)]
        key: Option<String>,
    },
    /// Track a table: sync key column, capture triggers, existing rows queued
    #[command(after_help = EXIT_CODES)]
    Track {
        #[command(flatten)]
        db: DbArg,
        /// The table to track
        table: String,
        /// Model name on the server (default: Laravel's name for the table)
        #[arg(long)]
        model: Option<String>,
        /// Only these columns (comma-separated)
        #[arg(
            long,
            value_delimiter = ',',
            value_name = "COLUMNS",
            conflicts_with = "except"
        )]
        columns: Option<Vec<String>>,
        /// All columns but these (comma-separated)
        #[arg(long, value_delimiter = ',', value_name = "COLUMNS")]
        except: Option<Vec<String>>,
        /// Do not queue existing rows as creates
        #[arg(long)]
        no_backfill: bool,
        /// When new rows get their sync keys: on_insert (by the INSERT's trigger, the default) or
        /// on_sync (when the next sync starts; cheaper writes, tether_id NULL until then).
        /// Without it a tracked table keeps its choice
        #[arg(long, value_name = "WHEN", value_parser = ["on_insert", "on_sync"])]
        keys: Option<String>,
    },
    /// Stop tracking a table
    #[command(after_help = EXIT_CODES)]
    Untrack {
        #[command(flatten)]
        db: DbArg,
        /// The tracked table to stop tracking
        table: String,
    },
    /// Show all settings, one setting, or set or unset one (secrets are never shown)
    #[command(after_help = EXIT_CODES)]
    Config {
        #[command(flatten)]
        db: DbArg,
        /// The setting (server_url, auth_token, …; `tether config` lists them all). Alone: print
        /// its value, or "(not set)" on stderr with nothing on stdout
        key: Option<String>,
        /// The new value, stored as given (NULL too: use --unset to remove a setting); may start
        /// with '-', like a negative number
        #[arg(allow_hyphen_values = true)]
        value: Option<String>,
        /// Remove the setting from the database (the environment variable or the default applies
        /// again)
        #[arg(long, requires = "key", conflicts_with = "value")]
        unset: bool,
    },
    /// Keep syncing every interval; back off with jitter on errors; stop on configuration errors;
    /// Ctrl-C stops
    #[command(after_help = EXIT_CODES)]
    Watch {
        #[command(flatten)]
        db: DbArg,
        /// Interval: 30s, 5m, 1h, 1500ms, or seconds (at least 1 s)
        #[arg(long, default_value = "5m", value_parser = parse_interval)]
        every: Duration,
        /// What each cycle does
        #[arg(long, value_enum, default_value_t = Kind::Sync)]
        kind: Kind,
    },
    /// Run a local tether-server and two temporary client databases syncing through it
    #[command(after_help = EXIT_CODES)]
    Demo,
}

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    /// Push, then pull
    Sync,
    /// Push only
    Push,
    /// Pull only
    Pull,
}

impl From<Kind> for Cycle {
    fn from(kind: Kind) -> Cycle {
        match kind {
            Kind::Sync => Cycle::Sync,
            Kind::Push => Cycle::Push,
            Kind::Pull => Cycle::Pull,
        }
    }
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(text.len()),
    );
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not an interval like 30s, 5m or 1h"))?;
    let seconds = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown unit {other:?} (use ms, s, m or h)")),
    };
    // The same bounds as tether_schedule.
    tether::retry::interval(seconds).map_err(|e| e.to_string())
}

/// A usage error: printed by clap with the usage line, exit status 2.
fn usage_error(kind: ErrorKind, message: &str) -> ! {
    Cli::command().error(kind, message).exit()
}

/// The database of a command: `--db` after the command, else before it, else `TETHER_DB`.
/// None of them is a usage error.
fn database(before: Option<PathBuf>, after: DbArg) -> PathBuf {
    match (before, after.db) {
        (Some(a), Some(b)) if a != b => usage_error(
            ErrorKind::ArgumentConflict,
            "--db is given twice with different paths",
        ),
        (_, Some(path)) | (Some(path), None) => path,
        (None, None) => match std::env::var_os("TETHER_DB").filter(|v| !v.is_empty()) {
            Some(path) => PathBuf::from(path),
            None => usage_error(
                ErrorKind::MissingRequiredArgument,
                "no database given: use --db PATH (or set TETHER_DB)",
            ),
        },
    }
}

/// SQLite's first 16 bytes.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// Refuses, with what it is, a path that is not an existing SQLite database file.
fn check_file(path: &Path) -> Result<(), String> {
    let shown = path.display();
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "no such database: {shown} (tether works on an existing SQLite file: check the \
                 path given by --db or TETHER_DB)"
            ))
        }
        Err(e) => return Err(format!("cannot open {shown}: {e}")),
    };
    if meta.is_dir() {
        return Err(format!(
            "{shown} is a directory, not a database: give --db the path of the SQLite database \
             file"
        ));
    }
    let mut header = Vec::with_capacity(16);
    std::fs::File::open(path)
        .and_then(|f| f.take(16).read_to_end(&mut header))
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    // An empty file is an empty database to SQLite.
    if !header.is_empty() && header != SQLITE_HEADER {
        return Err(not_a_database(path));
    }
    Ok(())
}

fn not_a_database(path: &Path) -> String {
    format!(
        "{} is not a SQLite database (the file does not start with SQLite's header): check the \
         path given by --db or TETHER_DB",
        path.display()
    )
}

/// Opens an existing database and sets tether up on it (with `-v`, the debug level of this run).
fn open(path: &Path, out: &Out) -> Result<Connection, String> {
    check_file(path)?;
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    if let Err(e) = tether::register_without_workers(&conn) {
        if e.sqlite_code() == Some(rusqlite::ErrorCode::NotADatabase) {
            return Err(not_a_database(path));
        }
        return Err(format!("{}: {e}", path.display()));
    }
    if out.verbose > 0 {
        conn.query_row(
            "SELECT tether_config('debug_level', ?1, 'connection')",
            [out.verbose.min(3).to_string()],
            |_| Ok(()),
        )
        .map_err(sql_message)?;
    }
    Ok(conn)
}

/// The message of a SQL error, without rusqlite's wrapping.
fn sql_message(error: rusqlite::Error) -> String {
    match error {
        rusqlite::Error::SqliteFailure(_, Some(message)) => message,
        other => other.to_string(),
    }
}

fn query_json(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Value, String> {
    let text: String = conn
        .query_row(sql, params, |r| r.get(0))
        .map_err(sql_message)?;
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

/// One value of `tether_config`, as text (`None`: not set).
fn config_value(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Option<String>, String> {
    let value: rusqlite::types::Value = conn
        .query_row(sql, params, |r| r.get(0))
        .map_err(sql_message)?;
    Ok(match value {
        rusqlite::types::Value::Null => None,
        rusqlite::types::Value::Integer(i) => Some(i.to_string()),
        rusqlite::types::Value::Real(r) => Some(r.to_string()),
        rusqlite::types::Value::Text(t) => Some(t),
        rusqlite::types::Value::Blob(b) => Some(format!("({} bytes)", b.len())),
    })
}

/// `{KEY: value}` with the value as `tether_config()` shows it (typed, secrets as ***).
fn config_json(conn: &Connection, key: &str, text: Option<&str>) -> Result<Value, String> {
    let all = query_json(conn, "SELECT tether_config()", [])?;
    let value = match all.get(key) {
        Some(value) => value.clone(),
        None => text.map_or(Value::Null, |t| Value::String(t.to_string())),
    };
    Ok(json!({ key: value }))
}

fn ensure_tracked(conn: &Connection) -> Result<(), String> {
    let tracked: i64 = conn
        .query_row("SELECT count(*) FROM tether_tracked_tables", [], |r| {
            r.get(0)
        })
        .map_err(sql_message)?;
    if tracked == 0 {
        return Err("no table is tracked in this database: run `tether track TABLE` first".into());
    }
    Ok(())
}

/// One cycle. With `-v` it runs as `SELECT tether_sync()` (…) on the connection, whose own
/// debug_level was set for this run, and shows no progress bar; else through the engine with
/// progress bars (on a terminal, without `-q`).
fn run_one(
    conn: &Connection,
    path: &Path,
    kind: Cycle,
    trigger: &str,
    out: &Out,
    bars: bool,
) -> Result<Value, String> {
    signals::cycle_started(path);
    let result = if out.verbose > 0 {
        query_json(conn, &format!("SELECT tether_{}()", kind.name()), [])
    } else {
        let bars = (bars && out.bars()).then(output::Bars::new);
        let result =
            run_cycle_with_progress(conn, &ConnectionSettings::default(), kind, trigger, &|p| {
                if let Some(bars) = &bars {
                    bars.show(p)
                }
            })
            .map_err(|e| e.to_string());
        if let Some(bars) = &bars {
            bars.finish();
        }
        result
    };
    signals::cycle_ended();
    signals::hold_if_interrupted();
    result
}

fn cycle(path: &Path, kind: Cycle, out: &Out) -> Result<u8, String> {
    let conn = open(path, out)?;
    ensure_tracked(&conn)?;
    let result = run_one(&conn, path, kind, "foreground", out, true)?;
    if out.json {
        out.json(&result);
    } else {
        output::cycle_table(out, &result, kind);
    }
    Ok(if result["failed"].as_u64().unwrap_or(0) > 0 {
        REJECTED
    } else {
        0
    })
}

fn watch(path: &Path, every: Duration, kind: Cycle, out: &Out) -> Result<u8, String> {
    let conn = open(path, out)?;
    ensure_tracked(&conn)?;
    signals::set_mode(signals::Mode::Watch);
    out.note(format!("syncing every {}; Ctrl-C stops", humantime(every)));
    let mut backoff = tether::retry::Backoff::new(every);
    let now_iso = || -> String {
        conn.query_row("SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now')", [], |r| {
            r.get(0)
        })
        .unwrap_or_default()
    };
    while !signals::stop_requested() {
        let started = Instant::now();
        let wait = match run_one(&conn, path, kind, "schedule", out, false) {
            Ok(result) => {
                backoff.succeeded();
                if out.json {
                    out.json(
                        &json!({"time": now_iso(), "kind": kind.name(), "result": result,
                                     "error": null, "retry_in_ms": null}),
                    );
                } else {
                    out.line(format!(
                        "{} {}",
                        output::now(),
                        output::cycle_line(&result, kind)
                    ));
                }
                every
            }
            Err(e) if signals::stop_requested() => {
                // The cycle ended because of the signal: nothing to retry.
                let _ = e;
                break;
            }
            Err(e) => {
                let stop = hints::is_configuration_error(&e);
                let jittered = (!stop).then(|| backoff.failed());
                if out.json {
                    out.json(
                        &json!({"time": now_iso(), "kind": kind.name(), "result": null,
                                     "error": hints::for_cli(&e),
                                     "retry_in_ms": jittered.map(|d| d.as_millis() as u64)}),
                    );
                }
                let Some(jittered) = jittered else {
                    return Err(format!(
                        "{e}\nwatch stopped: this is a configuration error, which retrying \
                         cannot fix; fix it and start watch again"
                    ));
                };
                // An error, so shown even with -q.
                eprintln!(
                    "{} error: {}; retrying in {:.2}s",
                    output::now(),
                    hints::for_cli(&e),
                    jittered.as_secs_f64()
                );
                jittered
            }
        };
        let deadline = started + wait;
        while !signals::stop_requested() && Instant::now() < deadline {
            std::thread::sleep(
                Duration::from_millis(100).min(deadline.saturating_duration_since(Instant::now())),
            );
        }
    }
    out.note("stopped");
    Ok(0)
}

/// `5m`, `30s`, `1.5s`, `1h`: an interval as `--every` takes it.
fn humantime(every: Duration) -> String {
    let secs = every.as_secs_f64();
    if secs >= 3600.0 && secs % 3600.0 == 0.0 {
        format!("{}h", secs / 3600.0)
    } else if secs >= 60.0 && secs % 60.0 == 0.0 {
        format!("{}m", secs / 60.0)
    } else {
        format!("{secs}s")
    }
}

fn config(
    conn: &Connection,
    key: Option<String>,
    value: Option<String>,
    unset: bool,
    out: &Out,
) -> Result<u8, String> {
    let Some(key) = key else {
        let all = query_json(conn, "SELECT tether_config()", [])?;
        if out.json {
            out.json(&all);
        } else {
            output::key_values(out, &all);
        }
        return Ok(0);
    };
    match (value, unset) {
        (None, false) => {
            let text = config_value(conn, "SELECT tether_config(?1)", [&key])?;
            if out.json {
                out.json(&config_json(conn, &key, text.as_deref())?);
            } else {
                match text {
                    Some(text) => out.line(text),
                    None => out.note("(not set)"),
                }
            }
        }
        (Some(value), _) => {
            let text = config_value(conn, "SELECT tether_config(?1, ?2)", (&key, &value))?;
            if value.eq_ignore_ascii_case("null") {
                out.warn(format!(
                    "{key} is now the text {value:?}; to remove a setting use `tether config \
                     {key} --unset`"
                ));
            }
            if out.json {
                out.json(&config_json(conn, &key, text.as_deref())?);
            } else {
                out.line(format!(
                    "{key} = {}",
                    text.as_deref().unwrap_or("(not set)")
                ));
            }
        }
        (None, true) => {
            let text = config_value(conn, "SELECT tether_config(?1, NULL)", [&key])?;
            if out.json {
                out.json(&config_json(conn, &key, text.as_deref())?);
            } else {
                let from = tether::settings::environment_variable(&key)
                    .filter(|var| std::env::var_os(var).is_some_and(|v| !v.is_empty()))
                    .map_or_else(|| "the default".to_string(), |var| format!("from {var}"));
                match text {
                    None => out.line(format!("{key} unset; now not set")),
                    Some(text) => {
                        out.line(format!("{key} unset in the database; now {text} ({from})"))
                    }
                }
            }
        }
    }
    Ok(0)
}

fn run(cli: Cli, out: &Out) -> Result<u8, String> {
    let before = cli.db;
    match cli.command {
        Command::Sync(db) => cycle(&database(before, db), Cycle::Sync, out),
        Command::Push(db) => cycle(&database(before, db), Cycle::Push, out),
        Command::Pull(db) => cycle(&database(before, db), Cycle::Pull, out),
        Command::Status(db) => {
            let status = query_json(
                &open(&database(before, db), out)?,
                "SELECT tether_status()",
                [],
            )?;
            if out.json {
                out.json(&status);
            } else {
                output::status_table(out, &status);
            }
            Ok(0)
        }
        Command::Attention(db) => resolve::attention(&open(&database(before, db), out)?, out),
        Command::Retry { db, table, key } => resolve::settle(
            &open(&database(before, db), out)?,
            "tether_retry",
            table,
            key,
            out,
        ),
        Command::Discard { db, table, key } => resolve::settle(
            &open(&database(before, db), out)?,
            "tether_discard",
            Some(table),
            key,
            out,
        ),
        Command::Track {
            db,
            table,
            model,
            columns,
            except,
            no_backfill,
            keys,
        } => {
            let conn = open(&database(before, db), out)?;
            let mut options = serde_json::Map::new();
            if let Some(model) = model {
                options.insert("model".into(), model.into());
            }
            if let Some(columns) = columns {
                options.insert("columns".into(), columns.into());
            }
            if let Some(except) = except {
                options.insert("except".into(), except.into());
            }
            if no_backfill {
                options.insert("backfill".into(), false.into());
            }
            if let Some(keys) = keys {
                options.insert("keys".into(), keys.into());
            }
            let options = (!options.is_empty()).then(|| Value::Object(options).to_string());
            let result = query_json(&conn, "SELECT tether_track(?1, ?2)", (table, options))?;
            if out.json {
                out.json(&result);
            } else {
                output::track_summary(out, &result);
            }
            Ok(0)
        }
        Command::Untrack { db, table } => {
            let conn = open(&database(before, db), out)?;
            let result = query_json(&conn, "SELECT tether_untrack(?1)", [table])?;
            if out.json {
                out.json(&result);
            } else {
                out.line(format!(
                    "stopped tracking {} (model {}); {} pending mutation(s) of it stay queued",
                    output::shown(&result["table"]),
                    output::shown(&result["model"]),
                    result["pending"]
                ));
            }
            Ok(0)
        }
        Command::Config {
            db,
            key,
            value,
            unset,
        } => config(&open(&database(before, db), out)?, key, value, unset, out),
        Command::Watch { db, every, kind } => watch(&database(before, db), every, kind.into(), out),
        Command::Demo => {
            if before.is_some() {
                usage_error(
                    ErrorKind::ArgumentConflict,
                    "--db does not apply to demo: it makes its own temporary databases",
                );
            }
            signals::set_mode(signals::Mode::Demo);
            demo::run(out).map(|()| 0)
        }
    }
}

fn main() -> ExitCode {
    // First, before any thread exists: every thread inherits the blocked signals.
    signals::install();
    let cli = Cli::parse();
    // clap checks conflicts between global flags only when both stand on the same side of the
    // command's name.
    if cli.quiet && (cli.json || cli.verbose > 0) {
        let other = if cli.json { "--json" } else { "--verbose" };
        usage_error(
            ErrorKind::ArgumentConflict,
            &format!("the argument '--quiet' cannot be used with '{other}'"),
        );
    }
    let out = Out {
        quiet: cli.quiet,
        json: cli.json,
        verbose: cli.verbose,
    };
    match run(cli, &out) {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            output::error(&hints::for_cli(&message));
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_argument_has_help() {
        let cli = Cli::command();
        let mut commands = vec![&cli];
        commands.extend(cli.get_subcommands());
        for command in commands {
            for arg in command.get_arguments() {
                if arg.get_id() == "help" || arg.get_id() == "version" {
                    continue;
                }
                assert!(
                    arg.get_help().is_some(),
                    "{} {} has no help",
                    command.get_name(),
                    arg.get_id()
                );
            }
        }
        Cli::command().debug_assert();
    }

    #[test]
    fn a_real_prints_as_a_plain_number() {
        let conn = Connection::open_in_memory().unwrap();
        let value = |sql: &str| config_value(&conn, sql, []).unwrap();
        assert_eq!(value("SELECT 0.5").as_deref(), Some("0.5"));
        assert_eq!(value("SELECT 2.0").as_deref(), Some("2"));
        assert_eq!(value("SELECT 7").as_deref(), Some("7"));
        assert_eq!(value("SELECT NULL"), None);
    }

    #[test]
    fn intervals_print_as_given() {
        assert_eq!(humantime(Duration::from_secs(300)), "5m");
        assert_eq!(humantime(Duration::from_secs(30)), "30s");
        assert_eq!(humantime(Duration::from_secs(7200)), "2h");
        assert_eq!(humantime(Duration::from_millis(1500)), "1.5s");
    }
}
