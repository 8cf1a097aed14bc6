//! The audit log (`activities`, §6.4): appended by the writer in the transaction of the change
//! each entry records (a transition, a device write), read through the pool.

use assent_core::{Activity, AuditEntry, EnvironmentId, ListPage, Page};
use rusqlite::Connection;
use sqlx::{QueryBuilder, Sqlite};

use super::paging::effective_limit;
use super::rows::{self, to_json};
use super::{SqliteStore, db_err, sql_err};
use crate::{ActivityFilter, AuditStore, StoreError, StoreResult};

const INSERT: &str = "INSERT INTO activities (id, environment_id, type, at, auth_req_id, user_id,
         application_id, device_id, actor_type, actor_id, channel, correlation_id, details)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

/// Appends `entries` in the writer's transaction, in order.
pub(super) fn insert_entries(conn: &Connection, entries: &[AuditEntry]) -> StoreResult<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut insert = conn.prepare_cached(INSERT).map_err(sql_err)?;
    for e in entries {
        insert
            .execute(entry_params(e, &to_json(&e.details)?))
            .map_err(sql_err)?;
    }
    Ok(())
}

fn entry_params<'a>(e: &'a AuditEntry, details: &'a str) -> impl rusqlite::Params + 'a {
    (
        e.id.as_str(),
        e.environment_id.as_str(),
        e.kind.as_str(),
        e.at.millis(),
        e.auth_req_id.as_ref().map(|id| id.as_str()),
        e.user_id.as_ref().map(|id| id.as_str()),
        e.application_id.as_ref().map(|id| id.as_str()),
        e.device_id.as_deref(),
        e.actor.kind.as_str(),
        e.actor.id.as_deref(),
        e.channel.map(|c| c.as_str()),
        e.correlation_id.as_deref(),
        details,
    )
}

/// The paging cursor of the log: the `seq` of the last entry returned.
fn decode_cursor(cursor: &str) -> StoreResult<i64> {
    cursor
        .parse::<i64>()
        .ok()
        .filter(|seq| *seq >= 0)
        .ok_or_else(|| StoreError::Corrupt("invalid cursor".into()))
}

#[async_trait::async_trait]
impl AuditStore for SqliteStore {
    async fn list_activities(
        &self,
        env_id: &EnvironmentId,
        filter: &ActivityFilter,
        page: &Page,
    ) -> StoreResult<ListPage<Activity>> {
        let limit = effective_limit(page);
        let after = page.cursor.as_deref().map(decode_cursor).transpose()?;
        let push_filter = |qb: &mut QueryBuilder<Sqlite>| {
            qb.push(" WHERE environment_id = ")
                .push_bind(env_id.as_str().to_owned());
            if let Some(id) = &filter.auth_req_id {
                qb.push(" AND auth_req_id = ")
                    .push_bind(id.as_str().to_owned());
            }
            if let Some(id) = &filter.user_id {
                qb.push(" AND user_id = ").push_bind(id.as_str().to_owned());
            }
            if let Some(kind) = filter.kind {
                qb.push(" AND type = ").push_bind(kind.as_str());
            }
            if let Some(t) = filter.since {
                qb.push(" AND at >= ").push_bind(t.millis());
            }
            if let Some(t) = filter.until {
                qb.push(" AND at < ").push_bind(t.millis());
            }
        };
        let mut count = QueryBuilder::<Sqlite>::new("SELECT COUNT(*) FROM activities");
        push_filter(&mut count);
        let total: i64 = count
            .build_query_scalar()
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;

        let mut select = QueryBuilder::<Sqlite>::new("SELECT * FROM activities");
        push_filter(&mut select);
        if let Some(seq) = after {
            select.push(" AND seq > ").push_bind(seq);
        }
        select
            .push(" ORDER BY seq LIMIT ")
            .push_bind(i64::from(limit) + 1);
        let found = select.build().fetch_all(&self.pool).await.map_err(db_err)?;
        let mut items = found
            .iter()
            .map(rows::activity)
            .collect::<StoreResult<Vec<_>>>()?;
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next = match items.last() {
            Some(last) if more => Some(last.seq.to_string()),
            _ => None,
        };
        Ok(ListPage {
            items,
            total: u64::try_from(total).unwrap_or_default(),
            next,
        })
    }

    async fn record_device_notified(&self, entry: &AuditEntry) -> StoreResult<bool> {
        let entry = entry.clone();
        let details = to_json(&entry.details)?;
        // The partial unique index on (environment, request, device) for DEVICE_NOTIFIED
        // makes a second notice a no-op.
        let sql = INSERT.replacen("INSERT INTO", "INSERT OR IGNORE INTO", 1);
        self.writer
            .execute(move |conn| {
                let added = conn
                    .prepare_cached(&sql)
                    .and_then(|mut insert| insert.execute(entry_params(&entry, &details)))
                    .map_err(sql_err)?;
                Ok(added == 1)
            })
            .await
    }
}
