//! The record of what a copy reads, and its digest: the part of a file op's cache key that
//! stands for its sources' content. The same record is made from the plan when the key is
//! computed and from what the copy actually read when it runs; the two must agree.

use std::fs::File;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use img_llb::Digest;
use rayon::prelude::*;
use sha2::{Digest as _, Sha256};
use xattr::FileExt;

use super::plan::{Entry, EntryKind, PlannedSource};
use super::root::{Meta, TreeRoot};
use super::WorkerError;
use img_solver::{CacheDb, FileStamp, StampedChecksum};

/// A cached checksum of a file whose timestamps are this close to when it was hashed is not
/// trusted: a write in the same timestamp tick leaves size and times unchanged (the checksum
/// cache's own rule, which it shares with the solver).
const RACY_WINDOW_NS: i64 = 1_000_000_000;

/// What was read at one path of a source tree, as one digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Read {
    /// The path in the source tree.
    pub path: PathBuf,
    /// Kind, permission bits, ownership (when it counts) and content, link target or device.
    pub digest: [u8; 32],
}

fn field(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

/// The read of a link followed on the way to a source.
fn followed_link(path: &Path, target: &std::ffi::OsStr) -> Read {
    let mut hasher = Sha256::new();
    hasher.update(b"L");
    field(&mut hasher, path.as_os_str().as_bytes());
    field(&mut hasher, target.as_bytes());
    Read {
        path: path.to_path_buf(),
        digest: hasher.finalize().into(),
    }
}

/// The read of one entry; `content` is a file's sha256.
fn entry_read(entry: &Entry, content: Option<&[u8; 32]>, ownership: bool) -> Read {
    let meta = &entry.meta;
    let mut hasher = Sha256::new();
    let rdev;
    let (tag, payload): (&[u8], &[u8]) = match &entry.kind {
        EntryKind::File => (b"f", content.map_or(&[][..], |c| &c[..])),
        EntryKind::Dir => (b"d", &[]),
        EntryKind::Symlink(target) => (b"l", target.as_bytes()),
        EntryKind::Special => {
            rdev = [
                (meta.mode() & libc::S_IFMT).to_le_bytes(),
                (meta.rdev() as u32).to_le_bytes(),
                ((meta.rdev() >> 32) as u32).to_le_bytes(),
            ]
            .concat();
            (b"s", &rdev)
        }
    };
    hasher.update(tag);
    field(&mut hasher, entry.path.as_os_str().as_bytes());
    // Permission, setuid/setgid and sticky bits: what a copy preserves.
    hasher.update((meta.mode() & 0o7777).to_le_bytes());
    if ownership {
        hasher.update(meta.uid().to_le_bytes());
        hasher.update(meta.gid().to_le_bytes());
    }
    field(&mut hasher, payload);
    Read {
        path: entry.path.to_path_buf(),
        digest: hasher.finalize().into(),
    }
}

/// The reads of one planned source: the links followed to it, then its entries, `contents`
/// giving each entry's file content (aligned with `source.entries`).
pub(crate) fn source_reads(
    source: &PlannedSource,
    contents: &[Option<[u8; 32]>],
    ownership: bool,
    reads: &mut Vec<Read>,
) {
    for (path, target) in &source.links {
        reads.push(followed_link(path, target));
    }
    for (i, entry) in source.entries.iter().enumerate() {
        let content = contents.get(i).and_then(Option::as_ref);
        reads.push(entry_read(entry, content, ownership));
    }
}

/// One digest over reads, in order.
pub(crate) fn combine(reads: &[Read]) -> Digest {
    let mut hasher = Sha256::new();
    hasher.update(b"img-worker/copy-reads/v1\n");
    for read in reads {
        hasher.update(read.digest);
    }
    Digest::from_sha256(hasher.finalize().into())
}

/// The first path where two records of the same copy differ (a path when one is longer).
pub(crate) fn first_difference(expected: &[Read], actual: &[Read]) -> Option<PathBuf> {
    for (e, a) in expected.iter().zip(actual) {
        if e != a {
            return Some(a.path.clone());
        }
    }
    match expected.len().cmp(&actual.len()) {
        std::cmp::Ordering::Less => Some(actual[expected.len()].path.clone()),
        std::cmp::Ordering::Greater => Some(expected[actual.len()].path.clone()),
        std::cmp::Ordering::Equal => None,
    }
}

/// The sha256 of a file's extended attributes as a copy carries them over (overlayfs's own
/// bookkeeping left out), `None` when it has none: a `setcap` changes what a copy makes.
pub(crate) fn xattrs_digest(file: &File) -> std::io::Result<Option<[u8; 32]>> {
    let names = match file.list_xattr() {
        Ok(names) => names,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut pairs = Vec::new();
    for name in names {
        if is_overlay_bookkeeping(&name) {
            continue;
        }
        // Removed between the listing and the read: as if it had never been there.
        if let Some(value) = file.get_xattr(&name)? {
            pairs.push((name.as_bytes().to_vec(), value));
        }
    }
    if pairs.is_empty() {
        return Ok(None);
    }
    pairs.sort();
    let mut hasher = Sha256::new();
    for (name, value) in &pairs {
        field(&mut hasher, name);
        field(&mut hasher, value);
    }
    Ok(Some(hasher.finalize().into()))
}

/// Whether an attribute is overlayfs's own, which no copy carries.
pub(crate) fn is_overlay_bookkeeping(name: &std::ffi::OsStr) -> bool {
    let name = name.as_bytes();
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

/// A file's content and extended attributes as one digest, what a read of it records; a file
/// without attributes is recorded by its content alone.
pub(crate) fn file_digest(content: [u8; 32], xattrs: Option<[u8; 32]>) -> [u8; 32] {
    match xattrs {
        None => content,
        Some(xattrs) => {
            let mut hasher = Sha256::new();
            hasher.update(b"content+xattrs");
            hasher.update(content);
            hasher.update(xattrs);
            hasher.finalize().into()
        }
    }
}

/// Copies `reader` to `writer`, returning the sha256 of what went through.
pub(crate) fn copy_hashing(
    reader: &mut impl std::io::Read,
    writer: &mut impl std::io::Write,
) -> std::io::Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 128 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        writer.write_all(&buf[..n])?;
    }
    Ok(hasher.finalize().into())
}

fn stamp(meta: &Meta) -> FileStamp {
    let ns = |(secs, nsecs): (i64, i64)| secs * 1_000_000_000 + nsecs;
    FileStamp {
        size: meta.size(),
        mtime_ns: ns(meta.mtime()),
        ctime_ns: ns(meta.ctime()),
        inode: meta.ino(),
    }
}

fn unix_ns(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn trusted(known: &StampedChecksum, now: &FileStamp) -> bool {
    let newest = known.stamp.mtime_ns.max(known.stamp.ctime_ns);
    known.stamp == *now && newest < known.recorded_ns - RACY_WINDOW_NS
}

/// The deepest directory holding every path of `paths` (empty: the root).
fn common_dir<'p>(paths: impl Iterator<Item = &'p Path>) -> PathBuf {
    let mut common: Option<Vec<std::ffi::OsString>> = None;
    for path in paths {
        let parent: Vec<_> = path
            .parent()
            .into_iter()
            .flat_map(|p| p.iter().map(|c| c.to_os_string()))
            .collect();
        common = Some(match common {
            None => parent,
            Some(c) => c
                .into_iter()
                .zip(parent)
                .take_while(|(a, b)| a == b)
                .map(|(a, _)| a)
                .collect(),
        });
    }
    common.unwrap_or_default().into_iter().collect()
}

/// How many files are hashed, then recorded in the checksum cache, at a time: what a cold
/// build holds of them at once.
const HASH_BATCH: usize = 4096;

/// The reads of `sources` as planned in `tree`, file contents hashed now: from the checksum
/// cache (`cache`, for a tree that stays at its path, the context) when a file's size, times
/// and inode are unchanged since it was last hashed, read otherwise.
///
/// Memory stays a few dozen bytes per file beyond the plan itself: the cache's entries are
/// merged with the planned files in one pass over both in path order, never loaded whole, and
/// files to hash are hashed and recorded in batches.
pub(crate) fn planned_reads(
    tree: &TreeRoot,
    sources: &[PlannedSource],
    ownership: bool,
    cache: Option<&CacheDb>,
) -> Result<Vec<Read>, WorkerError> {
    let started_ns = unix_ns(SystemTime::now());
    let files: Vec<&Entry> = sources
        .iter()
        .flat_map(|s| &s.entries)
        .filter(|e| e.kind == EntryKind::File)
        .collect();
    // Each file's digest, in walk order: from the cache first, the rest hashed below.
    let mut contents: Vec<Option<[u8; 32]>> = vec![None; files.len()];
    if let Some(db) = cache.filter(|_| !files.is_empty()) {
        let dir = common_dir(files.iter().map(|e| &*e.path));
        // Host paths are the tree's path, a `/` and the path in the tree: both lists sort the
        // same once that prefix is taken off.
        let mut root = tree.host_path(Path::new("")).into_os_string().into_vec();
        if !root.ends_with(b"/") {
            root.push(b'/');
        }
        let mut order: Vec<usize> = (0..files.len()).collect();
        order.sort_unstable_by(|&a, &b| path_bytes(files[a]).cmp(path_bytes(files[b])));
        let mut next = 0;
        db.visit_checksums_under(
            tree.host_path(&dir).as_os_str().as_bytes(),
            |host, known| {
                let Some(rel) = host.strip_prefix(root.as_slice()) else {
                    return;
                };
                while next < order.len() && path_bytes(files[order[next]]) < rel {
                    next += 1;
                }
                // The same file may be planned more than once (two sources naming it).
                while next < order.len() && path_bytes(files[order[next]]) == rel {
                    let index = order[next];
                    // Setting an attribute changes the ctime, so the stamp guards them too.
                    if trusted(&known, &stamp(&files[index].meta)) {
                        contents[index] = Some(file_digest(known.sha256, known.xattrs));
                    }
                    next += 1;
                }
            },
        )?;
    }
    let unknown: Vec<usize> = (0..files.len())
        .filter(|&i| contents[i].is_none())
        .collect();
    for batch in unknown.chunks(HASH_BATCH) {
        let hashed: Vec<([u8; 32], Option<[u8; 32]>)> = batch
            .par_iter()
            .map(|&index| hash_entry(tree, files[index]))
            .collect::<Result<_, WorkerError>>()?;
        if let Some(db) = cache {
            let hosts: Vec<Vec<u8>> = batch
                .iter()
                .map(|&index| {
                    tree.host_path(&files[index].path)
                        .into_os_string()
                        .into_vec()
                })
                .collect();
            let fresh: Vec<(&[u8], StampedChecksum)> = batch
                .iter()
                .zip(&hashed)
                .zip(&hosts)
                .map(|((&index, (sha256, xattrs)), host)| {
                    let checksum = StampedChecksum {
                        stamp: stamp(&files[index].meta),
                        sha256: *sha256,
                        xattrs: *xattrs,
                        recorded_ns: started_ns,
                    };
                    (host.as_slice(), checksum)
                })
                .collect();
            db.store_checksums(&fresh)?;
        }
        for (&index, (sha256, xattrs)) in batch.iter().zip(hashed) {
            contents[index] = Some(file_digest(sha256, xattrs));
        }
    }
    drop(files);
    let mut reads = Vec::new();
    let mut files_done = contents.into_iter();
    for source in sources {
        let aligned: Vec<Option<[u8; 32]>> = source
            .entries
            .iter()
            .map(|e| match e.kind {
                EntryKind::File => files_done.next().flatten(),
                _ => None,
            })
            .collect();
        source_reads(source, &aligned, ownership, &mut reads);
    }
    Ok(reads)
}

fn path_bytes(entry: &Entry) -> &[u8] {
    entry.path.as_os_str().as_bytes()
}

/// The content sha256 and attributes digest of a planned file, read now.
fn hash_entry(tree: &TreeRoot, entry: &Entry) -> Result<([u8; 32], Option<[u8; 32]>), WorkerError> {
    let shown = tree.host_path(&entry.path);
    let mut file = tree
        .open_file(&entry.path)
        .map_err(WorkerError::file("reading", &shown))?;
    let sha = copy_hashing(&mut file, &mut std::io::sink())
        .map_err(WorkerError::file("reading", &shown))?;
    let xattrs =
        xattrs_digest(&file).map_err(WorkerError::file("reading attributes of", &shown))?;
    Ok((sha, xattrs))
}

/// A reader that hashes what passes through it, for a file read by someone else (an archive
/// being unpacked).
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: std::io::Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
        }
    }

    /// Reads what is left (an unpacker may stop before the end) and returns the sha256 of
    /// everything read.
    pub(crate) fn finish(mut self) -> std::io::Result<[u8; 32]> {
        let mut buf = vec![0u8; 128 * 1024];
        while std::io::Read::read(&mut self, &mut buf)? > 0 {}
        Ok(self.hasher.finalize().into())
    }
}

impl<R: std::io::Read> std::io::Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_directory_of_paths() {
        let p = |s: &'static str| Path::new(s);
        assert_eq!(
            common_dir([p("a/b/c.txt"), p("a/b/d/e.txt")].into_iter()),
            PathBuf::from("a/b")
        );
        assert_eq!(
            common_dir([p("x.txt"), p("a/y")].into_iter()),
            PathBuf::new()
        );
        assert_eq!(common_dir(std::iter::empty()), PathBuf::new());
    }
}
