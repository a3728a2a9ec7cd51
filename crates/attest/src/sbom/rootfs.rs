//! Reading an image's root filesystem as hostile input.
//!
//! The tree comes from layers anyone can publish: a symlink may point at the host's
//! `/etc/passwd`, a directory may hold a million entries, a "status file" may be a FIFO or ten
//! gigabytes of zeros. Every path is opened with `openat2(2)` relative to the root's descriptor
//! with `RESOLVE_IN_ROOT`, so absolute and `..` symlinks resolve inside the root as they would in
//! a container, never above it; the walk never follows a symlink at all. Files are opened
//! non-blocking (a FIFO cannot stall the scan), must be regular, and are read up to a bound.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};

/// Bounds on what a scan reads: an image's content decides the work, so the work is capped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanLimits {
    /// The largest file read, in bytes; larger ones are skipped with a warning.
    pub max_file_size: u64,
    /// How many directory entries the walk looks at before it stops with a warning.
    pub max_entries: u64,
    /// How deep the walk descends below the root.
    pub max_depth: usize,
}

impl Default for ScanLimits {
    fn default() -> Self {
        ScanLimits {
            // A Debian status file with 3,000 packages is ~3 MiB; lockfiles are smaller.
            max_file_size: 64 << 20,
            max_entries: 2_000_000,
            max_depth: 48,
        }
    }
}

/// Why one file could not be read (the scan goes on without it).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("not found")]
    NotFound,
    #[error("not a regular file")]
    NotRegular,
    #[error("{size} bytes, over the limit of {limit}")]
    TooLarge { size: u64, limit: u64 },
    #[error("{0}")]
    Io(#[source] io::Error),
}

/// An opened root filesystem.
pub(crate) struct RootFs {
    root: OwnedFd,
    limits: ScanLimits,
}

/// What the walk found at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum EntryKind {
    File,
    Directory,
    Other,
}

/// Top-level directories of pseudo filesystems: never part of an image's content.
const SKIPPED_TOP_LEVEL: &[&str] = &["proc", "sys", "dev"];

impl RootFs {
    /// Opens `path` as the root.
    pub(crate) fn open(path: &Path, limits: ScanLimits) -> io::Result<Self> {
        let root = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        // Kernels before 5.6 have no openat2: say so once, rather than a warning per file.
        rustix::fs::openat2(
            &root,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT,
        )
        .map_err(|e| {
            io::Error::new(
                io::ErrorKind::Unsupported,
                format!("openat2(RESOLVE_IN_ROOT) is unavailable (Linux 5.6 or later needed): {e}"),
            )
        })?;
        Ok(RootFs { root, limits })
    }

    /// Reads the regular file at `path` (absolute within the root), bounded.
    pub(crate) fn read(&self, path: &str) -> Result<Vec<u8>, ReadError> {
        let fd = rustix::fs::openat2(
            &self.root,
            relative(path),
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )
        .map_err(|e| match e {
            rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR => ReadError::NotFound,
            other => ReadError::Io(other.into()),
        })?;
        let stat = rustix::fs::fstat(&fd).map_err(|e| ReadError::Io(e.into()))?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(ReadError::NotRegular);
        }
        let limit = self.limits.max_file_size;
        let size = stat.st_size.max(0) as u64;
        if size > limit {
            return Err(ReadError::TooLarge { size, limit });
        }
        let mut bytes = Vec::with_capacity(size as usize);
        // The size may change under us: read one byte past the bound to notice.
        File::from(fd)
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(ReadError::Io)?;
        if bytes.len() as u64 > limit {
            return Err(ReadError::TooLarge {
                size: bytes.len() as u64,
                limit,
            });
        }
        Ok(bytes)
    }

    /// The names in the directory at `path`, sorted, each with what it is (symlinks are
    /// [`EntryKind::Other`]). Names that are not UTF-8 are left out: no cataloged file has one.
    pub(crate) fn list(&self, path: &str) -> Result<Vec<(String, EntryKind)>, ReadError> {
        let fd = rustix::fs::openat2(
            &self.root,
            relative(path),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
            // The walk descends only into real directories, so no symlink may be on the way.
            ResolveFlags::IN_ROOT | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        )
        .map_err(|e| match e {
            rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR => ReadError::NotFound,
            other => ReadError::Io(other.into()),
        })?;
        let mut dir = rustix::fs::Dir::read_from(&fd).map_err(|e| ReadError::Io(e.into()))?;
        let mut out = Vec::new();
        while let Some(entry) = dir.read() {
            let entry = entry.map_err(|e| ReadError::Io(e.into()))?;
            let Ok(name) = entry.file_name().to_str() else {
                continue;
            };
            if name == "." || name == ".." {
                continue;
            }
            let file_type = match entry.file_type() {
                FileType::Unknown => {
                    rustix::fs::statat(&fd, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                        .map(|st| FileType::from_raw_mode(st.st_mode))
                        .unwrap_or(FileType::Unknown)
                }
                known => known,
            };
            let kind = match file_type {
                FileType::RegularFile => EntryKind::File,
                FileType::Directory => EntryKind::Directory,
                _ => EntryKind::Other,
            };
            out.push((name.to_string(), kind));
        }
        out.sort();
        Ok(out)
    }

    /// Walks the tree depth-first in name order and calls `visit` with the absolute path of
    /// every regular file. Returns a warning when a bound stopped the walk.
    pub(crate) fn walk_files(
        &self,
        mut visit: impl FnMut(&str),
        mut warn: impl FnMut(String, String),
    ) {
        let mut seen: u64 = 0;
        // (path, depth); popped from the end, so children are pushed in reverse name order.
        let mut stack: Vec<(String, usize)> = vec![("/".to_string(), 0)];
        while let Some((dir, depth)) = stack.pop() {
            let entries = match self.list(&dir) {
                Ok(entries) => entries,
                Err(ReadError::NotFound) => continue,
                Err(e) => {
                    warn(dir, format!("cannot list directory: {e}"));
                    continue;
                }
            };
            let mut children = Vec::new();
            for (name, kind) in entries {
                seen += 1;
                if seen > self.limits.max_entries {
                    warn(
                        dir.clone(),
                        format!(
                            "scan stopped after {} entries (the limit)",
                            self.limits.max_entries
                        ),
                    );
                    return;
                }
                let path = join(&dir, &name);
                match kind {
                    EntryKind::File => visit(&path),
                    EntryKind::Directory => {
                        if depth == 0 && SKIPPED_TOP_LEVEL.contains(&name.as_str()) {
                            continue;
                        }
                        if depth + 1 > self.limits.max_depth {
                            warn(path, "directory too deep, not scanned".to_string());
                            continue;
                        }
                        children.push((path, depth + 1));
                    }
                    EntryKind::Other => {}
                }
            }
            stack.extend(children.into_iter().rev());
        }
    }
}

/// `path` without its leading slashes: openat2 resolves it against the root descriptor.
fn relative(path: &str) -> &str {
    let trimmed = path.trim_start_matches('/');
    if trimmed.is_empty() {
        "."
    } else {
        trimmed
    }
}

/// `dir/name` for absolute in-root paths.
pub(crate) fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}
