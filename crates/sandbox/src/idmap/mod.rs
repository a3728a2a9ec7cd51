//! uid/gid mapping of a step's user namespace.
//!
//! Every step runs in a user namespace of its own, except with [`IdMapping::host`]:
//!
//! - **Real root** ([`IdMapping::detect`] as uid 0 of the initial namespace): the step's ids
//!   0..65535 are host ids of a subordinate range (root's /etc/subuid and /etc/subgid entries,
//!   else [`DEFAULT_ROOT_RANGE_START`]), so a step is never the host's root: the kernel's
//!   checks for the host's uid 0 (sysctls, files owned by root, cgroupfs) do not pass for it,
//!   and its capabilities hold only in its namespace. Its filesystems are idmapped mounts
//!   (`mount_setattr`, Linux 5.12; over overlayfs layers 5.19) through which files keep the ids
//!   they have on disk: a file the step makes as its root is owned by 0 in the snapshot, so
//!   the layer exporter and everything else that reads snapshots is unchanged, and so are
//!   state directories made before. Where the kernel cannot idmap a filesystem (an overlayfs
//!   state directory, as in a container's root filesystem), the step runs with the host's ids
//!   in its own user namespace instead, and the caller is told once.
//! - **uid 0 of another user namespace** (a Kubernetes pod with `hostUsers: false`, `buildah
//!   unshare`, img re-executed by [`crate::reexec_in_user_namespace`]): a nested namespace
//!   with the same ids, its maps written directly (uid 0 there has CAP_SETUID and CAP_SETGID
//!   over its own namespace), no helper and no capability beyond a container's default set.
//! - **An ordinary user**: container id 0 maps to the user and ids 1.. to the user's
//!   subordinate ranges, written by the setuid `newuidmap`/`newgidmap` (package uidmap): the
//!   kernel lets an unprivileged process map only its own id. Without ranges, or when the
//!   helpers are refused (a pod with `allowPrivilegeEscalation: false`), only id 0 is mapped.

mod helpers;
mod subid;

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use crate::paths::HostPaths;
pub(crate) use helpers::write_map;
use helpers::{finish_helper, map_text, start_helper, write_maps};
pub(crate) use subid::{read_sub_ids, user_name};
pub use subid::{DEFAULT_ROOT_RANGE_START, ROOT_RANGE_COUNT};

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

impl IdMapError {
    /// Whether this is the kernel refusing a setuid helper its privileges (no_new_privs, as
    /// with a pod's `allowPrivilegeEscalation: false`, or missing capabilities): nothing was
    /// written, and a one-id mapping still works.
    pub(crate) fn is_helper_refused(&self) -> bool {
        matches!(self, IdMapError::HelperFailed { stderr, .. } if stderr.contains("Operation not permitted"))
    }
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Kind {
    Host,
    SingleId,
    Subordinate,
    Nested,
    Isolated,
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

/// What a mapping cannot do, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingLimitation {
    user: String,
    cause: LimitCause,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum LimitCause {
    NoRanges,
    HelperRefused(String),
    OneIdNamespace,
}

impl fmt::Display for MappingLimitation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let user = &self.user;
        let cost = "only root exists inside RUN steps, so chown to other users and images with \
                    files of other owners fail";
        match &self.cause {
            LimitCause::NoRanges => write!(
                f,
                "no subordinate id ranges for user {user} in /etc/subuid and /etc/subgid: {cost}; \
                 add ranges with `sudo usermod --add-subuids 100000-165535 --add-subgids \
                 100000-165535 {user}` and install the uidmap package"
            ),
            LimitCause::HelperRefused(detail) => write!(
                f,
                "newuidmap was refused ({detail}): {cost}; in a container, allow the setuid \
                 helper (Kubernetes: `allowPrivilegeEscalation: true`) or run img as uid 0 of a \
                 user namespace (Kubernetes: `hostUsers: false` with `runAsUser: 0`)"
            ),
            LimitCause::OneIdNamespace => {
                write!(f, "the user namespace img runs in maps one id only: {cost}")
            }
        }
    }
}

static LIMITATION_SHOWN: AtomicBool = AtomicBool::new(false);

fn full_range() -> Vec<IdRange> {
    vec![IdRange {
        container_id: 0,
        host_id: 0,
        count: u32::MAX,
    }]
}

fn ranges_from(ranges: &[SubIdRange]) -> Vec<IdRange> {
    let mut next = 0u32;
    ranges
        .iter()
        .map(|r| {
            let line = IdRange {
                container_id: next,
                host_id: r.start,
                count: r.count,
            };
            next = next.saturating_add(r.count);
            line
        })
        .collect()
}

/// The identity over the container ids of `map`: a nested namespace with the same ids.
fn same_ids(map: &[IdRange]) -> Vec<IdRange> {
    map.iter()
        .map(|r| IdRange {
            container_id: r.container_id,
            host_id: r.container_id,
            count: r.count,
        })
        .collect()
}

impl IdMapping {
    /// No user namespace: container ids are the caller's ids, with the caller's privileges.
    /// Only for callers that run no steps, or that mean a step to have them.
    pub fn host() -> IdMapping {
        IdMapping {
            kind: Kind::Host,
            setgroups_denied: false,
            uid_map: full_range(),
            gid_map: full_range(),
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

    /// Real root's steps: container ids 0.. map to the host ids of `subuids` and `subgids`,
    /// through idmapped mounts (see the module documentation).
    pub fn isolated(subuids: &[SubIdRange], subgids: &[SubIdRange]) -> IdMapping {
        IdMapping {
            kind: Kind::Isolated,
            setgroups_denied: false,
            uid_map: ranges_from(subuids),
            gid_map: ranges_from(subgids),
        }
    }

    /// The mapping for the calling process: [`IdMapping::isolated`] for real root (root's
    /// subordinate ranges or the default one); for uid 0 of another user namespace, a nested
    /// namespace with that namespace's ids; for an ordinary user, its subordinate ranges when
    /// /etc/subuid and /etc/subgid have some and the helpers exist, else
    /// [`IdMapping::single_id`].
    pub fn detect(paths: &HostPaths) -> Result<IdMapping, IdMapError> {
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        if uid == 0 {
            return match IdMapping::namespace_root(paths) {
                Some(nested) => Ok(nested),
                None => {
                    let (uids, gids) = subid::root_ranges(paths)?;
                    Ok(IdMapping::isolated(&uids, &gids))
                }
            };
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

    /// Root of a user namespace other than the initial one (uid_map not `0 0 4294967295`):
    /// a nested namespace with the ids this one has, read from /proc. `None` for real root
    /// (or when /proc cannot tell).
    fn namespace_root(paths: &HostPaths) -> Option<IdMapping> {
        let own = |name: &str| read_proc_map(&paths.proc.join("self").join(name));
        let (uid_map, gid_map) = (own("uid_map")?, own("gid_map")?);
        if uid_map == full_range() && gid_map == full_range() {
            return None;
        }
        Some(IdMapping {
            kind: Kind::Nested,
            uid_map: same_ids(&uid_map),
            gid_map: same_ids(&gid_map),
            setgroups_denied: fs::read_to_string(paths.proc.join("self/setgroups"))
                .is_ok_and(|s| s.trim() == "deny"),
        })
    }

    /// Whether the sandbox makes a user namespace for this mapping (all but
    /// [`IdMapping::host`]).
    pub fn uses_user_namespace(&self) -> bool {
        self.kind != Kind::Host
    }

    /// Whether the step's ids are real root's subordinate range, with idmapped mounts.
    pub(crate) fn is_isolated(&self) -> bool {
        self.kind == Kind::Isolated
    }

    /// Whether the maps of the step's namespace are written by the caller (all namespaces but
    /// real root's, whose init writes them itself).
    pub(crate) fn parent_writes_maps(&self) -> bool {
        !matches!(self.kind, Kind::Host | Kind::Isolated)
    }

    /// The uid_map lines written for the step's user namespace (relative to the caller's).
    pub fn uid_map(&self) -> &[IdRange] {
        &self.uid_map
    }

    /// The gid_map lines written for the step's user namespace.
    pub fn gid_map(&self) -> &[IdRange] {
        &self.gid_map
    }

    /// The uid that files of container uid `id` have as the caller sees them, if `id` exists
    /// in the step (with idmapped mounts, the container id itself).
    pub fn host_uid(&self, id: u32) -> Option<u32> {
        self.file_id(&self.uid_map, id)
    }

    /// The gid that files of container gid `id` have as the caller sees them, if mapped.
    pub fn host_gid(&self, id: u32) -> Option<u32> {
        self.file_id(&self.gid_map, id)
    }

    fn file_id(&self, map: &[IdRange], id: u32) -> Option<u32> {
        let host = lookup(map, id)?;
        Some(if self.kind == Kind::Isolated {
            id
        } else {
            host
        })
    }

    /// What this mapping cannot do, if anything: one id only.
    pub fn limitation(&self) -> Option<MappingLimitation> {
        let ids: u64 = self.uid_map.iter().map(|r| u64::from(r.count)).sum();
        let cause = match self.kind {
            Kind::SingleId => LimitCause::NoRanges,
            Kind::Nested if ids == 1 => LimitCause::OneIdNamespace,
            _ => return None,
        };
        let uid = self.uid_map.first().map_or(0, |r| r.host_id);
        Some(MappingLimitation {
            user: user_name(uid).unwrap_or_else(|| uid.to_string()),
            cause,
        })
    }

    /// [`IdMapping::limitation`], but only the first time in this process: callers print it so
    /// that a build says it once, not once per step.
    pub fn limitation_once(&self) -> Option<MappingLimitation> {
        let limitation = self.limitation()?;
        (!LIMITATION_SHOWN.swap(true, Ordering::SeqCst)).then_some(limitation)
    }

    /// Writes the maps of the user namespace of process `pid` (which has just unshared it).
    /// When the uidmap helpers are refused (`newuidmap: write to uid_map failed: Operation
    /// not permitted`), writes the one-id mapping instead and returns it with the limitation
    /// that costs; otherwise returns `None`.
    pub(crate) fn apply(
        &self,
        pid: i32,
        paths: &HostPaths,
    ) -> Result<Option<(IdMapping, MappingLimitation)>, IdMapError> {
        match self.kind {
            Kind::Host | Kind::Isolated => Ok(None),
            Kind::Subordinate => {
                // Both helpers at once: each is a setuid exec costing milliseconds per step.
                let uid = start_helper(&paths.newuidmap, pid, &self.uid_map)?;
                let gid = start_helper(&paths.newgidmap, pid, &self.gid_map);
                let uid = finish_helper(uid);
                let gid = gid.and_then(finish_helper);
                match (uid, gid) {
                    (Ok(()), Ok(())) => Ok(None),
                    // Nothing was written: the one-id mapping still can be.
                    (Err(e), Err(g)) if e.is_helper_refused() && g.is_helper_refused() => {
                        let own = self.uid_map[0].host_id;
                        let single = IdMapping::single_id(own, self.gid_map[0].host_id);
                        single.apply(pid, paths)?;
                        let detail = match &e {
                            IdMapError::HelperFailed { stderr, .. } => stderr.clone(),
                            other => other.to_string(),
                        };
                        let limitation = MappingLimitation {
                            user: user_name(own).unwrap_or_else(|| own.to_string()),
                            cause: LimitCause::HelperRefused(detail),
                        };
                        Ok(Some((single, limitation)))
                    }
                    (uid, gid) => uid.and(gid).map(|()| None),
                }
            }
            // An unprivileged process may write gid_map only after denying setgroups(2),
            // which would otherwise let it drop groups that deny it access (CVE-2014-8989).
            Kind::SingleId => {
                write_maps(&paths.proc, pid, &self.uid_map, &self.gid_map, true).map(|()| None)
            }
            Kind::Nested => {
                write_maps(&paths.proc, pid, &self.uid_map, &self.gid_map, false).map(|()| None)
            }
        }
    }

    /// The text of this mapping's uid_map and gid_map files.
    pub(crate) fn map_texts(&self) -> (String, String) {
        (map_text(&self.uid_map), map_text(&self.gid_map))
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let m = IdMapping::namespace_root(&paths).expect("not the initial namespace");
        assert!(m.setgroups_denied());
        assert!(m.uses_user_namespace() && m.parent_writes_maps());
        // A nested namespace with the same ids: files keep the ids they have here.
        assert_eq!(m.host_uid(0), Some(0));
        assert_eq!(m.host_uid(1000), None);
        assert_eq!(m.host_gid(5), Some(5));
        assert_eq!(
            m.map_texts(),
            ("0 0 1\n".into(), "0 0 1\n1 1 65536\n".into())
        );
        assert!(m.limitation().is_some(), "one uid only");
        fs::write(own.join("uid_map"), "0 0 4294967295\n").expect("write");
        fs::write(own.join("gid_map"), "0 0 4294967295\n").expect("write");
        assert_eq!(IdMapping::namespace_root(&paths), None, "real root");
    }

    #[test]
    fn real_roots_steps_get_a_subordinate_range_and_keep_file_ids() {
        let range = [SubIdRange {
            start: 1_000_000_000,
            count: 65536,
        }];
        let m = IdMapping::isolated(&range, &range);
        assert!(m.is_isolated() && !m.parent_writes_maps());
        assert_eq!(m.map_texts().0, "0 1000000000 65536\n");
        assert_eq!(m.host_uid(1000), Some(1000));
        assert_eq!(m.host_uid(65536), None);
        assert!(m.limitation().is_none());
    }

    #[test]
    fn host_mapping_is_identity_without_namespace() {
        let m = IdMapping::host();
        assert!(!m.uses_user_namespace());
        assert_eq!(m.host_uid(1000), Some(1000));
    }
}
