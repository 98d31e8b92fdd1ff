//! What tracking a table means, derived from its shape, its options and the settings: the
//! synced columns, JSON columns, model, table number and REPLACE-watched constraints.
use rusqlite::Connection;

use crate::bail;
use crate::error::{Error, Result};
use crate::settings::Settings;
use crate::sql::check_name;
use crate::table_info::{Column, PrimaryKey, TableInfo};
use crate::triggers::Capture;

use super::TrackedTable;

/// Options of `tether_track(table, options)`.
#[derive(Default, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TrackOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) columns: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) except: Option<Vec<String>>,
    /// Columns whose text is JSON, besides those the schema declares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) json: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) backfill: Option<bool>,
    /// When a new row gets its sync key: "on_insert" (the default: the capture trigger gives
    /// it) or "on_sync" (when the next sync starts: capture writes one queue row, see
    /// `crate::keys`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) keys: Option<String>,
}

impl TrackOptions {
    pub(crate) fn keys_on_sync(&self) -> Result<bool> {
        match self.keys.as_deref() {
            None | Some("on_insert") => Ok(false),
            Some("on_sync") => Ok(true),
            Some(other) => bail!("\"keys\" must be \"on_insert\" or \"on_sync\", not {other:?}"),
        }
    }
}

/// The columns that sync: every column but a rowid-alias primary key (local to this device),
/// the sync key and generated columns, narrowed by `columns` or `except`. Primary key columns that
/// carry data (TEXT or composite keys) sync: a pulled row could not be written without them.
fn synced_columns(info: &TableInfo, sync_key: &str, options: &TrackOptions) -> Result<Vec<String>> {
    let table = &info.name;
    let find = |name: &String| {
        info.column(name)
            .ok_or_else(|| Error::new(format!("{table:?} has no column {name:?}")))
    };
    let local_key =
        |c: &Column| matches!(&info.primary_key, PrimaryKey::RowidAlias(k) if *k == c.name);
    if options.columns.is_some() && options.except.is_some() {
        bail!("give either \"columns\" or \"except\", not both");
    }
    if let Some(chosen) = &options.columns {
        let mut out = Vec::new();
        for name in chosen {
            let column = find(name)?;
            if local_key(column) {
                bail!("{name:?} is the INTEGER PRIMARY KEY of {table:?}: a local row number that never syncs (the sync key is the row's identity)");
            }
            if column.generated {
                bail!("{name:?} is a generated column of {table:?} and cannot be synced");
            }
            if name == sync_key {
                bail!("{name:?} is the sync key; it travels as entity_id, not in the payload");
            }
            if !out.contains(name) {
                out.push(name.clone());
            }
        }
        return Ok(out);
    }
    let except = options.except.clone().unwrap_or_default();
    for name in &except {
        find(name)?;
    }
    Ok(info
        .columns
        .iter()
        .filter(|c| {
            !local_key(c) && !c.generated && c.name != sync_key && !except.contains(&c.name)
        })
        .map(|c| c.name.clone())
        .collect())
}

/// Everything `track` derives from a table's shape, its stored options and the settings.
pub(crate) struct Plan {
    pub info: TableInfo,
    pub options: TrackOptions,
    pub table_id: i64,
    pub model: String,
    pub sync_key: String,
    pub synced: Vec<String>,
    pub json_columns: Vec<String>,
    pub unique_sets: Vec<Vec<(String, String)>>,
    pub generated: Vec<String>,
    pub keys_on_sync: bool,
}

impl Plan {
    pub fn capture(&self) -> Capture<'_> {
        Capture {
            table: &self.info.name,
            table_id: self.table_id,
            model: &self.model,
            sync_key: &self.sync_key,
            columns: &self.synced,
            json_columns: &self.json_columns,
            locator: &self.info.locator,
            primary_key: &self.info.primary_key,
            unique_sets: &self.unique_sets,
            generated: &self.generated,
            keys_on_sync: self.keys_on_sync,
        }
    }
}

pub(crate) fn plan(
    conn: &Connection,
    default_sync_key: &str,
    info: TableInfo,
    given: Option<TrackOptions>,
    existing: Option<&TrackedTable>,
) -> Result<Plan> {
    let explicit = given.is_some();
    let mut options = match (given, existing) {
        (Some(options), _) => options,
        (None, Some(previous)) => serde_json::from_str(&previous.options)?,
        (None, None) => TrackOptions::default(),
    };
    // Options given again change what they name and keep the rest: switching when keys are
    // given must not silently rename the model (its queue would go to a model the server does
    // not know) or start syncing an excluded column. `columns` and `except` replace each other.
    if let (true, Some(previous)) = (explicit, existing) {
        let before: TrackOptions = serde_json::from_str(&previous.options)?;
        // Kept lists forget columns that no longer exist (renamed or dropped since): the new
        // options are what the user names now.
        let existing_only = |names: Option<Vec<String>>| {
            names.map(|names| {
                names
                    .into_iter()
                    .filter(|name| info.column(name).is_some())
                    .collect::<Vec<_>>()
            })
        };
        if options.columns.is_none() && options.except.is_none() {
            options.columns = existing_only(before.columns);
            options.except = existing_only(before.except);
        }
        options.model = options.model.take().or(before.model);
        options.json = options.json.take().or_else(|| existing_only(before.json));
        options.backfill = options.backfill.or(before.backfill);
        options.keys = options.keys.take().or(before.keys);
    }
    if let (false, Some(previous)) = (explicit, existing) {
        // Stored options may name columns a migration has since dropped: they no longer apply.
        // But if columns also appeared, a column may have been renamed, and guessing could start
        // syncing a column meant to stay local: the user decides.
        let vanished: Vec<&String> = [&options.columns, &options.except, &options.json]
            .into_iter()
            .flatten()
            .flatten()
            .filter(|name| info.column(name).is_none())
            .collect();
        let appeared: Vec<&String> = info
            .columns
            .iter()
            .map(|c| &c.name)
            .filter(|c| !previous.table_columns.contains(c))
            .collect();
        if !vanished.is_empty() && !appeared.is_empty() {
            bail!(
                "the options of {:?} name {vanished:?}, which no longer exist, and {appeared:?} appeared (renamed?): call tether_track({:?}, options) naming the columns to sync or exclude now",
                info.name,
                info.name
            );
        }
        let exists = |name: &String| info.column(name).is_some();
        let lists = [&mut options.columns, &mut options.except, &mut options.json];
        for names in lists.into_iter().flatten() {
            names.retain(exists);
        }
    }
    let sync_key = match existing {
        Some(previous) => previous.sync_key.clone(),
        None => default_sync_key.to_string(),
    };
    check_name("sync key column", &sync_key)?;
    // SQLite names are case-insensitive: the key column is spelled as the table spells it.
    let sync_key = info
        .columns
        .iter()
        .find(|c| c.name.eq_ignore_ascii_case(&sync_key))
        .map_or(sync_key, |c| c.name.clone());
    let model = options
        .model
        .clone()
        .unwrap_or_else(|| crate::naming::model_for_table(&info.name));
    if model.trim().is_empty() {
        bail!("model must be a non-empty name");
    }
    let synced = synced_columns(&info, &sync_key, &options)?;
    let keys_on_sync = options.keys_on_sync()?;
    for name in options.json.iter().flatten() {
        if info.column(name).is_none() {
            bail!("{:?} has no column {name:?} (in \"json\")", info.name);
        }
    }
    let mut json_columns: Vec<String> = info.declared_json();
    json_columns.extend(options.json.iter().flatten().cloned());
    json_columns.extend(existing.iter().flat_map(|t| t.json_columns.iter().cloned()));
    json_columns.retain(|c| synced.contains(c));
    json_columns.sort();
    json_columns.dedup();
    let table_id = match existing {
        Some(previous) => previous.table_id,
        None => conn.query_row(
            "SELECT coalesce(max(table_id), 0) + 1 FROM tether_tracked_tables",
            [],
            |r| r.get(0),
        )?,
    };
    let unique_sets = crate::shape::unique_column_sets(conn, &info.name, &sync_key)?;
    let generated = info
        .columns
        .iter()
        .filter(|c| c.generated)
        .map(|c| c.name.clone())
        .collect();
    Ok(Plan {
        keys_on_sync,
        generated,
        info,
        options,
        table_id,
        model,
        sync_key,
        synced,
        json_columns,
        unique_sets,
    })
}

pub(crate) fn default_sync_key(settings: &Settings) -> &str {
    settings.get("sync_key").unwrap_or("tether_id")
}

/// A short, stable fingerprint of generated SQL (FNV-1a, 64 bits).
pub(crate) fn fingerprint(texts: &[String]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in texts.iter().flat_map(|t| t.bytes().chain([0])) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

pub(crate) fn parse_options(options: Option<&str>) -> Result<Option<TrackOptions>> {
    options
        .map(|text| {
            serde_json::from_str(text)
                .map_err(|e| Error::new(format!("options must be a JSON object: {e}")))
        })
        .transpose()
}
