//! Recorded event sequences with fixed timestamps, shared by the renderer tests.

use std::str::FromStr;
use std::time::{Duration, SystemTime};

use img_solver::{LogStream, ProgressEvent as S};

use super::{Direction, Event, Render};

/// A fixed instant plus `ms` milliseconds.
pub fn t(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000) + Duration::from_millis(ms)
}

/// What `renderer` writes for `events`, then for the display ending at [`t`]`(10_000)`.
pub fn render(mut renderer: impl Render, events: &[Event]) -> String {
    let mut out = Vec::new();
    for event in events {
        renderer.event(event, &mut out).unwrap();
    }
    renderer.finish(t(10_000), &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

pub fn op(name: &str) -> img_llb::Digest {
    img_llb::Digest::of(name.as_bytes())
}

fn log(name: &str, stream: LogStream, data: &str, ms: u64) -> Event {
    Event::Solver(S::Log {
        op: op(name),
        stream,
        data: data.into(),
        at: t(ms),
    })
}

fn started(name: &str, ms: u64) -> Event {
    Event::Solver(S::Started {
        op: op(name),
        name: name.into(),
        location: None,
        at: t(ms),
    })
}

fn finished(name: &str, start_ms: u64, ms: u64) -> Event {
    Event::Solver(S::Finished {
        op: op(name),
        at: t(ms),
        duration: Duration::from_millis(ms - start_ms),
    })
}

pub const LOAD: &str = "[internal] load build definition from Dockerfile";
pub const FROM: &str = "[build 1/4] FROM docker.io/library/alpine:3.19";
pub const MAKE: &str = "[build 2/4] RUN make";
pub const TEST: &str = "[build 3/4] RUN ./test.sh";

/// A build: a step that finishes, a cached step, two parallel steps with interleaved
/// output (one line split over two chunks), one of which fails.
pub fn build_events() -> Vec<Event> {
    vec![
        started(LOAD, 0),
        finished(LOAD, 0, 20),
        Event::Solver(S::Cached {
            op: op(FROM),
            name: FROM.into(),
            location: None,
            at: t(30),
        }),
        started(MAKE, 100),
        started(TEST, 110),
        log(MAKE, LogStream::Stdout, "cc -o app main.c\n", 612),
        log(TEST, LogStream::Stdout, "running 3 tests\nok 1\n", 700),
        log(MAKE, LogStream::Stderr, "main.c:3: warning: unused", 900),
        log(MAKE, LogStream::Stderr, " variable\n", 950),
        log(TEST, LogStream::Stdout, "not ok 2", 1_200),
        finished(MAKE, 100, 1_300),
        Event::Solver(S::Failed {
            op: op(TEST),
            error: "process \"/bin/sh -c ./test.sh\" did not complete successfully: exit code: 1"
                .into(),
            at: t(1_500),
        }),
    ]
}

/// The events of the build up to `ms` milliseconds (for frames of a running build).
pub fn build_events_until(ms: u64) -> Vec<Event> {
    build_events()
        .into_iter()
        .filter(|e| match e {
            Event::Solver(
                S::Started { at, .. }
                | S::Cached { at, .. }
                | S::Log { at, .. }
                | S::Finished { at, .. }
                | S::Failed { at, .. },
            ) => *at <= t(ms),
            _ => true,
        })
        .collect()
}

pub fn blob(n: u8) -> img_registry::Digest {
    let hex: String = std::iter::repeat_n(format!("{n:x}"), 64).collect();
    img_registry::Digest::from_str(&format!("sha256:{hex}")).expect("a valid digest")
}

fn transfer(direction: Direction, ms: u64, event: img_registry::ProgressEvent) -> Event {
    Event::Transfer {
        direction,
        at: t(ms),
        event,
    }
}

/// A pull of three blobs (one already present, one retried) and a push of three (one
/// present, one mounted from another repository).
pub fn transfer_events() -> Vec<Event> {
    use img_registry::ProgressEvent as R;
    use Direction::{Pull, Push};
    vec![
        transfer(
            Pull,
            0,
            R::Exists {
                digest: blob(1),
                size: 512,
            },
        ),
        transfer(
            Pull,
            10,
            R::Started {
                digest: blob(2),
                size: 3_400_000,
            },
        ),
        transfer(
            Pull,
            12,
            R::Started {
                digest: blob(3),
                size: 120,
            },
        ),
        transfer(
            Pull,
            40,
            R::Transferred {
                digest: blob(2),
                done: 1_048_576,
                size: 3_400_000,
            },
        ),
        transfer(
            Pull,
            41,
            R::Transferred {
                digest: blob(3),
                done: 120,
                size: 120,
            },
        ),
        transfer(
            Pull,
            42,
            R::Done {
                digest: blob(3),
                size: 120,
            },
        ),
        transfer(
            Pull,
            50,
            R::Retrying {
                digest: blob(2),
                attempt: 1,
                delay: Duration::from_millis(500),
                reason: "connection reset by peer".into(),
            },
        ),
        transfer(
            Pull,
            600,
            R::Transferred {
                digest: blob(2),
                done: 3_400_000,
                size: 3_400_000,
            },
        ),
        transfer(
            Pull,
            601,
            R::Done {
                digest: blob(2),
                size: 3_400_000,
            },
        ),
        transfer(
            Push,
            700,
            R::Exists {
                digest: blob(1),
                size: 512,
            },
        ),
        transfer(
            Push,
            710,
            R::Mounted {
                digest: blob(2),
                from: "library/base".into(),
            },
        ),
        transfer(
            Push,
            720,
            R::Started {
                digest: blob(4),
                size: 2_000,
            },
        ),
        transfer(
            Push,
            730,
            R::Transferred {
                digest: blob(4),
                done: 2_000,
                size: 2_000,
            },
        ),
        transfer(
            Push,
            731,
            R::Done {
                digest: blob(4),
                size: 2_000,
            },
        ),
    ]
}
