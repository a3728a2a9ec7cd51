//! `--cache-to` and `--cache-from`, spelled as buildx spells them.
//!
//! `--cache-to type=registry,ref=REF[,mode=min|max][,compression=gzip|zstd|uncompressed]
//! [,oci-mediatypes=true|false][,image-manifest=true|false][,ignore-error=true|false]
//! [,cache-mounts=true|false][,cache-mounts-max-size=BYTES[k|m|g]]`, `type=local,dest=DIR[,…]`,
//! `type=inline`; `--cache-from type=registry,ref=REF`, a bare REF, or `type=local,src=DIR`.

use std::path::PathBuf;

use anyhow::{bail, Context};
use img_registry::Reference;
use img_snapshot::Compression;
use img_worker::CacheMode;

/// Where a cache goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheTarget {
    /// A registry reference.
    Registry(Reference),
    /// An OCI layout directory, with the tag to file the cache under.
    Local { dir: PathBuf, tag: Option<String> },
    /// The pushed image's config.
    Inline,
}

/// One `--cache-to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheToSpec {
    pub target: CacheTarget,
    pub mode: CacheMode,
    /// `None`: the image's compression.
    pub compression: Option<Compression>,
    /// `compression-level=N`; `None`: the image's level when the compression is the image's.
    pub compression_level: Option<u32>,
    /// A failed export is a warning, not a failed build.
    pub ignore_error: bool,
    pub cache_mounts: bool,
    pub cache_mounts_max_size: Option<u64>,
}

/// One `--cache-from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheFromSpec {
    /// A cache manifest, or an image with an inline cache.
    Registry(Reference),
    /// An OCI layout directory.
    Local { dir: PathBuf, tag: Option<String> },
}

/// `key=value` pairs of a spec; a lone word is a key with an empty value.
fn fields<'s>(flag: &str, spec: &'s str) -> anyhow::Result<Vec<(&'s str, &'s str)>> {
    let mut out = Vec::new();
    for part in spec.split(',') {
        let part = part.trim();
        if part.is_empty() {
            bail!("invalid {flag} {spec:?}: empty field");
        }
        out.push(part.split_once('=').unwrap_or((part, "")));
    }
    Ok(out)
}

fn parse_bool(flag: &str, spec: &str, key: &str, value: &str) -> anyhow::Result<bool> {
    match value {
        "true" | "1" | "" => Ok(true),
        "false" | "0" => Ok(false),
        _ => bail!("invalid {flag} {spec:?}: {key} is true or false, not {value:?}"),
    }
}

fn parse_reference(flag: &str, spec: &str, value: &str) -> anyhow::Result<Reference> {
    Reference::parse(value)
        .with_context(|| format!("invalid {flag} {spec:?}: {value:?} is not an image reference"))
}

/// `10g`, `512m`, `300k` or plain bytes.
fn parse_size(flag: &str, spec: &str, value: &str) -> anyhow::Result<u64> {
    let lower = value.to_ascii_lowercase();
    let lower = lower.trim_end_matches('b');
    let (digits, unit) = match lower.char_indices().last() {
        Some((i, 'k')) => (&lower[..i], 1u64 << 10),
        Some((i, 'm')) => (&lower[..i], 1 << 20),
        Some((i, 'g')) => (&lower[..i], 1 << 30),
        _ => (lower, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .with_context(|| {
            format!("invalid {flag} {spec:?}: cache-mounts-max-size is bytes, or a number with k, m or g, not {value:?}")
        })
}

/// Parses one `--cache-to`.
pub fn parse_cache_to(spec: &str) -> anyhow::Result<CacheToSpec> {
    const FLAG: &str = "--cache-to";
    let fields = fields(FLAG, spec)?;
    let mut kind = None;
    let mut unknown = None;
    let (mut reference, mut dest, mut tag) = (None, None, None);
    let mut out = CacheToSpec {
        target: CacheTarget::Inline,
        mode: CacheMode::Min,
        compression: None,
        compression_level: None,
        ignore_error: false,
        cache_mounts: false,
        cache_mounts_max_size: None,
    };
    for (key, value) in fields {
        match key {
            "type" => kind = Some(value),
            "ref" => reference = Some(parse_reference(FLAG, spec, value)?),
            "dest" => dest = Some(PathBuf::from(value)),
            "tag" => tag = Some(value.to_owned()),
            "mode" => {
                out.mode = match value {
                    "min" => CacheMode::Min,
                    "max" => CacheMode::Max,
                    _ => bail!("invalid {FLAG} {spec:?}: mode is min or max, not {value:?}"),
                }
            }
            "compression" => {
                out.compression = Some(
                    value
                        .parse()
                        .map_err(|e| anyhow::anyhow!("invalid {FLAG} {spec:?}: {e}"))?,
                )
            }
            "ignore-error" => out.ignore_error = parse_bool(FLAG, spec, key, value)?,
            "cache-mounts" => out.cache_mounts = parse_bool(FLAG, spec, key, value)?,
            "cache-mounts-max-size" => {
                out.cache_mounts_max_size = Some(parse_size(FLAG, spec, value)?)
            }
            // img always writes OCI media types and an image manifest (what buildx's
            // `oci-mediatypes=true,image-manifest=true` select); the other choice is refused
            // rather than silently ignored.
            "oci-mediatypes" | "image-manifest" => {
                if !parse_bool(FLAG, spec, key, value)? {
                    bail!("invalid {FLAG} {spec:?}: img writes the cache with OCI media types as an image manifest; {key}=false is not supported");
                }
            }
            "compression-level" => {
                out.compression_level = Some(value.parse().map_err(|_| {
                    anyhow::anyhow!(
                        "invalid {FLAG} {spec:?}: compression-level {value:?} is not a number"
                    )
                })?)
            }
            // Layers of another compression are written again in the cache's already.
            "force-compression" => {}
            // Reported after the type, which says which options there are.
            _ => {
                unknown.get_or_insert(key);
            }
        }
    }
    out.target = match kind {
        Some("registry") => CacheTarget::Registry(reference.with_context(|| {
            format!("invalid {FLAG} {spec:?}: type=registry needs ref=REFERENCE")
        })?),
        Some("local") => CacheTarget::Local {
            dir: dest.with_context(|| {
                format!("invalid {FLAG} {spec:?}: type=local needs dest=DIRECTORY")
            })?,
            tag,
        },
        Some("inline") => {
            if out.mode == CacheMode::Max {
                bail!("invalid {FLAG} {spec:?}: an inline cache holds the image's own layers only (mode=min)");
            }
            if out.cache_mounts {
                bail!("invalid {FLAG} {spec:?}: cache mounts travel in a registry or local cache, not inline");
            }
            CacheTarget::Inline
        }
        Some(other) => {
            bail!("invalid {FLAG} {spec:?}: unknown type {other:?} (use registry, local or inline)")
        }
        None => bail!("invalid {FLAG} {spec:?}: give type=registry, type=local or type=inline"),
    };
    if let Some(key) = unknown {
        bail!("invalid {FLAG} {spec:?}: unknown option {key:?}");
    }
    Ok(out)
}

/// Parses one `--cache-from`.
pub fn parse_cache_from(spec: &str) -> anyhow::Result<CacheFromSpec> {
    const FLAG: &str = "--cache-from";
    if !spec.contains('=') {
        return Ok(CacheFromSpec::Registry(parse_reference(FLAG, spec, spec)?));
    }
    let (mut kind, mut reference, mut src, mut tag) = (None, None, None, None);
    let mut unknown = None;
    for (key, value) in fields(FLAG, spec)? {
        match key {
            "type" => kind = Some(value),
            "ref" => reference = Some(parse_reference(FLAG, spec, value)?),
            "src" => src = Some(PathBuf::from(value)),
            "tag" => tag = Some(value.to_owned()),
            // buildx's local `digest=` pin: the index entry is found by tag here.
            "digest" => {}
            // Reported after the type, which says which options there are.
            _ => {
                unknown.get_or_insert(key);
            }
        }
    }
    let kind = kind.unwrap_or("registry");
    if !matches!(kind, "registry" | "local") {
        bail!("invalid {FLAG} {spec:?}: unknown type {kind:?} (use registry or local)");
    }
    if let Some(key) = unknown {
        bail!("invalid {FLAG} {spec:?}: unknown option {key:?}");
    }
    match kind {
        "registry" => Ok(CacheFromSpec::Registry(reference.with_context(|| {
            format!("invalid {FLAG} {spec:?}: type=registry needs ref=REFERENCE")
        })?)),
        "local" => Ok(CacheFromSpec::Local {
            dir: src.with_context(|| {
                format!("invalid {FLAG} {spec:?}: type=local needs src=DIRECTORY")
            })?,
            tag,
        }),
        other => bail!("invalid {FLAG} {spec:?}: unknown type {other:?} (use registry or local)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_to_forms() {
        let spec = parse_cache_to("type=registry,ref=localhost:5000/app:cache,mode=max,compression=zstd,compression-level=12,ignore-error=true,cache-mounts=true,cache-mounts-max-size=2g").unwrap();
        assert_eq!(
            spec.target,
            CacheTarget::Registry(Reference::parse("localhost:5000/app:cache").unwrap())
        );
        assert_eq!(spec.mode, CacheMode::Max);
        assert_eq!(spec.compression, Some(Compression::Zstd));
        assert_eq!(spec.compression_level, Some(12));
        assert!(spec.ignore_error && spec.cache_mounts);
        assert_eq!(spec.cache_mounts_max_size, Some(2 << 30));
        let local = parse_cache_to("type=local,dest=/tmp/c").unwrap();
        assert_eq!(local.mode, CacheMode::Min);
        assert!(
            matches!(local.target, CacheTarget::Local { ref dir, tag: None } if dir == &PathBuf::from("/tmp/c"))
        );
        assert_eq!(
            parse_cache_to("type=inline").unwrap().target,
            CacheTarget::Inline
        );
        assert!(
            parse_cache_to("type=registry,ref=r/a:c,oci-mediatypes=true,image-manifest=true")
                .is_ok()
        );
    }

    #[test]
    fn bad_cache_to_forms_say_what_is_wrong() {
        for (spec, says) in [
            ("type=registry", "needs ref="),
            ("type=local", "needs dest="),
            ("type=s3,bucket=b", "unknown type \"s3\""),
            ("ref=r/a:c", "give type="),
            ("type=registry,ref=r/a:c,mode=all", "mode is min or max"),
            (
                "type=registry,ref=r/a:c,colour=red",
                "unknown option \"colour\"",
            ),
            ("type=inline,mode=max", "mode=min"),
            (
                "type=registry,ref=r/a:c,image-manifest=false",
                "not supported",
            ),
            (
                "type=registry,ref=r/a:c,cache-mounts-max-size=lots",
                "cache-mounts-max-size",
            ),
            ("type=registry,ref=team/App", "not an image reference"),
        ] {
            let err = format!("{:#}", parse_cache_to(spec).unwrap_err());
            assert!(err.contains(says), "{spec}: {err}");
        }
    }

    #[test]
    fn cache_from_forms() {
        let r = Reference::parse("localhost:5000/app:cache").unwrap();
        assert_eq!(
            parse_cache_from("localhost:5000/app:cache").unwrap(),
            CacheFromSpec::Registry(r.clone())
        );
        assert_eq!(
            parse_cache_from("type=registry,ref=localhost:5000/app:cache").unwrap(),
            CacheFromSpec::Registry(r)
        );
        assert_eq!(
            parse_cache_from("type=local,src=/tmp/c").unwrap(),
            CacheFromSpec::Local {
                dir: "/tmp/c".into(),
                tag: None
            }
        );
        for (spec, says) in [
            ("type=local", "needs src="),
            ("type=gha,scope=main", "unknown type \"gha\""),
            ("type=local,src=/c,colour=red", "unknown option \"colour\""),
            ("type=registry", "needs ref="),
        ] {
            let err = format!("{:#}", parse_cache_from(spec).unwrap_err());
            assert!(err.contains(says), "{spec}: {err}");
        }
    }
}
