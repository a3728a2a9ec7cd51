//! Content digests: the names of ops, cache keys, blobs and layers.
//!
//! img stores and verifies only sha256, the algorithm every OCI registry and tool uses. With
//! the `oci` feature, [`Digest::to_oci`] and `TryFrom<&oci_spec::image::Digest>` convert at
//! the edges where OCI descriptors are built and read.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// A sha256 content digest, written `sha256:<64 lowercase hex digits>` as in OCI.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest([u8; 32]);

/// Why a string is not a digest.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DigestError {
    /// The string does not start with `sha256:`.
    #[error("digest {value:?} does not start with \"sha256:\"")]
    MissingAlgorithm {
        /// The rejected string.
        value: String,
    },
    /// The part after `sha256:` is not 64 lowercase hex digits.
    #[error("digest {value:?} must be \"sha256:\" followed by 64 lowercase hex digits")]
    BadHex {
        /// The rejected string.
        value: String,
    },
}

impl Digest {
    /// The sha256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Digest(Sha256::digest(bytes).into())
    }

    /// Wraps an already computed sha256 value.
    pub fn from_sha256(raw: [u8; 32]) -> Self {
        Digest(raw)
    }

    /// The raw 32 bytes of the hash.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 hex digits, without the `sha256:` prefix.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The digest a finished sha256 hasher computed.
    pub fn from_hasher(hasher: Sha256) -> Self {
        Digest(hasher.finalize().into())
    }

    /// The equivalent `oci_spec` digest, for building descriptors.
    #[cfg(feature = "oci")]
    pub fn to_oci(&self) -> oci_spec::image::Digest {
        oci_spec::image::Sha256Digest::from_str(&self.hex())
            .map(Into::into)
            .unwrap_or_else(|_| unreachable!("64 lowercase hex digits are a sha256 digest"))
    }

    /// The first 12 hex digits, as short ids are shown by docker.
    pub fn short(&self) -> String {
        self.hex()[..12].to_owned()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let hex_part =
            value
                .strip_prefix("sha256:")
                .ok_or_else(|| DigestError::MissingAlgorithm {
                    value: value.to_owned(),
                })?;
        // Uppercase hex would give a second spelling of the same digest; OCI forbids it.
        let well_formed = hex_part.len() == 64
            && hex_part
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !well_formed {
            return Err(DigestError::BadHex {
                value: value.to_owned(),
            });
        }
        let mut raw = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut raw).map_err(|_| DigestError::BadHex {
            value: value.to_owned(),
        })?;
        Ok(Digest(raw))
    }
}

#[cfg(feature = "oci")]
impl TryFrom<&oci_spec::image::Digest> for Digest {
    type Error = DigestError;

    fn try_from(value: &oci_spec::image::Digest) -> Result<Self, Self::Error> {
        value.to_string().parse()
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_value_of_empty_input() {
        assert_eq!(
            Digest::of(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn parse_round_trips_and_rejects_malformed() {
        let d = Digest::of(b"abc");
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
        for bad in [
            "",
            "sha512:00",
            "sha256:abc",
            "sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn serde_uses_the_string_form() {
        let d = Digest::of(b"x");
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{d}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
    }
}
