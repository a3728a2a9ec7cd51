//! One blob at a time: existence checks, cross-repository mounts and single uploads, for
//! callers that manage their own manifests (a build cache exported to a registry, say).

use oci_spec::image::{Descriptor, Digest};
use ureq::http::Method;

use crate::auth::repository_scope;
use crate::client::Client;
use crate::error::Result;
use crate::progress::ProgressFn;
use crate::push::{Mount, PushOptions};
use crate::reference::Reference;
use crate::store::BlobSource;

impl Client {
    /// Whether `reference`'s repository holds the blob (`HEAD /v2/<repo>/blobs/<digest>`,
    /// following a redirect to object storage). Needs pull access only; mirrors are not
    /// consulted, since the answer is about that repository.
    pub fn blob_exists(&self, reference: &Reference, digest: &Digest) -> Result<bool> {
        let ep = self.transport.endpoint(reference.registry())?;
        let repo = reference.repository();
        self.head_blob(&ep, repo, digest, &repository_scope(repo, false))
    }

    /// Asks the registry to link a blob of `from`'s repository into `target`'s without
    /// uploading it (`POST /blobs/uploads/?mount=&from=`). `Ok(true)`: mounted. `Ok(false)`:
    /// declined (the source lacks the blob, there is no pull access to it, the registry does
    /// not mount) or `from` is on another registry, where no mount is possible; the caller
    /// uploads instead. An upload session the registry opened instead is cancelled.
    pub fn mount_blob(
        &self,
        target: &Reference,
        descriptor: &Descriptor,
        from: &Reference,
    ) -> Result<bool> {
        if from.registry() != target.registry() {
            return Ok(false);
        }
        let ep = self.transport.endpoint(target.registry())?;
        match self.try_mount(&ep, target, descriptor, from.repository())? {
            Mount::Mounted => Ok(true),
            Mount::Refused => Ok(false),
            Mount::Session(session) => {
                // Nothing will be uploaded through it; tell the registry (best effort: an
                // abandoned session expires anyway).
                let scopes = [repository_scope(target.repository(), true)];
                let _ = self
                    .transport
                    .request(&ep, &scopes, Method::DELETE, session.as_str(), &[]);
                Ok(false)
            }
        }
    }

    /// Makes one blob present in `target`'s repository, as [`push`](Client::push) does for
    /// each blob of a manifest: nothing if it is there already, a mount from one of
    /// `options.mount_from` if the registry accepts it, else an upload from `source`
    /// (monolithic, or chunked per `options.chunk_size`), retried and resumed on failure.
    pub fn push_blob(
        &self,
        target: &Reference,
        descriptor: &Descriptor,
        source: &dyn BlobSource,
        options: &PushOptions,
        progress: ProgressFn<'_>,
    ) -> Result<()> {
        let ep = self.transport.endpoint(target.registry())?;
        self.push_blob_on(&ep, target, descriptor, source, options, progress)
    }
}
