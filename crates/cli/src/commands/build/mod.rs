//! `img build`: the Dockerfile lowered to a build graph, solved by the worker (RUN steps in the
//! sandbox, results as snapshots, the persistent build cache), then exported: an image in the
//! store, archives, the root filesystem, pushes.

mod context_filter;
mod options;
mod output;
mod policy;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Write;

use anyhow::Context;
use img_frontend_dockerfile::{
    BaseImageError, BaseImageResolver, ImageConfig, LoweredBase, Platform,
};
use img_llb::{Op, OpRef};
use img_registry::{Client, Reference};
use img_sandbox::{HostPaths, IdMapping, SandboxError, SetupError};
use img_solver::{CancelToken, SolveError, SolveOptions, Solved, Solver};
use img_worker::{
    export_image, store_image, write_docker_archive, write_oci_archive, write_rootfs_dir,
    write_rootfs_tar, ExportedImage, ImageExportOptions, ImageRequest, LayerSource, LocalDirs,
    Worker, WorkerError, WorkerOptions, WorkerRef,
};

use crate::config::Config;
use crate::context::BuildContext;
use crate::flags::BuildFlags;
use crate::graph::{lower_plan, plan_dockerfile};
use crate::host_check::HostReport;
use crate::progress::Display;
use options::BuildConfig;
use output::{describe, oci_ref_names, write_dest, write_small_file, OutputSpec};

pub fn run(config: &Config, quiet: bool, flags: &BuildFlags) -> anyhow::Result<()> {
    let build = BuildConfig::from_flags(flags, |k| std::env::var(k).ok())?;
    let store = config.open_store()?;
    let context =
        BuildContext::prepare(&build.context, build.file.as_deref(), &store.state().tmp())?;

    let mut worker_options = WorkerOptions::new(
        IdMapping::detect(&HostPaths::default()).context("cannot work out the uid/gid mapping")?,
    );
    worker_options.locals = LocalDirs::new().with("context", &context.dir);
    worker_options.context_filter = context_filter::dockerignore_filter_factory();
    worker_options.secrets = build.secrets.clone();
    worker_options.ssh_agents = build.ssh_agents.clone();
    worker_options.registry = Some(Client::new(config.registry.clone()));
    worker_options.pull_always = build.pull;
    worker_options.checksum_cache = Some(crate::build_cache::open(&store)?);
    let snapshotter = store
        .snapshotter(config.backend)
        .context("cannot open the snapshotter")?;
    let worker = Worker::new(store.clone(), &snapshotter, worker_options)
        .context("cannot start the build")?;

    // Planning sees the very base images the build will use: the worker resolves each once
    // (store first, else registry) and the graph names them by manifest digest.
    let images = WorkerImages::new(&worker);
    let plan = plan_dockerfile(&context, &build.graph, &images)?;
    if !quiet {
        for warning in &plan.warnings {
            eprintln!("warning: {warning}");
        }
    }
    let lowered = lower_plan(&context, &build.graph, &plan, images.pinned.into_inner())?;
    policy::check_entitlements(&lowered.definition, build.entitlements)?;
    let (definition, moved) = policy::apply_default_network(&lowered.definition, build.network)?;
    let op = |r: &OpRef| moved.get(&r.digest).copied().unwrap_or(*r);
    for (digest, o) in lowered.definition.ops() {
        let proxy = lowered.proxy_env(digest);
        if matches!(o, Op::Exec(_)) && !proxy.is_empty() {
            worker.set_exec_env(op(&OpRef::new(*digest)).digest, proxy.to_vec());
        }
    }
    let host = preflight(config, &definition)?;
    let solver = Solver::new(worker, crate::build_cache::open(&store)?);

    let cancel = CancelToken::new();
    crate::interrupt::cancel_on_signals(cancel.clone())?;
    // Misses are explained against earlier builds of this same Dockerfile only.
    let dockerfile = context
        .dockerfile_path
        .clone()
        .unwrap_or_else(|| context.dir.join(&context.dockerfile_name));
    let mut solve_options = SolveOptions::default()
        .with_no_cache(build.no_cache)
        .with_cancel(cancel)
        .with_history_scope(dockerfile.display().to_string());
    if let Some(jobs) = build.jobs {
        solve_options = solve_options.with_jobs(jobs);
    }
    for stage in &build.no_cache_filter {
        solve_options = solve_options.with_no_cache_stage(stage.to_ascii_lowercase());
    }

    let display = Display::start_debug(config.progress, config.debug);
    let solved = solver.solve(&definition, &solve_options, &display.solver_sink());
    display.finish();
    let solved = solved.map_err(|err| explain_failure(err, host.as_ref()))?;

    let image = if build.needs_image() {
        let target = lowered.target();
        let output_of = |r: &OpRef| -> anyhow::Result<WorkerRef> {
            solved
                .outputs
                .get(&op(r).digest)
                .cloned()
                .with_context(|| format!("the build produced no result for op {}", r.digest))
        };
        let base = match &target.base {
            LoweredBase::Image { op, .. } => Some(output_of(op)?),
            _ => None,
        };
        let layers = target
            .layers
            .iter()
            .map(|step| {
                Ok(LayerSource {
                    // A linked step's layer is its own files, whatever it lands on.
                    output: output_of(&step.linked.unwrap_or(step.op))?,
                    history_index: Some(step.history_index),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let request = ImageRequest {
            base,
            layers,
            config: serde_json::to_value(&lowered.image)?,
        };
        let options = ImageExportOptions::new()
            .with_compression(build.compression)
            .with_source_date_epoch(build.source_date_epoch);
        Some(
            export_image(solver.executor(), &request, &options)
                .context("cannot export the image")?,
        )
    } else {
        None
    };

    write_outputs(config, &build, &solver, &solved, image.as_ref())?;
    report(&build, image.as_ref(), quiet)
}

/// Base image configs from the worker, remembering the manifest each reference resolved to.
struct WorkerImages<'w> {
    worker: &'w Worker,
    pinned: RefCell<BTreeMap<String, String>>,
}

impl<'w> WorkerImages<'w> {
    fn new(worker: &'w Worker) -> Self {
        WorkerImages {
            worker,
            pinned: RefCell::new(BTreeMap::new()),
        }
    }
}

impl BaseImageResolver for WorkerImages<'_> {
    fn image_config(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<Option<ImageConfig>, BaseImageError> {
        let llb_platform = img_llb::Platform {
            os: platform.os.clone(),
            architecture: platform.architecture.clone(),
            variant: platform.variant.clone(),
        };
        let base = self.worker.resolve_base_image(reference, &llb_platform)?;
        if !reference.contains('@') {
            self.pinned.borrow_mut().insert(
                reference.to_owned(),
                format!("{reference}@{}", base.manifest_digest),
            );
        }
        let config: ImageConfig = serde_json::from_slice(&base.config)?;
        Ok(Some(config))
    }
}

/// The host report `main` refreshed, for a build with RUN steps; stops the build before it
/// starts when the probes say its steps cannot run here, naming the causes and their fixes.
fn preflight(
    config: &Config,
    definition: &img_llb::Definition,
) -> anyhow::Result<Option<HostReport>> {
    if !definition.ops().any(|(_, op)| matches!(op, Op::Exec(_))) {
        return Ok(None);
    }
    let host = HostReport::refreshed_for_this_build(config);
    if let Some(host) = host.as_ref().filter(|h| !h.doctor.can_run_steps) {
        host.explain_step_failure();
        anyhow::bail!("this host cannot run the build's RUN steps (see above, or `img doctor`)");
    }
    Ok(host)
}

/// A failed step: its last lines of output, then the error with the Dockerfile location, the
/// instruction and the exit code (the chain `main` prints). When the sandbox could not run the
/// step, what the host probes found wrong comes first.
fn explain_failure(err: SolveError, host: Option<&HostReport>) -> anyhow::Error {
    if let SolveError::OpFailed {
        label,
        log_tail,
        source,
    } = &err
    {
        let host_failed = match source.downcast_ref::<WorkerError>() {
            Some(WorkerError::Sandbox(e)) => is_host_failure(e),
            _ => false,
        };
        if let Some(host) = host.filter(|_| host_failed) {
            host.explain_step_failure();
        }
        if !log_tail.is_empty() {
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(stderr, "------");
            let _ = writeln!(stderr, " > {}:", label.description);
            for line in log_tail {
                let _ = writeln!(stderr, "{line}");
            }
            let _ = writeln!(stderr, "------");
        }
    }
    anyhow::Error::new(err)
}

/// Whether the sandbox failed for a reason of the host (namespaces, mounts, id maps) rather
/// than of the step (its user, its command, its mount points).
fn is_host_failure(err: &SandboxError) -> bool {
    !matches!(
        err,
        SandboxError::Setup(
            SetupError::User(_)
                | SetupError::CommandNotFound { .. }
                | SetupError::MountPointKind { .. }
        ) | SandboxError::InvalidSpec { .. }
            | SandboxError::CacheLock(_)
    )
}

fn write_outputs(
    config: &Config,
    build: &BuildConfig,
    solver: &Solver<Worker>,
    solved: &Solved<WorkerRef>,
    image: Option<&ExportedImage>,
) -> anyhow::Result<()> {
    let worker = solver.executor();
    let store = worker.store();
    let content = store.content();
    // Pushed from the content store, where the worker's lease keeps the blobs, as `img push`
    // pushes (with its transfer progress).
    let push = |names: &[String], image: &ExportedImage| -> anyhow::Result<()> {
        let client = Client::new(config.registry.clone());
        for name in names {
            let reference = Reference::parse(name)?;
            super::push::push_manifest(config, &client, &content, &reference, &image.manifest)?;
        }
        Ok(())
    };
    // `run` exports the image whenever an output needs it.
    let exported = || image.context("the image was not exported");
    for output in &build.outputs {
        match output {
            OutputSpec::Image { names, push: also } => {
                let image = exported()?;
                store_image(store, image, names).context("cannot name the image")?;
                if *also {
                    push(names, image)?;
                }
            }
            OutputSpec::Registry { names } => push(names, exported()?)?,
            OutputSpec::Docker { dest, names } => {
                let image = exported()?;
                write_dest(dest, |out| {
                    let scratch = store.state().tmp();
                    write_docker_archive(&content, image, names, &scratch, out)?;
                    Ok(())
                })
                .with_context(|| format!("cannot write the docker archive to {}", describe(dest)))?
            }
            OutputSpec::Oci { dest, names } => {
                let image = exported()?;
                write_dest(dest, |out| {
                    write_oci_archive(&content, image, &oci_ref_names(names), out)?;
                    Ok(())
                })
                .with_context(|| format!("cannot write the OCI archive to {}", describe(dest)))?
            }
            OutputSpec::Tar { dest } => write_dest(dest, |out| {
                write_rootfs_tar(worker, &solved.output, build.source_date_epoch, out)?;
                Ok(())
            })
            .with_context(|| format!("cannot write the root filesystem to {}", describe(dest)))?,
            OutputSpec::Local { dest } => write_rootfs_dir(worker, &solved.output, dest)
                .with_context(|| {
                    format!("cannot copy the root filesystem to {}", dest.display())
                })?,
        }
    }
    Ok(())
}

/// The image digest: alone on standard output with `-q` (unless an output went there), else
/// on standard error with the names. `--iidfile` and `--metadata-file` as buildx writes them.
fn report(build: &BuildConfig, image: Option<&ExportedImage>, quiet: bool) -> anyhow::Result<()> {
    if let Some(path) = &build.iidfile {
        let digest = image
            .map(|i| i.manifest_digest.to_string())
            .context("--iidfile needs an image output (type=image, docker, oci or registry)")?;
        write_small_file(path, digest.as_bytes())?;
    }
    if let Some(path) = &build.metadata_file {
        let metadata = metadata(build, image);
        write_small_file(path, &serde_json::to_vec_pretty(&metadata)?)?;
    }
    let Some(image) = image else {
        return Ok(());
    };
    let stdout_taken = build.outputs.iter().any(OutputSpec::writes_stdout);
    if quiet {
        if !stdout_taken {
            println!("{}", image.manifest_digest);
        }
        return Ok(());
    }
    let mut stderr = std::io::stderr().lock();
    writeln!(stderr, "Successfully built {}", image.manifest_digest)?;
    for output in &build.outputs {
        if let OutputSpec::Image { names, .. } = output {
            for name in names {
                writeln!(
                    stderr,
                    "Successfully tagged {}",
                    crate::image::familiar(name)
                )?;
            }
        }
    }
    Ok(())
}

/// buildx's `--metadata-file` keys for an image build.
fn metadata(build: &BuildConfig, image: Option<&ExportedImage>) -> serde_json::Value {
    let Some(image) = image else {
        return serde_json::json!({});
    };
    let mut names: Vec<&str> = Vec::new();
    for name in build.outputs.iter().flat_map(|o| o.names()) {
        if !names.contains(&name.as_str()) {
            names.push(name);
        }
    }
    let mut doc = serde_json::json!({
        "containerimage.config.digest": image.config_digest.to_string(),
        "containerimage.descriptor": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": image.manifest_digest.to_string(),
            "size": image.manifest.len(),
        },
        "containerimage.digest": image.manifest_digest.to_string(),
    });
    if !names.is_empty() {
        doc["image.name"] = names.join(",").into();
    }
    doc
}
