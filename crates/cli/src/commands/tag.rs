//! `img tag SOURCE TARGET`: a second name for a stored image.

use std::io::Write;

use anyhow::Context;

use crate::config::Config;
use crate::image::{familiar, find, stored_name};

pub fn run(config: &Config, source: &str, target: &str) -> anyhow::Result<()> {
    let store = config.open_store()?;
    let record = find(&store, source)?;
    let target = stored_name(target)?;
    store
        .images()
        .put(&target, &record.target)
        .with_context(|| format!("cannot name the image {target}"))?;
    writeln!(
        std::io::stdout().lock(),
        "Successfully tagged {} as {}",
        familiar(&record.name),
        familiar(&target)
    )?;
    Ok(())
}
