//! The attestations of `--provenance` and `--sbom`: per platform image, a provenance
//! statement made from what the build knows and an SBOM of its final root filesystem, laid out
//! by `img-attest` as BuildKit's attestation manifest and handed to the index exporter.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use img_attest::{
    provenance_statement, sbom_statement, scan_rootfs, AttestationManifest, BuildRecord, BuildStep,
    Material, ScanLimits, ScanReport, SecretUse, SpdxOptions, Statement, Subject,
};
use img_frontend_dockerfile::{LoweredBuild, Platform};
use img_llb::{Definition, Digest, NetworkMode, Op, OpRef};
use img_worker::{with_rootfs_view, AttachedManifest, ExportedImage, Worker, WorkerRef};

use super::attest_spec::AttestOptions;
use super::options::{BuildConfig, DefaultNetwork};
use super::output::OutputSpec;
use super::platforms::PlatformBuild;
use crate::context::{BuildContext, ContextSpec};

/// Makes the attestation manifests of one build.
pub struct Attestor {
    options: AttestOptions,
    /// What every platform's provenance shares (no steps, no materials yet).
    record: BuildRecord,
    /// `SOURCE_DATE_EPOCH`: the times recorded, so attestations are reproducible too.
    epoch: Option<SystemTime>,
    /// `--network=none`: steps that do not ask for a network have none.
    offline_by_default: bool,
    /// What the user should hear once the progress display is done.
    warnings: std::sync::Mutex<Vec<String>>,
}

/// One platform's image, with what its attestations are about.
struct PlatformImage<'a> {
    /// The image's platform.
    platform: Platform,
    /// The exported image.
    image: &'a ExportedImage,
    /// The platform's graph (its steps, for `mode=max`).
    lowered: &'a LoweredBuild,
    /// The base images it read.
    materials: &'a [Material],
    /// Its final root filesystem (for the SBOM).
    root: WorkerRef,
}

impl Attestor {
    /// The attestor of `build`, or `None` when it attaches nothing. `started` is when the
    /// build began.
    pub fn new(
        build: &BuildConfig,
        context: &BuildContext,
        started: SystemTime,
    ) -> Option<Attestor> {
        if !build.attestations.any() {
            return None;
        }
        let epoch = build
            .source_date_epoch
            .map(|secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64));
        let provenance = build.attestations.provenance.clone().unwrap_or_default();
        let remote_context = match &build.context {
            ContextSpec::Git(git) => Some(match &git.reference {
                Some(reference) => format!("{}#{reference}", git.remote),
                None => git.remote.clone(),
            }),
            ContextSpec::Url(url) => Some(url.clone()),
            ContextSpec::Dir(_) | ContextSpec::Stdin => None,
        };
        let mut locals = Vec::new();
        if remote_context.is_none() {
            locals.push("context".to_owned());
            locals.push("dockerfile".to_owned());
        }
        locals.extend(
            build
                .graph
                .named_contexts
                .iter()
                .filter(|(_, named)| named.is_local())
                .map(|(name, _)| name.clone()),
        );
        let ssh = build
            .ssh_agents
            .keys()
            .chain(build.ssh_keys.keys())
            .map(|id| SecretUse {
                id: id.clone(),
                optional: false,
            })
            .collect();
        let mut frontend_attrs = BTreeMap::new();
        if build.no_cache {
            frontend_attrs.insert("no-cache".to_owned(), String::new());
        }
        let record = BuildRecord {
            mode: provenance.mode,
            builder_id: provenance.builder_id,
            frontend: "dockerfile.v0".to_owned(),
            dockerfile_path: Some(context.dockerfile_name.clone()),
            remote_context,
            build_args: build.graph.build_args.clone(),
            labels: build.graph.labels.clone(),
            target: build.graph.target.clone(),
            frontend_attrs,
            secrets: build
                .secret_ids
                .iter()
                .map(|id| SecretUse {
                    id: id.clone(),
                    optional: false,
                })
                .collect(),
            ssh,
            locals,
            builder_platform: Some(Platform::host()),
            invocation_id: invocation_id(started),
            started: Some(epoch.unwrap_or(started)),
            reproducible: provenance.reproducible,
            dockerfile: Some((context.dockerfile_name.clone(), context.dockerfile.clone())),
            ..BuildRecord::default()
        };
        Some(Attestor {
            options: build.attestations.clone(),
            record,
            epoch,
            offline_by_default: build.network == DefaultNetwork::None,
            warnings: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// Keeps `warning` for [`Attestor::take_warnings`].
    pub fn warn(&self, warning: String) {
        if let Ok(mut warnings) = self.warnings.lock() {
            warnings.push(warning);
        }
    }

    /// The warnings so far (outputs that cannot hold attestations, files the SBOM scan
    /// skipped), to print once the progress display is done.
    pub fn take_warnings(&self) -> Vec<String> {
        self.warnings
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default()
    }

    /// Whether `outputs` can hold attestations; warns of those that cannot (a docker archive
    /// has no index: BuildKit's docker exporter drops them too; the root filesystem outputs
    /// get no attestation files from img yet).
    pub fn held_by(&self, outputs: &[OutputSpec]) -> bool {
        let mut held = false;
        for output in outputs {
            match output {
                OutputSpec::Image { .. } | OutputSpec::Registry { .. } | OutputSpec::Oci { .. } => {
                    held = true
                }
                OutputSpec::Docker { .. } => self.warn(
                    "type=docker cannot hold attestations (a docker archive has no image index): the image is written without them; use type=oci, type=image or --push to keep them".to_owned(),
                ),
                OutputSpec::Tar { .. } | OutputSpec::Local { .. } => self.warn(
                    "attestations are not written for type=local and type=tar outputs; use type=oci, type=image or --push to keep them".to_owned(),
                ),
            }
        }
        held
    }

    /// The attestation manifest of each platform's image (`images`, in the order of
    /// `builds`), whose subjects are named by the outputs' names; `output_of` gives an op's
    /// result (the final root filesystem, for the SBOM).
    pub fn for_images(
        &self,
        build: &BuildConfig,
        worker: &Worker,
        builds: &[PlatformBuild],
        images: &[(Platform, ExportedImage)],
        output_of: &dyn Fn(&OpRef) -> anyhow::Result<WorkerRef>,
    ) -> anyhow::Result<Vec<AttachedManifest>> {
        let mut names: Vec<String> = Vec::new();
        for name in build.outputs.iter().flat_map(|o| o.names()) {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        let platform_images = builds
            .iter()
            .zip(images)
            .map(|(platform_build, (platform, image))| {
                Ok(PlatformImage {
                    platform: platform.clone(),
                    image,
                    lowered: &platform_build.lowered,
                    materials: &platform_build.materials,
                    root: output_of(&platform_build.lowered.definition.output())?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        self.manifests(worker, &names, &platform_images)
    }

    /// The attestation manifest of each of `images` (in their order), whose subjects are named
    /// `names`. SBOM scans run on threads of their own, one per platform; what a scan skipped
    /// becomes a warning.
    fn manifests(
        &self,
        worker: &Worker,
        names: &[String],
        images: &[PlatformImage<'_>],
    ) -> anyhow::Result<Vec<AttachedManifest>> {
        let scans = if self.options.sbom {
            scan_all(worker, images)?
        } else {
            images.iter().map(|_| None).collect()
        };
        let finished = self.epoch.unwrap_or_else(SystemTime::now);
        let mut manifests = Vec::with_capacity(images.len());
        for (image, scan) in images.iter().zip(scans) {
            let subject = Subject::for_image(names, &image.platform, &image.image.manifest_digest);
            let mut statements: Vec<Statement> = Vec::new();
            // BuildKit's order: the SBOM, then provenance (added last, once the rest is known).
            if let Some(report) = scan {
                for warning in &report.warnings {
                    self.warn(format!("sbom of {}: skipped {warning}", image.platform));
                }
                let name = names
                    .first()
                    .cloned()
                    .unwrap_or_else(|| image.image.manifest_digest.to_string());
                let document = report.to_spdx(&SpdxOptions::new(name, finished));
                statements.push(sbom_statement(&document, subject.clone()));
            }
            if self.options.provenance.is_some() {
                let record = self.platform_record(image, finished);
                statements.push(provenance_statement(&record, subject));
            }
            let manifest = AttestationManifest::new(
                &statements,
                &image.image.manifest_digest,
                image.image.manifest_media_type == img_worker::OCI_MANIFEST,
            );
            manifests.push(AttachedManifest {
                entry: manifest.index_entry.clone(),
                blobs: manifest.blobs().map(|blob| blob.bytes.clone()).collect(),
            });
        }
        Ok(manifests)
    }

    fn platform_record(&self, image: &PlatformImage<'_>, finished: SystemTime) -> BuildRecord {
        let definition = &image.lowered.definition;
        let mut record = self.record.clone();
        record.materials = image.materials.to_vec();
        record.finished = Some(finished);
        record.network_access = definition.ops().any(|(_, op)| match op {
            Op::Exec(exec) => match exec.network {
                NetworkMode::Host => true,
                NetworkMode::Sandbox => !self.offline_by_default,
                _ => false,
            },
            _ => false,
        });
        record.steps = steps(definition);
        record
    }
}

/// Every op of `definition`, inputs first, as provenance steps.
fn steps(definition: &Definition) -> Vec<BuildStep> {
    let order = definition.dependency_order();
    let position: BTreeMap<Digest, usize> =
        order.iter().enumerate().map(|(i, d)| (*d, i)).collect();
    order
        .iter()
        .filter_map(|digest| {
            let op = definition.op(digest)?;
            let inputs = op
                .inputs()
                .iter()
                .filter_map(|input| Some((*position.get(&input.digest)?, input.output as usize)))
                .collect();
            let source_lines = definition
                .metadata(digest)
                .and_then(|m| m.location.as_ref())
                .map(|l| vec![(l.start_line, l.end_line)])
                .unwrap_or_default();
            Some(BuildStep {
                op: serde_json::to_value(op).unwrap_or_default(),
                inputs,
                digest: Some(*digest),
                source_lines,
                layers: Vec::new(),
            })
        })
        .collect()
}

/// Scans each image's root filesystem, each on a thread of its own (the scan reads the whole
/// tree: blocking work, kept off rayon's pool).
fn scan_all(
    worker: &Worker,
    images: &[PlatformImage<'_>],
) -> anyhow::Result<Vec<Option<ScanReport>>> {
    std::thread::scope(|scope| {
        let scans: Vec<_> = images
            .iter()
            .map(|image| {
                scope.spawn(move || {
                    with_rootfs_view(worker, &image.root, |root| {
                        scan_rootfs(root, ScanLimits::default())
                    })
                    .with_context(|| format!("cannot read the image of {}", image.platform))?
                    .with_context(|| format!("cannot scan the image of {}", image.platform))
                })
            })
            .collect();
        scans
            .into_iter()
            .map(|scan| match scan.join() {
                Ok(report) => report.map(Some),
                Err(_) => anyhow::bail!("the SBOM scan stopped unexpectedly"),
            })
            .collect()
    })
}

/// A build's id, shared by its platforms: 25 lowercase base-32 characters as BuildKit's build
/// references look.
fn invocation_id(started: SystemTime) -> String {
    let nanos = started
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let seed = Digest::of(format!("{nanos}:{}", std::process::id()).as_bytes());
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    seed.as_bytes()
        .iter()
        .take(25)
        .map(|b| ALPHABET[usize::from(b % 32)] as char)
        .collect()
}
