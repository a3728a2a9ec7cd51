//! Cache keys: what an op's result depends on, as one digest.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use img_llb::{Digest, DigestError, Op, OpRef};
use serde::{Deserialize, Serialize};

use crate::CacheKeyExtra;

/// The identity of an op's result: equal keys mean the stored result can be reused.
///
/// Derived from the op's definition with each input digest replaced by that input's cache key
/// (or, where the executor asked, by a checksum of the content read from it), plus the
/// executor's extra data. Dockerfile locations and descriptions are not part of it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CacheKey(Digest);

impl CacheKey {
    /// The key as a digest.
    pub fn digest(&self) -> Digest {
        self.0
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", self.0)
    }
}

impl FromStr for CacheKey {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(CacheKey)
    }
}

/// Bumped whenever the key derivation changes, so old records stop matching.
const KEY_DOMAIN: &[u8] = b"img-solver/cache-key/v1\n";

/// The cache key of `op`, given the keys of its inputs (by input digest) and the executor's
/// extra data. Every input of `op` must have a key in `input_keys`.
pub(crate) fn cache_key(
    op: &Op,
    input_keys: &HashMap<Digest, CacheKey>,
    extra: &CacheKeyExtra,
) -> CacheKey {
    let keyed = op.map_inputs(|input| {
        let digest = match extra.content.get(input) {
            Some(checksum) => content_marker(checksum),
            // The scheduler only computes a key once every input has one.
            None => input_keys
                .get(&input.digest)
                .map(CacheKey::digest)
                .unwrap_or(input.digest),
        };
        OpRef {
            digest,
            output: input.output,
        }
    });
    let mut bytes = KEY_DOMAIN.to_vec();
    bytes.extend_from_slice(&keyed.canonical_bytes());
    if let Some(salt) = &extra.salt {
        bytes.extend_from_slice(b"\nsalt:");
        bytes.extend_from_slice(salt.as_bytes());
    }
    CacheKey(Digest::of(&bytes))
}

/// Content checksums and cache keys share the input slot; hashing the checksum under its own
/// prefix keeps the two from ever being mistaken for each other.
fn content_marker(checksum: &Digest) -> Digest {
    let mut bytes = b"img-solver/content\n".to_vec();
    bytes.extend_from_slice(checksum.as_bytes());
    Digest::of(&bytes)
}

#[cfg(test)]
mod tests {
    use img_llb::{ExecOp, OpRef};

    use super::*;

    fn exec_on(root: Digest) -> Op {
        ExecOp::new(Some(OpRef::new(root)), vec!["make".into()]).into()
    }

    #[test]
    fn key_follows_input_keys_not_input_digests() {
        let input = Digest::of(b"input op");
        let op = exec_on(input);
        let k1 = HashMap::from([(input, CacheKey(Digest::of(b"k1")))]);
        let k2 = HashMap::from([(input, CacheKey(Digest::of(b"k2")))]);
        let none = CacheKeyExtra::default();
        assert_eq!(cache_key(&op, &k1, &none), cache_key(&op, &k1, &none));
        assert_ne!(cache_key(&op, &k1, &none), cache_key(&op, &k2, &none));
    }

    #[test]
    fn content_checksum_replaces_the_input_key() {
        let input = Digest::of(b"context");
        let op = exec_on(input);
        let sum = Digest::of(b"files");
        let extra = CacheKeyExtra::new().with_content(OpRef::new(input), sum);
        let k1 = HashMap::from([(input, CacheKey(Digest::of(b"k1")))]);
        let k2 = HashMap::from([(input, CacheKey(Digest::of(b"k2")))]);
        assert_eq!(cache_key(&op, &k1, &extra), cache_key(&op, &k2, &extra));
        let other = CacheKeyExtra::new().with_content(OpRef::new(input), Digest::of(b"x"));
        assert_ne!(cache_key(&op, &k1, &extra), cache_key(&op, &k1, &other));
        let salted = extra.clone().with_salt("resolved");
        assert_ne!(cache_key(&op, &k1, &extra), cache_key(&op, &k1, &salted));
    }
}
