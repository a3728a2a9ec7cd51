//! The final filesystem itself (`--output type=tar` and `type=local`): the snapshot chain
//! flattened into one tree.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::ExportError;
use crate::worker::{copy::copy_tree, Worker, WorkerRef};

/// Writes the tree of `output` as one tar: entries sorted by name, numeric owners only, file
/// times clamped to `source_date_epoch` when given, hard links inside the tree kept as links.
pub fn write_rootfs_tar(
    worker: &Worker,
    output: &WorkerRef,
    source_date_epoch: Option<i64>,
    out: &mut (dyn Write + Send),
) -> Result<(), ExportError> {
    worker.with_tree(output, |root| {
        let mut tar = tar::Builder::new(&mut *out);
        let mut links = std::collections::HashMap::new();
        let at = Place {
            root,
            prefix: Path::new(""),
        };
        append_dir(&mut tar, &at, Path::new(""), source_date_epoch, &mut links)?;
        finish_tar(tar)
    })?
}

/// Writes one tar holding each platform's tree under its directory (`linux_amd64/`,
/// `linux_arm64/`), as BuildKit's multi-platform `tar` output lays them out; entries as
/// [`write_rootfs_tar`] writes them.
pub fn write_platforms_rootfs_tar(
    worker: &Worker,
    outputs: &[(String, WorkerRef)],
    source_date_epoch: Option<i64>,
    out: &mut (dyn Write + Send),
) -> Result<(), ExportError> {
    let mut tar = tar::Builder::new(&mut *out);
    for (dir, output) in outputs {
        let prefix = Path::new(dir);
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o755);
        h.set_mtime(source_date_epoch.unwrap_or(0).max(0) as u64);
        h.set_size(0);
        h.set_entry_type(tar::EntryType::Directory);
        tar.append_data(&mut h, prefix, io::empty())
            .map_err(|source| ExportError::Io {
                what: "writing the root filesystem tar",
                source,
            })?;
        // Hard links never cross platforms: each tree has its own table.
        let mut links = std::collections::HashMap::new();
        worker.with_tree(output, |root| {
            let at = Place { root, prefix };
            append_dir(&mut tar, &at, Path::new(""), source_date_epoch, &mut links)
        })??;
    }
    finish_tar(tar)
}

fn finish_tar<W: Write>(tar: tar::Builder<W>) -> Result<(), ExportError> {
    tar.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(|source| ExportError::Io {
            what: "finishing the root filesystem tar",
            source,
        })
}

/// A tree being archived: read from `root`, named under `prefix` in the tar.
struct Place<'a> {
    root: &'a Path,
    prefix: &'a Path,
}

fn append_dir<W: Write>(
    tar: &mut tar::Builder<W>,
    at: &Place<'_>,
    rel: &Path,
    epoch: Option<i64>,
    links: &mut std::collections::HashMap<(u64, u64), PathBuf>,
) -> Result<(), ExportError> {
    let root = at.root;
    let io_err = |source| ExportError::Io {
        what: "reading the root filesystem",
        source,
    };
    let mut names: Vec<_> = fs::read_dir(root.join(rel))
        .map_err(io_err)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()
        .map_err(io_err)?;
    names.sort();
    for name in names {
        let child = rel.join(&name);
        let path = root.join(&child);
        let entry = at.prefix.join(&child);
        let meta = fs::symlink_metadata(&path).map_err(io_err)?;
        let ft = meta.file_type();
        let mut h = tar::Header::new_gnu();
        h.set_mode(meta.mode() & 0o7777);
        h.set_uid(meta.uid() as u64);
        h.set_gid(meta.gid() as u64);
        let mtime = meta.mtime().max(0);
        h.set_mtime(epoch.map_or(mtime, |e| mtime.min(e.max(0))) as u64);
        h.set_size(0);
        let write_err = |source| ExportError::Io {
            what: "writing the root filesystem tar",
            source,
        };
        if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            tar.append_data(&mut h, &entry, io::empty())
                .map_err(write_err)?;
            append_dir(tar, at, &child, epoch, links)?;
        } else if ft.is_file() {
            if meta.nlink() > 1 {
                if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
                    h.set_entry_type(tar::EntryType::Link);
                    tar.append_link(&mut h, &entry, first).map_err(write_err)?;
                    continue;
                }
                links.insert((meta.dev(), meta.ino()), entry.clone());
            }
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(meta.size());
            let file = fs::File::open(&path).map_err(io_err)?;
            tar.append_data(&mut h, &entry, file).map_err(write_err)?;
        } else if ft.is_symlink() {
            h.set_entry_type(tar::EntryType::Symlink);
            let target = fs::read_link(&path).map_err(io_err)?;
            tar.append_link(&mut h, &entry, &target)
                .map_err(write_err)?;
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            h.set_entry_type(if ft.is_fifo() {
                tar::EntryType::Fifo
            } else if ft.is_char_device() {
                tar::EntryType::Char
            } else {
                tar::EntryType::Block
            });
            let rdev = meta.rdev();
            h.set_device_major(libc::major(rdev)).map_err(write_err)?;
            h.set_device_minor(libc::minor(rdev)).map_err(write_err)?;
            tar.append_data(&mut h, &entry, io::empty())
                .map_err(write_err)?;
        }
    }
    Ok(())
}

/// Copies the tree of `output` into the directory `dest` (created if missing), keeping
/// owners, modes and times.
pub fn write_rootfs_dir(
    worker: &Worker,
    output: &WorkerRef,
    dest: &Path,
) -> Result<(), ExportError> {
    fs::create_dir_all(dest).map_err(|source| ExportError::Io {
        what: "creating the output directory",
        source,
    })?;
    worker.with_tree(output, |root| copy_tree(root, Path::new(""), dest))??;
    Ok(())
}
