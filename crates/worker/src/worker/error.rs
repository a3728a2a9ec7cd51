//! The worker's error.

use std::io;
use std::path::PathBuf;

use img_snapshot::{DatabaseError, SnapshotError};

use super::layer_db::LayerDbError;
use img_solver::{CacheError, ChecksumError};

/// Why the worker could not perform an op.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// A `RUN` step exited with a non-zero code.
    #[error("process {args:?} did not complete successfully: exit code {code}")]
    ExitCode {
        /// The argument vector.
        args: Vec<String>,
        /// The exit code, or 128 + the signal that killed it.
        code: i32,
    },
    /// The sandbox could not run the step.
    #[error("cannot run the step in the sandbox")]
    Sandbox(#[source] Box<img_sandbox::SandboxError>),
    /// A cache mount could not be locked.
    #[error("cache mount {id:?}")]
    CacheMount {
        /// The cache id.
        id: String,
        /// The cause.
        #[source]
        source: img_sandbox::CacheLockError,
    },
    /// A required secret was not provided.
    #[error("secret {id:?} not provided; pass it with --secret id={id},src=<file>")]
    MissingSecret {
        /// The secret's id.
        id: String,
    },
    /// A secret could not be read.
    #[error("cannot read secret {id:?} from {path}")]
    ReadSecret {
        /// The secret's id.
        id: String,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A required SSH agent was not provided.
    #[error("ssh agent {id:?} not provided; pass it with --ssh {id}=<socket>")]
    MissingSsh {
        /// The agent's id.
        id: String,
    },
    /// The step was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// A snapshot operation failed.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// A snapshot could not be mounted for in-process work.
    #[error("cannot mount snapshot {snapshot:?}")]
    Mount {
        /// The snapshot key.
        snapshot: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The build's lease could not be taken or extended.
    #[error("cannot protect the build's snapshots from garbage collection")]
    Lease(#[source] DatabaseError),
    /// The layer record database failed.
    #[error(transparent)]
    LayerDb(#[from] LayerDbError),
    /// The build cache failed.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// Checksumming files for a cache key failed.
    #[error(transparent)]
    Checksum(#[from] ChecksumError),
    /// A local source names a directory the worker was not given.
    #[error(
        "local source {name:?} was not provided; the build knows only the directories passed to it"
    )]
    UnknownLocal {
        /// The name.
        name: String,
    },
    /// A local directory was used as the root of an exec or file op.
    #[error("local source {name:?} cannot be changed; copy from it instead")]
    LocalAsRoot {
        /// The name.
        name: String,
    },
    /// The context filter factory rejected the patterns.
    #[error("invalid context patterns: {reason}")]
    ContextPatterns {
        /// Why.
        reason: String,
    },
    /// An image reference could not be parsed.
    #[error("invalid image reference {reference:?}")]
    Reference {
        /// The reference.
        reference: String,
        /// The cause.
        #[source]
        source: Box<img_registry::ReferenceError>,
    },
    /// The image is not in the local store and no registry client was configured.
    #[error("image {reference:?} is not in the local image store and pulling is disabled")]
    ImageNotLocal {
        /// The reference.
        reference: String,
    },
    /// Pulling or resolving an image failed.
    #[error("cannot pull {reference:?}")]
    Pull {
        /// The reference.
        reference: String,
        /// The cause.
        #[source]
        source: Box<img_registry::Error>,
    },
    /// An image's manifest, index or config is malformed.
    #[error("image {reference:?}: {problem}")]
    BadImage {
        /// The reference or digest.
        reference: String,
        /// What is wrong.
        problem: String,
    },
    /// A layer's content does not match the diff id in its image config.
    #[error(
        "layer {layer} of {reference:?} unpacks to {actual}, but the image config says {expected}"
    )]
    DiffIdMismatch {
        /// The image.
        reference: String,
        /// The layer blob.
        layer: String,
        /// The config's diff id.
        expected: String,
        /// What the layer contained.
        actual: String,
    },
    /// The content store failed.
    #[error(transparent)]
    Content(#[from] img_snapshot::ContentError),
    /// Applying a layer failed.
    #[error(transparent)]
    Apply(#[from] img_snapshot::ApplyError),
    /// A copy source does not exist.
    #[error("{path:?}: not found")]
    SourceNotFound {
        /// The source path as written.
        path: String,
    },
    /// A file of the build context changed between computing a step's cache key and the step
    /// reading it; recording the result would store it under the key of other content.
    #[error("the build context changed while the build read it ({path:?}); run the build again")]
    ContextChanged {
        /// The first path found changed, relative to the context.
        path: String,
    },
    /// A path resolved outside the tree it must stay in.
    #[error("{path:?} is outside the filesystem it belongs to")]
    OutsideRoot {
        /// The path.
        path: String,
    },
    /// A user or group name is not in the image.
    #[error("unable to find {kind} {name:?} in the destination's /etc/{file}")]
    UnknownId {
        /// `user` or `group`.
        kind: &'static str,
        /// The name.
        name: String,
        /// `passwd` or `group`.
        file: &'static str,
    },
    /// A file op's wildcard source, or one of its include or exclude patterns, is malformed.
    #[error("{written:?} is not a valid path pattern")]
    Pattern {
        /// The source or pattern as the op wrote it.
        written: String,
        /// What is wrong with it.
        #[source]
        source: img_llb::PatternError,
    },
    /// A cache shared between machines could not be used (`--cache-from`).
    #[error("shared build cache")]
    RemoteCache {
        /// The cause.
        #[source]
        source: Box<img_remote_cache::CacheError>,
    },
    /// A layer of an imported cache could not be used when a step or an export needed it
    /// (not downloadable, not matching its digest or diff id); the build solves again without
    /// the results using it.
    #[error("cache {location}: layer {layer} refused: {reason}")]
    CacheLayerRefused {
        /// The cache.
        location: String,
        /// The layer's blob digest.
        layer: String,
        /// Why, with its causes.
        reason: String,
    },
    /// A cache mount's content could not be exported as a layer.
    #[error("cannot export cache mount {id:?}")]
    CacheMountExport {
        /// The cache id.
        id: String,
        /// The cause.
        #[source]
        source: img_snapshot::ExportError,
    },
    /// A filesystem operation of a file op failed.
    #[error("{action} {path}")]
    File {
        /// What was being done, e.g. `copying to`.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A download failed.
    #[error("cannot download {url}")]
    Download {
        /// The URL.
        url: String,
        /// The cause.
        #[source]
        source: Box<ureq::Error>,
    },
    /// A downloaded file does not have the expected checksum.
    #[error("{url}: checksum mismatch: expected {expected}, got {actual}")]
    ChecksumMismatch {
        /// The URL.
        url: String,
        /// The expected digest.
        expected: String,
        /// The digest of what was downloaded.
        actual: String,
    },
    /// `git` failed.
    #[error("git {step} of {url} failed ({status}): {stderr}")]
    Git {
        /// The git command, e.g. `clone`.
        step: &'static str,
        /// The repository.
        url: String,
        /// Exit status.
        status: String,
        /// What git printed.
        stderr: String,
    },
    /// A diff or merge needs snapshots related in a way they are not.
    #[error("{op}: {problem}")]
    Unrelated {
        /// `diff` or `merge`.
        op: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// An output id in the cache database was not written by this worker.
    #[error("malformed cached output id {id:?}")]
    MalformedOutputId {
        /// The id.
        id: String,
    },
    /// The solver did not pass an input the op refers to (a definition/solver mismatch).
    #[error("the {what} of the op was not provided by the solver")]
    MissingInput {
        /// Which input, e.g. `bind mount source`.
        what: &'static str,
    },
    /// The op kind is newer than this worker.
    #[error("{kind} ops are not supported by this worker")]
    UnsupportedOp {
        /// The op kind.
        kind: &'static str,
    },
}

impl WorkerError {
    pub(crate) fn file(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> WorkerError {
        let path = path.into();
        move |source| WorkerError::File {
            action,
            path,
            source,
        }
    }
}
