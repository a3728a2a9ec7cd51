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

/// How the store names an image built without a name (`docker build .`): this prefix and the
/// manifest digest. Every name the user gives is stored fully qualified (`docker.io/...`), so
/// no user name can take this form.
const UNTAGGED_PREFIX: &str = "untagged@";

/// The store's name for an image built without a name.
pub fn untagged_name(manifest: &Digest) -> String {
    format!("{UNTAGGED_PREFIX}{manifest}")
}

/// Whether a stored name is that of an image built without a name.
pub fn is_untagged(name: &str) -> bool {
    name.starts_with(UNTAGGED_PREFIX)
}

/// The short name Docker shows (`busybox:latest`; `<none>` for an untagged image), or the
/// stored name if it does not parse.
pub fn familiar(name: &str) -> String {
    if is_untagged(name) {
        return "<none>".to_owned();
    }
    Reference::parse(name).map_or_else(|_| name.to_owned(), |r| r.familiar())
}

/// The image ID Docker shows: the config digest of an image manifest (what `docker images`,
/// `docker build -q` and `--iidfile` print); for an index, the index's own digest, as Docker's
/// containerd image store does.
pub fn image_id(content: &ContentStore, target: &Descriptor) -> anyhow::Result<Digest> {
    let digest = digest_of(target)?;
    let bytes = content
        .read_blob(&digest)
        .with_context(|| format!("cannot read manifest {digest}"))?;
    if is_index(target.media_type().as_ref(), &bytes) {
        return Ok(digest);
    }
    let manifest: ImageManifest = serde_json::from_slice(&bytes)
        .with_context(|| format!("manifest {digest} is not an image manifest"))?;
    digest_of(manifest.config())
}

/// Docker's short form of an image ID: the first 12 hex digits.
pub fn short_id(id: &Digest) -> String {
    id.hex()[..12].to_owned()
}

/// The record for what the user typed, or an error saying how to find the stored names. A
/// name is looked up first; failing that, an image ID or a unique prefix of one (`3f2a9c`,
/// `sha256:3f2a9c…`), as Docker resolves its arguments.
pub fn find(store: &Store, input: &str) -> anyhow::Result<ImageRecord> {
    let by_name = match Reference::parse(input) {
        Ok(reference) => {
            let name = reference.to_string();
            store
                .images()
                .get(&name)
                .with_context(|| format!("cannot look up {name} in the image store"))?
        }
        Err(_) => None,
    };
    if let Some(record) = by_name {
        return Ok(record);
    }
    if let Some(records) = find_by_id(store, input)? {
        // Any record of the ID will do: they all point at the same image.
        if let Some(record) = records.into_iter().next() {
            return Ok(record);
        }
    }
    let name = stored_name(input)?;
    anyhow::bail!(
        "no image named {name} in the local store; pull or build it first (`img ls` lists the stored images)"
    )
}

/// The records of the one image whose ID starts with `input` (hex digits, optionally after
/// `sha256:`), every name of it first and its untagged record last; `None` when `input` is no
/// ID prefix or no image has it. Two images sharing the prefix is an error naming both.
pub fn find_by_id(store: &Store, input: &str) -> anyhow::Result<Option<Vec<ImageRecord>>> {
    let hex = input.strip_prefix("sha256:").unwrap_or(input);
    if hex.is_empty() || hex.len() > 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let hex = hex.to_ascii_lowercase();
    let content = store.content();
    let mut found: Vec<(Digest, ImageRecord)> = Vec::new();
    for record in store
        .images()
        .list()
        .context("cannot list the image store")?
    {
        // A name whose blobs are gone cannot be this image; it is not an error here.
        let Ok(id) = image_id(&content, &record.target) else {
            continue;
        };
        if id.hex().starts_with(&hex) {
            found.push((id, record));
        }
    }
    let Some((first, _)) = found.first() else {
        return Ok(None);
    };
    let first = *first;
    if let Some((other, _)) = found.iter().find(|(id, _)| *id != first) {
        anyhow::bail!(
            "image ID prefix {input:?} is ambiguous: it matches {} and {}; give more digits",
            short_id(&first),
            short_id(other)
        );
    }
    let mut records: Vec<ImageRecord> = found.into_iter().map(|(_, r)| r).collect();
    records.sort_by_key(|r| is_untagged(&r.name));
    Ok(Some(records))
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
    resolve_for(content, target, &Platform::host())
}

/// `--platform P` of the commands that read a stored image: parsed, or this machine's.
pub fn platform_flag(value: Option<&str>) -> anyhow::Result<Platform> {
    match value {
        Some(value) => Platform::parse(value).context("invalid --platform"),
        None => Ok(Platform::host()),
    }
}

/// The image manifest `target` leads to for `platform` (through an index), with its config.
pub fn resolve_for(
    content: &ContentStore,
    target: &Descriptor,
    host: &Platform,
) -> anyhow::Result<ImageParts> {
    let mut digest = digest_of(target)?;
    let mut media_type = target.media_type().to_string();
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
            let has: Vec<String> = index
                .manifests()
                .iter()
                .filter_map(|m| m.platform().as_ref())
                .map(|p| format!("{}/{}", p.os(), p.architecture()))
                .collect();
            bail!(
                "index {digest} has no manifest for {host} (it has {}); choose one with --platform",
                if has.is_empty() {
                    "none with a platform".to_owned()
                } else {
                    has.join(", ")
                }
            );
        };
        digest = digest_of(entry)?;
        media_type = entry.media_type().to_string();
    }
}

/// The platforms an image serves, `os/arch[/variant]`: each entry of an index (attestation
/// entries, `unknown/unknown`, left out), or the platform a single manifest's config names.
/// Empty when the blobs cannot be read.
pub fn platforms_of(content: &ContentStore, target: &Descriptor) -> Vec<String> {
    let Ok(digest) = digest_of(target) else {
        return Vec::new();
    };
    let Ok(bytes) = content.read_blob(&digest) else {
        return Vec::new();
    };
    let shown = |os: &str, arch: &str, variant: Option<&str>| {
        Platform::new(os, arch).with_variant(variant).to_string()
    };
    if is_index(target.media_type().as_ref(), &bytes) {
        let Ok(index) = serde_json::from_slice::<ImageIndex>(&bytes) else {
            return Vec::new();
        };
        return index
            .manifests()
            .iter()
            .filter_map(|m| m.platform().as_ref())
            .filter(|p| p.os().to_string() != "unknown")
            .map(|p| {
                shown(
                    &p.os().to_string(),
                    &p.architecture().to_string(),
                    p.variant().as_deref(),
                )
            })
            .collect();
    }
    let config = serde_json::from_slice::<ImageManifest>(&bytes)
        .ok()
        .and_then(|m| digest_of(m.config()).ok())
        .and_then(|d| content.read_blob(&d).ok())
        .and_then(|c| serde_json::from_slice::<serde_json::Value>(&c).ok());
    match config {
        Some(config) => match (config["os"].as_str(), config["architecture"].as_str()) {
            (Some(os), Some(arch)) => vec![shown(os, arch, config["variant"].as_str())],
            _ => Vec::new(),
        },
        None => Vec::new(),
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
