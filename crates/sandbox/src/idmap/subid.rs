//! Subordinate id ranges: /etc/subuid and /etc/subgid, and the range real root's steps get.

use std::fs;
use std::io;
use std::path::Path;

use super::{IdMapError, SubIdRange};
use crate::paths::HostPaths;

/// First host id of the range RUN steps get when real root runs img and /etc/subuid and
/// /etc/subgid have no entry for root: far above the ranges `useradd` hands out to users
/// (100000 to 600100000 by default), so no user's rootless containers share ids with root's
/// steps. Moved up in steps of [`ROOT_RANGE_COUNT`] while it overlaps an entry of either file.
pub const DEFAULT_ROOT_RANGE_START: u32 = 1_000_000_000;
/// Number of ids in the default range of real root's steps (uid 0 to 65535, nobody included).
pub const ROOT_RANGE_COUNT: u32 = 65536;

/// The login name of `uid` on the host, if it has one.
pub(crate) fn user_name(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
}

fn read(path: &Path) -> Result<String, IdMapError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(IdMapError::ReadSubIds {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The ranges of /etc/subuid-format `path` that belong to the user `name` or `uid`; a missing
/// file has none.
pub(crate) fn read_sub_ids(
    path: &Path,
    name: Option<&str>,
    uid: u32,
) -> Result<Vec<SubIdRange>, IdMapError> {
    Ok(parse_sub_ids(&read(path)?, name, uid))
}

fn entries(text: &str) -> impl Iterator<Item = (&str, SubIdRange)> {
    text.lines().filter_map(|line| {
        let mut fields = line.trim().split(':');
        let owner = fields.next()?;
        let start = fields.next()?.parse().ok()?;
        let count = fields.next()?.parse().ok()?;
        (count > 0).then_some((owner, SubIdRange { start, count }))
    })
}

pub(super) fn parse_sub_ids(text: &str, name: Option<&str>, uid: u32) -> Vec<SubIdRange> {
    let uid_text = uid.to_string();
    entries(text)
        .filter(|(owner, _)| *owner == uid_text || Some(*owner) == name)
        .map(|(_, range)| range)
        .collect()
}

/// The uid and gid ranges real root's steps get: root's own entries when both files have
/// some, else [`ROOT_RANGE_COUNT`] ids from [`DEFAULT_ROOT_RANGE_START`] (or the first such
/// range above it that no entry of either file overlaps).
pub(crate) fn root_ranges(
    paths: &HostPaths,
) -> Result<(Vec<SubIdRange>, Vec<SubIdRange>), IdMapError> {
    let (subuid, subgid) = (read(&paths.subuid)?, read(&paths.subgid)?);
    let name = user_name(0);
    let uids = parse_sub_ids(&subuid, name.as_deref(), 0);
    let gids = parse_sub_ids(&subgid, name.as_deref(), 0);
    if !uids.is_empty() && !gids.is_empty() {
        return Ok((uids, gids));
    }
    let range = free_range(entries(&subuid).chain(entries(&subgid)).map(|(_, r)| r));
    Ok((vec![range], vec![range]))
}

fn free_range(taken: impl Iterator<Item = SubIdRange>) -> SubIdRange {
    let taken: Vec<SubIdRange> = taken.collect();
    let overlaps = |start: u64| {
        let end = start + u64::from(ROOT_RANGE_COUNT);
        taken.iter().any(|r| {
            let (s, e) = (u64::from(r.start), u64::from(r.start) + u64::from(r.count));
            s < end && start < e
        })
    };
    let mut start = u64::from(DEFAULT_ROOT_RANGE_START);
    while overlaps(start) && start + 2 * u64::from(ROOT_RANGE_COUNT) < u64::from(u32::MAX) {
        start += u64::from(ROOT_RANGE_COUNT);
    }
    SubIdRange {
        start: start as u32,
        count: ROOT_RANGE_COUNT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ranges_by_name_or_uid_and_skips_junk() {
        let text = "alice:100000:65536\n# comment\n1001:200000:1000\nbob:300000:65536\nbad:x:1\nalice:400000:0\n";
        assert_eq!(
            parse_sub_ids(text, Some("alice"), 1001),
            vec![
                SubIdRange {
                    start: 100000,
                    count: 65536
                },
                SubIdRange {
                    start: 200000,
                    count: 1000
                }
            ]
        );
        assert!(parse_sub_ids(text, Some("carol"), 5).is_empty());
    }

    #[test]
    fn roots_default_range_avoids_every_entry() {
        let r = |start, count| SubIdRange { start, count };
        assert_eq!(
            free_range([r(100000, 65536)].into_iter()),
            r(DEFAULT_ROOT_RANGE_START, ROOT_RANGE_COUNT)
        );
        // An entry reaching into the default range pushes it up past its end.
        let taken = [r(DEFAULT_ROOT_RANGE_START + 10, 100_000)];
        let free = free_range(taken.into_iter());
        assert_eq!(free.start, DEFAULT_ROOT_RANGE_START + 2 * ROOT_RANGE_COUNT);
    }

    #[test]
    fn root_entries_are_used_when_present() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let paths = HostPaths {
            subuid: tmp.path().join("subuid"),
            subgid: tmp.path().join("subgid"),
            ..HostPaths::default()
        };
        fs::write(&paths.subuid, "root:2000000:65536\nalice:100000:65536\n").expect("write");
        fs::write(&paths.subgid, "0:3000000:65536\n").expect("write");
        let (uids, gids) = root_ranges(&paths).expect("ranges");
        assert_eq!(uids[0].start, 2_000_000);
        assert_eq!(gids[0].start, 3_000_000);
        fs::write(&paths.subgid, "alice:100000:65536\n").expect("write");
        let (uids, gids) = root_ranges(&paths).expect("ranges");
        assert_eq!(
            (uids[0].start, gids[0].start),
            (DEFAULT_ROOT_RANGE_START, DEFAULT_ROOT_RANGE_START)
        );
    }
}
