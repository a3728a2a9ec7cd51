//! `RUN --mount=...` values, parsed as BuildKit's `commands_runmount.go` does.

use std::fmt;

use crate::instructions::error::suggest;
use crate::instructions::flags::parse_bool;

/// The kind of a RUN mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MountType {
    /// A directory of the context, a stage or an image (the default).
    Bind,
    /// A cache directory that persists across builds.
    Cache,
    /// An empty tmpfs.
    Tmpfs,
    /// A build secret, as a file or an environment variable.
    Secret,
    /// The SSH agent socket.
    Ssh,
}

impl MountType {
    const ALL: [(&'static str, MountType); 5] = [
        ("bind", MountType::Bind),
        ("cache", MountType::Cache),
        ("tmpfs", MountType::Tmpfs),
        ("secret", MountType::Secret),
        ("ssh", MountType::Ssh),
    ];

    fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, t)| *t == self)
            .map(|(n, _)| *n)
            .unwrap_or("bind")
    }
}

impl fmt::Display for MountType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a cache mount is shared between concurrent builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheSharing {
    /// Several writers at once (the default).
    Shared,
    /// A new empty cache for each concurrent writer.
    Private,
    /// Writers wait for each other.
    Locked,
}

/// A RUN mount with BuildKit's defaults filled in.
///
/// Values may contain variables before the stage is planned (`target=$DIR`); in a build plan
/// every mount has been parsed again with its values expanded.
#[derive(Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Mount {
    /// The mount's kind.
    #[serde(rename = "type")]
    pub kind: MountType,
    /// The stage, named context or image to mount from (bind and cache).
    pub from: Option<String>,
    /// The path inside `from` (bind, cache) or the secret id alias (secret).
    pub source: Option<String>,
    /// Where the mount appears. Defaults: the cache id is the target; a secret goes to
    /// `/run/secrets/<id>` unless it is only an environment variable; the N-th SSH mount goes to
    /// `/run/buildkit/ssh_agent.N`.
    pub target: Option<String>,
    /// Read-only. Default: true for bind, secret and ssh; false for cache and tmpfs.
    pub read_only: bool,
    /// The tmpfs size limit in bytes.
    pub size_limit: Option<u64>,
    /// The cache, secret or SSH id. Defaults: a cache's target, a secret's target basename,
    /// `default` for SSH.
    pub id: Option<String>,
    /// How a cache is shared (cache mounts only; `shared` by default).
    pub sharing: Option<CacheSharing>,
    /// Fail when the secret or SSH socket is missing.
    pub required: bool,
    /// The environment variable that receives a secret.
    pub env: Option<String>,
    /// The file mode (secret: 0400, ssh: 0600, cache: 0755).
    pub mode: Option<u32>,
    /// The owner uid (secret, ssh, cache; 0 by default).
    pub uid: Option<u32>,
    /// The owner gid (secret, ssh, cache; 0 by default).
    pub gid: Option<u32>,
    /// The value as written after `--mount=`.
    pub spec: String,
}

impl fmt::Debug for Mount {
    // The spec of a secret mount names the secret; kept out of Debug like every other value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mount")
            .field("kind", &self.kind)
            .field("from", &self.from)
            .field("target", &self.target)
            .field("read_only", &self.read_only)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// A bad `--mount` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MountError {
    /// Not a valid CSV line.
    #[error("invalid mount value {spec:?}: {reason}")]
    Csv {
        /// The value as written.
        spec: String,
        /// What is wrong with its quoting.
        reason: &'static str,
    },
    /// A field without `=` that must have a value.
    #[error("invalid field '{field}' must be a key=value pair")]
    NotKeyValue {
        /// The field.
        field: String,
    },
    /// An unknown mount type.
    #[error(
        "unsupported mount type {value:?} (expected bind, cache, tmpfs, secret or ssh){}",
        hint(suggestion)
    )]
    UnknownType {
        /// The type given.
        value: String,
        /// The closest known type.
        suggestion: Option<String>,
    },
    /// An unknown key.
    #[error("unexpected key '{key}' in '{field}'{}", hint(suggestion))]
    UnknownKey {
        /// The key.
        key: String,
        /// The field it was in.
        field: String,
        /// The closest known key.
        suggestion: Option<String>,
    },
    /// A key the mount type does not take.
    #[error("unexpected key '{key}' for mount type '{kind}'")]
    KeyNotForType {
        /// The key.
        key: String,
        /// The mount type.
        kind: MountType,
    },
    /// A value of the wrong syntax.
    #[error("invalid value {value:?} for mount option '{key}': expected {expected}")]
    InvalidValue {
        /// The key.
        key: String,
        /// The value (never the value of a secret: mount options are names, not secrets).
        value: String,
        /// What the key accepts.
        expected: &'static str,
    },
    /// `from=$VAR`.
    #[error(
        "'from' doesn't support variable expansion, define alias stage instead (got {value:?})"
    )]
    FromVariable {
        /// The value given.
        value: String,
    },
    /// Two keys that cannot go together, or a missing required one.
    #[error("invalid {kind} mount: {reason}")]
    Conflict {
        /// The mount type.
        kind: MountType,
        /// What is wrong.
        reason: &'static str,
    },
    /// A variable in a value could not be expanded.
    #[error("cannot expand mount option '{key}': {message}")]
    Expansion {
        /// The key whose value failed.
        key: String,
        /// The expansion error.
        message: String,
    },
}

fn hint(suggestion: &Option<String>) -> String {
    suggestion
        .as_ref()
        .map(|s| format!(" (did you mean {s}?)"))
        .unwrap_or_default()
}

const ALL_KEYS: &[&str] = &[
    "type",
    "from",
    "source",
    "target",
    "readonly",
    "id",
    "sharing",
    "required",
    "size",
    "mode",
    "uid",
    "gid",
    "src",
    "dst",
    "destination",
    "ro",
    "rw",
    "readwrite",
    "env",
];

/// How option values are treated while parsing.
pub(crate) enum Values<'a> {
    /// Values are taken as written; those that contain `$` are kept as text and not checked,
    /// since they are only known once the stage is planned.
    Deferred,
    /// Every value except `from` is expanded first.
    Expand(&'a mut dyn FnMut(&str) -> Result<String, String>),
}

impl Mount {
    /// Parses one `--mount` value; `ssh_index` is the number of SSH mounts before it in the
    /// same RUN (for the default target).
    pub(crate) fn parse(
        spec: &str,
        ssh_index: usize,
        mut values: Values<'_>,
    ) -> Result<Mount, MountError> {
        let fields = split_csv(spec)?;
        let kind = find_type(&fields)?;
        let mut m = Mount {
            kind,
            from: None,
            source: None,
            target: None,
            read_only: matches!(kind, MountType::Bind | MountType::Secret | MountType::Ssh),
            size_limit: None,
            id: None,
            sharing: None,
            required: false,
            env: None,
            mode: None,
            uid: None,
            gid: None,
            spec: spec.to_string(),
        };
        for field in &fields {
            let Some((key, value)) = field.split_once('=') else {
                match field.to_ascii_lowercase().as_str() {
                    "readonly" | "ro" => m.read_only = true,
                    "readwrite" | "rw" => m.read_only = false,
                    "required" if matches!(kind, MountType::Secret | MountType::Ssh) => {
                        m.required = true
                    }
                    "required" => {
                        return Err(MountError::KeyNotForType {
                            key: "required".into(),
                            kind,
                        })
                    }
                    _ => {
                        return Err(MountError::NotKeyValue {
                            field: field.clone(),
                        })
                    }
                }
                continue;
            };
            let key = key.to_ascii_lowercase();
            let value = if key == "from" {
                // BuildKit refuses `$` followed by anything in `from`: the stage graph must be
                // known before variables are.
                if value.find('$').is_some_and(|i| i + 1 < value.len()) {
                    return Err(MountError::FromVariable {
                        value: value.to_string(),
                    });
                }
                value.to_string()
            } else {
                match &mut values {
                    Values::Expand(expand) => {
                        expand(value).map_err(|message| MountError::Expansion {
                            key: key.clone(),
                            message,
                        })?
                    }
                    Values::Deferred if value.contains('$') => {
                        set_deferred(&mut m, &key, value, field)?;
                        continue;
                    }
                    Values::Deferred => value.to_string(),
                }
            };
            set_value(&mut m, &key, value, field)?;
        }
        finish(m, ssh_index)
    }
}

/// Records a value that still has variables: only text fields can hold it.
fn set_deferred(m: &mut Mount, key: &str, value: &str, field: &str) -> Result<(), MountError> {
    match key {
        "source" | "src" => m.source = Some(value.into()),
        "target" | "dst" | "destination" => m.target = Some(value.into()),
        "id" => m.id = Some(value.into()),
        "env" => m.env = Some(value.into()),
        k if ALL_KEYS.contains(&k) => {}
        _ => return unknown_key(key, field),
    }
    Ok(())
}

fn unknown_key(key: &str, field: &str) -> Result<(), MountError> {
    Err(MountError::UnknownKey {
        key: key.to_string(),
        field: field.to_string(),
        suggestion: suggest(key, ALL_KEYS.iter().copied()),
    })
}

fn set_value(m: &mut Mount, key: &str, value: String, field: &str) -> Result<(), MountError> {
    let invalid = |expected| MountError::InvalidValue {
        key: key.to_string(),
        value: value.clone(),
        expected,
    };
    let not_for_type = || MountError::KeyNotForType {
        key: key.to_string(),
        kind: m.kind,
    };
    match key {
        "type" => {}
        "from" => m.from = Some(value),
        "source" | "src" => m.source = Some(value),
        "target" | "dst" | "destination" => m.target = Some(value),
        "readonly" | "ro" => {
            m.read_only = parse_bool(&value).ok_or_else(|| invalid("a boolean"))?
        }
        "readwrite" | "rw" => {
            m.read_only = !parse_bool(&value).ok_or_else(|| invalid("a boolean"))?
        }
        "required" => {
            if !matches!(m.kind, MountType::Secret | MountType::Ssh) {
                return Err(not_for_type());
            }
            m.required = parse_bool(&value).ok_or_else(|| invalid("a boolean"))?;
        }
        "size" => {
            if m.kind != MountType::Tmpfs {
                return Err(not_for_type());
            }
            m.size_limit =
                Some(parse_ram_size(&value).ok_or_else(|| invalid("a size such as 64m"))?);
        }
        "id" => m.id = Some(value),
        "sharing" => {
            m.sharing = Some(match value.to_ascii_lowercase().as_str() {
                "shared" => CacheSharing::Shared,
                "private" => CacheSharing::Private,
                "locked" => CacheSharing::Locked,
                _ => return Err(invalid("shared, private or locked")),
            })
        }
        "mode" => {
            m.mode = Some(u32::from_str_radix(&value, 8).map_err(|_| invalid("an octal mode"))?)
        }
        "uid" => m.uid = Some(value.parse().map_err(|_| invalid("a numeric uid"))?),
        "gid" => m.gid = Some(value.parse().map_err(|_| invalid("a numeric gid"))?),
        "env" => m.env = Some(value),
        _ => return unknown_key(key, field),
    }
    Ok(())
}

/// Checks the combination of options and fills in the defaults that depend on the type.
fn finish(mut m: Mount, ssh_index: usize) -> Result<Mount, MountError> {
    let kind = m.kind;
    let conflict = |reason| Err(MountError::Conflict { kind, reason });
    if !matches!(kind, MountType::Secret | MountType::Ssh | MountType::Cache) {
        if m.mode.is_some() {
            return conflict("mode is only allowed for secret, ssh and cache mounts");
        }
        if m.uid.is_some() {
            return conflict("uid is only allowed for secret, ssh and cache mounts");
        }
        if m.gid.is_some() {
            return conflict("gid is only allowed for secret, ssh and cache mounts");
        }
    }
    if m.sharing.is_some() && kind != MountType::Cache {
        return conflict("sharing is only allowed for cache mounts");
    }
    match kind {
        MountType::Bind | MountType::Tmpfs => {
            if m.target.is_none() {
                return conflict("target is required (write target=/path)");
            }
        }
        MountType::Cache => {
            let Some(target) = &m.target else {
                return conflict("target is required (write target=/path)");
            };
            if m.id.is_none() {
                m.id = Some(crate::gopath::clean(target));
            }
            m.sharing.get_or_insert(CacheSharing::Shared);
            m.mode.get_or_insert(0o755);
            m.uid.get_or_insert(0);
            m.gid.get_or_insert(0);
        }
        MountType::Secret => {
            if m.from.is_some() {
                return conflict("a secret mount cannot have from");
            }
            if m.source.is_some() && m.id.is_some() {
                return conflict("source and id cannot both be set");
            }
            if m.id.is_none() {
                m.id = m.source.take();
            }
            if m.id.is_none() {
                let Some(target) = &m.target else {
                    return conflict("one of id, source or target is required");
                };
                let base = target
                    .trim_end_matches('/')
                    .rsplit('/')
                    .next()
                    .unwrap_or("");
                m.id = Some(base.to_string());
            }
            if m.target.is_none() && m.env.is_none() {
                let id = m.id.as_deref().unwrap_or_default();
                let base = id.rsplit('/').next().unwrap_or(id);
                m.target = Some(format!("/run/secrets/{base}"));
            }
            m.mode.get_or_insert(0o400);
            m.uid.get_or_insert(0);
            m.gid.get_or_insert(0);
        }
        MountType::Ssh => {
            if m.from.is_some() {
                return conflict("an ssh mount cannot have from");
            }
            m.id.get_or_insert_with(|| "default".to_string());
            m.target
                .get_or_insert_with(|| format!("/run/buildkit/ssh_agent.{ssh_index}"));
            m.mode.get_or_insert(0o600);
            m.uid.get_or_insert(0);
            m.gid.get_or_insert(0);
        }
    }
    Ok(m)
}

/// The `type=` of a mount, looked up first so that keys checked against the type do not
/// depend on the order of the fields.
fn find_type(fields: &[String]) -> Result<MountType, MountError> {
    let mut kind = MountType::Bind;
    for field in fields {
        if let Some((key, value)) = field.split_once('=') {
            if key.eq_ignore_ascii_case("type") {
                let lower = value.to_ascii_lowercase();
                kind = MountType::ALL
                    .iter()
                    .find(|(n, _)| *n == lower)
                    .map(|(_, t)| *t)
                    .ok_or_else(|| MountError::UnknownType {
                        value: value.to_string(),
                        suggestion: suggest(&lower, MountType::ALL.iter().map(|(n, _)| *n)),
                    })?;
            }
        }
    }
    Ok(kind)
}

/// Splits one CSV record as Go's `encoding/csv` does: fields may be quoted with `"`, and `""`
/// inside a quoted field is one quote.
fn split_csv(spec: &str) -> Result<Vec<String>, MountError> {
    let err = |reason| MountError::Csv {
        spec: spec.to_string(),
        reason,
    };
    let mut fields = Vec::new();
    let mut chars = spec.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err(err("unterminated quote")),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(_) => return Err(err("extraneous text after a closing quote")),
            }
        } else {
            loop {
                match chars.next() {
                    Some(',') => break,
                    Some('"') => {
                        return Err(err("bare \" in a field that does not start with a quote"))
                    }
                    Some(c) => field.push(c),
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                }
            }
            fields.push(field);
        }
    }
}

/// Sizes as Docker's `units.RAMInBytes` reads them: `64m`, `1g`, `512`, `1.5GiB` (powers of 1024).
fn parse_ram_size(value: &str) -> Option<u64> {
    let v = value.trim();
    let digits_end = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let number: f64 = v[..digits_end].parse().ok()?;
    let mut suffix = v[digits_end..].trim_start().to_ascii_lowercase();
    if suffix.ends_with('b') {
        suffix.pop();
    }
    if suffix.len() == 2 && suffix.ends_with('i') {
        suffix.pop();
    }
    let multiplier: u64 = match suffix.as_str() {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        "p" => 1 << 50,
        _ => return None,
    };
    Some((number * multiplier as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(spec: &str) -> Result<Mount, MountError> {
        Mount::parse(spec, 0, Values::Deferred)
    }

    #[test]
    fn bind_is_the_default_and_read_only() {
        let m = parse("target=/src,from=build,source=/out").unwrap();
        assert_eq!(m.kind, MountType::Bind);
        assert!(m.read_only);
        assert_eq!(m.target.as_deref(), Some("/src"));
        assert_eq!(m.from.as_deref(), Some("build"));
        assert_eq!(m.source.as_deref(), Some("/out"));
        assert!(!parse("dst=/x,rw").unwrap().read_only);
        assert!(!parse("destination=/x,readwrite=true").unwrap().read_only);
        assert!(parse("TARGET=/x,RW=false").unwrap().read_only);
    }

    #[test]
    fn cache_defaults() {
        let m = parse("type=cache,target=/root/.cache").unwrap();
        assert_eq!(m.id.as_deref(), Some("/root/.cache"));
        assert_eq!(m.sharing, Some(CacheSharing::Shared));
        assert_eq!((m.mode, m.uid, m.gid), (Some(0o755), Some(0), Some(0)));
        assert!(!m.read_only);
        let m = parse("type=cache,target=/c,id=x,sharing=locked,mode=0700,uid=1000,gid=1000,ro")
            .unwrap();
        assert_eq!(m.id.as_deref(), Some("x"));
        assert_eq!(m.sharing, Some(CacheSharing::Locked));
        assert_eq!(
            (m.mode, m.uid, m.gid),
            (Some(0o700), Some(1000), Some(1000))
        );
        assert!(m.read_only);
    }

    #[test]
    fn tmpfs_size() {
        let m = parse("type=tmpfs,target=/tmp,size=64m").unwrap();
        assert_eq!(m.size_limit, Some(64 << 20));
        assert!(!m.read_only);
        assert!(parse("type=tmpfs,target=/t,size=lots").is_err());
        assert!(parse("type=bind,target=/t,size=1m").is_err());
    }

    #[test]
    fn secret_defaults() {
        let m = parse("type=secret,id=aws").unwrap();
        assert_eq!(m.target.as_deref(), Some("/run/secrets/aws"));
        assert_eq!((m.mode, m.uid, m.gid), (Some(0o400), Some(0), Some(0)));
        let m = parse("type=secret,target=/etc/token,required").unwrap();
        assert_eq!(m.id.as_deref(), Some("token"));
        assert!(m.required);
        let m = parse("type=secret,id=tok,env=TOKEN").unwrap();
        assert_eq!(m.target, None);
        assert_eq!(m.env.as_deref(), Some("TOKEN"));
        let m = parse("type=secret,source=tok").unwrap();
        assert_eq!(m.id.as_deref(), Some("tok"));
        assert!(parse("type=secret").is_err());
        assert!(parse("type=secret,id=a,source=b").is_err());
        assert!(parse("type=secret,id=a,from=x").is_err());
        assert!(parse("type=secret,id=a,sharing=locked").is_err());
    }

    #[test]
    fn ssh_defaults() {
        let m = Mount::parse("type=ssh", 1, Values::Deferred).unwrap();
        assert_eq!(m.id.as_deref(), Some("default"));
        assert_eq!(m.target.as_deref(), Some("/run/buildkit/ssh_agent.1"));
        assert_eq!(m.mode, Some(0o600));
        assert!(parse("type=ssh,required=true").unwrap().required);
    }

    #[test]
    fn file_info_only_for_secret_ssh_cache() {
        for spec in [
            "target=/x,mode=0700",
            "target=/x,uid=1",
            "type=tmpfs,target=/x,gid=1",
        ] {
            let err = parse(spec).unwrap_err();
            assert!(err.to_string().contains("only allowed"), "{spec}: {err}");
        }
        assert!(parse("target=/x,required").is_err());
    }

    #[test]
    fn keys_and_types_are_checked() {
        let err = parse("type=cahce,target=/x").unwrap_err();
        assert!(err.to_string().contains("did you mean cache?"), "{err}");
        let err = parse("target=/x,tagret=/y").unwrap_err();
        assert!(err.to_string().contains("unexpected key 'tagret'"), "{err}");
        let err = parse("target=/x,bogus").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid field 'bogus' must be a key=value pair"
        );
        assert!(parse("type=cache,target=/x,sharing=sometimes").is_err());
        assert!(parse("type=cache,target=/x,mode=999").is_err());
    }

    #[test]
    fn csv_quoting() {
        let m = parse(r#""target=/a,b",ro"#).unwrap();
        assert_eq!(m.target.as_deref(), Some("/a,b"));
        assert!(parse(r#"target="/x"#).is_err());
        assert!(parse(r#""target=/x"y"#).is_err());
    }

    #[test]
    fn variables_are_deferred_or_expanded_but_never_in_from() {
        let m = parse("type=cache,target=$DIR,uid=$UID").unwrap();
        assert_eq!(m.target.as_deref(), Some("$DIR"));
        let err = parse("from=$STAGE,target=/x").unwrap_err();
        assert!(matches!(err, MountError::FromVariable { .. }));
        let mut expand = |v: &str| Ok(v.replace("$DIR", "/cache").replace("$UID", "1000"));
        let m = Mount::parse(
            "type=cache,target=$DIR,uid=$UID",
            0,
            Values::Expand(&mut expand),
        )
        .unwrap();
        assert_eq!(m.target.as_deref(), Some("/cache"));
        assert_eq!(m.id.as_deref(), Some("/cache"));
        assert_eq!(m.uid, Some(1000));
    }

    #[test]
    fn cache_ids_are_clean_paths() {
        assert_eq!(crate::gopath::clean("/root/.cache/"), "/root/.cache");
        assert_eq!(crate::gopath::clean("a/./b/../c"), "a/c");
        assert_eq!(crate::gopath::clean("../x"), "../x");
        assert_eq!(crate::gopath::clean("/../x"), "/x");
        assert_eq!(crate::gopath::clean("./"), ".");
        let m = parse("type=cache,target=/c//d/").unwrap();
        assert_eq!(m.id.as_deref(), Some("/c/d"));
    }

    #[test]
    fn ram_sizes() {
        assert_eq!(parse_ram_size("512"), Some(512));
        assert_eq!(parse_ram_size("1k"), Some(1024));
        assert_eq!(parse_ram_size("1.5GiB"), Some(3 << 29));
        assert_eq!(parse_ram_size("2 mb"), Some(2 << 20));
        assert_eq!(parse_ram_size("m"), None);
    }
}
