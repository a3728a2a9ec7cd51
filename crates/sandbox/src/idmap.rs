//! uid/gid mapping of the sandbox's user namespace.
//!
//! An unprivileged caller with ranges in /etc/subuid and /etc/subgid gets container id 0 mapped
//! to itself and ids 1.. mapped to its ranges, written by the setuid `newuidmap`/`newgidmap`
//! (package uidmap): the kernel lets an unprivileged process map only its own id, so images whose
//! files belong to many users need the helpers. Without ranges only id 0 is mapped. Real root
//! needs no user namespace at all.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use crate::paths::HostPaths;

/// Errors of finding and applying an id mapping.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdMapError {
    /// A subordinate id file could not be read.
    #[error("cannot read {path}")]
    ReadSubIds {
        /// The file (/etc/subuid or /etc/subgid).
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A mapping helper could not be started.
    #[error("cannot run {program}: install the uidmap package (apt-get install uidmap)")]
    SpawnHelper {
        /// newuidmap or newgidmap.
        program: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A mapping helper refused the mapping.
    #[error("{program} {args} failed ({status}): {stderr}")]
    HelperFailed {
        /// newuidmap or newgidmap.
        program: PathBuf,
        /// Its arguments.
        args: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// Writing a map file of /proc failed.
    #[error("cannot write {path}")]
    WriteMap {
        /// The map file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// One line of a uid_map or gid_map: `count` ids from `container_id` map to `host_id`...
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    /// First id inside the namespace.
    pub container_id: u32,
    /// First id on the host.
    pub host_id: u32,
    /// Number of ids.
    pub count: u32,
}

/// A subordinate id range from /etc/subuid or /etc/subgid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubIdRange {
    /// First host id of the range.
    pub start: u32,
    /// Number of ids.
    pub count: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Kind {
    Host,
    SingleId,
    Subordinate,
}

/// How container uids and gids map to the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMapping {
    kind: Kind,
    uid_map: Vec<IdRange>,
    gid_map: Vec<IdRange>,
    /// setgroups(2) is refused: a single-id map, or a namespace whose creator denied it.
    #[serde(default)]
    setgroups_denied: bool,
}

/// What a mapping without subordinate ranges cannot do, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingLimitation {
    user: String,
}

impl fmt::Display for MappingLimitation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no subordinate id ranges for user {user} in /etc/subuid and /etc/subgid: only root \
             exists inside RUN steps, so chown to other users and images with files of other \
             owners fail; add ranges with `sudo usermod --add-subuids 100000-165535 \
             --add-subgids 100000-165535 {user}` and install the uidmap package",
            user = self.user
        )
    }
}

static LIMITATION_SHOWN: AtomicBool = AtomicBool::new(false);

impl IdMapping {
    /// No user namespace: the caller is real root and container ids are host ids.
    pub fn host() -> IdMapping {
        IdMapping {
            kind: Kind::Host,
            setgroups_denied: false,
            uid_map: vec![IdRange {
                container_id: 0,
                host_id: 0,
                count: u32::MAX,
            }],
            gid_map: vec![IdRange {
                container_id: 0,
                host_id: 0,
                count: u32::MAX,
            }],
        }
    }

    /// Container root is the caller (`uid`, `gid`) and no other id exists.
    pub fn single_id(uid: u32, gid: u32) -> IdMapping {
        IdMapping {
            kind: Kind::SingleId,
            setgroups_denied: true,
            uid_map: vec![IdRange {
                container_id: 0,
                host_id: uid,
                count: 1,
            }],
            gid_map: vec![IdRange {
                container_id: 0,
                host_id: gid,
                count: 1,
            }],
        }
    }

    /// Container root is the caller and ids from 1 on map to the subordinate ranges, in order.
    pub fn subordinate(
        uid: u32,
        gid: u32,
        subuids: &[SubIdRange],
        subgids: &[SubIdRange],
    ) -> IdMapping {
        IdMapping {
            kind: Kind::Subordinate,
            setgroups_denied: false,
            uid_map: with_ranges(uid, subuids),
            gid_map: with_ranges(gid, subgids),
        }
    }

    /// The mapping for the calling process: no user namespace for root (with the ids its
    /// namespace has: all of them for real root), subordinate ranges when /etc/subuid and
    /// /etc/subgid have some for the caller and the helpers exist, [`IdMapping::single_id`]
    /// otherwise.
    pub fn detect(paths: &HostPaths) -> Result<IdMapping, IdMapError> {
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        if uid == 0 {
            return Ok(IdMapping::namespace_root(paths));
        }
        let name = user_name(uid);
        let subuids = read_sub_ids(&paths.subuid, name.as_deref(), uid)?;
        let subgids = read_sub_ids(&paths.subgid, name.as_deref(), uid)?;
        let helpers = paths.newuidmap.exists() && paths.newgidmap.exists();
        if subuids.is_empty() || subgids.is_empty() || !helpers {
            return Ok(IdMapping::single_id(uid, gid));
        }
        Ok(IdMapping::subordinate(uid, gid, &subuids, &subgids))
    }

    /// The mapping of root: the identity in the initial user namespace; inside another user
    /// namespace (`buildah unshare`, rootlesskit, a rootless container) only the ids that
    /// namespace maps, read from /proc.
    fn namespace_root(paths: &HostPaths) -> IdMapping {
        let own = |name: &str| read_proc_map(&paths.proc.join("self").join(name));
        match (own("uid_map"), own("gid_map")) {
            (Some(uid_map), Some(gid_map)) => IdMapping {
                kind: Kind::Host,
                uid_map,
                gid_map,
                setgroups_denied: fs::read_to_string(paths.proc.join("self/setgroups"))
                    .is_ok_and(|s| s.trim() == "deny"),
            },
            _ => IdMapping::host(),
        }
    }

    /// Whether the sandbox needs a user namespace for this mapping.
    pub fn uses_user_namespace(&self) -> bool {
        self.kind != Kind::Host
    }

    /// The uid_map lines.
    pub fn uid_map(&self) -> &[IdRange] {
        &self.uid_map
    }

    /// The gid_map lines.
    pub fn gid_map(&self) -> &[IdRange] {
        &self.gid_map
    }

    /// The host uid of container uid `id`, if mapped.
    pub fn host_uid(&self, id: u32) -> Option<u32> {
        lookup(&self.uid_map, id)
    }

    /// The host gid of container gid `id`, if mapped.
    pub fn host_gid(&self, id: u32) -> Option<u32> {
        lookup(&self.gid_map, id)
    }

    /// What this mapping cannot do, if anything (only [`IdMapping::single_id`] is limited).
    pub fn limitation(&self) -> Option<MappingLimitation> {
        if self.kind != Kind::SingleId {
            return None;
        }
        let uid = self.uid_map.first().map_or(0, |r| r.host_id);
        Some(MappingLimitation {
            user: user_name(uid).unwrap_or_else(|| uid.to_string()),
        })
    }

    /// [`IdMapping::limitation`], but only the first time in this process: callers print it so
    /// that a build says it once, not once per step.
    pub fn limitation_once(&self) -> Option<MappingLimitation> {
        let limitation = self.limitation()?;
        (!LIMITATION_SHOWN.swap(true, Ordering::SeqCst)).then_some(limitation)
    }

    /// Writes the maps of the user namespace of process `pid` (which has just unshared it).
    pub(crate) fn apply(&self, pid: i32, paths: &HostPaths) -> Result<(), IdMapError> {
        match self.kind {
            Kind::Host => Ok(()),
            Kind::Subordinate => {
                // Both helpers at once: each is a setuid exec costing milliseconds per step.
                let uid = start_helper(&paths.newuidmap, pid, &self.uid_map)?;
                let gid = start_helper(&paths.newgidmap, pid, &self.gid_map);
                let uid = finish_helper(uid);
                let gid = gid.and_then(finish_helper);
                uid.and(gid)
            }
            Kind::SingleId => {
                let dir = paths.proc.join(pid.to_string());
                // An unprivileged process may write gid_map only after denying setgroups(2),
                // which would otherwise let it drop groups that deny it access (CVE-2014-8989).
                write_map(&dir.join("setgroups"), "deny")?;
                write_map(&dir.join("uid_map"), &map_text(&self.uid_map))?;
                write_map(&dir.join("gid_map"), &map_text(&self.gid_map))
            }
        }
    }

    /// Whether setgroups(2) is denied in the namespace.
    pub(crate) fn setgroups_denied(&self) -> bool {
        self.setgroups_denied
    }
}

/// Parses a /proc/<pid>/uid_map-format file; `None` when it cannot be read or is empty.
fn read_proc_map(path: &Path) -> Option<Vec<IdRange>> {
    let text = fs::read_to_string(path).ok()?;
    let map = parse_proc_map(&text);
    (!map.is_empty()).then_some(map)
}

fn parse_proc_map(text: &str) -> Vec<IdRange> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace().map(str::parse::<u32>);
            Some(IdRange {
                container_id: f.next()?.ok()?,
                host_id: f.next()?.ok()?,
                count: f.next()?.ok()?,
            })
        })
        .collect()
}

fn with_ranges(id: u32, ranges: &[SubIdRange]) -> Vec<IdRange> {
    let mut map = vec![IdRange {
        container_id: 0,
        host_id: id,
        count: 1,
    }];
    let mut next = 1u32;
    for range in ranges {
        map.push(IdRange {
            container_id: next,
            host_id: range.start,
            count: range.count,
        });
        next = next.saturating_add(range.count);
    }
    map
}

fn lookup(map: &[IdRange], id: u32) -> Option<u32> {
    map.iter().find_map(|r| {
        let offset = id.checked_sub(r.container_id)?;
        (offset < r.count).then(|| r.host_id + offset)
    })
}

fn map_text(map: &[IdRange]) -> String {
    map.iter()
        .map(|r| format!("{} {} {}\n", r.container_id, r.host_id, r.count))
        .collect()
}

fn write_map(path: &Path, text: &str) -> Result<(), IdMapError> {
    fs::write(path, text).map_err(|source| IdMapError::WriteMap {
        path: path.to_path_buf(),
        source,
    })
}

struct RunningHelper {
    program: PathBuf,
    args: Vec<String>,
    child: std::process::Child,
}

fn start_helper(program: &Path, pid: i32, map: &[IdRange]) -> Result<RunningHelper, IdMapError> {
    let mut args = vec![pid.to_string()];
    for r in map {
        args.extend([
            r.container_id.to_string(),
            r.host_id.to_string(),
            r.count.to_string(),
        ]);
    }
    let child = Command::new(program)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|source| IdMapError::SpawnHelper {
            program: program.to_path_buf(),
            source,
        })?;
    Ok(RunningHelper {
        program: program.to_path_buf(),
        args,
        child,
    })
}

fn finish_helper(helper: RunningHelper) -> Result<(), IdMapError> {
    let RunningHelper {
        program,
        args,
        child,
    } = helper;
    let output = child
        .wait_with_output()
        .map_err(|source| IdMapError::SpawnHelper {
            program: program.clone(),
            source,
        })?;
    if output.status.success() {
        return Ok(());
    }
    Err(IdMapError::HelperFailed {
        program,
        args: args.join(" "),
        status: output.status.to_string(),
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
    })
}

/// The login name of `uid` on the host, if it has one.
pub(crate) fn user_name(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
}

/// The ranges of /etc/subuid-format `path` that belong to the user `name` or `uid`; a missing
/// file has none.
pub(crate) fn read_sub_ids(
    path: &Path,
    name: Option<&str>,
    uid: u32,
) -> Result<Vec<SubIdRange>, IdMapError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(IdMapError::ReadSubIds {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    Ok(parse_sub_ids(&text, name, uid))
}

fn parse_sub_ids(text: &str, name: Option<&str>, uid: u32) -> Vec<SubIdRange> {
    let uid_text = uid.to_string();
    text.lines()
        .filter_map(|line| {
            let mut fields = line.trim().split(':');
            let owner = fields.next()?;
            let start = fields.next()?.parse().ok()?;
            let count = fields.next()?.parse().ok()?;
            let mine = owner == uid_text || Some(owner) == name;
            (mine && count > 0).then_some(SubIdRange { start, count })
        })
        .collect()
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
    fn subordinate_maps_root_to_caller_and_rest_to_ranges() {
        let m = IdMapping::subordinate(
            1000,
            1000,
            &[
                SubIdRange {
                    start: 100000,
                    count: 10,
                },
                SubIdRange {
                    start: 500000,
                    count: 5,
                },
            ],
            &[SubIdRange {
                start: 100000,
                count: 65536,
            }],
        );
        assert_eq!(m.host_uid(0), Some(1000));
        assert_eq!(m.host_uid(1), Some(100000));
        assert_eq!(m.host_uid(10), Some(100009));
        assert_eq!(m.host_uid(11), Some(500000));
        assert_eq!(m.host_uid(16), None);
        assert_eq!(m.host_gid(1000), Some(100999));
        assert_eq!(
            map_text(m.uid_map()),
            "0 1000 1\n1 100000 10\n11 500000 5\n"
        );
        assert!(m.limitation().is_none());
    }

    #[test]
    fn single_id_is_limited_and_says_so_once() {
        let m = IdMapping::single_id(4242, 4242);
        assert_eq!(m.host_uid(0), Some(4242));
        assert_eq!(m.host_uid(1), None);
        let text = m.limitation().expect("limited").to_string();
        assert!(text.contains("usermod --add-subuids"), "{text}");
        assert!(m.limitation_once().is_some());
        assert!(m.limitation_once().is_none());
        assert!(m.setgroups_denied());
    }

    #[test]
    fn root_of_a_user_namespace_has_only_its_mapped_ids() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let own = tmp.path().join("self");
        fs::create_dir(&own).expect("mkdir");
        fs::write(own.join("uid_map"), "         0       1000          1\n").expect("write");
        fs::write(
            own.join("gid_map"),
            "         0       1000          1\n         1     100000      65536\n",
        )
        .expect("write");
        let parsed = parse_proc_map(&fs::read_to_string(own.join("gid_map")).expect("read"));
        assert_eq!(
            parsed[1],
            IdRange {
                container_id: 1,
                host_id: 100000,
                count: 65536
            }
        );
        fs::write(own.join("setgroups"), "deny\n").expect("write");
        let paths = HostPaths {
            proc: tmp.path().to_path_buf(),
            ..HostPaths::default()
        };
        let m = IdMapping::namespace_root(&paths);
        assert!(m.setgroups_denied());
        assert!(!m.uses_user_namespace());
        assert_eq!(m.host_uid(0), Some(1000));
        assert_eq!(m.host_uid(1000), None);
        assert_eq!(m.host_gid(5), Some(100004));
        assert_eq!(
            parse_proc_map("0 0 4294967295\n"),
            IdMapping::host().uid_map
        );
    }

    #[test]
    fn host_mapping_is_identity_without_namespace() {
        let m = IdMapping::host();
        assert!(!m.uses_user_namespace());
        assert_eq!(m.host_uid(1000), Some(1000));
    }
}
