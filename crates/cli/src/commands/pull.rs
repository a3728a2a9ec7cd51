//! `img pull [--platform P | --all-platforms] NAME[:TAG|@DIGEST]`: blobs into the content
//! store, then the name into the image store, so a stored name always means a complete image.
//! One platform stores that platform's manifest under the name; `--all-platforms` stores the
//! whole index, every platform's image complete.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use img_registry::{Client, Platform, Reference};
use img_sandbox::{HostPaths, IdMapping};
use img_snapshot::{Digest, Store};
use img_worker::{LocalBlobs, Worker, WorkerOptions};

use crate::config::Config;
use crate::progress::{Direction, Display};

/// How long the pull's lease protects its blobs if img dies before releasing it.
const LEASE_TTL: Duration = Duration::from_secs(24 * 3600);

pub fn run(config: &Config, reference: &str, platform: Option<&str>) -> anyhow::Result<()> {
    let reference = Reference::parse(reference)?;
    let platform = match platform {
        Some(p) => p.parse::<Platform>()?,
        None => Platform::host(),
    };
    let store = config.open_store()?;
    let lease = store
        .lease(LEASE_TTL)
        .context("cannot protect the pulled blobs from garbage collection")?;
    let blobs = LocalBlobs::new(store.content(), Some(&lease));
    let client = Client::new(config.registry.clone());

    let display = Display::start(config.progress);
    let progress = display.transfer_callback(Direction::Pull);
    let pulled = client.pull(&reference, &platform, &blobs, &progress);
    display.finish();
    let image = pulled.with_context(|| format!("cannot pull {reference}"))?;

    store
        .images()
        .put(&reference.to_string(), &image.manifest.descriptor())
        .with_context(|| format!("cannot name the pulled image {reference}"))?;
    drop(lease);
    let manifest = Digest::try_from(&image.manifest.digest)
        .with_context(|| format!("{reference} has a manifest digest img cannot use"))?;
    unpack(config, &store, &reference, &manifest)?;

    let mut out = std::io::stdout().lock();
    writeln!(out, "Digest: {}", image.repo_digest())?;
    writeln!(out, "{reference}")?;
    Ok(())
}

/// `--all-platforms`: every platform of an index (each pulled as `pull` pulls one), then the
/// index itself under the name. The image for this machine, if the index has one, is
/// unpacked. A reference to a single manifest is pulled as it is.
pub fn run_all_platforms(config: &Config, reference: &str) -> anyhow::Result<()> {
    let reference = Reference::parse(reference)?;
    let store = config.open_store()?;
    let lease = store
        .lease(LEASE_TTL)
        .context("cannot protect the pulled blobs from garbage collection")?;
    let blobs = LocalBlobs::new(store.content(), Some(&lease));
    let client = Client::new(config.registry.clone());
    let top = client
        .fetch_manifest(&reference)
        .with_context(|| format!("cannot pull {reference}"))?;
    let index: Option<oci_spec::image::ImageIndex> =
        serde_json::from_slice::<serde_json::Value>(&top.bytes)
            .ok()
            .filter(|v| v.get("manifests").is_some())
            .and_then(|_| serde_json::from_slice(&top.bytes).ok());
    let Some(index) = index else {
        drop(lease);
        return run(config, &reference.to_string(), None);
    };
    let host = Platform::host();
    let mut native = None;
    let display = Display::start(config.progress);
    let progress = display.transfer_callback(Direction::Pull);
    let mut pulled = Ok(());
    for entry in index.manifests() {
        // Attestations (`unknown/unknown`) and entries without a platform are not images.
        let Some(p) = entry.platform().as_ref() else {
            continue;
        };
        if p.os().to_string() == "unknown" {
            continue;
        }
        let platform = Platform::new(p.os().to_string(), p.architecture().to_string())
            .with_variant(p.variant().as_deref());
        let child = reference.with_digest(entry.digest().clone());
        match client.pull(&child, &platform, &blobs, &progress) {
            Ok(image) => {
                if native.is_none() && host.matches(&platform) {
                    native = Some(image.manifest.digest.clone());
                }
            }
            Err(e) => {
                pulled = Err(anyhow::Error::new(e)
                    .context(format!("cannot pull {reference} for {platform}")));
                break;
            }
        }
    }
    display.finish();
    pulled?;
    // The index last: a stored name always means every platform is complete.
    let index_digest = Digest::try_from(&top.digest)
        .with_context(|| format!("{reference} has an index digest img cannot use"))?;
    let mut writer = store
        .content()
        .ingest(Some(&index_digest))
        .context("cannot store the index")?
        .with_lease(&lease);
    writer
        .write_all(&top.bytes)
        .context("cannot store the index")?;
    writer.commit().context("cannot store the index")?;
    store
        .images()
        .put(&reference.to_string(), &top.descriptor())
        .with_context(|| format!("cannot name the pulled image {reference}"))?;
    drop(lease);
    if let Some(native) = native {
        let manifest = Digest::try_from(&native)
            .with_context(|| format!("{reference} has a manifest digest img cannot use"))?;
        unpack(config, &store, &reference, &manifest)?;
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "Digest: {}", top.digest)?;
    writeln!(out, "{reference}")?;
    Ok(())
}

/// Unpacks the pulled layers into snapshots, as `docker pull` does, so that a build on the
/// image starts without unpacking it.
fn unpack(
    config: &Config,
    store: &Store,
    reference: &Reference,
    manifest: &Digest,
) -> anyhow::Result<()> {
    let mapping =
        IdMapping::detect(&HostPaths::default()).context("cannot work out the uid/gid mapping")?;
    let snapshotter = store
        .snapshotter(config.backend)
        .context("cannot open the snapshotter")?;
    let worker = Worker::new(store.clone(), &snapshotter, WorkerOptions::new(mapping))
        .context("cannot open the snapshots")?;
    let warn = |line: &str| eprint!("{line}");
    worker
        .unpack_image(&reference.to_string(), manifest, &warn)
        .with_context(|| format!("cannot unpack {reference}"))?;
    Ok(())
}
