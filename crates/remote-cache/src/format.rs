//! The cache format, version 1: a config blob mapping cache keys to chains of layers.
//!
//! The config is carried as the config blob of an OCI image manifest (media type
//! [`CACHE_CONFIG_MEDIA_TYPE`]) whose `layers` are every layer the config names, so a registry
//! keeps them alive and copies them with the manifest. `docs/cache-format.md` describes it for
//! readers outside this crate.

use std::collections::{BTreeMap, HashMap};

use img_registry::{Descriptor, Digest, OCI_MANIFEST};
use serde::{Deserialize, Serialize};

use crate::error::CacheError;

/// The media type of the cache config blob.
pub const CACHE_CONFIG_MEDIA_TYPE: &str = "application/vnd.img.cache.config.v1+json";

/// The format version this crate writes and reads. A reader refuses other versions rather
/// than guess at them (the build then runs without that cache).
pub const FORMAT_VERSION: u32 = 1;

/// One layer blob of the cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheLayer {
    /// The blob's digest.
    pub digest: Digest,
    /// The blob's size in bytes.
    pub size: u64,
    /// The blob's media type (an OCI layer type, which says its compression).
    pub media_type: String,
    /// The digest of the uncompressed tar (an image config's `rootfs.diff_ids` entry): chain
    /// ids, and so the snapshot a layer is unpacked into, derive from it.
    pub diff_id: Digest,
}

impl CacheLayer {
    /// A layer descriptor.
    pub fn new(digest: Digest, size: u64, media_type: impl Into<String>, diff_id: Digest) -> Self {
        CacheLayer {
            digest,
            size,
            media_type: media_type.into(),
            diff_id,
        }
    }

    /// The OCI descriptor of the blob.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(
            self.media_type.as_str().into(),
            self.size,
            self.digest.clone(),
        )
    }
}

/// A cached result: the op's cache key and the layers, from the bottom up, whose stack is the
/// op's filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheRecord {
    /// The solver's cache key (`sha256:…`).
    pub key: String,
    /// Indexes into [`CacheConfig::layers`], bottom first.
    pub chain: Vec<usize>,
}

/// The content of a `RUN --mount=type=cache` directory, as one layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheMountEntry {
    /// The cache mount's id (its target path when the Dockerfile names no id).
    pub id: String,
    /// Index into [`CacheConfig::layers`].
    pub layer: usize,
}

/// The cache config: what a cache holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheConfig {
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// Every layer blob, each once.
    pub layers: Vec<CacheLayer>,
    /// Cached results by key.
    pub records: Vec<CacheRecord>,
    /// Cache mount contents by id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cache_mounts: Vec<CacheMountEntry>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            version: FORMAT_VERSION,
            layers: Vec::new(),
            records: Vec::new(),
            cache_mounts: Vec::new(),
        }
    }
}

impl CacheConfig {
    /// Parses and checks a config read from `location` (for messages): the version, and that
    /// every index points at a layer.
    pub fn from_bytes(location: &str, bytes: &[u8]) -> Result<CacheConfig, CacheError> {
        // The version is read on its own first, so a future format with other fields is
        // reported as a version mismatch rather than as malformed.
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let malformed = |problem: String| CacheError::Malformed {
            location: location.to_owned(),
            problem,
        };
        let version: Version =
            serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
        if version.version != FORMAT_VERSION {
            return Err(CacheError::UnsupportedVersion {
                location: location.to_owned(),
                version: version.version,
            });
        }
        let config: CacheConfig =
            serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
        config.check().map_err(malformed)?;
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        let count = self.layers.len();
        for record in &self.records {
            if let Some(bad) = record.chain.iter().find(|&&i| i >= count) {
                return Err(format!(
                    "record {} names layer {bad} of {count}",
                    record.key
                ));
            }
        }
        for mount in &self.cache_mounts {
            if mount.layer >= count {
                return Err(format!(
                    "cache mount {:?} names layer {} of {count}",
                    mount.id, mount.layer
                ));
            }
        }
        Ok(())
    }

    /// The config as JSON bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Plain data always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The layer chain cached under `key`, bottom first.
    pub fn lookup(&self, key: &str) -> Option<Vec<&CacheLayer>> {
        let record = self.records.iter().find(|r| r.key == key)?;
        Some(record.chain.iter().map(|&i| &self.layers[i]).collect())
    }

    /// The layer holding cache mount `id`'s content.
    pub fn cache_mount(&self, id: &str) -> Option<&CacheLayer> {
        let entry = self.cache_mounts.iter().find(|m| m.id == id)?;
        self.layers.get(entry.layer)
    }

    /// The OCI image manifest carrying this config, whose config blob is `config` (the bytes
    /// of [`CacheConfig::to_bytes`]) and whose layers are every layer of the cache.
    pub fn manifest(&self, config: &[u8]) -> Vec<u8> {
        let config_digest = img_registry::sha256_digest(config);
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": CACHE_CONFIG_MEDIA_TYPE,
            "config": {
                "mediaType": CACHE_CONFIG_MEDIA_TYPE,
                "digest": config_digest.to_string(),
                "size": config.len(),
            },
            "layers": self.layers.iter().map(|l| serde_json::json!({
                "mediaType": l.media_type,
                "digest": l.digest.to_string(),
                "size": l.size,
            })).collect::<Vec<_>>(),
        });
        serde_json::to_vec(&manifest).unwrap_or_default()
    }
}

/// Builds a [`CacheConfig`], storing each layer once however many records share it.
#[derive(Debug, Default)]
pub struct CacheBuilder {
    layers: Vec<CacheLayer>,
    index: HashMap<Digest, usize>,
    records: BTreeMap<String, Vec<usize>>,
    mounts: BTreeMap<String, usize>,
}

impl CacheBuilder {
    /// An empty cache.
    pub fn new() -> Self {
        CacheBuilder::default()
    }

    fn layer_index(&mut self, layer: &CacheLayer) -> usize {
        if let Some(&i) = self.index.get(&layer.digest) {
            return i;
        }
        self.layers.push(layer.clone());
        self.index
            .insert(layer.digest.clone(), self.layers.len() - 1);
        self.layers.len() - 1
    }

    /// Records that the result keyed `key` is the stack of `chain`, bottom first. A key added
    /// twice keeps its last chain.
    pub fn add_record(&mut self, key: &str, chain: &[CacheLayer]) {
        let chain = chain.iter().map(|l| self.layer_index(l)).collect();
        self.records.insert(key.to_owned(), chain);
    }

    /// Records cache mount `id`'s content as `layer`.
    pub fn add_cache_mount(&mut self, id: &str, layer: &CacheLayer) {
        let index = self.layer_index(layer);
        self.mounts.insert(id.to_owned(), index);
    }

    /// How many records were added.
    pub fn record_count(&self) -> usize {
        self.records.len()
    }

    /// The config: records sorted by key, so the same build gives the same bytes.
    pub fn build(self) -> CacheConfig {
        CacheConfig {
            version: FORMAT_VERSION,
            layers: self.layers,
            records: self
                .records
                .into_iter()
                .map(|(key, chain)| CacheRecord { key, chain })
                .collect(),
            cache_mounts: self
                .mounts
                .into_iter()
                .map(|(id, layer)| CacheMountEntry { id, layer })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(n: u8) -> CacheLayer {
        let d = img_registry::sha256_digest(&[n]);
        CacheLayer::new(d.clone(), 1, "application/vnd.oci.image.layer.v1.tar", d)
    }

    #[test]
    fn shared_layers_are_stored_once_and_round_trip() {
        let mut b = CacheBuilder::new();
        b.add_record("sha256:aa", &[layer(1)]);
        b.add_record("sha256:bb", &[layer(1), layer(2)]);
        b.add_cache_mount("/root/.cache", &layer(3));
        let config = b.build();
        assert_eq!(config.layers.len(), 3);
        let back = CacheConfig::from_bytes("test", &config.to_bytes()).unwrap();
        assert_eq!(back, config);
        let chain = back.lookup("sha256:bb").unwrap();
        assert_eq!(chain, vec![&layer(1), &layer(2)]);
        assert_eq!(back.cache_mount("/root/.cache"), Some(&layer(3)));
        assert!(back.lookup("sha256:cc").is_none());
    }

    #[test]
    fn other_versions_and_dangling_indexes_are_refused() {
        let err = CacheConfig::from_bytes("x", br#"{"version": 2, "new": []}"#).unwrap_err();
        assert!(matches!(
            err,
            CacheError::UnsupportedVersion { version: 2, .. }
        ));
        let bad = br#"{"version": 1, "layers": [], "records": [{"key": "k", "chain": [0]}]}"#;
        let err = CacheConfig::from_bytes("x", bad).unwrap_err();
        assert!(err.to_string().contains("names layer 0 of 0"), "{err}");
        assert!(CacheConfig::from_bytes("x", b"not json").is_err());
    }

    #[test]
    fn manifest_lists_every_layer_under_the_cache_config() {
        let mut b = CacheBuilder::new();
        b.add_record("k", &[layer(1), layer(2)]);
        let config = b.build();
        let bytes = config.to_bytes();
        let manifest: serde_json::Value = serde_json::from_slice(&config.manifest(&bytes)).unwrap();
        assert_eq!(manifest["config"]["mediaType"], CACHE_CONFIG_MEDIA_TYPE);
        assert_eq!(
            manifest["config"]["digest"],
            img_registry::sha256_digest(&bytes).to_string()
        );
        assert_eq!(manifest["layers"].as_array().unwrap().len(), 2);
    }
}
