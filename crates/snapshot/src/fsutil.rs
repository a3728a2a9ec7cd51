//! Crash-safe file creation: write a temporary file, fsync it, rename it into place, fsync
//! the directory. A reader sees either no file or the complete file, never a partial one.

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
