//! `img prune [--all] [--keep-duration D] [--keep-storage SIZE]`: trims the build cache, then
//! deletes every blob and snapshot that no image, no cache record and no running build
//! refers to.
//!
//! Without flags only garbage goes; the cache records stay. `--keep-duration` drops records
//! last used longer ago than D, `--keep-storage` drops the least recently used records until
//! the rest fit in SIZE (BuildKit's prune options), `--all` drops every record and every
//! `RUN --mount=type=cache` directory no running step holds.

use std::io::Write;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use img_solver::CacheRecord;

use crate::config::Config;
use crate::progress::human_size;

/// What to prune, checked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PruneOptions {
    /// Drop every cache record.
    pub all: bool,
    /// Keep records used more recently than this.
    pub keep_duration: Option<Duration>,
    /// Keep the most recently used records up to this many bytes.
    pub keep_storage: Option<u64>,
}

impl PruneOptions {
    /// Checks the flags' text.
    pub fn from_flags(
        all: bool,
        keep_duration: Option<&str>,
        keep_storage: Option<&str>,
    ) -> anyhow::Result<PruneOptions> {
        let keep_duration = keep_duration
            .map(|d| {
                humantime::parse_duration(d).with_context(|| {
                    format!("invalid --keep-duration {d:?}: use e.g. 30m, 24h, 7days")
                })
            })
            .transpose()?;
        let keep_storage = keep_storage.map(parse_size).transpose()?;
        Ok(PruneOptions {
            all,
            keep_duration,
            keep_storage,
        })
    }

    /// The records to drop, given every record and the time now.
    fn doomed<'a>(&self, records: &'a [CacheRecord], now: SystemTime) -> Vec<&'a CacheRecord> {
        if self.all {
            return records.iter().collect();
        }
        let mut by_recent_use: Vec<&CacheRecord> = records.iter().collect();
        by_recent_use.sort_by_key(|r| std::cmp::Reverse(r.last_used_at));
        let mut kept_bytes = 0u64;
        by_recent_use
            .into_iter()
            .filter(|r| {
                let too_old = self.keep_duration.is_some_and(|keep| {
                    now.duration_since(r.last_used_at).unwrap_or_default() > keep
                });
                if too_old {
                    return true;
                }
                match self.keep_storage {
                    Some(limit) => {
                        kept_bytes += r.size.unwrap_or(0);
                        kept_bytes > limit
                    }
                    None => false,
                }
            })
            .collect()
    }
}

/// Sizes as Docker's `--keep-storage` reads them (`units.RAMInBytes`): a number with an
/// optional unit b, k, m, g, t (also kb/kib...), all binary.
pub fn parse_size(text: &str) -> anyhow::Result<u64> {
    let lower = text.trim().to_ascii_lowercase();
    let split = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(split);
    let value: f64 = number
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v >= 0.0)
        .with_context(|| format!("invalid size {text:?}: use e.g. 512MB or 10GB"))?;
    let shift = match unit.trim() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        "p" | "pb" | "pib" => 50,
        other => bail!("invalid size {text:?}: unknown unit {other:?}"),
    };
    Ok((value * (1u64 << shift) as f64) as u64)
}

pub fn run(config: &Config, options: &PruneOptions) -> anyhow::Result<()> {
    let store = config.open_store()?;
    let cache = crate::build_cache::open(&store)?;
    let records = cache.records().context("cannot list the build cache")?;
    let doomed = options.doomed(&records, SystemTime::now());
    let mut out = std::io::stdout().lock();
    for record in &doomed {
        cache
            .remove(&record.key)
            .context("cannot remove a build cache record")?;
        if config.debug {
            writeln!(out, "removed cache record: {}", record.description)?;
        }
    }
    let roots = crate::build_cache::gc_roots(config, &store, &cache)?;
    let report = store.gc(&roots).context("garbage collection failed")?;
    if config.debug {
        for blob in &report.blobs_removed {
            writeln!(out, "removed blob: {blob}")?;
        }
        for snapshot in &report.snapshots_removed {
            writeln!(out, "removed snapshot: {snapshot}")?;
        }
    }
    let (mounts_removed, mount_bytes) = if options.all {
        prune_cache_mounts(&store.state().root().join("cache-mounts"))?
    } else {
        (0, 0)
    };
    writeln!(
        out,
        "Removed {} cache records, {} blobs, {} snapshots",
        doomed.len(),
        report.blobs_removed.len(),
        report.snapshots_removed.len()
    )?;
    if mounts_removed > 0 {
        writeln!(out, "Removed {mounts_removed} cache mounts")?;
    }
    writeln!(
        out,
        "Reclaimed: {}",
        human_size(report.bytes_reclaimed + mount_bytes)
    )?;
    Ok(())
}

/// Deletes every cache mount directory no running step holds; returns how many went and the
/// bytes they held.
fn prune_cache_mounts(dir: &std::path::Path) -> anyhow::Result<(usize, u64)> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    let (mut count, mut bytes) = (0, 0);
    for entry in entries {
        let path = entry
            .with_context(|| format!("cannot list {}", dir.display()))?
            .path();
        // `.removing-*` are removals of another prune in progress.
        let is_cache = path.is_dir()
            && !path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if !is_cache {
            continue;
        }
        if let Some(freed) = img_sandbox::CacheMountLock::remove_if_unused(&path)
            .with_context(|| format!("cannot remove the cache mount {}", path.display()))?
        {
            count += 1;
            bytes += freed;
        }
    }
    Ok((count, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_docker_keep_storage() {
        // text | bytes
        for (text, want) in [
            ("0", 0),
            ("512", 512),
            ("1k", 1024),
            ("10KB", 10 * 1024),
            ("1.5m", 3 << 19),
            ("2GiB", 2 << 30),
            ("1tb", 1 << 40),
        ] {
            assert_eq!(parse_size(text).unwrap(), want, "{text}");
        }
        for bad in ["", "lots", "10XB", "-1"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    fn record(name: &str, size: u64, used_secs_ago: u64, now: SystemTime) -> CacheRecord {
        let at = now - Duration::from_secs(used_secs_ago);
        CacheRecord {
            key: img_llb::Digest::of(name.as_bytes())
                .to_string()
                .parse()
                .unwrap(),
            output_id: format!("test:{name}"),
            op: img_llb::Digest::of(name.as_bytes()),
            description: name.to_owned(),
            size: Some(size),
            created_at: at,
            last_used_at: at,
        }
    }

    #[test]
    fn which_records_go() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let records = [
            record("new", 100, 10, now),
            record("old", 100, 7200, now),
            record("mid", 300, 600, now),
        ];
        let names = |o: &PruneOptions| -> Vec<String> {
            let mut v: Vec<String> = o
                .doomed(&records, now)
                .iter()
                .map(|r| r.description.clone())
                .collect();
            v.sort();
            v
        };
        assert!(names(&PruneOptions::default()).is_empty());
        let all = PruneOptions {
            all: true,
            ..PruneOptions::default()
        };
        assert_eq!(names(&all), ["mid", "new", "old"]);
        let hour = PruneOptions::from_flags(false, Some("1h"), None).unwrap();
        assert_eq!(names(&hour), ["old"]);
        // Most recent first: new (100) and mid (300) fit in 400, old does not.
        let storage = PruneOptions::from_flags(false, None, Some("400")).unwrap();
        assert_eq!(names(&storage), ["old"]);
        let tight = PruneOptions::from_flags(false, None, Some("100")).unwrap();
        assert_eq!(names(&tight), ["mid", "old"]);
        assert!(PruneOptions::from_flags(false, Some("soon"), None).is_err());
    }
}
