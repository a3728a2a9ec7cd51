//! What changed between a snapshot and its parent, as the entries of a layer.
//!
//! The native backend compares two full trees (metadata first, contents only when metadata
//! cannot tell); the overlayfs backend walks only the upper directory, where the kernel put
//! every changed entry, and reads deletions from its whiteouts. Both end in the same entry
//! list, so the same change gives the same layer on either backend.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::copy::read_xattrs;

/// What a layer says about one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryKind {
    /// The entry as it is in the new tree.
    Write,
    /// The path was deleted (`.wh.<name>`).
    Whiteout,
    /// The directory hides everything beneath it in lower layers (`.wh..wh..opq`).
    Opaque,
}

/// One entry of a layer, relative to the layer root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LayerEntry {
    pub(crate) rel: PathBuf,
    pub(crate) kind: EntryKind,
}

/// The name of an entry in the tar stream, which is also its sort key.
pub(crate) fn tar_name(entry: &LayerEntry) -> PathBuf {
    match entry.kind {
        EntryKind::Write => entry.rel.clone(),
        EntryKind::Whiteout => {
            let mut name = OsString::from(".wh.");
            name.push(entry.rel.file_name().unwrap_or_default());
            entry.rel.with_file_name(name)
        }
        EntryKind::Opaque => entry.rel.join(".wh..wh..opq"),
    }
}

#[derive(Default)]
struct Collector {
    entries: BTreeMap<PathBuf, LayerEntry>,
}

impl Collector {
    fn push(&mut self, rel: PathBuf, kind: EntryKind) {
        let entry = LayerEntry { rel, kind };
        self.entries.insert(tar_name(&entry), entry);
    }

    /// Every entry with the directories above it (a layer that adds `a/b/c` carries `a` and
    /// `a/b` so an applier recreates them with the right metadata), sorted by tar name.
    fn finish(mut self) -> Vec<LayerEntry> {
        let mut parents = Vec::new();
        for entry in self.entries.values() {
            let mut p = entry.rel.parent();
            while let Some(dir) = p.filter(|d| !d.as_os_str().is_empty()) {
                parents.push(dir.to_owned());
                p = dir.parent();
            }
        }
        for dir in parents {
            self.entries.entry(dir.clone()).or_insert(LayerEntry {
                rel: dir,
                kind: EntryKind::Write,
            });
        }
        self.entries.into_values().collect()
    }

    /// `rel` and, for a directory, everything under it.
    fn push_all(&mut self, root: &Path, rel: &Path) -> io::Result<()> {
        self.push(rel.to_owned(), EntryKind::Write);
        let path = root.join(rel);
        if fs::symlink_metadata(&path)?.is_dir() {
            for name in sorted_names(&path)? {
                self.push_all(root, &rel.join(name))?;
            }
        }
        Ok(())
    }
}

pub(crate) fn sorted_names(dir: &Path) -> io::Result<Vec<OsString>> {
    let mut names: Vec<OsString> = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    names.sort();
    Ok(names)
}

/// Every entry of a tree (a layer with no parent).
pub(crate) fn whole_tree(root: &Path) -> io::Result<Vec<LayerEntry>> {
    let mut c = Collector::default();
    for name in sorted_names(root)? {
        c.push_all(root, Path::new(&name))?;
    }
    Ok(c.finish())
}

/// The changes from `lower` (a full tree, or nothing) to `upper` (a full tree).
pub(crate) fn native_changes(lower: Option<&Path>, upper: &Path) -> io::Result<Vec<LayerEntry>> {
    let Some(lower) = lower else {
        return whole_tree(upper);
    };
    let mut c = Collector::default();
    compare_dirs(lower, upper, Path::new(""), &mut c)?;
    Ok(c.finish())
}

fn compare_dirs(lower: &Path, upper: &Path, rel: &Path, c: &mut Collector) -> io::Result<()> {
    let lnames = sorted_names(&lower.join(rel))?;
    let unames = sorted_names(&upper.join(rel))?;
    let mut all: Vec<&OsString> = lnames.iter().chain(unames.iter()).collect();
    all.sort();
    all.dedup();
    for name in all {
        let child = rel.join(name);
        let in_lower = lnames.binary_search(name).is_ok();
        let in_upper = unames.binary_search(name).is_ok();
        match (in_lower, in_upper) {
            (true, false) => c.push(child, EntryKind::Whiteout),
            (false, true) => c.push_all(upper, &child)?,
            (true, true) => {
                let (lp, up) = (lower.join(&child), upper.join(&child));
                let (lm, um) = (fs::symlink_metadata(&lp)?, fs::symlink_metadata(&up)?);
                if lm.is_dir() && um.is_dir() {
                    if !unchanged(&lp, &lm, &up, &um)? {
                        c.push(child.clone(), EntryKind::Write);
                    }
                    compare_dirs(lower, upper, &child, c)?;
                } else if !unchanged(&lp, &lm, &up, &um)? {
                    c.push_all(upper, &child)?;
                }
            }
            (false, false) => {}
        }
    }
    Ok(())
}

/// The changes recorded in an overlayfs upper directory over `lowers` (nearest first).
pub(crate) fn overlay_changes(lowers: &[PathBuf], upper: &Path) -> io::Result<Vec<LayerEntry>> {
    let mut c = Collector::default();
    walk_upper(lowers, upper, Path::new(""), lowers.is_empty(), &mut c)?;
    Ok(c.finish())
}

fn walk_upper(
    lowers: &[PathBuf],
    upper: &Path,
    rel: &Path,
    hidden: bool,
    c: &mut Collector,
) -> io::Result<()> {
    for name in sorted_names(&upper.join(rel))? {
        let child = rel.join(&name);
        let up = upper.join(&child);
        let um = fs::symlink_metadata(&up)?;
        let lower = if hidden {
            None
        } else {
            lookup(lowers, &child)?
        };
        if is_whiteout(&um) {
            // A whiteout over nothing (the file was created and deleted in this layer) is
            // not a change.
            if lower.is_some() {
                c.push(child, EntryKind::Whiteout);
            }
            continue;
        }
        let lower = match lower {
            Some(lp) => Some((fs::symlink_metadata(&lp)?, lp)),
            None => None,
        };
        if um.is_dir() {
            let opaque = is_opaque(&up)?;
            let lower_is_dir = lower.as_ref().is_some_and(|(m, _)| m.is_dir());
            if opaque && lower_is_dir {
                c.push(child.clone(), EntryKind::Opaque);
            }
            let changed = match &lower {
                Some((lm, lp)) if lower_is_dir && !opaque => !unchanged(lp, lm, &up, &um)?,
                _ => true,
            };
            if changed {
                c.push(child.clone(), EntryKind::Write);
            }
            walk_upper(lowers, upper, &child, hidden || opaque || !lower_is_dir, c)?;
        } else {
            let changed = match &lower {
                Some((lm, lp)) => !unchanged(lp, lm, &up, &um)?,
                None => true,
            };
            if changed {
                c.push(child, EntryKind::Write);
            }
        }
    }
    Ok(())
}

/// An overlayfs whiteout: a character device 0/0.
pub(crate) fn is_whiteout(meta: &fs::Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// Whether an overlayfs directory is opaque, under either xattr namespace (`trusted.` when
/// mounted by real root, `user.` with the `userxattr` option used in user namespaces).
pub(crate) fn is_opaque(dir: &Path) -> io::Result<bool> {
    for name in ["trusted.overlay.opaque", "user.overlay.opaque"] {
        match xattr::get(dir, name) {
            Ok(Some(v)) if v == b"y" => return Ok(true),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOTSUP | libc::EPERM | libc::EACCES)
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

/// Finds `rel` in the merged view of overlay `layers` (nearest first), honouring whiteouts and
/// opaque directories, without mounting anything.
pub(crate) fn lookup(layers: &[PathBuf], rel: &Path) -> io::Result<Option<PathBuf>> {
    let comps: Vec<_> = rel.components().collect();
    'layers: for layer in layers {
        let mut p = layer.clone();
        // An opaque directory on the way hides that subtree in every layer below this one.
        let mut opaque_above = false;
        for (i, comp) in comps.iter().enumerate() {
            p.push(comp);
            let last = i + 1 == comps.len();
            let meta = match fs::symlink_metadata(&p) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if opaque_above {
                        return Ok(None);
                    }
                    continue 'layers;
                }
                Err(e) => return Err(e),
            };
            if is_whiteout(&meta) {
                return Ok(None);
            }
            if last {
                return Ok(Some(p));
            }
            if !meta.is_dir() {
                return Ok(None);
            }
            opaque_above = opaque_above || is_opaque(&p)?;
        }
    }
    Ok(None)
}

/// Whether an entry is the same in both trees: cheap metadata first; file contents only when
/// size and mtime agree but the mtime has no sub-second part (as after extraction from a tar,
/// which keeps whole seconds), so an edit within the same second could hide behind it.
pub(crate) fn unchanged(
    lp: &Path,
    lm: &fs::Metadata,
    up: &Path,
    um: &fs::Metadata,
) -> io::Result<bool> {
    let (lt, ut) = (lm.file_type(), um.file_type());
    if lt != ut || lm.mode() != um.mode() || lm.uid() != um.uid() || lm.gid() != um.gid() {
        return Ok(false);
    }
    let same = if lt.is_dir() {
        same_mtime(lm, um)
    } else if lt.is_symlink() {
        fs::read_link(lp)? == fs::read_link(up)?
    } else if lt.is_file() {
        lm.size() == um.size()
            && same_mtime(lm, um)
            && (um.mtime_nsec() != 0 || same_contents(lp, up)?)
    } else if lt.is_char_device() || lt.is_block_device() {
        lm.rdev() == um.rdev()
    } else {
        true
    };
    Ok(same && read_xattrs(lp)? == read_xattrs(up)?)
}

fn same_mtime(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    a.mtime() == b.mtime() && a.mtime_nsec() == b.mtime_nsec()
}

fn same_contents(a: &Path, b: &Path) -> io::Result<bool> {
    let (mut fa, mut fb) = (File::open(a)?, File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let n = read_full(&mut fa, &mut ba)?;
        let m = read_full(&mut fb, &mut bb)?;
        if n != m || ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_honours_whiteouts_and_opaque_ancestors() {
        let dir = tempfile::tempdir().unwrap();
        let (top, bottom) = (dir.path().join("top"), dir.path().join("bottom"));
        fs::create_dir_all(bottom.join("a/b")).unwrap();
        fs::write(bottom.join("a/b/c"), b"").unwrap();
        fs::write(bottom.join("gone"), b"").unwrap();
        fs::write(bottom.join("kept"), b"").unwrap();
        fs::create_dir_all(top.join("a/b")).unwrap();
        nix::sys::stat::mknod(
            &top.join("gone"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .unwrap();
        let layers = [top.clone(), bottom.clone()];
        assert_eq!(
            lookup(&layers, Path::new("a/b/c")).unwrap(),
            Some(bottom.join("a/b/c"))
        );
        assert_eq!(
            lookup(&layers, Path::new("kept")).unwrap(),
            Some(bottom.join("kept"))
        );
        assert_eq!(lookup(&layers, Path::new("gone")).unwrap(), None);
        assert_eq!(
            lookup(&layers, Path::new("a/b")).unwrap(),
            Some(top.join("a/b"))
        );
        xattr::set(top.join("a"), "user.overlay.opaque", b"y").unwrap();
        assert_eq!(
            lookup(&layers, Path::new("a/b/c")).unwrap(),
            None,
            "opaque grandparent hides it"
        );
    }

    fn names(entries: &[LayerEntry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| tar_name(e).display().to_string())
            .collect()
    }

    #[test]
    fn native_diff_reports_adds_deletes_and_parents() {
        let dir = tempfile::tempdir().unwrap();
        let (lower, upper) = (dir.path().join("l"), dir.path().join("u"));
        for root in [&lower, &upper] {
            fs::create_dir_all(root.join("a/b")).unwrap();
            fs::write(root.join("a/b/keep"), b"same").unwrap();
        }
        // Same mtimes so only the real changes show.
        let meta = fs::symlink_metadata(lower.join("a/b/keep")).unwrap();
        crate::copy::set_times(&upper.join("a/b/keep"), &meta).unwrap();
        fs::write(lower.join("a/gone"), b"x").unwrap();
        fs::write(upper.join("a/b/new"), b"y").unwrap();
        for d in ["a/b", "a", ""] {
            let m = fs::symlink_metadata(lower.join(d)).unwrap();
            crate::copy::set_times(&upper.join(d), &m).unwrap();
        }
        let changes = native_changes(Some(&lower), &upper).unwrap();
        assert_eq!(names(&changes), ["a", "a/.wh.gone", "a/b", "a/b/new"]);
    }
}
