//! One examined tree entry and the bytes it contributes to a checksum.
//!
//! An entry's record holds everything a copy of it carries into an image: type, permission
//! bits, owner (when asked), extended attributes, file content, link target, device number,
//! and which earlier path it is a hardlink of. Modification times are left out, as BuildKit
//! does. Every variable-length field is length-prefixed, so no two different entries (or
//! trees) produce the same bytes.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::ChecksumOptions;
use crate::cache::FileStamp;
use crate::ChecksumError;

/// What kind of entry, with the data a copy reproduces from it.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    File,
    Dir,
    Symlink(Vec<u8>),
    CharDevice(u64),
    BlockDevice(u64),
    Fifo,
    Socket,
}

/// One selected entry of a tree.
#[derive(Debug)]
pub(crate) struct Entry {
    /// Path relative to the root, as raw bytes: names need not be UTF-8, and two names that
    /// differ only in invalid bytes must not hash alike.
    pub rel: Vec<u8>,
    pub abs: PathBuf,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u64,
    pub dev: u64,
    pub stamp: FileStamp,
    /// sha256 of a file's content, once known.
    pub content: Option<[u8; 32]>,
    /// Digest of the extended attributes (`None`: none), once known.
    pub xattrs: Option<[u8; 32]>,
    /// Index (in walk order) of the first selected path of the same inode, for later links of
    /// a hardlinked file: a copy links them to it again, so the checksum says so too.
    pub hardlink_of: Option<usize>,
}

impl Entry {
    /// Examines the entry at `abs` without following a symlink.
    pub(crate) fn examine(rel: Vec<u8>, abs: PathBuf) -> Result<Entry, ChecksumError> {
        let walk_err = |source| ChecksumError::Walk {
            path: abs.clone(),
            source,
        };
        let meta = std::fs::symlink_metadata(&abs).map_err(walk_err)?;
        let file_type = meta.file_type();
        use std::os::unix::fs::FileTypeExt;
        let kind = if file_type.is_file() {
            Kind::File
        } else if file_type.is_dir() {
            Kind::Dir
        } else if file_type.is_symlink() {
            let target = std::fs::read_link(&abs).map_err(walk_err)?;
            Kind::Symlink(target.as_os_str().as_bytes().to_vec())
        } else if file_type.is_char_device() {
            Kind::CharDevice(meta.rdev())
        } else if file_type.is_block_device() {
            Kind::BlockDevice(meta.rdev())
        } else if file_type.is_fifo() {
            Kind::Fifo
        } else {
            Kind::Socket
        };
        Ok(Entry {
            rel,
            kind,
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
            nlink: meta.nlink(),
            dev: meta.dev(),
            stamp: FileStamp {
                size: meta.size(),
                mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
                ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
                inode: meta.ino(),
            },
            content: None,
            xattrs: None,
            hardlink_of: None,
            abs,
        })
    }

    pub(crate) fn is_file(&self) -> bool {
        matches!(self.kind, Kind::File)
    }

    /// Whether the checksum needs this entry's content and attributes read: every entry but
    /// a symlink (whose attributes a copy does not carry) and a later link of a hardlinked
    /// file (which is its first path's inode).
    pub(crate) fn needs_metadata(&self) -> bool {
        self.hardlink_of.is_none() && !matches!(self.kind, Kind::Symlink(_))
    }

    /// The bytes this entry contributes, without its path.
    pub(crate) fn record(&self, entries: &[Entry], options: &ChecksumOptions, out: &mut Vec<u8>) {
        if let Some(first) = self.hardlink_of {
            out.push(b'h');
            field(out, &entries[first].rel);
            return;
        }
        let tag = match &self.kind {
            Kind::File => b'f',
            Kind::Dir => b'd',
            Kind::Symlink(_) => b'l',
            Kind::CharDevice(_) => b'c',
            Kind::BlockDevice(_) => b'b',
            Kind::Fifo => b'p',
            Kind::Socket => b's',
        };
        out.push(tag);
        // Permission, setuid/setgid and sticky bits: what a copy preserves.
        out.extend_from_slice(&(self.mode & 0o7777).to_le_bytes());
        if options.include_ownership {
            out.extend_from_slice(&self.uid.to_le_bytes());
            out.extend_from_slice(&self.gid.to_le_bytes());
        }
        field(out, self.xattrs.as_ref().map_or(&[][..], |x| &x[..]));
        match &self.kind {
            Kind::File => field(out, self.content.as_ref().map_or(&[][..], |c| &c[..])),
            Kind::Symlink(target) => field(out, target),
            Kind::CharDevice(rdev) | Kind::BlockDevice(rdev) => {
                out.extend_from_slice(&rdev.to_le_bytes())
            }
            Kind::Dir | Kind::Fifo | Kind::Socket => {}
        }
    }
}

/// Appends `bytes` with its length in front.
pub(crate) fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Marks every later selected path of a hardlinked file as a link to the first one, in walk
/// order (the order a copy meets them in). Only regular files: the copy relinks only those.
pub(crate) fn link_hardlinks(entries: &mut [Entry]) {
    let mut first: HashMap<(u64, u64), usize> = HashMap::new();
    for (i, entry) in entries.iter_mut().enumerate() {
        if entry.is_file() && entry.nlink > 1 {
            match first.get(&(entry.dev, entry.stamp.inode)) {
                Some(&j) => entry.hardlink_of = Some(j),
                None => {
                    first.insert((entry.dev, entry.stamp.inode), i);
                }
            }
        }
    }
}

/// The digest of the entry's extended attributes, sorted by name; `None` when it has none.
/// overlayfs's own bookkeeping is left out: a copy does not carry it, and a mounted overlay
/// hides it anyway.
pub(crate) fn xattr_digest(path: &Path) -> Result<Option<[u8; 32]>, ChecksumError> {
    let read_err = |source| ChecksumError::Read {
        path: path.to_path_buf(),
        source,
    };
    let names = match xattr::list(path) {
        Ok(names) => names,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(None),
        Err(e) => return Err(read_err(e)),
    };
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for name in names {
        if is_overlay_bookkeeping(&name) {
            continue;
        }
        // Removed between the listing and the read: as if it had never been there.
        if let Some(value) = xattr::get(path, &name).map_err(read_err)? {
            pairs.push((name.as_bytes().to_vec(), value));
        }
    }
    if pairs.is_empty() {
        return Ok(None);
    }
    pairs.sort();
    let mut bytes = Vec::new();
    for (name, value) in &pairs {
        field(&mut bytes, name);
        field(&mut bytes, value);
    }
    Ok(Some(Sha256::digest(&bytes).into()))
}

fn is_overlay_bookkeeping(name: &OsStr) -> bool {
    let name = name.as_bytes();
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

pub(crate) fn hash_file(path: &Path) -> Result<[u8; 32], ChecksumError> {
    let read_err = |source: io::Error| ChecksumError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(read_err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(read_err)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}
