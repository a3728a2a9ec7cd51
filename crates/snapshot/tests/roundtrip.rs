//! Tree -> layer -> tree round trips, and the properties of exported layers.

mod common;

use std::fs;
use std::io::Read;

use img_snapshot::{
    apply_layer, export_layer, recompress_layer, ApplyOptions, Compression, ExportOptions,
};

use common::{build_rich_tree, store, summarize};

#[test]
fn round_trip_preserves_everything_for_each_compression() {
    let t = store();
    let src = t.dir.path().join("src");
    fs::create_dir(&src).unwrap();
    build_rich_tree(&src);
    let want = summarize(&src);
    let content = t.store.content();
    for compression in [
        Compression::Gzip,
        Compression::Zstd,
        Compression::Uncompressed,
    ] {
        let opts = ExportOptions {
            compression,
            ..Default::default()
        };
        let layer = export_layer(&content, &src, &opts).unwrap();
        assert_eq!(content.size(&layer.digest).unwrap(), layer.size);
        let dst = t.dir.path().join(format!("dst-{compression:?}"));
        fs::create_dir(&dst).unwrap();
        let report = apply_layer(
            content.open(&layer.digest).unwrap(),
            &dst,
            &ApplyOptions::default(),
        )
        .unwrap();
        assert_eq!(report.diff_id, layer.diff_id, "{compression:?}");
        assert_eq!(report.compression, compression);
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        let got = summarize(&dst);
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{compression:?}"
        );
        for (path, w) in &want {
            assert_eq!(&got[path], w, "{compression:?}: {}", path.display());
        }
    }
}

#[test]
fn export_is_deterministic_and_diff_id_is_the_tar_digest() {
    let t = store();
    let src = t.dir.path().join("src");
    fs::create_dir(&src).unwrap();
    build_rich_tree(&src);
    let content = t.store.content();
    for compression in [
        Compression::Gzip,
        Compression::Zstd,
        Compression::Uncompressed,
    ] {
        let one = ExportOptions {
            compression,
            threads: 1,
            ..Default::default()
        };
        let many = ExportOptions {
            compression,
            threads: 4,
            ..Default::default()
        };
        let a = export_layer(&content, &src, &one).unwrap();
        let b = export_layer(&content, &src, &many).unwrap();
        assert_eq!(
            a, b,
            "thread count must not change the blob ({compression:?})"
        );
        let c = export_layer(&content, &src, &one).unwrap();
        assert_eq!(a, c, "same input, same blob ({compression:?})");
        // The diffID is the digest of the uncompressed stream any decompressor yields.
        let raw = decompress(&content.read_blob(&a.digest).unwrap());
        assert_eq!(img_snapshot::Digest::of(&raw), a.diff_id);
    }
}

/// `force-compression`: a layer written again in every other compression keeps its diffID,
/// and is the very blob a direct export in that compression gives.
#[test]
fn recompressing_a_layer_keeps_its_diff_id() {
    let t = store();
    let src = t.dir.path().join("src");
    fs::create_dir(&src).unwrap();
    build_rich_tree(&src);
    let content = t.store.content();
    let all = [
        Compression::Gzip,
        Compression::Zstd,
        Compression::Uncompressed,
    ];
    for from in all {
        let options = |compression| ExportOptions {
            compression,
            threads: 2,
            ..Default::default()
        };
        let original = export_layer(&content, &src, &options(from)).unwrap();
        for to in all {
            let again = recompress_layer(&content, None, &original.digest, &options(to)).unwrap();
            let direct = export_layer(&content, &src, &options(to)).unwrap();
            assert_eq!(again, direct, "{from:?} -> {to:?}");
            assert_eq!(again.diff_id, original.diff_id, "{from:?} -> {to:?}");
        }
    }
}

fn decompress(blob: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if blob.starts_with(&[0x1f, 0x8b]) {
        flate2::read::MultiGzDecoder::new(blob)
            .read_to_end(&mut out)
            .unwrap();
    } else if blob.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        out = zstd::decode_all(blob).unwrap();
    } else {
        out = blob.to_vec();
    }
    out
}

#[test]
fn tar_stream_is_sorted_pax_numeric_and_keeps_hardlinks() {
    let t = store();
    let src = t.dir.path().join("src");
    fs::create_dir(&src).unwrap();
    build_rich_tree(&src);
    let content = t.store.content();
    let layer = export_layer(
        &content,
        &src,
        &ExportOptions {
            compression: Compression::Uncompressed,
            ..Default::default()
        },
    )
    .unwrap();
    let raw = content.read_blob(&layer.digest).unwrap();
    let mut archive = tar::Archive::new(raw.as_slice());
    let mut names = Vec::new();
    let mut saw_link = false;
    let mut saw_long = false;
    let mut saw_xattr = false;
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let name = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        let h = e.header();
        assert!(
            h.username_bytes().is_none_or(|u| u.is_empty()),
            "numeric ids only: {name}"
        );
        if h.entry_type() == tar::EntryType::Link {
            assert_eq!(e.link_name_bytes().unwrap().as_ref(), b"dir/hard2");
            assert_eq!(name, "hard1");
            saw_link = true;
        }
        if name.len() > 100 {
            saw_long = true;
        }
        if let Some(exts) = e.pax_extensions().unwrap() {
            for ext in exts {
                if ext.unwrap().key().unwrap() == "SCHILY.xattr.user.comment" {
                    saw_xattr = true;
                }
            }
        }
        names.push(name.trim_end_matches('/').to_owned());
    }
    let mut sorted = names.clone();
    sorted.sort_by(|a, b| std::path::Path::new(a).cmp(std::path::Path::new(b)));
    assert_eq!(names, sorted);
    assert!(saw_link && saw_long && saw_xattr);
    // GNU tar reads it too (a second, independent reader).
    let out = tempfile::tempdir().unwrap();
    let tarfile = out.path().join("l.tar");
    fs::write(&tarfile, &raw).unwrap();
    let status = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&tarfile)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn source_date_epoch_clamps_mtimes() {
    let t = store();
    let src = t.dir.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("new"), b"now").unwrap();
    fs::write(src.join("old"), b"then").unwrap();
    common::set_mtime(&src.join("old"), 100);
    let content = t.store.content();
    let opts = ExportOptions {
        compression: Compression::Uncompressed,
        source_date_epoch: Some(1000),
        ..Default::default()
    };
    let layer = export_layer(&content, &src, &opts).unwrap();
    let raw = content.read_blob(&layer.digest).unwrap();
    let mut archive = tar::Archive::new(raw.as_slice());
    let mtimes: Vec<(String, u64)> = archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.path().unwrap().display().to_string(),
                e.header().mtime().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        mtimes,
        [("new".to_string(), 1000), ("old".to_string(), 100)]
    );
}

#[test]
fn gzip_layer_is_read_by_gzip_and_zstd_layer_by_zstd() {
    let t = store();
    let src = t.dir.path().join("src");
    fs::create_dir(&src).unwrap();
    build_rich_tree(&src);
    let content = t.store.content();
    for (compression, tool) in [(Compression::Gzip, "gzip"), (Compression::Zstd, "zstd")] {
        if which(tool).is_none() {
            common::cannot_run(&format!("{tool} is not installed"));
            continue;
        }
        let layer = export_layer(
            &content,
            &src,
            &ExportOptions {
                compression,
                ..Default::default()
            },
        )
        .unwrap();
        let out = std::process::Command::new(tool)
            .arg("-dc")
            .arg(content.path(&layer.digest))
            .output()
            .unwrap();
        assert!(out.status.success(), "{tool} rejected the blob");
        assert_eq!(img_snapshot::Digest::of(&out.stdout), layer.diff_id);
    }
}

pub fn which(tool: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join(tool))
        .find(|p| p.is_file())
}
