//! The build cache as `du` and `prune` see it: the solver's cache records in
//! `<state>/cache.db`, and what garbage collection must keep for them.

use anyhow::Context;
use img_snapshot::{GcRoots, Store};
use img_solver::CacheDb;
use img_worker::{Worker, WorkerOptions};

use crate::config::Config;

/// The solver's cache database of this state directory.
pub fn open(store: &Store) -> anyhow::Result<CacheDb> {
    let path = store.state().root().join("cache.db");
    CacheDb::open(&path).with_context(|| format!("cannot open the build cache {}", path.display()))
}

/// The snapshots and blobs the cache records (still) point at. A worker resolves them; it
/// runs nothing, so it needs no user namespace and maps ids as the host does.
pub fn gc_roots(config: &Config, store: &Store, cache: &CacheDb) -> anyhow::Result<GcRoots> {
    let snapshotter = store
        .snapshotter(config.backend)
        .context("cannot open the snapshotter")?;
    let worker = Worker::new(
        store.clone(),
        &snapshotter,
        WorkerOptions::new(img_sandbox::IdMapping::host()),
    )
    .context("cannot read the build cache")?;
    worker
        .gc_roots(cache)
        .context("cannot find what the build cache refers to")
}
