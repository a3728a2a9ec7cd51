//! Image archives: an OCI image layout in a tar (`--output type=oci`, `skopeo
//! oci-archive:`) and Docker's `docker save` format (`--output type=docker`, `docker load`,
//! `podman load`). Both are written deterministically: sorted entries, fixed owners, modes and
//! times, so the same image gives the same archive bytes.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, Write};

use img_snapshot::{ContentStore, Digest, REF_NAME_ANNOTATION};
use serde_json::json;

use super::index::{ExportedIndex, OCI_INDEX};
use super::kernel_copy::copy_into;
use super::{ExportError, ExportedImage};

/// Where an archive goes.
pub enum ArchiveOutput<'a> {
    /// An open file or pipe (a regular file, or standard output): blobs are copied by the
    /// kernel (`copy_file_range`, else `sendfile`), never through this process's buffers, and
    /// the file is written from its current offset.
    File(&'a File),
    /// Any writer; blobs are copied through a buffer.
    Writer(&'a mut (dyn Write + Send)),
}

impl<'a> From<&'a File> for ArchiveOutput<'a> {
    fn from(file: &'a File) -> Self {
        ArchiveOutput::File(file)
    }
}

impl<'a, W: Write + Send> From<&'a mut W> for ArchiveOutput<'a> {
    fn from(writer: &'a mut W) -> Self {
        ArchiveOutput::Writer(writer)
    }
}

fn io_err(what: &'static str) -> impl Fn(io::Error) -> ExportError {
    move |source| ExportError::Io { what, source }
}

/// A tar written entry by entry, byte for byte as `tar::Builder` writes it (the same headers,
/// zero padding to 512 bytes, two zero blocks at the end), with file contents moved by the
/// kernel when the output is a file.
struct ArchiveWriter<'a> {
    out: ArchiveOutput<'a>,
    /// Headers and small entries not yet written: few, large writes to the file.
    pending: Vec<u8>,
}

impl<'a> ArchiveWriter<'a> {
    fn new(out: ArchiveOutput<'a>) -> Self {
        ArchiveWriter {
            out,
            pending: Vec::with_capacity(64 << 10),
        }
    }

    fn header(&mut self, path: &str, size: u64, mode: u32, kind: tar::EntryType) -> io::Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_size(size);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_entry_type(kind);
        // Every name written here (`blobs/sha256/<hex>`, `<hex>/layer.tar`, fixed names) fits
        // the ustar fields.
        h.set_path(path)?;
        h.set_cksum();
        self.pending.extend_from_slice(h.as_bytes());
        Ok(())
    }

    fn pad(&mut self, size: u64) {
        let rem = (size % 512) as usize;
        if rem != 0 {
            self.pending.resize(self.pending.len() + 512 - rem, 0);
        }
    }

    fn dir(&mut self, path: &str) -> Result<(), ExportError> {
        self.header(path, 0, 0o755, tar::EntryType::Directory)
            .map_err(io_err("writing the archive"))
    }

    fn bytes(&mut self, path: &str, bytes: &[u8]) -> Result<(), ExportError> {
        self.header(path, bytes.len() as u64, 0o644, tar::EntryType::Regular)
            .map_err(io_err("writing the archive"))?;
        self.pending.extend_from_slice(bytes);
        self.pad(bytes.len() as u64);
        Ok(())
    }

    /// Appends `size` bytes of `file` from its start.
    fn file(&mut self, path: &str, file: &File, size: u64) -> Result<(), ExportError> {
        self.header(path, size, 0o644, tar::EntryType::Regular)
            .map_err(io_err("writing the archive"))?;
        self.flush_pending()?;
        match &mut self.out {
            ArchiveOutput::File(out) => {
                copy_into(file, out, size).map_err(io_err("copying a blob into the archive"))?;
            }
            ArchiveOutput::Writer(out) => {
                let copied = io::copy(&mut io::Read::take(file, size), out)
                    .map_err(io_err("copying a blob into the archive"))?;
                if copied != size {
                    return Err(ExportError::Io {
                        what: "copying a blob into the archive",
                        source: io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("the blob has {copied} bytes, {size} expected"),
                        ),
                    });
                }
            }
        }
        self.pad(size);
        Ok(())
    }

    fn flush_pending(&mut self) -> Result<(), ExportError> {
        let result = match &mut self.out {
            ArchiveOutput::File(out) => out.write_all(&self.pending),
            ArchiveOutput::Writer(out) => out.write_all(&self.pending),
        };
        self.pending.clear();
        result.map_err(io_err("writing the archive"))
    }

    /// The end-of-archive marker: two zero blocks.
    fn finish(mut self) -> Result<(), ExportError> {
        self.pending.resize(self.pending.len() + 1024, 0);
        self.flush_pending()?;
        match &mut self.out {
            ArchiveOutput::File(out) => out.flush(),
            ArchiveOutput::Writer(out) => out.flush(),
        }
        .map_err(io_err("finishing the archive"))
    }
}

fn add_blob(
    tar: &mut ArchiveWriter<'_>,
    content: &ContentStore,
    path: &str,
    digest: &Digest,
) -> Result<(), ExportError> {
    let file = content.open(digest)?;
    let size = file
        .metadata()
        .map_err(io_err("reading a blob's size"))?
        .len();
    tar.file(path, &file, size)
}

/// A name of the image in an OCI archive's `index.json`, as BuildKit's OCI exporter writes it:
/// the full name as `io.containerd.image.name` (what `img load`, `ctr import` and `docker load`
/// name the image by) and the tag as `org.opencontainers.image.ref.name` (what `skopeo
/// oci-archive:FILE:TAG` and `umoci --image DIR:TAG` select by).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciName {
    /// The full name, `registry/repository:tag`; `None` writes only the ref name.
    pub full: Option<String>,
    /// The ref name, usually the tag.
    pub ref_name: String,
}

impl From<&str> for OciName {
    /// A ref name alone.
    fn from(ref_name: &str) -> Self {
        OciName {
            full: None,
            ref_name: ref_name.to_owned(),
        }
    }
}

/// The containerd annotation naming an image by its full name.
const CONTAINERD_IMAGE_NAME: &str = "io.containerd.image.name";

/// Writes `image` as an OCI image layout tar: `oci-layout`, `index.json` (one entry per name,
/// annotated as [`OciName`] says; one unnamed entry without names) and every blob.
pub fn write_oci_archive<'a>(
    content: &ContentStore,
    image: &ExportedImage,
    names: &[OciName],
    out: impl Into<ArchiveOutput<'a>>,
) -> Result<(), ExportError> {
    let top = Top {
        media_type: &image.manifest_media_type,
        digest: &image.manifest_digest,
        size: image.manifest.len(),
        annotations: &image.descriptor_annotations,
    };
    write_layout(content, &top, image_blobs(image), names, out.into())
}

/// Writes a multi-platform `index` as an OCI image layout tar: `index.json` names the index
/// (as [`write_oci_archive`] names an image), and the blobs hold the index, every platform's
/// manifest, config and layers.
pub fn write_oci_index_archive<'a>(
    content: &ContentStore,
    index: &ExportedIndex,
    names: &[OciName],
    out: impl Into<ArchiveOutput<'a>>,
) -> Result<(), ExportError> {
    let top = Top {
        media_type: &index.media_type,
        digest: &index.digest,
        size: index.bytes.len(),
        annotations: &index.descriptor_annotations,
    };
    let mut blobs = vec![&index.digest];
    for (_, image) in &index.images {
        blobs.extend(image_blobs(image));
    }
    blobs.extend(&index.attached_blobs);
    write_layout(content, &top, blobs, names, out.into())
}

/// What an archive's `index.json` points at.
struct Top<'a> {
    media_type: &'a str,
    digest: &'a Digest,
    size: usize,
    /// `--annotation manifest-descriptor:…` of a single image, `index-descriptor:…` of an index.
    annotations: &'a BTreeMap<String, String>,
}

fn image_blobs(image: &ExportedImage) -> Vec<&Digest> {
    let mut blobs: Vec<&Digest> = vec![&image.manifest_digest, &image.config_digest];
    blobs.extend(image.layers.iter().map(|l| &l.digest));
    blobs
}

fn write_layout(
    content: &ContentStore,
    top: &Top<'_>,
    mut blobs: Vec<&Digest>,
    names: &[OciName],
    out: ArchiveOutput<'_>,
) -> Result<(), ExportError> {
    let mut tar = ArchiveWriter::new(out);
    tar.bytes("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let entry = |name: Option<&OciName>| {
        let mut d = json!({
            "mediaType": top.media_type,
            "digest": top.digest.to_string(),
            "size": top.size,
        });
        let mut annotations = top.annotations.clone();
        if let Some(name) = name {
            if let Some(full) = &name.full {
                annotations.insert(CONTAINERD_IMAGE_NAME.to_owned(), full.clone());
            }
            annotations.insert(REF_NAME_ANNOTATION.to_owned(), name.ref_name.clone());
        }
        if !annotations.is_empty() {
            d["annotations"] = json!(annotations);
        }
        d
    };
    let manifests: Vec<_> = if names.is_empty() {
        vec![entry(None)]
    } else {
        names.iter().map(|n| entry(Some(n))).collect()
    };
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    });
    let index = serde_json::to_vec(&index).map_err(ExportError::Json)?;
    tar.bytes("index.json", &index)?;
    tar.dir("blobs/")?;
    tar.dir("blobs/sha256/")?;
    blobs.sort();
    blobs.dedup();
    for digest in blobs {
        add_blob(
            &mut tar,
            content,
            &format!("blobs/sha256/{}", digest.hex()),
            digest,
        )?;
    }
    tar.finish()
}

/// Writes `image` in `docker save` format: `<config>.json`, `<diff id>/layer.tar` per layer
/// (uncompressed, as `docker load` and `podman load` expect), `manifest.json` and
/// `repositories`. `names` are `repository:tag` strings.
pub fn write_docker_archive<'a>(
    content: &ContentStore,
    image: &ExportedImage,
    names: &[String],
    scratch: &std::path::Path,
    out: impl Into<ArchiveOutput<'a>>,
) -> Result<(), ExportError> {
    let mut tar = ArchiveWriter::new(out.into());
    let config_name = format!("{}.json", image.config_digest.hex());
    tar.bytes(&config_name, &image.config)?;
    let mut layer_paths = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for layer in &image.layers {
        let dir = layer.diff_id.hex().to_owned();
        let path = format!("{dir}/layer.tar");
        layer_paths.push(path.clone());
        if !seen.insert(dir.clone()) {
            continue;
        }
        tar.dir(&format!("{dir}/"))?;
        let mut tmp = tempfile::tempfile_in(scratch).map_err(io_err("creating a scratch file"))?;
        let size = decompress_into(content, &layer.digest, &mut tmp)?;
        tmp.rewind().map_err(io_err("reading a scratch file"))?;
        tar.file(&path, &tmp, size)?;
    }
    let manifest = json!([{
        "Config": config_name,
        "RepoTags": names,
        "Layers": layer_paths,
    }]);
    let manifest = serde_json::to_vec(&manifest).map_err(ExportError::Json)?;
    tar.bytes("manifest.json", &manifest)?;
    let mut repositories = serde_json::Map::new();
    let top = image
        .layers
        .last()
        .map(|l| l.diff_id.hex().to_owned())
        .unwrap_or_default();
    for name in names {
        let (repo, tag) = match name.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r, t),
            _ => (name.as_str(), "latest"),
        };
        let entry = repositories
            .entry(repo.to_owned())
            .or_insert_with(|| json!({}));
        entry[tag] = json!(top);
    }
    let repositories = serde_json::to_vec(&repositories).map_err(ExportError::Json)?;
    tar.bytes("repositories", &repositories)?;
    tar.finish()
}

/// Writes the uncompressed tar of layer blob `digest` to `out`; returns its size.
fn decompress_into(
    content: &ContentStore,
    digest: &Digest,
    out: &mut File,
) -> Result<u64, ExportError> {
    let mut blob = io::BufReader::new(content.open(digest)?);
    let mut magic = [0u8; 4];
    let n = blob.read(&mut magic).map_err(io_err("reading a layer"))?;
    let head = io::Cursor::new(magic[..n].to_vec());
    let chained = head.chain(blob);
    let mut reader: Box<dyn Read> = if magic[..n].starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(chained))
    } else if magic[..n] == [0x28, 0xb5, 0x2f, 0xfd] {
        Box::new(zstd::stream::read::Decoder::new(chained).map_err(io_err("reading a layer"))?)
    } else {
        Box::new(chained)
    };
    io::copy(&mut reader, out).map_err(io_err("decompressing a layer"))
}
