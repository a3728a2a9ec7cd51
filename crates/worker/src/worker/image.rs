//! Image sources: find the image in the local image store (as `docker build` and buildah do)
//! or pull it, then unpack its layers into a chain of snapshots named by chain id, so every
//! build on the same base shares them.

use std::sync::Arc;

use img_llb::{ImageSource, Platform as LlbPlatform};
use img_registry::{Platform, Reference};
use img_snapshot::{ContentStore, Digest};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::lazy::{LazyLayer, Origin};
use super::local_blobs::LocalBlobs;
use super::{Worker, WorkerError, WorkerRef};
use img_solver::ExecContext;

const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// An image resolved to one manifest.
#[derive(Debug)]
pub(crate) struct ResolvedBase {
    pub reference: String,
    pub manifest_digest: Digest,
    /// The image config.
    pub config: Vec<u8>,
    /// Set when the image is not stored here: the reference to pull from, with the manifest
    /// as the registry served it and the config's descriptor.
    pull: Option<(Reference, img_registry::Manifest, img_registry::Descriptor)>,
}

/// A base image as the frontend needs it before lowering: its config (for `ENV`, `USER`,
/// history, …) and the manifest digest to pin the reference to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseImage {
    /// The platform's image manifest digest: pin the reference as `name@<digest>`.
    pub manifest_digest: Digest,
    /// The image config JSON, as stored.
    pub config: Vec<u8>,
}

/// The config blob of the image manifest `manifest`.
fn config_of(content: &ContentStore, manifest: &Digest) -> Result<Vec<u8>, WorkerError> {
    let reference = manifest.to_string();
    let doc = parse_json(&reference, &content.read_blob(manifest)?)?;
    let config = digest_field(
        &reference,
        doc.get("config")
            .ok_or_else(|| bad(&reference, "manifest without config"))?,
    )?;
    Ok(content.read_blob(&config)?)
}

/// What the exporter and the unpacker read from a stored image manifest.
#[derive(Debug, Clone)]
pub(crate) struct ImageParts {
    /// Layer blobs with their media types, base first.
    pub layers: Vec<(Digest, String, u64)>,
    /// The config's `rootfs.diff_ids`.
    pub diff_ids: Vec<Digest>,
}

fn bad(reference: &str, problem: impl Into<String>) -> WorkerError {
    WorkerError::BadImage {
        reference: reference.to_owned(),
        problem: problem.into(),
    }
}

fn parse_json(reference: &str, bytes: &[u8]) -> Result<Value, WorkerError> {
    serde_json::from_slice(bytes).map_err(|e| bad(reference, format!("malformed json: {e}")))
}

fn digest_field(reference: &str, v: &Value) -> Result<Digest, WorkerError> {
    v.get("digest")
        .and_then(Value::as_str)
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| bad(reference, "descriptor without a valid digest"))
}

/// Reads the manifest `digest` from `content`, following an index to `platform`; returns the
/// image manifest's digest.
pub(crate) fn select_manifest(
    content: &ContentStore,
    reference: &str,
    digest: &Digest,
    platform: &LlbPlatform,
) -> Result<Digest, WorkerError> {
    let doc = parse_json(reference, &content.read_blob(digest)?)?;
    let media_type = doc.get("mediaType").and_then(Value::as_str).unwrap_or("");
    if !INDEX_TYPES.contains(&media_type) && doc.get("manifests").is_none() {
        return Ok(*digest);
    }
    let want = platform;
    let entries = doc
        .get("manifests")
        .and_then(Value::as_array)
        .ok_or_else(|| bad(reference, "index without manifests"))?;
    for entry in entries {
        let p = entry.get("platform");
        let field = |k| {
            p.and_then(|p| p.get(k))
                .and_then(Value::as_str)
                .unwrap_or("")
        };
        let variant = Some(field("variant")).filter(|v| !v.is_empty());
        let have = Platform::new(field("os"), field("architecture")).with_variant(variant);
        if want.matches(&have) {
            let child = digest_field(reference, entry)?;
            if content.exists(&child) {
                return Ok(child);
            }
        }
    }
    Err(bad(
        reference,
        format!("no manifest for platform {platform} in the local store"),
    ))
}

/// The layers, diff ids and config of the image manifest `manifest`.
pub(crate) fn image_parts(
    content: &ContentStore,
    manifest: &Digest,
) -> Result<ImageParts, WorkerError> {
    let reference = manifest.to_string();
    let doc = parse_json(&reference, &content.read_blob(manifest)?)?;
    let config_digest = digest_field(
        &reference,
        doc.get("config")
            .ok_or_else(|| bad(&reference, "manifest without config"))?,
    )?;
    let config = parse_json(&reference, &content.read_blob(&config_digest)?)?;
    let mut layers = Vec::new();
    for layer in doc
        .get("layers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let media_type = layer
            .get("mediaType")
            .and_then(Value::as_str)
            .unwrap_or("application/vnd.oci.image.layer.v1.tar+gzip")
            .to_owned();
        let size = layer.get("size").and_then(Value::as_u64).unwrap_or(0);
        layers.push((digest_field(&reference, layer)?, media_type, size));
    }
    let diff_ids = config
        .pointer("/rootfs/diff_ids")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|d| d.as_str().and_then(|d| d.parse().ok()))
        .collect::<Option<Vec<Digest>>>()
        .ok_or_else(|| bad(&reference, "config with malformed rootfs.diff_ids"))?;
    if diff_ids.len() != layers.len() {
        return Err(bad(
            &reference,
            format!(
                "{} layers but {} diff ids in the config",
                layers.len(),
                diff_ids.len()
            ),
        ));
    }
    Ok(ImageParts { layers, diff_ids })
}

/// OCI chain ids: the first layer's diff id, then sha256("<parent chain id> <diff id>").
pub(crate) fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match out.last() {
            None => *diff_id,
            Some(parent) => {
                let hash = Sha256::digest(format!("{parent} {diff_id}").as_bytes());
                format!("sha256:{}", hex_of(&hash))
                    .parse()
                    .unwrap_or(*diff_id)
            }
        };
        out.push(next);
    }
    out
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The names an image may be stored under in the local image store.
fn local_names(reference: &str, parsed: Option<&Reference>) -> Vec<String> {
    let mut names = vec![reference.to_owned()];
    if let Some(r) = parsed {
        names.push(r.to_string());
        names.push(r.familiar());
    }
    names.dedup();
    names
}

impl Worker {
    /// Resolves a base image for the frontend's planning (its config) and pinning (its
    /// manifest digest), the way the build's image sources will: the local image store first
    /// (unless `pull_always`), else the registry, without downloading layers. The answer is
    /// remembered, so the build uses the very image planning saw.
    pub fn resolve_base_image(
        &self,
        reference: &str,
        platform: &LlbPlatform,
    ) -> Result<BaseImage, WorkerError> {
        let resolved = self.resolve_image(&ImageSource {
            reference: reference.to_owned(),
            platform: platform.clone(),
        })?;
        Ok(BaseImage {
            manifest_digest: resolved.manifest_digest,
            config: resolved.config.clone(),
        })
    }

    /// Finds the manifest an image reference means for this build (once per build).
    pub(super) fn resolve_image(
        &self,
        source: &ImageSource,
    ) -> Result<Arc<ResolvedBase>, WorkerError> {
        let cache_key = format!("{}|{}", source.reference, source.platform);
        if let Some(hit) = self
            .resolved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&cache_key)
        {
            return Ok(hit.clone());
        }
        let resolved = Arc::new(self.resolve_image_uncached(source)?);
        self.resolved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(cache_key, resolved.clone());
        Ok(resolved)
    }

    fn resolve_image_uncached(&self, source: &ImageSource) -> Result<ResolvedBase, WorkerError> {
        let reference = &source.reference;
        let parsed = Reference::parse(reference);
        let content = self.store.content();
        // A pinned digest present in the content store is the image, whatever its name, and
        // even with `--pull`: nothing newer can stand behind a digest.
        if let Ok(r) = &parsed {
            if let Some(d) = r.digest().and_then(|d| Digest::try_from(d).ok()) {
                if content.exists(&d) {
                    let manifest = select_manifest(&content, reference, &d, &source.platform)?;
                    return Ok(ResolvedBase {
                        reference: reference.clone(),
                        config: config_of(&content, &manifest)?,
                        manifest_digest: manifest,
                        pull: None,
                    });
                }
            }
        }
        if !self.options.pull_always {
            let images = self.store.images();
            for name in local_names(reference, parsed.as_ref().ok()) {
                let Ok(Some(record)) = images.get(&name) else {
                    continue;
                };
                let Ok(top) = Digest::try_from(record.target.digest()) else {
                    continue;
                };
                let manifest = select_manifest(&content, reference, &top, &source.platform)?;
                return Ok(ResolvedBase {
                    reference: reference.clone(),
                    config: config_of(&content, &manifest)?,
                    manifest_digest: manifest,
                    pull: None,
                });
            }
        }
        let parsed = parsed.map_err(|source| WorkerError::Reference {
            reference: reference.clone(),
            source: Box::new(source),
        })?;
        let Some(client) = &self.options.registry else {
            return Err(WorkerError::ImageNotLocal {
                reference: reference.clone(),
            });
        };
        let platform = &source.platform;
        let image = client
            .resolve(&parsed, platform)
            .map_err(|e| WorkerError::Pull {
                reference: reference.clone(),
                source: Box::new(e),
            })?;
        let manifest_digest =
            Digest::try_from(&image.manifest.digest).map_err(|e| bad(reference, e.to_string()))?;
        Ok(ResolvedBase {
            reference: reference.clone(),
            manifest_digest,
            config: image.config,
            pull: Some((parsed, image.manifest, image.config_descriptor)),
        })
    }

    /// Makes the image's layers a snapshot chain; the output is its top snapshot.
    pub(super) fn image_source(
        &self,
        source: &ImageSource,
        ctx: &ExecContext<'_>,
    ) -> Result<WorkerRef, WorkerError> {
        let base = self.resolve_image(source)?;
        let content = self.store.content();
        let mut pull = None;
        if let Some((reference, manifest, config)) = &base.pull {
            // Only the manifest and the config now: the layers are pulled when a step needs
            // the files (a push to the same registry may need none of them).
            let sink = LocalBlobs::new(content.clone(), Some(&self.lease));
            let store = |descriptor: &img_registry::Descriptor, bytes: &[u8]| {
                use img_registry::BlobSink;
                if sink.contains(descriptor.digest())? {
                    return Ok(());
                }
                let mut writer = sink.begin(descriptor)?;
                std::io::Write::write_all(&mut writer, bytes)?;
                writer.commit()
            };
            store(config, &base.config)
                .and_then(|()| store(&manifest.descriptor(), &manifest.bytes))
                .map_err(|e| bad(&base.reference, format!("cannot store the manifest: {e}")))?;
            ctx.log(
                img_solver::LogStream::Stderr,
                format!("resolved {reference} to {}\n", manifest.digest).as_bytes(),
            );
            pull = Some(Box::new((reference.clone(), manifest.descriptor())));
        }
        self.lease
            .add_blob(&base.manifest_digest)
            .map_err(WorkerError::Lease)?;
        self.lazy_image(&base.reference, &base.manifest_digest, pull)
    }

    /// A base image as a lazy result: its chain of layer snapshots, unpacked when a step
    /// first needs the files.
    fn lazy_image(
        &self,
        reference: &str,
        manifest: &Digest,
        pull: Option<Box<(Reference, img_registry::Descriptor)>>,
    ) -> Result<WorkerRef, WorkerError> {
        let content = self.store.content();
        let parts = image_parts(&content, manifest)?;
        let layers = parts
            .layers
            .iter()
            .zip(&parts.diff_ids)
            .zip(chain_ids(&parts.diff_ids))
            .map(
                |(((digest, media_type, size), diff_id), chain_id)| LazyLayer {
                    layer: img_remote_cache::CacheLayer::new(
                        digest.to_oci(),
                        *size,
                        media_type.clone(),
                        diff_id.to_oci(),
                    ),
                    digest: *digest,
                    diff_id: *diff_id,
                    key: self.layer_key(&chain_id),
                },
            )
            .collect();
        let origin = Origin::Image {
            reference: reference.to_owned(),
            pull,
        };
        self.lazy_result(origin, layers, Some(*manifest))
    }

    /// Makes a stored image's layers a snapshot chain, one committed snapshot per layer keyed
    /// by chain id (existing ones are reused), and returns its top. `img pull` calls it so
    /// that, as with `docker pull`, a build on the image starts without unpacking; `log`
    /// receives a line for each layer entry that could not be reproduced here.
    pub fn unpack_image(
        &self,
        reference: &str,
        manifest: &Digest,
        log: &dyn Fn(&str),
    ) -> Result<WorkerRef, WorkerError> {
        let content = self.store.content();
        let parts = image_parts(&content, manifest)?;
        let chain = chain_ids(&parts.diff_ids);
        let mut parent: Option<String> = None;
        for (i, chain_id) in chain.iter().enumerate() {
            // Per backend: an overlayfs layer snapshot holds only its diff, a native one the
            // whole tree, so neither can stand for the other.
            let key = format!("layer/{}/{chain_id}", self.snapshotter.backend());
            // Checked and leased in one step, so a concurrent prune cannot take it between.
            match self.snapshotter.lease_existing(&key, &[]) {
                Ok(Some(_)) => {}
                Ok(None) => {
                    let (layer, _, _) = &parts.layers[i];
                    let parent_ref = parent.as_ref().map(|key| WorkerRef::Snapshot {
                        key: key.clone(),
                        image: None,
                    });
                    let active = self.prepare(parent_ref.as_ref())?;
                    let report = self.snapshotter.apply(active.key(), &content, layer)?;
                    // What could not be reproduced here (a device node, an owner outside the
                    // id mapping) is skipped, as rootless BuildKit does, and said.
                    for warning in &report.warnings {
                        log(&format!("warning: layer {layer}: {warning:?}\n"));
                    }
                    if report.diff_id != parts.diff_ids[i] {
                        return Err(WorkerError::DiffIdMismatch {
                            reference: reference.to_owned(),
                            layer: layer.to_string(),
                            expected: parts.diff_ids[i].to_string(),
                            actual: report.diff_id.to_string(),
                        });
                    }
                    active.commit_shared(&key)?;
                    // Another build may have committed this name first.
                    self.lease.add_snapshot(&key).map_err(WorkerError::Lease)?;
                }
                Err(e) => return Err(e.into()),
            }
            parent = Some(key);
        }
        let key = match parent {
            Some(key) => key,
            None => {
                // An image without layers is an empty filesystem.
                let key = format!("layer/{}/empty", self.snapshotter.backend());
                if self.snapshotter.stat(&key).is_err() {
                    self.prepare(None)?.commit_shared(&key)?;
                }
                key
            }
        };
        Ok(WorkerRef::Snapshot {
            key,
            image: Some(*manifest),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_oci_definition() {
        let a: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        let b: Digest = format!("sha256:{}", "b".repeat(64)).parse().unwrap();
        let chain = chain_ids(&[a, b]);
        assert_eq!(chain[0], a);
        let want = hex_of(&Sha256::digest(format!("{a} {b}").as_bytes()));
        assert_eq!(chain[1].hex(), want);
    }
}
