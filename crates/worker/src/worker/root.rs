//! Reading a tree that must be treated as hostile (the build context, another stage's
//! snapshot) through the file descriptor of its root, with chroot semantics: every path
//! resolves as if the root were `/`, so a symlink such as `id.txt -> /home/me/.ssh/id_rsa`, or
//! `up -> ../../..`, leads to the same path *inside* the root (usually nothing), never to the
//! host's file. This is how BuildKit resolves copy sources and mount selectors.
//!
//! Two kinds of open:
//!
//! * [`TreeRoot::resolve`] walks a path one component at a time, reading each link and
//!   splicing its target, and returns the canonical path inside the root (no link left in it)
//!   together with the links it went through. The canonical path is what filters
//!   (`.dockerignore`) and cache keys see.
//! * Every other operation takes a canonical path and opens it with
//!   `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS)` relative to the root's descriptor: the
//!   kernel refuses to follow any link on the way, so a tree changed behind the build's back
//!   (a directory swapped for a link between two calls) gives an error, never a host path.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::FileStat;

/// How many links one resolution may follow (Linux's limit).
const MAX_LINKS: usize = 40;

/// An open directory whose paths resolve inside it.
#[derive(Debug)]
pub(crate) struct TreeRoot {
    fd: OwnedFd,
    path: PathBuf,
}

/// What `lstat` says of one entry of a tree (a link's own, never its target's): the fields a
/// plan, a record and a copy use, and nothing else, since a walk holds one per entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u64,
    dev: u64,
    ino: u64,
    rdev: u64,
    size: u64,
    atime: (i64, i64),
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Meta {
    fn from_stat(st: &FileStat) -> Meta {
        Meta {
            mode: st.st_mode,
            uid: st.st_uid,
            gid: st.st_gid,
            nlink: st.st_nlink,
            dev: st.st_dev,
            ino: st.st_ino,
            rdev: st.st_rdev,
            size: st.st_size as u64,
            atime: (st.st_atime, st.st_atime_nsec),
            mtime: (st.st_mtime, st.st_mtime_nsec),
            ctime: (st.st_ctime, st.st_ctime_nsec),
        }
    }

    /// File type and permission bits, as `st_mode`.
    pub(crate) fn mode(&self) -> u32 {
        self.mode
    }
    /// Owner.
    pub(crate) fn uid(&self) -> u32 {
        self.uid
    }
    /// Group.
    pub(crate) fn gid(&self) -> u32 {
        self.gid
    }
    /// Number of hard links.
    pub(crate) fn nlink(&self) -> u64 {
        self.nlink
    }
    /// Device of the filesystem holding it.
    pub(crate) fn dev(&self) -> u64 {
        self.dev
    }
    /// Inode number.
    pub(crate) fn ino(&self) -> u64 {
        self.ino
    }
    /// Device a device node stands for.
    pub(crate) fn rdev(&self) -> u64 {
        self.rdev
    }
    /// Size in bytes.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }
    /// Access time: seconds and nanoseconds.
    pub(crate) fn atime(&self) -> (i64, i64) {
        self.atime
    }
    /// Modification time: seconds and nanoseconds.
    pub(crate) fn mtime(&self) -> (i64, i64) {
        self.mtime
    }
    /// Status change time: seconds and nanoseconds.
    pub(crate) fn ctime(&self) -> (i64, i64) {
        self.ctime
    }
    fn is(&self, kind: u32) -> bool {
        self.mode & libc::S_IFMT == kind
    }
    /// A regular file.
    pub(crate) fn is_file(&self) -> bool {
        self.is(libc::S_IFREG)
    }
    /// A directory.
    pub(crate) fn is_dir(&self) -> bool {
        self.is(libc::S_IFDIR)
    }
    /// A symbolic link.
    pub(crate) fn is_symlink(&self) -> bool {
        self.is(libc::S_IFLNK)
    }
    /// A FIFO.
    pub(crate) fn is_fifo(&self) -> bool {
        self.is(libc::S_IFIFO)
    }
    /// A character device.
    pub(crate) fn is_char_device(&self) -> bool {
        self.is(libc::S_IFCHR)
    }
    /// A block device.
    pub(crate) fn is_block_device(&self) -> bool {
        self.is(libc::S_IFBLK)
    }
}

/// One directory of a tree, open (opened through the root, like every other open) and listed.
/// Its entries are looked at relative to its descriptor, by a name read from the listing and
/// never followed: a single component that names no link to follow cannot lead out of the
/// directory, so a walk needs one in-root open per directory instead of one per entry.
pub(crate) struct Listing {
    dir: nix::dir::Dir,
    names: Vec<OsString>,
}

impl Listing {
    /// The names in the directory, sorted by their bytes.
    pub(crate) fn names(&self) -> &[OsString] {
        &self.names
    }

    /// The metadata of entry `name` itself (a link's own).
    pub(crate) fn lstat(&self, name: &OsStr) -> io::Result<Meta> {
        let st = nix::sys::stat::fstatat(&self.dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
        Ok(Meta::from_stat(&st))
    }

    /// The target of the link `name`.
    pub(crate) fn read_link(&self, name: &OsStr) -> io::Result<OsString> {
        // readlinkat never follows the link it is asked about, and `name` has no `/`.
        Ok(nix::fcntl::readlinkat(&self.dir, name)?)
    }
}

/// Where [`TreeRoot::resolve`] led.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// The canonical path inside the root, relative (empty for the root itself). Components
    /// that do not exist are kept as written, so opening it reports "not found".
    pub path: PathBuf,
    /// Every link followed on the way, in order: its canonical path and its target.
    pub links: Vec<(PathBuf, OsString)>,
}

impl TreeRoot {
    /// Opens the directory `path` (a path of the host the caller trusts: the context it was
    /// given, a snapshot it mounted). Its canonical host path names it from then on, so the
    /// checksum cache knows a context by one name however it was given.
    pub(crate) fn open(path: &Path) -> io::Result<TreeRoot> {
        let path = std::fs::canonicalize(path)?;
        let fd = nix::fcntl::open(
            &path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(io::Error::from)?;
        Ok(TreeRoot { fd, path })
    }

    /// The host path of the canonical `rel`. Only meaningful for a path [`TreeRoot::resolve`]
    /// returned, on a tree nobody else changes (a snapshot, a private copy).
    pub(crate) fn host_path(&self, rel: &Path) -> PathBuf {
        if rel.as_os_str().is_empty() {
            self.path.clone()
        } else {
            self.path.join(rel)
        }
    }

    /// Opens canonical `rel` with `flags`, following no link at all.
    fn open_at(&self, rel: &Path, flags: OFlag) -> io::Result<OwnedFd> {
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        let how = OpenHow::new()
            .flags(flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
            .resolve(
                ResolveFlag::RESOLVE_IN_ROOT
                    | ResolveFlag::RESOLVE_NO_SYMLINKS
                    | ResolveFlag::RESOLVE_NO_MAGICLINKS,
            );
        openat2(&self.fd, rel, how).map_err(|errno| match errno {
            // A link where the canonical path had none: the tree changed under the build.
            Errno::ELOOP => {
                io::Error::other(format!("{} changed while it was being read", rel.display()))
            }
            other => other.into(),
        })
    }

    /// The metadata of canonical `rel` itself (a link's own, never its target's).
    pub(crate) fn lstat(&self, rel: &Path) -> io::Result<Meta> {
        let fd = self.open_at(rel, OFlag::O_PATH)?;
        Ok(Meta::from_stat(&nix::sys::stat::fstat(&fd)?))
    }

    /// Opens the regular file at canonical `rel` for reading. Anything else (a FIFO, a device
    /// put in its place) is refused without blocking or touching it.
    pub(crate) fn open_file(&self, rel: &Path) -> io::Result<File> {
        let file = File::from(self.open_at(rel, OFlag::O_RDONLY | OFlag::O_NONBLOCK)?);
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a regular file", rel.display()),
            ));
        }
        Ok(file)
    }

    /// Opens the directory at canonical `rel` (for its extended attributes).
    pub(crate) fn open_dir(&self, rel: &Path) -> io::Result<File> {
        Ok(File::from(
            self.open_at(rel, OFlag::O_RDONLY | OFlag::O_DIRECTORY)?,
        ))
    }

    /// The names in the directory at canonical `rel`, sorted by their bytes.
    #[cfg(test)]
    pub(crate) fn list(&self, rel: &Path) -> io::Result<Vec<OsString>> {
        Ok(self.listing(rel)?.names)
    }

    /// Opens and lists the directory at canonical `rel`.
    pub(crate) fn listing(&self, rel: &Path) -> io::Result<Listing> {
        let fd = self.open_at(rel, OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
        let mut dir = nix::dir::Dir::from_fd(fd)?;
        let mut names = Vec::new();
        for entry in dir.iter() {
            let name = entry?.file_name().to_bytes().to_vec();
            if name != b"." && name != b".." {
                names.push(OsString::from(OsStr::from_bytes(&name)));
            }
        }
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        Ok(Listing { dir, names })
    }

    /// The target of the link at canonical `rel`.
    pub(crate) fn read_link(&self, rel: &Path) -> io::Result<OsString> {
        let fd = self.open_at(rel, OFlag::O_PATH)?;
        // An empty path reads the link the O_PATH descriptor refers to.
        Ok(nix::fcntl::readlinkat(&fd, "")?)
    }

    /// Resolves `path` (absolute or relative, from the root either way) inside the root,
    /// following links as the root's own `/` would; the last component is followed only when
    /// `follow_last`. `..` never climbs above the root.
    pub(crate) fn resolve(&self, path: &Path, follow_last: bool) -> io::Result<Resolved> {
        // Components still to walk, last first, so a link's target can be pushed in its place.
        let mut pending: Vec<OsString> = walk_components(path);
        pending.reverse();
        let mut resolved = PathBuf::new();
        let mut links = Vec::new();
        let mut missing = false;
        while let Some(part) = pending.pop() {
            if part == ".." {
                resolved.pop();
                continue;
            }
            let candidate = resolved.join(&part);
            if missing {
                resolved = candidate;
                continue;
            }
            let follow = !pending.is_empty() || follow_last;
            match self.lstat(&candidate) {
                Ok(meta) if meta.is_symlink() && follow => {
                    if links.len() == MAX_LINKS {
                        return Err(io::Error::other(format!(
                            "too many levels of symbolic links in {}",
                            path.display()
                        )));
                    }
                    let target = self.read_link(&candidate)?;
                    if Path::new(&target).is_absolute() {
                        resolved = PathBuf::new();
                    }
                    let mut more = walk_components(Path::new(&target));
                    more.reverse();
                    pending.extend(more);
                    links.push((candidate, target));
                }
                Ok(_) => resolved = candidate,
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => {
                    missing = true;
                    resolved = candidate;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Resolved {
            path: resolved,
            links,
        })
    }
}

/// The components of a path or link target, `.` and the root dropped, `..` kept for the walk.
fn walk_components(path: &Path) -> Vec<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(p.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

/// `rel` as a `/`-separated string, the form filters and patterns match.
pub(crate) fn rel_str(rel: &Path) -> String {
    rel.to_string_lossy().into_owned()
}

/// Reads the regular file `path` inside the directory `root`, resolved as if `root` were `/`:
/// a link leaving `root` leads back inside it. `Ok(None)` when no regular file is there (a
/// directory or a FIFO of that name is not one). For what a client reads from a context it
/// does not trust (a `.dockerignore`, the Dockerfile in an archive or a repository).
pub fn read_file_in_root(root: &Path, path: &Path) -> io::Result<Option<Vec<u8>>> {
    let tree = TreeRoot::open(root)?;
    let resolved = tree.resolve(path, true)?;
    match tree.lstat(&resolved.path) {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => return Ok(None),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => {
            return Ok(None)
        }
        Err(e) => return Err(e),
    }
    let mut file = tree.open_file(&resolved.path)?;
    let mut bytes = Vec::new();
    io::Read::read_to_end(&mut file, &mut bytes)?;
    Ok(Some(bytes))
}

/// The host path of the directory `path` inside `root`, links resolved as if `root` were `/`
/// (a git context's subdirectory). `Ok(None)` when it is not a directory inside `root`.
pub fn dir_in_root(root: &Path, path: &Path) -> io::Result<Option<PathBuf>> {
    let tree = TreeRoot::open(root)?;
    let resolved = tree.resolve(path, true)?;
    match tree.lstat(&resolved.path) {
        Ok(meta) if meta.is_dir() => Ok(Some(tree.host_path(&resolved.path))),
        Ok(_) => Ok(None),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn links_resolve_inside_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret"), "host").unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("real/sub")).unwrap();
        std::fs::write(root.join("real/sub/file"), "inside").unwrap();
        symlink(outside.join("secret"), root.join("abs")).unwrap();
        symlink("../outside/secret", root.join("rel")).unwrap();
        symlink(&outside, root.join("absdir")).unwrap();
        symlink("real", root.join("linkdir")).unwrap();
        symlink("linkdir/sub", root.join("chain")).unwrap();
        symlink("/real/sub/file", root.join("inabs")).unwrap();
        let tree = TreeRoot::open(&root).unwrap();
        // path | follow the last component | canonical path
        let cases = [
            (
                "abs",
                true,
                outside
                    .join("secret")
                    .strip_prefix("/")
                    .unwrap()
                    .to_path_buf(),
            ),
            ("abs", false, PathBuf::from("abs")),
            ("rel", true, PathBuf::from("outside/secret")),
            (
                "absdir/secret",
                true,
                outside
                    .join("secret")
                    .strip_prefix("/")
                    .unwrap()
                    .to_path_buf(),
            ),
            ("linkdir/sub/file", false, PathBuf::from("real/sub/file")),
            ("chain/file", true, PathBuf::from("real/sub/file")),
            ("/inabs", true, PathBuf::from("real/sub/file")),
            ("../../x", true, PathBuf::from("x")),
        ];
        for (path, follow, want) in cases {
            let got = tree.resolve(Path::new(path), follow).unwrap();
            assert_eq!(got.path, want, "{path}");
        }
        let chain = tree.resolve(Path::new("chain/file"), true).unwrap();
        assert_eq!(
            chain.links,
            vec![
                (PathBuf::from("chain"), OsString::from("linkdir/sub")),
                (PathBuf::from("linkdir"), OsString::from("real")),
            ]
        );
        // The escaping links lead to nothing: the host's file is never read.
        for path in ["abs", "rel", "absdir/secret"] {
            let got = read_file_in_root(&root, Path::new(path)).unwrap();
            assert_eq!(got, None, "{path}");
        }
        assert_eq!(
            read_file_in_root(&root, Path::new("chain/file")).unwrap(),
            Some(b"inside".to_vec())
        );
    }

    #[test]
    fn canonical_opens_refuse_links() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("dir")).unwrap();
        std::fs::write(tmp.path().join("dir/f"), "x").unwrap();
        symlink("dir", tmp.path().join("link")).unwrap();
        let tree = TreeRoot::open(tmp.path()).unwrap();
        assert!(tree.open_file(Path::new("dir/f")).is_ok());
        assert!(tree.open_file(Path::new("link/f")).is_err());
        assert!(tree.lstat(Path::new("link")).unwrap().is_symlink());
        assert_eq!(tree.read_link(Path::new("link")).unwrap(), "dir");
        assert_eq!(tree.list(Path::new("")).unwrap(), ["dir", "link"]);
    }

    #[test]
    fn listings_look_at_entries_without_following_them() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret"), "host secret").unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("d")).unwrap();
        std::fs::write(root.join("d/f"), "12345").unwrap();
        symlink(&outside, root.join("d/out")).unwrap();
        symlink(outside.join("secret"), root.join("d/secret")).unwrap();
        nix::unistd::mkfifo(&root.join("d/pipe"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let tree = TreeRoot::open(&root).unwrap();
        let listing = tree.listing(Path::new("d")).unwrap();
        assert_eq!(listing.names(), ["f", "out", "pipe", "secret"]);
        let meta = |name: &str| listing.lstat(OsStr::new(name)).unwrap();
        assert!(meta("f").is_file());
        assert_eq!(meta("f").size(), 5);
        // The link itself, never the host directory or file it names.
        assert!(meta("out").is_symlink());
        assert!(meta("secret").is_symlink());
        assert_eq!(
            listing.read_link(OsStr::new("secret")).unwrap(),
            outside.join("secret").into_os_string()
        );
        // A FIFO is looked at, not opened (an open would block).
        assert!(meta("pipe").is_fifo());
        // The same fields as a stat through the root.
        assert_eq!(meta("f"), tree.lstat(Path::new("d/f")).unwrap());
        // Listing a link to a directory is refused, as every canonical open is.
        assert!(tree.listing(Path::new("d/out")).is_err());
    }
}
