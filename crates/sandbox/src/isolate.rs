//! Real root's step namespace: a user namespace mapped to root's subordinate range, and the
//! step's host paths as idmapped mounts of it (see [`crate::IdMapping`]).
//!
//! An idmapped mount needs CAP_SYS_ADMIN over the filesystem (the initial namespace) and the
//! user namespace whose map it applies, so the init does it while still real root, in this
//! order: a holder process unshares the new user namespace; the init writes its maps (real
//! root may map any ids), makes a detached idmapped clone of every host path the step's mounts
//! read (`open_tree` + `mount_setattr`), joins the namespace with `setns` and becomes its root,
//! and lets the holder go. pid 1 later attaches each clone over its own path in the step's
//! private mount namespace, so the mount plan (overlay options, bind sources) is unchanged.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Gid, Pid, Uid};

use crate::idmap::{write_map, IdMapping};
use crate::mount_api;
use crate::protocol::{ChildFailure, SetupStep};
use crate::spec::{Rootfs, SandboxSpec, StepMount};

/// A detached idmapped clone of the mount at `source`, to be attached over `source`.
#[derive(Debug)]
pub(crate) struct IdmappedTree {
    pub source: PathBuf,
    pub fd: OwnedFd,
}

/// Why steps run with the host's ids: a path the kernel would not idmap.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct NotIsolated {
    pub path: PathBuf,
    pub errno: i32,
}

/// The host paths a step's mounts read, with whether their mounts below count: the root
/// directory or the overlay's layers (the upper and work directories through their common
/// parent: overlayfs wants them on one mount), and the sources of binds. Parents come first.
pub(crate) fn sources(spec: &SandboxSpec) -> Vec<(PathBuf, bool)> {
    let mut sources: Vec<(PathBuf, bool)> = Vec::new();
    match &spec.rootfs {
        Rootfs::Directory(root) => sources.push((root.clone(), false)),
        Rootfs::Mounted { mounts, .. } => {
            for m in mounts {
                let (flags, data) = crate::mount_plan::parse_options(&m.options);
                if m.fstype == "overlay" {
                    sources.extend(overlay_paths(&data).into_iter().map(|p| (p, false)));
                } else if flags.contains(nix::mount::MsFlags::MS_BIND) {
                    let recursive = flags.contains(nix::mount::MsFlags::MS_REC);
                    sources.push((m.source.clone(), recursive));
                }
            }
        }
    }
    for mount in &spec.mounts {
        match mount {
            StepMount::Bind { source, .. } | StepMount::Cache { source, .. } => {
                sources.push((source.clone(), true))
            }
            StepMount::SshAgent { socket, .. } => sources.push((socket.clone(), false)),
            _ => {}
        }
    }
    let mut seen = std::collections::HashSet::new();
    sources.retain(|(p, _)| seen.insert(p.clone()));
    sources.sort_by_key(|(p, _)| p.components().count());
    sources
}

fn overlay_paths(data: &str) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    let (mut upper, mut work) = (None, None);
    for option in data.split(',') {
        match option.split_once('=') {
            Some(("lowerdir", list)) => paths.extend(list.split(':').map(PathBuf::from)),
            Some(("upperdir", p)) => upper = Some(PathBuf::from(p)),
            Some(("workdir", p)) => work = Some(PathBuf::from(p)),
            _ => {}
        }
    }
    if let (Some(upper), Some(work)) = (upper, work) {
        let common: PathBuf = upper
            .components()
            .zip(work.components())
            .take_while(|(a, b)| a == b)
            .map(|(a, _)| a)
            .collect();
        paths.push(common);
    }
    paths
}

/// The holder of the new user namespace: a child that unshares it and waits until released.
struct Holder {
    pid: Pid,
    release: File,
}

impl Holder {
    fn spawn() -> Result<Holder, ChildFailure> {
        let failed =
            |e: nix::Error| ChildFailure::os(SetupStep::Unshare, "user namespace", &e.into());
        let (ready_r, ready_w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(failed)?;
        let (hold_r, hold_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(failed)?;
        // SAFETY: the init is single-threaded; the child only makes system calls and exits.
        match unsafe { fork() }.map_err(failed)? {
            ForkResult::Child => {
                drop((ready_r, hold_w));
                // SAFETY: plain prctl.
                unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) };
                let ok = nix::sched::unshare(CloneFlags::CLONE_NEWUSER).is_ok();
                let _ = File::from(ready_w).write_all(&[u8::from(ok)]);
                let _ = File::from(hold_r).read(&mut [0u8]);
                // SAFETY: leave without running anything inherited.
                unsafe { libc::_exit(0) }
            }
            ForkResult::Parent { child } => {
                drop((ready_w, hold_r));
                let mut byte = [0u8];
                let ok = File::from(ready_r).read_exact(&mut byte).is_ok() && byte[0] == 1;
                let holder = Holder {
                    pid: child,
                    release: File::from(hold_w),
                };
                if !ok {
                    return Err(ChildFailure::os(
                        SetupStep::Unshare,
                        "user namespace",
                        &std::io::Error::from_raw_os_error(libc::EPERM),
                    ));
                }
                Ok(holder)
            }
        }
    }

    fn proc_path(&self, name: &str) -> PathBuf {
        Path::new("/proc").join(self.pid.to_string()).join(name)
    }

    fn write_maps(&self, mapping: &IdMapping) -> Result<(), ChildFailure> {
        let (uid_map, gid_map) = mapping.map_texts();
        for (name, text) in [("uid_map", uid_map), ("gid_map", gid_map)] {
            write_map(&self.proc_path(name), &text).map_err(|e| {
                let errno = match &e {
                    crate::IdMapError::WriteMap { source, .. } => source.raw_os_error(),
                    _ => None,
                };
                ChildFailure::Os {
                    step: SetupStep::WaitForMapping,
                    path: self.proc_path(name),
                    errno: errno.unwrap_or(libc::EIO),
                }
            })?;
        }
        Ok(())
    }

    fn namespace(&self) -> Result<OwnedFd, ChildFailure> {
        let path = self.proc_path("ns/user");
        File::options()
            .read(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
            .map(OwnedFd::from)
            .map_err(|e| ChildFailure::os(SetupStep::Unshare, path, &e))
    }

    fn release(self) {
        drop(self.release);
        let _ = waitpid(self.pid, None);
    }
}

/// Enters a new user namespace with `mapping` (real root's range) and returns idmapped clones
/// of `sources`; when the kernel will not idmap one of them, enters a namespace with the
/// host's ids instead and says which path. Must run as real root, single-threaded.
pub(crate) fn enter(
    mapping: &IdMapping,
    sources: &[(PathBuf, bool)],
) -> Result<(Vec<IdmappedTree>, Option<NotIsolated>), ChildFailure> {
    let holder = Holder::spawn()?;
    holder.write_maps(mapping)?;
    let userns = holder.namespace()?;
    let mut trees = Vec::new();
    let mut refused = None;
    for (source, recursive) in sources {
        let tree = mount_api::clone_tree(source, *recursive).and_then(|fd| {
            mount_api::set_idmap(fd.as_fd(), userns.as_fd(), *recursive).map(|()| fd)
        });
        match tree {
            Ok(fd) => trees.push(IdmappedTree {
                source: source.clone(),
                fd,
            }),
            // A missing source fails later, where the mount plan says what it was for.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => {
                refused = Some(NotIsolated {
                    path: source.clone(),
                    errno: e.raw_os_error().unwrap_or(libc::EINVAL),
                });
                break;
            }
        }
    }
    let (holder, userns) = if refused.is_some() {
        trees.clear();
        drop(userns);
        holder.release();
        let holder = Holder::spawn()?;
        holder.write_maps(&IdMapping::host())?;
        let userns = holder.namespace()?;
        (holder, userns)
    } else {
        (holder, userns)
    };
    become_root_of(&userns)?;
    holder.release();
    Ok((trees, refused))
}

fn become_root_of(userns: &OwnedFd) -> Result<(), ChildFailure> {
    let failed = |e: nix::Error| ChildFailure::os(SetupStep::Unshare, "user namespace", &e.into());
    nix::sched::setns(userns, CloneFlags::CLONE_NEWUSER).map_err(failed)?;
    // The ids this process had are not mapped there; root of it is.
    let ids = |e: nix::Error| ChildFailure::os(SetupStep::SetIds, "0:0", &e.into());
    nix::unistd::setgroups(&[]).map_err(ids)?;
    nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0)).map_err(ids)?;
    nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0)).map_err(ids)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{BindMode, Mount, Process};

    #[test]
    fn sources_are_the_layers_the_upper_parent_and_bind_sources_parents_first() {
        let spec = SandboxSpec::builder(
            Rootfs::Mounted {
                root: "/m".into(),
                mounts: vec![Mount::overlay(
                    &["/s/3/fs".into(), "/s/1/fs".into()],
                    Path::new("/s/7/fs"),
                    Path::new("/s/7/work"),
                    Path::new("/m"),
                )],
            },
            Process::new(["true"]),
            IdMapping::host(),
        )
        .mount(StepMount::Bind {
            source: "/ctx".into(),
            target: "/src".into(),
            mode: BindMode::ReadOnly,
        })
        .mount(StepMount::Tmpfs {
            target: "/t".into(),
            size: None,
        })
        .build();
        assert_eq!(
            sources(&spec),
            [
                (PathBuf::from("/ctx"), true),
                ("/s/7".into(), false),
                ("/s/3/fs".into(), false),
                ("/s/1/fs".into(), false),
            ]
        );
    }
}
