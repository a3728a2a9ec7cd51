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
//! else. Metadata (descriptions, Dockerfile lines) never enters a key.
//!
//! Scheduling is described on [`Solver`]'s module: each op runs on a thread of its own, never
//! on rayon's CPU-sized pool, with `--jobs` bounding concurrent exec ops.
//!
//! Two parts of the crate are not generic, and the scheduler does not depend on them:
//!
//! * [`Worker`], the real [`Executor`]: every op's result is a committed snapshot of
//!   `img-snapshot` (or, for the build context, the client's directory itself); RUN steps run
//!   in `img-sandbox`; base images come from the local image store or are pulled with
//!   `img-registry`.
//! * the exporter ([`export_image`] and the writers beside it): a solved build's snapshots
//!   become an OCI image in the content store, then an image name, an archive, a root
//!   filesystem or a push.
//!
//! `img build` in short:
//!
//! ```text
//! let worker = Worker::new(store, &snapshotter, WorkerOptions { locals, secrets, .. })?;
//! let solver = Solver::new(worker, CacheDb::open(state.root().join("cache.db"))?);
//! let solved = solver.solve(&lowered.definition, &SolveOptions::default(), &progress)?;
//! let request = ImageRequest { base, layers, config };   // from the lowered build's target
//! let image = export_image(solver.executor(), &request, &ImageExportOptions::new())?;
//! store_image(&store, &image, &["app:latest".into()])?;
//! ```
//!
//! `DESIGN.md` beside this crate explains the worker's and exporter's choices.
#![deny(missing_docs)]

mod cache;
mod cancel;
mod checksum;
mod error;
mod executor;
mod export;
mod key;
mod progress;
mod scheduler;
mod worker;

pub use cache::{CacheDb, CacheError, CacheRecord};
pub use cancel::CancelToken;
pub use checksum::{
    checksum_tree, ChecksumError, ChecksumOptions, PathFilter, SelectAll, TreeChecksum,
};
pub use error::{Error, ExecutorError, OpLabel, SolveError};
pub use executor::{CacheKeyExtra, ExecContext, Executor, Inputs};
pub use export::{
    export_image, push_image, store_image, write_docker_archive, write_oci_archive,
    write_rootfs_dir, write_rootfs_tar, ExportError, ExportedImage, ExportedLayer,
    ImageExportOptions, ImageRequest, LayerSource,
};
pub use key::CacheKey;
pub use progress::{ChannelSink, LogStream, NoProgress, ProgressEvent, ProgressSink};
pub use scheduler::{SolveOptions, Solved, Solver};
pub use worker::{
    BaseImage, ContextFilterFactory, GlobContextFilter, LocalBlobs, LocalDirs, SecretSource,
    SecretStore, Worker, WorkerError, WorkerOptions, WorkerRef,
};
