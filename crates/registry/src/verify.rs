//! Digest verification while streaming.

use oci_spec::image::{Digest, DigestAlgorithm};
use sha2::Digest as _;

use crate::error::{Error, Result};

/// A running hash of the algorithm a digest names.
#[derive(Clone)]
pub(crate) enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    pub(crate) fn for_digest(digest: &Digest) -> Result<Self> {
        match digest.algorithm() {
            DigestAlgorithm::Sha256 => Ok(Hasher::Sha256(sha2::Sha256::new())),
            DigestAlgorithm::Sha512 => Ok(Hasher::Sha512(sha2::Sha512::new())),
            _ => Err(Error::UnsupportedDigest {
                digest: digest.to_string(),
            }),
        }
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    /// `algorithm:hex` of everything hashed.
    pub(crate) fn finish(self) -> String {
        match self {
            Hasher::Sha256(h) => format!("sha256:{}", hex::encode(h.finalize())),
            Hasher::Sha512(h) => format!("sha512:{}", hex::encode(h.finalize())),
        }
    }
}

/// Checks in-memory content (manifests, configs) against its digest.
pub(crate) fn verify_bytes(url: &str, expected: &Digest, bytes: &[u8]) -> Result<()> {
    let mut h = Hasher::for_digest(expected)?;
    h.update(bytes);
    let actual = h.finish();
    if actual != expected.to_string() {
        return Err(Error::DigestMismatch {
            url: url.to_string(),
            expected: expected.clone(),
            actual,
        });
    }
    Ok(())
}
