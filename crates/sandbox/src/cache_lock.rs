//! Sharing of cache mounts between concurrent steps (`RUN --mount=type=cache,sharing=...`),
//! with flock(2) on a lock file inside the cache's directory, so concurrent `img` processes
//! agree as well as threads of one.
//!
//! Layout of a cache directory: `lock` (the lock file) and `data` (what is mounted); private
//! instances, made when the main one is busy, live in `private/<n>/` with the same layout.

use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Errors of locking a cache directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheLockError {
    /// The cache directory or its lock file could not be created or opened.
    #[error("cannot prepare cache directory {path}")]
    Prepare {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// flock(2) failed.
    #[error("cannot lock {path}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// How concurrent steps share one cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum CacheSharing {
    /// Everyone uses the same directory at once (`sharing=shared`, the default).
    #[default]
    Shared,
    /// A busy cache makes a new private instance (`sharing=private`).
    Private,
    /// Users wait for each other (`sharing=locked`).
    Locked,
}

/// A held cache: mount [`CacheMountLock::dir`]; the lock is released on drop.
#[derive(Debug)]
pub struct CacheMountLock {
    _file: File,
    dir: PathBuf,
}

fn prepare(dir: &Path) -> Result<(File, PathBuf), CacheLockError> {
    fn prep(path: &Path) -> impl FnOnce(io::Error) -> CacheLockError + '_ {
        move |source| CacheLockError::Prepare {
            path: path.to_path_buf(),
            source,
        }
    }
    let data = dir.join("data");
    fs::create_dir_all(&data).map_err(prep(&data))?;
    let lock = dir.join("lock");
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock)
        .map_err(prep(&lock))?;
    Ok((file, data))
}

/// flock; `Ok(false)` when non-blocking and busy.
fn flock(file: &File, path: &Path, operation: libc::c_int) -> Result<bool, CacheLockError> {
    loop {
        // SAFETY: flock on an open descriptor.
        if unsafe { libc::flock(file.as_raw_fd(), operation) } == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) => return Ok(false),
            _ => {
                return Err(CacheLockError::Lock {
                    path: path.join("lock"),
                    source: err,
                })
            }
        }
    }
}

impl CacheMountLock {
    /// Takes the cache at `cache_dir` (created if missing) for one step. `Locked` blocks while
    /// another holder exists; `Private` never blocks.
    pub fn acquire(
        cache_dir: &Path,
        sharing: CacheSharing,
    ) -> Result<CacheMountLock, CacheLockError> {
        let (file, data) = prepare(cache_dir)?;
        match sharing {
            CacheSharing::Shared => {
                flock(&file, cache_dir, libc::LOCK_SH)?;
            }
            CacheSharing::Locked => {
                flock(&file, cache_dir, libc::LOCK_EX)?;
            }
            CacheSharing::Private => {
                if !flock(&file, cache_dir, libc::LOCK_EX | libc::LOCK_NB)? {
                    return Self::private_instance(cache_dir);
                }
            }
        }
        Ok(CacheMountLock {
            _file: file,
            dir: data,
        })
    }

    fn private_instance(cache_dir: &Path) -> Result<CacheMountLock, CacheLockError> {
        for n in 0u32.. {
            let dir = cache_dir.join("private").join(n.to_string());
            let (file, data) = prepare(&dir)?;
            if flock(&file, &dir, libc::LOCK_EX | libc::LOCK_NB)? {
                return Ok(CacheMountLock {
                    _file: file,
                    dir: data,
                });
            }
        }
        unreachable!("u32 private instances exhausted")
    }

    /// The directory to mount as the cache.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_makes_new_instance_when_busy_and_reuses_when_free() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let first = CacheMountLock::acquire(tmp.path(), CacheSharing::Private).expect("first");
        assert_eq!(first.dir(), tmp.path().join("data"));
        let second = CacheMountLock::acquire(tmp.path(), CacheSharing::Private).expect("second");
        assert_eq!(second.dir(), tmp.path().join("private/0/data"));
        drop(first);
        let third = CacheMountLock::acquire(tmp.path(), CacheSharing::Private).expect("third");
        assert_eq!(third.dir(), tmp.path().join("data"));
    }

    #[test]
    fn shared_holders_coexist_and_exclude_private() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let a = CacheMountLock::acquire(tmp.path(), CacheSharing::Shared).expect("a");
        let b = CacheMountLock::acquire(tmp.path(), CacheSharing::Shared).expect("b");
        assert_eq!(a.dir(), b.dir());
        let p = CacheMountLock::acquire(tmp.path(), CacheSharing::Private).expect("p");
        assert_ne!(p.dir(), a.dir());
    }
}
