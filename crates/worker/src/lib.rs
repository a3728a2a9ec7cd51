//! The real executor and the exporters of img's solver.
//!
//! Pipeline position: `img-solver` schedules a build graph and asks an
//! [`Executor`](img_solver::Executor) to perform each op; this crate is that executor for real
//! builds, and turns the solved result into images. It is where the lower crates meet:
//!
//! * [`Worker`]: every op's result is a committed snapshot of `img-snapshot` (or, for the
//!   build context, the client's directory itself); RUN steps run in `img-sandbox`; base images
//!   come from the local image store or are pulled with `img-registry`.
//! * the exporter ([`export_image`] and the writers beside it): a solved build's snapshots
//!   become an OCI image in the content store, then an image name, an archive, a root
//!   filesystem or a push.
//!
//! The split mirrors BuildKit's `solver/` and `worker/`: a project that wants only the
//! parallel solver and its persistent cache depends on `img-solver` alone.
//!
//! `img build` in short:
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use img_llb::{CopyAction, DefinitionBuilder, FileOp, LocalSource, OpMetadata, SourceOp};
//! use img_sandbox::{HostPaths, IdMapping};
//! use img_snapshot::{BackendChoice, StateDir, Store};
//! use img_solver::{CacheDb, NoProgress, SolveOptions, Solver};
//! use img_worker::{
//!     export_image, store_image, ImageExportOptions, ImageRequest, LayerSource, LocalDirs,
//!     Worker, WorkerOptions,
//! };
//!
//! // `FROM scratch` + `COPY . /app/`, as the frontend would lower it.
//! let mut graph = DefinitionBuilder::new();
//! let context = graph.add(SourceOp::Local(LocalSource::new("context")), OpMetadata::default())?;
//! let copy = FileOp::new(None).with_action(CopyAction::new(context, vec!["/".into()], "/app/"));
//! let copy = graph.add(copy, OpMetadata::described("COPY . /app/"))?;
//! let definition = graph.build(copy)?;
//!
//! let state = StateDir::at("/tmp/img-state");
//! let store = Store::open(&state)?;
//! let snapshotter = store.snapshotter(BackendChoice::Auto)?;
//! let mut options = WorkerOptions::new(IdMapping::detect(&HostPaths::default())?);
//! options.locals = LocalDirs::new().with("context", "/src/app");
//! let worker = Worker::new(store.clone(), &snapshotter, options)?;
//! let solver = Solver::new(worker, CacheDb::open(state.root().join("cache.db"))?);
//! let solved = solver.solve(&definition, &SolveOptions::default(), &NoProgress)?;
//!
//! let request = ImageRequest {
//!     base: None,
//!     layers: vec![LayerSource { output: solved.outputs[&copy.digest].clone(), history_index: Some(0) }],
//!     config: serde_json::json!({"architecture": "amd64", "os": "linux",
//!                                "history": [{"created_by": "COPY . /app/"}]}),
//! };
//! let image = export_image(solver.executor(), &request, &ImageExportOptions::new())?;
//! store_image(&store, &image, &["app:latest".to_string()])?;
//! # Ok(())
//! # }
//! ```
//!
//! `DESIGN.md` beside this crate explains the worker's and exporter's choices.
#![deny(missing_docs)]

mod export;
mod worker;

pub use export::{
    export_image, export_index, push_image, store_image, store_index, with_rootfs_view,
    write_docker_archive, write_oci_archive, write_oci_index_archive, write_platforms_rootfs_tar,
    write_rootfs_dir, write_rootfs_tar, ArchiveOutput, AttachedManifest, ExportCallback,
    ExportError, ExportEvent, ExportedImage, ExportedIndex, ExportedLayer, ImageExportOptions,
    ImageRequest, IndexAnnotations, LayerSource, MediaTypes, OciName, DOCKER_CONFIG,
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST,
};
pub use worker::remote_cache::{cache_mount_ids, BuiltCache, CacheExportOptions, CacheMode};
pub use worker::root::{dir_in_root, read_file_in_root};
pub use worker::{
    BaseImage, ContextFilterFactory, DownloadTimeouts, GlobContextFilter, LazyBlobs, LazyStats,
    LocalBlobs, LocalDirs, SecretSource, SecretStore, Worker, WorkerError, WorkerOptions,
    WorkerRef,
};
