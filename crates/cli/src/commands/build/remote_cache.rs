//! The build's shared caches: `--cache-from` read before the solve (a missing or broken one is
//! a warning, and the build goes on without it), `--cache-to` written after the export, each
//! shown as a step of the build's display with its sizes.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use img_registry::Client;
use img_remote_cache::{CacheBackend, CacheConfig, LayoutCache, RegistryCache};
use img_snapshot::Compression;
use img_solver::Solved;
use img_worker::{CacheExportOptions, CacheMode, Worker, WorkerRef};

use super::cache_spec::{CacheFromSpec, CacheTarget, CacheToSpec};
use super::export_step::ExportStep;
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

/// After the solve: what the cache hits downloaded, as a step with its size.
pub fn report_downloads(worker: &Worker, specs: &[CacheFromSpec], display: &Display) {
    if specs.is_empty() {
        return;
    }
    let (layers, bytes) = worker.cache_downloads();
    let step = ExportStep::start(display.solver_sink(), "importing cache layers");
    step.line(&format!(
        "{layers} layers downloaded and verified, {}",
        human(bytes)
    ));
    step.finish();
}

/// The inline cache for the image's config when a `--cache-to type=inline` asks for one.
pub fn inline_config(
    worker: &Worker,
    specs: &[CacheToSpec],
    definition: &img_llb::Definition,
    solved: &Solved<WorkerRef>,
    compression: Compression,
    source_date_epoch: Option<i64>,
) -> anyhow::Result<Option<CacheConfig>> {
    if !specs.iter().any(|s| s.target == CacheTarget::Inline) {
        return Ok(None);
    }
    let mut options = CacheExportOptions::default();
    options.mode = CacheMode::Min;
    options.compression = compression;
    options.source_date_epoch = source_date_epoch;
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
    compression: Compression,
    source_date_epoch: Option<i64>,
    display: &Display,
) -> anyhow::Result<Vec<String>> {
    let mut warnings = Vec::new();
    for spec in specs {
        let backend: Arc<dyn CacheBackend> = match &spec.target {
            CacheTarget::Inline => continue,
            CacheTarget::Registry(reference) => {
                // Base layers may be mounted from the repositories the base images came from.
                let mount_from = worker
                    .base_image_references()
                    .iter()
                    .filter_map(|r| img_registry::Reference::parse(r).ok())
                    .collect();
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
            compression,
            source_date_epoch,
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
    compression: Compression,
    source_date_epoch: Option<i64>,
    step: &ExportStep,
) -> anyhow::Result<Vec<String>> {
    let started = Instant::now();
    let mut options = CacheExportOptions::default();
    options.mode = spec.mode;
    options.compression = spec.compression.unwrap_or(compression);
    options.source_date_epoch = source_date_epoch;
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
