//! The step history: per Dockerfile location, what the step's key was made of at its last
//! miss (see `explain`). One row per location, rewritten on each miss, never read on a hit.

use std::time::SystemTime;

use rusqlite::{params, OptionalExtension};

use crate::cache::unix_ns;
use crate::checksum::PathDigests;
use crate::explain::{decode_listings, encode_listings, StepInputs};
use crate::{CacheDb, CacheError};

/// A recorded account with its per-input path listings.
pub(crate) type StepRecord = (StepInputs, Vec<Option<PathDigests>>);

impl CacheDb {
    /// The account recorded for `step`, if any. A row this version cannot read (written by
    /// another version of img) counts as none: it only costs an explanation.
    pub(crate) fn step_history(&self, step: &str) -> Result<Option<StepRecord>, CacheError> {
        let row = self
            .conn()
            .prepare_cached("SELECT inputs, listings FROM step_history WHERE step = ?1")
            .and_then(|mut stmt| {
                stmt.query_row(params![step], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, Vec<u8>>(1)?))
                })
                .optional()
            })
            .map_err(self.query_err("read the step history"))?;
        Ok(row.and_then(|(inputs, listings)| {
            let inputs: StepInputs = serde_json::from_str(&inputs).ok()?;
            let listings = decode_listings(&listings)?;
            Some((inputs, listings))
        }))
    }

    /// Replaces the account recorded for `step`.
    pub(crate) fn record_step(
        &self,
        step: &str,
        inputs: &StepInputs,
        listings: &[Option<PathDigests>],
    ) -> Result<(), CacheError> {
        // Plain data with string keys always serializes.
        let json = serde_json::to_string(inputs).unwrap_or_default();
        self.conn()
            .prepare_cached(
                "INSERT OR REPLACE INTO step_history (step, inputs, listings, recorded_ns)
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    step,
                    json,
                    encode_listings(listings),
                    unix_ns(SystemTime::now())
                ])
            })
            .map_err(self.query_err("record the step history"))?;
        Ok(())
    }
}
