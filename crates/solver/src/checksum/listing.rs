//! Per-path digests of a checksummed tree: what the solver compares, when a step misses the
//! cache, to name the files that changed since the step was last built.
//!
//! Computing them costs a small hash per entry, so a listing keeps the examined entries and
//! hashes them only when asked: a build whose steps all hit the cache never pays for it.

use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use super::entry::Entry;
use super::ChecksumOptions;

/// A path (raw bytes, relative to the tree's root) and the first 8 bytes of the sha256 of its
/// record: enough to tell a change apart, small enough to keep per path.
pub(crate) type PathDigest = (Vec<u8>, [u8; 8]);

/// Every selected path of a tree with its digest, sorted by path bytes.
pub(crate) type PathDigests = Vec<PathDigest>;

/// The selected paths of a tree with a digest of each, computed on demand. Cheap to clone.
#[derive(Clone, Default)]
pub struct TreeListing(Option<Arc<Listed>>);

enum Listed {
    /// Entries examined by [`super::checksum_tree`], hashed when asked.
    Examined {
        entries: Vec<Entry>,
        options: ChecksumOptions,
    },
    /// Digests an executor computed itself, sorted by path and packed: one buffer of paths
    /// rather than an allocation each, as a listing of a large context lives until its step
    /// has run.
    Packed(PackedDigests),
}

/// Paths end to end in one buffer, with where each ends and its digest, sorted by path.
#[derive(Default)]
struct PackedDigests {
    paths: Vec<u8>,
    ends: Vec<usize>,
    digests: Vec<[u8; 8]>,
}

impl PackedDigests {
    fn len(&self) -> usize {
        self.ends.len()
    }

    fn path(&self, index: usize) -> &[u8] {
        let start = index.checked_sub(1).map_or(0, |before| self.ends[before]);
        &self.paths[start..self.ends[index]]
    }

    fn push(&mut self, path: &[u8], digest: [u8; 8]) {
        self.paths.extend_from_slice(path);
        self.ends.push(self.paths.len());
        self.digests.push(digest);
    }

    /// The same digests sorted by path, each (path, digest) pair once.
    fn sorted(self) -> PackedDigests {
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.sort_unstable_by(|&a, &b| {
            (self.path(a), self.digests[a]).cmp(&(self.path(b), self.digests[b]))
        });
        let mut out = PackedDigests {
            paths: Vec::with_capacity(self.paths.len()),
            ends: Vec::with_capacity(self.len()),
            digests: Vec::with_capacity(self.len()),
        };
        for index in order {
            let (path, digest) = (self.path(index), self.digests[index]);
            let last = out.len().checked_sub(1);
            if last.is_some_and(|last| out.path(last) == path && out.digests[last] == digest) {
                continue;
            }
            out.push(path, digest);
        }
        out
    }
}

impl TreeListing {
    pub(super) fn of_entries(entries: Vec<Entry>, options: ChecksumOptions) -> TreeListing {
        TreeListing(Some(Arc::new(Listed::Examined { entries, options })))
    }

    /// A listing of paths an executor checksummed itself (raw path bytes relative to the
    /// tree's root, with the digest of what was read there), so that a miss can name them.
    pub fn from_digests(paths: impl IntoIterator<Item = (Vec<u8>, [u8; 32])>) -> TreeListing {
        let mut packed = PackedDigests::default();
        for (path, digest) in paths {
            let mut short = [0u8; 8];
            short.copy_from_slice(&digest[..8]);
            packed.push(&path, short);
        }
        TreeListing(Some(Arc::new(Listed::Packed(packed.sorted()))))
    }

    /// Whether there is nothing to list: the checksum came from a record, not from the files.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// Each path with its digest, sorted by path; `None` for an empty listing.
    pub(crate) fn path_digests(&self) -> Option<PathDigests> {
        let (entries, options) = match self.0.as_deref()? {
            Listed::Examined { entries, options } => (entries, options),
            Listed::Packed(packed) => {
                let paths = (0..packed.len()).map(|i| (packed.path(i).to_vec(), packed.digests[i]));
                return Some(paths.collect());
            }
        };
        let mut record = Vec::with_capacity(128);
        let mut out: PathDigests = entries
            .iter()
            .map(|entry| {
                record.clear();
                entry.record(entries, options, &mut record);
                let digest = Sha256::digest(&record);
                let mut short = [0u8; 8];
                short.copy_from_slice(&digest[..8]);
                (entry.rel.clone(), short)
            })
            .collect();
        out.sort();
        Some(out)
    }
}

impl std::fmt::Debug for TreeListing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_deref() {
            Some(Listed::Examined { entries, .. }) => {
                write!(f, "TreeListing({} entries)", entries.len())
            }
            Some(Listed::Packed(packed)) => write!(f, "TreeListing({} paths)", packed.len()),
            None => f.write_str("TreeListing(empty)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_an_executor_gives_are_listed_sorted_and_once() {
        let digest = |byte: u8| [byte; 32];
        let listing = TreeListing::from_digests([
            (b"b/x".to_vec(), digest(1)),
            (b"a".to_vec(), digest(2)),
            (b"b/x".to_vec(), digest(1)),
            (b"a.txt".to_vec(), digest(3)),
            (Vec::new(), digest(4)),
        ]);
        assert_eq!(
            listing.path_digests().unwrap(),
            [
                (Vec::new(), [4; 8]),
                (b"a".to_vec(), [2; 8]),
                (b"a.txt".to_vec(), [3; 8]),
                (b"b/x".to_vec(), [1; 8]),
            ]
        );
        assert!(TreeListing::default().path_digests().is_none());
    }
}
