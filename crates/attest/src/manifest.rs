//! The attestation manifest: how BuildKit stores an image's statements next to it in the
//! image index.
//!
//! Each statement is a layer (`application/vnd.in-toto+json`, annotated with its predicate
//! type); the config is an image config for `unknown/unknown` whose `diff_ids` are the layers'
//! digests; the manifest's entry in the index has platform `unknown/unknown` (so no runtime
//! pulls it) and the annotations `vnd.docker.reference.type=attestation-manifest` and
//! `vnd.docker.reference.digest=<the image manifest's digest>`. The entries go after all the
//! image manifests in the index.

use std::collections::HashMap;

use img_llb::Digest;
use oci_spec::image::{Arch, Descriptor, MediaType, Os, Platform as OciPlatform};
use serde_json::json;

use crate::statement::Statement;

/// The media type of an in-toto statement layer.
pub const IN_TOTO_MEDIA_TYPE: &str = "application/vnd.in-toto+json";
/// The layer annotation naming the statement's predicate type.
pub const PREDICATE_TYPE_ANNOTATION: &str = "in-toto.io/predicate-type";
/// The index-entry annotation saying what the manifest is.
pub const REFERENCE_TYPE_ANNOTATION: &str = "vnd.docker.reference.type";
/// Its value for attestation manifests.
pub const ATTESTATION_MANIFEST_TYPE: &str = "attestation-manifest";
/// The index-entry annotation naming the image manifest attested.
pub const REFERENCE_DIGEST_ANNOTATION: &str = "vnd.docker.reference.digest";

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// A blob to store: its bytes, their digest and the descriptor that points at it.
#[derive(Debug, Clone, PartialEq)]
pub struct Blob {
    /// The content.
    pub bytes: Vec<u8>,
    /// sha256 of the content.
    pub digest: Digest,
    /// The descriptor (media type, digest, size, annotations).
    pub descriptor: Descriptor,
}

impl Blob {
    fn new(bytes: Vec<u8>, media_type: &str, annotations: Option<HashMap<String, String>>) -> Self {
        let digest = Digest::of(&bytes);
        let mut descriptor = Descriptor::new(
            MediaType::from(media_type),
            bytes.len() as u64,
            digest.to_oci(),
        );
        descriptor.set_annotations(annotations);
        Blob {
            bytes,
            digest,
            descriptor,
        }
    }
}

/// Everything an exporter writes for one image's attestations.
#[derive(Debug, Clone, PartialEq)]
pub struct AttestationManifest {
    /// One blob per statement, in the order given.
    pub layers: Vec<Blob>,
    /// The config blob.
    pub config: Blob,
    /// The manifest blob. Its descriptor has no platform or annotations: use
    /// [`AttestationManifest::index_entry`] in the index.
    pub manifest: Blob,
    /// The manifest's entry in the image index: platform `unknown/unknown` and the reference
    /// annotations.
    pub index_entry: Descriptor,
}

impl AttestationManifest {
    /// Lays out `statements` about the image manifest `image_manifest`. `oci_media_types`
    /// chooses OCI or Docker media types for the manifest and config, as the image's own
    /// (`oci-mediatypes=`); with Docker types the layers carry no annotations, as BuildKit
    /// writes them.
    pub fn new(statements: &[Statement], image_manifest: &Digest, oci_media_types: bool) -> Self {
        let (manifest_type, config_type) = if oci_media_types {
            (OCI_MANIFEST, OCI_CONFIG)
        } else {
            (DOCKER_MANIFEST, DOCKER_CONFIG)
        };
        let layers: Vec<Blob> = statements
            .iter()
            .map(|statement| {
                let annotations = oci_media_types.then(|| {
                    HashMap::from([(
                        PREDICATE_TYPE_ANNOTATION.to_string(),
                        statement.predicate_type.clone(),
                    )])
                });
                Blob::new(statement.to_json(), IN_TOTO_MEDIA_TYPE, annotations)
            })
            .collect();

        // The config is an image config only for registries' sake: unknown/unknown, and the
        // layers' digests as diff_ids (they are stored uncompressed).
        let diff_ids: Vec<String> = layers.iter().map(|l| l.digest.to_string()).collect();
        let config = json!({
            "architecture": "unknown",
            "os": "unknown",
            "config": {},
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
        });
        let config = Blob::new(
            serde_json::to_vec(&config).expect("a JSON value serializes"),
            config_type,
            None,
        );

        let layer_json: Vec<serde_json::Value> = layers
            .iter()
            .map(|layer| serde_json::to_value(&layer.descriptor).expect("a descriptor serializes"))
            .collect();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": serde_json::to_value(&config.descriptor).expect("a descriptor serializes"),
            "layers": layer_json,
        });
        // BuildKit indents manifests with two spaces.
        let manifest = Blob::new(
            serde_json::to_vec_pretty(&manifest).expect("a JSON value serializes"),
            manifest_type,
            None,
        );

        let mut index_entry = manifest.descriptor.clone();
        let mut platform = OciPlatform::default();
        platform.set_architecture(Arch::Other("unknown".to_string()));
        platform.set_os(Os::Other("unknown".to_string()));
        index_entry.set_platform(Some(platform));
        index_entry.set_annotations(Some(HashMap::from([
            (
                REFERENCE_TYPE_ANNOTATION.to_string(),
                ATTESTATION_MANIFEST_TYPE.to_string(),
            ),
            (
                REFERENCE_DIGEST_ANNOTATION.to_string(),
                image_manifest.to_string(),
            ),
        ])));

        AttestationManifest {
            layers,
            config,
            manifest,
            index_entry,
        }
    }

    /// Every blob to store (layers, config, manifest), in the order a store should write them
    /// so that nothing points at a missing blob.
    pub fn blobs(&self) -> impl Iterator<Item = &Blob> {
        self.layers
            .iter()
            .chain(std::iter::once(&self.config))
            .chain(std::iter::once(&self.manifest))
    }
}
