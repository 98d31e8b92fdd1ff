//! Identifiers: ULIDs generated in Rust, and the client id that names this device.
use std::time::{SystemTime, UNIX_EPOCH};

use rand::RngCore;
use rusqlite::{Connection, OptionalExtension};

use crate::error::Result;

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A new ULID: 48-bit millisecond time, 80 random bits, 26 Crockford base32 characters.
pub fn new_ulid() -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    ulid_at(millis as u64)
}

/// A ULID whose time part is `millis` (Unix milliseconds), with fresh randomness.
pub fn ulid_at(millis: u64) -> String {
    let millis = u128::from(millis);
    let mut random = [0u8; 10];
    rand::thread_rng().fill_bytes(&mut random);
    let random = random
        .iter()
        .fold(0u128, |acc, &b| (acc << 8) | u128::from(b));
    let value = ((millis & 0xFFFF_FFFF_FFFF) << 80) | random;
    let mut text = [0u8; 26];
    for (i, slot) in text.iter_mut().enumerate() {
        let shift = 5 * (25 - i);
        *slot = CROCKFORD[((value >> shift) & 31) as usize];
    }
    String::from_utf8(text.to_vec()).expect("ASCII")
}

/// The Unix milliseconds in a ULID's time part (its first ten characters); `None` when those are
/// not Crockford base32.
pub fn ulid_millis(ulid: &str) -> Option<i64> {
    ulid.get(..10)?.bytes().try_fold(0i64, |acc, b| {
        CROCKFORD
            .iter()
            .position(|&c| c == b)
            .map(|v| (acc << 5) | v as i64)
    })
}

/// True for a 26-character upper-case Crockford base32 string whose first character is 0-7.
pub fn is_ulid(text: &str) -> bool {
    text.len() == 26 && text.as_bytes()[0] <= b'7' && text.bytes().all(|b| CROCKFORD.contains(&b))
}

/// Generates and persists the fallback client id once; later loads keep it.
pub fn ensure_generated_client_id(conn: &Connection) -> Result<()> {
    let existing: Option<String> = conn
        .query_row(
            "SELECT value FROM tether_sync_state WHERE key = 'client_id'",
            [],
            |r| r.get(0),
        )
        .optional()?
        .flatten();
    if existing.is_none() {
        crate::db::write_txn(conn, |conn| {
            conn.execute(
                "INSERT INTO tether_sync_state (key, value) VALUES ('client_id', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = CURRENT_TIMESTAMP
                 WHERE tether_sync_state.value IS NULL",
                [new_ulid()],
            )?;
            Ok(())
        })?;
    }
    Ok(())
}

/// The persisted generated client id (the last step of client id resolution).
pub fn generated_client_id(conn: &Connection) -> Result<Option<String>> {
    Ok(conn
        .query_row(
            "SELECT value FROM tether_sync_state WHERE key = 'client_id'",
            [],
            |r| r.get(0),
        )
        .optional()?
        .flatten())
}

pub fn register(conn: &Connection) -> Result<()> {
    use crate::functions::{register, Kind};
    register(
        conn,
        "tether_ulid",
        &[0],
        Kind::Volatile,
        |_| Ok(new_ulid()),
    )?;
    register(conn, "tether_version", &[0], Kind::Pure, |_| {
        Ok(env!("CARGO_PKG_VERSION"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_part_decodes_back() {
        let ms = 1_795_624_526_419;
        assert_eq!(ulid_millis(&ulid_at(ms)), Some(ms as i64));
        assert_eq!(ulid_millis("not a ulid"), None);
    }

    #[test]
    fn ulids_are_well_formed_unique_and_time_ordered() {
        let a = new_ulid();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_ulid();
        assert!(is_ulid(&a), "{a}");
        assert!(is_ulid(&b), "{b}");
        assert_ne!(a, b);
        assert!(a[..10] < b[..10], "time prefix increases: {a} {b}");
        assert!(!is_ulid("01JDQ8Z6W3V5T2R9M4K7H1G0FI"), "I is not Crockford");
        assert!(
            !is_ulid("81JDQ8Z6W3V5T2R9M4K7H1G0FA"),
            "first char above 7 overflows 128 bits"
        );
    }
}
