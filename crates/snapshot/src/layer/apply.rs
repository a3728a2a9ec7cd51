//! Layer apply: stream-decompress a layer and unpack it into a snapshot directory.
//!
//! The tar is hostile until proven otherwise. Every path is cleaned lexically (`..` is
//! rejected, a leading `/` dropped), then its parent directory is opened with
//! `openat2(RESOLVE_IN_ROOT)`, which resolves symlinks as if the snapshot were `/` — the same
//! scoping Docker applies — so no symlink or absolute link target can lead outside. The last
//! component is then created with `*at` calls relative to that directory fd and never
//! followed (`O_NOFOLLOW`, `O_EXCL`, `AT_SYMLINK_NOFOLLOW`). `Path::join` is never used on a
//! name from the archive.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::fcntl::{openat, openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{mkdirat, mknodat, Mode, SFlag};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, linkat, symlinkat, Gid, Uid};

use super::at::{exists_at, fd_path, is_dir, join, list_dir, os, remove_all_at};
use super::compression::{detect, Compression};
use crate::changes::lookup;
use crate::copy::{copy_metadata, is_overlay_xattr, TreeCopier};
use crate::digest::HashingReader;
use img_llb::Digest;

/// A failure while applying a layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// The archive names a path that would leave the snapshot; nothing after it was applied.
    #[error("unsafe path {path:?} in layer: {reason}; the layer is malformed or hostile")]
    UnsafePath {
        /// The path as written in the archive.
        path: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A hardlink points at a file the layer and its parents do not contain.
    #[error("hardlink {path:?} -> {target:?}: target not found in the snapshot")]
    MissingLinkTarget {
        /// The link being created.
        path: String,
        /// Its target.
        target: String,
    },
    /// The archive holds an entry type a filesystem layer cannot contain.
    #[error("unsupported tar entry type {kind:?} for {path:?}")]
    UnsupportedEntry {
        /// The entry's path.
        path: String,
        /// The tar type flag.
        kind: u8,
    },
    /// Reading the (compressed) archive failed.
    #[error("reading layer archive: {source}")]
    Read {
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Creating or changing a file in the snapshot failed.
    #[error("unpacking {path:?}: {source}")]
    Write {
        /// The entry's path in the archive.
        path: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// Something the applier could not reproduce and skipped; the caller decides whether it
/// matters (rootless builds cannot create device nodes, for example).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApplyWarning {
    /// A device node could not be created (no CAP_MKNOD).
    DeviceSkipped {
        /// The entry's path.
        path: String,
    },
    /// Ownership could not be set (the id is not mapped in this user namespace).
    OwnershipNotSet {
        /// The entry's path.
        path: String,
        /// The wanted uid.
        uid: u64,
        /// The wanted gid.
        gid: u64,
    },
    /// An extended attribute could not be set (e.g. `trusted.*` without privilege).
    XattrNotSet {
        /// The entry's path.
        path: String,
        /// The attribute name.
        name: String,
    },
}

/// How deletions in the layer are realised in the target directory.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WhiteoutStyle {
    /// The target is a full tree: delete what whiteouts name.
    #[default]
    Delete,
    /// The target is an overlayfs upper directory over `lowers` (nearest first): write
    /// overlay whiteouts (0/0 character devices) and opaque xattrs under `xattr_prefix`
    /// (`"user.overlay."` for `userxattr` mounts, `"trusted.overlay."` otherwise).
    Overlay {
        /// The parent snapshots' directories, nearest first.
        lowers: Vec<PathBuf>,
        /// The overlay xattr namespace.
        xattr_prefix: String,
    },
}

/// How to apply a layer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApplyOptions {
    /// How whiteouts are written.
    pub whiteouts: WhiteoutStyle,
}

/// The result of applying a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    /// The sha256 of the uncompressed tar, to check against the image config's diff_ids.
    pub diff_id: Digest,
    /// The compression detected.
    pub compression: Compression,
    /// Entries applied.
    pub entries: u64,
    /// What was skipped.
    pub warnings: Vec<ApplyWarning>,
}

/// Applies the layer read from `reader` (gzip, zstd or plain tar, detected by magic) to the
/// directory `root`.
pub fn apply_layer(
    reader: impl Read,
    root: &Path,
    options: &ApplyOptions,
) -> Result<ApplyReport, ApplyError> {
    let read_err = |source| ApplyError::Read { source };
    let mut buffered = BufReader::with_capacity(1 << 20, reader);
    let compression = detect(buffered.fill_buf().map_err(read_err)?);
    let decoded: Box<dyn Read> = match compression {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(buffered)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::with_buffer(buffered).map_err(read_err)?)
        }
        Compression::Uncompressed => Box::new(buffered),
    };
    let mut hashing = HashingReader::new(decoded);
    let root_fd = nix::fcntl::open(
        root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ApplyError::Write {
        path: root.display().to_string(),
        source: e.into(),
    })?;
    let mut unpacker = Unpacker {
        root: root_fd,
        style: options.whiteouts.clone(),
        written: HashSet::new(),
        dir_times: Vec::new(),
        warnings: Vec::new(),
        entries: 0,
    };
    {
        let mut archive = tar::Archive::new(&mut hashing);
        for entry in archive.entries().map_err(read_err)? {
            let mut entry = entry.map_err(read_err)?;
            unpacker.entry(&mut entry)?;
        }
    }
    // The diffID covers the whole stream, including the zero blocks after the last entry.
    io::copy(&mut hashing, &mut io::sink()).map_err(read_err)?;
    unpacker.finish_dirs()?;
    let (_, diff_id) = hashing.finish();
    Ok(ApplyReport {
        diff_id,
        compression,
        entries: unpacker.entries,
        warnings: unpacker.warnings,
    })
}

struct Unpacker {
    root: OwnedFd,
    style: WhiteoutStyle,
    /// Paths this layer created, which an opaque whiteout in the same layer must keep.
    written: HashSet<Vec<u8>>,
    /// Directories' final modes and mtimes, applied after their contents.
    dir_times: Vec<(Vec<u8>, u32, i64)>,
    warnings: Vec<ApplyWarning>,
    entries: u64,
}

/// Splits an archive path into clean components: drops empty and `.` parts (so a leading `/`
/// is relative to the snapshot) and refuses `..`.
fn clean(raw: &[u8]) -> Result<Vec<&[u8]>, ApplyError> {
    let mut out = Vec::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                return Err(ApplyError::UnsafePath {
                    path: String::from_utf8_lossy(raw).into_owned(),
                    reason: "contains a '..' component",
                })
            }
            p => out.push(p),
        }
    }
    Ok(out)
}

impl Unpacker {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), ApplyError> {
        let raw = entry.path_bytes().into_owned();
        let display = String::from_utf8_lossy(&raw).into_owned();
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader
                | tar::EntryType::XHeader
                | tar::EntryType::GNULongName
                | tar::EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let comps = clean(&raw)?;
        let Some((&name, parent)) = comps.split_last() else {
            // The root entry ("./"): the snapshot root keeps its own metadata.
            return Ok(());
        };
        self.entries += 1;
        let werr = |source: io::Error| ApplyError::Write {
            path: display.clone(),
            source,
        };
        if name == b".wh..wh..opq" {
            return self.opaque(parent).map_err(werr);
        }
        if let Some(target) = name.strip_prefix(b".wh.") {
            if target.is_empty() || target == b"." || target == b".." {
                return Err(ApplyError::UnsafePath {
                    path: display,
                    reason: "whiteout names no entry",
                });
            }
            return self.whiteout(parent, target).map_err(werr);
        }
        let dir = self.open_dir(parent, true).map_err(werr)?;
        let full = join(&comps);
        if kind == tar::EntryType::Link {
            // A hardlink shares its target's inode: the entry's own mode, owner and time
            // fields mean nothing (and are often left blank).
            let target = entry
                .link_name_bytes()
                .map(|t| t.into_owned())
                .unwrap_or_default();
            self.hardlink(&dir, name, &display, &target)?;
            self.written.insert(full);
            return Ok(());
        }
        let xattrs = read_pax_xattrs(entry).map_err(werr)?;
        let header = entry.header().clone();
        let mode = header.mode().map_err(werr)? & 0o7777;
        let uid = header.uid().map_err(werr)?;
        let gid = header.gid().map_err(werr)?;
        let mtime = header.mtime().map_err(werr)? as i64;
        match kind {
            tar::EntryType::Directory => {
                match exists_at(&dir, name).map_err(werr)? {
                    Some(st) if is_dir(&st) => {}
                    Some(_) => {
                        remove_all_at(&dir, name).map_err(werr)?;
                        mkdirat(&dir, os(name), Mode::from_bits_truncate(0o700))
                            .map_err(|e| werr(e.into()))?;
                    }
                    None => mkdirat(&dir, os(name), Mode::from_bits_truncate(0o700))
                        .map_err(|e| werr(e.into()))?,
                }
                let fd = openat(
                    &dir,
                    os(name),
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| werr(e.into()))?;
                // Owner write and search stay on until the end, so an unprivileged applier can
                // still fill a directory whose final mode is read-only (e.g. 0555).
                self.set_file_meta(
                    &File::from(fd),
                    &display,
                    mode | 0o700,
                    uid,
                    gid,
                    &xattrs,
                    None,
                )
                .map_err(werr)?;
                self.dir_times.push((full.clone(), mode, mtime));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                remove_all_at(&dir, name).map_err(werr)?;
                let fd = openat(
                    &dir,
                    os(name),
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(|e| werr(e.into()))?;
                let mut file = File::from(fd);
                io::copy(entry, &mut file).map_err(|source| ApplyError::Read { source })?;
                self.set_file_meta(&file, &display, mode, uid, gid, &xattrs, Some(mtime))
                    .map_err(werr)?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                remove_all_at(&dir, name).map_err(werr)?;
                symlinkat(os(&target), &dir, os(name)).map_err(|e| werr(e.into()))?;
                self.set_at_meta(&dir, name, &display, None, uid, gid, &xattrs, mtime)
                    .map_err(werr)?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let (sflag, dev) = match kind {
                    tar::EntryType::Fifo => (SFlag::S_IFIFO, 0),
                    _ => {
                        let major = header.device_major().map_err(werr)?.unwrap_or(0);
                        let minor = header.device_minor().map_err(werr)?.unwrap_or(0);
                        let sflag = if kind == tar::EntryType::Char {
                            SFlag::S_IFCHR
                        } else {
                            SFlag::S_IFBLK
                        };
                        (sflag, libc::makedev(major, minor))
                    }
                };
                remove_all_at(&dir, name).map_err(werr)?;
                match mknodat(&dir, os(name), sflag, Mode::from_bits_truncate(0o600), dev) {
                    Ok(()) => {}
                    Err(Errno::EPERM) if sflag != SFlag::S_IFIFO => {
                        self.warnings
                            .push(ApplyWarning::DeviceSkipped { path: display });
                        return Ok(());
                    }
                    Err(e) => return Err(werr(e.into())),
                }
                self.set_at_meta(&dir, name, &display, Some(mode), uid, gid, &xattrs, mtime)
                    .map_err(werr)?;
            }
            other => {
                return Err(ApplyError::UnsupportedEntry {
                    path: display,
                    kind: other.as_byte(),
                });
            }
        }
        self.written.insert(full);
        Ok(())
    }

    /// Opens the directory at `comps` under the root, creating missing components.
    fn open_dir(&self, comps: &[&[u8]], create: bool) -> io::Result<OwnedFd> {
        match self.resolve(comps) {
            Err(e) if create && e.raw_os_error() == Some(libc::ENOENT) => {}
            other => return other,
        }
        let owned: Vec<Vec<u8>> = comps.iter().map(|c| c.to_vec()).collect();
        self.create_dirs(owned, 0)
    }

    fn create_dirs(&self, comps: Vec<Vec<u8>>, depth: u32) -> io::Result<OwnedFd> {
        // The kernel's own limit on symlinks followed in one lookup.
        if depth > 40 {
            return Err(io::Error::from_raw_os_error(libc::ELOOP));
        }
        let refs: Vec<&[u8]> = comps.iter().map(|c| c.as_slice()).collect();
        let mut dir = self.resolve(&[])?;
        for i in 0..refs.len() {
            match self.resolve(&refs[..=i]) {
                Ok(fd) => dir = fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    let existing = exists_at(&dir, refs[i])?;
                    if existing.is_some_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFLNK) {
                        // A dangling symlink: create its target, scoped to the root as the
                        // kernel would resolve it there.
                        let target = nix::fcntl::readlinkat(&dir, os(refs[i]))?;
                        let mut next: Vec<Vec<u8>> = if target.as_bytes().starts_with(b"/") {
                            Vec::new()
                        } else {
                            comps[..i].to_vec()
                        };
                        for part in target.as_bytes().split(|&b| b == b'/') {
                            match part {
                                b"" | b"." => {}
                                b".." => {
                                    next.pop();
                                }
                                p => next.push(p.to_vec()),
                            }
                        }
                        next.extend(comps[i + 1..].iter().cloned());
                        return self.create_dirs(next, depth + 1);
                    }
                    mkdirat(&dir, os(refs[i]), Mode::from_bits_truncate(0o755))?;
                    self.inherit_lower_dir_meta(&dir, &refs[..=i])?;
                    dir = self.resolve(&refs[..=i])?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(dir)
    }

    fn resolve(&self, comps: &[&[u8]]) -> io::Result<OwnedFd> {
        let path = if comps.is_empty() {
            b".".to_vec()
        } else {
            join(comps)
        };
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        Ok(openat2(&self.root, os(&path), how)?)
    }

    /// In an overlay upper directory, a directory created only to hold a new entry must carry
    /// the metadata of the lower directory it merges with: the upper one's wins in the view.
    fn inherit_lower_dir_meta(&self, parent: &OwnedFd, comps: &[&[u8]]) -> io::Result<()> {
        let WhiteoutStyle::Overlay { lowers, .. } = &self.style else {
            return Ok(());
        };
        let rel = PathBuf::from(os(&join(comps)));
        if let Some(lower) = lookup(lowers, &rel)? {
            let meta = std::fs::symlink_metadata(&lower)?;
            if meta.is_dir() {
                let name = comps[comps.len() - 1];
                copy_metadata(&lower, &fd_path(parent, name), &meta)?;
            }
        }
        Ok(())
    }

    fn whiteout(&mut self, parent: &[&[u8]], target: &[u8]) -> io::Result<()> {
        match &self.style {
            WhiteoutStyle::Delete => match self.open_dir(parent, false) {
                Ok(dir) => remove_all_at(&dir, target),
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => Ok(()),
                Err(e) => Err(e),
            },
            WhiteoutStyle::Overlay { .. } => {
                let dir = self.open_dir(parent, true)?;
                remove_all_at(&dir, target)?;
                // Overlay whiteouts are 0/0 character devices; the kernel lets unprivileged
                // users create exactly this device node.
                Ok(mknodat(
                    &dir,
                    os(target),
                    SFlag::S_IFCHR,
                    Mode::empty(),
                    libc::makedev(0, 0),
                )?)
            }
        }
    }

    fn opaque(&mut self, parent: &[&[u8]]) -> io::Result<()> {
        let overlay = matches!(self.style, WhiteoutStyle::Overlay { .. });
        let dir = match self.open_dir(parent, overlay) {
            Ok(dir) => dir,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
                return Ok(())
            }
            Err(e) => return Err(e),
        };
        let prefix = join(parent);
        for child in list_dir(&dir)? {
            let mut full = prefix.clone();
            if !full.is_empty() {
                full.push(b'/');
            }
            full.extend_from_slice(&child);
            if !self.written.contains(&full) {
                remove_all_at(&dir, &child)?;
            }
        }
        if let WhiteoutStyle::Overlay { xattr_prefix, .. } = &self.style {
            let fd = openat(
                &dir,
                ".",
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            xattr::FileExt::set_xattr(&File::from(fd), format!("{xattr_prefix}opaque"), b"y")?;
        }
        Ok(())
    }

    fn hardlink(
        &mut self,
        dir: &OwnedFd,
        name: &[u8],
        display: &str,
        target: &[u8],
    ) -> Result<(), ApplyError> {
        let werr = |source: io::Error| ApplyError::Write {
            path: display.to_owned(),
            source,
        };
        let tcomps = clean(target)?;
        let missing = || ApplyError::MissingLinkTarget {
            path: display.to_owned(),
            target: String::from_utf8_lossy(target).into_owned(),
        };
        let Some((&tname, tparent)) = tcomps.split_last() else {
            return Err(missing());
        };
        let tdir = match self.open_dir(tparent, false) {
            Ok(fd) => fd,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
                return Err(missing())
            }
            Err(e) => return Err(werr(e)),
        };
        let tstat = match exists_at(&tdir, tname).map_err(werr)? {
            Some(st) => st,
            None => self
                .copy_up(&tcomps, &tdir, tname)
                .map_err(werr)?
                .ok_or_else(missing)?,
        };
        if is_dir(&tstat) {
            return Err(ApplyError::UnsafePath {
                path: display.to_owned(),
                reason: "hardlink to a directory",
            });
        }
        if let Some(st) = exists_at(dir, name).map_err(werr)? {
            if st.st_ino == tstat.st_ino && st.st_dev == tstat.st_dev {
                return Ok(());
            }
            remove_all_at(dir, name).map_err(werr)?;
        }
        // No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself.
        linkat(&tdir, os(tname), dir, os(name), AtFlags::empty()).map_err(|e| werr(e.into()))?;
        Ok(())
    }

    /// A hardlink in an overlay upper directory to a file only in a lower layer: copy the file
    /// up first, as overlayfs itself would before linking.
    fn copy_up(
        &self,
        comps: &[&[u8]],
        tdir: &OwnedFd,
        tname: &[u8],
    ) -> io::Result<Option<nix::sys::stat::FileStat>> {
        let WhiteoutStyle::Overlay { lowers, .. } = &self.style else {
            return Ok(None);
        };
        let rel = PathBuf::from(os(&join(comps)));
        let Some(lower) = lookup(lowers, &rel)? else {
            return Ok(None);
        };
        if std::fs::symlink_metadata(&lower)?.is_dir() {
            return Ok(None);
        }
        TreeCopier::new().copy_entry(&lower, &fd_path(tdir, tname))?;
        exists_at(tdir, tname)
    }

    #[allow(clippy::too_many_arguments)]
    fn set_file_meta(
        &mut self,
        file: &File,
        display: &str,
        mode: u32,
        uid: u64,
        gid: u64,
        xattrs: &[(OsString, Vec<u8>)],
        mtime: Option<i64>,
    ) -> io::Result<()> {
        let ids = u32::try_from(uid).ok().zip(u32::try_from(gid).ok());
        let result = match ids {
            Some((u, g)) => std::os::unix::fs::fchown(file, Some(u), Some(g)),
            None => Err(io::Error::from_raw_os_error(libc::EINVAL)),
        };
        match result {
            Ok(()) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EINVAL)) => {
                self.warnings.push(ApplyWarning::OwnershipNotSet {
                    path: display.to_owned(),
                    uid,
                    gid,
                });
            }
            Err(e) => return Err(e),
        }
        // After chown, which clears setuid/setgid.
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        for (name, value) in xattrs {
            if let Err(e) = xattr::FileExt::set_xattr(file, name, value) {
                self.xattr_failed(display, name, e)?;
            }
        }
        if let Some(mtime) = mtime {
            let t = TimeSpec::new(mtime, 0);
            nix::sys::stat::futimens(file, &t, &t)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn set_at_meta(
        &mut self,
        dir: &OwnedFd,
        name: &[u8],
        display: &str,
        mode: Option<u32>,
        uid: u64,
        gid: u64,
        xattrs: &[(OsString, Vec<u8>)],
        mtime: i64,
    ) -> io::Result<()> {
        let ids = u32::try_from(uid).ok().zip(u32::try_from(gid).ok());
        let result = match ids {
            Some((u, g)) => fchownat(
                dir,
                os(name),
                Some(Uid::from_raw(u)),
                Some(Gid::from_raw(g)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            ),
            None => Err(Errno::EINVAL),
        };
        match result {
            Ok(()) => {}
            Err(Errno::EPERM | Errno::EINVAL) => {
                self.warnings.push(ApplyWarning::OwnershipNotSet {
                    path: display.to_owned(),
                    uid,
                    gid,
                });
            }
            Err(e) => return Err(e.into()),
        }
        if let Some(mode) = mode {
            // Only for device nodes and fifos just created by mknodat (never a symlink).
            nix::sys::stat::fchmodat(
                dir,
                os(name),
                Mode::from_bits_truncate(mode),
                nix::sys::stat::FchmodatFlags::FollowSymlink,
            )?;
        }
        let path = fd_path(dir, name);
        for (xname, value) in xattrs {
            if let Err(e) = xattr::set(&path, xname, value) {
                self.xattr_failed(display, xname, e)?;
            }
        }
        let t = TimeSpec::new(mtime, 0);
        nix::sys::stat::utimensat(
            dir,
            os(name),
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )?;
        Ok(())
    }

    fn xattr_failed(&mut self, display: &str, name: &OsStr, e: io::Error) -> io::Result<()> {
        if matches!(
            e.raw_os_error(),
            Some(libc::EPERM | libc::ENOTSUP | libc::EACCES)
        ) {
            self.warnings.push(ApplyWarning::XattrNotSet {
                path: display.to_owned(),
                name: name.to_string_lossy().into_owned(),
            });
            Ok(())
        } else {
            Err(e)
        }
    }

    /// Directory modes and mtimes last, deepest first: creating children changes mtimes, and
    /// a read-only mode would block the children.
    fn finish_dirs(&mut self) -> Result<(), ApplyError> {
        for (path, mode, mtime) in std::mem::take(&mut self.dir_times).into_iter().rev() {
            let comps: Vec<&[u8]> = path.split(|&b| b == b'/').collect();
            let display = String::from_utf8_lossy(&path).into_owned();
            let werr = |source: io::Error| ApplyError::Write {
                path: display.clone(),
                source,
            };
            let how = OpenHow::new()
                .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
                .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
            // A later entry may have replaced the directory; then there is nothing to finish.
            let Ok(fd) = openat2(&self.root, os(&join(&comps)), how) else {
                continue;
            };
            let dir = File::from(fd);
            dir.set_permissions(std::fs::Permissions::from_mode(mode))
                .map_err(werr)?;
            let t = TimeSpec::new(mtime, 0);
            nix::sys::stat::futimens(&dir, &t, &t).map_err(|e| werr(e.into()))?;
        }
        Ok(())
    }
}

/// The entry's xattrs from `SCHILY.xattr.*` PAX records, without overlayfs's own (which would
/// change how an overlay mount reads the snapshot).
fn read_pax_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Vec<(OsString, Vec<u8>)>> {
    let mut out = Vec::new();
    if let Some(exts) = entry.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            if let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                let name = OsStr::from_bytes(name).to_owned();
                if !is_overlay_xattr(&name) {
                    out.push((name, ext.value_bytes().to_vec()));
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_paths() {
        let ok: &[(&str, &[&str])] = &[
            ("a/b", &["a", "b"]),
            ("/abs/x", &["abs", "x"]),
            ("./a//b/.", &["a", "b"]),
            ("./", &[]),
        ];
        for (raw, want) in ok {
            let got: Vec<&[u8]> = clean(raw.as_bytes()).unwrap();
            let want: Vec<&[u8]> = want.iter().map(|s| s.as_bytes()).collect();
            assert_eq!(got, want, "{raw}");
        }
        for bad in ["..", "a/../../b", "../x", "/.."] {
            assert!(clean(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
