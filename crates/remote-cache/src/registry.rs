//! A cache in a registry (`type=registry,ref=…`), or the inline cache of an image there.

use std::sync::Arc;

use img_registry::{no_progress, BlobSink, BlobSource, Client, Platform, PushOptions, Reference};
use serde_json::Value;

use crate::backend::{CacheBackend, MemorySink, WithExtraBlobs, WriteReport};
use crate::error::CacheError;
use crate::format::{CacheConfig, CacheLayer, CACHE_CONFIG_MEDIA_TYPE};
use crate::inline;
use crate::verify::check_bytes;

/// A cache kept under a registry reference.
///
/// Written as one OCI manifest pushed after its blobs (a manifest `PUT` replaces the tag
/// atomically, so of two concurrent exporters one complete cache wins). Read back from such a
/// manifest, or from an image whose config carries an inline cache.
#[derive(Debug, Clone)]
pub struct RegistryCache {
    client: Arc<Client>,
    reference: Reference,
    mount_from: Vec<Reference>,
    platform: Platform,
}

impl RegistryCache {
    /// The cache at `reference`, reached through `client`.
    pub fn new(client: Arc<Client>, reference: Reference) -> Self {
        RegistryCache {
            client,
            reference,
            mount_from: Vec::new(),
            platform: Platform::host(),
        }
    }

    /// Repositories that may already hold the layers (the base images'), offered to the
    /// registry for a cross-repository mount instead of an upload.
    pub fn with_mount_from(mut self, mount_from: Vec<Reference>) -> Self {
        self.mount_from = mount_from;
        self
    }

    /// The platform whose image to read an inline cache from (the host's by default).
    pub fn with_platform(mut self, platform: Platform) -> Self {
        self.platform = platform;
        self
    }

    /// The reference.
    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    fn registry_error(&self, source: img_registry::Error) -> CacheError {
        CacheError::Registry {
            location: self.location(),
            source: Box::new(source),
        }
    }

    fn malformed(&self, problem: impl Into<String>) -> CacheError {
        CacheError::Malformed {
            location: self.location(),
            problem: problem.into(),
        }
    }
}

impl CacheBackend for RegistryCache {
    fn location(&self) -> String {
        self.reference.to_string()
    }

    fn registry_reference(&self) -> Option<String> {
        Some(self.reference.to_string())
    }

    fn read(&self) -> Result<CacheConfig, CacheError> {
        let location = self.location();
        let manifest = self
            .client
            .fetch_manifest(&self.reference)
            .map_err(|e| self.registry_error(e))?;
        let doc: Value = serde_json::from_slice(&manifest.bytes)
            .map_err(|e| self.malformed(format!("manifest: {e}")))?;
        let config_type = doc
            .pointer("/config/mediaType")
            .and_then(Value::as_str)
            .unwrap_or("");
        if config_type != CACHE_CONFIG_MEDIA_TYPE {
            // An image (or an index of images): its config may carry an inline cache.
            let image = self
                .client
                .resolve(&self.reference, &self.platform)
                .map_err(|e| self.registry_error(e))?;
            return inline::extract(&location, &image.config)?.ok_or_else(|| {
                CacheError::NotFound {
                    location,
                    what: "the image carries no inline cache".into(),
                }
            });
        }
        let descriptor: img_registry::Descriptor = serde_json::from_value(doc["config"].clone())
            .map_err(|e| self.malformed(format!("config descriptor: {e}")))?;
        let sink = MemorySink::default();
        self.client
            .fetch_blob(&self.reference, &descriptor, &sink, &no_progress)
            .map_err(|e| self.registry_error(e))?;
        let bytes = sink
            .bytes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| self.malformed("empty config blob"))?;
        // The client verified it already; checking again costs little and keeps the promise
        // local.
        check_bytes(&location, descriptor.digest(), &bytes)?;
        CacheConfig::from_bytes(&location, &bytes)
    }

    fn fetch_layer(&self, layer: &CacheLayer, sink: &dyn BlobSink) -> Result<(), CacheError> {
        // The client streams into the sink while hashing and commits only a blob whose size
        // and digest match.
        self.client
            .fetch_blob(&self.reference, &layer.descriptor(), sink, &no_progress)
            .map_err(|e| self.registry_error(e))
    }

    fn write(
        &self,
        config: &CacheConfig,
        blobs: &dyn BlobSource,
    ) -> Result<WriteReport, CacheError> {
        let config_bytes = config.to_bytes();
        let manifest = config.manifest(&config_bytes);
        let source = WithExtraBlobs {
            extra: vec![(img_registry::sha256_digest(&config_bytes), config_bytes)],
            inner: blobs,
        };
        let options = PushOptions {
            mount_from: self.mount_from.clone(),
            ..PushOptions::default()
        };
        // `push` makes every blob present (skipping those there, mounting where it can) before
        // it puts the manifest.
        let digest = self
            .client
            .push(&self.reference, &manifest, &source, &options, &no_progress)
            .map_err(|e| self.registry_error(e))?;
        Ok(WriteReport::new(digest, config))
    }
}
