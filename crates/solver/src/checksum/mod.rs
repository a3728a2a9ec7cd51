//! Content checksums of directory trees: what `COPY` from the context or from another stage
//! reads, as one digest for its cache key.
//!
//! A tree's digest covers, for every selected entry in walk order, its raw path bytes and its
//! record (see `entry`): type, permission bits, owner when asked, extended attributes, content,
//! link target, device number and hardlink structure. Two ways to avoid reading files again:
//! the build context, which the user edits, is checked file by file against the stamps of the
//! file checksum cache; a committed snapshot never changes, so its checksum for a selection is
//! recorded once ([`checksum_immutable_tree`]).

mod entry;
mod listing;

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use img_llb::Digest;
use rayon::prelude::*;
use sha2::{Digest as _, Sha256};

use crate::cache::{unix_ns, StampedChecksum};
use crate::{CacheDb, CacheError};
use entry::{field, hash_file, link_hardlinks, xattr_digest, Entry};
pub use listing::TreeListing;
pub(crate) use listing::{PathDigest, PathDigests};

/// Files whose mtime or ctime is this close to the moment they were examined are hashed again
/// next time: a write in the same timestamp tick (kernel timestamps are coarse, one jiffy)
/// would leave size and times unchanged. Git calls these "racily clean" entries.
const RACY_WINDOW_NS: i64 = 1_000_000_000;

/// An error while checksumming a tree.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChecksumError {
    /// A directory could not be listed or an entry could not be examined.
    #[error("cannot read {path} while checksumming files to copy")]
    Walk {
        /// The path that failed.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A file could not be read.
    #[error("cannot read file {path} while checksumming files to copy")]
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
#[derive(Debug, Clone)]
pub struct TreeChecksum {
    /// One digest over the selected entries' paths, metadata and contents.
    pub digest: Digest,
    /// Number of selected entries (files, directories, links, others).
    pub entries: usize,
    /// Number of files whose content was read (the rest came from a checksum cache).
    pub files_read: usize,
    /// Each selected path with a digest of its record, computed only if asked for: what lets
    /// the solver name the files that changed when a step misses the cache. Empty when the
    /// checksum came from [`checksum_immutable_tree`]'s record.
    pub listing: TreeListing,
}

/// Checksums the entries of `root` selected by `filter`: relative path, type, permission bits,
/// ownership (if asked), extended attributes, hardlinks, device numbers, symlink target and
/// file content — what a copy of them puts in an image. Modification times are left out, as
/// BuildKit does, so a fresh checkout of the same sources hits the cache.
///
/// File contents are hashed on rayon's pool. With `cache`, a file whose path, size, mtime,
/// ctime and inode are unchanged since an earlier run is not read again (its attributes
/// neither: setting one changes the ctime).
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
    let root_bytes = root.as_os_str().as_bytes();
    // Loading the cache's entries overlaps the walk: both take about as long on a large tree.
    let (walked, known) = std::thread::scope(|scope| {
        let known = scope.spawn(|| match cache {
            Some(db) => db.checksums_under(root_bytes),
            None => Ok(Default::default()),
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
    link_hardlinks(&mut entries);

    let files_read = AtomicUsize::new(0);
    entries.par_iter_mut().try_for_each(|entry| {
        if !entry.needs_metadata() {
            return Ok(());
        }
        if entry.is_file() {
            if let Some(hit) = known.get(entry.abs.as_os_str().as_bytes()) {
                if hit.stamp == entry.stamp && !is_racy(hit) {
                    entry.content = Some(hit.sha256);
                    entry.xattrs = hit.xattrs;
                    return Ok(());
                }
            }
            files_read.fetch_add(1, Ordering::Relaxed);
            entry.content = Some(hash_file(&entry.abs)?);
        }
        entry.xattrs = xattr_digest(&entry.abs)?;
        Ok::<_, ChecksumError>(())
    })?;

    if let Some(db) = cache {
        let fresh: Vec<(&[u8], StampedChecksum)> = entries
            .iter()
            .filter(|e| e.is_file() && e.hardlink_of.is_none())
            .filter_map(|e| {
                let path = e.abs.as_os_str().as_bytes();
                let sha256 = e.content?;
                let unchanged = known.get(path).is_some_and(|k| {
                    k.stamp == e.stamp && k.sha256 == sha256 && k.xattrs == e.xattrs && !is_racy(k)
                });
                (!unchanged).then_some((
                    path,
                    StampedChecksum {
                        stamp: e.stamp,
                        sha256,
                        xattrs: e.xattrs,
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
        files_read: files_read.into_inner(),
        listing: TreeListing::of_entries(entries, *options),
    })
}

/// The checksum of a selection from a tree that never changes once it has a name (a committed
/// snapshot): `compute` runs the first time only, and its digest is recorded in `cache` under
/// `tree` (a name never reused for other content) and `selection` (everything that decides
/// which entries `compute` selects, e.g. the copy's source paths, plus the options).
///
/// A later call finds the record and reads no file at all, so a no-op rebuild does not read
/// again every tree a `COPY --from` copies from. A recorded result has an empty listing.
pub fn checksum_immutable_tree<E: From<CacheError>>(
    cache: &CacheDb,
    tree: &str,
    selection: &[u8],
    options: &ChecksumOptions,
    compute: impl FnOnce() -> Result<TreeChecksum, E>,
) -> Result<TreeChecksum, E> {
    let mut key = b"img-solver/immutable-tree/v1\n".to_vec();
    field(&mut key, selection);
    key.push(u8::from(options.include_ownership));
    let selection = Digest::of(&key);
    if let Some((digest, entries)) = cache.tree_checksum(tree, &selection)? {
        return Ok(TreeChecksum {
            digest,
            entries,
            files_read: 0,
            listing: TreeListing::default(),
        });
    }
    let sum = compute()?;
    cache.store_tree_checksum(tree, &selection, &sum.digest, sum.entries)?;
    Ok(sum)
}

fn is_racy(entry: &StampedChecksum) -> bool {
    let newest = entry.stamp.mtime_ns.max(entry.stamp.ctime_ns);
    newest >= entry.recorded_ns - RACY_WINDOW_NS
}

/// Lists the selected entries in walk order (depth first, each directory's entries sorted by
/// name bytes), then examines them in parallel: on a large tree the `lstat` calls dominate,
/// and listing alone needs none (the kernel returns each entry's type with its name).
///
/// The walk keeps its own stack rather than recursing, so a hostile context nested
/// thousands of levels deep cannot overflow the thread's stack.
fn walk(root: &Path, filter: &dyn PathFilter) -> Result<Vec<Entry>, ChecksumError> {
    let mut listed = Vec::new();
    let mut stack = Vec::new();
    push_children(root, &[], &mut stack)?;
    while let Some(child) = stack.pop() {
        // Filters match text; a name that is not UTF-8 is matched by its lossy form, but
        // hashed by its bytes.
        let text = String::from_utf8_lossy(&child.rel);
        if child.is_dir && !filter.may_select_under(&text) {
            continue;
        }
        let selected = filter.selects(&text, child.is_dir);
        if child.is_dir {
            push_children(&child.abs, &child.rel, &mut stack)?;
        }
        if selected {
            listed.push((child.rel, child.abs));
        }
    }
    listed
        .into_par_iter()
        .map(|(rel, abs)| Entry::examine(rel, abs))
        .collect()
}

/// A directory entry met by [`walk`], not yet examined.
struct Listed {
    rel: Vec<u8>,
    abs: PathBuf,
    is_dir: bool,
}

/// Pushes the entries of `dir` (at `rel` in the tree) so that they pop in name order.
fn push_children(dir: &Path, rel: &[u8], stack: &mut Vec<Listed>) -> Result<(), ChecksumError> {
    let walk_err = |source| ChecksumError::Walk {
        path: dir.to_path_buf(),
        source,
    };
    let mut children = Vec::new();
    for item in std::fs::read_dir(dir).map_err(walk_err)? {
        let item = item.map_err(walk_err)?;
        let is_dir = item.file_type().map_err(walk_err)?.is_dir();
        children.push((item.file_name(), is_dir));
    }
    children.sort_unstable_by(|a, b| b.0.as_bytes().cmp(a.0.as_bytes()));
    for (name, is_dir) in children {
        let mut child_rel = Vec::with_capacity(rel.len() + 1 + name.len());
        if !rel.is_empty() {
            child_rel.extend_from_slice(rel);
            child_rel.push(b'/');
        }
        child_rel.extend_from_slice(name.as_bytes());
        stack.push(Listed {
            rel: child_rel,
            abs: dir.join(&name),
            is_dir,
        });
    }
    Ok(())
}

/// Folds the entries, in walk order (sorted by name within each directory), into one digest:
/// each entry's path, then its record, both length-prefixed.
fn combine(entries: &[Entry], options: &ChecksumOptions) -> Digest {
    let mut hasher = Sha256::new();
    hasher.update(b"img-solver/tree/v2\n");
    let mut record = Vec::with_capacity(128);
    for entry in entries {
        record.clear();
        entry.record(entries, options, &mut record);
        hash_field(&mut hasher, &entry.rel);
        hash_field(&mut hasher, &record);
    }
    Digest::from_sha256(hasher.finalize().into())
}

fn hash_field(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}
