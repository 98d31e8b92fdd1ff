//! tether-server: a reference Tether sync server, an independent implementation of the server
//! side of the protocol (like the Laravel `tether/server` package), for tests, demos and app
//! developers without a Laravel stack.
mod http;
mod models;
mod pull;
mod push;
mod store;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use serde::Deserialize;

use models::{Model, ModelConfig};

/// A reference Tether sync server: POST /tether/push and POST /tether/pull with the exact JSON
/// of the protocol, backed by an embedded SQLite database.
#[derive(Parser)]
#[command(version, after_help = AFTER_HELP)]
struct Args {
    /// Address to listen on; port 0 picks a free one. The first line on stdout names the URL.
    #[arg(long, default_value = "127.0.0.1:8787")]
    listen: SocketAddr,
    /// SQLite database file, created if missing [default: a temporary file removed on exit]
    #[arg(long)]
    db: Option<PathBuf>,
    /// JSON file: {"models": [MODEL…], "strict_duplicates": false}
    #[arg(long)]
    config: Option<PathBuf>,
    /// A model as JSON, e.g. '{"name": "Task", "fields": {"title": "required|max:255"}, "soft_deletes": true}'
    /// (repeatable; after those of --config). Without any model, the demo models Project and Task are served.
    #[arg(long = "model", value_name = "JSON")]
    models: Vec<String>,
    /// Reject an already-applied mutation as `duplicate` instead of listing it as applied again.
    #[arg(long)]
    strict_duplicates: bool,
    /// Require `Authorization: Bearer TOKEN`; requests without it get HTTP 401.
    #[arg(long, env = "TETHER_SERVER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Enable /_test/faults and /_test/clock (fault injection, frozen clock). Loopback only.
    #[arg(long)]
    test_controls: bool,
    /// Do not log a line per request on stderr (failed requests are still reported).
    #[arg(long)]
    quiet: bool,
    /// Largest request body accepted (bytes, or with a K or M suffix); larger ones get HTTP 413.
    #[arg(long, value_name = "SIZE", default_value = "8M", value_parser = parse_size)]
    max_body: usize,
    /// Seconds a client has to send a request's headers, and then its body (HTTP 408); also how
    /// long an idle kept-alive connection stays open.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0, value_parser = parse_seconds)]
    read_timeout: f64,
    /// Trim every string and turn empty ones into null before validating, as a default Laravel
    /// app's global middleware (TrimStrings, ConvertEmptyStringsToNull) does.
    #[arg(long)]
    trim_strings: bool,
}

fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let (digits, unit) = match t.char_indices().last() {
        Some((i, 'K' | 'k')) => (&t[..i], 1024),
        Some((i, 'M' | 'm')) => (&t[..i], 1024 * 1024),
        _ => (t, 1),
    };
    digits
        .trim()
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{text:?} is not a size (e.g. 8M, 512K, 100000)"))
}

fn parse_seconds(text: &str) -> Result<f64, String> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0 && *s <= 86_400.0)
        .ok_or_else(|| format!("{text:?} is not a number of seconds (0 < s <= 86400)"))
}

const AFTER_HELP: &str = "\
MODEL fields map each writable field to Laravel-style rules separated by '|':
  required, nullable, max:N, integer, numeric, boolean, string, array
Other model keys: \"table\" (default: snake_case plural of the name), \"soft_deletes\" (bool),
\"scope\" (a column holding the owning client id: each client sees and changes only its rows).

Test controls (with --test-controls):
  POST /_test/faults  {\"path\": \"/tether/push\", \"times\": 1, \"status\": 500 | \"delay_ms\": 2000 |
                       \"body\": \"html\" | \"truncated\" | \"drop\" |
                       \"fail\": \"before_commit\" | \"panic\"}   (or a list of them)
  DELETE /_test/faults
  POST /_test/clock   {\"frozen_us\": 1764072000000000 | null}";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    models: Vec<ModelConfig>,
    #[serde(default)]
    strict_duplicates: bool,
}

fn demo_models() -> Vec<ModelConfig> {
    serde_json::from_str(
        r#"[{"name": "Project", "fields": {"name": "required|max:255"}, "soft_deletes": true},
            {"name": "Task", "fields": {"title": "required|max:255", "status": "nullable|max:32",
             "priority": "nullable|integer", "due_date": "nullable", "done": "nullable|boolean",
             "tags": "nullable|array"}, "soft_deletes": true}]"#,
    )
    .expect("demo models parse")
}

fn load_models(args: &Args) -> Result<(Vec<Model>, bool), String> {
    let mut configs = Vec::new();
    let mut strict = args.strict_duplicates;
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let file: ConfigFile =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        configs.extend(file.models);
        strict |= file.strict_duplicates;
    }
    for text in &args.models {
        configs.push(serde_json::from_str(text).map_err(|e| format!("--model {text}: {e}"))?);
    }
    if configs.is_empty() {
        configs = demo_models();
    }
    let models = configs
        .into_iter()
        .map(Model::from_config)
        .collect::<Result<Vec<_>, _>>()?;
    for (i, m) in models.iter().enumerate() {
        if models[..i]
            .iter()
            .any(|o| o.name == m.name || o.table == m.table)
        {
            return Err(format!(
                "model {} or its table {} is declared twice",
                m.name, m.table
            ));
        }
    }
    Ok((models, strict))
}

fn main() {
    let args = Args::parse();
    if args.test_controls && !args.listen.ip().is_loopback() {
        eprintln!("tether-server: --test-controls is only allowed on a loopback address");
        std::process::exit(2);
    }
    let (models, strict) = load_models(&args).unwrap_or_else(|e| {
        eprintln!("tether-server: {e}");
        std::process::exit(2);
    });
    let temp = tempfile::tempdir().expect("temporary directory");
    let db = args
        .db
        .clone()
        .unwrap_or_else(|| temp.path().join("tether-server.db"));
    let names: Vec<String> = models.iter().map(|m| m.name.clone()).collect();
    let store = store::Store::open(&db, models).unwrap_or_else(|e| {
        eprintln!("tether-server: cannot open {}: {e}", db.display());
        std::process::exit(2);
    });
    let read_timeout = std::time::Duration::from_secs_f64(args.read_timeout);
    let server = Arc::new(http::Server::new(
        store,
        http::Settings {
            token: args.token.clone(),
            strict_duplicates: strict,
            test_controls: args.test_controls,
            quiet: args.quiet,
            max_body: args.max_body,
            read_timeout,
            trim_strings: args.trim_strings,
        },
    ));
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .unwrap_or_else(|e| {
                eprintln!("tether-server: cannot listen on {}: {e}", args.listen);
                std::process::exit(2);
            });
        let address = listener.local_addr().expect("bound address");
        println!(
            "tether-server listening on http://{address} (models: {})",
            names.join(", ")
        );
        std::io::stdout().flush().ok();
        let shutdown = async {
            let ctrl_c = tokio::signal::ctrl_c();
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
        };
        http::serve(listener, http::router(server), read_timeout, shutdown).await;
    });
    drop(temp);
}
