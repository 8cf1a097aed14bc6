//! Keyset paging over `(created_at, <id>)`, ascending. The cursor is `"<created_at>:<id>"` of
//! the last item returned; callers treat it as opaque.

use assent_core::{ListPage, Page, Timestamp};
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Sqlite, SqlitePool};

use super::db_err;
use crate::{StoreError, StoreResult};

/// The page size actually used: 0 means the default, anything above the maximum is capped.
pub(super) fn effective_limit(page: &Page) -> u32 {
    match page.limit {
        0 => Page::DEFAULT_LIMIT,
        n => n.min(Page::MAX_LIMIT),
    }
}

pub(super) fn encode_cursor(created_at: Timestamp, id: &str) -> String {
    format!("{}:{id}", created_at.millis())
}

/// A malformed cursor is `StoreError::Corrupt("invalid cursor")` (the server answers 400).
pub(super) fn decode_cursor(cursor: &str) -> StoreResult<(Timestamp, String)> {
    let invalid = || StoreError::Corrupt("invalid cursor".into());
    let (created_at, id) = cursor.split_once(':').ok_or_else(invalid)?;
    let created_at: i64 = created_at.parse().map_err(|_| invalid())?;
    if id.is_empty() {
        return Err(invalid());
    }
    Ok((Timestamp(created_at), id.to_owned()))
}

/// What one list needs: its table, id column, filter (pushes `WHERE ...` with its binds) and row
/// decoding.
pub(super) struct ListSpec<'a, T> {
    pub table: &'static str,
    pub id_column: &'static str,
    pub filter: &'a (dyn Fn(&mut QueryBuilder<Sqlite>) + Sync),
    pub map_row: fn(&SqliteRow) -> StoreResult<T>,
    pub key: fn(&T) -> (Timestamp, &str),
}

pub(super) async fn list_page<T>(
    pool: &SqlitePool,
    spec: ListSpec<'_, T>,
    page: &Page,
) -> StoreResult<ListPage<T>> {
    let limit = effective_limit(page);
    let after = page.cursor.as_deref().map(decode_cursor).transpose()?;

    let mut count = QueryBuilder::<Sqlite>::new(format!("SELECT COUNT(*) FROM {}", spec.table));
    (spec.filter)(&mut count);
    let total: i64 = count
        .build_query_scalar()
        .fetch_one(pool)
        .await
        .map_err(db_err)?;

    let mut select = QueryBuilder::<Sqlite>::new(format!("SELECT * FROM {}", spec.table));
    (spec.filter)(&mut select);
    if let Some((created_at, id)) = after {
        select
            .push(" AND (created_at > ")
            .push_bind(created_at.millis())
            .push(" OR (created_at = ")
            .push_bind(created_at.millis())
            .push(format!(" AND {} > ", spec.id_column))
            .push_bind(id)
            .push("))");
    }
    select
        .push(format!(" ORDER BY created_at, {} LIMIT ", spec.id_column))
        .push_bind(i64::from(limit) + 1);
    let rows = select.build().fetch_all(pool).await.map_err(db_err)?;

    let mut items = rows
        .iter()
        .map(spec.map_row)
        .collect::<StoreResult<Vec<T>>>()?;
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next = match items.last() {
        Some(last) if more => {
            let (created_at, id) = (spec.key)(last);
            Some(encode_cursor(created_at, id))
        }
        _ => None,
    };
    Ok(ListPage {
        items,
        total: u64::try_from(total).unwrap_or_default(),
        next,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let c = encode_cursor(Timestamp(42), "abc");
        assert_eq!(
            decode_cursor(&c).unwrap(),
            (Timestamp(42), "abc".to_owned())
        );
        for bad in ["", "abc", "x:abc", "12:", ":abc"] {
            assert!(
                matches!(decode_cursor(bad), Err(StoreError::Corrupt(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn limits() {
        assert_eq!(effective_limit(&Page::first(0)), Page::DEFAULT_LIMIT);
        assert_eq!(effective_limit(&Page::first(5)), 5);
        assert_eq!(effective_limit(&Page::first(5000)), Page::MAX_LIMIT);
    }
}
