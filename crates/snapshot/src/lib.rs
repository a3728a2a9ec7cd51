//! Filesystem snapshots, layers and the content store.
//!
//! Pipeline position: below `solver` and `sandbox`. A snapshot is a directory tree that an op
//! reads or writes (overlayfs, or a full-copy fallback); a layer is the tar diff between a
//! snapshot and its parent; the content store keeps blobs (layers, configs, manifests) by
//! digest; the image store names manifests. This crate knows nothing about Dockerfiles.
//!
//! Everything lives in one state directory ([`StateDir`], opened as a [`Store`]):
//! blobs and snapshot directories appear under their final names only once complete (temp
//! file or directory, fsync, rename), and metadata changes are SQLite transactions (WAL, long
//! busy timeout), so several img processes can share a state directory. `content/` is an OCI
//! image layout, so `skopeo copy oci:<state>/content:<name>` and `umoci` read images in place.
//!
//! Design choices:
//! * Mounts are data ([`Mount`]): the sandbox performs them inside the build's user and mount
//!   namespaces. overlayfs mounts always use `userxattr`, so the same snapshots work for root
//!   and for unprivileged users.
//! * Layers are written in one streaming pass: tar -> sha256 (diffID) -> parallel gzip or
//!   multithreaded zstd -> sha256 (digest) -> temp file -> rename into the content store.
//! * Layers are applied with `openat2(RESOLVE_IN_ROOT)` so a hostile tar cannot write outside
//!   the snapshot.
//!
//! Used alone, as a content-addressed blob store in an OCI layout:
//!
//! ```
//! use img_snapshot::{Digest, StateDir, Store};
//!
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(&StateDir::at(dir.path()))?;
//! let content = store.content();
//! let blob = content.write_blob(b"{\"hello\": \"world\"}", None)?;
//! assert_eq!(blob.digest, Digest::of(b"{\"hello\": \"world\"}"));
//! assert_eq!(content.read_blob(&blob.digest)?, b"{\"hello\": \"world\"}");
//! // The blob sits where OCI tools look for it.
//! assert!(dir.path().join("content/blobs/sha256").join(blob.digest.hex()).is_file());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod changes;
mod content;
mod copy;
mod db;
mod digest;
mod fsutil;
mod image;
mod layer;
mod lease;
mod snapshotter;
mod state;
mod store;

pub use content::{BlobInfo, BlobWriter, ContentError, ContentStore};
pub use db::{enable_wal, DatabaseError};
pub use image::{ImageError, ImageRecord, ImageStore, REF_NAME_ANNOTATION};
pub use img_llb::{Digest, DigestError};
pub use layer::{
    apply_layer, export_layer, recompress_layer, ApplyError, ApplyOptions, ApplyReport,
    ApplyWarning, Compression, ExportError, ExportOptions, ExportProgress, LayerDescriptor,
    WhiteoutStyle,
};
pub use lease::Lease;
pub use snapshotter::{
    run_mounted, ActiveSnapshot, Backend, BackendChoice, Mount, SnapshotError, SnapshotInfo,
    SnapshotKind, Snapshotter,
};
pub use state::{StateDir, StateError};
pub use store::{GcReport, GcRoots, Store, StoreError, UsageKind, UsageRecord};

/// Any error of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Resolving the state directory.
    #[error(transparent)]
    State(#[from] StateError),
    /// Opening the store or collecting garbage.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The metadata database.
    #[error(transparent)]
    Database(#[from] DatabaseError),
    /// The content store.
    #[error(transparent)]
    Content(#[from] ContentError),
    /// The image store.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The snapshotter.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// Exporting a layer.
    #[error(transparent)]
    Export(#[from] ExportError),
    /// Applying a layer.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// Parsing a digest.
    #[error(transparent)]
    Digest(#[from] DigestError),
}
