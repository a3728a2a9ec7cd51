//! Flattening an overlay chain into one plain tree, for parent chains too deep to mount.
//!
//! An overlay mount names every lower layer in its option string, which mount(2) takes as
//! one page; a chain of a few dozen snapshots no longer fits. A committed snapshot's merged
//! view can instead be written out once as a plain directory (no whiteouts, no opaque
//! markers) and used as a single lower layer.
//!
//! The tree is built by replaying the layers bottom to top the way overlayfs merges them: a
//! whiteout (0/0 character device) deletes the path below it; a directory over a directory
//! merges unless the upper one is opaque (`user.overlay.opaque`, or `trusted.` when real root
//! made it), in which case what is below is dropped; anything else replaces what is below;
//! a directory's metadata (mode, owner, xattrs, times) comes from the topmost layer holding
//! it, as in the merged view.
//!
//! Files, symlinks, fifos and devices are hardlinked from the layers rather than copied:
//! committed layers never change, and a flattened tree is only ever a lower layer, which
//! overlayfs never writes (a change copies the file up into the writer's own upper
//! directory). Linking makes flattening cost one `link` per entry instead of a copy of the
//! data, keeps every file's metadata exactly, needs no privilege to recreate devices, and
//! keeps hardlinks made inside a layer. Where the kernel refuses a link (`EMLINK`, or
//! `fs.protected_hardlinks` for a file the caller does not own) the entry is copied with
//! the crate's copy chain (reflink, `copy_file_range`, read/write).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::changes::{is_opaque, is_whiteout, sorted_names};
use crate::copy::{copy_metadata, TreeCopier};

/// What a flattening did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FlattenStats {
    /// Layers replayed.
    pub(crate) layers: usize,
    /// Entries hardlinked from a layer.
    pub(crate) linked: u64,
    /// Entries copied because a link was refused.
    pub(crate) copied: u64,
    /// Directories in the result (the root included).
    pub(crate) dirs: u64,
}

/// Writes the merged view of `layers` (overlay directories, nearest first, as in `lowerdir=`)
/// into the empty directory `dest`.
pub(crate) fn flatten(layers: &[PathBuf], dest: &Path) -> io::Result<FlattenStats> {
    let mut f = Flattener {
        dest: dest.to_owned(),
        copier: TreeCopier::new(),
        dir_sources: BTreeMap::new(),
        stats: FlattenStats {
            layers: layers.len(),
            ..Default::default()
        },
    };
    for layer in layers.iter().rev() {
        f.dir_sources.insert(PathBuf::new(), layer.clone());
        f.merge_dir(layer, Path::new(""))?;
    }
    f.finish_dirs()?;
    Ok(f.stats)
}

struct Flattener {
    dest: PathBuf,
    copier: TreeCopier,
    /// Every directory of the result and the layer directory its metadata comes from.
    /// Directories stay owner-writable while layers are replayed (a later layer may add to a
    /// directory an earlier one made read-only) and get their final metadata at the end.
    dir_sources: BTreeMap<PathBuf, PathBuf>,
    stats: FlattenStats,
}

impl Flattener {
    fn merge_dir(&mut self, layer: &Path, rel: &Path) -> io::Result<()> {
        for name in sorted_names(&layer.join(rel))? {
            let child = rel.join(&name);
            let src = layer.join(&child);
            let dst = self.dest.join(&child);
            let meta = fs::symlink_metadata(&src)?;
            let below = match fs::symlink_metadata(&dst) {
                Ok(m) => Some(m),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(e),
            };
            if is_whiteout(&meta) {
                if below.is_some() {
                    self.remove(&child)?;
                }
                continue;
            }
            if meta.is_dir() {
                // An upper directory over a non-directory hides it, as an opaque one does.
                let merge = below.as_ref().is_some_and(|m| m.is_dir()) && !is_opaque(&src)?;
                if !merge {
                    if below.is_some() {
                        self.remove(&child)?;
                    }
                    fs::create_dir(&dst)?;
                    fs::set_permissions(&dst, fs::Permissions::from_mode(0o700))?;
                }
                self.dir_sources.insert(child.clone(), src);
                self.merge_dir(layer, &child)?;
            } else {
                if below.is_some() {
                    self.remove(&child)?;
                }
                self.place(&src, &dst)?;
            }
        }
        Ok(())
    }

    /// Links (else copies) the non-directory `src` to `dst`.
    fn place(&mut self, src: &Path, dst: &Path) -> io::Result<()> {
        // linkat without AT_SYMLINK_FOLLOW: a symlink is linked itself, never its target.
        match fs::hard_link(src, dst) {
            Ok(()) => {
                self.stats.linked += 1;
                Ok(())
            }
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EMLINK | libc::EPERM | libc::EACCES | libc::EXDEV)
                ) =>
            {
                self.copier.copy_entry(src, dst)?;
                self.stats.copied += 1;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Deletes `rel` from the result. Removing a link never touches the layer it came from.
    fn remove(&mut self, rel: &Path) -> io::Result<()> {
        let path = self.dest.join(rel);
        if fs::symlink_metadata(&path)?.is_dir() {
            fs::remove_dir_all(&path)?;
            let gone: Vec<PathBuf> = self
                .dir_sources
                .range(rel.to_owned()..)
                .map(|(k, _)| k)
                .take_while(|k| k.starts_with(rel))
                .cloned()
                .collect();
            for k in gone {
                self.dir_sources.remove(&k);
            }
        } else {
            fs::remove_file(&path)?;
        }
        Ok(())
    }

    /// Gives every directory the metadata of its topmost layer directory, deepest first so a
    /// directory's times are set after everything inside it is in place.
    fn finish_dirs(&mut self) -> io::Result<()> {
        for (rel, src) in self.dir_sources.iter().rev() {
            let meta = fs::symlink_metadata(src)?;
            copy_metadata(src, &self.dest.join(rel), &meta)?;
        }
        self.stats.dirs = self.dir_sources.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use nix::sys::stat::{mknod, Mode, SFlag};

    use super::*;

    /// Builds a layer from lines: `d path` directory, `f path content` file, `w path` whiteout,
    /// `o path` opaque directory, `l path target` symlink, `m path mode` chmod.
    fn layer(root: &Path, spec: &str) {
        fs::create_dir_all(root).unwrap();
        for line in spec.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let mut parts = line.splitn(3, ' ');
            let (op, path) = (parts.next().unwrap(), root.join(parts.next().unwrap()));
            let arg = parts.next().unwrap_or("");
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).unwrap();
            }
            match op {
                "d" => fs::create_dir_all(&path).unwrap(),
                "f" => fs::write(&path, arg).unwrap(),
                "w" => mknod(&path, SFlag::S_IFCHR, Mode::empty(), 0).unwrap(),
                "o" => {
                    fs::create_dir_all(&path).unwrap();
                    xattr::set(&path, "user.overlay.opaque", b"y").unwrap();
                }
                "l" => std::os::unix::fs::symlink(arg, &path).unwrap(),
                "m" => fs::set_permissions(
                    &path,
                    fs::Permissions::from_mode(u32::from_str_radix(arg, 8).unwrap()),
                )
                .unwrap(),
                other => panic!("unknown op {other}"),
            }
        }
    }

    /// `path kind [content|target] mode` per entry, sorted.
    fn listing(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            for name in sorted_names(&root.join(&rel)).unwrap() {
                let child = rel.join(name);
                let p = root.join(&child);
                let m = fs::symlink_metadata(&p).unwrap();
                let desc = if m.is_dir() {
                    stack.push(child.clone());
                    "dir".to_owned()
                } else if m.file_type().is_symlink() {
                    format!("-> {}", fs::read_link(&p).unwrap().display())
                } else {
                    format!("= {}", fs::read_to_string(&p).unwrap())
                };
                out.push(format!(
                    "{} {desc} {:o}",
                    child.display(),
                    m.mode() & 0o7777
                ));
            }
        }
        out.sort();
        out
    }

    #[test]
    fn replays_whiteouts_opaque_dirs_and_replacements() {
        let t = tempfile::tempdir().unwrap();
        let l = |i: usize| t.path().join(format!("l{i}"));
        // Bottom to top.
        let specs = [
            "f a/keep 1\nf a/gone 1\nd b/sub\nf b/sub/x 1\nf c 1\nd ro\nf ro/f 1\nm ro 555\nf e 1",
            "w a/gone\nf c 2\no b\nf b/new 2\nd e\nf e/inside 2\nf ro/g 2\nm ro 555",
            "l e ../c\nd x/y\nf x/y/z 3\nw never-existed",
            "o x\nf x/again 4",
        ];
        for (i, spec) in specs.iter().enumerate() {
            layer(&l(i), spec);
        }
        let layers: Vec<PathBuf> = (0..specs.len()).rev().map(l).collect();
        let dest = t.path().join("flat");
        fs::create_dir(&dest).unwrap();
        let stats = flatten(&layers, &dest).unwrap();
        assert_eq!(stats.layers, 4);
        assert_eq!(stats.copied, 0, "everything is linked: {stats:?}");
        let want = [
            "a dir 755",
            "a/keep = 1 644",
            "b dir 755",
            "b/new = 2 644",
            "c = 2 644",
            "e -> ../c 777",
            "ro dir 555",
            "ro/f = 1 644",
            "ro/g = 2 644",
            "x dir 755",
            "x/again = 4 644",
        ];
        assert_eq!(listing(&dest), want);
        // Linked, not copied: the same inode as the layer's file.
        assert_eq!(
            fs::metadata(dest.join("c")).unwrap().ino(),
            fs::metadata(l(1).join("c")).unwrap().ino()
        );
        // Opaque markers are overlay bookkeeping and stay out of the result.
        assert_eq!(
            xattr::get(dest.join("b"), "user.overlay.opaque").unwrap(),
            None
        );
    }

    #[test]
    fn directory_metadata_comes_from_the_topmost_layer() {
        let t = tempfile::tempdir().unwrap();
        let (bottom, top) = (t.path().join("bottom"), t.path().join("top"));
        layer(&bottom, "f d/f 1\nm d 700");
        layer(&top, "f d/g 2\nm d 751");
        xattr::set(top.join("d"), "user.note", b"top").unwrap();
        crate::copy::set_times(
            &top.join("d"),
            &fs::symlink_metadata(t.path()).unwrap(), // any fixed time
        )
        .unwrap();
        let dest = t.path().join("flat");
        fs::create_dir(&dest).unwrap();
        flatten(&[top.clone(), bottom], &dest).unwrap();
        let (got, want) = (
            fs::symlink_metadata(dest.join("d")).unwrap(),
            fs::symlink_metadata(top.join("d")).unwrap(),
        );
        assert_eq!(got.mode() & 0o7777, 0o751);
        assert_eq!(
            (got.mtime(), got.mtime_nsec()),
            (want.mtime(), want.mtime_nsec())
        );
        assert_eq!(
            xattr::get(dest.join("d"), "user.note").unwrap().as_deref(),
            Some(&b"top"[..])
        );
        assert_eq!(listing(&dest), ["d dir 751", "d/f = 1 644", "d/g = 2 644"]);
    }

    #[test]
    fn entries_the_kernel_will_not_link_are_copied() {
        // Layers on another filesystem than the result: link(2) fails with EXDEV, as it
        // fails with EMLINK or EPERM in a real store, and the copy chain takes over.
        let other = tempfile::tempdir_in("/dev/shm").unwrap();
        let t = tempfile::tempdir().unwrap();
        let dev = |p: &Path| fs::metadata(p).unwrap().dev();
        if dev(other.path()) == dev(t.path()) {
            let reason = "/dev/shm is on the same filesystem as the temporary directory";
            // `cargo xtask test` sets this: a test that cannot run is a failure there.
            if std::env::var_os("IMG_TEST_REQUIRE_TOOLS").is_some_and(|v| v == "1") {
                panic!("{reason}, and IMG_TEST_REQUIRE_TOOLS=1 requires every test to run");
            }
            println!("skipping: {reason} (with IMG_TEST_REQUIRE_TOOLS=1 this fails)");
            return;
        }
        let (bottom, top) = (other.path().join("bottom"), other.path().join("top"));
        layer(&bottom, "f a 1\nf b 1\nl s a");
        fs::hard_link(bottom.join("a"), bottom.join("a2")).unwrap();
        layer(&top, "f b 2\nm b 600");
        let dest = t.path().join("flat");
        fs::create_dir(&dest).unwrap();
        let stats = flatten(&[top, bottom], &dest).unwrap();
        assert_eq!((stats.linked, stats.copied), (0, 5), "{stats:?}");
        assert_eq!(
            listing(&dest),
            ["a = 1 644", "a2 = 1 644", "b = 2 600", "s -> a 777"]
        );
        // A layer's own hardlinks stay hardlinks in the copy.
        assert_eq!(
            fs::metadata(dest.join("a")).unwrap().ino(),
            fs::metadata(dest.join("a2")).unwrap().ino()
        );
    }

    /// 120 layers of small steps (the shape of a long Dockerfile), flattened at once.
    #[test]
    fn flattens_a_deep_chain_of_small_layers() {
        let t = tempfile::tempdir().unwrap();
        let depth = 120;
        let mut layers = Vec::new();
        for i in 0..depth {
            let mut spec = format!(
                "f step{} {i}\nf shared {i}\nd tree/{i}\nf tree/{i}/f {i}\n",
                i % 10
            );
            if i % 10 == 9 {
                spec.push_str(&format!("w tree/{}\n", i - 5));
            }
            if i == 60 {
                spec.push_str("o tree\nf tree/after-opaque 60\n");
            }
            let dir = t.path().join(format!("layer{i}"));
            layer(&dir, &spec);
            layers.push(dir);
        }
        layers.reverse();
        let dest = t.path().join("flat");
        fs::create_dir(&dest).unwrap();
        let start = std::time::Instant::now();
        let stats = flatten(&layers, &dest).unwrap();
        println!(
            "flattened {depth} layers in {:?}: {stats:?}",
            start.elapsed()
        );
        let list = listing(&dest);
        assert!(list.contains(&"shared = 119 644".to_owned()), "{list:?}");
        assert!(list.contains(&"tree/after-opaque = 60 644".to_owned()));
        assert!(
            !list.iter().any(|e| e.starts_with("tree/59 ")),
            "opaque hid it"
        );
        assert!(!list.iter().any(|e| e.starts_with("tree/64 ")), "whiteout");
        assert!(list.iter().any(|e| e.starts_with("tree/65 ")));
    }
}
