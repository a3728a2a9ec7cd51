//! Reading stored images: the manifest a name points at (through an index to this machine's
//! platform), its config and layers, and how many bytes it holds.

use std::collections::HashSet;

use anyhow::{bail, Context};
use img_registry::{Platform, Reference};
use img_snapshot::{ContentStore, Digest, ImageRecord, Store};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};

/// The media types of an index (OCI or Docker manifest list).
const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// An image manifest with its parsed config.
pub struct ImageParts {
    /// The manifest's digest.
    pub manifest_digest: Digest,
    /// The manifest.
    pub manifest: ImageManifest,
    /// The manifest as stored.
    pub manifest_bytes: Vec<u8>,
    /// The config as stored.
    pub config_bytes: Vec<u8>,
}

impl ImageParts {
    /// The config's `rootfs.diff_ids`.
    pub fn diff_ids(&self) -> anyhow::Result<Vec<Digest>> {
        let config: serde_json::Value =
            serde_json::from_slice(&self.config_bytes).context("the image config is not JSON")?;
        config["rootfs"]["diff_ids"]
            .as_array()
            .context("the image config has no rootfs.diff_ids")?
            .iter()
            .map(|d| {
                d.as_str()
                    .context("a diff_id is not a string")?
                    .parse::<Digest>()
                    .context("a diff_id is not a sha256 digest")
            })
            .collect()
    }
}

/// The store's name for what the user typed (names are stored fully qualified).
pub fn stored_name(input: &str) -> anyhow::Result<String> {
    Ok(Reference::parse(input)
        .with_context(|| format!("invalid image name {input:?}"))?
        .to_string())
}

/// The short name Docker shows (`busybox:latest`), or the stored name if it does not parse.
pub fn familiar(name: &str) -> String {
    Reference::parse(name).map_or_else(|_| name.to_owned(), |r| r.familiar())
}

/// The record for what the user typed, or an error saying how to find the stored names.
pub fn find(store: &Store, input: &str) -> anyhow::Result<ImageRecord> {
    let name = stored_name(input)?;
    store
        .images()
        .get(&name)
        .with_context(|| format!("cannot look up {name} in the image store"))?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no image named {name} in the local store; pull or build it first (`img ls` lists the stored images)"
            )
        })
}

/// A descriptor's digest in the store's type.
pub fn digest_of(descriptor: &Descriptor) -> anyhow::Result<Digest> {
    Digest::try_from(descriptor.digest()).context("the image uses a digest that is not sha256")
}

fn is_index(media_type: &str, bytes: &[u8]) -> bool {
    INDEX_TYPES.contains(&media_type)
        || serde_json::from_slice::<serde_json::Value>(bytes)
            .ok()
            .is_some_and(|v| v.get("manifests").is_some())
}

/// The image manifest `target` leads to for this machine's platform, with its config.
pub fn resolve(content: &ContentStore, target: &Descriptor) -> anyhow::Result<ImageParts> {
    let mut digest = digest_of(target)?;
    let mut media_type = target.media_type().to_string();
    let host = Platform::host();
    loop {
        let bytes = content
            .read_blob(&digest)
            .with_context(|| format!("cannot read manifest {digest}"))?;
        if !is_index(&media_type, &bytes) {
            let manifest: ImageManifest = serde_json::from_slice(&bytes)
                .with_context(|| format!("manifest {digest} is not an image manifest"))?;
            let config_digest = digest_of(manifest.config())?;
            let config_bytes = content
                .read_blob(&config_digest)
                .with_context(|| format!("cannot read the image config {config_digest}"))?;
            return Ok(ImageParts {
                manifest_digest: digest,
                manifest,
                manifest_bytes: bytes,
                config_bytes,
            });
        }
        let index: ImageIndex = serde_json::from_slice(&bytes)
            .with_context(|| format!("index {digest} is not an image index"))?;
        let entry = index
            .manifests()
            .iter()
            .find(|m| {
                m.platform().as_ref().is_some_and(|p| {
                    let p = Platform::new(p.os().to_string(), p.architecture().to_string())
                        .with_variant(p.variant().as_deref());
                    host.matches(&p)
                })
            })
            .or_else(|| match index.manifests().as_slice() {
                [only] if only.platform().is_none() => Some(only),
                _ => None,
            });
        let Some(entry) = entry else {
            bail!("index {digest} has no manifest for this machine's platform");
        };
        digest = digest_of(entry)?;
        media_type = entry.media_type().to_string();
    }
}

/// Every blob `root` references (itself included), recursively, that is stored.
pub fn blobs_of(content: &ContentStore, root: &Digest) -> Vec<Digest> {
    let mut seen = HashSet::new();
    let mut order = Vec::new();
    let mut queue = vec![*root];
    while let Some(digest) = queue.pop() {
        if !seen.insert(digest) || !content.exists(&digest) {
            continue;
        }
        order.push(digest);
        // Only manifests and indexes (small JSON) reference other blobs.
        if content.size(&digest).map_or(true, |s| s > 4 << 20) {
            continue;
        }
        let Ok(bytes) = content.read_blob(&digest) else {
            continue;
        };
        let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            continue;
        };
        let digests = ["manifests", "layers"]
            .iter()
            .filter_map(|k| doc.get(k).and_then(|v| v.as_array()))
            .flatten()
            .chain(doc.get("config"))
            .filter_map(|d| d.get("digest")?.as_str()?.parse::<Digest>().ok());
        queue.extend(digests);
    }
    order
}

/// Bytes stored for an image: its manifests, configs and layers (compressed).
pub fn stored_size(content: &ContentStore, root: &Digest) -> u64 {
    blobs_of(content, root)
        .iter()
        .filter_map(|d| content.size(d).ok())
        .sum()
}
