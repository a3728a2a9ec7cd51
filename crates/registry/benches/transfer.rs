//! Client throughput against the real registry on loopback: push and pull of a 32 MiB layer,
//! and reference parsing. The 1 GiB comparison with skopeo (wall time, peak RSS) is
//! `benches/transfer-1g.sh`.

#[path = "../tests/common/mod.rs"]
mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use img_registry::{no_progress, Client, DirBlobStore, Platform, PushOptions, Reference};

use common::*;

const LAYER: usize = 32 << 20;

fn transfer(c: &mut Criterion) {
    let registry = TestRegistry::start(RegistryAuth::Anonymous);
    let docker = tempfile::tempdir().unwrap();
    let src_dir = tempfile::tempdir().unwrap();
    let src = DirBlobStore::new(src_dir.path()).unwrap();
    // A raw (uncompressed) noise layer: gzip would only slow the fixture down.
    let layer = src.put_bytes(&noise(LAYER)).unwrap();
    let config = src
        .put_bytes(
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
        )
        .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(),
                   "size": std::fs::metadata(src.blob_path(&config)).unwrap().len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.to_string(), "size": LAYER}],
    }))
    .unwrap();
    let client = Client::new(client_config(docker.path()));

    let mut group = c.benchmark_group("loopback");
    group
        .sample_size(10)
        .throughput(Throughput::Bytes(LAYER as u64));
    let mut n = 0;
    group.bench_function("push 32 MiB", |b| {
        b.iter(|| {
            // A fresh repository each time, so the blob is really uploaded.
            n += 1;
            let r = Reference::parse(&format!("{}/bench/push{n}:1", registry.host())).unwrap();
            client
                .push(&r, &manifest, &src, &PushOptions::default(), &no_progress)
                .unwrap();
        })
    });
    let pulled = Reference::parse(&format!("{}/bench/push1:1", registry.host())).unwrap();
    group.bench_function("pull 32 MiB", |b| {
        b.iter(|| {
            let dest = tempfile::tempdir().unwrap();
            let store = DirBlobStore::new(dest.path()).unwrap();
            client
                .pull(&pulled, &Platform::host(), &store, &no_progress)
                .unwrap();
        })
    });
    group.finish();
}

fn references(c: &mut Criterion) {
    let inputs = [
        "alpine",
        "localhost:5000/team/app:v1.2.3",
        "registry.example.com/a/b/c@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    ];
    c.bench_function("parse references", |b| {
        b.iter(|| {
            for i in inputs {
                std::hint::black_box(Reference::parse(i).unwrap());
            }
        })
    });
}

criterion_group!(benches, transfer, references);
criterion_main!(benches);
