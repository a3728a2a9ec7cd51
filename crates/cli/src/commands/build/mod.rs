//! `img build`: the Dockerfile lowered to a build graph, solved by the worker (RUN steps in the
//! sandbox, results as snapshots, the persistent build cache), then exported: an image in the
//! store, archives, the root filesystem, pushes.

mod annotations;
mod attest;
mod attest_spec;
mod cache_spec;
mod check;
mod context_filter;
mod export_step;
mod options;
mod output;
mod platforms;
mod policy;
mod remote_cache;
mod step_options;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
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
    export_image, export_index, store_image, store_index, write_docker_archive, write_oci_archive,
    write_oci_index_archive, write_platforms_rootfs_tar, write_rootfs_dir, write_rootfs_tar,
    ExportedImage, ExportedIndex, ImageExportOptions, ImageRequest, LayerSource, LocalDirs, Worker,
    WorkerError, WorkerOptions, WorkerRef,
};

use crate::config::Config;
use crate::context::{BuildContext, DockerfileSource};
use crate::flags::BuildFlags;
use crate::graph::{lower_plan, plan_dockerfile};
use crate::host_check::HostReport;
use crate::progress::Display;
use options::BuildConfig;
use output::{describe, oci_names, write_dest, write_dest_file, write_small_file, OutputSpec};
pub use platforms::host_binfmt_dir;
use platforms::PlatformBuild;

pub fn run(config: &Config, quiet: bool, flags: &BuildFlags) -> anyhow::Result<()> {
    if flags.checks_only() {
        return check::run(config, flags);
    }
    let started = std::time::SystemTime::now();
    let build = BuildConfig::from_flags(flags, |k| std::env::var(k).ok())?;
    let store = config.open_store()?;
    // Images of `oci-layout://` contexts are in the content store before planning looks.
    let _layout_images =
        crate::named_context::import_oci_layouts(&build.graph.named_contexts, &store)?;
    let context =
        BuildContext::prepare(&build.context, build.file.as_deref(), &store.state().tmp())?;
    let attestor = attest::Attestor::new(&build, &context, started);

    let mut worker_options = WorkerOptions::new(
        IdMapping::detect(&HostPaths::default()).context("cannot work out the uid/gid mapping")?,
    );
    let named = crate::named_context::LocalContexts::prepare(
        &build.graph.named_contexts,
        &store.state().tmp(),
    )?;
    let mut locals = LocalDirs::new().with("context", &context.dir);
    for (name, dir) in &named.dirs {
        locals = locals.with(name, dir);
    }
    worker_options.locals = locals;
    worker_options.context_filter = context_filter::dockerignore_filter_factory();
    worker_options.secrets = build.secrets.clone();
    worker_options.ssh_agents = build.ssh_agents.clone();
    // Key files are served by an agent of img's own, alive until the build ends.
    let mut key_agents = Vec::new();
    for (id, files) in &build.ssh_keys {
        let agent = crate::ssh_agent::KeyAgent::start(files, &store.state().tmp())?;
        worker_options
            .ssh_agents
            .insert(id.clone(), agent.socket().to_path_buf());
        key_agents.push(agent);
    }
    worker_options.registry = Some(Client::new(config.registry.clone()));
    worker_options.pull_always = build.pull;
    worker_options.checksum_cache = Some(crate::build_cache::open(&store)?);
    let snapshotter = store
        .snapshotter(config.backend)
        .context("cannot open the snapshotter")?;
    let worker = Worker::new(store.clone(), &snapshotter, worker_options)
        .context("cannot start the build")?;

    // Each platform is planned and lowered on its own (its TARGET* arguments, its base
    // images); planning sees the very base images the build will use: the worker resolves
    // each once (store first, else registry) and the graph names them by manifest digest.
    let targets: Vec<Option<Platform>> = if build.graph.platforms.is_empty() {
        vec![None]
    } else {
        build.graph.platforms.iter().cloned().map(Some).collect()
    };
    build
        .annotations
        .check_platform_count(targets.len(), build.attestations.any())?;
    let mut builds = Vec::with_capacity(targets.len());
    let mut warned = BTreeSet::new();
    for target in targets {
        let options = match &target {
            Some(platform) => build.graph.for_platform(platform),
            None => build.graph.clone(),
        };
        let images = WorkerImages::new(&worker);
        let plan = plan_dockerfile(&context, &options, &images)?;
        for warning in &plan.warnings {
            let shown = warning.to_string();
            if !quiet && warned.insert(shown.clone()) {
                eprintln!("warning: {shown}");
            }
        }
        let materials = images.materials.take();
        let lowered = lower_plan(&context, &options, &plan, images.pinned.into_inner())?;
        builds.push(PlatformBuild {
            platform: target,
            lowered,
            materials,
        });
    }
    // One graph for every platform: what they share runs once.
    let merged = platforms::merge_graphs(&builds)?;
    policy::check_entitlements(&merged, build.entitlements)?;
    let (definition, moved) =
        policy::apply_step_options(&merged, build.network, &build.step_options)?;
    let op = |r: &OpRef| moved.get(&r.digest).copied().unwrap_or(*r);
    for lowered in builds.iter().map(|b| &b.lowered) {
        for (digest, o) in lowered.definition.ops() {
            let proxy = lowered.proxy_env(digest);
            if matches!(o, Op::Exec(_)) && !proxy.is_empty() {
                worker.set_exec_env(op(&OpRef::new(*digest)).digest, proxy.to_vec());
            }
        }
    }
    let host = preflight(config, &definition)?;
    let solver = Solver::new(worker, crate::build_cache::open(&store)?);

    let cancel = CancelToken::new();
    crate::interrupt::cancel_on_signals(cancel.clone())?;
    // Misses are explained against earlier builds of this same Dockerfile only.
    let dockerfile = match &context.dockerfile_source {
        DockerfileSource::Host(path) => path.clone(),
        DockerfileSource::InContext(path) => context.dir.join(path),
        DockerfileSource::Stdin => context.dir.join(&context.dockerfile_name),
    };
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
    let cache_client = std::sync::Arc::new(Client::new(config.registry.clone()));
    let mut cache_warnings = remote_cache::import(
        solver.executor(),
        &build.cache_from,
        &cache_client,
        &definition,
        &display,
    );
    // The final results of every platform, as the outputs write them.
    let roots = |solved: &Solved<WorkerRef>| -> Vec<WorkerRef> {
        builds
            .iter()
            .filter_map(|b| {
                let output = op(&b.lowered.definition.output());
                solved.outputs.get(&output.digest).cloned()
            })
            .collect()
    };
    let solved = remote_cache::solve(
        &solver,
        &definition,
        &solve_options,
        &display,
        &roots,
        remote_cache::output_needs(&build.outputs),
    );
    cache_warnings.extend(solver.executor().take_cache_warnings());
    let imported =
        remote_cache::report_downloads(solver.executor(), &build.cache_from, &display, None);
    let solved = match solved {
        Ok(solved) => solved,
        Err(failure) => {
            display.finish();
            print_warnings(&cache_warnings);
            return Err(match failure {
                remote_cache::SolveFailure::Solve(err) => explain_failure(err, host.as_ref()),
                remote_cache::SolveFailure::Outputs(err) => err,
            });
        }
    };
    let inline_cache = remote_cache::inline_config(
        solver.executor(),
        &build.cache_to,
        &definition,
        &solved,
        build.layer_format(),
    )?;

    // The export is a step of the same display, as BuildKit's "exporting to image" is; pushes
    // come after it with their own transfer display.
    let step = export_step::ExportStep::start(display.solver_sink(), &export_name(&build.outputs));
    let exported = export_and_write(
        &build,
        &solver,
        &solved,
        &builds,
        &op,
        &step,
        ImageExtras {
            inline_cache: inline_cache.as_ref(),
            attestor: attestor.as_ref(),
        },
    );
    match &exported {
        Ok(_) => step.finish(),
        Err(err) => step.fail(err),
    }
    let cache_exported = match &exported {
        Ok(_) => remote_cache::export(
            solver.executor(),
            &build.cache_to,
            &cache_client,
            &definition,
            &solved,
            build.layer_format(),
            &display,
        ),
        Err(_) => Ok(Vec::new()),
    };
    remote_cache::report_downloads(
        solver.executor(),
        &build.cache_from,
        &display,
        Some(imported),
    );
    display.finish();
    cache_warnings.extend(solver.executor().take_cache_warnings());
    print_warnings(&cache_warnings);
    if let Some(attestor) = attestor.as_ref().filter(|_| !quiet) {
        print_warnings(&attestor.take_warnings());
    }
    let image = exported?;
    print_warnings(&cache_exported?);
    push_outputs(config, &build, &solver, image.as_ref())?;
    report(&build, image.as_ref(), quiet)
}

fn print_warnings(warnings: &[String]) {
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
}

/// What the build exported: one image, or with several platforms an index of one image each.
pub enum Exported {
    /// One platform.
    Image(ExportedImage),
    /// Several platforms.
    Index(ExportedIndex),
}

impl Exported {
    /// The image's identity: the manifest's digest, or the index's.
    fn digest(&self) -> img_snapshot::Digest {
        match self {
            Exported::Image(image) => image.manifest_digest,
            Exported::Index(index) => index.digest,
        }
    }

    /// Docker's image ID: the config digest of one image, the digest of an index (which has
    /// no one config), as Docker's containerd image store shows it.
    fn image_id(&self) -> img_snapshot::Digest {
        match self {
            Exported::Image(image) => image.config_digest,
            Exported::Index(index) => index.digest,
        }
    }

    /// The manifest or index bytes, as pushed.
    fn bytes(&self) -> &[u8] {
        match self {
            Exported::Image(image) => &image.manifest,
            Exported::Index(index) => &index.bytes,
        }
    }

    fn media_type(&self) -> &str {
        match self {
            Exported::Image(image) => &image.manifest_media_type,
            Exported::Index(index) => &index.media_type,
        }
    }
}

/// The step's name, as BuildKit names its exporters.
fn export_name(outputs: &[OutputSpec]) -> String {
    match outputs {
        [OutputSpec::Oci { .. }] => "exporting to oci image format",
        [OutputSpec::Docker { .. }] => "exporting to docker image format",
        [OutputSpec::Tar { .. }] => "exporting to client tarball",
        [OutputSpec::Local { .. }] => "exporting to client directory",
        _ => "exporting to image",
    }
    .to_owned()
}

/// What goes into the exported image besides the build's result.
struct ImageExtras<'a> {
    /// The cache config embedded in the image config (`--cache-to type=inline`).
    inline_cache: Option<&'a img_remote_cache::CacheConfig>,
    /// The maker of the attestations (`--provenance`, `--sbom`).
    attestor: Option<&'a attest::Attestor>,
}

/// Exports the image (an index of one image per platform for a multi-platform build) when an
/// output needs it and writes every output but the pushes.
fn export_and_write(
    build: &BuildConfig,
    solver: &Solver<Worker>,
    solved: &Solved<WorkerRef>,
    builds: &[PlatformBuild],
    op: &dyn Fn(&OpRef) -> OpRef,
    step: &std::sync::Arc<export_step::ExportStep>,
    extras: ImageExtras<'_>,
) -> anyhow::Result<Option<Exported>> {
    let inline_cache = extras.inline_cache;
    let attestor = extras
        .attestor
        .filter(|attestor| attestor.held_by(&build.outputs));
    let output_of = |r: &OpRef| -> anyhow::Result<WorkerRef> {
        solved
            .outputs
            .get(&op(r).digest)
            .cloned()
            .with_context(|| format!("the build produced no result for op {}", r.digest))
    };
    let exported = if build.needs_image() {
        let mut images = Vec::with_capacity(builds.len());
        for platform_build in builds {
            let platform = platform_build
                .platform
                .clone()
                .unwrap_or_else(Platform::host);
            let image = export_one(
                build,
                solver,
                &platform,
                &platform_build.lowered,
                &output_of,
                step,
                inline_cache,
            )?;
            images.push((platform_build.platform.clone(), image));
        }
        step.layers_done();
        for (_, image) in &images {
            step.line(&format!(
                "exporting manifest {} done",
                image.manifest_digest
            ));
            step.line(&format!("exporting config {} done", image.config_digest));
        }
        let images: Vec<(Platform, ExportedImage)> = images
            .into_iter()
            .map(|(p, i)| (p.unwrap_or_else(Platform::host), i))
            .collect();
        let attached = match attestor {
            Some(attestor) => {
                attestor.for_images(build, solver.executor(), builds, &images, &output_of)?
            }
            None => Vec::new(),
        };
        let mut images = images;
        match images.as_slice() {
            // With attestations even one platform's image goes in an index, as BuildKit
            // stores it.
            [_] if builds.len() == 1 && attached.is_empty() => {
                images.pop().map(|(_, i)| Exported::Image(i))
            }
            _ => {
                for manifest in &attached {
                    step.line(&format!(
                        "exporting attestation manifest {} done",
                        manifest.entry.digest()
                    ));
                }
                let index = export_index(
                    solver.executor(),
                    images,
                    &attached,
                    &build.annotations.index,
                )
                .context("cannot export the image index")?;
                step.line(&format!("exporting manifest list {} done", index.digest));
                Some(Exported::Index(index))
            }
        }
    } else {
        None
    };
    let roots = builds
        .iter()
        .map(|b| {
            let dir = b.platform.as_ref().map(Platform::directory_name);
            Ok((dir, output_of(&b.lowered.definition.output())?))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    write_outputs(build, solver, &roots, exported.as_ref(), step)?;
    Ok(exported)
}

/// Exports one platform's image.
fn export_one(
    build: &BuildConfig,
    solver: &Solver<Worker>,
    platform: &Platform,
    lowered: &img_frontend_dockerfile::LoweredBuild,
    output_of: &dyn Fn(&OpRef) -> anyhow::Result<WorkerRef>,
    step: &std::sync::Arc<export_step::ExportStep>,
    inline_cache: Option<&img_remote_cache::CacheConfig>,
) -> anyhow::Result<ExportedImage> {
    let target = lowered.target();
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
    let mut config = serde_json::to_value(&lowered.image)?;
    if let Some(cache) = inline_cache {
        img_remote_cache::inline::embed(&mut config, cache);
    }
    let request = ImageRequest {
        base,
        layers,
        config,
    };
    let options = ImageExportOptions::new()
        .with_compression(build.compression)
        .with_level(build.compression_level)
        .with_force_compression(build.force_compression)
        .with_media_types(build.media_types)
        .with_source_date_epoch(build.source_date_epoch)
        .with_annotations(
            build.annotations.manifest_for(platform),
            build.annotations.descriptor_for(platform),
        )
        .with_progress(step.callback());
    export_image(solver.executor(), &request, &options).context("cannot export the image")
}

/// Base image configs from the worker, remembering the manifest each reference resolved to
/// for each platform.
struct WorkerImages<'w> {
    worker: &'w Worker,
    pinned: RefCell<BTreeMap<(String, Platform), String>>,
    /// Every image resolved, as provenance materials.
    materials: RefCell<Vec<img_attest::Material>>,
}

impl<'w> WorkerImages<'w> {
    fn new(worker: &'w Worker) -> Self {
        WorkerImages {
            worker,
            pinned: RefCell::new(BTreeMap::new()),
            materials: RefCell::new(Vec::new()),
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
        let material = img_attest::Material::Image {
            reference: reference.to_owned(),
            platform: Some(llb_platform.clone()),
            digest: base.manifest_digest,
        };
        let mut materials = self.materials.borrow_mut();
        if !materials.contains(&material) {
            materials.push(material);
        }
        drop(materials);
        if !reference.contains('@') {
            self.pinned.borrow_mut().insert(
                (reference.to_owned(), platform.clone()),
                format!("{reference}@{}", base.manifest_digest),
            );
        }
        let config: ImageConfig = serde_json::from_slice(&base.config)?;
        Ok(Some(config))
    }
}

/// The host report `main` refreshed, for a build with RUN steps; stops the build before it
/// starts when the probes say its steps cannot run here (or a platform's steps have no
/// emulator), naming the causes and their fixes.
fn preflight(
    config: &Config,
    definition: &img_llb::Definition,
) -> anyhow::Result<Option<HostReport>> {
    if !definition.ops().any(|(_, op)| matches!(op, Op::Exec(_))) {
        return Ok(None);
    }
    // A foreign platform's steps need an emulator; without one the build stops here, before
    // any step runs, rather than at the first step with "exec format error".
    platforms::check_emulation(definition)?;
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

/// Writes the local outputs: image names, archives, the root filesystem. `roots` are the
/// final filesystems, each with its platform's directory name in a multi-platform build.
fn write_outputs(
    build: &BuildConfig,
    solver: &Solver<Worker>,
    roots: &[(Option<String>, WorkerRef)],
    exported: Option<&Exported>,
    step: &export_step::ExportStep,
) -> anyhow::Result<()> {
    let worker = solver.executor();
    let store = worker.store();
    let content = store.content();
    // `run` exports the image whenever an output needs it.
    let exported = || exported.context("the image was not exported");
    let multi = roots.len() > 1;
    for output in &build.outputs {
        let started = std::time::Instant::now();
        match output {
            OutputSpec::Image { names, push } => {
                let exported = exported()?;
                // Pushed, an image whose layers were imported lazily is not downloaded to be
                // stored here too: the registry has it.
                let missing = remote_cache::missing_layers(worker, exported);
                if *push && missing > 0 {
                    step.line(&format!(
                        "not stored locally: {missing} layers were not downloaded (pushed only)"
                    ));
                    continue;
                }
                remote_cache::fetch_layers(worker, exported)?;
                let store_as = |names: &[String]| match exported {
                    Exported::Image(image) => store_image(store, image, names),
                    Exported::Index(index) => store_index(store, index, names),
                };
                let untagged = crate::image::untagged_name(&exported.digest());
                if names.is_empty() {
                    // `docker build .`: the image is kept, findable by its ID.
                    store_as(std::slice::from_ref(&untagged)).context("cannot store the image")?;
                    step.line(&format!("writing image {} done", exported.image_id()));
                } else {
                    store_as(names).context("cannot name the image")?;
                    // Named now, the image is no longer an untagged one (as in Docker).
                    store.images().remove(&untagged)?;
                }
                for name in names {
                    step.line(&format!("naming to {name} done"));
                }
            }
            OutputSpec::Registry { .. } => {}
            OutputSpec::Docker { dest, names } => {
                // One platform with attestations is an index of one image: the archive
                // takes the image alone.
                let image = match exported()? {
                    Exported::Image(image) => image,
                    Exported::Index(index) => match index.images.as_slice() {
                        [(_, image)] => image,
                        _ => anyhow::bail!("{}", options::DOCKER_MULTI_PLATFORM),
                    },
                };
                remote_cache::fetch_layers(worker, exported()?)?;
                step.line("sending tarball");
                write_dest_file(dest, |out| {
                    let scratch = store.state().tmp();
                    write_docker_archive(&content, image, names, &scratch, out)?;
                    Ok(())
                })
                .with_context(|| {
                    format!("cannot write the docker archive to {}", describe(dest))
                })?;
                step.done("sending tarball", started);
            }
            OutputSpec::Oci { dest, names } => {
                let exported = exported()?;
                remote_cache::fetch_layers(worker, exported)?;
                step.line("sending tarball");
                write_dest_file(dest, |out| {
                    let names = oci_names(names);
                    match exported {
                        Exported::Image(image) => write_oci_archive(&content, image, &names, out)?,
                        Exported::Index(index) => {
                            write_oci_index_archive(&content, index, &names, out)?
                        }
                    }
                    Ok(())
                })
                .with_context(|| format!("cannot write the OCI archive to {}", describe(dest)))?;
                step.done("sending tarball", started);
            }
            OutputSpec::Tar { dest } => {
                write_dest(dest, |out| {
                    if multi {
                        let named: Vec<(String, WorkerRef)> = roots
                            .iter()
                            .map(|(dir, root)| (dir.clone().unwrap_or_default(), root.clone()))
                            .collect();
                        write_platforms_rootfs_tar(worker, &named, build.source_date_epoch, out)?;
                    } else {
                        for (_, root) in roots {
                            write_rootfs_tar(worker, root, build.source_date_epoch, out)?;
                        }
                    }
                    Ok(())
                })
                .with_context(|| {
                    format!("cannot write the root filesystem to {}", describe(dest))
                })?;
                step.done("sending tarball", started);
            }
            OutputSpec::Local { dest } => {
                for (dir, root) in roots {
                    // One directory per platform, as BuildKit lays them out.
                    let dest = match dir.as_deref().filter(|_| multi) {
                        Some(dir) => dest.join(dir),
                        None => dest.clone(),
                    };
                    write_rootfs_dir(worker, root, &dest).with_context(|| {
                        format!("cannot copy the root filesystem to {}", dest.display())
                    })?;
                }
                step.done("copying files", started);
            }
        }
    }
    Ok(())
}

/// Pushes the image (or the index with every platform's image) to the registries the outputs
/// name, as `img push` pushes (with its transfer progress), from the content store where the
/// worker's lease keeps the blobs.
fn push_outputs(
    config: &Config,
    build: &BuildConfig,
    solver: &Solver<Worker>,
    image: Option<&Exported>,
) -> anyhow::Result<()> {
    let worker = solver.executor();
    // Lazily imported layers are read (downloaded) only for a registry that has them neither
    // already nor for a mount from the cache's or the base image's repository.
    let blobs = worker.lazy_blobs();
    let options = img_registry::PushOptions {
        mount_from: remote_cache::mount_sources(worker),
        ..img_registry::PushOptions::default()
    };
    for output in &build.outputs {
        let names = match output {
            OutputSpec::Image { names, push: true } | OutputSpec::Registry { names } => names,
            _ => continue,
        };
        let image = image.context("the image was not exported")?;
        let client = Client::new(config.registry.clone());
        for name in names {
            let reference = Reference::parse(name)?;
            super::push::push_manifest_from(
                config,
                &client,
                &blobs,
                &options,
                &reference,
                image.bytes(),
            )?;
        }
    }
    Ok(())
}

/// The image ID (the config digest, as Docker's; the index's digest for several platforms):
/// alone on standard output with `-q` (unless an output went there), else on standard error
/// with the names. `--iidfile` and `--metadata-file` as buildx writes them.
fn report(build: &BuildConfig, image: Option<&Exported>, quiet: bool) -> anyhow::Result<()> {
    if let Some(path) = &build.iidfile {
        let digest = image
            .map(|i| i.image_id().to_string())
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
            println!("{}", image.image_id());
        }
        return Ok(());
    }
    let mut stderr = std::io::stderr().lock();
    writeln!(stderr, "Successfully built {}", image.image_id())?;
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

/// buildx's `--metadata-file` keys for an image build: the config digest (the image ID), the
/// manifest's (or index's) digest and descriptor (a manifest's annotated with the config digest
/// and the creation time, as BuildKit's image exporter annotates it) and the names. buildx's
/// own keys (`buildx.build.ref`, `buildx.build.provenance`) name things img does not have.
fn metadata(build: &BuildConfig, image: Option<&Exported>) -> serde_json::Value {
    let Some(exported) = image else {
        return serde_json::json!({});
    };
    let mut names: Vec<&str> = Vec::new();
    for name in build.outputs.iter().flat_map(|o| o.names()) {
        if !names.contains(&name.as_str()) {
            names.push(name);
        }
    }
    let mut descriptor = serde_json::json!({
        "mediaType": exported.media_type(),
        "digest": exported.digest().to_string(),
        "size": exported.bytes().len(),
    });
    let mut doc = serde_json::json!({
        "containerimage.digest": exported.digest().to_string(),
    });
    // An index has no one config, so buildx leaves the key out.
    if let Exported::Image(image) = exported {
        let mut annotations = serde_json::json!(image.descriptor_annotations);
        annotations["config.digest"] = image.config_digest.to_string().into();
        let created = serde_json::from_slice::<serde_json::Value>(&image.config)
            .ok()
            .and_then(|c| c.get("created").and_then(|v| v.as_str()).map(str::to_owned));
        if let Some(created) = created {
            annotations["org.opencontainers.image.created"] = created.into();
        }
        descriptor["annotations"] = annotations;
        descriptor["mediaType"] = image.descriptor().media_type().to_string().into();
        doc["containerimage.config.digest"] = image.config_digest.to_string().into();
    }
    doc["containerimage.descriptor"] = descriptor;
    if !names.is_empty() {
        doc["image.name"] = names.join(",").into();
    }
    doc
}
