//! Remote sources: a file downloaded over HTTP(S) (`ADD <url>`) and a git checkout
//! (`ADD <repository>`), each into a snapshot of its own.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::time::Duration;

use img_llb::{GitSource, HttpSource};
use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;
use sha2::{Digest as _, Sha256};

use super::{Active, Worker, WorkerError, WorkerRef};
use img_solver::{CancelToken, ExecContext};

/// How long an `ADD <url>` download may wait on the network before it fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DownloadTimeouts {
    /// Resolving the host name and connecting.
    pub connect: Duration,
    /// Waiting for the response headers, and for each next part of the body: a server that
    /// stops sending fails the download after this long, however long the whole takes.
    pub idle: Duration,
}

impl Default for DownloadTimeouts {
    /// 30 s to connect, 60 s of silence.
    fn default() -> Self {
        DownloadTimeouts {
            connect: Duration::from_secs(30),
            idle: Duration::from_secs(60),
        }
    }
}

impl DownloadTimeouts {
    /// Timeouts of `connect` and `idle`.
    pub fn new(connect: Duration, idle: Duration) -> Self {
        DownloadTimeouts { connect, idle }
    }
}

/// What the download thread hands the op.
pub(super) enum Fetched {
    /// The response arrived: its status and validators.
    Head(ResponseHead),
    /// The next part of the body.
    Data(Vec<u8>),
    /// The body is complete.
    End,
}

/// The status and validators of a response.
pub(super) struct ResponseHead {
    /// The HTTP status (`304` answers a conditional request whose content is current).
    pub status: u16,
    /// `ETag`, as sent.
    pub etag: Option<String>,
    /// `Last-Modified`, as sent.
    pub last_modified: Option<String>,
}

impl ResponseHead {
    /// `Last-Modified` in seconds since the epoch.
    pub fn modified(&self) -> Option<i64> {
        self.last_modified.as_deref().and_then(parse_http_date)
    }
}

/// A download under way on a thread of its own: its messages, read with [`next_fetched`].
pub(super) type Download = Receiver<Result<Fetched, WorkerError>>;

/// Starts downloading `url` on a thread of its own, with request `headers` (the conditions of
/// a conditional request).
pub(super) fn start_download(
    url: &str,
    headers: Vec<(&'static str, String)>,
    timeouts: DownloadTimeouts,
) -> Result<Download, WorkerError> {
    let (sender, receiver) = mpsc::sync_channel(4);
    let owned = url.to_owned();
    std::thread::Builder::new()
        .name("img-download".into())
        .spawn(move || fetch(&owned, &headers, timeouts, &sender))
        .map_err(|e| WorkerError::Download {
            url: url.to_owned(),
            source: Box::new(ureq::Error::Io(e)),
        })?;
    Ok(receiver)
}

/// Downloads `url` on the calling thread, sending what arrives to `out`; stops early when the
/// receiver is gone (the op was cancelled).
fn fetch(
    url: &str,
    headers: &[(&'static str, String)],
    timeouts: DownloadTimeouts,
    out: &SyncSender<Result<Fetched, WorkerError>>,
) {
    let failed = |e: ureq::Error| WorkerError::Download {
        url: url.to_owned(),
        source: Box::new(e),
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_resolve(Some(timeouts.connect))
        .timeout_connect(Some(timeouts.connect))
        .timeout_recv_response(Some(timeouts.idle))
        .timeout_per_read(Some(timeouts.idle))
        .build()
        .into();
    let mut request = agent.get(url);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let mut response = match request.call() {
        Ok(response) => response,
        Err(e) => {
            let _ = out.send(Err(failed(e)));
            return;
        }
    };
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let head = ResponseHead {
        status: response.status().as_u16(),
        etag: header("etag"),
        last_modified: header("last-modified"),
    };
    if out.send(Ok(Fetched::Head(head))).is_err() {
        return;
    }
    let mut body = response.body_mut().as_reader();
    loop {
        let mut buf = vec![0u8; 256 << 10];
        let message = match body.read(&mut buf) {
            Ok(0) => Ok(Fetched::End),
            Ok(n) => {
                buf.truncate(n);
                Ok(Fetched::Data(buf))
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => Err(failed(ureq::Error::Io(e))),
        };
        let last = !matches!(message, Ok(Fetched::Data(_)));
        if out.send(message).is_err() || last {
            return;
        }
    }
}

/// The next message of the download thread, or `Cancelled` as soon as the build is.
pub(super) fn next_fetched(
    // Mutable, so a closure moved to another thread may borrow it (a receiver is not `Sync`).
    from: &mut Download,
    cancel: &CancelToken,
    url: &str,
) -> Result<Fetched, WorkerError> {
    loop {
        if cancel.is_cancelled() {
            return Err(WorkerError::Cancelled);
        }
        match from.recv_timeout(Duration::from_millis(50)) {
            Ok(message) => return message,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                return Err(WorkerError::Download {
                    url: url.to_owned(),
                    source: Box::new(ureq::Error::Io(std::io::Error::other(
                        "the download stopped unexpectedly",
                    ))),
                })
            }
        }
    }
}

/// The file name `ADD` saves a download as: the last URL path segment.
pub(super) fn file_name(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = after_scheme.split(['?', '#']).next().unwrap_or("");
    let path = path.find('/').map_or("", |i| &path[i..]);
    match path.rsplit('/').find(|s| !s.is_empty()) {
        Some(name) if name != "." && name != ".." => name.to_owned(),
        _ => "__unnamed__".to_owned(),
    }
}

/// Seconds since the epoch of an HTTP date (`Wed, 21 Oct 2015 07:28:00 GMT`, RFC 7231's
/// preferred form, the only one servers send today).
pub(super) fn parse_http_date(value: &str) -> Option<i64> {
    let parts: Vec<&str> = value.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = months.iter().position(|m| m == month)? as i64 + 1;
    let day: i64 = day.parse().ok()?;
    let year: i64 = year.parse().ok()?;
    let hms: Vec<i64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, s] = hms.as_slice() else {
        return None;
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

/// Writes the body of `download` into `active` as the file `http` names (mode 0600, the
/// server's modification time), returning its sha256.
pub(super) fn save_download(
    active: &Active<'_>,
    http: &HttpSource,
    head: &ResponseHead,
    download: &mut Download,
    cancel: &CancelToken,
) -> Result<[u8; 32], WorkerError> {
    let filename = http
        .filename
        .clone()
        .unwrap_or_else(|| file_name(&http.url));
    let modified = head.modified();
    active.with_tree(|root| -> Result<[u8; 32], WorkerError> {
        let path = root.join(filename.trim_start_matches('/'));
        let mut file = fs::File::create(&path).map_err(WorkerError::file("creating", &path))?;
        let mut hasher = Sha256::new();
        loop {
            match next_fetched(download, cancel, &http.url)? {
                Fetched::Data(data) => {
                    hasher.update(&data);
                    file.write_all(&data)
                        .map_err(WorkerError::file("writing", &path))?;
                }
                Fetched::End => break,
                Fetched::Head { .. } => {}
            }
        }
        drop(file);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
            .map_err(WorkerError::file("changing the mode of", &path))?;
        if let Some(secs) = modified {
            let t = TimeSpec::new(secs, 0);
            utimensat(
                nix::fcntl::AT_FDCWD,
                &path,
                &t,
                &t,
                UtimensatFlags::NoFollowSymlink,
            )
            .map_err(|e| WorkerError::file("setting the times of", &path)(e.into()))?;
        }
        Ok(hasher.finalize().into())
    })?
}

impl Worker {
    /// Downloads `http` into a snapshot of its own. The network is read on a thread of its
    /// own, with connect and idle timeouts, so a cancelled build returns at once even while a
    /// server sends nothing (the thread ends at the idle timeout at the latest).
    pub(super) fn http_source(
        &self,
        http: &HttpSource,
        name: &str,
        ctx: &ExecContext<'_>,
    ) -> Result<WorkerRef, WorkerError> {
        // Downloaded when the key was computed (the key is the content's digest).
        if let Some(key) = self.resolved_download(http) {
            return Ok(WorkerRef::Snapshot { key, image: None });
        }
        ctx.log(
            img_solver::LogStream::Stderr,
            format!("downloading {}\n", http.url).as_bytes(),
        );
        let mut download = start_download(&http.url, Vec::new(), self.options.download_timeouts)?;
        let head = match next_fetched(&mut download, ctx.cancel_token(), &http.url)? {
            Fetched::Head(head) => head,
            _ => ResponseHead {
                status: 200,
                etag: None,
                last_modified: None,
            },
        };
        let active = self.prepare(None)?;
        let digest = save_download(&active, http, &head, &mut download, ctx.cancel_token())?;
        if let Some(expected) = &http.checksum {
            if expected.as_bytes() != &digest {
                return Err(WorkerError::ChecksumMismatch {
                    url: http.url.clone(),
                    expected: expected.to_string(),
                    actual: format!("sha256:{}", hex_string(&digest)),
                });
            }
        }
        active.commit(name)
    }

    pub(super) fn git_source(
        &self,
        git: &GitSource,
        name: &str,
        ctx: &ExecContext<'_>,
    ) -> Result<WorkerRef, WorkerError> {
        ctx.log(
            img_solver::LogStream::Stderr,
            format!("cloning {}\n", git.url).as_bytes(),
        );
        let active = self.prepare(None)?;
        active.with_tree(|root| -> Result<(), WorkerError> {
            run_git(
                &git.url,
                "clone",
                Command::new("git")
                    .args(["clone", "--quiet", "--", &git.url])
                    .arg(root),
                ctx,
            )?;
            // The commit the key was computed from, whatever the ref names by now.
            let resolved = self.resolved_commit(git);
            if let Some(reference) = resolved.as_ref().or(git.reference.as_ref()) {
                run_git(
                    &git.url,
                    "checkout",
                    Command::new("git")
                        .arg("-C")
                        .arg(root)
                        .args(["checkout", "--quiet", reference]),
                    ctx,
                )?;
            }
            if !git.keep_git_dir {
                remove_git_dir(root)?;
            }
            Ok(())
        })??;
        active.commit(name)
    }
}

/// Runs a git command to completion, killing it when the build is cancelled.
fn run_git(
    url: &str,
    step: &'static str,
    command: &mut Command,
    ctx: &ExecContext<'_>,
) -> Result<(), WorkerError> {
    let failed = |status: String, stderr: String| WorkerError::Git {
        step,
        url: url.to_owned(),
        status,
        stderr,
    };
    // A prompt for credentials would hang the build: fail instead.
    let mut child = command
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed("not started".into(), e.to_string()))?;
    let mut stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(err) = stderr.as_mut() {
            let _ = err.read_to_string(&mut text);
        }
        text
    });
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if ctx.cancel_token().wait_timeout(Duration::from_millis(50)) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(WorkerError::Cancelled);
            }
            Ok(None) => {}
            Err(e) => return Err(failed("unknown".into(), e.to_string())),
        }
    };
    let stderr = reader.join().unwrap_or_default();
    if status.success() {
        return Ok(());
    }
    Err(failed(status.to_string(), stderr.trim().to_owned()))
}

fn remove_git_dir(root: &Path) -> Result<(), WorkerError> {
    let dir = root.join(".git");
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(WorkerError::file("removing", &dir))?;
    }
    Ok(())
}

pub(super) fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_and_file_names() {
        assert_eq!(
            parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(1_445_412_480)
        );
        assert_eq!(parse_http_date("yesterday"), None);
        assert_eq!(file_name("https://example.com/a/b.tar.gz?x=1"), "b.tar.gz");
        assert_eq!(file_name("https://example.com"), "__unnamed__");
    }
}
