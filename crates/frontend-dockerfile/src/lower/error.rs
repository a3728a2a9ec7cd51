//! Why a build plan cannot be lowered to a build graph.

use img_llb::{DefinitionError, DigestError};

use crate::instructions::Location;

/// A planned instruction the build graph cannot express, or a graph that does not assemble.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LowerError {
    /// `--chmod` whose value was never parsed (the plan always parses it).
    #[error("{location}: --chmod={value} is not a valid mode; use an octal mode such as 0755 or a symbolic one such as u+x (in `{}`)", location.original)]
    InvalidChmod {
        /// The instruction.
        location: Box<Location>,
        /// The value given.
        value: String,
    },
    /// `--chown` with an empty user part.
    #[error("{location}: --chown={value} names no user; write user[:group], such as 1000:1000 or app (in `{}`)", location.original)]
    InvalidChown {
        /// The instruction.
        location: Box<Location>,
        /// The value given.
        value: String,
    },
    /// `ADD --checksum` that is not a sha256 digest.
    #[error("{location}: --checksum={value} is not a sha256 digest; write sha256: followed by 64 hex digits (in `{}`)", location.original)]
    InvalidChecksum {
        /// The instruction.
        location: Box<Location>,
        /// The value given.
        value: String,
        /// Why the digest is malformed.
        #[source]
        source: DigestError,
    },
    /// `ADD --checksum` on a local file: only downloads are verified.
    #[error("{location}: checksum requires an HTTP(S) source, but {source_path:?} is a local path; remove --checksum (in `{}`)", location.original)]
    ChecksumNeedsUrl {
        /// The instruction.
        location: Box<Location>,
        /// The local source.
        source_path: String,
    },
    /// A git URL as a COPY source: only ADD clones repositories.
    #[error("{location}: source can't be a git ref for COPY: {url:?}; use ADD to add a repository (in `{}`)", location.original)]
    GitSourceInCopy {
        /// The instruction.
        location: Box<Location>,
        /// The git reference.
        url: String,
    },
    /// A git reference the graph cannot express (a bad query, or a pinned checksum).
    #[error("{location}: git source {url:?}: {reason} (in `{}`)", location.original)]
    GitReference {
        /// The instruction.
        location: Box<Location>,
        /// The git reference as written.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The plan names a stage it does not contain (a plan from [`crate::plan`] never does).
    #[error("{location}: the build plan uses stage {index}, which it does not contain (in `{}`)", location.original)]
    MissingStage {
        /// The instruction that uses it.
        location: Box<Location>,
        /// The stage index.
        index: usize,
    },
    /// A RUN mount with `from` has no resolved source in the plan.
    #[error("{location}: mount from {from:?} has no resolved source in the build plan (in `{}`)", location.original)]
    MissingMountSource {
        /// The RUN instruction.
        location: Box<Location>,
        /// The `from` value.
        from: String,
    },
    /// The ops do not form a valid graph.
    #[error("the lowered build graph is invalid")]
    Graph(#[from] DefinitionError),
}
