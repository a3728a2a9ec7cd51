//! Filesystem snapshots, layers and the content store.
//!
//! Pipeline position: below `solver` and `sandbox`. A snapshot is a directory tree that an op
//! reads or writes (overlayfs, or a full-copy fallback); a layer is the tar diff between a
//! snapshot and its parent; the content store keeps blobs (layers, configs, manifests) by digest.
#![deny(missing_docs)]
