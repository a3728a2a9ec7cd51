//! `img push NAME[:TAG]`: the named image's manifest and every blob it references, from the
//! content store to the registry.

use std::io::Write;

use anyhow::Context;
use img_registry::{Client, PushOptions, Reference};
use img_snapshot::{ContentStore, Digest};
use img_worker::LocalBlobs;

use crate::config::Config;
use crate::progress::{Direction, Display};

/// Pushes `manifest` and the blobs it references from `content` to `reference`, showing the
/// transfers; returns the pushed manifest's digest.
pub fn push_manifest(
    config: &Config,
    client: &Client,
    content: &ContentStore,
    reference: &Reference,
    manifest: &[u8],
) -> anyhow::Result<img_registry::Digest> {
    let blobs = LocalBlobs::new(content.clone(), None);
    push_manifest_from(
        config,
        client,
        &blobs,
        &PushOptions::default(),
        reference,
        manifest,
    )
}

/// Pushes `manifest` and the blobs it references, read from `blobs` only where the registry
/// has them neither already nor for a mount from `options.mount_from`.
pub fn push_manifest_from(
    config: &Config,
    client: &Client,
    blobs: &dyn img_registry::BlobSource,
    options: &PushOptions,
    reference: &Reference,
    manifest: &[u8],
) -> anyhow::Result<img_registry::Digest> {
    let display = Display::start(config.progress);
    let progress = display.transfer_callback(Direction::Push);
    let pushed = client.push(reference, manifest, blobs, options, &progress);
    display.finish();
    pushed.with_context(|| format!("cannot push {reference}"))
}

pub fn run(config: &Config, reference: &str) -> anyhow::Result<()> {
    let reference = Reference::parse(reference)?;
    let store = config.open_store()?;
    let record = crate::image::find(&store, &reference.to_string())?;
    let digest = Digest::try_from(record.target.digest())?;
    let manifest = store
        .content()
        .read_blob(&digest)
        .with_context(|| format!("cannot read the manifest of {}", record.name))?;
    let client = Client::new(config.registry.clone());
    let pushed = push_manifest(config, &client, &store.content(), &reference, &manifest)?;

    let tag = reference.tag().unwrap_or("latest");
    writeln!(
        std::io::stdout().lock(),
        "{tag}: digest: {pushed} size: {}",
        manifest.len()
    )?;
    Ok(())
}
