//! `tether`: what `php artisan tether:sync|push|pull|status` are to Laravel users, plus tracking,
//! configuration, scheduling (`watch`) and a self-contained demo. Links the extension statically.
mod demo;
mod output;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use rusqlite::Connection;
use serde_json::Value;
use tether::settings::ConnectionSettings;
use tether::sync::{run_cycle_with_progress, Cycle};

/// Exit status when mutations were rejected (the cycle itself worked).
const REJECTED: u8 = 3;

#[derive(Parser)]
#[command(
    name = "tether",
    version,
    about = "Sync a SQLite database with a Tether server"
)]
struct Cli {
    /// The SQLite database file (must exist)
    #[arg(long, global = true, env = "TETHER_DB")]
    db: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Push pending mutations, then pull server changes
    Sync(CycleArgs),
    /// Push pending mutations only
    Push(CycleArgs),
    /// Pull server changes only
    Pull(CycleArgs),
    /// Queue counts, cursor, last sync, client id, tracked tables
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Track a table: sync key column, capture triggers, existing rows queued
    Track {
        table: String,
        /// Model name on the server (default: Laravel's name for the table)
        #[arg(long)]
        model: Option<String>,
        /// Only these columns (comma-separated)
        #[arg(long, value_delimiter = ',')]
        columns: Option<Vec<String>>,
        /// All columns but these (comma-separated)
        #[arg(long, value_delimiter = ',')]
        except: Option<Vec<String>>,
        /// Do not queue existing rows as creates
        #[arg(long)]
        no_backfill: bool,
    },
    /// Stop tracking a table
    Untrack { table: String },
    /// Show all settings, one setting, or set one (secrets are never shown)
    Config {
        key: Option<String>,
        /// The new value (may start with '-', like a negative number)
        #[arg(allow_hyphen_values = true)]
        value: Option<String>,
    },
    /// Keep syncing every interval; back off with jitter on errors; Ctrl-C stops
    Watch {
        /// Interval: 30s, 5m, 1h, 500ms, or seconds
        #[arg(long, default_value = "5m", value_parser = parse_interval)]
        every: Duration,
        /// What each cycle does: sync, push or pull
        #[arg(long, default_value = "sync")]
        kind: String,
    },
    /// Run a local tether-server and two client databases syncing through it
    Demo,
}

#[derive(clap::Args)]
struct CycleArgs {
    /// Print the result JSON instead of a table
    #[arg(long)]
    json: bool,
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

/// Opens an existing database and sets tether up on it.
fn open(db: Option<&Path>) -> Result<Connection, String> {
    let path = db.ok_or("no database given: use --db PATH (or TETHER_DB)")?;
    if !path.is_file() {
        return Err(format!("no such database: {}", path.display()));
    }
    let conn =
        Connection::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    tether::register_without_workers(&conn).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(conn)
}

fn query_json(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Value, String> {
    let text: String = conn
        .query_row(sql, params, |r| r.get(0))
        .map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

fn cycle(conn: &Connection, kind: Cycle, json: bool) -> Result<u8, String> {
    let tracked: i64 = conn
        .query_row("SELECT count(*) FROM tether_tracked_tables", [], |r| {
            r.get(0)
        })
        .map_err(|e| e.to_string())?;
    if tracked == 0 {
        return Err("no table is tracked in this database: run `tether track TABLE` first".into());
    }
    let bars = output::Bars::new();
    let result = run_cycle_with_progress(
        conn,
        &ConnectionSettings::default(),
        kind,
        "foreground",
        &|p| bars.show(p),
    )
    .map_err(|e| e.to_string());
    bars.finish();
    let result = result?;
    if json {
        println!("{result}");
    } else {
        output::cycle_table(&result);
    }
    Ok(if result["failed"].as_u64().unwrap_or(0) > 0 {
        REJECTED
    } else {
        0
    })
}

fn watch(conn: &Connection, every: Duration, kind: Cycle) -> Result<u8, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).map_err(|e| e.to_string())?;
    eprintln!("syncing every {every:?}; Ctrl-C stops");
    // The same policy as the extension's background worker.
    let mut backoff = tether::retry::Backoff::new(every);
    while !stop.load(Ordering::SeqCst) {
        let started = Instant::now();
        let wait = match run_cycle_with_progress(
            conn,
            &ConnectionSettings::default(),
            kind,
            "schedule",
            &|_| {},
        ) {
            Ok(result) => {
                backoff.succeeded();
                println!("{} {}", output::now(), output::cycle_line(&result));
                every
            }
            Err(e) => {
                let jittered = backoff.failed();
                eprintln!(
                    "{} error: {e}; retrying in {:.1}s",
                    output::now(),
                    jittered.as_secs_f64()
                );
                jittered
            }
        };
        let deadline = started + wait;
        while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
            std::thread::sleep(
                Duration::from_millis(100).min(deadline.saturating_duration_since(Instant::now())),
            );
        }
    }
    eprintln!("stopped");
    Ok(0)
}

fn run(cli: Cli) -> Result<u8, String> {
    let db = cli.db.as_deref();
    match cli.command {
        Command::Sync(a) => cycle(&open(db)?, Cycle::Sync, a.json),
        Command::Push(a) => cycle(&open(db)?, Cycle::Push, a.json),
        Command::Pull(a) => cycle(&open(db)?, Cycle::Pull, a.json),
        Command::Status { json } => {
            let status = query_json(&open(db)?, "SELECT tether_status()", [])?;
            if json {
                println!("{status}");
            } else {
                output::status_table(&status);
            }
            Ok(0)
        }
        Command::Track {
            table,
            model,
            columns,
            except,
            no_backfill,
        } => {
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
            let options = (!options.is_empty()).then(|| Value::Object(options).to_string());
            let result = query_json(&open(db)?, "SELECT tether_track(?1, ?2)", (table, options))?;
            println!(
                "{}",
                serde_json::to_string_pretty(&result).unwrap_or_default()
            );
            Ok(0)
        }
        Command::Untrack { table } => {
            println!(
                "{}",
                query_json(&open(db)?, "SELECT tether_untrack(?1)", [table])?
            );
            Ok(0)
        }
        Command::Config { key, value } => {
            let conn = open(db)?;
            let sql_value =
                |sql: &str, params: &[&dyn rusqlite::ToSql]| -> Result<String, String> {
                    let v: rusqlite::types::Value = conn
                        .query_row(sql, params, |r| r.get(0))
                        .map_err(|e| e.to_string())?;
                    Ok(match v {
                        rusqlite::types::Value::Null => "(not set)".into(),
                        rusqlite::types::Value::Integer(i) => i.to_string(),
                        rusqlite::types::Value::Text(t) => t,
                        other => format!("{other:?}"),
                    })
                };
            match (key, value) {
                (None, _) => output::key_values(&query_json(&conn, "SELECT tether_config()", [])?),
                (Some(key), None) => {
                    println!("{}", sql_value("SELECT tether_config(?1)", &[&key])?)
                }
                (Some(key), Some(value)) => println!(
                    "{key} = {}",
                    sql_value("SELECT tether_config(?1, ?2)", &[&key, &value])?
                ),
            }
            Ok(0)
        }
        Command::Watch { every, kind } => {
            let kind = Cycle::parse(&kind).map_err(|e| e.to_string())?;
            watch(&open(db)?, every, kind)
        }
        Command::Demo => demo::run().map(|()| 0),
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!("tether: {message}");
            ExitCode::from(1)
        }
    }
}
