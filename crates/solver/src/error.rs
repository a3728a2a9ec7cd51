//! The solver's error: which op failed, where it came from in the Dockerfile, and why.

use std::fmt;

use img_llb::{Digest, SourceLocation};

use crate::{CacheError, ChecksumError};

/// The error an [`crate::Executor`] returned, boxed so one solver error type fits every
/// executor; downcast it to the executor's own type for details such as an exit code.
pub type ExecutorError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Which op an error is about, shown as `Dockerfile:12: RUN make` or, for ops without a
/// location, by description and short digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpLabel {
    /// The op's digest.
    pub op: Digest,
    /// Its description, e.g. `[build 2/4] RUN make`.
    pub description: String,
    /// Its Dockerfile location.
    pub location: Option<SourceLocation>,
}

impl fmt::Display for OpLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(location) => write!(f, "{location}: `{}`", location.text),
            None if !self.description.is_empty() => {
                write!(f, "`{}` ({})", self.description, self.op.short())
            }
            None => write!(f, "op {}", self.op),
        }
    }
}

/// Why a solve did not produce a result.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SolveError {
    /// An op failed while executing. `log_tail` holds the last lines it printed.
    #[error("{label} failed")]
    OpFailed {
        /// The op.
        label: Box<OpLabel>,
        /// The last lines of the op's output, oldest first.
        log_tail: Vec<String>,
        /// The executor's error (for a process: its exit code).
        #[source]
        source: ExecutorError,
    },
    /// The executor could not compute an op's cache key (e.g. a context file is unreadable).
    #[error("{label}: cannot compute the cache key")]
    CacheKey {
        /// The op.
        label: Box<OpLabel>,
        /// The executor's error.
        #[source]
        source: ExecutorError,
    },
    /// The executor could not reopen a cached result.
    #[error("{label}: cannot load cached result {output_id}")]
    Load {
        /// The op.
        label: Box<OpLabel>,
        /// The stored output id.
        output_id: String,
        /// The executor's error.
        #[source]
        source: ExecutorError,
    },
    /// The executor panicked while handling an op.
    #[error("{label}: the executor panicked; this is a bug in img")]
    Panicked {
        /// The op.
        label: Box<OpLabel>,
    },
    /// The cache database failed.
    #[error("{label}: build cache error")]
    Cache {
        /// The op being looked up or recorded.
        label: Box<OpLabel>,
        /// The database error.
        #[source]
        source: CacheError,
    },
    /// The build was cancelled (e.g. by Ctrl-C) before it finished.
    #[error("build cancelled")]
    Cancelled,
}

impl SolveError {
    /// The op the error is about, if it is about one.
    pub fn label(&self) -> Option<&OpLabel> {
        match self {
            SolveError::OpFailed { label, .. }
            | SolveError::CacheKey { label, .. }
            | SolveError::Load { label, .. }
            | SolveError::Panicked { label }
            | SolveError::Cache { label, .. } => Some(label),
            SolveError::Cancelled => None,
        }
    }
}

/// Errors of this crate that are not about a particular solve.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The cache database failed.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// Checksumming a tree failed.
    #[error(transparent)]
    Checksum(#[from] ChecksumError),
    /// A solve failed.
    #[error(transparent)]
    Solve(#[from] SolveError),
}

/// An error and its causes on one line, `outer: cause: root cause`, for messages that are
/// text rather than typed errors (progress events, warnings).
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(next) = cause {
        text.push_str(": ");
        text.push_str(&next.to_string());
        cause = next.source();
    }
    text
}
