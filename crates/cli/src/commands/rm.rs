//! `img rm IMAGE...`: removes names, or an image by its ID. The blobs stay in the content
//! store until garbage collection finds nothing referencing them.

use std::io::Write;

use anyhow::{bail, Context};

use crate::config::Config;
use crate::image::{familiar, find_by_id, image_id, is_untagged, stored_name};

pub fn run(config: &Config, images: &[String]) -> anyhow::Result<()> {
    let store = config.open_store()?;
    let mut out = std::io::stdout().lock();
    let mut missing = Vec::new();
    // Like `docker rmi`, remove every image that exists and report the others at the end.
    for input in images {
        // A name first, then an image ID (prefix), as Docker resolves `docker rmi` arguments.
        let name = stored_name(input).ok();
        if let Some(name) = &name {
            if store.images().remove(name)? {
                writeln!(out, "Untagged: {}", familiar(name))?;
                continue;
            }
        }
        match find_by_id(&store, input)? {
            Some(records) => {
                let tagged: Vec<String> = records
                    .iter()
                    .filter(|r| !is_untagged(&r.name))
                    .map(|r| familiar(&r.name))
                    .collect();
                // Docker refuses to drop several names at once by ID without --force; img
                // has no force, so it asks for the names.
                if tagged.len() > 1 {
                    bail!(
                        "image {input} has several names ({}): remove them by name",
                        tagged.join(", ")
                    );
                }
                let id = image_id(&store.content(), &records[0].target)
                    .context("cannot read the image")?;
                for record in &records {
                    store.images().remove(&record.name)?;
                    if !is_untagged(&record.name) {
                        writeln!(out, "Untagged: {}", familiar(&record.name))?;
                    }
                }
                writeln!(out, "Deleted: {id}")?;
            }
            None => missing.push(name.unwrap_or_else(|| input.clone())),
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
