//! Copying blobs with their digest and size checked on the way.

use std::io::{self, Read, Write};

use img_registry::Digest;
use sha2::{Digest as _, Sha256};

use crate::error::CacheError;

/// What a copy read: its sha256 digest and size.
pub(crate) struct Copied {
    pub digest: String,
    pub size: u64,
}

/// Copies `reader` to `writer`, hashing what passes.
pub(crate) fn copy_hashed(mut reader: impl Read, mut writer: impl Write) -> io::Result<Copied> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 << 10];
    let mut size = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        writer.write_all(&buf[..n])?;
        size += n as u64;
    }
    writer.flush()?;
    Ok(Copied {
        digest: format!("sha256:{}", hex::encode(hasher.finalize())),
        size,
    })
}

/// Refuses `copied` unless it is the blob `digest` of `size` bytes.
pub(crate) fn check(
    location: &str,
    digest: &Digest,
    size: Option<u64>,
    copied: &Copied,
) -> Result<(), CacheError> {
    if copied.digest != digest.to_string() || size.is_some_and(|s| s != copied.size) {
        return Err(CacheError::DigestMismatch {
            location: location.to_owned(),
            digest: digest.to_string(),
            actual: copied.digest.clone(),
            size: copied.size,
        });
    }
    Ok(())
}

/// Checks in-memory bytes against `digest`.
pub(crate) fn check_bytes(location: &str, digest: &Digest, bytes: &[u8]) -> Result<(), CacheError> {
    let copied = copy_hashed(bytes, io::sink()).map_err(|source| CacheError::Store {
        location: location.to_owned(),
        digest: digest.to_string(),
        source,
    })?;
    check(location, digest, None, &copied)
}
