//! Copying what a plan lists the way `COPY` does: metadata and timestamps kept from the source
//! (as BuildKit does), ownership and mode replaced when `--chown`/`--chmod` ask, symlinks
//! copied as links, hard links inside the source recreated as links of the copy. Sources are
//! read through their tree's root (`root.rs`), never by a host path; each file's content is
//! hashed as it is copied, so the caller can check the copy against the cache key.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::{self, File};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;
use xattr::FileExt;

use super::plan::{plan_tree, Entry, EntryKind, Selection};
use super::record::{copy_hashing, file_digest, is_overlay_bookkeeping, xattrs_digest};
use super::root::{Meta, TreeRoot};
use super::WorkerError;
use img_llb::Chmod;

/// How a copy changes what it copies.
pub(crate) struct Copier<'a> {
    /// `(uid, gid)` for every copied entry; `None` keeps the source's.
    pub owner: Option<(u32, u32)>,
    /// Permission bits for every copied entry; `None` keeps the source's.
    pub mode: Option<u32>,
    /// A symbolic `--chmod`, applied to each copied entry's own mode (wins over `mode`).
    pub symbolic_mode: Option<&'a Chmod>,
    /// Files with several links already copied, by source (device, inode): later links to
    /// them become hard links of the copy, as BuildKit's copy keeps them. With the content
    /// hash of the first copy.
    linked: RefCell<HashMap<(u64, u64), FirstLink>>,
}

/// The first copy of a file with several links, and its content hash.
type FirstLink = (PathBuf, [u8; 32]);

/// A plain file left for the copying threads: its index in the plan, source, destination.
struct PendingFile<'e> {
    index: usize,
    entry: &'e Entry,
    dest: PathBuf,
}

impl Copier<'_> {
    /// A copy that keeps everything.
    pub(crate) fn plain() -> Copier<'static> {
        Copier::new(None, None, None)
    }

    /// A copy giving entries `owner` and `mode` (or `symbolic_mode`) when set.
    pub(crate) fn new(
        owner: Option<(u32, u32)>,
        mode: Option<u32>,
        symbolic_mode: Option<&Chmod>,
    ) -> Copier<'_> {
        Copier {
            owner,
            mode,
            symbolic_mode,
            linked: RefCell::default(),
        }
    }

    /// Copies `entries` (a planned source: its top first, then what it holds) read from `tree`:
    /// the top to `dest` (a directory is merged into an existing directory there), the others
    /// below it. Returns each entry's content hash (files only), aligned with `entries`.
    pub(crate) fn copy(
        &self,
        tree: &TreeRoot,
        entries: &[Entry],
        dest: &Path,
    ) -> Result<Vec<Option<[u8; 32]>>, WorkerError> {
        self.copy_entries(tree, entries, dest, false)
    }

    /// Copies what the directory `entries` tops holds into the directory `dest`, which keeps
    /// its own mode, owner and times: as BuildKit copies a directory's contents (COPY of a
    /// directory), only the contents take the source's metadata. The caller has made `dest`
    /// (0755, owned by root or the `--chown` user) when it was missing.
    pub(crate) fn copy_contents(
        &self,
        tree: &TreeRoot,
        entries: &[Entry],
        dest: &Path,
    ) -> Result<Vec<Option<[u8; 32]>>, WorkerError> {
        self.copy_entries(tree, entries, dest, true)
    }

    /// [`Copier::copy`], leaving the top directory's metadata alone with `keep_top`.
    ///
    /// Directories, links and special files are made during the walk; plain files are copied
    /// by a few threads at once (a tree of small files is bound by per-file system calls, not
    /// bandwidth); then each directory gets its metadata, deepest first, since adding entries
    /// changes a directory's times.
    fn copy_entries(
        &self,
        tree: &TreeRoot,
        entries: &[Entry],
        dest: &Path,
        keep_top: bool,
    ) -> Result<Vec<Option<[u8; 32]>>, WorkerError> {
        let mut contents: Vec<Option<[u8; 32]>> = vec![None; entries.len()];
        let mut files = Vec::new();
        let mut directories = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            let target = if entry.rel().as_os_str().is_empty() {
                dest.to_path_buf()
            } else {
                dest.join(entry.rel())
            };
            match &entry.kind {
                EntryKind::Dir => {
                    self.ensure_dir(&target, &entry.meta)?;
                    directories.push((entry, target));
                }
                EntryKind::File => {
                    remove_non_dir(&target)?;
                    if entry.meta.nlink() > 1 {
                        let key = (entry.meta.dev(), entry.meta.ino());
                        if let Some((first, sha)) = self.linked.borrow().get(&key) {
                            fs::hard_link(first, &target)
                                .map_err(WorkerError::file("linking", &target))?;
                            contents[index] = Some(*sha);
                            continue;
                        }
                        // Later links to it need the file in place: copy it now.
                        let sha = self.rule().copy_file(tree, entry, &target)?;
                        self.linked.borrow_mut().insert(key, (target, sha));
                        contents[index] = Some(sha);
                        continue;
                    }
                    files.push(PendingFile {
                        index,
                        entry,
                        dest: target,
                    });
                }
                EntryKind::Symlink(link) => {
                    remove_non_dir(&target)?;
                    symlink(link, &target).map_err(WorkerError::file("creating link", &target))?;
                    self.rule().apply(None, &target, &entry.meta)?;
                }
                EntryKind::Special => {
                    remove_non_dir(&target)?;
                    make_special(&target, &entry.meta)?;
                    self.rule().apply(None, &target, &entry.meta)?;
                }
            }
        }
        for (index, sha) in self.copy_files(tree, &files)? {
            contents[index] = Some(sha);
        }
        for (entry, target) in directories.iter().rev() {
            if keep_top && entry.rel().as_os_str().is_empty() {
                continue;
            }
            let dir = tree
                .open_dir(&entry.path)
                .map_err(WorkerError::file("reading", tree.host_path(&entry.path)))?;
            self.rule().apply(Some(&dir), target, &entry.meta)?;
        }
        Ok(contents)
    }

    /// Copies the queued plain files on a few threads of this op (never rayon's pool: this is
    /// disk I/O); each file's index and content hash.
    fn copy_files(
        &self,
        tree: &TreeRoot,
        files: &[PendingFile<'_>],
    ) -> Result<Vec<(usize, [u8; 32])>, WorkerError> {
        let threads = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(2, 8)
            .min(files.len().max(1));
        let next = AtomicUsize::new(0);
        let failure: Mutex<Option<WorkerError>> = Mutex::new(None);
        let done: Mutex<Vec<(usize, [u8; 32])>> = Mutex::new(Vec::with_capacity(files.len()));
        let rule = self.rule();
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(file) = files.get(index) else {
                        return;
                    };
                    match rule.copy_file(tree, file.entry, &file.dest) {
                        Ok(sha) => done
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push((file.index, sha)),
                        Err(e) => {
                            failure
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .get_or_insert(e);
                            next.store(files.len(), Ordering::Relaxed);
                            return;
                        }
                    }
                });
            }
        });
        if let Some(e) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
            return Err(e);
        }
        Ok(done.into_inner().unwrap_or_else(|e| e.into_inner()))
    }

    fn ensure_dir(&self, dest: &Path, meta: &Meta) -> Result<(), WorkerError> {
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

    /// The ownership and mode this copy gives what it copies.
    fn rule(&self) -> MetadataRule<'_> {
        MetadataRule {
            owner: self.owner,
            mode: self.mode,
            symbolic_mode: self.symbolic_mode,
        }
    }
}

/// Creates the FIFO or device node `meta` describes at `dest`.
fn make_special(dest: &Path, meta: &Meta) -> Result<(), WorkerError> {
    let kind = if meta.is_fifo() {
        nix::sys::stat::SFlag::S_IFIFO
    } else if meta.is_char_device() {
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
    .map_err(|e| WorkerError::file("creating", dest)(e.into()))
}

/// The ownership and mode a copy gives each entry; shared by the threads that copy files.
#[derive(Clone, Copy)]
struct MetadataRule<'a> {
    owner: Option<(u32, u32)>,
    mode: Option<u32>,
    symbolic_mode: Option<&'a Chmod>,
}

impl MetadataRule<'_> {
    /// Copies one plain file's content and metadata, returning the digest of its content and
    /// extended attributes (what a read of it records).
    fn copy_file(
        self,
        tree: &TreeRoot,
        entry: &Entry,
        dest: &Path,
    ) -> Result<[u8; 32], WorkerError> {
        let mut from = tree
            .open_file(&entry.path)
            .map_err(WorkerError::file("opening", tree.host_path(&entry.path)))?;
        let mut to = File::create(dest).map_err(WorkerError::file("creating", dest))?;
        let sha =
            copy_hashing(&mut from, &mut to).map_err(WorkerError::file("copying to", dest))?;
        drop(to);
        let xattrs = xattrs_digest(&from).map_err(WorkerError::file(
            "reading attributes of",
            tree.host_path(&entry.path),
        ))?;
        self.apply(Some(&from), dest, &entry.meta)?;
        Ok(file_digest(sha, xattrs))
    }

    /// Owner, mode and timestamps of a copied entry (a link's own, never its target's);
    /// `source` is the open source, whose extended attributes are copied.
    fn apply(self, source: Option<&File>, dest: &Path, meta: &Meta) -> Result<(), WorkerError> {
        let (uid, gid) = self.owner.unwrap_or((meta.uid(), meta.gid()));
        std::os::unix::fs::lchown(dest, Some(uid), Some(gid))
            .map_err(WorkerError::file("changing the owner of", dest))?;
        if !meta.is_symlink() {
            if let Some(source) = source {
                copy_xattrs(source, dest)?;
            }
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
fn copy_xattrs(source: &File, dest: &Path) -> Result<(), WorkerError> {
    let names = match source.list_xattr() {
        Ok(names) => names,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(()),
        Err(e) => {
            return Err(WorkerError::file(
                "listing attributes of the source of",
                dest,
            )(e))
        }
    };
    for name in names {
        if is_overlay_bookkeeping(&name) {
            continue;
        }
        let Some(value) = source.get_xattr(&name).map_err(WorkerError::file(
            "reading attributes of the source of",
            dest,
        ))?
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
pub(crate) fn set_times(dest: &Path, meta: &Meta) -> Result<(), WorkerError> {
    let (atime, mtime) = (meta.atime(), meta.mtime());
    let atime = TimeSpec::new(atime.0, atime.1);
    let mtime = TimeSpec::new(mtime.0, mtime.1);
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

/// Copies the tree at `start` inside `src` (a canonical path; empty for all of it) into the
/// directory `dest`, keeping all metadata (seeding cache mounts, exporting a root
/// filesystem). Nothing is copied when `start` is not a directory.
pub(crate) fn copy_tree(src: &Path, start: &Path, dest: &Path) -> Result<(), WorkerError> {
    let tree = TreeRoot::open(src).map_err(WorkerError::file("opening", src))?;
    match tree.lstat(start) {
        Ok(meta) if meta.is_dir() => {}
        _ => return Ok(()),
    }
    let entries = plan_tree(&tree, start, &Selection::all())?;
    Copier::plain().copy(&tree, &entries, dest)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    /// Plans everything of `src` that `selection` keeps and copies it into `dest`.
    fn copy_all(copier: &Copier<'_>, src: &Path, dest: &Path, selection: &Selection<'_>) {
        let tree = TreeRoot::open(src).unwrap();
        let entries = plan_tree(&tree, Path::new(""), selection).unwrap();
        copier.copy(&tree, &entries, dest).unwrap();
    }

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
        let copier = Copier::new(Some((0, 0)), Some(0o640), None);
        let selection = Selection {
            exclude: vec![img_llb::PathPattern::new("*.log").unwrap()],
            ..Selection::all()
        };
        let dest = tmp.path().join("dest");
        copy_all(&copier, &src, &dest, &selection);
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
    fn a_directorys_contents_leave_the_destination_directory_as_it_was() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("sub/f"), "f").unwrap();
        fs::set_permissions(&src, fs::Permissions::from_mode(0o700)).unwrap();
        fs::set_permissions(src.join("sub"), fs::Permissions::from_mode(0o750)).unwrap();
        let dest = tmp.path().join("dest");
        fs::create_dir_all(dest.join("sub")).unwrap();
        fs::set_permissions(&dest, fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(dest.join("sub"), fs::Permissions::from_mode(0o777)).unwrap();
        let (uid, gid) = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        let tree = TreeRoot::open(&src).unwrap();
        let entries = plan_tree(&tree, Path::new(""), &Selection::all()).unwrap();
        Copier::plain()
            .copy_contents(&tree, &entries, &dest)
            .unwrap();
        let meta = |p: &Path| fs::metadata(p).unwrap();
        // The destination keeps its own mode (and owner); what it holds takes the source's.
        assert_eq!(meta(&dest).mode() & 0o7777, 0o755);
        assert_eq!((meta(&dest).uid(), meta(&dest).gid()), (uid, gid));
        assert_eq!(meta(&dest.join("sub")).mode() & 0o7777, 0o750);
        assert_eq!(fs::read_to_string(dest.join("sub/f")).unwrap(), "f");
        // A whole copy gives the top the source's mode.
        Copier::plain().copy(&tree, &entries, &dest).unwrap();
        assert_eq!(meta(&dest).mode() & 0o7777, 0o700);
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
        let copier = Copier::new(None, None, Some(&chmod));
        let dest = tmp.path().join("dest");
        copy_all(&copier, &src, &dest, &Selection::all());
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
        fs::create_dir(tmp.path().join("src")).unwrap();
        let src = tmp.path().join("src/tool");
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
        let copier = Copier::new(Some((1000, 1000)), None, None);
        let tree = TreeRoot::open(&tmp.path().join("src")).unwrap();
        let entries = plan_tree(&tree, Path::new("tool"), &Selection::all()).unwrap();
        let dest = tmp.path().join("copy");
        let contents = copier.copy(&tree, &entries, &dest).unwrap();
        assert!(contents[0].is_some(), "the copied content is hashed");
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
