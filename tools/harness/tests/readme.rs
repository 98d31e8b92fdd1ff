//! README.md runs as written. Every code block of the quick start (the first section with SQL),
//! "SQL reference", "The command line", "Syncing" and "Conflicts and retries" (each with its
//! subsections) is run, in document order, one fresh database and one fresh `tether-server` on
//! 127.0.0.1 per section, as a reader would type them:
//!
//! - SQL blocks (sqlite3-shell style) run statement by statement on a connection that loaded the
//!   extension (`.load` lines are skipped: it is loaded already). A comment on its own line after
//!   a statement that starts with `{` or `[` (JSON), `'` (a text value) or holds `|` (rows, as the
//!   shell prints them) is the statement's expected output: the result must have its shape (keys,
//!   nested keys where shown, types; `…` stands for anything, numbers and ids are not compared).
//! - Shell blocks run `tether …` with the built command line and `sqlite3 FILE "SQL"` (with
//!   rusqlite, the extension not loaded), in the section's directory; each must exit 0.
//! - Blocks that only show output (all `--` comments, or JSON) are counted, not run.
//! - A block that cannot run in a test is marked in README, on a line before it:
//!   `<!-- readme-test: skip (reason) -->`. Skips are printed with their reasons.
//!
//! - A statement followed by an error as the shell prints it (`-- Runtime error near line …:
//!   MESSAGE (19)`) must fail with that message; JSON shown one complete value per line is
//!   compared row by row.
//!
//! `https://api.example.com`, README's placeholder for the reader's server, is replaced by the
//! section's server; any other URL in what runs is an error, so nothing leaves 127.0.0.1.
//!
//! docs/integration.md runs too, as one worked example: every block in document order on one
//! database, against one server started with the `--model`s of the guide's own `tether-server`
//! command.
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rusqlite::types::Value as SqlValue;
use rusqlite::Connection;
use serde_json::Value;
use tether_harness::*;

/// README's stand-in for the reader's server.
const PLACEHOLDER_URL: &str = "https://api.example.com";
/// The marker line before a block, e.g. `<!-- readme-test: skip (runs until Ctrl-C) -->`.
const MARKER: &str = "<!-- readme-test:";
/// Sections (headings of level 1 or 2, by prefix) whose blocks run, besides the quick start.
const SECTIONS: &[&str] = &[
    "SQL reference",
    "The command line",
    "Syncing",
    "Conflicts and retries",
];
/// The longest one shell command may take (`tether demo` takes seconds).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// The words a SQL block's first statement may start with.
const SQL_KEYWORDS: &str = "SELECT INSERT UPDATE DELETE CREATE DROP ALTER PRAGMA WITH REPLACE \
    BEGIN COMMIT END ROLLBACK SAVEPOINT RELEASE VACUUM ATTACH DETACH ANALYZE";
const SHELL_COMMANDS: &[&str] = &["tether", "tether-server", "cargo", "cd", "sqlite3"];

struct Section {
    heading: String,
    blocks: Vec<Block>,
}

struct Block {
    /// 1-based line of the block's first line in README.md.
    line: usize,
    /// The block's text, without its indentation.
    lines: Vec<String>,
    /// A fenced block's info string (`sql`, `sh`, …).
    info: Option<String>,
    /// The reason given by a `skip` marker.
    skip: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Sql,
    Shell,
    Output,
}

fn readme() -> String {
    let path = repo_root().join("README.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Width of a line's leading whitespace (a tab counts 4).
fn indent_of(line: &str) -> usize {
    let mut width = 0;
    for c in line.chars() {
        match c {
            ' ' => width += 1,
            '\t' => width += 4,
            _ => break,
        }
    }
    width
}

/// `line` without its first `width` columns of indentation.
fn dedent(line: &str, width: usize) -> String {
    let mut taken = 0;
    let mut rest = line;
    while taken < width {
        match rest.chars().next() {
            Some(' ') => taken += 1,
            Some('\t') => taken += 4,
            _ => break,
        }
        rest = &rest[1..];
    }
    rest.to_string()
}

/// The reason of a marker line (`<!-- readme-test: skip (reason) -->`).
fn parse_marker(line_no: usize, rest: &str) -> String {
    let directive = rest
        .trim()
        .strip_suffix("-->")
        .unwrap_or_else(|| panic!("README line {line_no}: a readme-test marker ends with `-->`"))
        .trim();
    let reason = directive
        .strip_prefix("skip")
        .map(str::trim)
        .and_then(|r| r.strip_prefix('('))
        .and_then(|r| r.strip_suffix(')'))
        .map(str::trim)
        .filter(|r| !r.is_empty());
    reason
        .unwrap_or_else(|| {
            panic!(
                "README line {line_no}: unknown readme-test marker {directive:?}; \
                 the one known is `<!-- readme-test: skip (reason) -->`"
            )
        })
        .to_string()
}

/// README's sections (a heading of level 1 or 2 and what follows, subsections included) with
/// their code blocks: indented (after a blank line) and fenced.
fn sections(text: &str) -> Vec<Section> {
    let lines: Vec<&str> = text.lines().collect();
    let mut sections = vec![Section {
        heading: String::new(),
        blocks: Vec::new(),
    }];
    let mut marker: Option<(usize, String)> = None;
    let mut after_blank = true;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        let indent = indent_of(line);
        if trimmed.is_empty() {
            after_blank = true;
            i += 1;
            continue;
        }
        if indent <= 3 && (trimmed.starts_with("```") || trimmed.starts_with("~~~")) {
            let fence_char = trimmed.chars().next().unwrap();
            let fence_len = trimmed.chars().take_while(|c| *c == fence_char).count();
            let info = trimmed[fence_len..].trim().to_string();
            let mut body = Vec::new();
            let mut j = i + 1;
            loop {
                assert!(j < lines.len(), "README line {}: unclosed fence", i + 1);
                let t = lines[j].trim();
                if t.len() >= fence_len && t.chars().all(|c| c == fence_char) {
                    break;
                }
                body.push(dedent(lines[j], indent));
                j += 1;
            }
            sections.last_mut().unwrap().blocks.push(Block {
                line: i + 2,
                lines: body,
                info: Some(info).filter(|s| !s.is_empty()),
                skip: marker.take().map(|(_, reason)| reason),
            });
            after_blank = false;
            i = j + 1;
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix(MARKER) {
            if let Some((at, _)) = &marker {
                panic!("README line {at}: readme-test marker not followed by a code block");
            }
            marker = Some((i + 1, parse_marker(i + 1, rest)));
            after_blank = true;
            i += 1;
            continue;
        }
        if indent >= 4 && after_blank {
            let start = i;
            let mut body = Vec::new();
            while i < lines.len() && (lines[i].trim().is_empty() || indent_of(lines[i]) >= 4) {
                body.push(dedent(lines[i], 4));
                i += 1;
            }
            while body.last().is_some_and(|l| l.trim().is_empty()) {
                body.pop();
            }
            sections.last_mut().unwrap().blocks.push(Block {
                line: start + 1,
                lines: body,
                info: None,
                skip: marker.take().map(|(_, reason)| reason),
            });
            after_blank = lines[i - 1].trim().is_empty();
            continue;
        }
        if let Some((at, _)) = &marker {
            panic!("README line {at}: readme-test marker not followed by a code block");
        }
        if indent <= 3 && trimmed.starts_with('#') {
            let level = trimmed.chars().take_while(|c| *c == '#').count();
            let title = trimmed[level..].trim();
            if level <= 2 && trimmed[level..].starts_with(' ') {
                sections.push(Section {
                    heading: title.to_string(),
                    blocks: Vec::new(),
                });
            }
        }
        after_blank = false;
        i += 1;
    }
    if let Some((at, _)) = marker {
        panic!("README line {at}: readme-test marker not followed by a code block");
    }
    sections
}

/// What a block is: by its fence's info string, else by its first line that is not a comment.
fn classify(block: &Block) -> Result<Kind, String> {
    match block
        .info
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("sql" | "sqlite") => return Ok(Kind::Sql),
        Some("sh" | "bash" | "shell" | "console") => return Ok(Kind::Shell),
        Some("json" | "text" | "output") => return Ok(Kind::Output),
        _ => {}
    }
    let lines: Vec<&str> = block
        .lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        return Err("empty block".into());
    }
    if lines.iter().all(|l| l.starts_with("--")) {
        return Ok(Kind::Output);
    }
    if lines[0].starts_with('{') || lines[0].starts_with('[') {
        let text = lines.join("\n");
        let (_, rest) = parse_shape(&text).map_err(|e| format!("JSON-only block: {e}"))?;
        return if rest.trim().is_empty() {
            Ok(Kind::Output)
        } else {
            Err(format!(
                "JSON-only block with text after the value: {rest:?}"
            ))
        };
    }
    let first = lines
        .iter()
        .find(|l| !l.starts_with("--") && !l.starts_with('#'))
        .unwrap();
    let word = first.split_whitespace().next().unwrap_or("");
    let dot_command = first
        .strip_prefix('.')
        .is_some_and(|r| r.starts_with(char::is_alphabetic));
    if dot_command
        || SQL_KEYWORDS
            .split_whitespace()
            .any(|k| k.eq_ignore_ascii_case(word))
    {
        return Ok(Kind::Sql);
    }
    if SHELL_COMMANDS.contains(&word) || word.starts_with("./") {
        return Ok(Kind::Shell);
    }
    Err(format!(
        "neither SQL, shell nor output (first line {first:?}): make it one, or mark it \
         `<!-- readme-test: skip (reason) -->`"
    ))
}

// ---------------------------------------------------------------------------------------------
// Expected output: JSON with `…`, compared by shape.

/// The shape of a value README shows.
#[derive(Debug)]
enum Shape {
    /// `…`: anything.
    Any,
    Null,
    Bool,
    Number,
    Str,
    /// The items shown (none: any array).
    Array(Vec<Shape>),
    /// The keys shown; open when `…` stands for more keys.
    Object(Vec<(String, Shape)>, bool),
}

struct ShapeParser {
    chars: Vec<char>,
    pos: usize,
}

impl ShapeParser {
    fn ws(&mut self) {
        while self.chars.get(self.pos).is_some_and(|c| c.is_whitespace()) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.ws();
        self.chars.get(self.pos).copied()
    }

    fn eat(&mut self, text: &str) -> bool {
        self.ws();
        let wanted: Vec<char> = text.chars().collect();
        if self.chars[self.pos..].starts_with(&wanted) {
            self.pos += wanted.len();
            true
        } else {
            false
        }
    }

    fn ellipsis(&mut self) -> bool {
        self.eat("…") || self.eat("...")
    }

    fn error<T>(&self, what: &str) -> Result<T, String> {
        let near: String = self.chars[self.pos.min(self.chars.len())..]
            .iter()
            .take(30)
            .collect();
        Err(format!("{what} at {near:?}"))
    }

    fn value(&mut self) -> Result<Shape, String> {
        if self.ellipsis() {
            return Ok(Shape::Any);
        }
        match self.peek() {
            Some('{') => self.object(),
            Some('[') => self.array(),
            Some('"') => self.string().map(|_| Shape::Str),
            Some('-' | '0'..='9') => {
                let start = self.pos;
                while self
                    .chars
                    .get(self.pos)
                    .is_some_and(|c| c.is_ascii_digit() || "+-.eE".contains(*c))
                {
                    self.pos += 1;
                }
                let text: String = self.chars[start..self.pos].iter().collect();
                match text.parse::<f64>() {
                    Ok(_) => Ok(Shape::Number),
                    Err(_) => self.error("bad number"),
                }
            }
            _ if self.eat("true") || self.eat("false") => Ok(Shape::Bool),
            _ if self.eat("null") => Ok(Shape::Null),
            _ => self.error("expected a JSON value"),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        if !self.eat("\"") {
            return self.error("expected a string");
        }
        let mut out = String::new();
        loop {
            let Some(&c) = self.chars.get(self.pos) else {
                return self.error("unterminated string");
            };
            self.pos += 1;
            match c {
                '"' => return Ok(out),
                '\\' => {
                    let escaped = self.chars.get(self.pos).copied().unwrap_or('\\');
                    self.pos += 1;
                    out.push(escaped);
                }
                c => out.push(c),
            }
        }
    }

    fn object(&mut self) -> Result<Shape, String> {
        self.eat("{");
        let mut members = Vec::new();
        let mut open = false;
        if self.eat("}") {
            return Ok(Shape::Object(members, open));
        }
        loop {
            if self.ellipsis() {
                open = true;
            } else {
                let key = self.string()?;
                // `{"pushed", "failed"}` lists keys without values.
                let value = if self.eat(":") {
                    self.value()?
                } else {
                    Shape::Any
                };
                members.push((key, value));
            }
            if self.eat("}") {
                return Ok(Shape::Object(members, open));
            }
            if !self.eat(",") {
                return self.error("expected , or } in an object");
            }
        }
    }

    fn array(&mut self) -> Result<Shape, String> {
        self.eat("[");
        let mut items = Vec::new();
        if self.eat("]") {
            return Ok(Shape::Array(items));
        }
        loop {
            if !self.ellipsis() {
                items.push(self.value()?);
            }
            if self.eat("]") {
                return Ok(Shape::Array(items));
            }
            if !self.eat(",") {
                return self.error("expected , or ] in an array");
            }
        }
    }
}

/// Parses the JSON value `text` starts with (`…` allowed); returns it and the text after it.
fn parse_shape(text: &str) -> Result<(Shape, String), String> {
    let mut parser = ShapeParser {
        chars: text.chars().collect(),
        pos: 0,
    };
    let shape = parser.value()?;
    Ok((shape, parser.chars[parser.pos..].iter().collect()))
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Whether `actual` has the shape README shows; the error says where it differs.
fn compare(actual: &Value, expected: &Shape, path: &str) -> Result<(), String> {
    let wrong = |wanted: &str| {
        Err(format!(
            "{path}: README shows {wanted}, the result has {} ({actual})",
            type_name(actual)
        ))
    };
    match expected {
        Shape::Any => Ok(()),
        Shape::Null if actual.is_null() => Ok(()),
        Shape::Null => wrong("null"),
        Shape::Bool if actual.is_boolean() => Ok(()),
        Shape::Bool => wrong("a boolean"),
        Shape::Number if actual.is_number() => Ok(()),
        Shape::Number => wrong("a number"),
        Shape::Str if actual.is_string() => Ok(()),
        Shape::Str => wrong("a string"),
        Shape::Array(items) => {
            let Some(array) = actual.as_array() else {
                return wrong("an array");
            };
            if items.is_empty() {
                return Ok(());
            }
            if array.is_empty() {
                return Err(format!("{path}: README shows items, the result has none"));
            }
            for (i, value) in array.iter().enumerate() {
                let path = format!("{path}[{i}]");
                if !items.iter().any(|item| compare(value, item, &path).is_ok()) {
                    compare(value, &items[0], &path)?;
                }
            }
            Ok(())
        }
        Shape::Object(members, open) => {
            let Some(object) = actual.as_object() else {
                return wrong("an object");
            };
            for (key, shape) in members {
                match object.get(key) {
                    Some(value) => compare(value, shape, &format!("{path}.{key}"))?,
                    None => return Err(format!("{path}: no key {key:?} in {actual}")),
                }
            }
            if !open {
                let shown: BTreeSet<&str> = members.iter().map(|(k, _)| k.as_str()).collect();
                let extra: Vec<&String> = object
                    .keys()
                    .filter(|k| !shown.contains(k.as_str()))
                    .collect();
                if !extra.is_empty() {
                    return Err(format!(
                        "{path}: keys {extra:?} are not shown in README (add them, or `…`)"
                    ));
                }
            }
            Ok(())
        }
    }
}

/// What the comment lines after a statement say it returns.
enum Expected {
    Json(Shape),
    /// `'text'` (compared exactly unless it holds `…`).
    Text(String),
    /// Rows as the sqlite3 shell prints them, `a | b | c`.
    Rows(Vec<Vec<String>>),
    /// `Runtime error near line …: MESSAGE (19)`, as the sqlite3 shell prints a failed statement
    /// (continued on comment lines that start with blanks): the statement must fail with
    /// MESSAGE (`…` stands for anything).
    Error(String),
}

/// The message of a shown error: after the shell's `Runtime error near line …: ` (or `Error: `),
/// continuation lines joined, without the trailing result code.
fn shown_error(comments: &[String]) -> Option<String> {
    let first = comments.first()?.trim();
    let message = [
        "Runtime error near line …: ",
        "Parse error near line …: ",
        "Error: ",
    ]
    .iter()
    .find_map(|prefix| first.strip_prefix(prefix))?;
    let mut text = message.to_string();
    for more in comments[1..].iter().take_while(|c| c.starts_with("   ")) {
        text.push(' ');
        text.push_str(more.trim());
    }
    let text = match text.rfind(" (") {
        Some(at) if text.ends_with(')') && text[at + 2..text.len() - 1].parse::<u32>().is_ok() => {
            text[..at].to_string()
        }
        _ => text,
    };
    Some(text)
}

/// Whether `actual` reads as `shown`, where `…` in `shown` stands for anything.
fn reads_as(actual: &str, shown: &str) -> bool {
    let mut rest = actual;
    for piece in shown.split('…').map(str::trim).filter(|p| !p.is_empty()) {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    true
}

fn expectation(comments: &[String]) -> Result<Option<Expected>, String> {
    let Some(first) = comments.first().map(|c| c.trim()) else {
        return Ok(None);
    };
    if let Some(message) = shown_error(comments) {
        return Ok(Some(Expected::Error(message)));
    }
    let json_line = |c: &String| {
        let c = c.trim();
        (c.starts_with('{') || c.starts_with('[')) && parse_shape(c).is_ok()
    };
    // One JSON value per line, each complete: a row each (`SELECT payload FROM …`).
    if comments.len() > 1 && json_line(&comments[0]) && json_line(&comments[1]) {
        let rows = comments
            .iter()
            .take_while(|c| json_line(c))
            .map(|c| vec![c.trim().to_string()])
            .collect();
        return Ok(Some(Expected::Rows(rows)));
    }
    let json_cells = (first.starts_with('{') || first.starts_with('['))
        && parse_shape(first).is_ok_and(|(_, rest)| rest.trim_start().starts_with('|'));
    if (first.starts_with('{') || first.starts_with('[')) && !json_cells {
        let (shape, _prose_after) = parse_shape(&comments.join("\n"))?;
        return Ok(Some(Expected::Json(shape)));
    }
    if let Some(rest) = first.strip_prefix('\'') {
        let mut text = String::new();
        let mut chars = rest.chars().peekable();
        loop {
            match chars.next() {
                None => return Err(format!("unterminated text in {first:?}")),
                Some('\'') if chars.peek() == Some(&'\'') => {
                    chars.next();
                    text.push('\'');
                }
                Some('\'') => return Ok(Some(Expected::Text(text))),
                Some(c) => text.push(c),
            }
        }
    }
    if first.contains('|') {
        let rows = comments
            .iter()
            .take_while(|c| c.contains('|'))
            .map(|c| c.split('|').map(|cell| cell.trim().to_string()).collect())
            .collect();
        return Ok(Some(Expected::Rows(rows)));
    }
    Ok(None)
}

fn check(rows: &[Vec<SqlValue>], expected: &Expected, url: &str) -> Result<(), String> {
    let single = || match rows {
        [row] if row.len() == 1 => Ok(&row[0]),
        _ => Err(format!(
            "README shows one value, the statement returned {} row(s) of {} column(s)",
            rows.len(),
            rows.first().map_or(0, Vec::len)
        )),
    };
    match expected {
        Expected::Json(shape) => {
            let SqlValue::Text(text) = single()? else {
                return Err(format!("README shows JSON, the result is {:?}", single()?));
            };
            let value: Value = serde_json::from_str(text)
                .map_err(|e| format!("README shows JSON, the result is not JSON ({e}): {text}"))?;
            compare(&value, shape, "result")
        }
        Expected::Text(wanted) => {
            let SqlValue::Text(text) = single()? else {
                return Err(format!("README shows text, the result is {:?}", single()?));
            };
            let wanted = wanted.replace(PLACEHOLDER_URL, url);
            if wanted.contains('…') || *text == wanted {
                Ok(())
            } else {
                Err(format!("README shows {wanted:?}, the result is {text:?}"))
            }
        }
        Expected::Error(shown) => Err(format!("the text shows the error {shown:?}")),
        Expected::Rows(wanted) => {
            if rows.is_empty() {
                return Err(format!(
                    "README shows {} row(s), the result has none",
                    wanted.len()
                ));
            }
            // Row by row when as many are shown, else every row like the first shown.
            for (i, row) in rows.iter().enumerate() {
                let shown = if wanted.len() == rows.len() {
                    &wanted[i]
                } else {
                    &wanted[0]
                };
                if row.len() != shown.len() {
                    return Err(format!(
                        "README shows {} columns, the result has {}",
                        shown.len(),
                        row.len()
                    ));
                }
                for (cell, value) in shown.iter().zip(row) {
                    check_cell(cell, value)?;
                }
            }
            Ok(())
        }
    }
}

/// One cell of a shown row against the value: JSON by shape, numbers as numbers, text as text.
fn check_cell(cell: &str, value: &SqlValue) -> Result<(), String> {
    let fits = match value {
        _ if cell.contains('…') => true,
        SqlValue::Null => cell.is_empty() || cell == "NULL",
        SqlValue::Integer(_) | SqlValue::Real(_) => cell.parse::<f64>().is_ok(),
        SqlValue::Text(text) if cell.starts_with('{') || cell.starts_with('[') => {
            let (shape, _) = parse_shape(cell)?;
            let actual: Value = serde_json::from_str(text)
                .map_err(|e| format!("README shows JSON {cell}, the result is {text:?}: {e}"))?;
            compare(&actual, &shape, cell)?;
            true
        }
        SqlValue::Text(_) => cell.parse::<f64>().is_err() && !cell.is_empty(),
        SqlValue::Blob(_) => false,
    };
    if fits {
        Ok(())
    } else {
        Err(format!("README shows {cell:?}, the result has {value:?}"))
    }
}

// ---------------------------------------------------------------------------------------------
// Running blocks.

/// Fails on any URL but the section's server (what runs talks to 127.0.0.1 only).
fn only_local_urls(text: &str, url: &str) -> Result<(), String> {
    for scheme in ["http://", "https://"] {
        for (at, _) in text.match_indices(scheme) {
            if !text[at..].starts_with(url) {
                return Err(format!(
                    "a URL other than the placeholder {PLACEHOLDER_URL}: {:?}",
                    &text[at..text.len().min(at + 40)]
                ));
            }
        }
    }
    Ok(())
}

fn sql_complete(sql: &str) -> bool {
    let Ok(text) = std::ffi::CString::new(sql) else {
        return false;
    };
    // SAFETY: a valid NUL-terminated string, only read.
    unsafe { rusqlite::ffi::sqlite3_complete(text.as_ptr()) != 0 }
}

struct Statement {
    line: usize,
    sql: String,
    /// Comment lines on their own after the statement (without `--`).
    comments: Vec<String>,
}

/// A SQL block's statements, with the comment lines that follow each; `.load` lines skipped.
fn statements(block: &Block) -> Result<Vec<Statement>, String> {
    let mut out: Vec<Statement> = Vec::new();
    let mut pending = String::new();
    let mut pending_line = 0;
    for (n, line) in block.lines.iter().enumerate() {
        let line_no = block.line + n;
        let trimmed = line.trim();
        if pending.trim().is_empty() {
            if trimmed.is_empty() {
                continue;
            }
            if let Some(comment) = trimmed.strip_prefix("--") {
                if let Some(last) = out.last_mut() {
                    last.comments.push(comment.to_string());
                }
                continue;
            }
            if trimmed.starts_with('.') {
                if trimmed.starts_with(".load ") {
                    continue;
                }
                return Err(format!(
                    "line {line_no}: only `.load` of the sqlite3 shell's commands runs here"
                ));
            }
            pending_line = line_no;
        }
        let mut rest = line.as_str();
        'line: loop {
            for (at, c) in rest.char_indices() {
                if c == ';' && sql_complete(&format!("{pending}{}", &rest[..=at])) {
                    pending.push_str(&rest[..=at]);
                    out.push(Statement {
                        line: pending_line,
                        sql: std::mem::take(&mut pending),
                        comments: Vec::new(),
                    });
                    rest = &rest[at + 1..];
                    let after = rest.trim();
                    if after.is_empty() || after.starts_with("--") {
                        break 'line; // a comment on the statement's line: prose
                    }
                    pending_line = line_no;
                    continue 'line;
                }
            }
            pending.push_str(rest);
            pending.push('\n');
            break;
        }
    }
    if !pending.trim().is_empty() {
        return Err(format!(
            "line {pending_line}: statement without its `;`: {}",
            pending.trim()
        ));
    }
    Ok(out)
}

fn query_all(conn: &Connection, sql: &str) -> rusqlite::Result<Vec<Vec<SqlValue>>> {
    let mut stmt = conn.prepare(sql)?;
    let columns = stmt.column_count();
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push((0..columns).map(|i| row.get(i)).collect::<Result<_, _>>()?);
    }
    Ok(out)
}

#[derive(Default)]
struct Counts {
    statements: usize,
    outputs_checked: usize,
    commands: usize,
}

fn run_sql(conn: &Connection, block: &Block, url: &str, counts: &mut Counts) -> Result<(), String> {
    for statement in statements(block)? {
        let at = statement.line;
        let sql = statement.sql.replace(PLACEHOLDER_URL, url);
        only_local_urls(&sql, url).map_err(|e| format!("line {at}: {e}"))?;
        let expected = expectation(&statement.comments)
            .map_err(|e| format!("line {at}: the output shown after it: {e}"))?;
        if let Some(Expected::Error(shown)) = &expected {
            match query_all(conn, &sql) {
                Ok(_) => {
                    return Err(format!(
                        "line {at}: {}: succeeded, the text shows the error {shown:?}",
                        sql.trim()
                    ))
                }
                Err(e) if reads_as(&e.to_string(), shown) => {}
                Err(e) => {
                    return Err(format!(
                        "line {at}: {}: the text shows the error {shown:?}, SQLite said {e}",
                        sql.trim()
                    ))
                }
            }
            counts.statements += 1;
            counts.outputs_checked += 1;
            continue;
        }
        let rows = query_all(conn, &sql).map_err(|e| format!("line {at}: {}: {e}", sql.trim()))?;
        counts.statements += 1;
        if let Some(expected) = expected {
            check(&rows, &expected, url).map_err(|e| format!("line {at}: {}: {e}", sql.trim()))?;
            counts.outputs_checked += 1;
        }
    }
    Ok(())
}

/// Words of a shell line: quotes and backslashes as sh reads them, `#` starts a comment.
fn shell_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '#' if word.is_none() => break,
            c if c.is_whitespace() => {
                words.extend(word.take());
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err("unterminated '".into()),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => w.extend(chars.next()),
                        Some('$' | '`') => return Err("$ and ` are not run here".into()),
                        Some(c) => w.push(c),
                        None => return Err("unterminated \"".into()),
                    }
                }
            }
            '\\' => word.get_or_insert_with(String::new).extend(chars.next()),
            '$' | '`' | '|' | '&' | ';' | '<' | '>' | '(' | ')' => {
                return Err(format!("shell syntax {c:?} is not run here"));
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

/// The `tether` command line of this workspace, built once per test process.
fn cli_binary() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let tools = repo_root().join("tools");
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "tether-cli", "--manifest-path"])
            .arg(tools.join("Cargo.toml"))
            .status()
            .expect("run cargo build for tether-cli");
        assert!(status.success(), "building tether-cli failed");
        tools.join("target/debug/tether")
    })
}

/// Runs `tether ARGS…` in `dir` (no `TETHER_*` variable of the test's environment), at most
/// [`COMMAND_TIMEOUT`]; its output when it exits 0.
fn run_tether(args: &[String], dir: &Path) -> Result<String, String> {
    let logs = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (out_path, err_path) = (logs.path().join("stdout"), logs.path().join("stderr"));
    let mut command = Command::new(cli_binary());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("TETHER_") {
            command.env_remove(name);
        }
    }
    let mut child = command
        .args(args)
        .current_dir(dir)
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).map_err(|e| e.to_string())?)
        .stderr(File::create(&err_path).map_err(|e| e.to_string())?)
        .spawn()
        .map_err(|e| format!("start {}: {e}", cli_binary().display()))?;
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if start.elapsed() > COMMAND_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "still running after {COMMAND_TIMEOUT:?}: a command that does not end must be \
                 marked `<!-- readme-test: skip (reason) -->`"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    if status.success() {
        Ok(stdout)
    } else {
        Err(format!("{status}\nstdout:\n{stdout}\nstderr:\n{stderr}"))
    }
}

/// A file name a shell block may write in the section's directory: relative, no `..`.
fn inside(dir: &Path, name: &str) -> Result<PathBuf, String> {
    let path = Path::new(name);
    if path
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        Ok(dir.join(path))
    } else {
        Err(format!("{name:?} is outside the section's directory"))
    }
}

fn run_shell(block: &Block, dir: &Path, url: &str, counts: &mut Counts) -> Result<(), String> {
    for (n, line) in block.lines.iter().enumerate() {
        let at = block.line + n;
        let words: Vec<String> = shell_words(line)
            .map_err(|e| format!("line {at}: {e}"))?
            .into_iter()
            .map(|w| w.replace(PLACEHOLDER_URL, url))
            .collect();
        let Some(program) = words.first() else {
            continue;
        };
        for word in &words {
            only_local_urls(word, url).map_err(|e| format!("line {at}: {e}"))?;
        }
        match program.as_str() {
            "tether" => {
                run_tether(&words[1..], dir).map_err(|e| format!("line {at}: {line}: {e}"))?;
            }
            "sqlite3" => {
                let [_, file, sql] = words.as_slice() else {
                    return Err(format!(
                        "line {at}: only `sqlite3 FILE \"SQL\"` runs here: {line}"
                    ));
                };
                let conn = open_plain(&inside(dir, file).map_err(|e| format!("line {at}: {e}"))?);
                conn.execute_batch(sql)
                    .map_err(|e| format!("line {at}: {line}: {e}"))?;
            }
            other => {
                return Err(format!(
                    "line {at}: `{other}` cannot run in a test: mark the block \
                     `<!-- readme-test: skip (reason) -->`"
                ))
            }
        }
        counts.commands += 1;
    }
    Ok(())
}

/// The sections that run, in document order: the quick start (the first section with SQL),
/// then those whose heading starts with one of `names`.
fn sections_to_run<'a>(all: &'a [Section], names: &[&str]) -> Vec<&'a Section> {
    let quick_start = all
        .iter()
        .position(|s| {
            s.blocks
                .iter()
                .any(|b| b.skip.is_none() && classify(b) == Ok(Kind::Sql))
        })
        .expect("README has no section with SQL: where is the quick start?");
    let mut chosen = BTreeSet::from([quick_start]);
    for name in names {
        let found = all
            .iter()
            .position(|s| s.heading.starts_with(name))
            .unwrap_or_else(|| panic!("README has no section {name:?}"));
        assert!(
            !all[found].blocks.is_empty(),
            "README's section {name:?} has no code block"
        );
        chosen.insert(found);
    }
    chosen.into_iter().map(|i| &all[i]).collect()
}

#[derive(Default)]
struct Report {
    sql_blocks: usize,
    shell_blocks: usize,
    output_blocks: usize,
    counts: Counts,
    skipped: Vec<String>,
    failures: Vec<String>,
}

impl Report {
    /// Runs one block, counted by kind (SQL through `sql`); a skipped one is noted.
    fn run_block(
        &mut self,
        block: &Block,
        title: &str,
        dir: &Path,
        url: &str,
        sql: &mut dyn FnMut(&Block, &mut Counts) -> Result<(), String>,
    ) -> Result<(), String> {
        if let Some(reason) = &block.skip {
            self.skipped
                .push(format!("line {} ({title}): {reason}", block.line));
            return Ok(());
        }
        match classify(block) {
            Ok(Kind::Output) => {
                self.output_blocks += 1;
                Ok(())
            }
            Ok(Kind::Sql) => {
                self.sql_blocks += 1;
                sql(block, &mut self.counts)
            }
            Ok(Kind::Shell) => {
                self.shell_blocks += 1;
                run_shell(block, dir, url, &mut self.counts)
            }
            Err(e) => Err(format!("line {}: {e}", block.line)),
        }
    }

    fn print(&self) {
        eprintln!(
            "README: {} blocks ran ({} SQL: {} statements, {} outputs compared; {} shell: {} \
             commands), {} output examples, {} skipped{}",
            self.sql_blocks + self.shell_blocks,
            self.sql_blocks,
            self.counts.statements,
            self.counts.outputs_checked,
            self.shell_blocks,
            self.counts.commands,
            self.output_blocks,
            self.skipped.len(),
            if self.skipped.is_empty() { "" } else { ":" }
        );
        for skip in &self.skipped {
            eprintln!("  skipped {skip}");
        }
    }
}

/// Runs the blocks of `text`'s quick start and of the sections `names`, each section on a fresh
/// database and a fresh server.
fn run_readme(text: &str, names: &[&str]) -> Report {
    let all = sections(text);
    let mut report = Report::default();
    for section in sections_to_run(&all, names) {
        let title = if section.heading.is_empty() {
            "(before the first heading)"
        } else {
            &section.heading
        };
        let server = Server::start(&[]);
        let (dir, path) = temp_db();
        let mut conn: Option<Connection> = None;
        for block in &section.blocks {
            let mut sql = |block: &Block, counts: &mut Counts| {
                let conn = conn.get_or_insert_with(|| open_loaded(&path));
                run_sql(conn, block, &server.url, counts)
            };
            let result = report.run_block(block, title, dir.path(), &server.url, &mut sql);
            if let Err(e) = result {
                // What follows in the section builds on this block: go on with the next section.
                report.failures.push(format!(
                    "README section {title:?}, block at line {}: {e}",
                    block.line
                ));
                break;
            }
        }
        drop(conn);
        drop(server);
    }
    report
}

#[test]
fn every_block_of_the_readme_runs_as_written() {
    let text = readme();
    assert!(
        text.contains(PLACEHOLDER_URL),
        "README no longer uses the placeholder {PLACEHOLDER_URL} the test replaces"
    );
    let report = run_readme(&text, SECTIONS);
    report.print();
    assert!(
        report.failures.is_empty(),
        "README does not run as written:\n{}",
        report.failures.join("\n\n")
    );
    assert!(
        report.sql_blocks > 0 && report.shell_blocks > 0 && report.counts.outputs_checked > 0,
        "too little ran: is README parsed right?"
    );
}

/// The server a guide's worked example starts: the `--model` arguments of its `tether-server`
/// command line.
fn guide_models(text: &str) -> Vec<String> {
    let command: String = text
        .lines()
        .skip_while(|l| !l.contains("tether-server --"))
        .take_while(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|l| l.trim().trim_end_matches('\\'))
        .collect::<Vec<_>>()
        .join(" ");
    let arguments = command
        .split_once("tether-server")
        .map_or("", |(_, after)| after);
    let words = shell_words(arguments).expect("the guide's tether-server command");
    words
        .windows(2)
        .filter(|w| w[0] == "--model")
        .map(|w| w[1].clone())
        .collect()
}

/// Runs every block of a guide whose sections continue one worked example: one database, one
/// server started with the guide's own models, in document order; stops at the first failure.
fn run_guide(text: &str, local_url: &str) -> Report {
    let models = guide_models(text);
    assert!(
        !models.is_empty(),
        "the guide starts no tether-server with --model"
    );
    let mut args = Vec::new();
    for model in &models {
        args.extend(["--model", model.as_str()]);
    }
    let server = Server::start(&args);
    let text = text.replace(local_url, PLACEHOLDER_URL);
    let (dir, path) = temp_db();
    let conn = open_loaded(&path);
    let mut report = Report::default();
    'sections: for section in sections(&text) {
        for block in &section.blocks {
            let mut sql =
                |block: &Block, counts: &mut Counts| run_sql(&conn, block, &server.url, counts);
            let result =
                report.run_block(block, &section.heading, dir.path(), &server.url, &mut sql);
            if let Err(e) = result {
                report.failures.push(format!(
                    "section {:?}, block at line {}: {e}",
                    section.heading, block.line
                ));
                break 'sections;
            }
        }
    }
    report
}

/// The integration guide runs as written: its sections continue one worked example (projects
/// and tasks on one device), and its examples are what app developers copy.
#[test]
fn every_block_of_the_integration_guide_runs_as_written() {
    let text = std::fs::read_to_string(repo_root().join("docs/integration.md"))
        .expect("docs/integration.md");
    let report = run_guide(&text, "http://127.0.0.1:8787");
    report.print();
    assert!(
        report.failures.is_empty(),
        "docs/integration.md does not run as written:\n{}",
        report.failures.join("\n\n")
    );
    assert!(
        report.sql_blocks >= 10,
        "too little ran ({} SQL blocks): is the guide parsed right?",
        report.sql_blocks
    );
}

/// docs/troubleshooting.md's diagnostic SQL runs: every SQL block, statement by statement, on a
/// database with a table tracked each way and a few captured writes. The outputs it shows come
/// from the situations it describes and are not compared; a statement that names a column or
/// table tether no longer has fails here.
#[test]
fn every_sql_statement_of_the_troubleshooting_guide_runs() {
    let text = std::fs::read_to_string(repo_root().join("docs/troubleshooting.md"))
        .expect("docs/troubleshooting.md");
    let (_dir, path) = temp_db();
    let conn = open_loaded(&path);
    conn.execute_batch(
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT, status TEXT, priority INTEGER);
         CREATE TABLE events (id INTEGER PRIMARY KEY, name TEXT);",
    )
    .unwrap();
    json(&conn, "SELECT tether_track('tasks')");
    json(
        &conn,
        r#"SELECT tether_track('events', '{"keys": "on_sync"}')"#,
    );
    conn.execute_batch(
        "INSERT INTO tasks (title, status) VALUES ('Buy milk', 'open');
         UPDATE tasks SET status = 'done';
         INSERT INTO events (name) VALUES ('opened');",
    )
    .unwrap();
    let (mut ran, mut failures) = (0, Vec::new());
    for section in sections(&text) {
        for block in &section.blocks {
            if block.skip.is_some() || !matches!(classify(block), Ok(Kind::Sql)) {
                continue;
            }
            let statements = statements(block).unwrap_or_else(|e| {
                panic!("docs/troubleshooting.md, block at line {}: {e}", block.line)
            });
            for statement in statements {
                match query_all(&conn, &statement.sql) {
                    Ok(_) => ran += 1,
                    Err(e) => failures.push(format!(
                        "docs/troubleshooting.md line {}: {}: {e}",
                        statement.line,
                        statement.sql.trim()
                    )),
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        ran >= 5,
        "only {ran} statements ran: is the guide parsed right?"
    );
}

/// The checker itself: a README whose blocks fail in each way is reported section by section.
#[test]
fn a_readme_that_does_not_run_as_written_fails() {
    let text = r#"# demo

    .load ./libtether
    SELECT tether_track('tasks');

## SQL reference

    CREATE TABLE t (id INTEGER PRIMARY KEY, title TEXT);
    SELECT tether_track('t');
    -- {"table": "t", "model": "T"}

## The command line

<!-- readme-test: skip (a reason) -->

    tether --db app.db watch

Then:

    cargo build --release

## Syncing

    SELECT tether_config('server_url', 'https://api.example.com');
    SELECT tether_config('server_url');
    -- 'https://elsewhere.example.com'

## Conflicts and retries

    -- {"output": "only"}

Then:

    sqlite3 app.db "CREATE TABLE tasks (id INTEGER PRIMARY KEY)"
    tether --db app.db sync
"#;
    let report = run_readme(text, SECTIONS);
    let failures = report.failures.join("\n");
    for expected in [
        "section \"demo\", block at line 3: line 4: SELECT tether_track('tasks');: tether_track: no such table",
        "section \"SQL reference\", block at line 8: line 9: SELECT tether_track('t');: result: keys",
        "section \"The command line\", block at line 20: line 20: `cargo` cannot run in a test",
        "section \"Syncing\", block at line 24: line 25: SELECT tether_config('server_url');: README shows \"https://elsewhere.example.com\"",
        "section \"Conflicts and retries\", block at line 34: line 35: tether --db app.db sync: exit status: 1",
    ] {
        assert!(failures.contains(expected), "no {expected:?} in\n{failures}");
    }
    assert_eq!(report.failures.len(), 5, "{failures}");
    assert_eq!(report.skipped, ["line 16 (The command line): a reason"]);
    assert_eq!(report.output_blocks, 1);
}

/// Errors shown as the sqlite3 shell prints them, and JSON shown one row per line, are checked.
#[test]
fn shown_errors_and_json_rows_are_checked() {
    let text = r#"# demo

    CREATE TABLE t (id INTEGER PRIMARY KEY, tags TEXT);
    SELECT tether_track('t', '{"json": ["tags"]}');
    INSERT INTO t (tags) VALUES ('["a"]'), ('plain');
    SELECT payload FROM tether_mutation_logs;
    -- {"tags":["a"]}
    -- {"tags":"plain"}        (prose after a row)
    INSERT INTO t (id) VALUES (1);
    -- Runtime error near line …: UNIQUE constraint failed: t.id (19)

## SQL reference

    CREATE TABLE u (id INTEGER PRIMARY KEY, tags TEXT);
    SELECT tether_track('u', '{"json": ["tags"]}');
    INSERT INTO u (tags) VALUES ('["a"]'), ('plain');
    SELECT payload FROM tether_mutation_logs WHERE model = 'U';
    -- {"tags":"plain"}
    -- {"tags":["a"]}

## Syncing

    SELECT 1;
    -- Runtime error near line …: no such
    --   thing (1)

## Conflicts and retries

    SELECT * FROM nowhere;
    -- Runtime error near line …: no such column (1)
"#;
    let report = run_readme(text, &["SQL reference", "Syncing", "Conflicts and retries"]);
    let failures = report.failures.join("\n");
    for expected in [
        "section \"SQL reference\", block at line 14: line 17: SELECT payload FROM tether_mutation_logs WHERE model = 'U';: {\"tags\":\"plain\"}.tags: README shows a string, the result has an array",
        "section \"Syncing\", block at line 23: line 23: SELECT 1;: succeeded, the text shows the error \"no such thing\"",
        "section \"Conflicts and retries\", block at line 29: line 29: SELECT * FROM nowhere;: the text shows the error \"no such column\", SQLite said no such table: nowhere",
    ] {
        assert!(failures.contains(expected), "no {expected:?} in\n{failures}");
    }
    assert_eq!(report.failures.len(), 3, "{failures}");
}

/// Argument counts a signature allows: `f(a [, b [, c]])` → {1, 2, 3}.
fn arities(arguments: &str) -> BTreeSet<i32> {
    let mut depth = 0usize;
    let mut at_depth: BTreeMap<usize, i32> = BTreeMap::new();
    let mut in_word = false;
    for c in arguments.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            c if c.is_alphanumeric() || c == '_' => {
                if !in_word {
                    *at_depth.entry(depth).or_default() += 1;
                }
                in_word = true;
                continue;
            }
            _ => {}
        }
        in_word = false;
    }
    let deepest = at_depth.keys().max().copied().unwrap_or(0);
    (0..=deepest)
        .map(|d| at_depth.range(..=d).map(|(_, n)| n).sum())
        .collect()
}

#[test]
fn the_readme_names_only_functions_tether_registers_with_their_argument_counts() {
    let text = readme();
    let registered: BTreeMap<&str, BTreeSet<i32>> = tether::SQL_FUNCTIONS
        .iter()
        .map(|(name, counts)| (*name, counts.iter().copied().collect()))
        .collect();

    // The function table of "SQL reference": every signature, every registered function.
    let reference = text
        .split("\n## ")
        .find(|s| s.starts_with("SQL reference"))
        .expect("README has a section \"SQL reference\"");
    let mut documented: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    for row in reference.lines().filter(|l| l.starts_with("| `tether_")) {
        let first_cell = row.split('|').nth(1).unwrap();
        for signature in first_cell.split('`').skip(1).step_by(2) {
            let Some((name, rest)) = signature.split_once('(') else {
                continue; // a view
            };
            let arguments = rest
                .strip_suffix(')')
                .unwrap_or_else(|| panic!("signature {signature:?}"));
            documented
                .entry(name.to_string())
                .or_default()
                .extend(arities(arguments));
        }
    }
    let documented: BTreeMap<&str, BTreeSet<i32>> = documented
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    assert_eq!(
        documented, registered,
        "README's SQL reference table (left) differs from tether::SQL_FUNCTIONS (right)"
    );

    // Every call written anywhere in README names a registered function.
    let mut unknown = BTreeSet::new();
    for (at, _) in text.match_indices("tether_") {
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let name: String = text[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if text[at + name.len()..].starts_with('(') && !registered.contains_key(name.as_str()) {
            unknown.insert(name);
        }
    }
    assert!(
        unknown.is_empty(),
        "README calls functions tether does not register: {unknown:?}"
    );
}

#[test]
fn the_shape_comparison_ignores_numbers_and_ids_but_not_keys() {
    let (shape, rest) = parse_shape(
        r#"{"pushed": 3, "rows": [{"id": "01J…", "pk": {"id": 7}}], "more": {…}, …} -- prose"#,
    )
    .unwrap();
    assert_eq!(rest.trim(), "-- prose");
    let fits = serde_json::json!({"pushed": 0, "rows": [{"id": "X", "pk": {"id": 1}}], "more": {"a": 1}, "extra": null});
    compare(&fits, &shape, "result").unwrap();
    for wrong in [
        serde_json::json!({"pushed": "3", "rows": [{"id": "X", "pk": {"id": 1}}], "more": {}}),
        serde_json::json!({"rows": [{"id": "X", "pk": {"id": 1}}], "more": {}}),
        serde_json::json!({"pushed": 1, "rows": [], "more": {}}),
        serde_json::json!({"pushed": 1, "rows": [{"id": "X", "pk": {"id": 1}, "new": 1}], "more": {}}),
    ] {
        assert!(compare(&wrong, &shape, "result").is_err(), "{wrong} fits");
    }
    assert_eq!(arities("[table [, key]]"), BTreeSet::from([0, 1, 2]));
    assert_eq!(arities("table [, options]"), BTreeSet::from([1, 2]));
    assert_eq!(arities(""), BTreeSet::from([0]));
    assert_eq!(
        shell_words(r#"sqlite3 app.db "INSERT INTO t VALUES ('a b')"   # note"#).unwrap(),
        ["sqlite3", "app.db", "INSERT INTO t VALUES ('a b')"]
    );
}
