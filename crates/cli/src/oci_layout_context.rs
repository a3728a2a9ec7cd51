//! `--build-context NAME=oci-layout://PATH[:TAG][@DIGEST]`: an image read from a local OCI
//! image layout directory instead of a registry, as buildx reads it.
//!
//! Without a digest the tag (default `latest`) is looked up among the layout index's
//! `org.opencontainers.image.ref.name` annotations, and a layout holding a single image is
//! that image whatever its tag. Before the build, the blobs of the chosen image are copied
//! into the content store, each checked against its digest; the build then names the image
//! by a digest-pinned reference under the reserved `.invalid` domain, which the worker finds
//! in the content store and which can never reach a registry.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use img_snapshot::{ContentStore, Digest, Lease};

/// JSON documents of a layout (its index, manifests, configs) are read up to this size.
const JSON_LIMIT: u64 = 16 << 20;
/// The tag looked up when the context names none, as buildx does.
const DEFAULT_TAG: &str = "latest";
/// The annotation an OCI layout's index names its images by.
const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// An index or manifest list nests this deep at most; deeper is refused as a loop.
const MAX_DEPTH: usize = 8;

/// An image in a local OCI layout, resolved to its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciLayoutImage {
    /// The layout directory.
    pub layout: PathBuf,
    /// The digest of the image's manifest or index.
    pub digest: Digest,
}

impl OciLayoutImage {
    /// Resolves `value` (what follows `oci-layout://`): `PATH[:TAG][@DIGEST]`. As in buildx,
    /// the path ends at its first `:`.
    pub fn resolve(value: &str) -> anyhow::Result<OciLayoutImage> {
        let (rest, digest) = match value.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest)),
            None => (value, None),
        };
        let (path, tag) = match rest.split_once(':') {
            Some((path, tag)) => (path, tag),
            None => (rest, DEFAULT_TAG),
        };
        if path.is_empty() {
            bail!("oci-layout://{value}: the layout path is empty");
        }
        let layout = PathBuf::from(path);
        let index_path = layout.join("index.json");
        let index: oci_spec::image::ImageIndex = read_json(&index_path).with_context(|| {
            format!(
                "oci-layout://{value}: {} is not an OCI image layout (give a directory holding index.json and blobs/)",
                layout.display()
            )
        })?;
        let digest = match digest {
            Some(digest) => digest.parse::<Digest>().map_err(|e| {
                anyhow::anyhow!("oci-layout://{value}: {digest:?} is not a digest: {e}")
            })?,
            None => {
                let manifests = index.manifests();
                let tagged = manifests.iter().find(|m| {
                    m.annotations()
                        .as_ref()
                        .and_then(|a| a.get(REF_NAME))
                        .is_some_and(|name| name == tag)
                });
                let chosen = match (tagged, manifests.as_slice()) {
                    (Some(found), _) => found,
                    (None, [only]) => only,
                    (None, _) => bail!(
                        "oci-layout://{value}: {} names no image {tag:?} and holds {} images; give the tag its index names, or @DIGEST",
                        index_path.display(),
                        manifests.len()
                    ),
                };
                chosen.digest().to_string().parse::<Digest>().map_err(|e| {
                    anyhow::anyhow!("oci-layout://{value}: the index names a bad digest: {e}")
                })?
            }
        };
        let image = OciLayoutImage { layout, digest };
        if !image.blob_path(&image.digest).is_file() {
            bail!(
                "oci-layout://{value}: the layout has no blob {}",
                image.digest
            );
        }
        Ok(image)
    }

    /// The reference the build names this image by: pinned to its digest, under a domain
    /// that never resolves (RFC 2606), so it is only ever found in the content store.
    pub fn reference(&self, name: &str) -> String {
        let repository: String = name
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let repository = repository.trim_matches('-');
        let repository = if repository.is_empty() {
            "context"
        } else {
            repository
        };
        format!("oci-layout.invalid/{repository}@{}", self.digest)
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        let text = digest.to_string();
        let (algorithm, hex) = text.split_once(':').unwrap_or(("sha256", &text));
        self.layout.join("blobs").join(algorithm).join(hex)
    }

    /// Copies the image's blobs into `content` under `lease`: the index or manifest, and for
    /// each manifest its config and layers. Manifests an index names but the layout lacks
    /// (other platforms of a partial copy) are skipped; the worker says so if the build's
    /// platform is among them.
    pub fn import(&self, content: &ContentStore, lease: &Lease) -> anyhow::Result<()> {
        self.import_blob(content, lease, &self.digest, 0)
    }

    fn import_blob(
        &self,
        content: &ContentStore,
        lease: &Lease,
        digest: &Digest,
        depth: usize,
    ) -> anyhow::Result<()> {
        if depth > MAX_DEPTH {
            bail!(
                "{}: indexes nest deeper than {MAX_DEPTH} levels",
                self.layout.display()
            );
        }
        let bytes = self.copy_blob(content, lease, digest, true)?;
        let document: serde_json::Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("blob {digest} of {} is not JSON", self.layout.display()))?;
        if let Some(manifests) = document.get("manifests").and_then(|m| m.as_array()) {
            for entry in manifests {
                let child = descriptor_digest(entry)?;
                if self.blob_path(&child).is_file() {
                    self.import_blob(content, lease, &child, depth + 1)?;
                }
            }
            return Ok(());
        }
        let config = document
            .get("config")
            .with_context(|| format!("blob {digest} is neither an index nor a manifest"))?;
        self.copy_blob(content, lease, &descriptor_digest(config)?, false)?;
        for layer in document
            .get("layers")
            .and_then(|l| l.as_array())
            .into_iter()
            .flatten()
        {
            self.copy_blob(content, lease, &descriptor_digest(layer)?, false)?;
        }
        Ok(())
    }

    /// Copies one blob, checked against its digest; returns its bytes when `keep` (a JSON
    /// document to follow).
    fn copy_blob(
        &self,
        content: &ContentStore,
        lease: &Lease,
        digest: &Digest,
        keep: bool,
    ) -> anyhow::Result<Vec<u8>> {
        let path = self.blob_path(digest);
        if content.exists(digest) && !keep {
            lease.add_blob(digest)?;
            return Ok(Vec::new());
        }
        let file = std::fs::File::open(&path)
            .with_context(|| format!("the layout {} lacks blob {digest}", self.layout.display()))?;
        let mut kept = Vec::new();
        let mut writer = content.ingest(Some(digest))?.with_lease(lease);
        if keep {
            file.take(JSON_LIMIT + 1).read_to_end(&mut kept)?;
            if kept.len() as u64 > JSON_LIMIT {
                bail!("{}: larger than a manifest can be", path.display());
            }
            std::io::Write::write_all(&mut writer, &kept)?;
        } else {
            std::io::copy(&mut std::io::BufReader::new(file), &mut writer)?;
        }
        writer
            .commit()
            .with_context(|| format!("{} does not match its digest", path.display()))?;
        Ok(kept)
    }
}

fn descriptor_digest(descriptor: &serde_json::Value) -> anyhow::Result<Digest> {
    let text = descriptor
        .get("digest")
        .and_then(|d| d.as_str())
        .context("a descriptor without a digest")?;
    text.parse::<Digest>()
        .map_err(|e| anyhow::anyhow!("a descriptor with a bad digest {text:?}: {e}"))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(JSON_LIMIT + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > JSON_LIMIT {
        bail!("{} is larger than 16 MiB", path.display());
    }
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not valid JSON", path.display()))
}
