//! Shared test helpers: a fresh store per test, tree builders and tree summaries.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use img_snapshot::{StateDir, Store};

pub struct TestStore {
    pub dir: tempfile::TempDir,
    pub store: Store,
}

pub fn store() -> TestStore {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StateDir::at(dir.path().join("state"))).unwrap();
    TestStore { dir, store }
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// One entry of a tree as a layer round trip must preserve it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub content: Option<Vec<u8>>,
    pub target: Option<PathBuf>,
    pub rdev: u64,
    pub xattrs: Vec<(String, Vec<u8>)>,
    /// The first path (in sorted order) sharing this inode, for hardlinked files.
    pub link_group: Option<PathBuf>,
}

/// Summarises every entry under `root` (the root itself excluded).
pub fn summarize(root: &Path) -> BTreeMap<PathBuf, Summary> {
    let mut out = BTreeMap::new();
    let mut first_by_inode: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let mut paths = Vec::new();
    collect(root, Path::new(""), &mut paths);
    paths.sort();
    for rel in paths {
        let p = root.join(&rel);
        let m = fs::symlink_metadata(&p).unwrap();
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_file() {
            "file"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_char_device() {
            "char"
        } else if ft.is_block_device() {
            "block"
        } else if ft.is_fifo() {
            "fifo"
        } else {
            "other"
        };
        let link_group = if ft.is_file() && m.nlink() > 1 {
            Some(
                first_by_inode
                    .entry((m.dev(), m.ino()))
                    .or_insert_with(|| rel.clone())
                    .clone(),
            )
        } else {
            None
        };
        let mut xattrs: Vec<(String, Vec<u8>)> = xattr::list(&p)
            .map(|names| {
                names
                    .filter(|n| !n.to_string_lossy().contains(".overlay."))
                    .filter_map(|n| {
                        xattr::get(&p, &n)
                            .ok()
                            .flatten()
                            .map(|v| (n.to_string_lossy().into_owned(), v))
                    })
                    .collect()
            })
            .unwrap_or_default();
        xattrs.sort();
        out.insert(
            rel.clone(),
            Summary {
                kind,
                mode: if ft.is_symlink() {
                    0
                } else {
                    m.mode() & 0o7777
                },
                uid: m.uid(),
                gid: m.gid(),
                mtime: if ft.is_symlink() { 0 } else { m.mtime() },
                content: ft.is_file().then(|| fs::read(&p).unwrap()),
                target: ft.is_symlink().then(|| fs::read_link(&p).unwrap()),
                rdev: if ft.is_char_device() || ft.is_block_device() {
                    m.rdev()
                } else {
                    0
                },
                xattrs,
                link_group,
            },
        );
    }
    out
}

fn collect(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(root.join(rel)).unwrap() {
        let e = e.unwrap();
        let child = rel.join(e.file_name());
        out.push(child.clone());
        if e.file_type().unwrap().is_dir() {
            collect(root, &child, out);
        }
    }
}

pub fn set_mtime(path: &Path, secs: i64) {
    let t = nix::sys::time::TimeSpec::new(secs, 0);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
}

/// A tree exercising everything a layer must carry. Devices and foreign ownership only as root.
pub fn build_rich_tree(root: &Path) {
    fs::create_dir_all(root.join("dir/sub")).unwrap();
    fs::write(root.join("dir/file"), b"hello world\n").unwrap();
    fs::write(root.join("dir/exec"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(root.join("dir/exec"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::write(root.join("dir/sub/big"), vec![7u8; 300_000]).unwrap();
    xattr::set(root.join("dir/file"), "user.comment", b"kept").unwrap();
    fs::write(root.join("hard1"), b"linked").unwrap();
    fs::hard_link(root.join("hard1"), root.join("dir/hard2")).unwrap();
    std::os::unix::fs::symlink("dir/file", root.join("link")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/abs", root.join("abslink")).unwrap();
    nix::unistd::mkfifo(
        &root.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .unwrap();
    fs::create_dir(root.join("private")).unwrap();
    fs::set_permissions(root.join("private"), fs::Permissions::from_mode(0o700)).unwrap();
    let long_dir = root.join("a".repeat(60)).join("b".repeat(60));
    fs::create_dir_all(&long_dir).unwrap();
    fs::write(long_dir.join("c".repeat(120)), b"long name").unwrap();
    std::os::unix::fs::symlink("t".repeat(150), root.join("longtarget")).unwrap();
    if is_root() {
        fs::write(root.join("owned"), b"x").unwrap();
        std::os::unix::fs::lchown(root.join("owned"), Some(1234), Some(5678)).unwrap();
        nix::sys::stat::mknod(
            &root.join("null"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            libc::makedev(1, 3),
        )
        .unwrap();
        xattr::set(
            root.join("dir/exec"),
            "security.capability",
            &cap_net_bind(),
        )
        .unwrap();
    }
    set_all_mtimes(root, 1_600_000_000);
}

/// A v2 file capability granting cap_net_bind_service (permitted + effective).
fn cap_net_bind() -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&0x0200_0001u32.to_le_bytes());
    v.extend_from_slice(&(1u32 << 10).to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v
}

/// Sets whole-second mtimes everywhere (tar keeps seconds), deepest first.
pub fn set_all_mtimes(root: &Path, secs: i64) {
    let mut paths = Vec::new();
    collect(root, Path::new(""), &mut paths);
    paths.sort();
    for rel in paths.iter().rev() {
        set_mtime(&root.join(rel), secs);
    }
    set_mtime(root, secs);
}

/// Set to `1` (by `cargo xtask test`, which installs every tool the tests use) to make a test
/// whose tool or kernel feature is missing fail instead of skipping.
pub const REQUIRE_TOOLS: &str = "IMG_TEST_REQUIRE_TOOLS";

/// A test cannot run here because `reason`: a failure when [`REQUIRE_TOOLS`] is `1`, else a
/// skip that says so (and how to make it a failure).
pub fn cannot_run(reason: &str) {
    if std::env::var_os(REQUIRE_TOOLS).is_some_and(|v| v == "1") {
        panic!("{reason}, and {REQUIRE_TOOLS}=1 requires every tool and kernel feature");
    }
    println!("skipping: {reason} (with {REQUIRE_TOOLS}=1 this fails)");
}
