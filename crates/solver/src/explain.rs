//! Why a step missed the cache: its inputs compared with those recorded the last time the same
//! Dockerfile location missed.
//!
//! A cache key is one digest, which says that something changed but not what. So whenever a
//! step misses, the solver keeps a compact account of what its key was made of
//! ([`StepInputs`]): the instruction, a digest of each environment variable's value, the base
//! image's manifest digest, each input's cache key or content checksum, and, for content
//! checksums, a short digest per copied path. The next miss at the same location compares the
//! two accounts and names what differs ([`CacheChange`]). Nothing of this happens on a cache
//! hit, so a cached build pays nothing for it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use img_llb::{Digest, Op, OpRef, SourceOp};
use serde::{Deserialize, Serialize};

use crate::checksum::{PathDigest, PathDigests};
use crate::{CacheKey, CacheKeyExtra};

/// At most this many changed paths are listed per input; the count covers the rest.
const MAX_LISTED_PATHS: usize = 100;

/// One thing that differs between a step and the last build of the same Dockerfile location.
/// Serialized with a `kind` tag for `--progress=rawjson`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum CacheChange {
    /// Nothing changed: the step's result was recorded, but is gone (pruned) or cannot be used
    /// here.
    ResultGone,
    /// The instruction's text changed.
    Instruction {
        /// The text recorded last time.
        was: String,
        /// The text now.
        now: String,
    },
    /// The instruction reads the same but expands to something else: a build arg or `ENV`
    /// it uses changed.
    Expansion,
    /// An environment variable of a `RUN` (a build arg or `ENV`) changed. Values are never
    /// recorded or shown: a build arg may hold something private.
    Env {
        /// The variable's name.
        name: String,
        /// Added, removed or modified.
        change: ChangeKind,
    },
    /// The base image now resolves to another manifest.
    BaseImage {
        /// The reference, without a pinned digest.
        reference: String,
        /// The manifest digest recorded last time.
        was: String,
        /// The manifest digest now.
        now: String,
    },
    /// Files the step copies changed.
    Files {
        /// The input they come from (its description).
        input: String,
        /// The first changed paths (at most 100), in path order; empty when the paths are not
        /// known (the checksum came from a record).
        paths: Vec<PathChange>,
        /// How many paths changed in all (0 when not known).
        total: usize,
    },
    /// A step this one builds on changed.
    Input {
        /// That step's description.
        input: String,
        /// Why that step changed, when known (e.g. `src/b.c changed`).
        cause: Option<String>,
    },
    /// Other data the step depends on changed (e.g. the checksum of the build context a
    /// local source stands for).
    Source,
    /// The cache key differs, but none of the recorded inputs does.
    Other,
}

/// How a path or variable changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// It is new.
    Added,
    /// It is gone.
    Removed,
    /// It is there with other content or metadata.
    Modified,
}

/// A changed path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathChange {
    /// The path relative to the copied tree's root (invalid UTF-8 replaced).
    pub path: String,
    /// What happened to it.
    pub change: ChangeKind,
}

impl std::fmt::Display for ChangeKind {
    /// The verb: `added`, `removed` or `changed`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ChangeKind::Added => "added",
            ChangeKind::Removed => "removed",
            ChangeKind::Modified => "changed",
        })
    }
}

impl std::fmt::Display for CacheChange {
    /// A short phrase, e.g. `src/b.c changed (and 2 more files)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheChange::ResultGone => f.write_str(
                "nothing changed, but the cached result was pruned or cannot be used here",
            ),
            CacheChange::Instruction { was, .. } => {
                write!(f, "the instruction changed (was: {})", shorten(was, 60))
            }
            CacheChange::Expansion => f.write_str(
                "the instruction expands differently (a build arg or ENV it uses changed)",
            ),
            CacheChange::Env { name, change } => {
                write!(f, "build arg or ENV {name} {change}")
            }
            CacheChange::BaseImage {
                reference,
                was,
                now,
            } => write!(
                f,
                "base image {reference} changed ({} -> {})",
                short_digest(was),
                short_digest(now)
            ),
            CacheChange::Files {
                input,
                paths,
                total,
            } => match paths.first() {
                Some(first) => {
                    write!(f, "{} {}", first.path, first.change)?;
                    match total.saturating_sub(1) {
                        0 => Ok(()),
                        1 => f.write_str(" (and 1 more file)"),
                        more => write!(f, " (and {more} more files)"),
                    }
                }
                None => write!(f, "files copied from {input} changed"),
            },
            CacheChange::Input { input, cause } => {
                write!(f, "the step it builds on changed: {input}")?;
                match cause {
                    Some(cause) => write!(f, " ({cause})"),
                    None => Ok(()),
                }
            }
            CacheChange::Source => f.write_str("the content it reads changed"),
            CacheChange::Other => f.write_str("its cache key changed"),
        }
    }
}

/// The one-line summary of a list of changes: the first two, and how many more.
pub(crate) fn summary(changes: &[CacheChange]) -> String {
    let mut text = changes
        .iter()
        .take(2)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    match changes.len().saturating_sub(2) {
        0 => {}
        1 => text.push_str("; and 1 more change"),
        more => text.push_str(&format!("; and {more} more changes")),
    }
    text
}

/// Why downstream steps changed because of this one: the root cause when this step only
/// changed because of its own input, else this step's summary.
pub(crate) fn root_cause(changes: &[CacheChange]) -> Option<String> {
    match changes.first()? {
        CacheChange::Input {
            cause: Some(cause), ..
        } => Some(cause.clone()),
        CacheChange::ResultGone => None,
        _ => Some(summary(changes)),
    }
}

fn shorten(text: &str, max: usize) -> String {
    let text = text.trim();
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    }
}

fn short_digest(digest: &str) -> &str {
    let hex_start = digest.find(':').map_or(0, |i| i + 1);
    &digest[..(hex_start + 12).min(digest.len())]
}

/// What a step's cache key was made of. Stored as JSON in `step_history`; the per-path
/// digests of content inputs are stored beside it in binary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StepInputs {
    pub key: CacheKey,
    /// The instruction text (or the description, for ops without a location).
    pub instruction: String,
    /// The op with its inputs, environment and image digest blanked out: differs when the
    /// instruction expands to something else.
    pub shape: Digest,
    /// Exec environment: variable name to the digest of its value.
    pub env: BTreeMap<String, Digest>,
    /// For an image source: its reference without digest and the manifest digest.
    pub image: Option<(String, String)>,
    /// Digest of the executor's extra data, for other ops.
    pub salt: Option<Digest>,
    pub inputs: Vec<InputRecord>,
}

/// One input of a step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct InputRecord {
    /// The input op's description.
    pub label: String,
    /// Its cache key, when the step is keyed on it.
    pub key: Option<CacheKey>,
    /// The checksum of what the step reads from it, when keyed on content instead.
    pub content: Option<Digest>,
}

/// What the scheduler knows about one input when a step misses.
pub(crate) struct InputFacts<'a> {
    pub input: OpRef,
    pub label: &'a str,
    pub key: CacheKey,
    /// Why that input missed, when it did and the reason is known.
    pub cause: Option<Arc<str>>,
}

impl StepInputs {
    /// The account of `op`'s key.
    pub(crate) fn of(
        op: &Op,
        instruction: &str,
        key: CacheKey,
        inputs: &[InputFacts<'_>],
        extra: &CacheKeyExtra,
    ) -> StepInputs {
        let image = match op {
            Op::Source(SourceOp::Image(image)) => {
                let name = without_digest(&image.reference).to_owned();
                let digest = extra
                    .salt
                    .as_deref()
                    .and_then(digest_in)
                    .or_else(|| digest_in(&image.reference))
                    .unwrap_or_default();
                Some((name, digest))
            }
            _ => None,
        };
        let env = match op {
            Op::Exec(exec) => exec
                .env
                .iter()
                .map(|pair| {
                    let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                    (name.to_owned(), Digest::of(value.as_bytes()))
                })
                .collect(),
            _ => BTreeMap::new(),
        };
        StepInputs {
            key,
            instruction: instruction.to_owned(),
            shape: shape(op),
            env,
            salt: match image {
                Some(_) => None,
                None => extra.salt.as_deref().map(|s| Digest::of(s.as_bytes())),
            },
            image,
            inputs: inputs
                .iter()
                .map(|facts| {
                    let content = extra.content.get(&facts.input).copied();
                    InputRecord {
                        label: facts.label.to_owned(),
                        key: content.is_none().then_some(facts.key),
                        content,
                    }
                })
                .collect(),
        }
    }
}

/// The op with everything blanked that is compared on its own.
fn shape(op: &Op) -> Digest {
    let blank = Digest::from_sha256([0; 32]);
    let masked = op.map_inputs(|r| OpRef {
        digest: blank,
        output: r.output,
    });
    let masked = match masked {
        Op::Exec(mut exec) => {
            exec.env.clear();
            Op::Exec(exec)
        }
        Op::Source(SourceOp::Image(mut image)) => {
            image.reference = without_digest(&image.reference).to_owned();
            Op::Source(SourceOp::Image(image))
        }
        other => other,
    };
    masked.digest()
}

/// `name:tag@sha256:…` without `@sha256:…`.
fn without_digest(reference: &str) -> &str {
    reference
        .split_once('@')
        .map_or(reference, |(name, _)| name)
}

/// The first `sha256:<64 hex>` in `text`.
fn digest_in(text: &str) -> Option<String> {
    let start = text.find("sha256:")?;
    let candidate = text.get(start..start + 71)?;
    candidate
        .parse::<Digest>()
        .ok()
        .map(|_| candidate.to_owned())
}

/// What differs between the recorded account `old` and `new`, most telling first. The
/// listings are per input (same order as `inputs`); `causes` are the inputs' own causes.
pub(crate) fn compare(
    old: &StepInputs,
    old_listings: &[Option<PathDigests>],
    new: &StepInputs,
    new_listings: &[Option<PathDigests>],
    causes: &[Option<Arc<str>>],
) -> Vec<CacheChange> {
    if old.key == new.key {
        return vec![CacheChange::ResultGone];
    }
    let mut changes = Vec::new();
    if old.instruction.trim() != new.instruction.trim() {
        changes.push(CacheChange::Instruction {
            was: old.instruction.clone(),
            now: new.instruction.clone(),
        });
    } else if old.shape != new.shape || old.inputs.len() != new.inputs.len() {
        changes.push(CacheChange::Expansion);
    }
    if let (Some((name, was)), Some((_, now))) = (&old.image, &new.image) {
        if was != now {
            changes.push(CacheChange::BaseImage {
                reference: name.clone(),
                was: was.clone(),
                now: now.clone(),
            });
        }
    }
    for (name, value) in &new.env {
        match old.env.get(name) {
            None => changes.push(CacheChange::Env {
                name: name.clone(),
                change: ChangeKind::Added,
            }),
            Some(was) if was != value => changes.push(CacheChange::Env {
                name: name.clone(),
                change: ChangeKind::Modified,
            }),
            Some(_) => {}
        }
    }
    for name in old.env.keys().filter(|n| !new.env.contains_key(*n)) {
        changes.push(CacheChange::Env {
            name: name.clone(),
            change: ChangeKind::Removed,
        });
    }
    let mut input_changes = Vec::new();
    for (i, (was, now)) in old.inputs.iter().zip(&new.inputs).enumerate() {
        match (was.content, now.content) {
            (Some(a), Some(b)) if a != b => {
                let listed = match (old_listings.get(i), new_listings.get(i)) {
                    (Some(Some(a)), Some(Some(b))) => Some(path_changes(a, b)),
                    _ => None,
                };
                let (paths, total) = listed.unwrap_or_default();
                changes.push(CacheChange::Files {
                    input: now.label.clone(),
                    paths,
                    total,
                });
            }
            (None, None) if was.key != now.key => input_changes.push(CacheChange::Input {
                input: now.label.clone(),
                cause: causes.get(i).cloned().flatten().map(|c| c.to_string()),
            }),
            _ => {}
        }
    }
    // An input that changed is usually a consequence; what this step itself reads comes
    // first.
    changes.extend(input_changes);
    if old.salt != new.salt {
        changes.push(CacheChange::Source);
    }
    if changes.is_empty() {
        changes.push(CacheChange::Other);
    }
    changes
}

/// Changed paths between two sorted listings: the first [`MAX_LISTED_PATHS`] and the count.
fn path_changes(old: &[PathDigest], new: &[PathDigest]) -> (Vec<PathChange>, usize) {
    let old_map: HashMap<&[u8], &[u8; 8]> = old.iter().map(|(p, d)| (&p[..], d)).collect();
    let new_map: HashMap<&[u8], &[u8; 8]> = new.iter().map(|(p, d)| (&p[..], d)).collect();
    let mut changed: Vec<(&[u8], ChangeKind)> = Vec::new();
    for (path, digest) in new {
        match old_map.get(&path[..]) {
            None => changed.push((path, ChangeKind::Added)),
            Some(was) if *was != digest => changed.push((path, ChangeKind::Modified)),
            Some(_) => {}
        }
    }
    for (path, _) in old {
        if !new_map.contains_key(&path[..]) {
            changed.push((path, ChangeKind::Removed));
        }
    }
    changed.sort_by(|a, b| a.0.cmp(b.0));
    let total = changed.len();
    let paths = changed
        .into_iter()
        .take(MAX_LISTED_PATHS)
        .map(|(path, change)| PathChange {
            path: String::from_utf8_lossy(path).into_owned(),
            change,
        })
        .collect();
    (paths, total)
}

/// Encodes per-input listings: per input a presence byte, then the count and each path
/// (length-prefixed) with its 8-byte digest.
pub(crate) fn encode_listings(listings: &[Option<PathDigests>]) -> Vec<u8> {
    let mut out = Vec::new();
    for listing in listings {
        match listing {
            None => out.push(0),
            Some(paths) => {
                out.push(1);
                out.extend_from_slice(&(paths.len() as u64).to_le_bytes());
                for (path, digest) in paths {
                    out.extend_from_slice(&(path.len() as u32).to_le_bytes());
                    out.extend_from_slice(path);
                    out.extend_from_slice(digest);
                }
            }
        }
    }
    out
}

/// The inverse of [`encode_listings`]; `None` if the bytes are malformed.
pub(crate) fn decode_listings(mut bytes: &[u8]) -> Option<Vec<Option<PathDigests>>> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if bytes.len() < n {
            return None;
        }
        let (head, rest) = bytes.split_at(n);
        *bytes = rest;
        Some(head)
    }
    let mut out = Vec::new();
    while let Some(&present) = bytes.first() {
        bytes = &bytes[1..];
        if present == 0 {
            out.push(None);
            continue;
        }
        let count = u64::from_le_bytes(take(&mut bytes, 8)?.try_into().ok()?);
        let mut paths = Vec::with_capacity(count.min(1 << 20) as usize);
        for _ in 0..count {
            let len = u32::from_le_bytes(take(&mut bytes, 4)?.try_into().ok()?) as usize;
            let path = take(&mut bytes, len)?.to_vec();
            let digest: [u8; 8] = take(&mut bytes, 8)?.try_into().ok()?;
            paths.push((path, digest));
        }
        out.push(Some(paths));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(paths: &[(&str, u8)]) -> PathDigests {
        paths
            .iter()
            .map(|(p, d)| (p.as_bytes().to_vec(), [*d; 8]))
            .collect()
    }

    #[test]
    fn path_changes_name_modified_added_and_removed_paths_in_order() {
        let old = listing(&[("a", 1), ("b", 2), ("c", 3)]);
        let new = listing(&[("a", 1), ("b", 9), ("d", 4)]);
        let (paths, total) = path_changes(&old, &new);
        assert_eq!(total, 3);
        let named: Vec<(&str, ChangeKind)> =
            paths.iter().map(|p| (p.path.as_str(), p.change)).collect();
        assert_eq!(
            named,
            vec![
                ("b", ChangeKind::Modified),
                ("c", ChangeKind::Removed),
                ("d", ChangeKind::Added)
            ]
        );
    }

    #[test]
    fn listings_round_trip_and_truncated_bytes_are_rejected() {
        let listings = vec![None, Some(listing(&[("x/\u{e9}", 7), ("y", 8)])), None];
        let bytes = encode_listings(&listings);
        assert_eq!(decode_listings(&bytes), Some(listings));
        assert_eq!(decode_listings(&bytes[..bytes.len() - 3]), None);
        assert_eq!(decode_listings(&[]), Some(vec![]));
    }

    #[test]
    fn summaries_say_the_first_changes_and_count_the_rest() {
        let files = CacheChange::Files {
            input: "context".into(),
            paths: vec![PathChange {
                path: "src/b.c".into(),
                change: ChangeKind::Modified,
            }],
            total: 3,
        };
        assert_eq!(files.to_string(), "src/b.c changed (and 2 more files)");
        let env = CacheChange::Env {
            name: "VERSION".into(),
            change: ChangeKind::Modified,
        };
        assert_eq!(
            summary(&[files.clone(), env.clone(), CacheChange::Source]),
            "src/b.c changed (and 2 more files); build arg or ENV VERSION changed; and 1 more change"
        );
        let image = CacheChange::BaseImage {
            reference: "alpine:3.20".into(),
            was: format!("sha256:{}", "1".repeat(64)),
            now: format!("sha256:{}", "2".repeat(64)),
        };
        assert_eq!(
            image.to_string(),
            "base image alpine:3.20 changed (sha256:111111111111 -> sha256:222222222222)"
        );
    }

    #[test]
    fn digests_are_found_in_salts_and_references() {
        let hex = "a".repeat(64);
        assert_eq!(
            digest_in(&format!("manifest:sha256:{hex}")),
            Some(format!("sha256:{hex}"))
        );
        assert_eq!(digest_in("manifest:sha256:abc"), None);
        assert_eq!(without_digest("alpine:3.20@sha256:x"), "alpine:3.20");
    }
}
