//! Source ops: where a build's filesystem content comes from.

use serde::{Deserialize, Serialize};

use crate::{Digest, Platform};

/// An op with no inputs that brings content into the build.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SourceOp {
    /// The root filesystem of a container image.
    Image(ImageSource),
    /// Files from the client's side: the build context or another named local directory.
    Local(LocalSource),
    /// A single file downloaded over HTTP(S), as `ADD https://…` does.
    Http(HttpSource),
    /// A checkout of a git repository, as `ADD git@…` does.
    Git(GitSource),
}

/// An image's root filesystem. The frontend pins `reference` to a digest when it resolved one,
/// so that the op's digest changes when the tag moves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSource {
    /// Image reference, e.g. `docker.io/library/alpine:3.20@sha256:…`.
    pub reference: String,
    /// The platform whose manifest is taken from a multi-platform index.
    pub platform: Platform,
}

/// A local directory sent by the client, filtered by patterns.
///
/// The digest covers the name and the patterns, never file contents: the solver adds a checksum
/// of the selected files to the cache key, so a definition stays the same when files change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalSource {
    /// Which local directory: `context` for the build context, or a `--build-context` name.
    pub name: String,
    /// Only paths matching one of these (`.dockerignore` syntax) are selected; empty selects all.
    pub include_patterns: Vec<String>,
    /// Paths matching these (`.dockerignore` lines) are left out.
    pub exclude_patterns: Vec<String>,
    /// The paths the build reads from this source (the `COPY` sources, wildcards allowed); empty
    /// means the whole selection. Lets an executor transfer and checksum only what is used.
    pub follow_paths: Vec<String>,
}

impl LocalSource {
    /// The whole named directory, unfiltered.
    pub fn new(name: impl Into<String>) -> Self {
        LocalSource {
            name: name.into(),
            include_patterns: Vec::new(),
            exclude_patterns: Vec::new(),
            follow_paths: Vec::new(),
        }
    }
}

/// A file fetched over HTTP(S).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpSource {
    /// The URL to fetch.
    pub url: String,
    /// The expected sha256 of the body (`ADD --checksum=`); a mismatch fails the op.
    pub checksum: Option<Digest>,
    /// The file name to save as; defaults to the last URL path segment.
    pub filename: Option<String>,
}

/// A git repository checkout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitSource {
    /// The remote URL.
    pub url: String,
    /// Branch, tag or commit; `None` is the remote's default branch.
    pub reference: Option<String>,
    /// Keep the `.git` directory in the result (`ADD --keep-git-dir`).
    pub keep_git_dir: bool,
}
