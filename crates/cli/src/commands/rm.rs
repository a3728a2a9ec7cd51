//! `img rm IMAGE...`: removes names. The blobs stay in the content store until garbage
//! collection finds nothing referencing them.

use std::io::Write;

use anyhow::bail;

use crate::config::Config;
use crate::image::{familiar, stored_name};

pub fn run(config: &Config, images: &[String]) -> anyhow::Result<()> {
    let store = config.open_store()?;
    let mut out = std::io::stdout().lock();
    let mut missing = Vec::new();
    // Like `docker rmi`, remove every image that exists and report the others at the end.
    for input in images {
        let name = stored_name(input)?;
        if store.images().remove(&name)? {
            writeln!(out, "Untagged: {}", familiar(&name))?;
        } else {
            missing.push(name);
        }
    }
    if !missing.is_empty() {
        bail!(
            "no image named {} in the local store (`img ls` lists the stored images)",
            missing.join(", ")
        );
    }
    Ok(())
}
