//! OCI distribution client.
//!
//! Pipeline position: beside `snapshot`, used by `solver` (to pull base images for `FROM`) and
//! by the CLI (`pull`, `push`, `login`, `logout`). It speaks the OCI distribution protocol with
//! Docker's reference rules and credential lookup.
//!
//! Design:
//! - Blocking HTTP (`ureq`) on plain threads: transfers block on the network, so they never
//!   run in rayon's pool. A [`Client`] is `Sync` and shares connections, endpoints and tokens.
//! - Blobs stream: a pull writes into a [`BlobSink`] while hashing and commits only a blob
//!   whose size and digest match; a push reads from a [`BlobSource`]. Memory stays bounded
//!   whatever the layer size.
//! - This crate knows nothing of img's content store: the traits above are the seam, and
//!   [`DirBlobStore`] is a plain OCI-layout blob directory implementing both.
//! - Authentication follows Docker: anonymous, Basic, or Bearer tokens from the realm in the
//!   `WWW-Authenticate` challenge, reused while they cover the scopes a request needs;
//!   credentials from `config.json`, `credsStore` and `credHelpers`.
//!
//! ```no_run
//! use img_registry::{no_progress, Client, ClientConfig, DirBlobStore, Platform, PushOptions, Reference};
//!
//! let mut config = ClientConfig::default(); // credentials from Docker's config.json
//! config.insecure_registries.push("registry.lan:5000".into());
//! let client = Client::new(config);
//! let store = DirBlobStore::new("/tmp/blobs")?;
//! let alpine = Reference::parse("alpine")?; // docker.io/library/alpine:latest
//! let image = client.pull(&alpine, &Platform::host(), &store, &no_progress)?;
//! let copy = Reference::parse("localhost:5000/alpine:copy")?;
//! let options = PushOptions::default();
//! client.push(&copy, &image.manifest.bytes, &store, &options, &no_progress)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod auth;
mod blobs;
mod client;
mod config;
mod credentials;
mod error;
mod login;
mod manifest;
mod parallel;

mod progress;
mod pull;
mod push;
mod reference;
mod store;
mod transport;
mod verify;

pub use client::Client;
pub use config::{ClientConfig, DEFAULT_CONCURRENT_TRANSFERS};
pub use credentials::{Credentials, CredentialsError};
pub use error::{Error, RegistryErrorEntry, RegistryErrors, Result};
pub use img_llb::{Platform, PlatformError};
pub use login::{login, logout};
pub use manifest::{ManifestError, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};
pub use oci_spec::image::{Descriptor, Digest};
pub use progress::{no_progress, ProgressEvent, ProgressFn};
pub use pull::{Manifest, ResolvedImage};
pub use push::PushOptions;
pub use reference::{normalize_registry, Reference, ReferenceError, DOCKER_HUB};
pub use store::{sha256_digest, BlobSink, BlobSource, BlobWriter, DirBlobStore};
