//! `img save [-o FILE] [--format docker|oci] IMAGE...`: images as one tar archive, either
//! Docker's `docker save` layout (`manifest.json`, `<config>.json`, `<layer>/layer.tar`; what
//! `docker load` and `podman load` read) or an OCI image layout (`oci-layout`, `index.json`,
//! `blobs/sha256/...`; what `skopeo copy oci-archive:` and `umoci` read).

use std::collections::BTreeSet;
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use img_registry::{Platform, Reference};
use img_snapshot::{ContentStore, Digest, ImageRecord};

use crate::config::Config;
use crate::flags::ArchiveFormat;
use crate::image::{blobs_of, digest_of, find, platform_flag, resolve_for};

pub fn run(
    config: &Config,
    images: &[String],
    output: Option<&Path>,
    format: ArchiveFormat,
    platform: Option<&str>,
) -> anyhow::Result<()> {
    // A docker archive holds one platform: this machine's unless one is chosen. An OCI layout
    // holds what the name holds (every platform of an index) unless one is chosen.
    let only = platform.is_some();
    let platform = platform_flag(platform)?;
    let select = Select {
        platform: &platform,
        only,
    };
    let store = config.open_store()?;
    let records = images
        .iter()
        .map(|i| find(&store, i))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let content = store.content();
    match output {
        None => {
            let stdout = io::stdout();
            if stdout.is_terminal() {
                bail!("refusing to write an archive to a terminal; use -o FILE or redirect");
            }
            let mut out = stdout.lock();
            write_archive(&content, &records, format, &select, &mut out)?;
            out.flush()?;
        }
        Some(path) => {
            // Written beside the destination and renamed, so a failed save leaves no
            // truncated archive under the requested name.
            let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
            let dir = dir.map_or_else(|| PathBuf::from("."), Path::to_path_buf);
            let mut tmp = tempfile::NamedTempFile::new_in(&dir)
                .with_context(|| format!("cannot create a file in {}", dir.display()))?;
            let mut buffered = io::BufWriter::new(tmp.as_file_mut());
            write_archive(&content, &records, format, &select, &mut buffered)?;
            buffered.flush()?;
            drop(buffered);
            tmp.persist(path)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    Ok(())
}

/// Which platform of a multi-platform image is saved.
struct Select<'a> {
    /// The platform a docker archive takes (`--platform`, else this machine's).
    platform: &'a Platform,
    /// `--platform` was given: an OCI layout holds only that platform's manifest too.
    only: bool,
}

fn write_archive(
    content: &ContentStore,
    records: &[ImageRecord],
    format: ArchiveFormat,
    select: &Select<'_>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut tar = tar::Builder::new(out);
    match format {
        ArchiveFormat::Docker => write_docker(content, records, select.platform, &mut tar)?,
        ArchiveFormat::Oci => write_oci(content, records, select, &mut tar)?,
    }
    tar.finish().context("cannot write the archive")?;
    Ok(())
}

fn header(size: u64, mode: u32, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(mode);
    h.set_entry_type(kind);
    // Fixed times keep archives of the same images identical.
    h.set_mtime(0);
    h.set_cksum();
    h
}

fn add_bytes(tar: &mut tar::Builder<&mut dyn Write>, path: &str, bytes: &[u8]) -> io::Result<()> {
    let mut h = header(bytes.len() as u64, 0o644, tar::EntryType::Regular);
    tar.append_data(&mut h, path, bytes)
}

fn add_dir(tar: &mut tar::Builder<&mut dyn Write>, path: &str) -> io::Result<()> {
    let mut h = header(0, 0o755, tar::EntryType::Directory);
    tar.append_data(&mut h, path, io::empty())
}

fn add_blob(
    tar: &mut tar::Builder<&mut dyn Write>,
    content: &ContentStore,
    path: &str,
    digest: &Digest,
) -> anyhow::Result<()> {
    let size = content.size(digest)?;
    let blob = content.open(digest)?;
    let mut h = header(size, 0o644, tar::EntryType::Regular);
    // Exactly `size` bytes: a blob that changed size underneath would corrupt the archive.
    tar.append_data(&mut h, path, blob.take(size))
        .with_context(|| format!("cannot write blob {digest} into the archive"))
}

/// Docker's layout: one `manifest.json` entry per image, names merged when several point at
/// the same manifest.
fn write_docker(
    content: &ContentStore,
    records: &[ImageRecord],
    platform: &Platform,
    tar: &mut tar::Builder<&mut dyn Write>,
) -> anyhow::Result<()> {
    let mut entries: Vec<(Digest, serde_json::Value)> = Vec::new();
    let mut written = BTreeSet::new();
    for record in records {
        let parts = resolve_for(content, &record.target, platform)?;
        // Full names: `docker load` normalizes either form, but podman reads a short name
        // as `localhost/<name>`.
        let tag = record.name.clone();
        if let Some((_, entry)) = entries
            .iter_mut()
            .find(|(d, _)| *d == parts.manifest_digest)
        {
            if let Some(tags) = entry["RepoTags"].as_array_mut() {
                tags.push(tag.into());
            }
            continue;
        }
        let config_digest = digest_of(parts.manifest.config())?;
        let config_path = format!("{}.json", config_digest.hex());
        if written.insert(config_path.clone()) {
            add_bytes(tar, &config_path, &parts.config_bytes)?;
        }
        let mut layers = Vec::new();
        for layer in parts.manifest.layers() {
            let digest = digest_of(layer)?;
            let path = format!("{}/layer.tar", digest.hex());
            if written.insert(path.clone()) {
                add_dir(tar, &format!("{}/", digest.hex()))?;
                add_blob(tar, content, &path, &digest)?;
            }
            layers.push(path);
        }
        // A name pinned by digest has no tag for Docker to record.
        let repo_tags: Vec<String> = Reference::parse(&record.name)
            .ok()
            .filter(|r| r.digest().is_none())
            .map(|_| tag)
            .into_iter()
            .collect();
        entries.push((
            parts.manifest_digest,
            serde_json::json!({"Config": config_path, "RepoTags": repo_tags, "Layers": layers}),
        ));
    }
    let manifest: Vec<serde_json::Value> = entries.into_iter().map(|(_, e)| e).collect();
    add_bytes(tar, "manifest.json", &serde_json::to_vec(&manifest)?)?;
    Ok(())
}

/// An OCI image layout: every blob each name reaches, and `index.json` naming them the way
/// containerd and Docker do (`io.containerd.image.name` is the full name, the OCI
/// `ref.name` is the tag).
fn write_oci(
    content: &ContentStore,
    records: &[ImageRecord],
    select: &Select<'_>,
    tar: &mut tar::Builder<&mut dyn Write>,
) -> anyhow::Result<()> {
    add_bytes(tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    add_dir(tar, "blobs/")?;
    add_dir(tar, "blobs/sha256/")?;
    let mut written = BTreeSet::new();
    let mut manifests = Vec::new();
    for record in records {
        let (root, mut descriptor) = if select.only {
            let parts = resolve_for(content, &record.target, select.platform)?;
            let descriptor = serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": parts.manifest_digest.to_string(),
                "size": parts.manifest_bytes.len(),
            });
            (parts.manifest_digest, descriptor)
        } else {
            (
                digest_of(&record.target)?,
                serde_json::to_value(&record.target)?,
            )
        };
        for digest in blobs_of(content, &root) {
            if written.insert(digest) {
                add_blob(
                    tar,
                    content,
                    &format!("blobs/sha256/{}", digest.hex()),
                    &digest,
                )?;
            }
        }
        let mut annotations = serde_json::Map::new();
        annotations.insert(
            "io.containerd.image.name".into(),
            record.name.clone().into(),
        );
        if let Some(tag) = Reference::parse(&record.name)
            .ok()
            .and_then(|r| r.tag().map(str::to_owned))
        {
            annotations.insert(img_snapshot::REF_NAME_ANNOTATION.into(), tag.into());
        }
        descriptor["annotations"] = annotations.into();
        manifests.push(descriptor);
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    });
    add_bytes(tar, "index.json", &serde_json::to_vec(&index)?)?;
    Ok(())
}
