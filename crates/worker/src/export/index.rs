//! Multi-platform results: one image per platform gathered under an OCI image index, each
//! entry carrying its platform, as BuildKit's image exporter writes it. The index goes where a
//! single image would: the image store, an OCI archive, a registry.
//!
//! Manifests that are not platform images (BuildKit's attestation manifests) can be attached:
//! their entries follow every image's, as BuildKit orders them, so a reader that takes the
//! first entry matching its platform never picks one.

use std::collections::BTreeMap;

use img_llb::Platform;
use img_snapshot::{Digest, Store};
use oci_spec::image::{Descriptor, MediaType};
use serde_json::json;

use super::{write_blob, ExportError, ExportedImage, MediaTypes};
use crate::worker::Worker;

/// The OCI media type of image indexes.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// An index in the content store and the images it lists, in the order of the build's
/// platforms.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportedIndex {
    /// The index's digest: the multi-platform image's identity.
    pub digest: Digest,
    /// The index bytes.
    pub bytes: Vec<u8>,
    /// The index's media type: OCI's index, or Docker's manifest list when its images have
    /// Docker's media types.
    pub media_type: String,
    /// Each platform and its image.
    pub images: Vec<(Platform, ExportedImage)>,
    /// Annotations for the index's own descriptor (`--annotation index-descriptor:…`), written
    /// where a descriptor of it is: an OCI layout's `index.json`.
    pub descriptor_annotations: BTreeMap<String, String>,
    /// The entries of the attached manifests, in index order (after the images).
    pub attached: Vec<Descriptor>,
    /// Every blob the attached manifests need, the manifests included: what an archive or a
    /// push carries besides the images.
    pub attached_blobs: Vec<Digest>,
}

impl ExportedIndex {
    /// The descriptor of the index, for an image store or an archive's `index.json`.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(
            MediaType::from(self.media_type.as_str()),
            self.bytes.len() as u64,
            self.digest.to_oci(),
        )
    }
}

/// The index entry of one platform's image.
fn entry(platform: &Platform, image: &ExportedImage) -> serde_json::Value {
    let mut platform_json = json!({
        "architecture": platform.architecture,
        "os": platform.os,
    });
    if let Some(variant) = &platform.variant {
        platform_json["variant"] = json!(variant);
    }
    let mut entry = json!({
        "mediaType": image.manifest_media_type,
        "digest": image.manifest_digest.to_string(),
        "size": image.manifest.len(),
        "platform": platform_json,
    });
    // `--annotation manifest-descriptor:…` lands on each manifest's entry in the index.
    if !image.descriptor_annotations.is_empty() {
        entry["annotations"] = json!(image.descriptor_annotations);
    }
    entry
}

/// Annotations of an index: on the index itself and on its descriptor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexAnnotations {
    /// `--annotation index:…`: in the index.
    pub index: BTreeMap<String, String>,
    /// `--annotation index-descriptor:…`: on the index's descriptor.
    pub descriptor: BTreeMap<String, String>,
}

/// A manifest listed in an index after its platform images (an attestation manifest): its
/// entry and the blobs it needs.
#[derive(Debug, Clone, PartialEq)]
pub struct AttachedManifest {
    /// The manifest's entry in the index (digest, size, platform, annotations).
    pub entry: Descriptor,
    /// Every blob, in the order they are written: what the manifest points at first, the
    /// manifest (whose digest is the entry's) last.
    pub blobs: Vec<Vec<u8>>,
}

/// Writes the index of `images` (one per platform, in order), followed by the `attached`
/// manifests, to the content store, where the worker's lease keeps it and every attached
/// blob. An index of one image is valid: that is how an image with attestations is stored.
pub fn export_index(
    worker: &Worker,
    images: Vec<(Platform, ExportedImage)>,
    attached: &[AttachedManifest],
    annotations: &IndexAnnotations,
) -> Result<ExportedIndex, ExportError> {
    let content = worker.store().content();
    let mut attached_blobs = Vec::new();
    let mut attached_entries = Vec::with_capacity(attached.len());
    for manifest in attached {
        for blob in &manifest.blobs {
            attached_blobs.push(write_blob(&content, worker, blob)?);
        }
        let written = attached_blobs.last().map(Digest::to_string);
        if written.as_deref() != Some(manifest.entry.digest().as_ref()) {
            // The caller's entry and bytes disagree: a bug, said as such rather than an
            // index pointing at a missing manifest.
            return Err(ExportError::Io {
                what: "writing an attached manifest",
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "its index entry names {} but its last blob is {}",
                        manifest.entry.digest(),
                        written.unwrap_or_default()
                    ),
                ),
            });
        }
        attached_entries.push(manifest.entry.clone());
    }
    let mut manifests: Vec<serde_json::Value> = images.iter().map(|(p, i)| entry(p, i)).collect();
    for entry in &attached_entries {
        manifests.push(serde_json::to_value(entry).map_err(ExportError::Json)?);
    }
    // The index is of the family of its images: a Docker manifest list lists Docker
    // manifests.
    let family = images
        .first()
        .and_then(|(_, image)| MediaTypes::of(&image.manifest_media_type))
        .unwrap_or_default();
    let media_type = family.index();
    let mut index = json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": manifests,
    });
    if !annotations.index.is_empty() {
        index["annotations"] = json!(annotations.index);
    }
    let bytes = serde_json::to_vec(&index).map_err(ExportError::Json)?;
    let digest = write_blob(&content, worker, &bytes)?;
    Ok(ExportedIndex {
        digest,
        bytes,
        media_type: media_type.to_owned(),
        images,
        descriptor_annotations: annotations.descriptor.clone(),
        attached: attached_entries,
        attached_blobs,
    })
}

/// Names the index in the local image store (`img build --platform a,b -t NAME`).
pub fn store_index(
    store: &Store,
    index: &ExportedIndex,
    names: &[String],
) -> Result<(), ExportError> {
    let images = store.images();
    for name in names {
        images.put(name, &index.descriptor())?;
    }
    Ok(())
}
