//! The build cache shared between machines: `--cache-to` and `--cache-from`.
//!
//! Pipeline position: after a solve, the worker turns the solver's results (each op's cache
//! key and the snapshot chain under it) into a [`CacheConfig`] and hands it, with the content
//! store as a [`BlobSource`](img_registry::BlobSource), to a [`CacheBackend`] that writes it
//! out. Before the next solve, possibly on another machine with an empty state directory, a
//! backend reads the config back; on a local cache miss the worker asks it for the key and
//! keeps the layer chain it names as a lazy result, fetching a layer through the backend only
//! when a step or an export needs it.
//!
//! The format ([`format`], documented in `docs/cache-format.md`) is an OCI image manifest
//! whose config blob maps cache keys to chains of layers; the layers are ordinary layer blobs,
//! so they are shared with the images built from them. Three places hold it:
//!
//! * [`RegistryCache`]: a registry reference (`type=registry,ref=…`). Blobs are pushed first
//!   and the manifest last, so concurrent exporters to one reference leave one valid cache. A
//!   reference naming an image with inline cache metadata is read as well.
//! * [`LayoutCache`]: an OCI image layout directory (`type=local,dest=…` / `src=…`). Blobs go
//!   through temporary files and renames, `index.json` last, the same way.
//! * inline ([`inline`]): the config embedded in a pushed image's own config.
//!
//! This crate knows nothing of snapshots or of the solver: keys are strings and layers are
//! descriptors, so it depends on `img-registry` alone.
//!
//! ```
//! use img_remote_cache::{CacheBuilder, CacheLayer, LayoutCache, CacheBackend};
//! use img_registry::DirBlobStore;
//!
//! let blobs = DirBlobStore::new(tempfile::tempdir()?.keep())?;
//! let digest = blobs.put_bytes(b"a layer")?;
//! let layer = CacheLayer::new(digest.clone(), 7, "application/vnd.oci.image.layer.v1.tar", digest);
//! let mut cache = CacheBuilder::new();
//! cache.add_record(&format!("sha256:{}", "1".repeat(64)), &[layer]);
//! let config = cache.build();
//!
//! let dir = tempfile::tempdir()?;
//! let layout = LayoutCache::new(dir.path(), None);
//! layout.write(&config, &blobs)?;
//! let back = layout.read()?;
//! assert_eq!(back.lookup(&format!("sha256:{}", "1".repeat(64))).unwrap().len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod backend;
mod error;
pub mod format;
pub mod inline;
mod layout;
mod registry;
mod verify;

pub use backend::{CacheBackend, WriteReport};
pub use error::CacheError;
pub use format::{
    CacheBuilder, CacheConfig, CacheLayer, CacheMountEntry, CacheRecord, CACHE_CONFIG_MEDIA_TYPE,
    FORMAT_VERSION,
};
pub use layout::LayoutCache;
pub use registry::RegistryCache;
