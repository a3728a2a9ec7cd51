//! `img pull [--platform P] NAME[:TAG|@DIGEST]`: blobs into the content store, then the name
//! into the image store, so a stored name always means a complete image.

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
