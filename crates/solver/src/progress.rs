//! Progress events: what the CLI displays while a build runs.

use std::sync::mpsc::Sender;
use std::time::{Duration, SystemTime};

use img_llb::{Digest, SourceLocation};
use serde::{Deserialize, Serialize};

use crate::CacheChange;

/// Which output stream of a process a log chunk came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One thing that happened to one op. Serialized with an `event` tag for `--progress=rawjson`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProgressEvent {
    /// The op started executing (it was not in the cache).
    Started {
        /// The op's digest.
        op: Digest,
        /// Its description, e.g. `[build 2/4] RUN make`.
        name: String,
        /// Its Dockerfile location.
        location: Option<SourceLocation>,
        /// When.
        at: SystemTime,
    },
    /// The op's result was taken from the cache.
    Cached {
        /// The op's digest.
        op: Digest,
        /// Its description.
        name: String,
        /// Its Dockerfile location.
        location: Option<SourceLocation>,
        /// When.
        at: SystemTime,
    },
    /// The op missed the cache although the same Dockerfile location was built before: what
    /// changed since. Sent after [`ProgressEvent::Started`].
    CacheMiss {
        /// The op's digest.
        op: Digest,
        /// One line naming what changed, e.g. `src/b.c changed (and 2 more files)`.
        summary: String,
        /// Every change found, most telling first.
        changes: Vec<CacheChange>,
        /// When.
        at: SystemTime,
    },
    /// Output written by the op's process; `data` is a chunk, not necessarily whole lines.
    Log {
        /// The op's digest.
        op: Digest,
        /// Which stream.
        stream: LogStream,
        /// The bytes, decoded as UTF-8 with invalid sequences replaced.
        data: String,
        /// When.
        at: SystemTime,
    },
    /// The op finished successfully.
    Finished {
        /// The op's digest.
        op: Digest,
        /// When.
        at: SystemTime,
        /// How long it ran.
        duration: Duration,
    },
    /// The op failed; the build stops.
    Failed {
        /// The op's digest.
        op: Digest,
        /// The error, with its causes joined by `: `.
        error: String,
        /// When.
        at: SystemTime,
    },
    /// The op was running when the build was cancelled and was stopped.
    Cancelled {
        /// The op's digest.
        op: Digest,
        /// When.
        at: SystemTime,
    },
}

impl ProgressEvent {
    /// The op the event is about.
    pub fn op(&self) -> Digest {
        match self {
            ProgressEvent::Started { op, .. }
            | ProgressEvent::Cached { op, .. }
            | ProgressEvent::CacheMiss { op, .. }
            | ProgressEvent::Log { op, .. }
            | ProgressEvent::Finished { op, .. }
            | ProgressEvent::Failed { op, .. }
            | ProgressEvent::Cancelled { op, .. } => *op,
        }
    }

    /// The event as one line of JSON, for `--progress=rawjson`.
    pub fn to_json_line(&self) -> String {
        // Plain data with string keys always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Where the solver sends progress events. Called from several threads at once.
pub trait ProgressSink: Send + Sync {
    /// Receives one event.
    fn emit(&self, event: ProgressEvent);
}

impl<F: Fn(ProgressEvent) + Send + Sync> ProgressSink for F {
    fn emit(&self, event: ProgressEvent) {
        self(event)
    }
}

/// Forwards events into a channel; a closed receiver drops them.
#[derive(Debug, Clone)]
pub struct ChannelSink(pub Sender<ProgressEvent>);

impl ProgressSink for ChannelSink {
    fn emit(&self, event: ProgressEvent) {
        // The display may have gone away (e.g. on exit); progress must never fail a build.
        let _ = self.0.send(event);
    }
}

/// Drops every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn emit(&self, _event: ProgressEvent) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialize_with_a_tag_and_round_trip() {
        let event = ProgressEvent::Log {
            op: Digest::of(b"op"),
            stream: LogStream::Stderr,
            data: "warning\n".into(),
            at: SystemTime::UNIX_EPOCH + Duration::from_millis(1500),
        };
        let line = event.to_json_line();
        assert!(
            line.starts_with(r#"{"event":"log","op":"sha256:"#),
            "{line}"
        );
        assert!(line.contains(r#""stream":"stderr""#), "{line}");
        let back: ProgressEvent = serde_json::from_str(&line).unwrap();
        assert_eq!(back, event);
    }
}
