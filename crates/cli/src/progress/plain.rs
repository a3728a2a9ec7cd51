//! BuildKit's plain progress format: one line per event, each prefixed with the step's number
//! in order of first appearance (`#3 [build 2/4] RUN make`, `#3 0.512 <log line>`,
//! `#3 CACHED`, `#3 DONE 1.2s`, `#3 ERROR: ...`), a blank line whenever the output switches
//! to another step, and Docker's per-layer lines for blob transfers
//! (`0123456789ab: Download complete`).

use std::collections::HashMap;
use std::io::{self, Write};
use std::time::SystemTime;

use img_solver::ProgressEvent as SolverEvent;

use super::format::{elapsed, transfer_status};
use super::{Event, Render};

/// Renders events as plain lines.
#[derive(Debug, Default)]
pub struct PlainRenderer {
    /// `--debug`: a cache miss lists every change, not only the summary.
    debug: bool,
    steps: HashMap<img_llb::Digest, Step>,
    next_number: usize,
    /// Who wrote the previous line, to separate blocks with a blank line as BuildKit does.
    last_block: Option<Block>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Step(usize),
    Transfers,
}

#[derive(Debug)]
struct Step {
    number: usize,
    started: Option<SystemTime>,
    /// Output after the last newline, printed when the line completes or the step ends.
    partial: String,
    partial_at: Option<SystemTime>,
}

impl PlainRenderer {
    /// A renderer that, with `debug`, lists every change behind a cache miss.
    pub fn with_debug(debug: bool) -> Self {
        PlainRenderer {
            debug,
            ..PlainRenderer::default()
        }
    }

    fn step(&mut self, op: img_llb::Digest) -> &mut Step {
        let next = &mut self.next_number;
        self.steps.entry(op).or_insert_with(|| {
            *next += 1;
            Step {
                number: *next,
                started: None,
                partial: String::new(),
                partial_at: None,
            }
        })
    }

    fn line(&mut self, block: Block, text: &str, out: &mut dyn Write) -> io::Result<()> {
        if self.last_block.is_some_and(|last| last != block) {
            writeln!(out)?;
        }
        self.last_block = Some(block);
        writeln!(out, "{text}")
    }

    /// Prints the complete lines of a step's output; with `all`, the incomplete tail too.
    fn flush_log(&mut self, op: img_llb::Digest, all: bool, out: &mut dyn Write) -> io::Result<()> {
        let step = self.step(op);
        let number = step.number;
        let started = step.started;
        let at = step.partial_at;
        let mut lines = Vec::new();
        while let Some(end) = step.partial.find('\n') {
            let line: String = step.partial.drain(..=end).collect();
            lines.push(line);
        }
        if all && !step.partial.is_empty() {
            lines.push(std::mem::take(&mut step.partial));
        }
        let offset = match (started, at) {
            (Some(started), Some(at)) => elapsed(started, at).as_secs_f64(),
            _ => 0.0,
        };
        for line in lines {
            let line = line.trim_end_matches('\n').trim_end_matches('\r');
            self.line(
                Block::Step(number),
                &format!("#{number} {offset:.3} {line}"),
                out,
            )?;
        }
        Ok(())
    }

    fn solver_event(&mut self, event: &SolverEvent, out: &mut dyn Write) -> io::Result<()> {
        let op = event.op();
        match event {
            SolverEvent::Started { name, at, .. } => {
                let step = self.step(op);
                step.started = Some(*at);
                let n = step.number;
                self.line(Block::Step(n), &format!("#{n} {name}"), out)
            }
            SolverEvent::Cached { name, .. } => {
                let n = self.step(op).number;
                self.line(Block::Step(n), &format!("#{n} {name}"), out)?;
                self.line(Block::Step(n), &format!("#{n} CACHED"), out)
            }
            SolverEvent::CacheMiss {
                summary, changes, ..
            } => {
                let n = self.step(op).number;
                self.line(Block::Step(n), &format!("#{n} cache miss: {summary}"), out)?;
                if self.debug {
                    for line in changes.iter().flat_map(change_lines) {
                        self.line(Block::Step(n), &format!("#{n}   {line}"), out)?;
                    }
                }
                Ok(())
            }
            SolverEvent::Log { data, at, .. } => {
                let step = self.step(op);
                step.partial.push_str(data);
                step.partial_at = Some(*at);
                if step.started.is_none() {
                    step.started = Some(*at);
                }
                self.flush_log(op, false, out)
            }
            SolverEvent::Finished { duration, .. } => {
                self.flush_log(op, true, out)?;
                let n = self.step(op).number;
                let secs = duration.as_secs_f64();
                self.line(Block::Step(n), &format!("#{n} DONE {secs:.1}s"), out)
            }
            SolverEvent::Failed { error, .. } => {
                self.flush_log(op, true, out)?;
                let n = self.step(op).number;
                self.line(Block::Step(n), &format!("#{n} ERROR: {error}"), out)
            }
            SolverEvent::Cancelled { .. } => {
                self.flush_log(op, true, out)?;
                let n = self.step(op).number;
                self.line(Block::Step(n), &format!("#{n} CANCELED"), out)
            }
            _ => Ok(()),
        }
    }
}

/// Every change behind a miss, for `--debug`: changed files one per line under their input.
fn change_lines(change: &img_solver::CacheChange) -> Vec<String> {
    match change {
        img_solver::CacheChange::Files {
            input,
            paths,
            total,
        } if !paths.is_empty() => {
            let mut lines = vec![format!("files from {input}: {total} changed")];
            lines.extend(paths.iter().map(|p| format!("  {} {}", p.path, p.change)));
            if *total > paths.len() {
                lines.push(format!("  and {} more", total - paths.len()));
            }
            lines
        }
        other => vec![other.to_string()],
    }
}

impl Render for PlainRenderer {
    fn event(&mut self, event: &Event, out: &mut dyn Write) -> io::Result<()> {
        match event {
            Event::Solver(event) => self.solver_event(event, out),
            Event::Transfer {
                direction, event, ..
            } => match transfer_status(*direction, event) {
                Some((digest, status)) => {
                    let short = super::format::short_digest(&digest);
                    self.line(Block::Transfers, &format!("{short}: {status}"), out)
                }
                None => Ok(()),
            },
        }
    }

    fn finish(&mut self, _now: SystemTime, out: &mut dyn Write) -> io::Result<()> {
        let mut pending: Vec<(usize, img_llb::Digest)> = self
            .steps
            .iter()
            .filter(|(_, s)| !s.partial.is_empty())
            .map(|(op, s)| (s.number, *op))
            .collect();
        pending.sort();
        for (_, op) in pending {
            self.flush_log(op, true, out)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testdata;
    use super::*;

    fn render(events: &[Event]) -> String {
        testdata::render(PlainRenderer::default(), events)
    }

    #[test]
    fn build_events() {
        insta::assert_snapshot!(render(&testdata::build_events()));
    }

    #[test]
    fn pull_and_push_events() {
        insta::assert_snapshot!(render(&testdata::transfer_events()));
    }

    fn miss_events() -> Vec<Event> {
        use img_solver::{CacheChange, ChangeKind, PathChange};
        let op = img_llb::Digest::of(b"copy");
        let path = |p: &str, change| PathChange {
            path: p.into(),
            change,
        };
        vec![
            Event::Solver(SolverEvent::Started {
                op,
                name: "[build 2/3] COPY src /src".into(),
                location: None,
                at: testdata::t(0),
            }),
            Event::Solver(SolverEvent::CacheMiss {
                op,
                summary: "src/b.c changed (and 1 more file); build arg or ENV V changed".into(),
                changes: vec![
                    CacheChange::Files {
                        input: "context".into(),
                        paths: vec![
                            path("src/b.c", ChangeKind::Modified),
                            path("src/new.c", ChangeKind::Added),
                        ],
                        total: 2,
                    },
                    CacheChange::Env {
                        name: "V".into(),
                        change: ChangeKind::Modified,
                    },
                ],
                at: testdata::t(10),
            }),
        ]
    }

    #[test]
    fn a_cache_miss_is_one_line_and_every_change_with_debug() {
        assert_eq!(
            render(&miss_events()),
            "#1 [build 2/3] COPY src /src\n\
             #1 cache miss: src/b.c changed (and 1 more file); build arg or ENV V changed\n"
        );
        let debug = testdata::render(PlainRenderer::with_debug(true), &miss_events());
        assert_eq!(
            debug,
            "#1 [build 2/3] COPY src /src\n\
             #1 cache miss: src/b.c changed (and 1 more file); build arg or ENV V changed\n\
             #1   files from context: 2 changed\n\
             #1     src/b.c changed\n\
             #1     src/new.c added\n\
             #1   build arg or ENV V changed\n"
        );
    }

    #[test]
    fn output_without_a_final_newline_is_printed_when_the_display_ends() {
        let op = img_llb::Digest::of(b"x");
        let events = [Event::Solver(SolverEvent::Log {
            op,
            stream: img_solver::LogStream::Stdout,
            data: "a\nb".into(),
            at: testdata::t(250),
        })];
        assert_eq!(render(&events), "#1 0.000 a\n#1 0.000 b\n");
    }
}
