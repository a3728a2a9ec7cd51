//! `img du`: every blob and snapshot with its size and whether garbage collection could
//! reclaim it, then the totals (the original img's `du` table).

use std::collections::{HashMap, HashSet};
use std::io::Write;

use anyhow::Context;
use img_snapshot::{Digest, UsageKind};

use crate::config::Config;
use crate::image::{blobs_of, digest_of, familiar};
use crate::progress::human_size;

pub fn run(config: &Config) -> anyhow::Result<()> {
    let store = config.open_store()?;
    let cache = crate::build_cache::open(&store)?;
    let roots = crate::build_cache::gc_roots(config, &store, &cache)?;
    let content = store.content();

    // What each live blob is for: the image names reaching it, or the build cache.
    let mut owners: HashMap<Digest, Vec<String>> = HashMap::new();
    for record in store.images().list()? {
        if let Ok(root) = digest_of(&record.target) {
            for blob in blobs_of(&content, &root) {
                owners.entry(blob).or_default().push(familiar(&record.name));
            }
        }
    }
    for root in &roots.blobs {
        for blob in blobs_of(&content, root) {
            owners.entry(blob).or_default();
        }
    }
    let snapshots = store
        .snapshotter(config.backend)
        .context("cannot open the snapshotter")?
        .list()
        .context("cannot list snapshots")?;
    let parent: HashMap<&str, Option<&str>> = snapshots
        .iter()
        .map(|s| (s.key.as_str(), s.parent.as_deref()))
        .collect();
    let mut live_snapshots: HashSet<&str> = HashSet::new();
    for key in &roots.snapshots {
        let mut next = Some(key.as_str());
        while let Some(k) = next {
            if !live_snapshots.insert(k) {
                break;
            }
            next = parent.get(k).copied().flatten();
        }
    }

    let mut rows = Vec::new();
    let (mut total, mut reclaimable) = (0u64, 0u64);
    for usage in store.disk_usage()? {
        let (live, description) = match usage.kind {
            UsageKind::Blob => {
                let owner = usage.id.parse::<Digest>().ok().and_then(|d| owners.get(&d));
                let description = match owner {
                    Some(names) if !names.is_empty() => names.join(", "),
                    Some(_) => "build cache".to_owned(),
                    None => "unreferenced blob".to_owned(),
                };
                (owner.is_some(), description)
            }
            _ => {
                let live = live_snapshots.contains(usage.id.as_str());
                let description = if live {
                    "snapshot (build cache)"
                } else {
                    "unreferenced snapshot"
                };
                (live, description.to_owned())
            }
        };
        total += usage.size;
        if !live {
            reclaimable += usage.size;
        }
        rows.push((usage.id, !live, usage.size, description));
    }

    let mut out = std::io::stdout().lock();
    let id_width = if config.debug { 71 } else { 25 };
    writeln!(
        out,
        "{:<id_width$} {:<11} {:<10} DESCRIPTION",
        "ID", "RECLAIMABLE", "SIZE"
    )?;
    for (id, free, size, description) in rows {
        let id: String = if config.debug {
            id
        } else {
            id.strip_prefix("sha256:")
                .unwrap_or(&id)
                .chars()
                .take(25)
                .collect()
        };
        writeln!(
            out,
            "{id:<id_width$} {:<11} {:<10} {description}",
            free,
            human_size(size)
        )?;
    }
    writeln!(out, "Reclaimable: {}", human_size(reclaimable))?;
    writeln!(out, "Total:       {}", human_size(total))?;
    Ok(())
}
