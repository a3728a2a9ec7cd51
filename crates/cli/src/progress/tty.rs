//! The live view, redrawn in place like BuildKit's:
//!
//! ```text
//! [+] Building 1.4s (3/4)
//!  => [internal] load build definition from Dockerfile                 0.0s
//!  => CACHED [build 1/4] FROM docker.io/library/alpine:3.19             0.0s
//!  => [build 2/4] RUN make                                              1.3s
//!  => => # cc -o app main.c
//! 0123456789ab: Downloading [=======>            ] 1.049MB/3.4MB
//! ```
//!
//! The state is updated by events; a frame is a pure function of the state, the clock and the
//! terminal size, so tests render frames with a fixed clock. Drawing moves the cursor back to
//! the top of the previous frame and clears to the end of the screen before writing the new
//! one, so every line must fit the terminal's width (a wrapped line would break the count).
//!
//! The view is drawn by hand rather than with a progress-bar crate such as indicatif: its
//! layout is BuildKit's (a header, one line per step, a step's last log lines beneath it,
//! transfers below), a frame must be a pure function of the state so snapshot tests pin it,
//! and the plain and rawjson modes render the same state. A bar library would own the
//! redraw loop and the clock, and would draw only the transfer bars.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};
use std::time::{Duration, SystemTime};

use img_solver::ProgressEvent as SolverEvent;

use super::format::{elapsed, human_size, short_digest, transfer_status};
use super::{Direction, Event, Render};

/// Output lines kept per running step, as BuildKit shows.
const LOG_LINES: usize = 6;
/// Width of a transfer's bar, inside its brackets.
const BAR_WIDTH: usize = 20;
/// How often the view is redrawn.
const REDRAW: Duration = Duration::from_millis(100);

/// The terminal's size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerminalSize {
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
}

/// The size of the terminal on standard error, or 80x24 when it cannot be asked.
pub fn stderr_size() -> TerminalSize {
    // SAFETY: TIOCGWINSZ writes a `winsize` into the struct we pass and nothing else.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    if ok && ws.ws_col > 0 && ws.ws_row > 0 {
        TerminalSize {
            width: ws.ws_col.into(),
            height: ws.ws_row.into(),
        }
    } else {
        TerminalSize {
            width: 80,
            height: 24,
        }
    }
}

/// Renders the live view.
#[derive(Debug)]
pub struct TtyRenderer {
    size: TerminalSize,
    steps: Vec<Step>,
    step_index: HashMap<img_llb::Digest, usize>,
    blobs: Vec<Blob>,
    blob_index: HashMap<(Direction, String), usize>,
    first_event: Option<SystemTime>,
    last_event: Option<SystemTime>,
    finished: bool,
    /// Lines of the frame currently on screen.
    drawn: usize,
}

#[derive(Debug)]
struct Step {
    name: String,
    state: StepState,
    logs: VecDeque<String>,
    partial: String,
}

#[derive(Debug, Clone, Copy)]
enum StepState {
    Running { since: SystemTime },
    Cached,
    Done { took: Duration },
    Failed { took: Duration },
    Cancelled { took: Duration },
}

#[derive(Debug)]
struct Blob {
    short: String,
    direction: Direction,
    status: BlobStatus,
}

#[derive(Debug)]
enum BlobStatus {
    Moving { done: u64, size: u64 },
    Settled(String),
}

impl TtyRenderer {
    /// A renderer drawing for a terminal of `size`.
    pub fn new(size: TerminalSize) -> Self {
        TtyRenderer {
            size,
            steps: Vec::new(),
            step_index: HashMap::new(),
            blobs: Vec::new(),
            blob_index: HashMap::new(),
            first_event: None,
            last_event: None,
            finished: false,
            drawn: 0,
        }
    }

    fn step(&mut self, op: img_llb::Digest, name: Option<&str>, at: SystemTime) -> &mut Step {
        let steps = &mut self.steps;
        let i = *self.step_index.entry(op).or_insert_with(|| {
            steps.push(Step {
                name: name.map_or_else(|| op.short(), str::to_owned),
                state: StepState::Running { since: at },
                logs: VecDeque::new(),
                partial: String::new(),
            });
            steps.len() - 1
        });
        &mut self.steps[i]
    }

    fn solver_event(&mut self, event: &SolverEvent) {
        let op = event.op();
        match event {
            SolverEvent::Started { name, at, .. } => {
                let step = self.step(op, Some(name), *at);
                step.name.clone_from(name);
                step.state = StepState::Running { since: *at };
            }
            SolverEvent::Cached { name, at, .. } => {
                let step = self.step(op, Some(name), *at);
                step.name.clone_from(name);
                step.state = StepState::Cached;
            }
            // Shown with the step's output while it runs.
            SolverEvent::CacheMiss { summary, at, .. } => {
                let step = self.step(op, None, *at);
                step.logs.push_back(format!("cache miss: {summary}"));
            }
            SolverEvent::Log { data, at, .. } => {
                let step = self.step(op, None, *at);
                step.partial.push_str(data);
                while let Some(end) = step.partial.find('\n') {
                    let line: String = step.partial.drain(..=end).collect();
                    step.logs
                        .push_back(line.trim_end_matches('\n').trim_end_matches('\r').into());
                    if step.logs.len() > LOG_LINES {
                        step.logs.pop_front();
                    }
                }
            }
            SolverEvent::Finished { duration, at, .. } => {
                self.step(op, None, *at).state = StepState::Done { took: *duration };
            }
            SolverEvent::Failed { at, .. } => {
                let step = self.step(op, None, *at);
                step.state = StepState::Failed {
                    took: running_time(step.state, *at),
                };
            }
            SolverEvent::Cancelled { at, .. } => {
                let step = self.step(op, None, *at);
                step.state = StepState::Cancelled {
                    took: running_time(step.state, *at),
                };
            }
            _ => {}
        }
    }

    fn transfer_event(&mut self, direction: Direction, event: &img_registry::ProgressEvent) {
        use img_registry::ProgressEvent as E;
        let (digest, status) = match event {
            E::Started { digest, size } => (
                digest,
                BlobStatus::Moving {
                    done: 0,
                    size: *size,
                },
            ),
            E::Transferred { digest, done, size } => (
                digest,
                BlobStatus::Moving {
                    done: *done,
                    size: *size,
                },
            ),
            other => match transfer_status(direction, other) {
                Some((digest, text)) => {
                    self.set_blob(direction, &digest, BlobStatus::Settled(text));
                    return;
                }
                None => return,
            },
        };
        let digest = digest.clone();
        self.set_blob(direction, &digest, status);
    }

    fn set_blob(
        &mut self,
        direction: Direction,
        digest: &img_registry::Digest,
        status: BlobStatus,
    ) {
        let short = short_digest(digest);
        let blobs = &mut self.blobs;
        let i = *self
            .blob_index
            .entry((direction, digest.to_string()))
            .or_insert_with(|| {
                blobs.push(Blob {
                    short,
                    direction,
                    status: BlobStatus::Settled(String::new()),
                });
                blobs.len() - 1
            });
        self.blobs[i].status = status;
    }

    /// The frame to show at `now`: every line fits the terminal's width, and the frame fits
    /// its height (the oldest lines below the header give way).
    pub fn frame(&self, now: SystemTime) -> Vec<String> {
        let width = self.size.width.max(20);
        let mut lines = Vec::new();
        if !self.steps.is_empty() {
            lines.push(self.header(now));
        }
        for step in &self.steps {
            let (prefix, took) = match step.state {
                StepState::Running { since } => ("", elapsed(since, now)),
                StepState::Cached => ("CACHED ", Duration::ZERO),
                StepState::Done { took } => ("", took),
                StepState::Failed { took } => ("ERROR ", took),
                StepState::Cancelled { took } => ("CANCELED ", took),
            };
            let timer = format!("{:.1}s", took.as_secs_f64());
            lines.push(left_right(
                &format!(" => {prefix}{}", step.name),
                &timer,
                width,
            ));
            let show_logs = matches!(
                step.state,
                StepState::Running { .. } | StepState::Failed { .. }
            );
            if show_logs {
                let partial = (!step.partial.is_empty()).then_some(&step.partial);
                let mut recent: Vec<&String> = step.logs.iter().chain(partial).collect();
                let skip = recent.len().saturating_sub(LOG_LINES);
                recent.drain(..skip);
                for log in recent {
                    lines.push(fit(&format!(" => => # {log}"), width));
                }
            }
        }
        for blob in &self.blobs {
            let text = match &blob.status {
                BlobStatus::Moving { done, size } => {
                    let verb = match blob.direction {
                        Direction::Pull => "Downloading",
                        Direction::Push => "Pushing",
                    };
                    format!(
                        "{}: {verb} {} {}/{}",
                        blob.short,
                        bar(*done, *size),
                        human_size(*done),
                        human_size(*size)
                    )
                }
                BlobStatus::Settled(status) => format!("{}: {status}", blob.short),
            };
            lines.push(fit(&text, width));
        }
        let room = self.size.height.saturating_sub(1).max(2);
        if lines.len() > room {
            let keep_header = !self.steps.is_empty();
            let cut = lines.len() - room;
            let from = usize::from(keep_header);
            lines.drain(from..from + cut);
        }
        lines
    }

    fn header(&self, now: SystemTime) -> String {
        let total = match (self.first_event, self.finished) {
            (Some(first), true) => elapsed(first, self.last_event.unwrap_or(first)),
            (Some(first), false) => elapsed(first, now),
            (None, _) => Duration::ZERO,
        };
        let done = self
            .steps
            .iter()
            .filter(|s| !matches!(s.state, StepState::Running { .. }))
            .count();
        let mut header = format!(
            "[+] Building {:.1}s ({done}/{})",
            total.as_secs_f64(),
            self.steps.len()
        );
        if self.finished {
            header.push_str(" FINISHED");
        }
        fit(&header, self.size.width.max(20))
    }

    /// Replaces the frame on screen with the frame for `now`.
    fn draw(&mut self, now: SystemTime, out: &mut dyn Write) -> io::Result<()> {
        let lines = self.frame(now);
        if self.drawn > 0 {
            // To column 1 of the previous frame's first line, then clear everything below.
            write!(out, "\x1b[{}F", self.drawn)?;
        }
        write!(out, "\x1b[J")?;
        for line in &lines {
            writeln!(out, "{line}")?;
        }
        self.drawn = lines.len();
        Ok(())
    }
}

fn running_time(state: StepState, at: SystemTime) -> Duration {
    match state {
        StepState::Running { since } => elapsed(since, at),
        _ => Duration::ZERO,
    }
}

/// `[=======>            ]` for `done` of `size`.
fn bar(done: u64, size: u64) -> String {
    let filled = if size == 0 {
        BAR_WIDTH
    } else {
        ((done.min(size) as f64 / size as f64) * BAR_WIDTH as f64) as usize
    };
    let mut bar = String::with_capacity(BAR_WIDTH + 2);
    bar.push('[');
    for i in 0..BAR_WIDTH {
        bar.push(match i.cmp(&filled) {
            std::cmp::Ordering::Less => '=',
            std::cmp::Ordering::Equal => '>',
            std::cmp::Ordering::Greater => ' ',
        });
    }
    bar.push(']');
    bar
}

/// `text` cut to `width` characters.
fn fit(text: &str, width: usize) -> String {
    text.chars().take(width).collect()
}

/// `left` and `right` on one line of exactly `width` characters, `left` cut if needed.
fn left_right(left: &str, right: &str, width: usize) -> String {
    let right_len = right.chars().count();
    let room = width.saturating_sub(right_len + 1);
    let left = fit(left, room);
    let pad = width - left.chars().count() - right_len;
    format!("{left}{}{right}", " ".repeat(pad))
}

impl Render for TtyRenderer {
    fn event(&mut self, event: &Event, _out: &mut dyn Write) -> io::Result<()> {
        let at = match event {
            Event::Solver(e) => {
                self.solver_event(e);
                match e {
                    SolverEvent::Started { at, .. }
                    | SolverEvent::Cached { at, .. }
                    | SolverEvent::CacheMiss { at, .. }
                    | SolverEvent::Log { at, .. }
                    | SolverEvent::Finished { at, .. }
                    | SolverEvent::Failed { at, .. }
                    | SolverEvent::Cancelled { at, .. } => Some(*at),
                    _ => None,
                }
            }
            Event::Transfer {
                direction,
                at,
                event,
            } => {
                self.transfer_event(*direction, event);
                Some(*at)
            }
        };
        if let Some(at) = at {
            self.first_event.get_or_insert(at);
            self.last_event = Some(self.last_event.map_or(at, |last| last.max(at)));
        }
        Ok(())
    }

    fn tick(&mut self, now: SystemTime, out: &mut dyn Write) -> io::Result<()> {
        self.draw(now, out)
    }

    fn finish(&mut self, now: SystemTime, out: &mut dyn Write) -> io::Result<()> {
        self.finished = true;
        self.draw(now, out)
    }

    fn tick_interval(&self) -> Option<Duration> {
        Some(REDRAW)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testdata::{self, t};
    use super::*;

    const SIZE: TerminalSize = TerminalSize {
        width: 72,
        height: 30,
    };

    fn fed(events: &[Event], size: TerminalSize) -> TtyRenderer {
        let mut r = TtyRenderer::new(size);
        for e in events {
            r.event(e, &mut io::sink()).unwrap();
        }
        r
    }

    #[test]
    fn a_running_build_shows_timers_and_the_last_output_lines() {
        let r = fed(&testdata::build_events_until(1_000), SIZE);
        insta::assert_snapshot!(r.frame(t(1_000)).join("\n"));
    }

    #[test]
    fn a_finished_build_freezes_the_timer_and_keeps_the_failed_steps_output() {
        let mut r = fed(&testdata::build_events(), SIZE);
        r.finished = true;
        insta::assert_snapshot!(r.frame(t(9_999)).join("\n"));
    }

    #[test]
    fn transfers_show_a_bar_per_blob() {
        let events = testdata::transfer_events();
        let r = fed(&events[..5], SIZE);
        insta::assert_snapshot!(r.frame(t(45)).join("\n"));
        let r = fed(&events, SIZE);
        insta::assert_snapshot!(r.frame(t(800)).join("\n"));
    }

    #[test]
    fn lines_fit_a_narrow_short_terminal() {
        let size = TerminalSize {
            width: 30,
            height: 5,
        };
        let r = fed(&testdata::build_events_until(1_000), size);
        let frame = r.frame(t(1_000));
        assert_eq!(frame.len(), 4, "{frame:#?}");
        assert!(
            frame[0].starts_with("[+] Building 1.0s (2/4)"),
            "{frame:#?}"
        );
        assert!(frame.iter().all(|l| l.chars().count() <= 30), "{frame:#?}");
    }

    #[test]
    fn redraws_replace_the_previous_frame() {
        let events = testdata::build_events_until(50);
        let mut r = fed(&events, SIZE);
        let mut out = Vec::new();
        r.tick(t(50), &mut out).unwrap();
        r.event(&testdata::build_events()[3], &mut out).unwrap();
        r.finish(t(120), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        insta::assert_snapshot!(text.replace('\x1b', "<ESC>"));
    }
}
