//! A cache in an OCI image layout directory (`type=local,dest=DIR` / `src=DIR`).
//!
//! Blobs are written to temporary files beside their final names and renamed, then
//! `index.json` is replaced the same way, last: a reader (or another exporter) sees the old
//! cache or the new one, never a manifest without its blobs. The manifest is listed in
//! `index.json` under its tag (`org.opencontainers.image.ref.name`), so skopeo and umoci see
//! an ordinary layout.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use img_registry::{
    BlobSink, BlobSource, Descriptor, Digest, DirBlobStore, OCI_INDEX, OCI_MANIFEST,
};
use serde_json::{json, Value};

use crate::backend::{CacheBackend, WriteReport};
use crate::error::CacheError;
use crate::format::{CacheConfig, CacheLayer, CACHE_CONFIG_MEDIA_TYPE};
use crate::verify::{check, check_bytes, copy_hashed};

/// The annotation naming an index entry's tag.
const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The tag used when none is given.
const DEFAULT_TAG: &str = "latest";

/// A cache kept in an OCI image layout directory.
#[derive(Debug, Clone)]
pub struct LayoutCache {
    dir: PathBuf,
    tag: String,
}

impl LayoutCache {
    /// The cache in `dir` under `tag` (`latest` when `None`).
    pub fn new(dir: impl Into<PathBuf>, tag: Option<&str>) -> Self {
        LayoutCache {
            dir: dir.into(),
            tag: tag.unwrap_or(DEFAULT_TAG).to_owned(),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn io(&self, action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CacheError {
        let location = self.location();
        let path = path.to_path_buf();
        move |source| CacheError::Io {
            location,
            action,
            path,
            source,
        }
    }

    fn malformed(&self, problem: impl Into<String>) -> CacheError {
        CacheError::Malformed {
            location: self.location(),
            problem: problem.into(),
        }
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir
            .join("blobs")
            .join(digest.algorithm().to_string())
            .join(digest.digest())
    }

    /// A small blob (manifest, config), verified against its digest.
    fn read_small_blob(&self, digest: &Digest) -> Result<Vec<u8>, CacheError> {
        let path = self.blob_path(digest);
        let bytes = fs::read(&path).map_err(self.io("read", &path))?;
        check_bytes(&self.location(), digest, &bytes)?;
        Ok(bytes)
    }

    /// Writes `path` through a temporary file in the same directory and a rename.
    fn replace_file(&self, path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let tmp = path.with_file_name(format!(
            ".{}.{}.{}.tmp",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let write = || -> std::io::Result<()> {
            let mut file = fs::File::create(&tmp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            self.io("write", path)(e)
        })
    }

    fn put_blob(
        &self,
        store: &DirBlobStore,
        descriptor: &Descriptor,
        read: impl FnOnce() -> std::io::Result<Box<dyn std::io::Read + Send>>,
    ) -> Result<(), CacheError> {
        let path = self.blob_path(descriptor.digest());
        if path.is_file() {
            return Ok(());
        }
        let mut writer = store.begin(descriptor).map_err(self.io("write", &path))?;
        let copied = copy_hashed(
            read().map_err(self.io("read a blob for", &path))?,
            &mut writer,
        )
        .map_err(self.io("write", &path))?;
        check(
            &self.location(),
            descriptor.digest(),
            Some(descriptor.size()),
            &copied,
        )?;
        writer.commit().map_err(self.io("write", &path))
    }

    fn index(&self) -> Result<Option<Value>, CacheError> {
        let path = self.dir.join("index.json");
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| self.malformed(format!("index.json: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io("read", &path)(e)),
        }
    }
}

impl CacheBackend for LayoutCache {
    fn location(&self) -> String {
        self.dir.display().to_string()
    }

    fn read(&self) -> Result<CacheConfig, CacheError> {
        let location = self.location();
        let index = self.index()?.ok_or_else(|| CacheError::NotFound {
            location: location.clone(),
            what: "no index.json".into(),
        })?;
        let entries = index
            .get("manifests")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let tagged = |e: &&Value| {
            e.pointer(&format!("/annotations/{}", REF_NAME.replace('/', "~1")))
                .and_then(Value::as_str)
                == Some(self.tag.as_str())
        };
        let entry = match entries.iter().find(tagged) {
            Some(entry) => entry,
            // A layout with one untagged manifest is that manifest.
            None if entries.len() == 1 => &entries[0],
            None => {
                return Err(CacheError::NotFound {
                    location,
                    what: format!("no manifest tagged {:?} in index.json", self.tag),
                })
            }
        };
        let descriptor: Descriptor = serde_json::from_value(entry.clone())
            .map_err(|e| self.malformed(format!("index.json entry: {e}")))?;
        let manifest: Value = serde_json::from_slice(&self.read_small_blob(descriptor.digest())?)
            .map_err(|e| self.malformed(format!("manifest: {e}")))?;
        let config: Descriptor = serde_json::from_value(manifest["config"].clone())
            .map_err(|e| self.malformed(format!("config descriptor: {e}")))?;
        if config.media_type().to_string() != CACHE_CONFIG_MEDIA_TYPE {
            return Err(self.malformed(format!(
                "the manifest's config is {}, not a cache config",
                config.media_type()
            )));
        }
        CacheConfig::from_bytes(&location, &self.read_small_blob(config.digest())?)
    }

    fn fetch_layer(&self, layer: &CacheLayer, sink: &dyn BlobSink) -> Result<(), CacheError> {
        let store_err = |source| CacheError::Store {
            location: self.location(),
            digest: layer.digest.to_string(),
            source,
        };
        if sink.contains(&layer.digest).map_err(store_err)? {
            return Ok(());
        }
        let path = self.blob_path(&layer.digest);
        let file = fs::File::open(&path).map_err(self.io("read", &path))?;
        let mut writer = sink.begin(&layer.descriptor()).map_err(store_err)?;
        let copied = copy_hashed(file, &mut writer).map_err(self.io("read", &path))?;
        // Refused before the commit: a corrupt blob never reaches the store.
        check(&self.location(), &layer.digest, Some(layer.size), &copied)?;
        writer.commit().map_err(store_err)
    }

    fn write(
        &self,
        config: &CacheConfig,
        blobs: &dyn BlobSource,
    ) -> Result<WriteReport, CacheError> {
        fs::create_dir_all(&self.dir).map_err(self.io("create", &self.dir))?;
        let store = DirBlobStore::new(&self.dir).map_err(self.io("create", &self.dir))?;
        for layer in &config.layers {
            self.put_blob(&store, &layer.descriptor(), || blobs.open(&layer.digest))?;
        }
        let config_bytes = config.to_bytes();
        let manifest = config.manifest(&config_bytes);
        for (media_type, bytes) in [
            (CACHE_CONFIG_MEDIA_TYPE, &config_bytes),
            (OCI_MANIFEST, &manifest),
        ] {
            let digest = img_registry::sha256_digest(bytes);
            let descriptor = Descriptor::new(media_type.into(), bytes.len() as u64, digest);
            let reader = bytes.clone();
            self.put_blob(&store, &descriptor, move || {
                Ok(Box::new(std::io::Cursor::new(reader)))
            })?;
        }
        let layout = self.dir.join("oci-layout");
        if !layout.is_file() {
            self.replace_file(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        // Other tags in the directory stay; this tag's entry is replaced. Two exporters of one
        // tag race on the rename: one whole index wins, both manifests' blobs are present.
        let mut entries: Vec<Value> = self
            .index()
            .ok()
            .flatten()
            .and_then(|i| i.get("manifests").and_then(Value::as_array).cloned())
            .unwrap_or_default();
        entries.retain(|e| {
            e.get("annotations")
                .and_then(|a| a.get(REF_NAME))
                .and_then(Value::as_str)
                != Some(self.tag.as_str())
        });
        let digest = img_registry::sha256_digest(&manifest);
        entries.push(json!({
            "mediaType": OCI_MANIFEST,
            "artifactType": CACHE_CONFIG_MEDIA_TYPE,
            "digest": digest.to_string(),
            "size": manifest.len(),
            "annotations": {REF_NAME: self.tag},
        }));
        let index = json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": entries,
        });
        let bytes = serde_json::to_vec_pretty(&index).unwrap_or_default();
        self.replace_file(&self.dir.join("index.json"), &bytes)?;
        Ok(WriteReport::new(digest, config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::CacheBuilder;

    fn cache_with_layer(blobs: &DirBlobStore, content: &[u8]) -> CacheConfig {
        let digest = blobs.put_bytes(content).unwrap();
        let layer = CacheLayer::new(
            digest.clone(),
            content.len() as u64,
            "application/vnd.oci.image.layer.v1.tar",
            digest,
        );
        let mut b = CacheBuilder::new();
        b.add_record("sha256:key", &[layer]);
        b.build()
    }

    #[test]
    fn written_layout_reads_back_and_serves_verified_layers() {
        let src = DirBlobStore::new(tempfile::tempdir().unwrap().keep()).unwrap();
        let config = cache_with_layer(&src, b"layer bytes");
        let dir = tempfile::tempdir().unwrap();
        let layout = LayoutCache::new(dir.path().join("cache"), None);
        let report = layout.write(&config, &src).unwrap();
        assert_eq!(report.layers, 1);
        assert_eq!(layout.read().unwrap(), config);
        assert!(dir.path().join("cache/oci-layout").is_file());

        let dest = DirBlobStore::new(tempfile::tempdir().unwrap().keep()).unwrap();
        let layer = &config.layers[0];
        layout.fetch_layer(layer, &dest).unwrap();
        assert_eq!(
            fs::read(dest.blob_path(&layer.digest)).unwrap(),
            b"layer bytes"
        );
    }

    #[test]
    fn corrupt_layer_is_refused_and_not_stored() {
        let src = DirBlobStore::new(tempfile::tempdir().unwrap().keep()).unwrap();
        let config = cache_with_layer(&src, b"good bytes");
        let dir = tempfile::tempdir().unwrap();
        let layout = LayoutCache::new(dir.path(), None);
        layout.write(&config, &src).unwrap();
        let layer = &config.layers[0];
        fs::write(layout.blob_path(&layer.digest), b"evil bytes").unwrap();
        let dest = DirBlobStore::new(tempfile::tempdir().unwrap().keep()).unwrap();
        let err = layout.fetch_layer(layer, &dest).unwrap_err();
        assert!(matches!(err, CacheError::DigestMismatch { .. }), "{err}");
        assert!(!dest.blob_path(&layer.digest).exists());
    }

    #[test]
    fn tags_share_a_directory_and_missing_ones_are_not_found() {
        let src = DirBlobStore::new(tempfile::tempdir().unwrap().keep()).unwrap();
        let one = cache_with_layer(&src, b"one");
        let two = cache_with_layer(&src, b"two");
        let dir = tempfile::tempdir().unwrap();
        LayoutCache::new(dir.path(), Some("a"))
            .write(&one, &src)
            .unwrap();
        LayoutCache::new(dir.path(), Some("b"))
            .write(&two, &src)
            .unwrap();
        assert_eq!(LayoutCache::new(dir.path(), Some("a")).read().unwrap(), one);
        assert_eq!(LayoutCache::new(dir.path(), Some("b")).read().unwrap(), two);
        let err = LayoutCache::new(dir.path(), Some("c")).read().unwrap_err();
        assert!(matches!(err, CacheError::NotFound { .. }), "{err}");
        let err = LayoutCache::new(dir.path().join("none"), None)
            .read()
            .unwrap_err();
        assert!(matches!(err, CacheError::NotFound { .. }), "{err}");
    }

    #[test]
    fn concurrent_writers_leave_one_valid_cache() {
        let src = DirBlobStore::new(tempfile::tempdir().unwrap().keep()).unwrap();
        let configs: Vec<CacheConfig> = (0..4)
            .map(|i| cache_with_layer(&src, format!("writer {i}").as_bytes()))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        std::thread::scope(|s| {
            for config in &configs {
                let (src, dir) = (&src, dir.path());
                s.spawn(move || LayoutCache::new(dir, None).write(config, src).unwrap());
            }
        });
        let back = LayoutCache::new(dir.path(), None).read().unwrap();
        assert!(configs.contains(&back));
        let dest = DirBlobStore::new(tempfile::tempdir().unwrap().keep()).unwrap();
        for layer in &back.layers {
            LayoutCache::new(dir.path(), None)
                .fetch_layer(layer, &dest)
                .unwrap();
        }
    }
}
