//! Lazy results: a snapshot chain known by its layer descriptors, not yet unpacked.
//!
//! A hit in an imported cache (`--cache-from`) and a base image source both name a chain of
//! layers whose snapshots are keyed by chain id (`layer/<backend>/<chain id>`). Instead of
//! downloading and unpacking the chain at once, the worker returns the ordinary
//! [`WorkerRef::Snapshot`] of the chain's top and remembers here where each layer can be had.
//! The snapshot comes into being only when something needs its files:
//!
//! * [`Worker::materialize`]: a step runs on top of it, mounts it, copies from it or reads it
//!   for a content checksum, or an export writes its files. Every layer is fetched (verified
//!   against its digest and size), unpacked (checked against its diff id) and committed, one
//!   layer at a time under a per-layer guard, so two steps needing the same chain unpack it
//!   once, and chains sharing layers share their snapshots.
//! * [`Worker::fetch_chain_blobs`] and [`LazyBlobs`]: an export that needs only the layer
//!   blobs (an OCI or docker archive, the image store) downloads them into the content store
//!   and unpacks nothing; a push reads them through [`LazyBlobs`], which downloads a blob only
//!   when the registry has it neither already nor for a cross-repository mount.
//!
//! A cache layer refused at materialization (wrong digest, wrong diff id, unreachable) is
//! remembered: lookups no longer return chains holding it, and [`Worker::take_refused`] tells
//! the caller to solve again, when the steps concerned run instead.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use img_registry::{no_progress, BlobSource, Reference};
use img_remote_cache::CacheLayer;
use img_snapshot::{Compression, Digest, LayerDescriptor};
use serde::{Deserialize, Serialize};

use super::layer_db::ExportVariant;
use super::remote_cache::{compression_of, remote_err, Import};
use super::{LocalBlobs, Worker, WorkerError, WorkerRef};

/// Where a lazy chain's layers come from.
#[derive(Debug)]
pub(crate) enum Origin {
    /// An imported cache.
    Cache(Arc<Import>),
    /// A base image: its layers are in the content store already (a stored image) or are
    /// pulled from `pull`, after which the image is named `reference` as a pull names it.
    Image {
        reference: String,
        /// The reference to pull from and the descriptor of the manifest to name it by.
        pull: Option<Box<(Reference, img_registry::Descriptor)>>,
    },
}

impl Origin {
    fn location(&self) -> String {
        match self {
            Origin::Cache(import) => import.backend.location(),
            Origin::Image { reference, .. } => reference.clone(),
        }
    }
}

/// One layer of a lazy chain.
#[derive(Debug, Clone)]
pub(crate) struct LazyLayer {
    /// The blob, as the cache or the image manifest describes it.
    pub layer: CacheLayer,
    pub digest: Digest,
    pub diff_id: Digest,
    /// The snapshot it is unpacked into.
    pub key: String,
}

/// A chain of layers whose top is a result not unpacked yet.
#[derive(Debug)]
pub(crate) struct LazyChain {
    origin: Origin,
    layers: Vec<LazyLayer>,
    /// The snapshot key of the result (the top layer's, or the empty snapshot's).
    top: String,
    done: AtomicBool,
}

impl LazyChain {
    /// The layers, bottom first.
    pub(crate) fn layers(&self) -> &[LazyLayer] {
        &self.layers
    }
}

/// What the solver's cache records for a lazy result: the snapshot it becomes, and its layers,
/// so a later build on this state directory finds it again while the blobs are here (an
/// archive or the image store downloaded them), even without the cache it came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LazyRecord {
    pub key: String,
    pub image: Option<Digest>,
    pub layers: Vec<CacheLayer>,
}

/// What was downloaded and unpacked lazily, for the progress display.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LazyStats {
    /// Layer blobs downloaded (and verified).
    pub downloaded: u64,
    /// Their bytes.
    pub downloaded_bytes: u64,
    /// Layers unpacked into snapshots.
    pub unpacked: u64,
}

/// The worker's lazy chains and what they did.
#[derive(Debug, Default)]
pub(crate) struct LazyState {
    /// By the snapshot key of the chain's top.
    chains: Mutex<HashMap<String, Arc<LazyChain>>>,
    /// Where each lazy blob can be fetched: the chain and the layer's index in it.
    blobs: Mutex<HashMap<Digest, (Arc<LazyChain>, usize)>>,
    /// One guard per snapshot key or blob being made.
    guards: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Cache layer digests refused; `refused_new` says whether one was added since the last
    /// [`Worker::take_refused`].
    refused: Mutex<HashSet<String>>,
    refused_new: AtomicBool,
    stats: Mutex<LazyStats>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl LazyState {
    fn guard(&self, name: &str) -> Arc<Mutex<()>> {
        lock(&self.guards)
            .entry(name.to_owned())
            .or_default()
            .clone()
    }

    pub(crate) fn is_refused(&self, digest: &str) -> bool {
        lock(&self.refused).contains(digest)
    }

    pub(crate) fn count_download(&self, size: u64) {
        let mut stats = lock(&self.stats);
        stats.downloaded += 1;
        stats.downloaded_bytes += size;
    }

    fn chain(&self, key: &str) -> Option<Arc<LazyChain>> {
        lock(&self.chains).get(key).cloned()
    }
}

impl Worker {
    /// The snapshot key of the chain-id layer snapshot `chain_id` on this backend.
    pub(crate) fn layer_key(&self, chain_id: &Digest) -> String {
        format!("layer/{}/{chain_id}", self.snapshotter.backend())
    }

    /// The result whose snapshot is the top of `layers` (`key` each), unpacked later from
    /// `origin`: at once when the top exists already (taken into the build's lease).
    pub(crate) fn lazy_result(
        &self,
        origin: Origin,
        layers: Vec<LazyLayer>,
        image: Option<Digest>,
    ) -> Result<WorkerRef, WorkerError> {
        let top = match layers.last() {
            Some(layer) => layer.key.clone(),
            None => format!("layer/{}/empty", self.snapshotter.backend()),
        };
        let blobs: Vec<Digest> = image.iter().cloned().collect();
        let output = WorkerRef::Snapshot {
            key: top.clone(),
            image,
        };
        if self.snapshotter.lease_existing(&top, &blobs)?.is_some() {
            return Ok(output);
        }
        for digest in &blobs {
            self.lease.add_blob(digest).map_err(WorkerError::Lease)?;
        }
        let chain = Arc::new(LazyChain {
            origin,
            layers,
            top: top.clone(),
            done: AtomicBool::new(false),
        });
        let lazy = &self.remote.lazy;
        {
            let mut blobs = lock(&lazy.blobs);
            for (i, layer) in chain.layers.iter().enumerate() {
                blobs
                    .entry(layer.digest)
                    .or_insert_with(|| (chain.clone(), i));
            }
        }
        // The newest wins: an earlier chain to the same snapshot may hold a refused layer.
        lock(&lazy.chains).insert(top, chain);
        Ok(output)
    }

    /// Every layer of every lazy result of this build, unpacked since or not.
    pub(crate) fn lazy_layers(&self) -> Vec<LazyLayer> {
        lock(&self.remote.lazy.chains)
            .values()
            .flat_map(|c| c.layers.iter().cloned())
            .collect()
    }

    /// The record of `output` for the solver's cache when it is a lazy result.
    pub(crate) fn lazy_record(&self, output: &WorkerRef) -> Option<LazyRecord> {
        let WorkerRef::Snapshot { key, image } = output else {
            return None;
        };
        let chain = self.lazy_chain(key)?;
        Some(LazyRecord {
            key: key.clone(),
            image: *image,
            layers: chain.layers.iter().map(|l| l.layer.clone()).collect(),
        })
    }

    /// The result `record` names: its snapshot when it was unpacked since, else a lazy result
    /// again when every blob is in the content store (taken into the build's lease); `None`
    /// otherwise, a miss.
    pub(crate) fn load_lazy(&self, record: LazyRecord) -> Result<Option<WorkerRef>, WorkerError> {
        let blobs: Vec<Digest> = record.image.iter().cloned().collect();
        if self
            .snapshotter
            .lease_existing(&record.key, &blobs)?
            .is_some()
        {
            return Ok(Some(WorkerRef::Snapshot {
                key: record.key,
                image: record.image,
            }));
        }
        let content = self.store.content();
        let mut digests = Vec::with_capacity(record.layers.len());
        let mut diff_ids = Vec::with_capacity(record.layers.len());
        for layer in &record.layers {
            let (Ok(digest), Ok(diff_id)) = (
                Digest::try_from(&layer.digest),
                Digest::try_from(&layer.diff_id),
            ) else {
                return Ok(None);
            };
            if !content.exists(&digest) {
                return Ok(None);
            }
            digests.push(digest);
            diff_ids.push(diff_id);
        }
        for digest in &digests {
            self.lease.add_blob(digest).map_err(WorkerError::Lease)?;
        }
        let chain_ids = super::image::chain_ids(&diff_ids);
        let layers = record
            .layers
            .into_iter()
            .zip(digests)
            .zip(diff_ids)
            .zip(&chain_ids)
            .map(|(((layer, digest), diff_id), chain_id)| LazyLayer {
                layer,
                digest,
                diff_id,
                key: self.layer_key(chain_id),
            })
            .collect();
        let origin = Origin::Image {
            reference: "the content store".into(),
            pull: None,
        };
        self.lazy_result(origin, layers, record.image).map(Some)
    }

    /// The lazy chain whose top is `key`, unless it has been unpacked since.
    pub(crate) fn lazy_chain(&self, key: &str) -> Option<Arc<LazyChain>> {
        self.remote
            .lazy
            .chain(key)
            .filter(|c| !c.done.load(Ordering::Acquire))
    }

    /// The layer a lazy result adds on its parent, as an export reuses it: the blob the cache
    /// or the image names, when it has the `compression` asked for.
    pub(crate) fn lazy_top_layer(
        &self,
        key: &str,
        compression: Compression,
    ) -> Option<LayerDescriptor> {
        let chain = self.lazy_chain(key)?;
        let top = chain.layers.last()?;
        (compression_of(&top.layer.media_type) == Some(compression)).then_some(LayerDescriptor {
            digest: top.digest,
            size: top.layer.size,
            diff_id: top.diff_id,
            compression,
        })
    }

    /// Makes `output`'s snapshot exist when it is a lazy result: fetches and unpacks the
    /// layers its chain lacks. Anything else is left as it is.
    pub(crate) fn materialize(&self, output: &WorkerRef) -> Result<(), WorkerError> {
        match output.snapshot_key() {
            Some(key) => self.materialize_key(key),
            None => Ok(()),
        }
    }

    /// Makes `output`'s files present: a lazy result is downloaded and unpacked now. For an
    /// output whose files are written out (a local directory, a tar).
    pub fn unpack(&self, output: &WorkerRef) -> Result<(), WorkerError> {
        self.materialize(output)
    }

    pub(crate) fn materialize_key(&self, key: &str) -> Result<(), WorkerError> {
        match self.lazy_chain(key) {
            Some(chain) => self.materialize_chain(&chain),
            None => Ok(()),
        }
    }

    fn materialize_chain(&self, chain: &LazyChain) -> Result<(), WorkerError> {
        let content = self.store.content();
        let mut parent: Option<String> = None;
        for layer in &chain.layers {
            let guard = self.remote.lazy.guard(&layer.key);
            let _held = lock(&guard);
            if self.snapshotter.lease_existing(&layer.key, &[])?.is_none() {
                self.fetch_lazy_blob(chain, layer)?;
                let active = self.prepare_on(parent.as_deref())?;
                let report = self
                    .snapshotter
                    .apply(active.key(), &content, &layer.digest)
                    .map_err(|e| self.refuse(chain, layer, e.into()))?;
                for warning in &report.warnings {
                    self.warn(format!(
                        "{}: layer {}: {warning:?}",
                        chain.origin.location(),
                        layer.digest
                    ));
                }
                if report.diff_id != layer.diff_id {
                    let err = WorkerError::DiffIdMismatch {
                        reference: chain.origin.location(),
                        layer: layer.digest.to_string(),
                        expected: layer.diff_id.to_string(),
                        actual: report.diff_id.to_string(),
                    };
                    return Err(self.refuse(chain, layer, err));
                }
                active.commit_shared(&layer.key)?;
                self.lease
                    .add_snapshot(&layer.key)
                    .map_err(WorkerError::Lease)?;
                lock(&self.remote.lazy.stats).unpacked += 1;
            }
            // Exporting this snapshot is exporting the blob it came from.
            if let Some(compression) = compression_of(&layer.layer.media_type) {
                if content.exists(&layer.digest) {
                    let variant = ExportVariant {
                        compression,
                        level: None,
                        source_date_epoch: None,
                    };
                    let descriptor = LayerDescriptor {
                        digest: layer.digest,
                        size: layer.layer.size,
                        diff_id: layer.diff_id,
                        compression,
                    };
                    self.layers.put(&layer.key, &variant, &descriptor)?;
                }
            }
            parent = Some(layer.key.clone());
        }
        if chain.layers.is_empty() && self.snapshotter.stat(&chain.top).is_err() {
            self.prepare_on(None)?.commit_shared(&chain.top)?;
            self.lease
                .add_snapshot(&chain.top)
                .map_err(WorkerError::Lease)?;
        }
        if let Origin::Image {
            pull: Some(pull), ..
        } = &chain.origin
        {
            let (reference, descriptor) = &**pull;
            // Every layer is here now: the image is named as `docker pull` names it (the
            // platform's manifest rather than the index, whose other entries were not pulled).
            if reference.digest().is_none() {
                self.store
                    .images()
                    .put(&reference.to_string(), descriptor)
                    .map_err(|e| WorkerError::BadImage {
                        reference: reference.to_string(),
                        problem: e.to_string(),
                    })?;
            }
        }
        chain.done.store(true, Ordering::Release);
        Ok(())
    }

    /// Fetches `layer` of `chain` into the content store unless it is there, verified against
    /// its digest and size on the way.
    fn fetch_lazy_blob(&self, chain: &LazyChain, layer: &LazyLayer) -> Result<(), WorkerError> {
        let content = self.store.content();
        let guard = self.remote.lazy.guard(&format!("blob:{}", layer.digest));
        let _held = lock(&guard);
        if content.exists(&layer.digest) {
            return self
                .lease
                .add_blob(&layer.digest)
                .map_err(WorkerError::Lease);
        }
        let sink = LocalBlobs::new(content, Some(&self.lease));
        match &chain.origin {
            Origin::Cache(import) => import
                .backend
                .fetch_layer(&layer.layer, &sink)
                .map_err(|e| self.refuse(chain, layer, remote_err(e)))?,
            Origin::Image {
                pull: Some(pull), ..
            } => {
                let reference = &pull.0;
                let client =
                    self.options
                        .registry
                        .as_ref()
                        .ok_or_else(|| WorkerError::ImageNotLocal {
                            reference: reference.to_string(),
                        })?;
                client
                    .fetch_blob(reference, &layer.layer.descriptor(), &sink, &no_progress)
                    .map_err(|e| WorkerError::Pull {
                        reference: reference.to_string(),
                        source: Box::new(e),
                    })?;
            }
            Origin::Image {
                reference,
                pull: None,
                ..
            } => {
                return Err(WorkerError::BadImage {
                    reference: reference.clone(),
                    problem: format!("layer {} is missing from the content store", layer.digest),
                })
            }
        }
        self.lease
            .add_blob(&layer.digest)
            .map_err(WorkerError::Lease)?;
        self.remote.lazy.count_download(layer.layer.size);
        Ok(())
    }

    /// A cache layer that cannot be used: remembered so no lookup returns it again, and said
    /// in the warnings. Layers of a base image are not refused: a pull failure fails the step.
    fn refuse(&self, chain: &LazyChain, layer: &LazyLayer, err: WorkerError) -> WorkerError {
        let Origin::Cache(import) = &chain.origin else {
            return err;
        };
        let location = import.backend.location();
        lock(&self.remote.lazy.refused).insert(layer.layer.digest.to_string());
        self.remote.lazy.refused_new.store(true, Ordering::Release);
        let reason = img_solver::error_chain(&err);
        self.warn(format!(
            "cache {location}: layer {} refused: {reason}; the steps using it run instead",
            layer.digest
        ));
        WorkerError::CacheLayerRefused {
            location,
            layer: layer.digest.to_string(),
            reason,
        }
    }

    /// Whether a cache layer was refused since the last call: a solve that failed (or whose
    /// outputs could not be prepared) since then may succeed again, running the steps whose
    /// cached results used it.
    pub fn take_refused(&self) -> bool {
        self.remote.lazy.refused_new.swap(false, Ordering::AcqRel)
    }

    /// Lazy layers downloaded and unpacked so far.
    pub fn lazy_stats(&self) -> LazyStats {
        *lock(&self.remote.lazy.stats)
    }

    /// Makes the blobs of `output`'s chain present in the content store without unpacking
    /// anything, for an export that needs only the blobs (an archive, the image store).
    /// Results that are not lazy have their blobs already, or export them from snapshots.
    pub fn fetch_chain_blobs(&self, output: &WorkerRef) -> Result<(), WorkerError> {
        let Some(chain) = output.snapshot_key().and_then(|k| self.lazy_chain(k)) else {
            return Ok(());
        };
        for layer in &chain.layers {
            self.fetch_lazy_blob(&chain, layer)?;
        }
        Ok(())
    }

    /// Makes each of `digests` present in the content store, fetching those a lazy result
    /// names; a blob neither here nor lazily known is an error.
    pub fn fetch_blobs(&self, digests: &[Digest]) -> Result<(), WorkerError> {
        let content = self.store.content();
        for digest in digests {
            if content.exists(digest) {
                continue;
            }
            let known = lock(&self.remote.lazy.blobs).get(digest).cloned();
            match known {
                Some((chain, index)) => self.fetch_lazy_blob(&chain, &chain.layers[index])?,
                None => {
                    return Err(WorkerError::BadImage {
                        reference: digest.to_string(),
                        problem:
                            "the blob is neither in the content store nor in an imported cache"
                                .into(),
                    })
                }
            }
        }
        Ok(())
    }

    /// The content store as a [`BlobSource`] that downloads a lazily imported blob when it is
    /// opened and not here yet: for pushes, which open a blob only when the registry lacks it.
    pub fn lazy_blobs(&self) -> LazyBlobs<'_> {
        LazyBlobs { worker: self }
    }
}

/// The content store, with lazily imported blobs downloaded when first opened
/// ([`Worker::lazy_blobs`]).
#[derive(Debug)]
pub struct LazyBlobs<'w> {
    worker: &'w Worker,
}

impl BlobSource for LazyBlobs<'_> {
    fn open(&self, digest: &img_registry::Digest) -> io::Result<Box<dyn Read + Send>> {
        let local = Digest::try_from(digest)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        self.worker
            .fetch_blobs(&[local])
            .map_err(|e| io::Error::other(img_solver::error_chain(&e)))?;
        LocalBlobs::new(self.worker.store.content(), Some(&self.worker.lease)).open(digest)
    }
}
