//! Where a step's stdout and stderr go: a caller-supplied sink, fed as output arrives.

use std::sync::mpsc::Sender;

/// Which of the step's output streams a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Stream {
    /// File descriptor 1.
    Stdout,
    /// File descriptor 2.
    Stderr,
}

/// A piece of output of one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputChunk {
    /// The stream.
    pub stream: Stream,
    /// The bytes, as read (chunks) or one line including its `\n` (with [`LineSink`]).
    pub data: Vec<u8>,
}

/// Receives a step's output while it runs, on the thread that called [`crate::Sandbox::run`].
pub trait OutputSink {
    /// Called with each chunk of output, in arrival order per stream.
    fn output(&mut self, stream: Stream, data: &[u8]);

    /// Called once when both streams have ended.
    fn finish(&mut self) {}
}

impl<F: FnMut(Stream, &[u8])> OutputSink for F {
    fn output(&mut self, stream: Stream, data: &[u8]) {
        self(stream, data)
    }
}

/// Sends every chunk to a channel; a closed receiver drops output without failing the step.
impl OutputSink for Sender<OutputChunk> {
    fn output(&mut self, stream: Stream, data: &[u8]) {
        let _ = self.send(OutputChunk {
            stream,
            data: data.to_vec(),
        });
    }
}

/// Discards output.
#[derive(Debug, Default, Clone, Copy)]
pub struct DiscardOutput;

impl OutputSink for DiscardOutput {
    fn output(&mut self, _stream: Stream, _data: &[u8]) {}
}

/// Adapts a sink to line granularity: each call carries one complete line (with its `\n`),
/// per stream; a last line without newline is delivered when the step ends.
#[derive(Debug)]
pub struct LineSink<S> {
    inner: S,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl<S: OutputSink> LineSink<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        LineSink {
            inner,
            stdout: Vec::new(),
            stderr: Vec::new(),
        }
    }

    /// The wrapped sink.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: OutputSink> OutputSink for LineSink<S> {
    fn output(&mut self, stream: Stream, data: &[u8]) {
        let buf = match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        };
        buf.extend_from_slice(data);
        while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            self.inner.output(stream, &line);
        }
    }

    fn finish(&mut self) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let buf = match stream {
                Stream::Stdout => std::mem::take(&mut self.stdout),
                Stream::Stderr => std::mem::take(&mut self.stderr),
            };
            if !buf.is_empty() {
                self.inner.output(stream, &buf);
            }
        }
        self.inner.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_sink_splits_and_flushes_per_stream() {
        let mut seen = Vec::new();
        {
            let mut sink = LineSink::new(|s: Stream, d: &[u8]| {
                seen.push((s, String::from_utf8_lossy(d).into_owned()))
            });
            sink.output(Stream::Stdout, b"a\nb");
            sink.output(Stream::Stderr, b"e1\n");
            sink.output(Stream::Stdout, b"c\nd");
            sink.finish();
        }
        assert_eq!(
            seen,
            [
                (Stream::Stdout, "a\n".to_string()),
                (Stream::Stderr, "e1\n".to_string()),
                (Stream::Stdout, "bc\n".to_string()),
                (Stream::Stdout, "d".to_string()),
            ]
        );
    }
}
