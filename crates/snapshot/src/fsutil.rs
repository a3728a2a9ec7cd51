//! Crash-safe file creation: write a temporary file, fsync it, rename it into place, fsync
//! the directory. A reader sees either no file or the complete file, never a partial one.
//! Whole trees (a snapshot a step wrote) are flushed with one `syncfs` instead of an fsync per
//! file.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

use tempfile::NamedTempFile;

/// Writes `bytes` to `dest` atomically, staging the data in `tmp_dir` (same filesystem).
pub(crate) fn write_atomic(tmp_dir: &Path, dest: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = NamedTempFile::new_in(tmp_dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    let file = tmp.persist(dest).map_err(|e| e.error)?;
    set_readable(&file)?;
    sync_parent(dest)
}

/// Temporary files are created 0600; published files are world-readable like any blob.
pub(crate) fn set_readable(file: &File) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o644))
}

/// Makes a rename durable: the new directory entry survives a crash.
pub(crate) fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(parent) => File::open(parent)?.sync_all(),
        None => Ok(()),
    }
}

/// Flushes the filesystem holding `path` (syncfs(2)): every file a step wrote into a snapshot
/// reaches the disk before the snapshot is recorded as complete.
pub(crate) fn sync_filesystem(path: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let dir = File::open(path)?;
    #[cfg(test)]
    SYNCFS_CALLS.with(|calls| calls.set(calls.get() + 1));
    // SAFETY: syncfs on an fd we own, alive for the call.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
thread_local! {
    /// How often this thread called [`sync_filesystem`]: lets a test see that a commit flushed
    /// what it records (a power cut cannot be simulated here).
    pub(crate) static SYNCFS_CALLS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}
