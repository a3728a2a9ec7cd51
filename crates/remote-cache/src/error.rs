//! Errors of reading and writing a cache.

use std::io;
use std::path::PathBuf;

/// Why a cache could not be read or written. `location` is the reference or directory as the
/// user gave it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// A registry request failed (unreachable, unauthorized, no such reference).
    #[error("cache {location}: the registry request failed")]
    Registry {
        /// The reference.
        location: String,
        /// The registry client's error.
        #[source]
        source: Box<img_registry::Error>,
    },
    /// A file of an OCI layout directory could not be read or written.
    #[error("cache {location}: cannot {action} {path}")]
    Io {
        /// The directory.
        location: String,
        /// What was being done (`read`, `write`, `rename`, …).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// There is no cache at the location (no manifest for the tag, no `index.json`).
    #[error("cache {location}: not found ({what})")]
    NotFound {
        /// The reference or directory.
        location: String,
        /// What is missing.
        what: String,
    },
    /// The manifest or config is not a cache this crate understands.
    #[error("cache {location} is malformed: {problem}")]
    Malformed {
        /// The reference or directory.
        location: String,
        /// What is wrong.
        problem: String,
    },
    /// The cache was written in another format version.
    #[error(
        "cache {location} has format version {version}; this img reads version {}",
        crate::FORMAT_VERSION
    )]
    UnsupportedVersion {
        /// The reference or directory.
        location: String,
        /// The version found.
        version: u32,
    },
    /// A blob's content does not match its digest or size: it is refused.
    #[error("cache {location}: blob {digest} does not match its digest or size (got {actual}, {size} bytes); refused")]
    DigestMismatch {
        /// The reference or directory.
        location: String,
        /// The digest the cache names.
        digest: String,
        /// The digest of what was read.
        actual: String,
        /// Bytes read.
        size: u64,
    },
    /// Storing a fetched blob failed.
    #[error("cache {location}: cannot store blob {digest}")]
    Store {
        /// The reference or directory.
        location: String,
        /// The blob.
        digest: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}
