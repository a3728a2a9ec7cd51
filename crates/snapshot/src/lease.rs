//! Leases: a running build's claim on blobs and snapshots it has made but no image references
//! yet. Garbage collection skips everything held by an unexpired lease.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::db::{now_unix, DatabaseError, Db};
use img_llb::Digest;

/// A lease row in the database, released when dropped. A process that dies without releasing
/// its lease loses it when it expires.
pub struct Lease {
    id: String,
    db: Arc<Db>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("id", &self.id).finish()
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl Lease {
    pub(crate) fn create(db: Arc<Db>, ttl: Duration) -> Result<Lease, DatabaseError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let id = format!(
            "{}-{}-{}",
            std::process::id(),
            nanos,
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let now = now_unix();
        let expires = now.saturating_add(ttl.as_secs().min(i64::MAX as u64) as i64);
        db.write_transient(|tx| {
            tx.execute(
                "INSERT INTO leases (id, created, expires) VALUES (?1, ?2, ?3)",
                (&id, now, expires),
            )
        })?;
        Ok(Lease { id, db })
    }

    /// The lease's identifier.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Protects a blob from garbage collection while the lease is held.
    pub fn add_blob(&self, digest: &Digest) -> Result<(), DatabaseError> {
        self.add("blob", &digest.to_string())
    }

    /// Protects a snapshot (and its parents) from garbage collection while the lease is held.
    pub fn add_snapshot(&self, key: &str) -> Result<(), DatabaseError> {
        self.add("snapshot", key)
    }

    fn add(&self, kind: &str, resource: &str) -> Result<(), DatabaseError> {
        self.db.write_transient(|tx| {
            tx.execute(
                "INSERT OR IGNORE INTO lease_resources (lease, kind, resource) VALUES (?1, ?2, ?3)",
                (&self.id, kind, resource),
            )
        })?;
        Ok(())
    }

    /// Releases the lease now, reporting failure (dropping releases silently).
    pub fn release(self) -> Result<(), DatabaseError> {
        let result = self.delete();
        std::mem::forget(self);
        result
    }

    fn delete(&self) -> Result<(), DatabaseError> {
        self.db
            .write_transient(|tx| tx.execute("DELETE FROM leases WHERE id = ?1", [&self.id]))?;
        Ok(())
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // Failure leaves a row that expires on its own.
        let _ = self.delete();
    }
}
