//! Snapshot trees as directories the worker can read and write in-process.
//!
//! A native snapshot (and an overlay snapshot without parents) is a plain bind of one
//! directory: its path is used as it is. An overlay snapshot with parents exists as a tree only
//! once mounted. The worker then mounts it on a thread of its own that first unshares its mount
//! namespace (allowed in a multithreaded process, unlike a new user namespace): the mounts are
//! visible to that thread (and threads it starts) alone and disappear with it, so a crash or a
//! panic never leaves a mount behind on the host.
//!
//! Assumption: the process may mount, i.e. it has CAP_SYS_ADMIN in its user namespace. That
//! holds for real root, and for the `img` binary when it re-executes itself into a user and
//! mount namespace as an unprivileged user. Without it the error says so.

use std::io;
use std::path::{Path, PathBuf};

use img_snapshot::Mount;

/// Runs `work` with the tree described by `mounts` at some directory, passed to it.
/// `scratch` is a directory on the state directory's filesystem for the mount point.
pub(crate) fn with_mounted<R: Send>(
    mounts: &[Mount],
    scratch: &Path,
    work: impl FnOnce(&Path) -> R + Send,
) -> io::Result<R> {
    with_all_mounted(&[mounts], scratch, |dirs| work(&dirs[0]))
}

/// Runs `work` with every tree of `trees` visible, in order, as the directories passed to it.
pub(crate) fn with_all_mounted<R: Send>(
    trees: &[&[Mount]],
    scratch: &Path,
    work: impl FnOnce(&[PathBuf]) -> R + Send,
) -> io::Result<R> {
    let plain: Vec<Option<PathBuf>> = trees.iter().map(|m| plain_directory(m)).collect();
    if plain.iter().all(Option::is_some) {
        let dirs: Vec<PathBuf> = plain.into_iter().flatten().collect();
        return Ok(work(&dirs));
    }
    let targets = tempfile::Builder::new()
        .prefix("mounted-")
        .tempdir_in(scratch)?;
    let mut dirs = Vec::with_capacity(trees.len());
    for (i, dir) in plain.iter().enumerate() {
        match dir {
            Some(dir) => dirs.push(dir.clone()),
            None => {
                let target = targets.path().join(i.to_string());
                std::fs::create_dir(&target)?;
                dirs.push(target);
            }
        }
    }
    std::thread::scope(|scope| {
        scope
            .spawn(move || -> io::Result<R> {
                // The new namespace belongs to this thread only; it ends when the thread does.
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!(
                            "cannot create a mount namespace to mount a snapshot ({e}): img \
                             needs CAP_SYS_ADMIN in its user namespace"
                        ),
                    )
                })?;
                nix::mount::mount(
                    None::<&str>,
                    "/",
                    None::<&str>,
                    nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
                    None::<&str>,
                )?;
                for ((mounts, plain), dir) in trees.iter().zip(&plain).zip(&dirs) {
                    if plain.is_none() {
                        for m in mounts.iter() {
                            m.mount(dir)?;
                        }
                    }
                }
                // rayon's global pool started outside this namespace and cannot see these
                // mounts; a pool started here can, because threads inherit the mount namespace
                // of the thread that creates them. Parallel work inside `work` (checksums,
                // tree walks) runs on it.
                let pool = rayon::ThreadPoolBuilder::new()
                    .thread_name(|i| format!("img-mounted-{i}"))
                    .build()
                    .map_err(io::Error::other)?;
                Ok(pool.install(|| work(&dirs)))
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// The directory a single bind mount exposes, when no mounting is needed to see the tree.
fn plain_directory(mounts: &[Mount]) -> Option<PathBuf> {
    match mounts {
        [only] if only.kind == "bind" => Some(PathBuf::from(&only.source)),
        _ => None,
    }
}
