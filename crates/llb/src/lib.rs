//! The build graph of img: the intermediate representation between a frontend and the solver.
//!
//! Pipeline position: `frontend-dockerfile` produces a DAG of ops here (source, exec, file,
//! merge, diff), and `solver` runs it. Every op is identified by the sha256 of its canonical
//! serialization, which includes the digests of its inputs, so equal work has an equal name no
//! matter which stage or build produced it.
//!
//! The crate is plain data: it knows nothing of filesystems, processes or caches. Build a graph
//! with [`DefinitionBuilder`], adding inputs before the ops that use them:
//!
//! ```
//! use img_llb::{DefinitionBuilder, ExecOp, ImageSource, OpMetadata, Platform, SourceOp};
//!
//! let mut graph = DefinitionBuilder::new();
//! let base = graph.add(
//!     SourceOp::Image(ImageSource {
//!         reference: "docker.io/library/alpine:3.20".into(),
//!         platform: Platform::new("linux", "amd64"),
//!     }),
//!     OpMetadata::described("[1/2] FROM alpine:3.20"),
//! )?;
//! let run = graph.add(
//!     ExecOp::new(Some(base), vec!["/bin/sh".into(), "-c".into(), "make".into()]),
//!     OpMetadata::described("[2/2] RUN make"),
//! )?;
//! let definition = graph.build(run)?;
//! assert_eq!(definition.len(), 2);
//! println!("{}", definition.to_dot());
//! # Ok::<(), img_llb::DefinitionError>(())
//! ```
//!
//! Image configuration (env, entrypoint, labels) is not part of this graph: the frontend
//! produces it separately; the graph describes filesystems only.
#![deny(missing_docs)]

mod canonical;
mod chmod;
mod definition;
mod digest;
mod dot;
mod exec;
mod file;
mod op;
mod pattern;
mod platform;
mod source;

pub use chmod::{Chmod, SymbolicClause, SymbolicOp, SymbolicPerms};
pub use definition::{Definition, DefinitionBuilder, DefinitionError, OpMetadata, SourceLocation};
pub use digest::{Digest, DigestError};
pub use exec::{
    CacheSharing, ExecOp, HostEntry, Mount, MountKind, NetworkMode, SecurityMode, Ulimit,
};
pub use file::{
    CopyAction, FileAction, FileOp, IdOrName, MkdirAction, MkfileAction, Owner, RmAction,
    SymlinkAction,
};
pub use op::{DiffOp, MergeOp, Op, OpRef};
pub use pattern::{PathPattern, PatternError};
pub use platform::{Platform, PlatformError};
pub use source::{GitSource, HttpSource, ImageSource, LocalSource, SourceOp};

/// Any error of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A malformed digest.
    #[error(transparent)]
    Digest(#[from] DigestError),
    /// An invalid definition.
    #[error(transparent)]
    Definition(#[from] DefinitionError),
}
