//! Image archives: an OCI image layout in a tar (`--output type=oci`, `skopeo
//! oci-archive:`) and Docker's `docker save` format (`--output type=docker`, `docker load`,
//! `podman load`). Both are written deterministically: sorted entries, fixed owners, modes and
//! times, so the same image gives the same archive bytes.

use std::fs::File;
use std::io::{self, Read, Seek, Write};

use img_snapshot::{ContentStore, Digest, REF_NAME_ANNOTATION};
use serde_json::json;

use super::{ExportError, ExportedImage, OCI_MANIFEST};

fn io_err(what: &'static str) -> impl Fn(io::Error) -> ExportError {
    move |source| ExportError::Io { what, source }
}

fn header(size: u64, mode: u32, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(kind);
    h
}

fn add_dir<W: Write>(tar: &mut tar::Builder<W>, path: &str) -> Result<(), ExportError> {
    let mut h = header(0, 0o755, tar::EntryType::Directory);
    tar.append_data(&mut h, path, io::empty())
        .map_err(io_err("writing the archive"))
}

fn add_bytes<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &str,
    bytes: &[u8],
) -> Result<(), ExportError> {
    let mut h = header(bytes.len() as u64, 0o644, tar::EntryType::Regular);
    tar.append_data(&mut h, path, bytes)
        .map_err(io_err("writing the archive"))
}

fn add_blob<W: Write>(
    tar: &mut tar::Builder<W>,
    content: &ContentStore,
    path: &str,
    digest: &Digest,
) -> Result<(), ExportError> {
    let size = content.size(digest)?;
    let file = content.open(digest)?;
    let mut h = header(size, 0o644, tar::EntryType::Regular);
    tar.append_data(&mut h, path, file)
        .map_err(io_err("writing the archive"))
}

/// Writes `image` as an OCI image layout tar: `oci-layout`, `index.json` (one entry per name,
/// annotated with `org.opencontainers.image.ref.name`; one unnamed entry without names) and
/// every blob.
pub fn write_oci_archive(
    content: &ContentStore,
    image: &ExportedImage,
    names: &[String],
    out: impl Write,
) -> Result<(), ExportError> {
    let mut tar = tar::Builder::new(out);
    add_bytes(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let entry = |name: Option<&String>| {
        let mut d = json!({
            "mediaType": OCI_MANIFEST,
            "digest": image.manifest_digest.to_string(),
            "size": image.manifest.len(),
        });
        if let Some(name) = name {
            d["annotations"] = json!({ REF_NAME_ANNOTATION: name });
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
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    });
    let index = serde_json::to_vec(&index).map_err(ExportError::Json)?;
    add_bytes(&mut tar, "index.json", &index)?;
    add_dir(&mut tar, "blobs/")?;
    add_dir(&mut tar, "blobs/sha256/")?;
    let mut blobs: Vec<&Digest> = vec![&image.manifest_digest, &image.config_digest];
    blobs.extend(image.layers.iter().map(|l| &l.digest));
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
    tar.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(io_err("finishing the archive"))
}

/// Writes `image` in `docker save` format: `<config>.json`, `<diff id>/layer.tar` per layer
/// (uncompressed, as `docker load` and `podman load` expect), `manifest.json` and
/// `repositories`. `names` are `repository:tag` strings.
pub fn write_docker_archive(
    content: &ContentStore,
    image: &ExportedImage,
    names: &[String],
    scratch: &std::path::Path,
    out: impl Write,
) -> Result<(), ExportError> {
    let mut tar = tar::Builder::new(out);
    let config_name = format!("{}.json", image.config_digest.hex());
    add_bytes(&mut tar, &config_name, &image.config)?;
    let mut layer_paths = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for layer in &image.layers {
        let dir = layer.diff_id.hex().to_owned();
        let path = format!("{dir}/layer.tar");
        layer_paths.push(path.clone());
        if !seen.insert(dir.clone()) {
            continue;
        }
        add_dir(&mut tar, &format!("{dir}/"))?;
        let mut tmp = tempfile::tempfile_in(scratch).map_err(io_err("creating a scratch file"))?;
        let size = decompress_into(content, &layer.digest, &mut tmp)?;
        tmp.rewind().map_err(io_err("reading a scratch file"))?;
        let mut h = header(size, 0o644, tar::EntryType::Regular);
        tar.append_data(&mut h, &path, tmp)
            .map_err(io_err("writing the archive"))?;
    }
    let manifest = json!([{
        "Config": config_name,
        "RepoTags": names,
        "Layers": layer_paths,
    }]);
    let manifest = serde_json::to_vec(&manifest).map_err(ExportError::Json)?;
    add_bytes(&mut tar, "manifest.json", &manifest)?;
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
    add_bytes(&mut tar, "repositories", &repositories)?;
    tar.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(io_err("finishing the archive"))
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
