//! The cache keys of remote sources, resolved again at every build as BuildKit does: what a
//! URL or a git ref names changes without the Dockerfile changing, so the URL text alone would
//! serve stale content until a prune.
//!
//! * `ADD <url>` asks the server again with a conditional request (`If-None-Match` with the
//!   stored ETag, else `If-Modified-Since` with the stored `Last-Modified`). A `304 Not
//!   Modified` reuses the stored download; anything else is downloaded now, into a snapshot
//!   named by its content, and the step is keyed by the content digest (and modification
//!   time, which the file keeps), so new content is a miss and the same content a hit.
//! * `ADD <git url>#<ref>` resolves the ref to a commit with `git ls-remote` and is keyed by
//!   the commit; the checkout then takes that commit, whatever the ref names by then.
//!
//! A source pinned by `--checksum` or by a full commit id needs no request: its key already
//! says what it is.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use img_llb::{GitSource, HttpSource};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::remote::{
    file_name, hex_string, next_fetched, save_download, start_download, Fetched, ResponseHead,
};
use super::{Worker, WorkerError};
use img_solver::{CacheKeyExtra, CancelToken};

/// What the last download of a URL left behind: the server's validators and the snapshot
/// holding the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredDownload {
    etag: Option<String>,
    last_modified: Option<String>,
    /// sha256 of the body, hex.
    digest: String,
    /// The committed snapshot holding the file.
    snapshot: String,
}

/// A remote source resolved for this build.
#[derive(Debug, Clone)]
pub(crate) enum Resolved {
    /// The download, already in this committed (and leased) snapshot.
    Download { snapshot: String },
    /// The commit a git ref named when the key was computed.
    Commit(String),
}

/// The name a URL's download is remembered by: the URL and the file name it is saved as.
fn download_name(http: &HttpSource) -> String {
    let mut hasher = Sha256::new();
    hasher.update(http.url.as_bytes());
    hasher.update([0]);
    hasher.update(http.filename.as_deref().unwrap_or("").as_bytes());
    format!("http:{}", hex_string(&hasher.finalize()))
}

/// The name a git source's resolution is remembered by for this build.
fn git_name(git: &GitSource) -> String {
    format!(
        "git:{}#{}",
        git.url,
        git.reference.as_deref().unwrap_or("HEAD")
    )
}

/// A full commit id: nothing to resolve.
fn is_commit_id(reference: &str) -> bool {
    reference.len() == 40 && reference.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The commit `reference` names in `git ls-remote` output: a branch first, then a tag (an
/// annotated tag's peeled commit before the tag object), then any ref of that name.
fn commit_in_listing(listing: &str, reference: &str) -> Option<String> {
    let refs: Vec<(&str, &str)> = listing
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .collect();
    let candidates = [
        format!("refs/heads/{reference}"),
        format!("refs/tags/{reference}^{{}}"),
        format!("refs/tags/{reference}"),
        reference.to_owned(),
    ];
    candidates.iter().find_map(|wanted| {
        refs.iter()
            .find(|(_, name)| name == wanted)
            .map(|(commit, _)| (*commit).to_owned())
    })
}

impl Worker {
    /// The key data of `ADD <url>`: the digest of what the URL serves now.
    pub(super) fn http_cache_key(
        &self,
        http: &HttpSource,
        cancel: &CancelToken,
    ) -> Result<CacheKeyExtra, WorkerError> {
        if http.checksum.is_some() {
            // Pinned: the checksum is part of the op, and the download is checked against it.
            return Ok(CacheKeyExtra::new());
        }
        let name = download_name(http);
        let cache = self.options.checksum_cache.as_ref();
        let stored: Option<StoredDownload> = match cache {
            Some(db) => db
                .source_metadata(&name)?
                .and_then(|text| serde_json::from_str(&text).ok()),
            None => None,
        };
        // A stored download counts only while its snapshot is there; taking it into this
        // build's lease now keeps a concurrent prune from removing it before the step uses it.
        let stored = match stored {
            Some(s) if self.snapshotter.lease_existing(&s.snapshot, &[])?.is_some() => Some(s),
            _ => None,
        };
        let (download, fresh) = self.fetch_if_changed(http, stored, cancel)?;
        if let (Some(db), true) = (cache, fresh) {
            // Plain data always serializes.
            let text = serde_json::to_string(&download).unwrap_or_default();
            db.store_source_metadata(&name, &text)?;
        }
        let salt = format!(
            "http-content:sha256:{}:{}",
            download.digest,
            download.last_modified.as_deref().unwrap_or("")
        );
        self.remote_resolved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                name,
                Resolved::Download {
                    snapshot: download.snapshot,
                },
            );
        Ok(CacheKeyExtra::new().with_salt(salt))
    }

    /// Asks for `http.url`, conditionally when a download of it is stored: the stored one
    /// when the server says it is current, otherwise the new download, committed (and
    /// `true`).
    fn fetch_if_changed(
        &self,
        http: &HttpSource,
        stored: Option<StoredDownload>,
        cancel: &CancelToken,
    ) -> Result<(StoredDownload, bool), WorkerError> {
        let mut conditions = Vec::new();
        if let Some(stored) = &stored {
            if let Some(etag) = &stored.etag {
                conditions.push(("If-None-Match", etag.clone()));
            } else if let Some(modified) = &stored.last_modified {
                conditions.push(("If-Modified-Since", modified.clone()));
            }
        }
        let stored = stored.filter(|_| !conditions.is_empty());
        let mut download = start_download(&http.url, conditions, self.options.download_timeouts)?;
        let head = match next_fetched(&mut download, cancel, &http.url)? {
            Fetched::Head(head) => head,
            _ => ResponseHead {
                status: 200,
                etag: None,
                last_modified: None,
            },
        };
        if let (304, Some(stored)) = (head.status, stored) {
            return Ok((stored, false));
        }
        let active = self.prepare(None)?;
        let digest = save_download(&active, http, &head, &mut download, cancel)?;
        let digest = hex_string(&digest);
        // Named by everything the snapshot holds, so one name is one content for good.
        let filename = http
            .filename
            .clone()
            .unwrap_or_else(|| file_name(&http.url));
        let mut id = Sha256::new();
        for part in [&filename, &digest] {
            id.update(part.as_bytes());
            id.update([0]);
        }
        id.update(head.modified().unwrap_or(i64::MIN).to_le_bytes());
        let snapshot = active.commit_shared(&format!("http/{}", hex_string(&id.finalize())))?;
        self.lease
            .add_snapshot(&snapshot)
            .map_err(WorkerError::Lease)?;
        let download = StoredDownload {
            etag: head.etag,
            last_modified: head.last_modified,
            digest,
            snapshot,
        };
        Ok((download, true))
    }

    /// The snapshot [`Worker::http_cache_key`] downloaded `http` into, if it did.
    pub(super) fn resolved_download(&self, http: &HttpSource) -> Option<String> {
        match self
            .remote_resolved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&download_name(http))
        {
            Some(Resolved::Download { snapshot }) => Some(snapshot.clone()),
            _ => None,
        }
    }

    /// The key data of `ADD <git url>#<ref>`: the commit the ref names now.
    pub(super) fn git_cache_key(
        &self,
        git: &GitSource,
        cancel: &CancelToken,
    ) -> Result<CacheKeyExtra, WorkerError> {
        let reference = git.reference.as_deref().unwrap_or("HEAD");
        if is_commit_id(reference) {
            return Ok(CacheKeyExtra::new());
        }
        let listing = ls_remote(
            &git.url,
            reference,
            self.options.download_timeouts.idle,
            cancel,
        )?;
        let Some(commit) = commit_in_listing(&listing, reference) else {
            // Not a ref of the remote: an abbreviated commit id, which names one commit for
            // good (the checkout fails later if it is neither).
            return Ok(CacheKeyExtra::new());
        };
        self.remote_resolved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(git_name(git), Resolved::Commit(commit.clone()));
        Ok(CacheKeyExtra::new().with_salt(format!("git-commit:{commit}")))
    }

    /// The commit [`Worker::git_cache_key`] resolved `git`'s ref to, if it did.
    pub(super) fn resolved_commit(&self, git: &GitSource) -> Option<String> {
        match self
            .remote_resolved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&git_name(git))
        {
            Some(Resolved::Commit(commit)) => Some(commit.clone()),
            _ => None,
        }
    }
}

/// `git ls-remote <url> <reference>`'s output; killed after `timeout` (a remote that stops
/// answering must not hang the build) or once the build is cancelled.
fn ls_remote(
    url: &str,
    reference: &str,
    timeout: Duration,
    cancel: &CancelToken,
) -> Result<String, WorkerError> {
    let failed = |status: String, stderr: String| WorkerError::Git {
        step: "ls-remote",
        url: url.to_owned(),
        status,
        stderr,
    };
    let mut child = Command::new("git")
        .args(["ls-remote", "--", url, reference])
        // A prompt for credentials would hang the build: fail instead.
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed("not started".into(), e.to_string()))?;
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let out_reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(out) = stdout.as_mut() {
            let _ = out.read_to_string(&mut text);
        }
        text
    });
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(err) = stderr.as_mut() {
            let _ = err.read_to_string(&mut text);
        }
        text
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(failed(
                    format!("no answer in {} s", timeout.as_secs()),
                    String::new(),
                ));
            }
            Ok(None) if cancel.wait_timeout(Duration::from_millis(20)) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(WorkerError::Cancelled);
            }
            Ok(None) => {}
            Err(e) => return Err(failed("unknown".into(), e.to_string())),
        }
    };
    let listing = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    if status.success() {
        Ok(listing)
    } else {
        Err(failed(status.to_string(), stderr.trim().to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_resolve_branch_then_peeled_tag() {
        let listing = "aaa\trefs/heads/main\nbbb\trefs/tags/v1\nccc\trefs/tags/v1^{}\n\
                       ddd\trefs/remotes/origin/main\n";
        assert_eq!(commit_in_listing(listing, "main").as_deref(), Some("aaa"));
        assert_eq!(commit_in_listing(listing, "v1").as_deref(), Some("ccc"));
        assert_eq!(commit_in_listing(listing, "nope"), None);
        assert_eq!(
            commit_in_listing("eee\tHEAD\n", "HEAD").as_deref(),
            Some("eee")
        );
    }

    #[test]
    fn full_commit_ids_need_no_lookup() {
        assert!(is_commit_id("0123456789abcdef0123456789abcdef01234567"));
        assert!(!is_commit_id("main"));
        assert!(!is_commit_id("0123456"));
    }
}
