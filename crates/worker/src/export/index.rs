//! Multi-platform results: one image per platform gathered under an OCI image index, each
//! entry carrying its platform, as BuildKit's image exporter writes it. The index goes where a
//! single image would: the image store, an OCI archive, a registry.

use std::collections::BTreeMap;

use img_llb::Platform;
use img_snapshot::{Digest, Store};
use oci_spec::image::{Descriptor, MediaType};
use serde_json::json;

use super::{write_blob, ExportError, ExportedImage, OCI_MANIFEST};
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
    /// Each platform and its image.
    pub images: Vec<(Platform, ExportedImage)>,
    /// Annotations for the index's own descriptor (`--annotation index-descriptor:…`), written
    /// where a descriptor of it is: an OCI layout's `index.json`.
    pub descriptor_annotations: BTreeMap<String, String>,
}

impl ExportedIndex {
    /// The descriptor of the index, for an image store or an archive's `index.json`.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(
            MediaType::ImageIndex,
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
        "mediaType": OCI_MANIFEST,
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

/// Writes the index of `images` (one per platform, in order) to the content store, where the
/// worker's lease keeps it.
pub fn export_index(
    worker: &Worker,
    images: Vec<(Platform, ExportedImage)>,
    annotations: &IndexAnnotations,
) -> Result<ExportedIndex, ExportError> {
    let mut index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": images.iter().map(|(p, i)| entry(p, i)).collect::<Vec<_>>(),
    });
    if !annotations.index.is_empty() {
        index["annotations"] = json!(annotations.index);
    }
    let bytes = serde_json::to_vec(&index).map_err(ExportError::Json)?;
    let digest = write_blob(&worker.store().content(), worker, &bytes)?;
    Ok(ExportedIndex {
        digest,
        bytes,
        images,
        descriptor_annotations: annotations.descriptor.clone(),
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
