//! `img load [-i FILE]`: images from a tar archive made by `img save`, `docker save`,
//! `podman save` (Docker's layout) or from an OCI image layout tar (`skopeo copy
//! oci-archive:`, Docker 25+ archives carry both). Read in one pass, so standard input
//! works: blobs stream into the content store as they come, small JSON files are kept, and
//! the names are stored at the end, once every blob they need is present.

use std::collections::HashMap;
use std::io::{self, BufRead, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use img_snapshot::{ContentStore, Digest, Lease};
use oci_spec::image::{Descriptor, MediaType};

use crate::config::Config;
use crate::image::{familiar, stored_name};

/// Protects loaded blobs from a concurrent garbage collection until their names are stored.
const LEASE_TTL: Duration = Duration::from_secs(24 * 3600);
/// JSON members (manifests, configs, index) are read into memory up to this size.
const JSON_LIMIT: u64 = 64 << 20;

/// What the archive held, by member path.
#[derive(Default)]
struct Members {
    /// Small JSON files (`manifest.json`, `index.json`, `<config>.json`).
    json: HashMap<PathBuf, Vec<u8>>,
    /// Files stored as blobs.
    blobs: HashMap<PathBuf, Digest>,
    /// Symbolic links (older `docker save` links repeated layers), resolved to member paths.
    links: HashMap<PathBuf, PathBuf>,
}

impl Members {
    fn resolve(&self, path: &Path) -> PathBuf {
        let mut path = normalize(path);
        for _ in 0..16 {
            match self.links.get(&path) {
                Some(target) => path = target.clone(),
                None => break,
            }
        }
        path
    }

    fn json(&self, path: &Path) -> Option<&[u8]> {
        self.json.get(&self.resolve(path)).map(Vec::as_slice)
    }

    fn blob(&self, path: &Path) -> Option<&Digest> {
        self.blobs.get(&self.resolve(path))
    }
}

/// `a/./b/../c` -> `a/c`, without leaving the archive root.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

pub fn run(config: &Config, input: Option<&Path>) -> anyhow::Result<()> {
    let store = config.open_store()?;
    let lease = store
        .lease(LEASE_TTL)
        .context("cannot protect the loaded blobs from garbage collection")?;
    let content = store.content();
    let members = match input {
        Some(path) => {
            let file = std::fs::File::open(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            read_archive(&content, &lease, io::BufReader::new(file))
        }
        None => read_archive(&content, &lease, io::stdin().lock()),
    }
    .context("cannot read the image archive")?;

    // An OCI index names images by annotation; Docker 25+ archives carry both files, and an
    // index without names falls back to Docker's manifest.json when there is one.
    let has_docker_manifest = members.json(Path::new("manifest.json")).is_some();
    let names = match members
        .json(Path::new("index.json"))
        .map(|_| oci_names(&content, &members))
    {
        Some(Ok(names)) => names,
        Some(Err(_)) | None if has_docker_manifest => docker_names(&content, &lease, &members)?,
        Some(Err(err)) => return Err(err),
        None => {
            bail!("the archive has neither manifest.json (docker save) nor index.json (OCI layout)")
        }
    };
    if names.is_empty() {
        bail!("the archive names no image; nothing was loaded");
    }
    let mut out = io::stdout().lock();
    for (name, descriptor) in names {
        store
            .images()
            .put(&name, &descriptor)
            .with_context(|| format!("cannot name the loaded image {name}"))?;
        writeln!(out, "Loaded image: {}", familiar(&name))?;
    }
    drop(lease);
    Ok(())
}

/// Streams the archive: JSON into memory, everything else into the content store (checked
/// against its name when the member is `blobs/sha256/<hex>`).
fn read_archive(
    content: &ContentStore,
    lease: &Lease,
    input: impl BufRead,
) -> anyhow::Result<Members> {
    let mut members = Members::default();
    let mut archive = tar::Archive::new(input);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = normalize(&entry.path()?);
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            if let Some(target) = entry.link_name()? {
                let target = if kind.is_symlink() {
                    normalize(&path.parent().unwrap_or(Path::new("")).join(target))
                } else {
                    normalize(&target)
                };
                members.links.insert(path, target);
            }
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let expected: Option<Digest> = path
            .strip_prefix("blobs/sha256")
            .ok()
            .and_then(|hex| format!("sha256:{}", hex.display()).parse().ok());
        let is_json = name.ends_with(".json") && expected.is_none();
        if is_json {
            let mut bytes = Vec::new();
            (&mut entry).take(JSON_LIMIT + 1).read_to_end(&mut bytes)?;
            if bytes.len() as u64 > JSON_LIMIT {
                bail!("{} is larger than 64 MiB", path.display());
            }
            members.json.insert(path, bytes);
            continue;
        }
        // Legacy per-layer metadata of `docker save` (`<id>/json`, `<id>/VERSION`) is unused.
        if expected.is_none() && (name == "json" || name == "VERSION" || name == "repositories") {
            continue;
        }
        let mut writer = content.ingest(expected.as_ref())?.with_lease(lease);
        io::copy(&mut entry, &mut writer)
            .with_context(|| format!("cannot store {}", path.display()))?;
        let info = writer
            .commit()
            .with_context(|| format!("cannot store {}", path.display()))?;
        members.blobs.insert(path, info.digest);
    }
    Ok(members)
}

/// Names from an OCI layout's `index.json`: containerd's full-name annotation, else an OCI
/// `ref.name` that is a whole reference (a bare tag names no repository).
fn oci_names(
    content: &ContentStore,
    members: &Members,
) -> anyhow::Result<Vec<(String, Descriptor)>> {
    let index: oci_spec::image::ImageIndex =
        serde_json::from_slice(members.json(Path::new("index.json")).unwrap_or_default())
            .context("index.json is not an OCI image index")?;
    let mut out = Vec::new();
    for entry in index.manifests() {
        let annotations = entry.annotations().clone().unwrap_or_default();
        let name = annotations.get("io.containerd.image.name").or_else(|| {
            annotations
                .get(img_snapshot::REF_NAME_ANNOTATION)
                .filter(|n| n.contains('/') || n.contains(':'))
        });
        let Some(name) = name else {
            bail!(
                "index.json entry {} has no image name (io.containerd.image.name or a full org.opencontainers.image.ref.name)",
                entry.digest()
            );
        };
        let digest = crate::image::digest_of(entry)?;
        if !content.exists(&digest) {
            bail!("the archive lacks blob {digest} that index.json names");
        }
        let mut descriptor = entry.clone();
        descriptor.set_annotations(None);
        out.push((stored_name(name)?, descriptor));
    }
    Ok(out)
}

/// Names from Docker's `manifest.json`: an OCI manifest is written for each entry (Docker's
/// archive has none), with each layer's media type from its compression.
fn docker_names(
    content: &ContentStore,
    lease: &Lease,
    members: &Members,
) -> anyhow::Result<Vec<(String, Descriptor)>> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Entry {
        config: PathBuf,
        #[serde(default)]
        repo_tags: Option<Vec<String>>,
        layers: Vec<PathBuf>,
    }
    let entries: Vec<Entry> =
        serde_json::from_slice(members.json(Path::new("manifest.json")).unwrap_or_default())
            .context("manifest.json is not a docker save manifest")?;
    let mut out = Vec::new();
    for entry in entries {
        let config_bytes = match members.json(&entry.config) {
            Some(bytes) => bytes.to_vec(),
            None => match members.blob(&entry.config) {
                Some(digest) => content.read_blob(digest)?,
                None => bail!("the archive lacks the config {}", entry.config.display()),
            },
        };
        let config = content.ingest(None)?.with_lease(lease);
        let config = {
            let mut w = config;
            w.write_all(&config_bytes)?;
            w.commit()?
        };
        let mut layers = Vec::new();
        for path in &entry.layers {
            let Some(digest) = members.blob(path) else {
                bail!("the archive lacks the layer {}", path.display());
            };
            let media_type = layer_media_type(&mut content.open(digest)?)?;
            let size = content.size(digest)?;
            layers.push(Descriptor::new(
                MediaType::Other(media_type.into()),
                size,
                digest.to_oci(),
            ));
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": Descriptor::new(MediaType::ImageConfig, config.size, config.digest.to_oci()),
            "layers": layers,
        });
        let bytes = serde_json::to_vec(&manifest)?;
        let mut w = content.ingest(None)?.with_lease(lease);
        w.write_all(&bytes)?;
        let info = w.commit()?;
        let descriptor = Descriptor::new(MediaType::ImageManifest, info.size, info.digest.to_oci());
        for tag in entry.repo_tags.unwrap_or_default() {
            out.push((stored_name(&tag)?, descriptor.clone()));
        }
    }
    Ok(out)
}

/// The layer media type for a blob, from its first bytes.
fn layer_media_type(blob: &mut impl Read) -> io::Result<&'static str> {
    let mut magic = [0u8; 4];
    let mut filled = 0;
    while filled < magic.len() {
        match blob.read(&mut magic[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(match &magic[..filled] {
        [0x1f, 0x8b, ..] => "application/vnd.oci.image.layer.v1.tar+gzip",
        [0x28, 0xb5, 0x2f, 0xfd] => "application/vnd.oci.image.layer.v1.tar+zstd",
        _ => "application/vnd.oci.image.layer.v1.tar",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_types_from_magic_bytes() {
        // first bytes | media type
        for (bytes, want) in [
            (
                &[0x1f, 0x8b, 8, 0][..],
                "application/vnd.oci.image.layer.v1.tar+gzip",
            ),
            (
                &[0x28, 0xb5, 0x2f, 0xfd][..],
                "application/vnd.oci.image.layer.v1.tar+zstd",
            ),
            (b"etc/", "application/vnd.oci.image.layer.v1.tar"),
            (b"", "application/vnd.oci.image.layer.v1.tar"),
        ] {
            assert_eq!(layer_media_type(&mut &*bytes).unwrap(), want);
        }
    }

    #[test]
    fn member_paths_stay_inside_the_archive() {
        for (path, want) in [
            ("./manifest.json", "manifest.json"),
            ("a/../b/layer.tar", "b/layer.tar"),
            ("../../etc/passwd", "etc/passwd"),
            ("/abs/x", "abs/x"),
        ] {
            assert_eq!(normalize(Path::new(path)), PathBuf::from(want), "{path}");
        }
    }
}
