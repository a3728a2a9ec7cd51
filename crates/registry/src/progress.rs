//! Per-blob transfer progress, reported through a callback.

use std::time::Duration;

use oci_spec::image::Digest;

/// Something that happened to one blob during a pull or push.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProgressEvent {
    /// The transfer of a blob began.
    Started {
        /// The blob.
        digest: Digest,
        /// Its size in bytes.
        size: u64,
    },
    /// Bytes moved so far (reported about every MiB, and at the end).
    Transferred {
        /// The blob.
        digest: Digest,
        /// Bytes done.
        done: u64,
        /// Its size in bytes.
        size: u64,
    },
    /// The blob was transferred and verified.
    Done {
        /// The blob.
        digest: Digest,
        /// Its size in bytes.
        size: u64,
    },
    /// The blob was already present at the destination; nothing was transferred.
    Exists {
        /// The blob.
        digest: Digest,
        /// Its size in bytes.
        size: u64,
    },
    /// The registry linked the blob from another repository (cross-repository mount).
    Mounted {
        /// The blob.
        digest: Digest,
        /// The repository it was mounted from.
        from: String,
    },
    /// A transfer failed and will be tried again after a delay.
    Retrying {
        /// The blob.
        digest: Digest,
        /// Which retry this is (1 for the first).
        attempt: u32,
        /// The wait before it.
        delay: Duration,
        /// Why the previous attempt failed.
        reason: String,
    },
}

/// The progress callback type: called from the transfer threads, so it must be `Sync`.
pub type ProgressFn<'a> = &'a (dyn Fn(&ProgressEvent) + Sync);

/// A callback that ignores every event.
pub fn no_progress(_: &ProgressEvent) {}

/// Emits `Transferred` events at most once per this many bytes.
pub(crate) const PROGRESS_STEP: u64 = 1 << 20;
