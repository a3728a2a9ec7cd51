//! The interface between the scheduler and whatever actually performs ops.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::SystemTime;

use img_llb::{Digest, Op, OpMetadata, OpRef};

use crate::progress::{LogStream, ProgressEvent, ProgressSink};
use crate::{CacheKey, CancelToken, TreeChecksum, TreeListing};

/// Performs ops for the solver. The solver knows nothing about filesystems or processes: it
/// asks for extra cache-key material, runs ops whose inputs are ready, and stores the
/// [`Executor::output_id`] of each result so that a later build can [`Executor::load`] it.
///
/// Every method may be called from several threads at once. [`Executor::execute`] runs on a
/// thread of its own, so it may block (run a process, download); CPU-heavy work inside it
/// should go to rayon.
pub trait Executor: Send + Sync {
    /// An op's result, e.g. a snapshot handle. Cloned into every op that reads it.
    type Output: Clone + Send + Sync;
    /// Why an op failed; reported with the op's Dockerfile location.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Data from outside the definition that the op's result depends on: checksums of the files
    /// an op reads (the build context, a `COPY --from` selection), a resolved image digest.
    /// Called once the op's inputs are available, before the cache lookup. Work that may wait
    /// (asking a remote whether a URL changed) should return, with any error, once `cancel`
    /// is cancelled.
    fn cache_key_extra(
        &self,
        op: &Op,
        inputs: &Inputs<Self::Output>,
        cancel: &CancelToken,
    ) -> Result<CacheKeyExtra, Self::Error> {
        let _ = (op, inputs, cancel);
        Ok(CacheKeyExtra::default())
    }

    /// Performs `op` on its inputs. Should return promptly with an error once
    /// `ctx.cancel_token()` is cancelled, killing any process it started.
    fn execute(
        &self,
        op: &Op,
        inputs: &Inputs<Self::Output>,
        ctx: &ExecContext<'_>,
    ) -> Result<Self::Output, Self::Error>;

    /// A stable string naming `output` (e.g. a snapshot id), stored in the cache database.
    fn output_id(&self, output: &Self::Output) -> String;

    /// Bytes the output takes on disk, if known; recorded for `img du`.
    fn output_size(&self, output: &Self::Output) -> Option<u64> {
        let _ = output;
        None
    }

    /// Reopens an output recorded by an earlier build. `Ok(None)` means it no longer exists
    /// (pruned); the solver then drops the record and executes the op again.
    fn load(&self, id: &str) -> Result<Option<Self::Output>, Self::Error>;

    /// A result for `key` from a cache shared between machines (`--cache-from`), asked on a
    /// local cache miss before the op runs. `Ok(None)`: not there (the default: no such
    /// cache). A hit is recorded in the local cache like an executed result.
    fn load_remote(&self, key: &CacheKey) -> Result<Option<Self::Output>, Self::Error> {
        let _ = key;
        Ok(None)
    }
}

/// The outputs an op reads, in the order of [`Op::inputs`].
#[derive(Debug)]
pub struct Inputs<O> {
    entries: Vec<(OpRef, O)>,
}

impl<O> Inputs<O> {
    pub(crate) fn new(entries: Vec<(OpRef, O)>) -> Self {
        Inputs { entries }
    }

    /// The output behind `input`, one of the op's input references.
    pub fn get(&self, input: &OpRef) -> Option<&O> {
        self.entries
            .iter()
            .find(|(r, _)| r == input)
            .map(|(_, output)| output)
    }

    /// The `index`-th input, counting as [`Op::inputs`] does.
    pub fn by_index(&self, index: usize) -> Option<&O> {
        self.entries.get(index).map(|(_, output)| output)
    }

    /// Input references with their outputs, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&OpRef, &O)> {
        self.entries.iter().map(|(r, o)| (r, o))
    }

    /// Number of input references.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the op has no inputs.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// What an executor adds to an op's cache key besides the op itself.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct CacheKeyExtra {
    /// Inputs whose cache key is replaced by a checksum of the content the op reads from them.
    /// `COPY a.txt` from the context then depends on `a.txt` alone, not on the whole context:
    /// editing another file leaves its cache key unchanged.
    pub content: BTreeMap<OpRef, Digest>,
    /// The per-path listings behind some of those checksums: not part of the key, they let a
    /// miss name the files that changed.
    pub listings: BTreeMap<OpRef, TreeListing>,
    /// Any other data the result depends on (e.g. the digest an image tag resolved to).
    pub salt: Option<String>,
}

impl CacheKeyExtra {
    /// Nothing extra.
    pub fn new() -> Self {
        CacheKeyExtra::default()
    }

    /// Keys `input` by the checksum of what the op reads from it instead of by its cache key.
    pub fn with_content(mut self, input: OpRef, checksum: Digest) -> Self {
        self.content.insert(input, checksum);
        self
    }

    /// Keys `input` by the checksum of the tree the op reads from it, keeping the tree's
    /// listing so that a miss can name the paths that changed.
    pub fn with_tree(mut self, input: OpRef, tree: &TreeChecksum) -> Self {
        self.content.insert(input, tree.digest);
        if !tree.listing.is_empty() {
            self.listings.insert(input, tree.listing.clone());
        }
        self
    }

    /// Adds other data the result depends on.
    pub fn with_salt(mut self, salt: impl Into<String>) -> Self {
        self.salt = Some(salt.into());
        self
    }
}

/// What a running op may use: its identity, the cancel token, and the log.
pub struct ExecContext<'a> {
    op: Digest,
    key: CacheKey,
    metadata: &'a OpMetadata,
    cancel: &'a CancelToken,
    progress: &'a dyn ProgressSink,
    tail: Mutex<LogTail>,
}

impl std::fmt::Debug for ExecContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecContext")
            .field("op", &self.op)
            .field("description", &self.metadata.description)
            .finish_non_exhaustive()
    }
}

impl<'a> ExecContext<'a> {
    pub(crate) fn new(
        op: Digest,
        key: CacheKey,
        metadata: &'a OpMetadata,
        cancel: &'a CancelToken,
        progress: &'a dyn ProgressSink,
        tail_lines: usize,
    ) -> Self {
        ExecContext {
            op,
            key,
            metadata,
            cancel,
            progress,
            tail: Mutex::new(LogTail::new(tail_lines)),
        }
    }

    /// The digest of the op being run.
    pub fn op(&self) -> Digest {
        self.op
    }

    /// The cache key the result will be recorded under; lets an executor name what it stores
    /// after it, so processes building the same step at once can find each other's results.
    pub fn cache_key(&self) -> CacheKey {
        self.key
    }

    /// The op's description and Dockerfile location.
    pub fn metadata(&self) -> &OpMetadata {
        self.metadata
    }

    /// Cancelled when the build fails elsewhere or the user interrupts it.
    pub fn cancel_token(&self) -> &CancelToken {
        self.cancel
    }

    /// Shorthand for `cancel_token().is_cancelled()`.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Reports process output: emitted as a progress event and kept for the error report.
    pub fn log(&self, stream: LogStream, data: &[u8]) {
        let text = String::from_utf8_lossy(data).into_owned();
        self.tail
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(&text);
        self.progress.emit(ProgressEvent::Log {
            op: self.op,
            stream,
            data: text,
            at: SystemTime::now(),
        });
    }

    pub(crate) fn take_tail(&self) -> Vec<String> {
        self.tail.lock().unwrap_or_else(|e| e.into_inner()).lines()
    }
}

/// The last lines of an op's output, shown when it fails.
struct LogTail {
    limit: usize,
    lines: VecDeque<String>,
    partial: String,
}

impl LogTail {
    fn new(limit: usize) -> Self {
        LogTail {
            limit,
            lines: VecDeque::new(),
            partial: String::new(),
        }
    }

    fn push(&mut self, text: &str) {
        self.partial.push_str(text);
        while let Some(end) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=end).collect();
            self.lines
                .push_back(line.trim_end_matches(['\n', '\r']).to_owned());
            if self.lines.len() > self.limit {
                self.lines.pop_front();
            }
        }
    }

    fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.lines.iter().cloned().collect();
        if !self.partial.is_empty() {
            lines.push(self.partial.clone());
            if lines.len() > self.limit {
                lines.remove(0);
            }
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::LogTail;

    #[test]
    fn tail_keeps_last_lines_across_chunk_boundaries() {
        let mut tail = LogTail::new(2);
        tail.push("one\ntw");
        tail.push("o\nthree\nfou");
        assert_eq!(tail.lines(), vec!["three".to_owned(), "fou".to_owned()]);
        tail.push("r\n");
        assert_eq!(tail.lines(), vec!["three".to_owned(), "four".to_owned()]);
    }
}
