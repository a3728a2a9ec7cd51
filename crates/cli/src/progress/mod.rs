//! The progress display: build-step events from the solver and per-blob transfer events from
//! registry pulls and pushes, rendered on standard error by a thread of its own.
//!
//! Producers (solver threads, transfer threads) only send [`Event`]s into a channel, so a
//! slow terminal never slows a build, and the display owns all of its state. Four renderers:
//! `tty` (a live view redrawn in place, like BuildKit's), `plain` (BuildKit's plain format,
//! one line per event, stable to grep), `rawjson` (one JSON object per line) and `quiet`.
//! Every renderer writes into any `io::Write` and takes time from the events or from an
//! explicit `now`, so tests feed recorded events and assert the exact bytes.

mod format;
mod plain;
mod rawjson;
mod tty;

use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

pub use format::human_size;
pub use plain::PlainRenderer;
pub use rawjson::RawJsonRenderer;
pub use tty::TtyRenderer;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A live view redrawn in place.
    Tty,
    /// One line per event.
    Plain,
    /// One JSON object per event.
    RawJson,
    /// Nothing at all.
    Quiet,
}

/// Whether a blob is being downloaded or uploaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// `img pull`, or a base image for a build.
    Pull,
    /// `img push`.
    Push,
}

/// Something to display.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A build step changed state or printed output.
    Solver(img_solver::ProgressEvent),
    /// A blob transfer changed state; stamped when received, as registry events carry no
    /// time of their own.
    Transfer {
        /// Pull or push.
        direction: Direction,
        /// When it happened.
        at: SystemTime,
        /// What happened.
        event: img_registry::ProgressEvent,
    },
}

/// Turns events into bytes.
pub trait Render: Send {
    /// Handles one event, writing whatever it prints at once.
    fn event(&mut self, event: &Event, out: &mut dyn Write) -> io::Result<()>;
    /// Called regularly by a live display to redraw; `now` drives the timers.
    fn tick(&mut self, _now: SystemTime, _out: &mut dyn Write) -> io::Result<()> {
        Ok(())
    }
    /// Called once when no more events will come.
    fn finish(&mut self, _now: SystemTime, _out: &mut dyn Write) -> io::Result<()> {
        Ok(())
    }
    /// How often [`Render::tick`] wants to run; `None` for never.
    fn tick_interval(&self) -> Option<Duration> {
        None
    }
}

/// Prints nothing.
#[derive(Debug, Default)]
pub struct QuietRenderer;

impl Render for QuietRenderer {
    fn event(&mut self, _event: &Event, _out: &mut dyn Write) -> io::Result<()> {
        Ok(())
    }
}

/// The renderer for a mode, sized to the terminal on standard error; with `debug` (plain),
/// every change behind a cache miss is listed.
pub fn renderer_for(mode: Mode, debug: bool) -> Box<dyn Render> {
    match mode {
        Mode::Tty => Box::new(TtyRenderer::new(tty::stderr_size())),
        Mode::Plain => Box::new(PlainRenderer::with_debug(debug)),
        Mode::RawJson => Box::new(RawJsonRenderer),
        Mode::Quiet => Box::new(QuietRenderer),
    }
}

/// A running display: a thread draining the event channel into a renderer on stderr.
pub struct Display {
    sender: Sender<Message>,
    thread: JoinHandle<()>,
}

impl Display {
    /// Starts displaying in `mode` on standard error.
    pub fn start(mode: Mode) -> Display {
        Display::start_with(renderer_for(mode, false), Box::new(io::stderr()))
    }

    /// As [`Display::start`]; with `debug`, a cache miss lists every change it found.
    pub fn start_debug(mode: Mode, debug: bool) -> Display {
        Display::start_with(renderer_for(mode, debug), Box::new(io::stderr()))
    }

    /// Starts a display with any renderer and output.
    pub fn start_with(renderer: Box<dyn Render>, out: Box<dyn Write + Send>) -> Display {
        let (sender, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("img-progress".into())
            .spawn(move || drive(renderer, receiver, out))
            .unwrap_or_else(|e| panic!("cannot start the progress thread: {e}"));
        Display { sender, thread }
    }

    /// A sink for the solver's events.
    pub fn solver_sink(&self) -> SolverSink {
        SolverSink(self.sender.clone())
    }

    /// A callback for a registry pull's or push's events.
    pub fn transfer_callback(
        &self,
        direction: Direction,
    ) -> impl Fn(&img_registry::ProgressEvent) + Sync {
        let sender = self.sender.clone();
        move |event| {
            // The display may have stopped (e.g. on exit); progress never fails a transfer.
            let _ = sender.send(Message::Event(Event::Transfer {
                direction,
                at: SystemTime::now(),
                event: event.clone(),
            }));
        }
    }

    /// Waits for every event sent so far to be displayed and for the final frame. Sinks and
    /// callbacks still alive are disconnected: what they send later is dropped.
    pub fn finish(self) {
        let Display { sender, thread } = self;
        let _ = sender.send(Message::Stop);
        drop(sender);
        // A panic in the display thread has already been printed; the command's result
        // stands on its own.
        let _ = thread.join();
    }
}

/// Forwards solver events to the display.
#[derive(Debug, Clone)]
pub struct SolverSink(Sender<Message>);

impl img_solver::ProgressSink for SolverSink {
    fn emit(&self, event: img_solver::ProgressEvent) {
        let _ = self.0.send(Message::Event(Event::Solver(event)));
    }
}

/// The display loop: render events as they come, tick when the renderer wants to (also while
/// events keep arriving), finish on [`Message::Stop`] (or when every sender is gone). Output errors (a closed stderr)
/// stop the drawing, not the draining, so senders never block.
/// What the display thread receives.
enum Message {
    Event(Event),
    /// Sent by [`Display::finish`]; everything sent before it has been received.
    Stop,
}

fn drive(mut renderer: Box<dyn Render>, events: Receiver<Message>, mut out: Box<dyn Write>) {
    let mut broken = false;
    let mut check = |result: io::Result<()>, out: &mut Box<dyn Write>| {
        if !broken {
            broken = result.and_then(|()| out.flush()).is_err();
        }
    };
    let mut last_tick = Instant::now();
    loop {
        let next = match renderer.tick_interval() {
            Some(interval) => events.recv_timeout(interval.saturating_sub(last_tick.elapsed())),
            None => events.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match next {
            Ok(Message::Event(event)) => {
                let r = renderer.event(&event, &mut out);
                check(r, &mut out);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => break,
        }
        if renderer
            .tick_interval()
            .is_some_and(|interval| last_tick.elapsed() >= interval)
        {
            last_tick = Instant::now();
            let r = renderer.tick(SystemTime::now(), &mut out);
            check(r, &mut out);
        }
    }
    let r = renderer.finish(SystemTime::now(), &mut out);
    check(r, &mut out);
}

#[cfg(test)]
pub(crate) mod testdata;

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A writer whose bytes the test can read after the display thread is done.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn testdata_event() -> img_solver::ProgressEvent {
        match testdata::build_events().remove(0) {
            Event::Solver(event) => event,
            Event::Transfer { .. } => unreachable!("build events are solver events"),
        }
    }

    #[test]
    fn finish_shows_everything_sent_before_it_while_sinks_are_still_alive() {
        let out = Shared::default();
        let display =
            Display::start_with(Box::new(PlainRenderer::default()), Box::new(out.clone()));
        let sink = display.solver_sink();
        let senders: Vec<_> = testdata::build_events()
            .into_iter()
            .map(|event| {
                let Event::Solver(event) = event else {
                    unreachable!("build events are solver events")
                };
                event
            })
            .collect();
        for event in senders {
            img_solver::ProgressSink::emit(&sink, event);
        }
        // The sink outlives the display (as a callback in a caller's scope does): finishing
        // must not wait for it, and later events are dropped.
        display.finish();
        img_solver::ProgressSink::emit(&sink, testdata_event());
        let mut direct = Vec::new();
        let mut renderer = PlainRenderer::default();
        for event in testdata::build_events() {
            renderer.event(&event, &mut direct).unwrap();
        }
        renderer
            .finish(SystemTime::UNIX_EPOCH, &mut direct)
            .unwrap();
        assert_eq!(*out.0.lock().unwrap(), direct);
    }
}
