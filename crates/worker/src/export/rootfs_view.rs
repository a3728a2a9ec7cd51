//! A read-only look at a result's root filesystem, for work that reads the image's files
//! without exporting them (the SBOM scan of `--sbom`).

use std::path::Path;

use super::ExportError;
use crate::worker::{Worker, WorkerRef};

/// Runs `work` on the root filesystem of `output` (a committed snapshot, mounted in a mount
/// namespace of its own thread and never copied; or a local directory as it is) and returns
/// what it returns. `work` must only read the tree: a committed snapshot is shared with the
/// cache and with later builds.
///
/// Blocking (a snapshot that needs mounting is mounted, and `work` run, on a thread of its
/// own): call it off async executors and off rayon's pool.
pub fn with_rootfs_view<R: Send>(
    worker: &Worker,
    output: &WorkerRef,
    work: impl FnOnce(&Path) -> R + Send,
) -> Result<R, ExportError> {
    Ok(worker.with_tree(output, work)?)
}
