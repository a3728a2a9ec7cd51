//! The export as a step of the build's progress, as BuildKit shows "exporting to image":
//! a step of its own whose lines say what is being written (`exporting layers 52.4MB`,
//! `exporting manifest sha256:… done`, `sending tarball 0.3s done`). It speaks the solver's
//! event kinds (started, log lines, finished), so every progress mode shows it unchanged.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use img_solver::{LogStream, ProgressEvent, ProgressSink};
use img_worker::{ExportCallback, ExportEvent};

use crate::progress::{human_size, SolverSink};

/// How often a running layer export reports its bytes: a few lines a second would flood the
/// plain output of a long export.
const BYTES_EVERY: Duration = Duration::from_secs(1);

/// The export step of one build.
pub struct ExportStep {
    sink: SolverSink,
    op: img_llb::Digest,
    started: Instant,
    layers: Mutex<Layers>,
}

#[derive(Default)]
struct Layers {
    /// When the first layer began writing.
    since: Option<Instant>,
    last_bytes_line: Option<Instant>,
    count: usize,
}

impl ExportStep {
    /// Shows the step `name` (e.g. `exporting to oci image format`) as started.
    pub fn start(sink: SolverSink, name: &str) -> Arc<ExportStep> {
        let op = img_llb::Digest::of(format!("img build export: {name}").as_bytes());
        sink.emit(ProgressEvent::Started {
            op,
            name: name.to_owned(),
            location: None,
            at: SystemTime::now(),
        });
        Arc::new(ExportStep {
            sink,
            op,
            started: Instant::now(),
            layers: Mutex::new(Layers::default()),
        })
    }

    /// One status line of the step.
    pub fn line(&self, text: &str) {
        self.sink.emit(ProgressEvent::Log {
            op: self.op,
            stream: LogStream::Stdout,
            data: format!("{text}\n"),
            at: SystemTime::now(),
        });
    }

    /// `what 1.2s done`, timed from `since`.
    pub fn done(&self, what: &str, since: Instant) {
        self.line(&format!(
            "{what} {:.1}s done",
            since.elapsed().as_secs_f64()
        ));
    }

    /// The callback that turns the exporter's layer events into lines.
    pub fn callback(self: &Arc<Self>) -> ExportCallback {
        let step = Arc::clone(self);
        ExportCallback::new(move |event| step.layer_event(event))
    }

    fn layer_event(&self, event: &ExportEvent) {
        let Ok(mut layers) = self.layers.lock() else {
            return;
        };
        match event {
            ExportEvent::LayerStarted { count, .. } => {
                if layers.since.is_none() {
                    layers.since = Some(Instant::now());
                    self.line("exporting layers");
                }
                layers.count = *count;
                layers.last_bytes_line = Some(Instant::now());
            }
            ExportEvent::LayerBytes { index, done } => {
                let due = layers
                    .last_bytes_line
                    .is_none_or(|at| at.elapsed() >= BYTES_EVERY);
                if due {
                    layers.last_bytes_line = Some(Instant::now());
                    let of = match layers.count {
                        0 | 1 => String::new(),
                        n => format!(" (layer {}/{n})", index + 1),
                    };
                    self.line(&format!("exporting layers {}{of}", human_size(*done)));
                }
            }
            _ => {}
        }
    }

    /// `exporting layers 2.1s done` (or `exporting layers done` when every layer came from
    /// an earlier export).
    pub fn layers_done(&self) {
        let since = self.layers.lock().ok().and_then(|l| l.since);
        match since {
            Some(since) => self.done("exporting layers", since),
            None => self.line("exporting layers done"),
        }
    }

    /// Shows the step as finished.
    pub fn finish(&self) {
        self.sink.emit(ProgressEvent::Finished {
            op: self.op,
            at: SystemTime::now(),
            duration: self.started.elapsed(),
        });
    }

    /// Shows the step as failed with `error`.
    pub fn fail(&self, error: &anyhow::Error) {
        self.sink.emit(ProgressEvent::Failed {
            op: self.op,
            error: format!("{error:#}"),
            at: SystemTime::now(),
        });
    }
}
