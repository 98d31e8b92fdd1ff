//! Track-time shape check: warnings about table shapes that sync badly. Nothing here refuses a
//! table; `tether_track` reports the findings and `tether_status()` repeats them per table.
use rusqlite::{Connection, OptionalExtension};

use crate::bail;
use crate::error::Result;
use crate::naming::singular;
use crate::sql::ident;
use crate::table_info::{columns, rowid_shape};

#[derive(Debug, Clone, serde::Serialize)]
pub struct Finding {
    pub code: &'static str,
    pub column: Option<String>,
    pub message: String,
}

/// Warnings about how `table` will sync. `sync_key` is the sync-key column name (e.g.
/// "tether_id"); `synced` the columns that will travel in payloads.
pub fn findings(
    conn: &Connection,
    table: &str,
    sync_key: &str,
    synced: &[String],
) -> Result<Vec<Finding>> {
    let columns = columns(conn, table)?;
    if columns.is_empty() {
        bail!("no such table: {table:?}");
    }
    let is_synced = |name: &str| synced.iter().any(|s| s.eq_ignore_ascii_case(name));
    let mut out = Vec::new();
    let mut add = |code, columns: &[String], message| {
        let column = (columns.len() == 1).then(|| columns[0].clone());
        out.push(Finding {
            code,
            column,
            message,
        });
    };

    // SQLite numbers foreign keys last-declared first; report them in declaration order.
    let mut fks = conn.prepare(
        "SELECT \"table\", \"from\", \"to\" FROM pragma_foreign_key_list(?1, 'main') ORDER BY id DESC, seq",
    )?;
    let fks = fks
        .query_map([table], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<Vec<(String, String, Option<String>)>>>()?;
    for (parent, from, to) in fks.into_iter().filter(|(_, from, _)| is_synced(from)) {
        let Some(target) = rowid_target(conn, &parent, to.as_deref())? else {
            continue;
        };
        let new_column = ident(&format!("{}_{sync_key}", singular(&parent)));
        let message = format!(
            "column {from:?} of {table:?} references {parent:?}({target:?}), the parent's rowid: \
             that value is a device-local id, so on other devices it points at the wrong \
             {parent:?} row or none; reference the parent's sync key instead (e.g. {new_column} \
             TEXT REFERENCES {}({})) or exclude {from:?} from syncing",
            ident(&parent),
            ident(sync_key)
        );
        add("local_foreign_key", &[from], message);
    }

    // Laravel sets these itself: a payload's value is ignored and a pulled row carries the
    // server's, so syncing a column of that name loses what this device writes in it.
    for c in columns.iter().filter(|c| is_synced(&c.name)) {
        let owned = ["id", "created_at", "updated_at", "deleted_at"]
            .iter()
            .any(|n| n.eq_ignore_ascii_case(&c.name));
        if owned {
            let message = format!(
                "column {:?} of {table:?} syncs, but the server's model sets {:?} itself: it \
                 ignores this device's value and pulled rows bring the server's; rename the \
                 column or leave it out of syncing ({{\"except\": [{:?}]}})",
                c.name, c.name, c.name
            );
            add("server_attribute", std::slice::from_ref(&c.name), message);
        }
    }

    if columns.iter().all(|c| c.pk_position == 0) {
        let message = format!(
            "{table:?} has no PRIMARY KEY, so its rows are known only by rowid, which VACUUM or a \
             table rebuild may renumber, and tether cannot then restore sync keys to rows by \
             primary key; add an INTEGER PRIMARY KEY column (e.g. \"id\" INTEGER PRIMARY KEY)"
        );
        add("rowid_only", &[], message);
    }

    let (alias, _) = rowid_shape(conn, table, &columns)?;
    for c in columns.iter().filter(|c| c.not_null && !c.generated) {
        // A default spelled NULL still leaves the column empty.
        let no_default = c
            .default
            .as_deref()
            .is_none_or(|d| d.eq_ignore_ascii_case("NULL"));
        let exempt = [sync_key, alias.as_deref().unwrap_or_default()]
            .iter()
            .any(|n| n.eq_ignore_ascii_case(&c.name));
        if no_default && !exempt && !is_synced(&c.name) {
            let message = format!(
                "column {:?} of {table:?} is NOT NULL without a DEFAULT but does not sync: a row \
                 created on another device arrives without it, so every pulled create fails; \
                 sync the column, give it a DEFAULT, or drop NOT NULL",
                c.name
            );
            add("not_null_unsynced", std::slice::from_ref(&c.name), message);
        }
    }

    for index in unique_indexes(conn, table, sync_key)? {
        let what = if index.partial {
            "is partial"
        } else {
            "indexes expressions"
        };
        if !index.partial && index.keys.iter().all(Option::is_some) {
            continue;
        }
        let named: Vec<String> = index.keys.into_iter().flatten().collect();
        let on = if named.is_empty() {
            String::new()
        } else {
            format!(" on {named:?}")
        };
        let message = format!(
            "UNIQUE index {:?} of {table:?}{on} {what}: an INSERT OR REPLACE \
             that conflicts through it deletes the other row, and capture cannot see that delete \
             promptly (only plain UNIQUE column lists are watched); make it a plain UNIQUE \
             index on columns, or write with INSERT ... ON CONFLICT DO UPDATE instead of REPLACE",
            index.name
        );
        add("unique_not_covered", &named, message);
    }

    for def in definitions(conn, table)? {
        let subject = match def.columns.as_slice() {
            [] => format!("a table constraint of {table:?}"),
            [one] => format!("column {one:?} of {table:?}"),
            many => format!("columns {many:?} of {table:?}"),
        };
        let tokens = &def.tokens;
        for (i, w) in tokens.windows(3).enumerate() {
            // NOT DEFERRABLE INITIALLY DEFERRED is immediate.
            let negated = i > 0 && tokens[i - 1].is("NOT");
            if w[0].is("DEFERRABLE") && w[1].is("INITIALLY") && w[2].is("DEFERRED") && !negated {
                let message = format!(
                    "{subject}: a foreign key declared DEFERRABLE INITIALLY DEFERRED reports a \
                     violation only at COMMIT, where it fails a whole page of pulled rows instead \
                     of the one row; declare it without DEFERRABLE INITIALLY DEFERRED"
                );
                add("deferred_foreign_key", &def.columns, message);
            }
            let effect = match w[2].text().to_ascii_uppercase().as_str() {
                "ROLLBACK" => "rolls back the whole sync transaction",
                "FAIL" => "stops the statement midway, leaving the server row half-applied",
                _ => continue,
            };
            if w[0].is("ON") && w[1].is("CONFLICT") {
                let message = format!(
                    "{subject}: with ON CONFLICT {}, a conflict while tether applies server \
                     rows {effect}; drop the clause (the default, ABORT, undoes only the failing \
                     statement)",
                    w[2].text().to_ascii_uppercase()
                );
                add("on_conflict_clause", &def.columns, message);
            }
        }
    }
    Ok(out)
}

/// Column lists of the plain UNIQUE indexes (not partial, real columns only) of `table`, other
/// than the primary key and the sync key's own index: the conflicts through which `INSERT OR
/// REPLACE` deletes rows, which capture must watch.
pub fn unique_column_sets(
    conn: &Connection,
    table: &str,
    sync_key: &str,
) -> Result<Vec<Vec<(String, String)>>> {
    let mut sets: Vec<Vec<(String, String)>> = Vec::new();
    for index in unique_indexes(conn, table, sync_key)? {
        let set = index
            .keys
            .into_iter()
            .zip(index.collations)
            .map(|(key, collation)| key.map(|k| (k, collation)))
            .collect::<Option<Vec<_>>>();
        if let Some(set) = set.filter(|s| !index.partial && !sets.contains(s)) {
            sets.push(set);
        }
    }
    Ok(sets)
}

/// The name by which a reference to `parent`'s `to` column (None: its primary key) points at
/// the parent's rowid, if it does.
fn rowid_target(conn: &Connection, parent: &str, to: Option<&str>) -> Result<Option<String>> {
    let columns = columns(conn, parent)?;
    if columns.is_empty() {
        return Ok(None); // a dangling reference: nothing device-local in it
    }
    let (alias, has_rowid) = rowid_shape(conn, parent, &columns)?;
    let Some(to) = to else { return Ok(alias) };
    let alias_named = alias.is_some_and(|a| a.eq_ignore_ascii_case(to));
    let rowid_named = ["rowid", "oid", "_rowid_"]
        .iter()
        .any(|n| n.eq_ignore_ascii_case(to))
        && has_rowid
        && !columns.iter().any(|c| c.name.eq_ignore_ascii_case(to));
    Ok((alias_named || rowid_named).then(|| to.to_string()))
}

struct UniqueIndex {
    name: String,
    partial: bool,
    /// Key columns in index order; None for an expression.
    keys: Vec<Option<String>>,
    /// The collating sequence of each key column: uniqueness is decided with it.
    collations: Vec<String>,
}

/// UNIQUE indexes other than the primary key's and any on the sync key alone.
fn unique_indexes(conn: &Connection, table: &str, sync_key: &str) -> Result<Vec<UniqueIndex>> {
    let mut list = conn.prepare(
        "SELECT name, partial FROM pragma_index_list(?1, 'main')
          WHERE \"unique\" = 1 AND origin <> 'pk' ORDER BY seq DESC",
    )?;
    let mut keys = conn.prepare(
        "SELECT CASE WHEN cid >= 0 THEN name END, coalesce(coll, 'BINARY') FROM pragma_index_xinfo(?1, 'main')
          WHERE key = 1 ORDER BY seqno",
    )?;
    let indexes = list
        .query_map([table], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<Vec<(String, bool)>>>()?;
    let mut out = Vec::new();
    for (name, partial) in indexes {
        let (keys, collations): (Vec<Option<String>>, Vec<String>) = keys
            .query_map([&name], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?
            .into_iter()
            .unzip();
        if !matches!(keys.as_slice(), [Some(k)] if k.eq_ignore_ascii_case(sync_key)) {
            out.push(UniqueIndex {
                name,
                partial,
                keys,
                collations,
            });
        }
    }
    Ok(out)
}

/// A token of CREATE TABLE text. Quoted names and string literals are `Name`, and comments are
/// dropped, so a keyword inside them never matches.
#[derive(PartialEq)]
enum Token {
    Word(String),
    Name(String),
    Punct(char),
}

impl Token {
    fn is(&self, keyword: &str) -> bool {
        matches!(self, Token::Word(w) if w.eq_ignore_ascii_case(keyword))
    }

    fn text(&self) -> String {
        match self {
            Token::Word(s) | Token::Name(s) => s.clone(),
            Token::Punct(c) => c.to_string(),
        }
    }
}

fn tokenize(sql: &str) -> Vec<Token> {
    let word = |c: char| c.is_alphanumeric() || c == '_' || c == '$' || !c.is_ascii();
    let mut out = Vec::new();
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek().copied()) {
            (c, _) if c.is_whitespace() => {}
            ('-', Some('-')) => _ = chars.find(|&c| c == '\n'),
            ('/', Some('*')) => {
                let mut last = chars.next();
                _ = chars.find(|&c| last.replace(c) == Some('*') && c == '/');
            }
            ('\'' | '"' | '`' | '[', _) => {
                let close = if c == '[' { ']' } else { c };
                let mut text = String::new();
                while let Some(d) = chars.next() {
                    // Inside quotes (not brackets) a doubled quote stands for one.
                    if d == close && (close == ']' || chars.next_if_eq(&close).is_none()) {
                        break;
                    }
                    text.push(d);
                }
                out.push(Token::Name(text));
            }
            (c, _) if word(c) => {
                let mut text = c.to_string();
                while let Some(d) = chars.next_if(|&d| word(d)) {
                    text.push(d);
                }
                out.push(Token::Word(text));
            }
            (c, _) => out.push(Token::Punct(c)),
        }
    }
    out
}

/// One comma-separated entry of the column list: a column or a table constraint.
struct Definition {
    /// The column defined, or the columns a table constraint names.
    columns: Vec<String>,
    tokens: Vec<Token>,
}

/// The entries of `table`'s CREATE TABLE text: no pragma reports DEFERRABLE or ON CONFLICT.
fn definitions(conn: &Connection, table: &str) -> Result<Vec<Definition>> {
    let sql: Option<Option<String>> = conn
        .query_row(
            "SELECT sql FROM main.sqlite_schema WHERE type = 'table' AND name = ?1 COLLATE NOCASE",
            [table],
            |r| r.get(0),
        )
        .optional()?;
    let mut items: Vec<Vec<Token>> = Vec::new();
    let mut depth = 0;
    for token in tokenize(&sql.flatten().unwrap_or_default()) {
        let before = depth;
        match token {
            Token::Punct('(') => depth += 1,
            Token::Punct(')') => depth -= 1,
            _ => {}
        }
        match (before, depth) {
            (0, 1) => items.push(Vec::new()),
            (1, 0) => break,
            (b, d) if b < 1 || d < 1 => {}
            (1, 1) if token == Token::Punct(',') => items.push(Vec::new()),
            _ => items.last_mut().expect("opened").push(token),
        }
    }
    let items = items.into_iter().filter(|t| !t.is_empty());
    Ok(items
        .map(|tokens| {
            let start = if tokens[0].is("CONSTRAINT") { 2 } else { 0 };
            let rest = tokens.get(start..).unwrap_or_default();
            // These keywords cannot be bare column names, so they start a table constraint.
            let columns = match rest.first() {
                Some(k) if k.is("CHECK") => Vec::new(),
                Some(k) if ["PRIMARY", "UNIQUE", "FOREIGN"].iter().any(|w| k.is(w)) => {
                    listed_columns(rest)
                }
                _ => vec![tokens[0].text()],
            };
            Definition { columns, tokens }
        })
        .collect())
}

/// The first name of each entry in a constraint's first parenthesised list.
fn listed_columns(tokens: &[Token]) -> Vec<String> {
    let open = tokens.iter().position(|t| *t == Token::Punct('('));
    let list = &tokens[open.map_or(tokens.len(), |i| i + 1)..];
    let list = list
        .split(|t| *t == Token::Punct(')'))
        .next()
        .unwrap_or_default();
    list.split(|t| *t == Token::Punct(','))
        .filter_map(|entry| entry.first().map(Token::text))
        .collect()
}
