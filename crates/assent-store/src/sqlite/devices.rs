//! Device keys and enrolment codes (`devices`, `device_enrollments`). Every write runs on the
//! writer with the audit entry it records, so the two commit together; reads use the pool.

use assent_core::{
    AuditEntry, Device, DeviceEnrollment, EnvironmentId, ListPage, Page, Timestamp, UserId,
};
use rusqlite::{Connection, OptionalExtension, params};
use sqlx::{QueryBuilder, Sqlite};

use super::audit::insert_entries;
use super::paging::{ListSpec, list_page};
use super::rows::{self, to_json};
use super::{SqliteStore, db_err, sql_err};
use crate::{DeviceStore, StoreError, StoreResult};

fn device_key(d: &Device) -> (Timestamp, &str) {
    (d.created_at, &d.id)
}

fn insert_device(conn: &Connection, d: &Device, jwk: &str) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO devices (environment_id, id, user_id, name, algorithm, public_jwk, enabled,
             created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .and_then(|mut insert| {
        insert.execute(params![
            d.environment_id.as_str(),
            d.id,
            d.user_id.as_str(),
            d.name,
            d.algorithm.as_str(),
            jwk,
            d.enabled,
            d.created_at.millis(),
            d.updated_at.millis(),
        ])
    })
    .map_err(sql_err)?;
    Ok(())
}

#[async_trait::async_trait]
impl DeviceStore for SqliteStore {
    async fn create_device(&self, device: &Device, audit: &AuditEntry) -> StoreResult<()> {
        let (device, audit) = (device.clone(), audit.clone());
        let jwk = to_json(&device.public_jwk)?;
        self.writer
            .execute(move |conn| {
                insert_device(conn, &device, &jwk)?;
                insert_entries(conn, std::slice::from_ref(&audit))?;
                Ok(true)
            })
            .await?;
        Ok(())
    }

    async fn get_device(&self, env_id: &EnvironmentId, id: &str) -> StoreResult<Device> {
        let row = sqlx::query("SELECT * FROM devices WHERE environment_id = ? AND id = ?")
            .bind(env_id.as_str())
            .bind(id)
            .fetch_one(&self.pool)
            .await
            .map_err(db_err)?;
        rows::device(&row)
    }

    async fn list_devices(
        &self,
        env_id: &EnvironmentId,
        user_id: &UserId,
        page: &Page,
    ) -> StoreResult<ListPage<Device>> {
        let filter = |qb: &mut QueryBuilder<Sqlite>| {
            qb.push(" WHERE environment_id = ")
                .push_bind(env_id.as_str().to_owned())
                .push(" AND user_id = ")
                .push_bind(user_id.as_str().to_owned());
        };
        let spec = ListSpec {
            table: "devices",
            id_column: "id",
            filter: &filter,
            map_row: |row| rows::device(row),
            key: device_key,
        };
        list_page(&self.pool, spec, page).await
    }

    async fn update_device(
        &self,
        read: &Device,
        device: &Device,
        audit: &AuditEntry,
    ) -> StoreResult<bool> {
        let (read, device, audit) = (read.clone(), device.clone(), audit.clone());
        let exists = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let gone = exists.clone();
        let changed = self
            .writer
            .execute(move |conn| {
                let changed = conn
                    .prepare_cached(
                        "UPDATE devices SET name = ?, enabled = ?, updated_at = ?
                         WHERE environment_id = ? AND user_id = ? AND id = ?
                           AND name = ? AND enabled = ?",
                    )
                    .and_then(|mut update| {
                        update.execute(params![
                            device.name,
                            device.enabled,
                            device.updated_at.millis(),
                            device.environment_id.as_str(),
                            device.user_id.as_str(),
                            device.id,
                            read.name,
                            read.enabled,
                        ])
                    })
                    .map_err(sql_err)?;
                if changed == 0 {
                    let still: Option<i64> = conn
                        .prepare_cached(
                            "SELECT 1 FROM devices
                             WHERE environment_id = ? AND user_id = ? AND id = ?",
                        )
                        .and_then(|mut q| {
                            q.query_row(
                                params![
                                    device.environment_id.as_str(),
                                    device.user_id.as_str(),
                                    device.id
                                ],
                                |row| row.get(0),
                            )
                            .optional()
                        })
                        .map_err(sql_err)?;
                    gone.store(still.is_some(), std::sync::atomic::Ordering::SeqCst);
                    return Ok(false);
                }
                insert_entries(conn, std::slice::from_ref(&audit))?;
                Ok(true)
            })
            .await?;
        if changed {
            Ok(true)
        } else if exists.load(std::sync::atomic::Ordering::SeqCst) {
            Ok(false)
        } else {
            Err(StoreError::NotFound)
        }
    }

    async fn delete_device(
        &self,
        env_id: &EnvironmentId,
        user_id: &UserId,
        id: &str,
        audit: &AuditEntry,
    ) -> StoreResult<()> {
        let (env_id, user_id, id, audit) = (
            env_id.clone(),
            user_id.clone(),
            id.to_owned(),
            audit.clone(),
        );
        let found = self
            .writer
            .execute(move |conn| {
                let deleted = conn
                    .prepare_cached(
                        "DELETE FROM devices WHERE environment_id = ? AND user_id = ? AND id = ?",
                    )
                    .and_then(|mut delete| {
                        delete.execute(params![env_id.as_str(), user_id.as_str(), id])
                    })
                    .map_err(sql_err)?;
                if deleted == 0 {
                    return Ok(false);
                }
                insert_entries(conn, std::slice::from_ref(&audit))?;
                Ok(true)
            })
            .await?;
        if found {
            Ok(())
        } else {
            Err(StoreError::NotFound)
        }
    }

    async fn create_enrollment(&self, e: &DeviceEnrollment, audit: &AuditEntry) -> StoreResult<()> {
        let (e, audit) = (e.clone(), audit.clone());
        self.writer
            .execute(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO device_enrollments (environment_id, code_hash, user_id,
                         created_at, expires_at)
                     VALUES (?, ?, ?, ?, ?)",
                )
                .and_then(|mut insert| {
                    insert.execute(params![
                        e.environment_id.as_str(),
                        e.code_hash,
                        e.user_id.as_str(),
                        e.created_at.millis(),
                        e.expires_at.millis(),
                    ])
                })
                .map_err(sql_err)?;
                insert_entries(conn, std::slice::from_ref(&audit))?;
                Ok(true)
            })
            .await?;
        Ok(())
    }

    async fn enroll_device(
        &self,
        code_hash: &str,
        device: &Device,
        audit: &AuditEntry,
        now: Timestamp,
    ) -> StoreResult<Device> {
        let (code_hash, template, audit) = (code_hash.to_owned(), device.clone(), audit.clone());
        let jwk = to_json(&device.public_jwk)?;
        let enrolled = std::sync::Arc::new(std::sync::Mutex::new(None::<Device>));
        let out = enrolled.clone();
        let used = self
            .writer
            .execute(move |conn| {
                // The writer serialises every write, so the code read here is still unused when
                // it is deleted below: one enrolment per code.
                let user_id: Option<String> = conn
                    .prepare_cached(
                        "DELETE FROM device_enrollments
                         WHERE environment_id = ?1 AND code_hash = ?2 AND expires_at > ?3
                           AND user_id IN
                               (SELECT id FROM users WHERE environment_id = ?1 AND enabled)
                         RETURNING user_id",
                    )
                    .and_then(|mut take| {
                        take.query_row(
                            params![template.environment_id.as_str(), code_hash, now.millis()],
                            |row| row.get(0),
                        )
                        .optional()
                    })
                    .map_err(sql_err)?;
                let Some(user_id) = user_id else {
                    return Ok(false);
                };
                let device = Device {
                    user_id: user_id.clone().into(),
                    ..template.clone()
                };
                insert_device(conn, &device, &jwk)?;
                let entry = AuditEntry {
                    user_id: Some(user_id.into()),
                    ..audit.clone()
                };
                insert_entries(conn, std::slice::from_ref(&entry))?;
                *out.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(device);
                Ok(true)
            })
            .await?;
        let device = enrolled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        match device {
            Some(device) if used => Ok(device),
            _ => Err(StoreError::NotFound),
        }
    }
}
