//! The build's shared caches: `--cache-from` read before the solve (a missing or broken one is
//! a warning, and the build goes on without it), `--cache-to` written after the export, each
//! shown as a step of the build's display with its sizes.
//!
//! Hits are lazy (see `img_worker`): the solve downloads only what the steps that run need,
//! then [`solve`] prepares what the outputs need (the final files for a local or tar output,
//! the layer blobs for an archive or the image store, nothing for a push). A cache layer
//! refused on the way (a corrupt or missing blob) is a warning and the build solves again,
//! running the steps whose cached results used it. What was downloaded lazily is reported
//! as the "importing cache layers" step, after the solve and again after the exports.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use img_llb::Definition;
use img_registry::Client;
use img_remote_cache::{CacheBackend, CacheConfig, LayoutCache, RegistryCache};
use img_snapshot::Compression;
use img_solver::{SolveError, SolveOptions, Solved, Solver};
use img_worker::{CacheExportOptions, CacheMode, LazyStats, Worker, WorkerError, WorkerRef};

use super::cache_spec::{CacheFromSpec, CacheTarget, CacheToSpec};
use super::export_step::ExportStep;
use super::output::OutputSpec;
use super::Exported;
use crate::progress::Display;

/// Sizes as people read them.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "kB", "MB", "GB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

fn from_backend(spec: &CacheFromSpec, client: &Arc<Client>) -> Arc<dyn CacheBackend> {
    match spec {
        CacheFromSpec::Registry(reference) => {
            Arc::new(RegistryCache::new(client.clone(), reference.clone()))
        }
        CacheFromSpec::Local { dir, tag } => Arc::new(LayoutCache::new(dir, tag.as_deref())),
    }
}

/// Reads every `--cache-from` into the worker, then restores the cache mounts the build uses
/// from them; returns the warnings for what could not be read.
pub fn import(
    worker: &Worker,
    specs: &[CacheFromSpec],
    client: &Arc<Client>,
    definition: &img_llb::Definition,
    display: &Display,
) -> Vec<String> {
    let mut warnings = Vec::new();
    for spec in specs {
        let backend = from_backend(spec, client);
        let location = backend.location();
        let step = ExportStep::start(
            display.solver_sink(),
            &format!("importing cache manifest from {location}"),
        );
        let started = Instant::now();
        match worker.import_cache(backend) {
            Ok(records) => {
                step.line(&format!("{records} cached results"));
                step.done("reading cache metadata", started);
            }
            Err(err) => {
                let warning = format!(
                    "cannot import cache from {location}, building without it: {:#}",
                    anyhow::Error::new(err)
                );
                step.line(&format!("warning: {warning}"));
                warnings.push(warning);
            }
        }
        step.finish();
    }
    if !specs.is_empty() {
        let restored = worker.restore_cache_mounts(definition);
        if !restored.is_empty() {
            let step = ExportStep::start(display.solver_sink(), "restoring cache mounts");
            for (id, size) in restored {
                step.line(&format!("cache mount {id:?}: {}", human(size)));
            }
            step.finish();
        }
    }
    warnings
}

/// What the outputs need of the build's final results before they are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputNeeds {
    /// Their files (a local directory or a tar of the root filesystem): unpacked.
    Files,
    /// Their layer blobs (an OCI or docker archive, the image store): downloaded, not
    /// unpacked.
    Blobs,
    /// Nothing (pushes only): a registry that has the layers, or can mount them from the
    /// cache's repository, needs none of them here.
    Nothing,
}

/// Why [`solve`] failed.
pub enum SolveFailure {
    /// A step failed.
    Solve(SolveError),
    /// The outputs' files or blobs could not be had.
    Outputs(anyhow::Error),
}

/// How many times a build solves again after refusing a cache layer; each round refuses at
/// least one more layer, so this only bounds a cache full of broken layers.
const MAX_SOLVES: usize = 8;

/// Solves `definition`, then makes what `needs` says of `roots` (the final results) present.
/// A cache layer refused on the way is said in the warnings and the build solves again
/// without the results that used it (those steps run instead).
pub fn solve(
    solver: &Solver<Worker>,
    definition: &Definition,
    options: &SolveOptions,
    display: &Display,
    roots: &dyn Fn(&Solved<WorkerRef>) -> Vec<WorkerRef>,
    needs: OutputNeeds,
) -> Result<Solved<WorkerRef>, SolveFailure> {
    let worker = solver.executor();
    let mut round = 1;
    loop {
        if round > 1 {
            let step = ExportStep::start(display.solver_sink(), "importing cache layers");
            step.line("a cache layer was refused (see the warnings): solving again, the steps that used it run");
            step.finish();
        }
        let solved = solver.solve(definition, options, &display.solver_sink());
        let prepared = match solved {
            Ok(solved) => prepare_outputs(worker, &roots(&solved), needs).map(|()| solved),
            Err(err) if worker.take_refused() && round < MAX_SOLVES => {
                round += 1;
                drop(err);
                continue;
            }
            Err(err) => return Err(SolveFailure::Solve(err)),
        };
        match prepared {
            Ok(solved) => return Ok(solved),
            Err(_) if worker.take_refused() && round < MAX_SOLVES => round += 1,
            Err(err) => {
                return Err(SolveFailure::Outputs(
                    anyhow::Error::new(err).context("cannot prepare the build's outputs"),
                ))
            }
        }
    }
}

fn prepare_outputs(
    worker: &Worker,
    roots: &[WorkerRef],
    needs: OutputNeeds,
) -> Result<(), WorkerError> {
    for root in roots {
        match needs {
            OutputNeeds::Files => worker.unpack(root)?,
            OutputNeeds::Blobs => worker.fetch_chain_blobs(root)?,
            OutputNeeds::Nothing => {}
        }
    }
    Ok(())
}

/// What the cache hits downloaded and unpacked since `before`, as a step with its sizes;
/// returns the totals now. Nothing is shown when nothing happened after the first report.
pub fn report_downloads(
    worker: &Worker,
    specs: &[CacheFromSpec],
    display: &Display,
    before: Option<LazyStats>,
) -> LazyStats {
    let now = worker.lazy_stats();
    if specs.is_empty() || before == Some(now) {
        return now;
    }
    let base = before.unwrap_or_default();
    let step = ExportStep::start(display.solver_sink(), "importing cache layers");
    step.line(&format!(
        "{} layers downloaded and verified, {}; {} layers unpacked",
        now.downloaded - base.downloaded,
        human(now.downloaded_bytes - base.downloaded_bytes),
        now.unpacked - base.unpacked,
    ));
    step.finish();
    now
}

/// Repositories an image push may mount the build's layers from: the imported caches' and
/// the base images'.
pub fn mount_sources(worker: &Worker) -> Vec<img_registry::Reference> {
    let mut references = worker.imported_cache_references();
    references.extend(worker.base_image_references());
    references
        .iter()
        .filter_map(|r| img_registry::Reference::parse(r).ok())
        .collect()
}

/// How the image's layers are written: a cache written the same way names the same blobs.
#[derive(Debug, Clone, Copy)]
pub struct LayerFormat {
    /// The compression.
    pub compression: Compression,
    /// The compression level (`None`: the compression's default).
    pub level: Option<u32>,
    /// `SOURCE_DATE_EPOCH`, which clamps the layers' file times.
    pub source_date_epoch: Option<i64>,
}

/// The inline cache for the image's config when a `--cache-to type=inline` asks for one.
pub fn inline_config(
    worker: &Worker,
    specs: &[CacheToSpec],
    definition: &img_llb::Definition,
    solved: &Solved<WorkerRef>,
    format: LayerFormat,
) -> anyhow::Result<Option<CacheConfig>> {
    if !specs.iter().any(|s| s.target == CacheTarget::Inline) {
        return Ok(None);
    }
    let mut options = CacheExportOptions::default();
    options.mode = CacheMode::Min;
    options.compression = format.compression;
    options.level = format.level;
    options.source_date_epoch = format.source_date_epoch;
    options.skip_empty_layers = true;
    let built = worker
        .build_cache(definition, solved, &options)
        .context("cannot build the inline cache metadata")?;
    Ok(Some(built.config))
}

/// Writes every `--cache-to` but inline ones; a failure fails the build unless the spec says
/// `ignore-error=true`, when it is returned as a warning.
#[allow(clippy::too_many_arguments)]
pub fn export(
    worker: &Worker,
    specs: &[CacheToSpec],
    client: &Arc<Client>,
    definition: &img_llb::Definition,
    solved: &Solved<WorkerRef>,
    format: LayerFormat,
    display: &Display,
) -> anyhow::Result<Vec<String>> {
    let mut warnings = Vec::new();
    for spec in specs {
        let backend: Arc<dyn CacheBackend> = match &spec.target {
            CacheTarget::Inline => continue,
            CacheTarget::Registry(reference) => {
                // Layers may be mounted from the repositories the base images and the imported
                // caches came from.
                let mount_from = mount_sources(worker);
                Arc::new(
                    RegistryCache::new(client.clone(), reference.clone())
                        .with_mount_from(mount_from),
                )
            }
            CacheTarget::Local { dir, tag } => Arc::new(LayoutCache::new(dir, tag.as_deref())),
        };
        let location = backend.location();
        let step = ExportStep::start(
            display.solver_sink(),
            &format!("exporting cache to {location}"),
        );
        let result = export_one(
            worker,
            spec,
            backend.as_ref(),
            definition,
            solved,
            format,
            &step,
        );
        match result {
            Ok(mut more) => {
                step.finish();
                warnings.append(&mut more);
            }
            Err(err) if spec.ignore_error => {
                let warning = format!("cannot export cache to {location} (ignored): {err:#}");
                step.line(&format!("warning: {warning}"));
                step.finish();
                warnings.push(warning);
            }
            Err(err) => {
                step.fail(&err);
                return Err(err.context(format!("cannot export the cache to {location}")));
            }
        }
    }
    Ok(warnings)
}

#[allow(clippy::too_many_arguments)]
fn export_one(
    worker: &Worker,
    spec: &CacheToSpec,
    backend: &dyn CacheBackend,
    definition: &img_llb::Definition,
    solved: &Solved<WorkerRef>,
    format: LayerFormat,
    step: &ExportStep,
) -> anyhow::Result<Vec<String>> {
    let started = Instant::now();
    let mut options = CacheExportOptions::default();
    options.mode = spec.mode;
    options.compression = spec.compression.unwrap_or(format.compression);
    // The image's level goes with the image's compression only.
    let image_level = (options.compression == format.compression)
        .then_some(format.level)
        .flatten();
    options.level =
        super::output::check_level(options.compression, spec.compression_level.or(image_level))?;
    options.source_date_epoch = format.source_date_epoch;
    options.cache_mounts = spec.cache_mounts;
    options.cache_mounts_max_size = spec.cache_mounts_max_size;
    let built = worker.build_cache(definition, solved, &options)?;
    step.done("preparing layers", started);
    for (id, size) in &built.cache_mounts {
        step.line(&format!("cache mount {id:?}: {}", human(*size)));
    }
    for warning in &built.warnings {
        step.line(&format!("warning: {warning}"));
    }
    let started = Instant::now();
    let report = worker.export_cache(backend, &built.config)?;
    step.line(&format!(
        "{} records, {} layers, {}",
        built.config.records.len(),
        report.layers,
        human(report.size)
    ));
    step.done(
        &format!("writing cache manifest {}", report.manifest),
        started,
    );
    Ok(built.warnings)
}

/// What the outputs need of the final results: files for the root filesystem outputs, blobs
/// for archives and the image store, nothing for pushes.
pub fn output_needs(outputs: &[OutputSpec]) -> OutputNeeds {
    let mut needs = OutputNeeds::Nothing;
    for output in outputs {
        match output {
            OutputSpec::Tar { .. } | OutputSpec::Local { .. } => return OutputNeeds::Files,
            OutputSpec::Oci { .. }
            | OutputSpec::Docker { .. }
            | OutputSpec::Image { push: false, .. } => needs = OutputNeeds::Blobs,
            OutputSpec::Image { push: true, .. } | OutputSpec::Registry { .. } => {}
        }
    }
    needs
}

/// The layer blobs of every image of `exported`.
fn layer_digests(exported: &Exported) -> Vec<img_snapshot::Digest> {
    let images: Vec<&img_worker::ExportedImage> = match exported {
        Exported::Image(image) => vec![image],
        Exported::Index(index) => index.images.iter().map(|(_, image)| image).collect(),
    };
    images
        .iter()
        .flat_map(|image| image.layers.iter().map(|l| l.digest))
        .collect()
}

/// How many of `exported`'s layer blobs are not in the content store (imported lazily).
pub fn missing_layers(worker: &Worker, exported: &Exported) -> usize {
    let content = worker.store().content();
    layer_digests(exported)
        .iter()
        .filter(|d| !content.exists(d))
        .count()
}

/// Downloads the layer blobs of `exported` that were imported lazily; the outputs cannot
/// fall back to running the steps any more, so a refused blob is an error here.
pub fn fetch_layers(worker: &Worker, exported: &Exported) -> anyhow::Result<()> {
    worker
        .fetch_blobs(&layer_digests(exported))
        .context("cannot download the image's layers from the imported cache")
}
