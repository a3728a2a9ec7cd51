//! One JSON object per event and line, for tools. Solver events use the solver's own
//! serialization (`{"event":"started","op":...}`); transfer events use the same shape with
//! `blob_*` event names, a `direction` and a digest.

use std::io::{self, Write};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::{Direction, Event, Render};

/// Renders events as JSON lines.
#[derive(Debug, Default)]
pub struct RawJsonRenderer;

// The variant names are the JSON event names.
#[allow(clippy::enum_variant_names)]
#[derive(Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum TransferJson<'a> {
    BlobStarted {
        direction: Direction,
        digest: String,
        size: u64,
        at: SystemTime,
    },
    BlobProgress {
        direction: Direction,
        digest: String,
        done: u64,
        size: u64,
        at: SystemTime,
    },
    BlobDone {
        direction: Direction,
        digest: String,
        size: u64,
        at: SystemTime,
    },
    BlobExists {
        direction: Direction,
        digest: String,
        size: u64,
        at: SystemTime,
    },
    BlobMounted {
        direction: Direction,
        digest: String,
        from: &'a str,
        at: SystemTime,
    },
    BlobRetrying {
        direction: Direction,
        digest: String,
        attempt: u32,
        delay: Duration,
        reason: &'a str,
        at: SystemTime,
    },
}

fn transfer_json(
    direction: Direction,
    at: SystemTime,
    event: &img_registry::ProgressEvent,
) -> Option<TransferJson<'_>> {
    use img_registry::ProgressEvent as E;
    Some(match event {
        E::Started { digest, size } => TransferJson::BlobStarted {
            direction,
            digest: digest.to_string(),
            size: *size,
            at,
        },
        E::Transferred { digest, done, size } => TransferJson::BlobProgress {
            direction,
            digest: digest.to_string(),
            done: *done,
            size: *size,
            at,
        },
        E::Done { digest, size } => TransferJson::BlobDone {
            direction,
            digest: digest.to_string(),
            size: *size,
            at,
        },
        E::Exists { digest, size } => TransferJson::BlobExists {
            direction,
            digest: digest.to_string(),
            size: *size,
            at,
        },
        E::Mounted { digest, from } => TransferJson::BlobMounted {
            direction,
            digest: digest.to_string(),
            from,
            at,
        },
        E::Retrying {
            digest,
            attempt,
            delay,
            reason,
        } => TransferJson::BlobRetrying {
            direction,
            digest: digest.to_string(),
            attempt: *attempt,
            delay: *delay,
            reason,
            at,
        },
        _ => return None,
    })
}

impl Render for RawJsonRenderer {
    fn event(&mut self, event: &Event, out: &mut dyn Write) -> io::Result<()> {
        let line = match event {
            Event::Solver(event) => event.to_json_line(),
            Event::Transfer {
                direction,
                at,
                event,
            } => match transfer_json(*direction, *at, event) {
                Some(json) => serde_json::to_string(&json).map_err(io::Error::other)?,
                None => return Ok(()),
            },
        };
        writeln!(out, "{line}")
    }
}

#[cfg(test)]
mod tests {
    use super::super::testdata;
    use super::*;

    fn render(events: &[Event]) -> String {
        testdata::render(RawJsonRenderer, events)
    }

    #[test]
    fn build_events() {
        insta::assert_snapshot!(render(&testdata::build_events()));
    }

    #[test]
    fn transfer_events() {
        insta::assert_snapshot!(render(&testdata::transfer_events()));
    }

    #[test]
    fn a_cache_miss_carries_its_changes_as_fields() {
        let event = img_solver::ProgressEvent::CacheMiss {
            op: img_llb::Digest::of(b"op"),
            summary: "base image alpine changed".into(),
            changes: vec![img_solver::CacheChange::Env {
                name: "V".into(),
                change: img_solver::ChangeKind::Added,
            }],
            at: testdata::t(0),
        };
        let text = render(&[Event::Solver(event.clone())]);
        let json: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(json["event"], "cache_miss");
        assert_eq!(json["summary"], "base image alpine changed");
        assert_eq!(json["changes"][0]["kind"], "env");
        assert_eq!(json["changes"][0]["name"], "V");
        assert_eq!(json["changes"][0]["change"], "added");
        let back: img_solver::ProgressEvent = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn every_line_is_one_json_object_that_round_trips_for_solver_events() {
        let text = render(&testdata::build_events());
        let back: Vec<img_solver::ProgressEvent> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let sent: Vec<_> = testdata::build_events()
            .into_iter()
            .map(|e| match e {
                Event::Solver(e) => e,
                Event::Transfer { .. } => unreachable!("build events are solver events"),
            })
            .collect();
        assert_eq!(back, sent);
    }
}
