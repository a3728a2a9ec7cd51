//! `img inspect IMAGE`: the stored name, digest, manifest and config as one JSON document
//! (not Docker's `inspect` format: the OCI documents themselves).

use std::io::Write;

use anyhow::Context;

use crate::config::Config;
use crate::image::{digest_of, find, platform_flag, resolve_for};

pub fn run(config: &Config, input: &str, platform: Option<&str>) -> anyhow::Result<()> {
    let platform = platform_flag(platform)?;
    let store = config.open_store()?;
    let record = find(&store, input)?;
    let parts = resolve_for(&store.content(), &record.target, &platform)?;
    let manifest: serde_json::Value =
        serde_json::from_slice(&parts.manifest_bytes).context("the stored manifest is not JSON")?;
    let image_config: serde_json::Value =
        serde_json::from_slice(&parts.config_bytes).context("the stored config is not JSON")?;
    let doc = serde_json::json!({
        "name": record.name,
        "digest": digest_of(&record.target)?.to_string(),
        "manifestDigest": parts.manifest_digest.to_string(),
        "manifest": manifest,
        "config": image_config,
    });
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &doc)?;
    writeln!(out)?;
    Ok(())
}
