//! Pushing: blobs (skipped when present, mounted from another repository when possible,
//! else uploaded monolithically or in chunks, streamed from a [`BlobSource`]), then manifests.

use std::io::{self, Read};

use oci_spec::image::{Descriptor, Digest};
use ureq::http::Method;
use ureq::SendBody;
use url::Url;

use crate::auth::repository_scope;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::manifest::{self, ManifestError, Parsed, MANIFEST_SIZE_LIMIT};
use crate::progress::{ProgressEvent, ProgressFn, PROGRESS_STEP};
use crate::reference::Reference;
use crate::store::{sha256_digest, BlobSource};
use crate::transport::{location, status_error, with_blob_retries, with_retries, Endpoint};
use crate::verify::verify_bytes;

/// How a push is carried out.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    /// Repositories that may already hold the blobs (where the image was pulled from). Those
    /// on the same registry are offered to the registry for a cross-repository mount before
    /// uploading; others are ignored.
    pub mount_from: Vec<Reference>,
    /// `Some(n)`: upload each blob in `PATCH` chunks of `n` bytes; `None`: one `PUT`.
    pub chunk_size: Option<u64>,
}

impl Client {
    /// Pushes an image manifest or index to `reference` (its tag, or its digest when it has
    /// no tag) after making sure every blob it references is in the repository. For an index
    /// the child manifests are read from `source` by digest and pushed first; entries that
    /// are not manifests (BuildKit's cache index lists its blobs directly) are pushed as
    /// blobs. Blobs move in parallel, bounded by `max_concurrent_transfers`. Returns the
    /// pushed manifest's digest.
    pub fn push(
        &self,
        reference: &Reference,
        manifest_bytes: &[u8],
        source: &dyn BlobSource,
        options: &PushOptions,
        progress: ProgressFn<'_>,
    ) -> Result<Digest> {
        let shown = reference.to_string();
        let media_type = manifest::media_type_of(manifest_bytes, None).ok_or_else(|| {
            ManifestError::UnsupportedMediaType {
                reference: shown.clone(),
                media_type: String::new(),
            }
        })?;
        let digest = sha256_digest(manifest_bytes);
        if let Some(want) = reference.digest() {
            if *want != digest {
                return Err(Error::ManifestDigest {
                    reference: shown,
                    actual: digest.to_string(),
                });
            }
        }
        let mut blobs: Vec<Descriptor> = Vec::new();
        let mut children: Vec<(Digest, String, Vec<u8>)> = Vec::new();
        match manifest::parse(&shown, &media_type, manifest_bytes)? {
            Parsed::Image(m) => blobs.extend(manifest::pushable_blobs(&m)),
            Parsed::Index(index) => {
                for entry in index.manifests() {
                    if !manifest::is_manifest_type(entry.media_type().as_ref()) {
                        blobs.push(entry.clone());
                        continue;
                    }
                    let bytes = read_manifest_blob(source, entry.digest())?;
                    let child_type = manifest::media_type_of(&bytes, None)
                        .unwrap_or_else(|| entry.media_type().to_string());
                    match manifest::parse(&shown, &child_type, &bytes)? {
                        Parsed::Image(m) => blobs.extend(manifest::pushable_blobs(&m)),
                        Parsed::Index(_) => {
                            return Err(ManifestError::NestedIndex {
                                reference: shown,
                                digest: entry.digest().to_string(),
                            }
                            .into())
                        }
                    }
                    children.push((entry.digest().clone(), child_type, bytes));
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        blobs.retain(|d| seen.insert(d.digest().clone()));

        let ep = self.transport.endpoint(reference.registry())?;
        let limit = self.transport.config.max_concurrent_transfers;
        crate::parallel::for_each_bounded(&blobs, limit, |blob| {
            self.push_blob_on(&ep, reference, blob, source, options, progress)
        })?;
        for (child_digest, child_type, bytes) in &children {
            self.put_manifest(&ep, reference, child_digest.as_ref(), child_type, bytes)?;
        }
        let target = match reference.tag() {
            Some(tag) => tag.to_string(),
            None => digest.to_string(),
        };
        self.put_manifest(&ep, reference, &target, &media_type, manifest_bytes)?;
        Ok(digest)
    }

    fn put_manifest(
        &self,
        ep: &Endpoint,
        reference: &Reference,
        target: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<()> {
        let url = ep.url(&format!("{}/manifests/{target}", reference.repository()));
        let scopes = [repository_scope(reference.repository(), true)];
        let len = bytes.len().to_string();
        with_retries(
            || {
                let mut body: &[u8] = bytes;
                let mut resp = self.transport.request_with_body(
                    ep,
                    &scopes,
                    Method::PUT,
                    &url,
                    &[("Content-Type", media_type), ("Content-Length", &len)],
                    SendBody::from_reader(&mut body),
                )?;
                if !resp.status().is_success() {
                    return Err(status_error(ep, "PUT", &url, &mut resp));
                }
                Ok(())
            },
            |_, _, _| {},
        )
    }

    /// Makes one blob present in the target repository: nothing if it is there, a mount
    /// from `options.mount_from` if the registry accepts one, else an upload.
    pub(crate) fn push_blob_on(
        &self,
        ep: &Endpoint,
        reference: &Reference,
        desc: &Descriptor,
        source: &dyn BlobSource,
        options: &PushOptions,
        progress: ProgressFn<'_>,
    ) -> Result<()> {
        let repo = reference.repository();
        let digest = desc.digest();
        let push_scope = repository_scope(repo, true);
        // HEAD first: the registry may have it already (a previous push, a shared base).
        if self.head_blob(ep, repo, digest, &push_scope)? {
            progress(&ProgressEvent::Exists {
                digest: digest.clone(),
                size: desc.size(),
            });
            return Ok(());
        }
        let mut session = None;
        for from in options
            .mount_from
            .iter()
            .filter(|r| r.registry() == reference.registry() && r.repository() != repo)
        {
            match self.try_mount(ep, reference, desc, from.repository())? {
                Mount::Mounted => {
                    progress(&ProgressEvent::Mounted {
                        digest: digest.clone(),
                        from: from.repository().to_string(),
                    });
                    return Ok(());
                }
                // The registry declined the mount but opened an upload session: use it.
                Mount::Session(url) => {
                    session = Some(url);
                    break;
                }
                Mount::Refused => {}
            }
        }
        progress(&ProgressEvent::Started {
            digest: digest.clone(),
            size: desc.size(),
        });
        with_blob_retries(digest, progress, || {
            let start = match session.take() {
                Some(u) => Ok(u),
                None => self.start_upload(ep, reference),
            };
            start.and_then(|start| {
                self.upload(ep, reference, desc, source, options, start, progress)
            })
        })?;
        progress(&ProgressEvent::Done {
            digest: digest.clone(),
            size: desc.size(),
        });
        Ok(())
    }

    /// `HEAD /blobs/<digest>` with `scope`: whether the repository has the blob.
    pub(crate) fn head_blob(
        &self,
        ep: &Endpoint,
        repo: &str,
        digest: &Digest,
        scope: &str,
    ) -> Result<bool> {
        let url = ep.url(&format!("{repo}/blobs/{digest}"));
        let scopes = [scope.to_string()];
        let mut resp = self
            .transport
            .request(ep, &scopes, Method::HEAD, &url, &[])?;
        match resp.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(status_error(ep, "HEAD", &url, &mut resp)),
        }
    }

    /// `POST /blobs/uploads/?mount=DIGEST&from=REPO`: 201 means mounted, 202 an upload
    /// session instead. Anything else (no pull access to the source, say) falls back to an
    /// upload, as Docker does.
    pub(crate) fn try_mount(
        &self,
        ep: &Endpoint,
        reference: &Reference,
        desc: &Descriptor,
        from: &str,
    ) -> Result<Mount> {
        let repo = reference.repository();
        let mut url = Url::parse(&ep.url(&format!("{repo}/blobs/uploads/"))).map_err(|_| {
            Error::MissingHeader {
                url: ep.base.clone(),
                header: "Location",
            }
        })?;
        url.query_pairs_mut()
            .append_pair("mount", desc.digest().as_ref())
            .append_pair("from", from);
        let scopes = [repository_scope(repo, true), repository_scope(from, false)];
        let resp = match self
            .transport
            .request(ep, &scopes, Method::POST, url.as_str(), &[])
        {
            Ok(r) => r,
            Err(Error::Unauthorized { .. }) => return Ok(Mount::Refused),
            Err(e) => return Err(e),
        };
        match resp.status().as_u16() {
            201 => Ok(Mount::Mounted),
            202 => Ok(Mount::Session(location(url.as_str(), &resp)?)),
            _ => Ok(Mount::Refused),
        }
    }

    fn start_upload(&self, ep: &Endpoint, reference: &Reference) -> Result<Url> {
        let repo = reference.repository();
        let url = ep.url(&format!("{repo}/blobs/uploads/"));
        let scopes = [repository_scope(repo, true)];
        let mut resp = self
            .transport
            .request(ep, &scopes, Method::POST, &url, &[])?;
        if !resp.status().is_success() {
            return Err(status_error(ep, "POST", &url, &mut resp));
        }
        location(&url, &resp)
    }

    /// Streams the blob into an upload session: one PUT, or PATCH chunks then a closing PUT.
    #[allow(clippy::too_many_arguments)]
    fn upload(
        &self,
        ep: &Endpoint,
        reference: &Reference,
        desc: &Descriptor,
        source: &dyn BlobSource,
        options: &PushOptions,
        start: Url,
        progress: ProgressFn<'_>,
    ) -> Result<()> {
        let digest = desc.digest();
        let size = desc.size();
        let scopes = [repository_scope(reference.repository(), true)];
        let inner = source.open(digest).map_err(|source| Error::Source {
            digest: digest.clone(),
            source,
        })?;
        let mut reader = UploadReader {
            inner,
            size,
            done: 0,
            reported: 0,
            digest,
            progress,
            failure: None,
        };
        let octet = ("Content-Type", "application/octet-stream");
        let mut session = start;
        if let Some(chunk) = options.chunk_size.filter(|c| *c > 0) {
            while reader.done < size {
                let offset = reader.done;
                let n = chunk.min(size - offset);
                let len = n.to_string();
                let range = format!("{offset}-{}", offset + n - 1);
                let mut part = (&mut reader).take(n);
                let sent = self.transport.request_with_body(
                    ep,
                    &scopes,
                    Method::PATCH,
                    session.as_str(),
                    &[octet, ("Content-Length", &len), ("Content-Range", &range)],
                    SendBody::from_reader(&mut part),
                );
                let mut resp = reader.check(sent)?;
                if !resp.status().is_success() {
                    return Err(status_error(ep, "PATCH", session.as_str(), &mut resp));
                }
                session = location(session.as_str(), &resp)?;
            }
        }
        session
            .query_pairs_mut()
            .append_pair("digest", digest.as_ref());
        let remaining = (size - reader.done).to_string();
        let sent = self.transport.request_with_body(
            ep,
            &scopes,
            Method::PUT,
            session.as_str(),
            &[octet, ("Content-Length", &remaining)],
            SendBody::from_reader(&mut reader),
        );
        let mut resp = reader.check(sent)?;
        if !resp.status().is_success() {
            return Err(status_error(ep, "PUT", session.as_str(), &mut resp));
        }
        Ok(())
    }
}

pub(crate) enum Mount {
    Mounted,
    Session(Url),
    Refused,
}

/// Reads a child manifest of an index from the source, verified.
fn read_manifest_blob(source: &dyn BlobSource, digest: &Digest) -> Result<Vec<u8>> {
    let source_err = |source| Error::Source {
        digest: digest.clone(),
        source,
    };
    let mut bytes = Vec::new();
    source
        .open(digest)
        .map_err(source_err)?
        .take(MANIFEST_SIZE_LIMIT + 1)
        .read_to_end(&mut bytes)
        .map_err(source_err)?;
    verify_bytes(&format!("blob source {digest}"), digest, &bytes)?;
    Ok(bytes)
}

/// The blob being uploaded: exactly `size` bytes from the source, reporting progress and
/// remembering a source failure so it is not mistaken for a network error.
struct UploadReader<'a> {
    inner: Box<dyn Read + Send>,
    size: u64,
    done: u64,
    reported: u64,
    digest: &'a Digest,
    progress: ProgressFn<'a>,
    failure: Option<io::Error>,
}

impl UploadReader<'_> {
    /// Turns a request outcome into the right error: a source failure wins.
    fn check<T>(&mut self, sent: Result<T>) -> Result<T> {
        if let Some(source) = self.failure.take() {
            return Err(Error::Source {
                digest: self.digest.clone(),
                source,
            });
        }
        sent
    }
}

impl Read for UploadReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let remaining = self.size - self.done;
        if remaining == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(remaining).unwrap_or(usize::MAX));
        let n = match self.inner.read(&mut buf[..want]) {
            Ok(0) => {
                let e = io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("blob ended after {} of {} bytes", self.done, self.size),
                );
                self.failure = Some(io::Error::new(e.kind(), e.to_string()));
                return Err(e);
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => {
                self.failure = Some(io::Error::new(e.kind(), e.to_string()));
                return Err(e);
            }
        };
        self.done += n as u64;
        if self.done - self.reported >= PROGRESS_STEP || self.done == self.size {
            self.reported = self.done;
            (self.progress)(&ProgressEvent::Transferred {
                digest: self.digest.clone(),
                done: self.done,
                size: self.size,
            });
        }
        Ok(n)
    }
}
