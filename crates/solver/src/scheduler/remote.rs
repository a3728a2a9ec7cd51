//! The seam to a cache shared between machines: on a local miss the executor's
//! [`Executor::load_remote`] is asked, and a hit is recorded in the local cache and reported
//! as cached, exactly like a local hit.

use std::time::SystemTime;

use super::{boxed, label, Outcome, Ready, Shared, Solver};
use crate::progress::ProgressEvent;
use crate::{CacheKey, Executor, SolveError};

impl<E: Executor> Solver<E> {
    /// A local miss: the executor's shared cache, if any, recorded locally on a hit.
    pub(super) fn load_remote(
        &self,
        job: &Ready<'_, E::Output>,
        key: &CacheKey,
        shared: &Shared<'_>,
    ) -> Result<Option<E::Output>, Outcome<E::Output>> {
        let op_label = || label(job.digest, job.metadata);
        let output = match self.executor.load_remote(key) {
            Ok(Some(output)) => output,
            Ok(None) => return Ok(None),
            Err(err) => {
                return Err(Outcome::Failed(SolveError::Load {
                    label: op_label(),
                    output_id: key.to_string(),
                    source: boxed(err),
                }))
            }
        };
        self.cache
            .record(
                key,
                &self.executor.output_id(&output),
                &job.digest,
                &job.metadata.description,
                self.executor.output_size(&output),
            )
            .map_err(|source| {
                Outcome::Failed(SolveError::Cache {
                    label: op_label(),
                    source,
                })
            })?;
        shared.progress.emit(ProgressEvent::Cached {
            op: job.digest,
            name: job.metadata.description.clone(),
            location: job.metadata.location.clone(),
            at: SystemTime::now(),
        });
        Ok(Some(output))
    }
}
