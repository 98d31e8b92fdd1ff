//! `POST /tether/pull`: what changed after the client's cursor, in pages that never end between
//! two rows with the same change time (the cursor is a change time, so splitting such a group
//! would make the client skip its rest).
use serde_json::{json, Value};

use crate::store::Store;

pub fn pull(
    store: &Store,
    client: &str,
    cursor: Option<i64>,
    limit: Option<i64>,
) -> rusqlite::Result<Value> {
    let after = cursor.unwrap_or(i64::MIN);
    // A limit beyond what any page could hold means no limit (and no overflow).
    let limit = limit.filter(|l| *l < i64::from(u32::MAX));
    let through = match limit {
        Some(limit) => page_end(
            &store.change_times(client, after, limit.max(1) + 1)?,
            limit.max(1) as usize,
        ),
        None => i64::MAX,
    };
    let page = store.snapshots(client, after, through)?;
    let last = page.last().map(|(changed, _)| *changed);
    let has_more = match last {
        Some(last) if through != i64::MAX => !store.change_times(client, last, 1)?.is_empty(),
        _ => false,
    };
    let new_cursor = last.or(cursor);
    Ok(json!({
        "snapshots": page.into_iter().map(|(_, s)| s).collect::<Vec<_>>(),
        "new_sync_cursor": new_cursor,
        "has_more": has_more,
    }))
}

/// The last change time a page of at most `limit` rows may include, given the first `limit + 1`
/// change times after the cursor. A group of rows sharing a change time that would cross the
/// limit is left for the next page; only a group that alone exceeds the limit makes a page
/// longer than `limit`.
fn page_end(times: &[i64], limit: usize) -> i64 {
    if times.len() <= limit {
        return i64::MAX;
    }
    let last = times[limit - 1];
    if times[limit] != last {
        return last;
    }
    times[..limit]
        .iter()
        .rev()
        .find(|t| **t < last)
        .copied()
        .unwrap_or(last)
}

#[cfg(test)]
mod tests {
    use super::page_end;

    #[test]
    fn pages_end_between_groups() {
        assert_eq!(page_end(&[1, 2, 3], 3), i64::MAX, "everything fits");
        assert_eq!(page_end(&[1, 2, 3, 4], 3), 3);
        assert_eq!(
            page_end(&[1, 2, 3, 3], 3),
            2,
            "the group of 3s waits for the next page"
        );
        assert_eq!(
            page_end(&[5, 5, 5, 5], 3),
            5,
            "a group larger than the limit comes whole"
        );
    }
}
