//! The crate's error type.

use std::fmt;

use oci_spec::image::Digest;

use crate::credentials::CredentialsError;
use crate::manifest::ManifestError;
use crate::reference::ReferenceError;
use img_llb::PlatformError;

/// Any failure of a registry operation. URLs never carry credentials or tokens.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A reference did not parse.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// A platform did not parse.
    #[error(transparent)]
    Platform(#[from] PlatformError),
    /// Docker's config file or a credential helper failed.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// A manifest cannot be used.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The registry could not be reached or the connection broke.
    #[error("cannot reach {url}")]
    Transport {
        /// The request URL.
        url: String,
        /// The HTTP client's error.
        #[source]
        source: ureq::Error,
    },
    /// The registry answered with an unexpected status.
    #[error("{method} {url}: {status}{errors}")]
    Status {
        /// The HTTP method.
        method: &'static str,
        /// The request URL.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The registry's error codes, if its body had any.
        errors: RegistryErrors,
    },
    /// The registry has no manifest for the reference (no such tag, digest or repository).
    #[error("manifest for {reference} not found at {url}{errors}")]
    ManifestNotFound {
        /// The reference asked for.
        reference: String,
        /// The request URL.
        url: String,
        /// The registry's error codes, if any.
        errors: RegistryErrors,
    },
    /// The registry or its token service refused the credentials (or anonymous access).
    #[error("authentication to {registry} failed: {url} answered {status}{errors}; check the user name and password (`img login {registry}`)")]
    Unauthorized {
        /// The registry host.
        registry: String,
        /// The URL that refused (the registry or its token realm).
        url: String,
        /// 401 or 403.
        status: u16,
        /// The registry's error codes, if any.
        errors: RegistryErrors,
    },
    /// The registry's authentication challenge or token response is malformed.
    #[error("invalid authentication response from {url}: {problem}")]
    AuthProtocol {
        /// The URL concerned.
        url: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A request was redirected more times than any registry needs (a redirect loop).
    #[error("{url}: more than {limit} redirects")]
    TooManyRedirects {
        /// The URL of the last redirect.
        url: String,
        /// How many redirects are followed.
        limit: u32,
    },
    /// A response lacked a header the protocol requires.
    #[error("{url}: response has no {header} header")]
    MissingHeader {
        /// The request URL.
        url: String,
        /// The missing header.
        header: &'static str,
    },
    /// Downloaded content does not hash to its digest; nothing was stored.
    #[error("content from {url} does not match digest {expected} (got {actual}): refused, nothing stored")]
    DigestMismatch {
        /// The request URL.
        url: String,
        /// The digest asked for.
        expected: Digest,
        /// The digest of what arrived.
        actual: String,
    },
    /// Downloaded content has the wrong size; nothing was stored.
    #[error("content from {url} for {digest} is {actual} bytes, expected {expected}: refused, nothing stored")]
    SizeMismatch {
        /// The request URL.
        url: String,
        /// The digest asked for.
        digest: Digest,
        /// The size the descriptor declares.
        expected: u64,
        /// The size received (at least).
        actual: u64,
    },
    /// A digest uses an algorithm this client cannot verify.
    #[error("unsupported digest algorithm in {digest} (sha256 and sha512 are supported)")]
    UnsupportedDigest {
        /// The digest.
        digest: String,
    },
    /// The blob sink failed to store a blob.
    #[error("cannot store blob {digest}")]
    Store {
        /// The blob.
        digest: Digest,
        /// The sink's error.
        #[source]
        source: std::io::Error,
    },
    /// The blob source failed to provide a blob for a push.
    #[error("cannot read blob {digest} to push")]
    Source {
        /// The blob.
        digest: Digest,
        /// The source's error.
        #[source]
        source: std::io::Error,
    },
    /// The manifest bytes given to push do not match the digest in the reference.
    #[error("manifest for {reference} has digest {actual}, not the digest in the reference")]
    ManifestDigest {
        /// The reference pushed to.
        reference: String,
        /// The digest of the bytes.
        actual: String,
    },
}

impl Error {
    /// Whether trying again may help: connection failures and 5xx answers. 4xx never.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Transport { source, .. } => matches!(
                source,
                ureq::Error::Io(_)
                    | ureq::Error::Timeout(_)
                    | ureq::Error::ConnectionFailed
                    | ureq::Error::Protocol(_)
                    | ureq::Error::BodyStalled
            ),
            Error::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

/// One entry of a registry's `{"errors": [...]}` body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct RegistryErrorEntry {
    /// The error code (`MANIFEST_UNKNOWN`, `DENIED`, ...).
    #[serde(default)]
    pub code: String,
    /// The registry's message.
    #[serde(default)]
    pub message: String,
}

/// The error codes a registry returned; displays as `: CODE: message; ...` or nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryErrors(pub Vec<RegistryErrorEntry>);

impl RegistryErrors {
    /// Parses a registry error body; anything else yields no entries.
    pub(crate) fn from_body(body: &[u8]) -> Self {
        #[derive(serde::Deserialize)]
        struct Body {
            #[serde(default)]
            errors: Vec<RegistryErrorEntry>,
        }
        RegistryErrors(
            serde_json::from_slice::<Body>(body)
                .map(|b| b.errors)
                .unwrap_or_default(),
        )
    }
}

impl fmt::Display for RegistryErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            f.write_str(if i == 0 { ": " } else { "; " })?;
            match (e.code.is_empty(), e.message.is_empty()) {
                (false, false) => write!(f, "{}: {}", e.code, e.message)?,
                (false, true) => f.write_str(&e.code)?,
                _ => f.write_str(&e.message)?,
            }
        }
        Ok(())
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
