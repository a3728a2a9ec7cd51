//! Copying trees the way `COPY` does: metadata and timestamps kept from the source (as
//! BuildKit does), ownership and mode replaced when `--chown`/`--chmod` ask, symlinks copied as
//! links, hard links inside the source recreated as copies.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use glob::Pattern;
use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;

use super::context::{matches_self_or_parent, may_match_below};
use super::WorkerError;
use img_llb::Chmod;
use img_solver::PathFilter;

/// How a copy changes what it copies.
pub(crate) struct Copier<'a> {
    /// `(uid, gid)` for every copied entry; `None` keeps the source's.
    pub owner: Option<(u32, u32)>,
    /// Permission bits for every copied entry; `None` keeps the source's.
    pub mode: Option<u32>,
    /// A symbolic `--chmod`, applied to each copied entry's own mode (wins over `mode`).
    pub symbolic_mode: Option<&'a Chmod>,
    /// The local source's selection, tested with paths relative to the source's root.
    pub source_filter: Option<&'a dyn PathFilter>,
    /// `--include` patterns, relative to the copied path.
    pub include: Vec<Pattern>,
    /// `--exclude` patterns, relative to the copied path.
    pub exclude: Vec<Pattern>,
    /// Files with several links already copied, by source (device, inode): later links to
    /// them become hard links of the copy, as BuildKit's copy keeps them.
    pub linked: RefCell<HashMap<(u64, u64), PathBuf>>,
    /// Work left for [`Copier::finish`]: the walk creates directories, links and special files
    /// at once, and queues plain files and directory metadata here.
    pub deferred: RefCell<Deferred>,
}

/// What a copy does after walking the source: plain files are copied by several threads at
/// once (a tree of small files is bound by per-file system calls, not bandwidth), then each
/// directory gets its metadata, deepest first, since adding entries changes a directory's times.
#[derive(Default)]
pub(crate) struct Deferred {
    files: Vec<(PathBuf, PathBuf, fs::Metadata)>,
    directories: Vec<(PathBuf, PathBuf, fs::Metadata)>,
}

impl Copier<'_> {
    /// A copy that keeps everything.
    pub(crate) fn plain() -> Copier<'static> {
        Copier {
            owner: None,
            mode: None,
            symbolic_mode: None,
            source_filter: None,
            include: Vec::new(),
            exclude: Vec::new(),
            linked: RefCell::default(),
            deferred: RefCell::default(),
        }
    }

    fn pattern_selects(&self, rel: &str, is_dir: bool) -> bool {
        if rel.is_empty() {
            return true;
        }
        if self.exclude.iter().any(|p| matches_self_or_parent(p, rel)) {
            return false;
        }
        self.include.is_empty()
            || self
                .include
                .iter()
                .any(|p| matches_self_or_parent(p, rel) || (is_dir && may_match_below(p, rel)))
    }

    fn source_selects(&self, source_rel: &str, is_dir: bool) -> bool {
        match self.source_filter {
            None => true,
            Some(f) if is_dir => f.selects(source_rel, true) || f.may_select_under(source_rel),
            Some(f) => f.selects(source_rel, false),
        }
    }

    /// Copies `src` (whose path relative to its source's root is `source_rel`) to `dest`.
    /// A directory is merged into an existing directory at `dest`.
    pub(crate) fn copy(
        &self,
        src: &Path,
        dest: &Path,
        source_rel: &str,
    ) -> Result<(), WorkerError> {
        self.copy_entry(src, dest, source_rel, "")?;
        self.finish()
    }

    /// Copies what is inside directory `src` into directory `dest` (created if missing).
    pub(crate) fn copy_contents(
        &self,
        src: &Path,
        dest: &Path,
        source_rel: &str,
    ) -> Result<(), WorkerError> {
        let meta = fs::metadata(src).map_err(WorkerError::file("reading", src))?;
        self.ensure_dir(dest, &meta)?;
        for (name, child_source_rel, child_rel) in self.children(src, source_rel, "")? {
            self.copy_entry(
                &src.join(&name),
                &dest.join(&name),
                &child_source_rel,
                &child_rel,
            )?;
        }
        self.finish()?;
        self.apply_metadata(src, dest, &meta)
    }

    /// Copies the queued plain files on a few threads of this op (never rayon's pool: this is
    /// disk I/O), then sets the queued directories' metadata.
    fn finish(&self) -> Result<(), WorkerError> {
        let Deferred { files, directories } = std::mem::take(&mut *self.deferred.borrow_mut());
        let threads = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(2, 8)
            .min(files.len().max(1));
        let next = AtomicUsize::new(0);
        let failure: Mutex<Option<WorkerError>> = Mutex::new(None);
        let rule = self.rule();
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some((src, dest, meta)) = files.get(index) else {
                        return;
                    };
                    if let Err(e) = rule.copy_file(src, dest, meta) {
                        failure
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .get_or_insert(e);
                        next.store(files.len(), Ordering::Relaxed);
                        return;
                    }
                });
            }
        });
        if let Some(e) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
            return Err(e);
        }
        for (src, dest, meta) in directories.iter().rev() {
            self.apply_metadata(src, dest, meta)?;
        }
        Ok(())
    }

    /// The ownership and mode this copy gives what it copies.
    fn rule(&self) -> MetadataRule<'_> {
        MetadataRule {
            owner: self.owner,
            mode: self.mode,
            symbolic_mode: self.symbolic_mode,
        }
    }

    fn children(
        &self,
        dir: &Path,
        source_rel: &str,
        rel: &str,
    ) -> Result<Vec<(std::ffi::OsString, String, String)>, WorkerError> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .map_err(WorkerError::file("listing", dir))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()
            .map_err(WorkerError::file("listing", dir))?;
        names.sort();
        let join = |base: &str, name: &str| {
            if base.is_empty() {
                name.to_owned()
            } else {
                format!("{base}/{name}")
            }
        };
        Ok(names
            .into_iter()
            .map(|n| {
                let s = n.to_string_lossy().into_owned();
                let source_child = join(source_rel, &s);
                let child = join(rel, &s);
                (n, source_child, child)
            })
            .collect())
    }

    fn copy_entry(
        &self,
        src: &Path,
        dest: &Path,
        source_rel: &str,
        rel: &str,
    ) -> Result<(), WorkerError> {
        let meta = fs::symlink_metadata(src).map_err(WorkerError::file("reading", src))?;
        let ft = meta.file_type();
        if !self.source_selects(source_rel, ft.is_dir()) || !self.pattern_selects(rel, ft.is_dir())
        {
            return Ok(());
        }
        if ft.is_dir() {
            self.ensure_dir(dest, &meta)?;
            for (name, child_source_rel, child_rel) in self.children(src, source_rel, rel)? {
                self.copy_entry(
                    &src.join(&name),
                    &dest.join(&name),
                    &child_source_rel,
                    &child_rel,
                )?;
            }
            self.deferred.borrow_mut().directories.push((
                src.to_path_buf(),
                dest.to_path_buf(),
                meta,
            ));
            return Ok(());
        }
        remove_non_dir(dest)?;
        if ft.is_file() {
            if meta.nlink() > 1 {
                let key = (meta.dev(), meta.ino());
                if let Some(first) = self.linked.borrow().get(&key) {
                    return fs::hard_link(first, dest).map_err(WorkerError::file("linking", dest));
                }
                self.linked.borrow_mut().insert(key, dest.to_path_buf());
                // Later links to it need the file in place: copy it now.
                return self.rule().copy_file(src, dest, &meta);
            }
            self.deferred
                .borrow_mut()
                .files
                .push((src.to_path_buf(), dest.to_path_buf(), meta));
            return Ok(());
        } else if ft.is_symlink() {
            let target = fs::read_link(src).map_err(WorkerError::file("reading link", src))?;
            symlink(&target, dest).map_err(WorkerError::file("creating link", dest))?;
        } else if ft.is_fifo() || ft.is_char_device() || ft.is_block_device() {
            let kind = if ft.is_fifo() {
                nix::sys::stat::SFlag::S_IFIFO
            } else if ft.is_char_device() {
                nix::sys::stat::SFlag::S_IFCHR
            } else {
                nix::sys::stat::SFlag::S_IFBLK
            };
            nix::sys::stat::mknod(
                dest,
                kind,
                nix::sys::stat::Mode::from_bits_truncate(meta.mode() & 0o7777),
                meta.rdev(),
            )
            .map_err(|e| WorkerError::file("creating", dest)(e.into()))?;
        } else {
            // Sockets cannot be copied into an image.
            return Ok(());
        }
        self.apply_metadata(src, dest, &meta)
    }

    fn ensure_dir(&self, dest: &Path, meta: &fs::Metadata) -> Result<(), WorkerError> {
        match fs::symlink_metadata(dest) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => {
                remove_non_dir(dest)?;
                fs::create_dir(dest).map_err(WorkerError::file("creating", dest))
            }
            Err(_) => {
                fs::create_dir(dest).map_err(WorkerError::file("creating", dest))?;
                fs::set_permissions(dest, fs::Permissions::from_mode(meta.mode() & 0o7777))
                    .map_err(WorkerError::file("changing the mode of", dest))
            }
        }
    }

    fn apply_metadata(
        &self,
        src: &Path,
        dest: &Path,
        meta: &fs::Metadata,
    ) -> Result<(), WorkerError> {
        self.rule().apply(src, dest, meta)
    }
}

/// The ownership and mode a copy gives each entry; shared by the threads that copy files.
#[derive(Clone, Copy)]
struct MetadataRule<'a> {
    owner: Option<(u32, u32)>,
    mode: Option<u32>,
    symbolic_mode: Option<&'a Chmod>,
}

impl MetadataRule<'_> {
    /// Copies one plain file's content and metadata.
    fn copy_file(self, src: &Path, dest: &Path, meta: &fs::Metadata) -> Result<(), WorkerError> {
        let mut from = File::open(src).map_err(WorkerError::file("opening", src))?;
        let mut to = File::create(dest).map_err(WorkerError::file("creating", dest))?;
        io::copy(&mut from, &mut to).map_err(WorkerError::file("copying to", dest))?;
        self.apply(src, dest, meta)
    }

    /// Owner, mode and timestamps of a copied entry (a link's own, never its target's).
    fn apply(self, src: &Path, dest: &Path, meta: &fs::Metadata) -> Result<(), WorkerError> {
        let (uid, gid) = self.owner.unwrap_or((meta.uid(), meta.gid()));
        std::os::unix::fs::lchown(dest, Some(uid), Some(gid))
            .map_err(WorkerError::file("changing the owner of", dest))?;
        if !meta.file_type().is_symlink() {
            copy_xattrs(src, dest)?;
            let mode = match (self.symbolic_mode, self.mode) {
                (Some(chmod), _) => chmod.apply(meta.mode(), meta.is_dir()),
                (None, Some(mode)) => mode,
                (None, None) => meta.mode() & 0o7777,
            };
            fs::set_permissions(dest, fs::Permissions::from_mode(mode))
                .map_err(WorkerError::file("changing the mode of", dest))?;
        }
        set_times(dest, meta)
    }
}

/// Copies extended attributes after the owner is set (a chown clears
/// `security.capability`). overlayfs's own bookkeeping is never copied; attributes this
/// filesystem or this user cannot set are skipped, as BuildKit's copy does.
fn copy_xattrs(src: &Path, dest: &Path) -> Result<(), WorkerError> {
    let names = match xattr::list(src) {
        Ok(names) => names,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(()),
        Err(e) => return Err(WorkerError::file("listing attributes of", src)(e)),
    };
    for name in names {
        let text = name.to_string_lossy();
        if text.starts_with("trusted.overlay.") || text.starts_with("user.overlay.") {
            continue;
        }
        let Some(value) =
            xattr::get(src, &name).map_err(WorkerError::file("reading attributes of", src))?
        else {
            continue;
        };
        match xattr::set(dest, &name, &value) {
            Ok(()) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTSUP | libc::EPERM)) => {}
            Err(e) => return Err(WorkerError::file("setting attributes of", dest)(e)),
        }
    }
    Ok(())
}

/// Sets `dest`'s access and modification times to `meta`'s, without following a link.
pub(crate) fn set_times(dest: &Path, meta: &fs::Metadata) -> Result<(), WorkerError> {
    let atime = TimeSpec::new(meta.atime(), meta.atime_nsec());
    let mtime = TimeSpec::new(meta.mtime(), meta.mtime_nsec());
    utimensat(
        nix::fcntl::AT_FDCWD,
        dest,
        &atime,
        &mtime,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| WorkerError::file("setting the times of", dest)(e.into()))
}

/// Removes whatever non-directory is at `path` so a new entry can take its place.
fn remove_non_dir(path: &Path) -> Result<(), WorkerError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            fs::remove_dir_all(path).map_err(WorkerError::file("replacing", path))
        }
        Ok(_) => fs::remove_file(path).map_err(WorkerError::file("replacing", path)),
        Err(_) => Ok(()),
    }
}

/// Copies everything inside `src` into `dest`, keeping all metadata (seeding cache mounts).
pub(crate) fn copy_tree_contents(src: &Path, dest: &Path) -> Result<(), WorkerError> {
    if !src.is_dir() {
        return Ok(());
    }
    Copier::plain().copy_contents(src, dest, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_keep_times_and_apply_owner_and_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("sub/a.txt"), "a").unwrap();
        fs::write(src.join("skip.log"), "x").unwrap();
        fs::hard_link(src.join("sub/a.txt"), src.join("hard")).unwrap();
        symlink("sub/a.txt", src.join("link")).unwrap();
        let old = TimeSpec::new(1_000_000, 0);
        utimensat(
            nix::fcntl::AT_FDCWD,
            &src.join("sub/a.txt"),
            &old,
            &old,
            UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
        let copier = Copier {
            owner: Some((0, 0)),
            mode: Some(0o640),
            exclude: vec![Pattern::new("*.log").unwrap()],
            ..Copier::plain()
        };
        let dest = tmp.path().join("dest");
        copier.copy_contents(&src, &dest, "").unwrap();
        let meta = fs::metadata(dest.join("sub/a.txt")).unwrap();
        assert_eq!(meta.mtime(), 1_000_000);
        assert_eq!(meta.mode() & 0o7777, 0o640);
        assert!(!dest.join("skip.log").exists());
        let hard = fs::metadata(dest.join("hard")).unwrap();
        assert_eq!(
            (hard.ino(), hard.nlink()),
            (meta.ino(), 2),
            "hard link kept"
        );
        assert_eq!(
            fs::read_link(dest.join("link")).unwrap(),
            Path::new("sub/a.txt")
        );
    }

    #[test]
    fn a_symbolic_chmod_applies_to_each_entrys_own_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fs::create_dir_all(src.join("dir")).unwrap();
        fs::write(src.join("dir/script"), "#!/bin/sh\n").unwrap();
        fs::write(src.join("data"), "x").unwrap();
        fs::set_permissions(src.join("dir"), fs::Permissions::from_mode(0o700)).unwrap();
        fs::set_permissions(src.join("dir/script"), fs::Permissions::from_mode(0o700)).unwrap();
        fs::set_permissions(src.join("data"), fs::Permissions::from_mode(0o600)).unwrap();
        let chmod = Chmod::parse("go=rX").unwrap();
        let copier = Copier {
            symbolic_mode: Some(&chmod),
            ..Copier::plain()
        };
        let dest = tmp.path().join("dest");
        copier.copy_contents(&src, &dest, "").unwrap();
        let mode = |p: &str| fs::metadata(dest.join(p)).unwrap().mode() & 0o7777;
        assert_eq!(mode("dir"), 0o755, "X gives directories search");
        assert_eq!(
            mode("dir/script"),
            0o755,
            "X follows an existing execute bit"
        );
        assert_eq!(mode("data"), 0o644, "no execute bit, no X");
    }

    #[test]
    fn extended_attributes_survive_the_copy_and_the_chown() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("tool");
        fs::write(&src, "x").unwrap();
        // A file capability (cap_net_raw=ep, VFS v2) as `setcap` writes it; needs root.
        let cap: [u8; 20] = [0, 0, 0, 2, 0, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let names: Vec<(&str, &[u8])> = vec![
            ("user.img-test", b"kept"),
            ("security.capability", &cap),
            ("user.overlay.opaque", b"y"),
        ];
        let mut set = Vec::new();
        for (name, value) in &names {
            if xattr::set(&src, name, value).is_ok() {
                set.push(*name);
            }
        }
        let copier = Copier {
            owner: Some((1000, 1000)),
            ..Copier::plain()
        };
        let dest = tmp.path().join("copy");
        copier.copy(&src, &dest, "tool").unwrap();
        for name in set {
            let copied = xattr::get(&dest, name).unwrap();
            if name.starts_with("user.overlay.") {
                assert_eq!(copied, None, "{name} is overlay bookkeeping");
            } else {
                assert!(copied.is_some(), "{name} lost");
            }
        }
    }
}
