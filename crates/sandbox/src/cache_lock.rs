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

/// Whether `file` is still the lock file at `dir/lock` (not one a removal deleted).
fn still_current(file: &File, dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(dir.join("lock"))) {
        (Ok(held), Ok(current)) => held.ino() == current.ino() && held.dev() == current.dev(),
        _ => false,
    }
}

/// The bytes of the files below `dir`, links not followed.
fn tree_size(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => tree_size(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
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
        loop {
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
            // A cache removed while this step waited for it leaves the lock of a deleted
            // file: take the cache that exists now instead.
            if still_current(&file, cache_dir) {
                return Ok(CacheMountLock {
                    _file: file,
                    dir: data,
                });
            }
        }
    }

    /// Deletes the cache at `cache_dir` (`img prune`) unless a step holds it or one of its
    /// private instances right now; returns the bytes freed, or `None` when it is busy. Steps
    /// that were waiting for it get a fresh, empty cache.
    pub fn remove_if_unused(cache_dir: &Path) -> Result<Option<u64>, CacheLockError> {
        let (main, _) = prepare(cache_dir)?;
        if !flock(&main, cache_dir, libc::LOCK_EX | libc::LOCK_NB)? {
            return Ok(None);
        }
        let mut held = vec![main];
        if let Ok(instances) = fs::read_dir(cache_dir.join("private")) {
            for instance in instances.flatten() {
                let dir = instance.path();
                let (file, _) = prepare(&dir)?;
                if !flock(&file, &dir, libc::LOCK_EX | libc::LOCK_NB)? {
                    return Ok(None);
                }
                held.push(file);
            }
        }
        let size = tree_size(cache_dir);
        // Moved aside first, so that no step ever finds a half-deleted cache.
        let name = cache_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let trash = cache_dir.with_file_name(format!(".removing-{name}-{}", std::process::id()));
        let removed = fs::rename(cache_dir, &trash).and_then(|()| fs::remove_dir_all(&trash));
        removed.map_err(|source| CacheLockError::Prepare {
            path: cache_dir.to_path_buf(),
            source,
        })?;
        drop(held);
        Ok(Some(size))
    }

    fn private_instance(cache_dir: &Path) -> Result<CacheMountLock, CacheLockError> {
        for n in 0u32.. {
            let dir = cache_dir.join("private").join(n.to_string());
            let (file, data) = prepare(&dir)?;
            if flock(&file, &dir, libc::LOCK_EX | libc::LOCK_NB)? && still_current(&file, &dir) {
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
    fn removal_skips_a_held_cache_and_frees_an_unused_one() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        let held = CacheMountLock::acquire(&cache, CacheSharing::Shared).unwrap();
        fs::write(held.dir().join("file"), vec![0u8; 1000]).unwrap();
        assert_eq!(CacheMountLock::remove_if_unused(&cache).unwrap(), None);
        assert!(cache.join("data/file").exists(), "a held cache stays");
        drop(held);
        assert_eq!(
            CacheMountLock::remove_if_unused(&cache).unwrap(),
            Some(1000)
        );
        assert!(!cache.exists());
        let again = CacheMountLock::acquire(&cache, CacheSharing::Locked).unwrap();
        assert!(
            fs::read_dir(again.dir()).unwrap().next().is_none(),
            "a fresh cache"
        );
    }

    #[test]
    fn a_step_waiting_on_a_removed_cache_takes_the_new_one() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        let (file, _) = prepare(&cache).unwrap();
        // The removal's view: the old lock file is gone, a new cache exists.
        fs::rename(&cache, tmp.path().join("old")).unwrap();
        assert!(!still_current(&file, &cache));
        let lock = CacheMountLock::acquire(&cache, CacheSharing::Locked).unwrap();
        assert!(lock.dir().starts_with(&cache));
        assert!(still_current(&lock._file, &cache));
    }

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
