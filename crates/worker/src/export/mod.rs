//! The image exporter: a solved build's snapshots become an OCI image (layers, config,
//! manifest) in the content store, and from there an image name, an archive or a push.
//!
//! The base image's layers are reused as they are (never re-exported). Each layer-producing
//! step's snapshot is exported as the diff against its parent; the snapshot → blob mapping is
//! recorded, so an unchanged rebuild reuses the blobs without tarring or compressing anything.
//! As in BuildKit, a step that changed nothing adds no layer: its history entry is marked
//! `empty_layer`. With `SOURCE_DATE_EPOCH` the config's and history's timestamps are the epoch
//! and file times in new layers are clamped to it, so two builds of the same sources give the
//! same manifest digest.

mod archive;
mod error;
mod index;
mod kernel_copy;
mod media_types;
mod rootfs;
mod rootfs_view;

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use img_registry::{no_progress, Client, PushOptions, Reference};
use img_snapshot::{
    recompress_layer, Compression, ContentStore, Digest, ExportOptions, ExportProgress,
    LayerDescriptor, Store,
};
use oci_spec::image::{Descriptor, MediaType};
use serde_json::{json, Value};

pub use archive::{
    write_docker_archive, write_oci_archive, write_oci_index_archive, ArchiveOutput, OciName,
};
pub use error::ExportError;
pub use index::{
    export_index, store_index, AttachedManifest, ExportedIndex, IndexAnnotations, OCI_INDEX,
};
pub use media_types::{MediaTypes, DOCKER_CONFIG, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST};
pub use rootfs::{write_platforms_rootfs_tar, write_rootfs_dir, write_rootfs_tar};
pub use rootfs_view::with_rootfs_view;

use crate::worker::layer_db::ExportVariant;
use crate::worker::{image_parts, LocalBlobs, Worker, WorkerRef};

/// The OCI media type of image manifests this exporter writes.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// The OCI media type of image configs.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// The diff id of an empty tar (two zero blocks): what an unchanged snapshot exports as.
const EMPTY_LAYER_DIFF_ID: &str =
    "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";

/// How layers and timestamps are written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImageExportOptions {
    /// Layer compression (gzip by default).
    pub compression: Compression,
    /// Compression level; `None` for the compression's default.
    pub level: Option<u32>,
    /// Write base image layers of another compression again in this one
    /// (`force-compression=true`); by default they are kept as they are.
    pub force_compression: bool,
    /// OCI's media types (the default) or Docker's (`oci-mediatypes=false`).
    pub media_types: MediaTypes,
    /// `SOURCE_DATE_EPOCH`: the config's `created`, history times and the clamp for file
    /// times in new layers.
    pub source_date_epoch: Option<i64>,
    /// The config's `created` when no epoch is given; `None` is now.
    pub created: Option<SystemTime>,
    /// Told what the export is doing, for a progress display.
    pub progress: Option<ExportCallback>,
    /// The manifest's `annotations` (`--annotation`); none when empty.
    pub manifest_annotations: BTreeMap<String, String>,
    /// Annotations of the manifest's descriptor where one is written: the store's and an
    /// OCI archive's `index.json` (`--annotation manifest-descriptor:…`).
    pub descriptor_annotations: BTreeMap<String, String>,
}

/// What the image export is doing, for a progress display ("exporting layers").
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExportEvent {
    /// Layer `index` (counted from 0 among the build's own layers, `count` in all) is being
    /// written.
    LayerStarted {
        /// Which layer.
        index: usize,
        /// How many layers the build adds.
        count: usize,
    },
    /// Bytes of the layer's uncompressed tar written so far.
    LayerBytes {
        /// Which layer.
        index: usize,
        /// Bytes done.
        done: u64,
    },
    /// The layer is in the content store.
    LayerDone {
        /// Which layer.
        index: usize,
        /// Its blob.
        digest: Digest,
        /// The blob's size.
        size: u64,
        /// Taken from an earlier export of the same snapshot rather than written now.
        reused: bool,
    },
}

/// A callback for [`ExportEvent`]s, called from the exporting thread.
#[derive(Clone)]
pub struct ExportCallback(Arc<dyn Fn(&ExportEvent) + Send + Sync>);

impl ExportCallback {
    /// Wraps `callback`.
    pub fn new(callback: impl Fn(&ExportEvent) + Send + Sync + 'static) -> Self {
        ExportCallback(Arc::new(callback))
    }

    fn emit(&self, event: ExportEvent) {
        (self.0)(&event);
    }
}

impl fmt::Debug for ExportCallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ExportCallback")
    }
}

/// Two options are equal when they report to the same callback.
impl PartialEq for ExportCallback {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for ExportCallback {}

impl ImageExportOptions {
    /// gzip, no epoch, created now.
    pub fn new() -> Self {
        ImageExportOptions::default()
    }

    /// Sets the compression.
    pub fn with_compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Sets the compression level (`None`: the compression's default).
    pub fn with_level(mut self, level: Option<u32>) -> Self {
        self.level = level;
        self
    }

    /// Writes OCI's media types or Docker's.
    pub fn with_media_types(mut self, media_types: MediaTypes) -> Self {
        self.media_types = media_types;
        self
    }

    /// Writes base image layers of another compression again in this one.
    pub fn with_force_compression(mut self, force: bool) -> Self {
        self.force_compression = force;
        self
    }

    /// Sets `SOURCE_DATE_EPOCH`.
    pub fn with_source_date_epoch(mut self, epoch: Option<i64>) -> Self {
        self.source_date_epoch = epoch;
        self
    }

    /// Reports progress to `callback`.
    pub fn with_progress(mut self, callback: ExportCallback) -> Self {
        self.progress = Some(callback);
        self
    }

    /// Annotates the manifest, and the manifest's descriptor.
    pub fn with_annotations(
        mut self,
        manifest: BTreeMap<String, String>,
        descriptor: BTreeMap<String, String>,
    ) -> Self {
        self.manifest_annotations = manifest;
        self.descriptor_annotations = descriptor;
        self
    }
}

/// One layer-producing step of the final stage. Its layer is the diff of its snapshot against
/// that snapshot's parent, which for an exec or file op is the filesystem the step ran on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerSource {
    /// The step's result. For `COPY --link`, pass the output of the op holding only the copied
    /// files (`LayerStep::linked`): its snapshot has no parent, so the layer is exactly those
    /// files and does not change when what is below does.
    pub output: WorkerRef,
    /// The step's entry in the config's `history`, marked `empty_layer` when the step
    /// changed nothing.
    pub history_index: Option<usize>,
}

/// What to turn into an image.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRequest {
    /// The base image source's output (its layers come first, reused); `None` for `scratch`.
    pub base: Option<WorkerRef>,
    /// The layer-producing steps, in order, from the base up.
    pub layers: Vec<LayerSource>,
    /// The image config the frontend computed (`architecture`, `os`, `config`, `history`, …);
    /// `created` and `rootfs` are filled in here.
    pub config: Value,
}

/// One layer of an exported image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedLayer {
    /// The blob.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// Its media type.
    pub media_type: String,
    /// The digest of the uncompressed tar.
    pub diff_id: Digest,
}

/// An image stored in the content store.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportedImage {
    /// The manifest's digest: the image's identity.
    pub manifest_digest: Digest,
    /// The manifest's media type (OCI's, or Docker's schema 2).
    pub manifest_media_type: String,
    /// The manifest bytes.
    pub manifest: Vec<u8>,
    /// The config's digest (`docker images` shows it as the image id).
    pub config_digest: Digest,
    /// The config bytes.
    pub config: Vec<u8>,
    /// The layers, base first.
    pub layers: Vec<ExportedLayer>,
    /// How many layers were exported now (the rest were reused).
    pub layers_exported: usize,
    /// Annotations of the manifest's descriptor (empty for none).
    pub descriptor_annotations: BTreeMap<String, String>,
}

impl ExportedImage {
    /// The descriptor of the manifest, for an image store or an index.
    pub fn descriptor(&self) -> Descriptor {
        let mut descriptor = Descriptor::new(
            MediaType::from(self.manifest_media_type.as_str()),
            self.manifest.len() as u64,
            self.manifest_digest.to_oci(),
        );
        if !self.descriptor_annotations.is_empty() {
            descriptor.set_annotations(Some(
                self.descriptor_annotations
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ));
        }
        descriptor
    }
}

/// RFC 3339 (UTC, seconds) as image configs write times.
fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// The newest history time of the frontend's config (the base image's entries), for an image
/// that adds no layer of its own.
fn base_created(config: &Value) -> Option<SystemTime> {
    config
        .get("history")?
        .as_array()?
        .iter()
        .filter_map(|h| h.get("created")?.as_str())
        .filter_map(|t| humantime::parse_rfc3339_weak(t).ok())
        .max()
}

fn write_blob(
    content: &ContentStore,
    worker: &Worker,
    bytes: &[u8],
) -> Result<Digest, ExportError> {
    // A rebuild writes the same manifest and config again: leased first, so a concurrent
    // garbage collection cannot take it after the check, a blob already here is kept as it
    // is, which saves its write and fsyncs.
    let digest = Digest::of(bytes);
    worker
        .lease()
        .add_blob(&digest)
        .map_err(ExportError::Lease)?;
    if content.exists(&digest) {
        return Ok(digest);
    }
    let mut writer = content.ingest(None)?.with_lease(worker.lease());
    writer.write_all(bytes).map_err(|source| ExportError::Io {
        what: "writing a blob",
        source,
    })?;
    Ok(writer.commit()?.digest)
}

/// Exports `request` as an image in the content store (every blob joins the worker's lease).
pub fn export_image(
    worker: &Worker,
    request: &ImageRequest,
    options: &ImageExportOptions,
) -> Result<ExportedImage, ExportError> {
    let content = worker.store().content();
    let mut layers: Vec<ExportedLayer> = Vec::new();
    if let Some(base) = &request.base {
        if let Some(manifest) = base.image_manifest() {
            let parts = image_parts(&content, manifest)?;
            for ((digest, media_type, size), diff_id) in parts.layers.iter().zip(&parts.diff_ids) {
                let media_type = options.media_types.convert_layer(media_type);
                if options.force_compression
                    && media_type != options.media_types.layer(options.compression)
                {
                    layers.push(recompressed_base_layer(worker, &content, digest, options)?);
                    continue;
                }
                worker
                    .lease()
                    .add_blob(digest)
                    .map_err(ExportError::Lease)?;
                layers.push(ExportedLayer {
                    digest: *digest,
                    size: *size,
                    media_type,
                    diff_id: *diff_id,
                });
            }
        }
    }
    let variant = ExportVariant {
        compression: options.compression,
        level: options.level,
        source_date_epoch: options.source_date_epoch,
    };
    let mut empty_history = Vec::new();
    let mut step_times: Vec<(usize, i64)> = Vec::new();
    let mut exported = 0;
    let count = request.layers.len();
    for (index, step) in request.layers.iter().enumerate() {
        let key = step
            .output
            .snapshot_key()
            .ok_or(ExportError::NotASnapshot)?;
        // A lazy result (a cache hit not unpacked) has no snapshot, and so no time of its
        // own: its history entry gets the image's.
        let lazy = worker.lazy_top_layer(key, options.compression);
        if lazy.is_none() {
            worker.materialize_key(key)?;
            let made = worker.snapshotter().stat(key)?.created;
            step_times.extend(step.history_index.map(|i| (i, made)));
        }
        let recorded = match lazy {
            Some(layer) => Some(layer),
            None => cached_layer(worker, &content, key, &variant)?,
        };
        let (layer, reused) = match recorded {
            Some(layer) => (layer, true),
            None => {
                let progress = options.progress.clone();
                if let Some(p) = &progress {
                    p.emit(ExportEvent::LayerStarted { index, count });
                }
                let export = ExportOptions {
                    compression: options.compression,
                    level: options.level,
                    source_date_epoch: options.source_date_epoch,
                    threads: 0,
                    progress: progress.map(|p| {
                        ExportProgress::new(move |done| {
                            p.emit(ExportEvent::LayerBytes { index, done })
                        })
                    }),
                };
                let layer = worker.snapshotter().diff(key, &content, &export)?;
                worker.layer_db().put(key, &variant, &layer)?;
                exported += 1;
                (layer, false)
            }
        };
        if let Some(p) = &options.progress {
            p.emit(ExportEvent::LayerDone {
                index,
                digest: layer.digest,
                size: layer.size,
                reused,
            });
        }
        worker
            .lease()
            .add_blob(&layer.digest)
            .map_err(ExportError::Lease)?;
        if layer.diff_id.to_string() == EMPTY_LAYER_DIFF_ID {
            empty_history.extend(step.history_index);
            continue;
        }
        layers.push(ExportedLayer {
            digest: layer.digest,
            size: layer.size,
            media_type: options.media_types.layer(options.compression),
            diff_id: layer.diff_id,
        });
    }

    let at = |secs: i64| SystemTime::UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64);
    // Without an epoch, a step's history time is when its snapshot was made, and the image's
    // the newest of those (as BuildKit takes them from its cache records): a rebuild from the
    // cache then gives the very same image.
    let created = match (options.source_date_epoch, options.created) {
        (Some(epoch), _) => at(epoch),
        (None, Some(created)) => created,
        (None, None) => step_times
            .iter()
            .map(|(_, t)| *t)
            .max()
            .map(at)
            .or_else(|| base_created(&request.config))
            .unwrap_or_else(SystemTime::now),
    };
    let step_times: Vec<(usize, String)> = match options.source_date_epoch {
        Some(_) => Vec::new(),
        None => step_times
            .into_iter()
            .map(|(i, t)| (i, rfc3339(at(t))))
            .collect(),
    };
    let config = image_config(
        &request.config,
        &layers,
        &empty_history,
        &step_times,
        created,
    )?;
    let config_bytes = serde_json::to_vec(&config).map_err(ExportError::Json)?;
    let config_digest = write_blob(&content, worker, &config_bytes)?;
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": options.media_types.manifest(),
        "config": {
            "mediaType": options.media_types.config(),
            "digest": config_digest.to_string(),
            "size": config_bytes.len(),
        },
        "layers": layers.iter().map(|l| json!({
            "mediaType": l.media_type,
            "digest": l.digest.to_string(),
            "size": l.size,
        })).collect::<Vec<_>>(),
    });
    if !options.manifest_annotations.is_empty() {
        manifest["annotations"] = json!(options.manifest_annotations);
    }
    let manifest_bytes = serde_json::to_vec(&manifest).map_err(ExportError::Json)?;
    let manifest_digest = write_blob(&content, worker, &manifest_bytes)?;
    Ok(ExportedImage {
        manifest_digest,
        manifest_media_type: options.media_types.manifest().to_owned(),
        manifest: manifest_bytes,
        config_digest,
        config: config_bytes,
        layers,
        layers_exported: exported,
        descriptor_annotations: options.descriptor_annotations.clone(),
    })
}

/// The recorded export of `key`, if its blob still exists.
/// A base image layer written again in the export's compression (`force-compression`),
/// once: the layer database remembers it under the blob it came from.
fn recompressed_base_layer(
    worker: &Worker,
    content: &ContentStore,
    blob: &Digest,
    options: &ImageExportOptions,
) -> Result<ExportedLayer, ExportError> {
    let key = format!("recompressed/{blob}");
    let variant = ExportVariant {
        compression: options.compression,
        level: options.level,
        source_date_epoch: None,
    };
    let layer = match cached_layer(worker, content, &key, &variant)? {
        Some(layer) => layer,
        None => {
            worker.fetch_blobs(std::slice::from_ref(blob))?;
            let export = ExportOptions {
                compression: options.compression,
                level: options.level,
                ..ExportOptions::default()
            };
            let layer = recompress_layer(content, Some(worker.lease().id()), blob, &export)
                .map_err(|source| ExportError::Recompress {
                    blob: blob.to_string(),
                    source,
                })?;
            worker.layer_db().put(&key, &variant, &layer)?;
            layer
        }
    };
    worker
        .lease()
        .add_blob(&layer.digest)
        .map_err(ExportError::Lease)?;
    Ok(ExportedLayer {
        digest: layer.digest,
        size: layer.size,
        media_type: options.media_types.layer(options.compression),
        diff_id: layer.diff_id,
    })
}

fn cached_layer(
    worker: &Worker,
    content: &ContentStore,
    key: &str,
    variant: &ExportVariant,
) -> Result<Option<LayerDescriptor>, ExportError> {
    Ok(worker
        .layer_db()
        .get(key, variant)?
        .filter(|layer| content.exists(&layer.digest)))
}

/// The frontend's config with `created`, `rootfs` and history times and empty-layer marks.
fn image_config(
    frontend: &Value,
    layers: &[ExportedLayer],
    empty_history: &[usize],
    step_times: &[(usize, String)],
    created: SystemTime,
) -> Result<Value, ExportError> {
    let mut config = match frontend {
        Value::Object(map) => map.clone(),
        Value::Null => serde_json::Map::new(),
        _ => return Err(ExportError::BadConfig),
    };
    let created = rfc3339(created);
    config.insert("created".into(), Value::String(created.clone()));
    config.insert(
        "rootfs".into(),
        json!({
            "type": "layers",
            "diff_ids": layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>(),
        }),
    );
    if let Some(Value::Array(history)) = config.get_mut("history") {
        for (i, entry) in history.iter_mut().enumerate() {
            let Value::Object(entry) = entry else {
                continue;
            };
            // Base image entries keep their times; this build's get their step's, or the
            // image's.
            if !entry.contains_key("created") {
                let time = step_times
                    .iter()
                    .find(|(index, _)| *index == i)
                    .map_or(&created, |(_, t)| t);
                entry.insert("created".into(), Value::String(time.clone()));
            }
            if empty_history.contains(&i) {
                entry.insert("empty_layer".into(), Value::Bool(true));
            }
        }
    }
    Ok(Value::Object(config))
}

/// Names the image in the local image store (`img build -t`).
pub fn store_image(
    store: &Store,
    image: &ExportedImage,
    names: &[String],
) -> Result<(), ExportError> {
    let images = store.images();
    for name in names {
        images.put(name, &image.descriptor())?;
    }
    Ok(())
}

/// Pushes the image to `reference` with its blobs from the worker's content store; returns
/// the pushed manifest's digest.
pub fn push_image(
    client: &Client,
    worker: &Worker,
    reference: &Reference,
    image: &ExportedImage,
) -> Result<img_registry::Digest, ExportError> {
    let source = LocalBlobs::new(worker.store().content(), Some(worker.lease()));
    client
        .push(
            reference,
            &image.manifest,
            &source,
            &PushOptions::default(),
            &no_progress,
        )
        .map_err(|source| ExportError::Push {
            reference: reference.to_string(),
            source: Box::new(source),
        })
}
