//! Pulling: manifests (through an index to one platform), configs, and layers streamed into a
//! [`BlobSink`] with the digest verified on the way and interrupted downloads resumed.

use std::io::{Read, Write};
use std::str::FromStr;

use oci_spec::image::{Descriptor, Digest, MediaType};
use ureq::http::Method;

use crate::auth::repository_scope;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::manifest::{self, ManifestError, Parsed, MANIFEST_ACCEPT, MANIFEST_SIZE_LIMIT};
use crate::progress::{ProgressEvent, ProgressFn, PROGRESS_STEP};
use crate::reference::Reference;
use crate::store::{BlobSink, BlobWriter};
use crate::transport::{
    errors_of, header, read_limited, status_error, strip_query, with_blob_retries, with_retries,
    Endpoint,
};
use crate::verify::{verify_bytes, Hasher};
use img_llb::Platform;

/// Image configs are JSON read into memory; refuse absurd ones.
const CONFIG_SIZE_LIMIT: u64 = 64 << 20;
/// Read buffer for blob streams.
const BUFFER_SIZE: usize = 256 << 10;

/// A manifest as served: its digest, media type and exact bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The digest of `bytes`.
    pub digest: Digest,
    /// The media type (OCI or Docker schema 2, manifest or index).
    pub media_type: String,
    /// The bytes exactly as served (the digest covers them).
    pub bytes: Vec<u8>,
}

impl Manifest {
    /// A descriptor pointing at this manifest.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(
            MediaType::from(self.media_type.as_str()),
            self.bytes.len() as u64,
            self.digest.clone(),
        )
    }
}

/// An image resolved to one platform: the manifest, its config, and its layers.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// The reference that was resolved.
    pub reference: Reference,
    /// The index (or manifest list) the image was selected from, if the reference named one.
    pub index: Option<Manifest>,
    /// The platform-specific image manifest.
    pub manifest: Manifest,
    /// The config blob's descriptor.
    pub config_descriptor: Descriptor,
    /// The config blob (verified).
    pub config: Vec<u8>,
    /// The layers, base first.
    pub layers: Vec<Descriptor>,
}

impl ResolvedImage {
    /// The digest Docker records as the repo digest: the index's when there is one.
    pub fn repo_digest(&self) -> &Digest {
        self.index
            .as_ref()
            .map_or(&self.manifest.digest, |i| &i.digest)
    }
}

impl Client {
    /// Runs `f` on the configured mirrors of the reference's registry, in order, then on the
    /// registry itself, until one succeeds. Endpoints are contacted only when reached, so a
    /// working mirror spares the registry entirely (as with Docker's `registry-mirrors`).
    fn on_pull_endpoints<T>(
        &self,
        reference: &Reference,
        f: impl Fn(&Endpoint) -> Result<T>,
    ) -> Result<T> {
        let t = &self.transport;
        let mirrors = t
            .config
            .mirrors
            .get(reference.registry())
            .into_iter()
            .flatten();
        for mirror in mirrors {
            if let Ok(v) = t.mirror_endpoint(mirror).and_then(|ep| f(&ep)) {
                return Ok(v);
            }
        }
        f(&*t.endpoint(reference.registry())?)
    }

    /// Fetches the manifest or index a reference names, as served.
    pub fn fetch_manifest(&self, reference: &Reference) -> Result<Manifest> {
        self.on_pull_endpoints(reference, |ep| {
            get_manifest(self, ep, reference, &reference.manifest_selector())
        })
    }

    /// Resolves a reference to one image for `platform`: follows an index to the matching
    /// entry (or fails listing the platforms there are) and fetches the config.
    pub fn resolve(&self, reference: &Reference, platform: &Platform) -> Result<ResolvedImage> {
        self.on_pull_endpoints(reference, |ep| resolve_on(self, ep, reference, platform))
    }

    /// Downloads one blob of `reference`'s repository into `sink`, verifying size and digest
    /// while streaming; nothing is committed unless both match.
    pub fn fetch_blob(
        &self,
        reference: &Reference,
        descriptor: &Descriptor,
        sink: &dyn BlobSink,
        progress: ProgressFn<'_>,
    ) -> Result<()> {
        self.on_pull_endpoints(reference, |ep| {
            download_blob(self, ep, reference, descriptor, sink, progress)
        })
    }

    /// Pulls an image for `platform` into `sink`: layers in parallel (bounded by
    /// `max_concurrent_transfers`), then the config and the manifest, so a stored manifest
    /// means a complete image. Blobs already in the sink are skipped.
    pub fn pull(
        &self,
        reference: &Reference,
        platform: &Platform,
        sink: &dyn BlobSink,
        progress: ProgressFn<'_>,
    ) -> Result<ResolvedImage> {
        self.on_pull_endpoints(reference, |ep| {
            let image = resolve_on(self, ep, reference, platform)?;
            let limit = self.transport.config.max_concurrent_transfers;
            crate::parallel::for_each_bounded(&image.layers, limit, |layer| {
                download_blob(self, ep, reference, layer, sink, progress)
            })?;
            store_bytes(sink, &image.config_descriptor, &image.config)?;
            store_bytes(sink, &image.manifest.descriptor(), &image.manifest.bytes)?;
            Ok(image)
        })
    }
}

fn resolve_on(
    client: &Client,
    ep: &Endpoint,
    reference: &Reference,
    platform: &Platform,
) -> Result<ResolvedImage> {
    let shown = reference.to_string();
    let top = get_manifest(client, ep, reference, &reference.manifest_selector())?;
    let (index, manifest, parsed) = match manifest::parse(&shown, &top.media_type, &top.bytes)? {
        Parsed::Image(m) => (None, top, m),
        Parsed::Index(index) => {
            let entry = manifest::select_platform(&shown, &index, platform)?;
            let child = get_manifest(client, ep, reference, entry.digest().as_ref())?;
            match manifest::parse(&shown, &child.media_type, &child.bytes)? {
                Parsed::Image(m) => (Some(top), child, m),
                Parsed::Index(_) => {
                    return Err(ManifestError::NestedIndex {
                        reference: shown,
                        digest: entry.digest().to_string(),
                    }
                    .into())
                }
            }
        }
    };
    let config_descriptor = parsed.config().clone();
    let config = get_small_blob(client, ep, reference, &config_descriptor)?;
    Ok(ResolvedImage {
        reference: reference.clone(),
        index,
        manifest,
        config_descriptor,
        config,
        layers: parsed.layers().clone(),
    })
}

fn get_manifest(
    client: &Client,
    ep: &Endpoint,
    reference: &Reference,
    selector: &str,
) -> Result<Manifest> {
    let repo = reference.repository();
    let url = ep.url(&format!("{repo}/manifests/{selector}"));
    let scopes = [repository_scope(repo, false)];
    let mut resp = client.transport.request(
        ep,
        &scopes,
        Method::GET,
        &url,
        &[("Accept", MANIFEST_ACCEPT)],
    )?;
    match resp.status().as_u16() {
        200 => {}
        404 => {
            return Err(Error::ManifestNotFound {
                reference: reference.with_selector(selector),
                url: strip_query(&url),
                errors: errors_of(&mut resp),
            })
        }
        _ => return Err(status_error(ep, "GET", &url, &mut resp)),
    }
    let too_large = |size| ManifestError::TooLarge {
        reference: reference.to_string(),
        size,
        limit: MANIFEST_SIZE_LIMIT,
    };
    if let Some(len) = header(&resp, "content-length").and_then(|v| v.parse::<u64>().ok()) {
        if len > MANIFEST_SIZE_LIMIT {
            return Err(too_large(len).into());
        }
    }
    let content_type = header(&resp, "content-type").map(str::to_string);
    let served_digest = header(&resp, "docker-content-digest").map(str::to_string);
    let bytes = read_limited(&url, &mut resp, MANIFEST_SIZE_LIMIT + 1)?;
    if bytes.len() as u64 > MANIFEST_SIZE_LIMIT {
        return Err(too_large(bytes.len() as u64).into());
    }
    let media_type = manifest::media_type_of(&bytes, content_type.as_deref()).ok_or_else(|| {
        ManifestError::UnsupportedMediaType {
            reference: reference.to_string(),
            media_type: content_type.clone().unwrap_or_default(),
        }
    })?;
    // A digest in the reference is verified; otherwise the bytes' own sha256 is the digest
    // (a registry's Docker-Content-Digest, when sha256, must agree with it).
    let digest = match Digest::from_str(selector) {
        Ok(d) => {
            verify_bytes(&url, &d, &bytes)?;
            d
        }
        Err(_) => {
            let d = crate::store::sha256_digest(&bytes);
            if let Some(served) = served_digest.filter(|s| s.starts_with("sha256:")) {
                if served != d.to_string() {
                    return Err(Error::DigestMismatch {
                        url: strip_query(&url),
                        expected: Digest::from_str(&served).unwrap_or(d),
                        actual: crate::store::sha256_digest(&bytes).to_string(),
                    });
                }
            }
            d
        }
    };
    Ok(Manifest {
        digest,
        media_type,
        bytes,
    })
}

/// Fetches a small blob (a config) into memory, verified.
fn get_small_blob(
    client: &Client,
    ep: &Endpoint,
    reference: &Reference,
    desc: &Descriptor,
) -> Result<Vec<u8>> {
    let repo = reference.repository();
    let url = ep.url(&format!("{repo}/blobs/{}", desc.digest()));
    let size_err = |actual| Error::SizeMismatch {
        url: strip_query(&url),
        digest: desc.digest().clone(),
        expected: desc.size(),
        actual,
    };
    if desc.size() > CONFIG_SIZE_LIMIT {
        return Err(size_err(desc.size()));
    }
    let scopes = [repository_scope(repo, false)];
    let bytes = with_retries(
        || {
            let mut resp = client
                .transport
                .request(ep, &scopes, Method::GET, &url, &[])?;
            if resp.status().as_u16() != 200 {
                return Err(status_error(ep, "GET", &url, &mut resp));
            }
            read_limited(&url, &mut resp, desc.size() + 1)
        },
        |_, _, _| {},
    )?;
    if bytes.len() as u64 != desc.size() {
        return Err(size_err(bytes.len() as u64));
    }
    verify_bytes(&strip_query(&url), desc.digest(), &bytes)?;
    Ok(bytes)
}

/// Stores already verified bytes unless the sink has them.
fn store_bytes(sink: &dyn BlobSink, desc: &Descriptor, bytes: &[u8]) -> Result<()> {
    let store_err = |source| Error::Store {
        digest: desc.digest().clone(),
        source,
    };
    if sink.contains(desc.digest()).map_err(store_err)? {
        return Ok(());
    }
    let mut w = sink.begin(desc).map_err(store_err)?;
    w.write_all(bytes).map_err(store_err)?;
    w.commit().map_err(store_err)
}

/// A partly downloaded blob: the uncommitted writer, the hash so far, the bytes so far.
struct Partial {
    writer: Box<dyn BlobWriter>,
    hasher: Hasher,
    written: u64,
}

fn download_blob(
    client: &Client,
    ep: &Endpoint,
    reference: &Reference,
    desc: &Descriptor,
    sink: &dyn BlobSink,
    progress: ProgressFn<'_>,
) -> Result<()> {
    let digest = desc.digest();
    let store_err = |source| Error::Store {
        digest: digest.clone(),
        source,
    };
    if sink.contains(digest).map_err(store_err)? {
        progress(&ProgressEvent::Exists {
            digest: digest.clone(),
            size: desc.size(),
        });
        return Ok(());
    }
    progress(&ProgressEvent::Started {
        digest: digest.clone(),
        size: desc.size(),
    });
    let url = ep.url(&format!("{}/blobs/{digest}", reference.repository()));
    let mut partial: Option<Partial> = None;
    with_blob_retries(digest, progress, || {
        download_attempt(
            client,
            ep,
            &url,
            reference,
            desc,
            sink,
            &mut partial,
            progress,
        )
    })?;
    let Partial { writer, hasher, .. } = partial.expect("a finished download has a writer");
    let actual = hasher.finish();
    if actual != digest.to_string() {
        // Dropping the writer uncommitted discards the bad content.
        return Err(Error::DigestMismatch {
            url: strip_query(&url),
            expected: digest.clone(),
            actual,
        });
    }
    writer.commit().map_err(store_err)?;
    progress(&ProgressEvent::Done {
        digest: digest.clone(),
        size: desc.size(),
    });
    Ok(())
}

/// One GET of a blob, from where the previous attempt stopped (`Range`) when there is a
/// partial download; a registry that ignores the range (200) restarts it from zero.
#[allow(clippy::too_many_arguments)]
fn download_attempt(
    client: &Client,
    ep: &Endpoint,
    url: &str,
    reference: &Reference,
    desc: &Descriptor,
    sink: &dyn BlobSink,
    partial: &mut Option<Partial>,
    progress: ProgressFn<'_>,
) -> Result<()> {
    let digest = desc.digest();
    let size = desc.size();
    let store_err = |source| Error::Store {
        digest: digest.clone(),
        source,
    };
    let offset = partial.as_ref().map_or(0, |p| p.written);
    if offset == size && offset > 0 {
        return Ok(());
    }
    let range = format!("bytes={offset}-");
    let headers: Vec<(&str, &str)> = if offset > 0 {
        vec![("Range", range.as_str())]
    } else {
        Vec::new()
    };
    let scopes = [repository_scope(reference.repository(), false)];
    let mut resp = client
        .transport
        .request(ep, &scopes, Method::GET, url, &headers)?;
    match resp.status().as_u16() {
        206 if offset > 0 => {
            let expected = format!("bytes {offset}-");
            if !header(&resp, "content-range").is_some_and(|v| v.starts_with(&expected)) {
                *partial = None;
                return Err(Error::MissingHeader {
                    url: strip_query(url),
                    header: "Content-Range (matching the requested range)",
                });
            }
        }
        200 => *partial = None,
        _ => return Err(status_error(ep, "GET", url, &mut resp)),
    }
    let p = match partial {
        Some(p) => p,
        None => partial.insert(Partial {
            writer: sink.begin(desc).map_err(store_err)?,
            hasher: Hasher::for_digest(digest)?,
            written: 0,
        }),
    };
    let mut reader = resp.into_body().into_reader();
    let mut buf = vec![0u8; BUFFER_SIZE];
    let mut reported = p.written;
    let transport_err = |e: std::io::Error| Error::Transport {
        url: strip_query(url),
        source: ureq::Error::Io(e),
    };
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(transport_err(e)),
        };
        if p.written + n as u64 > size {
            return Err(Error::SizeMismatch {
                url: strip_query(url),
                digest: digest.clone(),
                expected: size,
                actual: p.written + n as u64,
            });
        }
        p.hasher.update(&buf[..n]);
        p.writer.write_all(&buf[..n]).map_err(store_err)?;
        p.written += n as u64;
        if p.written - reported >= PROGRESS_STEP {
            reported = p.written;
            progress(&ProgressEvent::Transferred {
                digest: digest.clone(),
                done: p.written,
                size,
            });
        }
    }
    if p.written < size {
        // The connection ended early without the client noticing: resumable.
        return Err(transport_err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("connection closed after {} of {size} bytes", p.written),
        )));
    }
    progress(&ProgressEvent::Transferred {
        digest: digest.clone(),
        done: p.written,
        size,
    });
    Ok(())
}
