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
pub struct TreeListing(Option<Arc<Examined>>);

struct Examined {
    entries: Vec<Entry>,
    options: ChecksumOptions,
}

impl TreeListing {
    pub(super) fn of_entries(entries: Vec<Entry>, options: ChecksumOptions) -> TreeListing {
        TreeListing(Some(Arc::new(Examined { entries, options })))
    }

    /// Whether there is nothing to list: the checksum came from a record, not from the files.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// Each path with its digest, sorted by path; `None` for an empty listing.
    pub(crate) fn path_digests(&self) -> Option<PathDigests> {
        let examined = self.0.as_ref()?;
        let mut record = Vec::with_capacity(128);
        let mut out: PathDigests = examined
            .entries
            .iter()
            .map(|entry| {
                record.clear();
                entry.record(&examined.entries, &examined.options, &mut record);
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
        match &self.0 {
            Some(examined) => write!(f, "TreeListing({} entries)", examined.entries.len()),
            None => f.write_str("TreeListing(empty)"),
        }
    }
}
