//! `img tag SOURCE TARGET`: a second name for a stored image.

use std::io::Write;

use anyhow::Context;

use crate::config::Config;
use crate::image::{familiar, find, is_untagged, stored_name};

pub fn run(config: &Config, source: &str, target: &str) -> anyhow::Result<()> {
    let store = config.open_store()?;
    let record = find(&store, source)?;
    let target = stored_name(target)?;
    store
        .images()
        .put(&target, &record.target)
        .with_context(|| format!("cannot name the image {target}"))?;
    // Named now, an untagged image is no longer listed as `<none>` (as in Docker).
    if is_untagged(&record.name) {
        store.images().remove(&record.name)?;
    }
    writeln!(
        std::io::stdout().lock(),
        "Successfully tagged {} as {}",
        if is_untagged(&record.name) {
            source.to_owned()
        } else {
            familiar(&record.name)
        },
        familiar(&target)
    )?;
    Ok(())
}
