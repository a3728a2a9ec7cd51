//! Content checksums of directory trees: what `COPY` from the context or from another stage
//! reads, as one digest for its cache key.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use img_llb::Digest;
use rayon::prelude::*;
use sha2::{Digest as _, Sha256};
use walkdir::WalkDir;

use crate::cache::{unix_ns, FileStamp, StampedChecksum};
use crate::{CacheDb, CacheError};

/// Files whose mtime or ctime is this close to the moment they were examined are hashed again
/// next time: a write in the same timestamp tick (kernel timestamps are coarse, one jiffy)
/// would leave size and times unchanged. Git calls these "racily clean" entries.
const RACY_WINDOW_NS: i64 = 1_000_000_000;

/// An error while checksumming a tree.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChecksumError {
    /// A directory could not be listed or an entry could not be examined.
    #[error("cannot read {path} while checksumming the build context")]
    Walk {
        /// The path that failed.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A file could not be read.
    #[error("cannot read file {path} while checksumming the build context")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The checksum cache failed.
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// Chooses which paths of a tree are part of a checksum. Paths are relative to the tree's root,
/// `/`-separated, without a leading `/` (the form `.dockerignore` patterns match).
///
/// Any `Fn(&str) -> bool` closure is a filter that never prunes directories.
pub trait PathFilter: Sync {
    /// Whether the entry at `path` is selected.
    fn selects(&self, path: &str, is_dir: bool) -> bool;

    /// Whether anything under directory `dir` can be selected; `false` skips walking it
    /// (e.g. an excluded `node_modules` with no `!` re-inclusion below it).
    fn may_select_under(&self, dir: &str) -> bool {
        let _ = dir;
        true
    }
}

impl<F: Fn(&str) -> bool + Sync> PathFilter for F {
    fn selects(&self, path: &str, _is_dir: bool) -> bool {
        self(path)
    }
}

/// Selects every path.
#[derive(Debug, Clone, Copy, Default)]
pub struct SelectAll;

impl PathFilter for SelectAll {
    fn selects(&self, _path: &str, _is_dir: bool) -> bool {
        true
    }
}

/// Which metadata takes part in a checksum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChecksumOptions {
    /// Include owner uid/gid. Off for the build context, whose files `COPY` chowns to root
    /// (so the client's uid never reaches the image); on for `COPY --from` another stage.
    pub include_ownership: bool,
}

impl ChecksumOptions {
    /// Options with ownership included or not.
    pub fn with_ownership(include_ownership: bool) -> Self {
        ChecksumOptions { include_ownership }
    }
}

/// The result of [`checksum_tree`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeChecksum {
    /// One digest over the selected entries' paths, metadata and contents.
    pub digest: Digest,
    /// Number of selected entries (files, directories, links, others).
    pub entries: usize,
    /// Number of files whose content was read (the rest came from the checksum cache).
    pub files_read: usize,
}

enum Kind {
    File,
    Dir,
    Symlink(Vec<u8>),
    Other,
}

struct Entry {
    rel: String,
    abs: PathBuf,
    kind: Kind,
    mode: u32,
    uid: u32,
    gid: u32,
    stamp: FileStamp,
    content: Option<[u8; 32]>,
}

/// Checksums the entries of `root` selected by `filter`: relative path, type, permission bits,
/// ownership (if asked), symlink target and file content — what a copy of them puts in an
/// image. Modification times are left out, as BuildKit does, so a fresh checkout of the same
/// sources hits the cache.
///
/// File contents are hashed on rayon's pool. With `cache`, a file whose path, size, mtime,
/// ctime and inode are unchanged since an earlier run is not read again.
pub fn checksum_tree(
    root: &Path,
    filter: &dyn PathFilter,
    options: &ChecksumOptions,
    cache: Option<&CacheDb>,
) -> Result<TreeChecksum, ChecksumError> {
    let started_ns = unix_ns(SystemTime::now());
    let root = root.canonicalize().map_err(|source| ChecksumError::Walk {
        path: root.to_path_buf(),
        source,
    })?;
    // Loading the cache's entries overlaps the walk: both take about as long on a large tree.
    let (walked, known) = std::thread::scope(|scope| {
        let known = scope.spawn(|| match cache {
            Some(db) => db.checksums_under(&root.to_string_lossy()),
            None => Ok(HashMap::new()),
        });
        let walked = walk(&root, filter);
        // A panic in the cache read is re-raised here rather than swallowed.
        let known = known
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        (walked, known)
    });
    let mut entries = walked?;
    let known = known?;
    let mut to_read = Vec::new();
    for entry in entries.iter_mut().filter(|e| matches!(e.kind, Kind::File)) {
        match known.get(&*entry.abs.to_string_lossy()) {
            Some(hit) if hit.stamp == entry.stamp && !is_racy(hit) => {
                entry.content = Some(hit.sha256)
            }
            _ => to_read.push(entry),
        }
    }
    let files_read = to_read.len();
    to_read.par_iter_mut().try_for_each(|entry| {
        entry.content = Some(hash_file(&entry.abs)?);
        Ok::<_, ChecksumError>(())
    })?;

    if let Some(db) = cache {
        let fresh: Vec<(String, StampedChecksum)> = entries
            .iter()
            .filter(|e| matches!(e.kind, Kind::File))
            .filter_map(|e| {
                let path = e.abs.to_string_lossy().into_owned();
                let sha256 = e.content?;
                let unchanged = known
                    .get(&path)
                    .is_some_and(|k| k.stamp == e.stamp && k.sha256 == sha256 && !is_racy(k));
                (!unchanged).then_some((
                    path,
                    StampedChecksum {
                        stamp: e.stamp,
                        sha256,
                        recorded_ns: started_ns,
                    },
                ))
            })
            .collect();
        db.store_checksums(&fresh)?;
    }

    Ok(TreeChecksum {
        digest: combine(&entries, options),
        entries: entries.len(),
        files_read,
    })
}

fn is_racy(entry: &StampedChecksum) -> bool {
    let newest = entry.stamp.mtime_ns.max(entry.stamp.ctime_ns);
    newest >= entry.recorded_ns - RACY_WINDOW_NS
}

/// Lists the selected entries in walk order, then examines them in parallel: on a large tree
/// the `lstat` calls dominate, and directory listing alone needs none (the kernel returns each
/// entry's type with its name).
fn walk(root: &Path, filter: &dyn PathFilter) -> Result<Vec<Entry>, ChecksumError> {
    let mut listed = Vec::new();
    let walker = WalkDir::new(root)
        .min_depth(1)
        .follow_links(false)
        .sort_by(|a, b| a.file_name().as_bytes().cmp(b.file_name().as_bytes()))
        .into_iter()
        .filter_entry(|e| {
            !e.file_type().is_dir() || filter.may_select_under(&relative(root, e.path()))
        });
    for item in walker {
        let item = item.map_err(|err| ChecksumError::Walk {
            path: err.path().unwrap_or(root).to_path_buf(),
            source: err.into(),
        })?;
        let rel = relative(root, item.path());
        if filter.selects(&rel, item.file_type().is_dir()) {
            listed.push((rel, item.into_path()));
        }
    }
    listed
        .into_par_iter()
        .map(|(rel, abs)| examine(rel, abs))
        .collect()
}

fn examine(rel: String, abs: PathBuf) -> Result<Entry, ChecksumError> {
    let walk_err = |source| ChecksumError::Walk {
        path: abs.clone(),
        source,
    };
    let meta = std::fs::symlink_metadata(&abs).map_err(walk_err)?;
    let file_type = meta.file_type();
    let kind = if file_type.is_file() {
        Kind::File
    } else if file_type.is_dir() {
        Kind::Dir
    } else if file_type.is_symlink() {
        let target = std::fs::read_link(&abs).map_err(walk_err)?;
        Kind::Symlink(target.as_os_str().as_bytes().to_vec())
    } else {
        Kind::Other
    };
    Ok(Entry {
        rel,
        kind,
        mode: meta.mode(),
        uid: meta.uid(),
        gid: meta.gid(),
        stamp: FileStamp {
            size: meta.size(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
            inode: meta.ino(),
        },
        content: None,
        abs,
    })
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

fn hash_file(path: &Path) -> Result<[u8; 32], ChecksumError> {
    let read_err = |source| ChecksumError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(read_err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(read_err)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}

/// Folds the entries, in walk order (sorted by name within each directory), into one digest.
/// Every field is length-prefixed so no two different trees produce the same byte stream.
fn combine(entries: &[Entry], options: &ChecksumOptions) -> Digest {
    let mut hasher = Sha256::new();
    hasher.update(b"img-solver/tree/v1\n");
    for entry in entries {
        let (tag, payload): (u8, &[u8]) = match &entry.kind {
            Kind::File => (b'f', entry.content.as_ref().map_or(&[][..], |c| &c[..])),
            Kind::Dir => (b'd', &[]),
            Kind::Symlink(target) => (b'l', target),
            Kind::Other => (b'o', &[]),
        };
        hasher.update([tag]);
        field(&mut hasher, entry.rel.as_bytes());
        // Permission, setuid/setgid and sticky bits: what a copy preserves.
        hasher.update((entry.mode & 0o7777).to_le_bytes());
        if options.include_ownership {
            hasher.update(entry.uid.to_le_bytes());
            hasher.update(entry.gid.to_le_bytes());
        }
        field(&mut hasher, payload);
    }
    Digest::from_sha256(hasher.finalize().into())
}

fn field(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}
