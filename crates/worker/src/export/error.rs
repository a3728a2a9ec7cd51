//! The exporter's error.

use std::io;

use img_snapshot::{ContentError, DatabaseError, ImageError, SnapshotError};

use crate::worker::layer_db::LayerDbError;
use crate::WorkerError;

/// Why an image could not be exported or written out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// A layer step's output is a local directory, not a snapshot.
    #[error("a layer step's result is a local directory; only snapshots become layers")]
    NotASnapshot,
    /// The frontend's config is not a JSON object.
    #[error("the image config must be a JSON object")]
    BadConfig,
    /// Serializing JSON failed.
    #[error("cannot serialize the image config or manifest")]
    Json(#[source] serde_json::Error),
    /// Reading the base image or a snapshot failed.
    #[error(transparent)]
    Worker(#[from] WorkerError),
    /// A snapshot operation failed.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The content store failed.
    #[error(transparent)]
    Content(#[from] ContentError),
    /// The image store failed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The layer record database failed.
    #[error(transparent)]
    LayerDb(#[from] LayerDbError),
    /// Writing a base image layer again in another compression failed.
    #[error("cannot recompress base image layer {blob}")]
    Recompress {
        /// The base layer's blob.
        blob: String,
        /// The cause.
        #[source]
        source: img_snapshot::ExportError,
    },
    /// The build's lease could not be extended.
    #[error("cannot protect exported blobs from garbage collection")]
    Lease(#[source] DatabaseError),
    /// Writing an archive or a directory failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Pushing failed.
    #[error("cannot push {reference}")]
    Push {
        /// The destination.
        reference: String,
        /// The cause.
        #[source]
        source: Box<img_registry::Error>,
    },
}
