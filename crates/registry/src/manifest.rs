//! Manifest media types, parsing, and platform selection from an index.

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};

use img_llb::Platform;

/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest v2 schema 2 media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list media type.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// The Accept header for manifest requests. Schema 1 is deliberately absent, so a registry
/// that can convert offers schema 2 instead.
pub(crate) const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// Manifests are small JSON documents; containerd caps them at 4 MiB too.
pub(crate) const MANIFEST_SIZE_LIMIT: u64 = 4 << 20;

/// Why a manifest cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The registry served a Docker schema 1 manifest.
    #[error("{reference} uses the Docker image manifest schema 1, which is deprecated and not supported: push it again with a current tool to convert it to schema 2 or OCI")]
    Schema1 {
        /// The reference being resolved.
        reference: String,
    },
    /// The media type is neither an image manifest nor an index.
    #[error("{reference} has unsupported manifest media type {media_type:?} (expected an OCI or Docker schema 2 manifest or index)")]
    UnsupportedMediaType {
        /// The reference being resolved.
        reference: String,
        /// The media type served.
        media_type: String,
    },
    /// The JSON does not parse as the declared kind of manifest.
    #[error("invalid manifest for {reference}")]
    Invalid {
        /// The reference being resolved.
        reference: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// The index has no entry for the requested platform.
    #[error("{reference} has no image for platform {wanted}; available platforms: {}", list_platforms(.available))]
    NoMatchingPlatform {
        /// The reference being resolved.
        reference: String,
        /// The platform asked for.
        wanted: Platform,
        /// The platforms the index offers.
        available: Vec<Platform>,
    },
    /// The manifest is larger than any sane manifest.
    #[error("manifest for {reference} is {size} bytes, larger than the {limit}-byte limit")]
    TooLarge {
        /// The reference being resolved.
        reference: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A nested index was found where an image manifest was expected.
    #[error(
        "{reference}: index entry {digest} is itself an index, which is not supported for pulling"
    )]
    NestedIndex {
        /// The reference being resolved.
        reference: String,
        /// The entry's digest.
        digest: String,
    },
}

fn list_platforms(platforms: &[Platform]) -> String {
    if platforms.is_empty() {
        return "none".to_string();
    }
    platforms
        .iter()
        .map(Platform::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A parsed manifest: either one image or an index of per-platform images.
#[derive(Debug, Clone)]
pub(crate) enum Parsed {
    Image(Box<ImageManifest>),
    Index(Box<ImageIndex>),
}

/// Determines the media type of a manifest: the document's own `mediaType` field first (it is
/// what the digest covers), then the Content-Type header, then its shape.
pub(crate) fn media_type_of(bytes: &[u8], content_type: Option<&str>) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        #[serde(rename = "schemaVersion")]
        schema_version: Option<u32>,
        manifests: Option<serde_json::Value>,
        layers: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(bytes).ok()?;
    if probe.schema_version == Some(1) {
        return Some(DOCKER_SCHEMA1.to_string());
    }
    if let Some(mt) = probe.media_type.filter(|m| !m.is_empty()) {
        return Some(mt);
    }
    let header = content_type
        .map(|c| c.split(';').next().unwrap_or_default().trim())
        .filter(|c| !c.is_empty() && *c != "application/json" && *c != "text/plain");
    if let Some(h) = header {
        return Some(h.to_string());
    }
    if probe.manifests.is_some() {
        Some(OCI_INDEX.to_string())
    } else if probe.layers.is_some() {
        Some(OCI_MANIFEST.to_string())
    } else {
        None
    }
}

/// Whether `media_type` names an image manifest or an index (OCI or Docker schema 2), as
/// opposed to a blob an index may also list.
pub(crate) fn is_manifest_type(media_type: &str) -> bool {
    matches!(
        media_type,
        OCI_MANIFEST | DOCKER_MANIFEST | OCI_INDEX | DOCKER_MANIFEST_LIST
    )
}

/// Parses a manifest whose media type is known, refusing schema 1.
pub(crate) fn parse(
    reference: &str,
    media_type: &str,
    bytes: &[u8],
) -> Result<Parsed, ManifestError> {
    let invalid = |source| ManifestError::Invalid {
        reference: reference.to_string(),
        source,
    };
    match media_type {
        DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED => Err(ManifestError::Schema1 {
            reference: reference.to_string(),
        }),
        OCI_MANIFEST | DOCKER_MANIFEST => serde_json::from_slice(bytes)
            .map(|m| Parsed::Image(Box::new(m)))
            .map_err(invalid),
        OCI_INDEX | DOCKER_MANIFEST_LIST => serde_json::from_slice(bytes)
            .map(|i| Parsed::Index(Box::new(i)))
            .map_err(invalid),
        other => Err(ManifestError::UnsupportedMediaType {
            reference: reference.to_string(),
            media_type: other.to_string(),
        }),
    }
}

/// The platform an index entry declares, if any.
pub(crate) fn descriptor_platform(d: &Descriptor) -> Option<Platform> {
    let p = d.platform().as_ref()?;
    Some(
        Platform::new(p.os().to_string(), p.architecture().to_string())
            .with_variant(p.variant().as_deref()),
    )
}

/// Picks the index entry for `wanted`: an exact variant match first, then any entry whose
/// platform matches (containerd's ordering is close enough for os/arch/variant).
pub(crate) fn select_platform<'a>(
    reference: &str,
    index: &'a ImageIndex,
    wanted: &Platform,
) -> Result<&'a Descriptor, ManifestError> {
    let entries: Vec<(&Descriptor, Platform)> = index
        .manifests()
        .iter()
        .filter_map(|d| descriptor_platform(d).map(|p| (d, p)))
        .collect();
    let exact = entries.iter().find(|(_, p)| p == wanted);
    let loose = || entries.iter().find(|(_, p)| wanted.matches(p));
    match exact.or_else(loose) {
        Some((d, _)) => Ok(d),
        None => Err(ManifestError::NoMatchingPlatform {
            reference: reference.to_string(),
            wanted: wanted.clone(),
            // Attestation manifests are listed as unknown/unknown: not useful to the user.
            available: entries
                .into_iter()
                .map(|(_, p)| p)
                .filter(|p| p.os != "unknown")
                .collect(),
        }),
    }
}

/// The blobs an image manifest references that a push must upload: the config and the
/// distributable layers (foreign/non-distributable layers are skipped, as Docker does).
pub(crate) fn pushable_blobs(manifest: &ImageManifest) -> Vec<Descriptor> {
    let mut out = vec![manifest.config().clone()];
    out.extend(
        manifest
            .layers()
            .iter()
            .filter(|d| {
                let mt = d.media_type().to_string();
                !mt.contains("foreign") && !mt.contains("nondistributable")
            })
            .cloned(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
      {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,"digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","platform":{"os":"linux","architecture":"amd64"}},
      {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,"digest":"sha256:2222222222222222222222222222222222222222222222222222222222222222","platform":{"os":"linux","architecture":"arm","variant":"v6"}},
      {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,"digest":"sha256:3333333333333333333333333333333333333333333333333333333333333333","platform":{"os":"linux","architecture":"arm64","variant":"v8"}},
      {"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,"digest":"sha256:4444444444444444444444444444444444444444444444444444444444444444","platform":{"os":"unknown","architecture":"unknown"}}]}"#;

    #[test]
    fn selects_platforms() {
        let mt = media_type_of(INDEX.as_bytes(), None).unwrap();
        let Parsed::Index(index) = parse("x", &mt, INDEX.as_bytes()).unwrap() else {
            panic!("not an index")
        };
        // wanted | digest prefix chosen
        for (wanted, digit) in [
            ("linux/amd64", '1'),
            ("linux/arm/v6", '2'),
            ("linux/arm64", '3'),
        ] {
            let d = select_platform("x", &index, &wanted.parse().unwrap()).unwrap();
            assert_eq!(d.digest().digest().chars().next(), Some(digit), "{wanted}");
        }
        let err = select_platform("x", &index, &"linux/s390x".parse().unwrap()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "x has no image for platform linux/s390x; available platforms: linux/amd64, linux/arm/v6, linux/arm64"
        );
    }

    #[test]
    fn refuses_schema1() {
        let doc = br#"{"schemaVersion":1,"name":"x","tag":"latest","fsLayers":[]}"#;
        let mt = media_type_of(doc, Some("application/json")).unwrap();
        assert!(matches!(
            parse("x", &mt, doc),
            Err(ManifestError::Schema1 { .. })
        ));
        let mt = media_type_of(b"{}", Some(DOCKER_SCHEMA1_SIGNED)).unwrap();
        assert!(matches!(
            parse("x", &mt, b"{}"),
            Err(ManifestError::Schema1 { .. })
        ));
    }

    #[test]
    fn media_type_from_shape() {
        assert_eq!(
            media_type_of(br#"{"schemaVersion":2,"config":{},"layers":[]}"#, None).as_deref(),
            Some(OCI_MANIFEST)
        );
        assert_eq!(
            media_type_of(br#"{"schemaVersion":2,"layers":[]}"#, Some(DOCKER_MANIFEST)).as_deref(),
            Some(DOCKER_MANIFEST)
        );
    }
}
