//! Runs a build graph.
//!
//! Pipeline position: takes the DAG from `llb` and executes it, op by op, as soon as each op's
//! inputs are ready, so independent stages run in parallel. It computes cache keys, keeps the
//! persistent cache in the state directory and emits progress events for the CLI to display.
//!
//! The solver knows nothing about containers or filesystems: an [`Executor`] supplies each
//! op's extra cache-key material ([`CacheKeyExtra`]), performs ops, and names results with a
//! stable id that the [`CacheDb`] records and a later process can [`Executor::load`].
//!
//! Cache keys ([`CacheKey`]) are the op's definition with every input digest replaced by the
//! input's cache key, or, where the executor supplies one, by a checksum of just the content
//! the op reads from that input ([`checksum_tree`]). Editing one file of the build context
//! thus changes the keys of the steps that copy it and of everything after them, and nothing
//! else. Metadata (descriptions, Dockerfile lines) never enters a key. A tree that never
//! changes (a committed snapshot) is checksummed once per selection
//! ([`checksum_immutable_tree`]).
//!
//! A key is one digest: it says that something changed, not what. So on every miss the solver
//! also records what the key was made of under the op's Dockerfile location, and when that
//! location misses again it compares the two and reports what changed
//! ([`ProgressEvent::CacheMiss`], [`CacheChange`]): the files, a build arg, the base image
//! digest, the instruction, the step it builds on. A cache hit does none of this.
//!
//! Scheduling is described on [`Solver`]'s module: each op runs on a thread of its own, never
//! on rayon's CPU-sized pool, with `--jobs` bounding concurrent exec ops.
//!
//! The real executor, which performs ops on snapshots and runs RUN steps in a sandbox, and the
//! exporters live in `img-worker`; this crate depends on `img-llb` alone and is tested with
//! fake ops that count how often they ran.
//!
//! Running a graph with an executor of your own:
//!
//! ```
//! use img_llb::{DefinitionBuilder, OpMetadata, Op, SourceOp, LocalSource};
//! use img_solver::{CacheDb, ExecContext, Executor, Inputs, NoProgress, SolveOptions, Solver};
//!
//! /// An executor whose results are the op descriptions it ran.
//! struct Describe;
//!
//! impl Executor for Describe {
//!     type Output = String;
//!     type Error = std::io::Error;
//!
//!     fn execute(&self, op: &Op, _inputs: &Inputs<String>, _ctx: &ExecContext<'_>)
//!         -> Result<String, std::io::Error> {
//!         Ok(format!("{op:?}"))
//!     }
//!
//!     fn output_id(&self, output: &String) -> String { output.clone() }
//!
//!     fn load(&self, id: &str) -> Result<Option<String>, std::io::Error> { Ok(Some(id.into())) }
//! }
//!
//! let mut graph = DefinitionBuilder::new();
//! let context = graph.add(SourceOp::Local(LocalSource::new("context")), OpMetadata::default())?;
//! let definition = graph.build(context)?;
//!
//! let dir = tempfile::tempdir()?;
//! let solver = Solver::new(Describe, CacheDb::open(dir.path().join("cache.db"))?);
//! let solved = solver.solve(&definition, &SolveOptions::default(), &NoProgress)?;
//! assert!(solved.outputs[&context.digest].contains("context"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod cache;
mod cancel;
mod checksum;
mod error;
mod executor;
mod explain;
mod history;
mod key;
mod progress;
mod scheduler;

pub use cache::{CacheDb, CacheError, CacheRecord, FileStamp, StampedChecksum};
pub use cancel::CancelToken;
pub use checksum::{
    checksum_immutable_tree, checksum_tree, ChecksumError, ChecksumOptions, PathFilter, SelectAll,
    TreeChecksum, TreeListing,
};
pub use error::{error_chain, Error, ExecutorError, OpLabel, SolveError};
pub use executor::{CacheKeyExtra, ExecContext, Executor, Inputs};
pub use explain::{CacheChange, ChangeKind, PathChange};
pub use key::CacheKey;
pub use progress::{ChannelSink, LogStream, NoProgress, ProgressEvent, ProgressSink};
pub use scheduler::{SolveOptions, Solved, Solver};
