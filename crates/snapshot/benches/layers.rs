//! Layer export/apply and snapshot preparation on a large tree.
//!
//! The tree is 200 MB in 20,000 files by default (`IMG_BENCH_MB` and `IMG_BENCH_FILES`
//! override). Run: `cargo bench -p img-snapshot --bench layers`.

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use img_snapshot::{
    apply_layer, export_layer, ApplyOptions, BackendChoice, Compression, ExportOptions, StateDir,
    Store,
};

#[path = "../tests/common/bigtree.rs"]
mod bigtree;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Fixture {
    _dir: tempfile::TempDir,
    tree: std::path::PathBuf,
    store: Store,
    bytes: u64,
}

fn fixture() -> Fixture {
    let bytes = env_u64("IMG_BENCH_MB", 200) << 20;
    let files = env_u64("IMG_BENCH_FILES", 20_000);
    // Under the target directory: same filesystem as a real state directory, not tmpfs.
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-tmp");
    std::fs::create_dir_all(&base).unwrap();
    let dir = tempfile::tempdir_in(&base).unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    bigtree::build_big_tree(&tree, bytes, files);
    let store = Store::open(&StateDir::at(dir.path().join("state"))).unwrap();
    Fixture {
        _dir: dir,
        tree,
        store,
        bytes,
    }
}

/// Writes back dirty pages outside the timed region, so one iteration's 200 MB of writes does
/// not throttle the next (the kernel's dirty-page limits would otherwise make later iterations
/// measure the disk, not the code).
fn flush_writeback() {
    // SAFETY: sync(2) has no preconditions.
    unsafe { libc::sync() };
}

fn layers(c: &mut Criterion) {
    let f = fixture();
    let content = f.store.content();
    let mut group = c.benchmark_group("layer");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(30))
        .throughput(Throughput::Bytes(f.bytes));
    for compression in [Compression::Gzip, Compression::Zstd] {
        let opts = ExportOptions {
            compression,
            ..Default::default()
        };
        group.bench_function(format!("export_{compression:?}").to_lowercase(), |b| {
            b.iter(|| export_layer(&content, &f.tree, &opts).unwrap())
        });
    }
    let gz = export_layer(&content, &f.tree, &ExportOptions::default()).unwrap();
    group.bench_function("apply_gzip", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dst = tempfile::tempdir_in(f.store.state().tmp()).unwrap();
                let start = Instant::now();
                apply_layer(
                    content.open(&gz.digest).unwrap(),
                    dst.path(),
                    &ApplyOptions::default(),
                )
                .unwrap();
                total += start.elapsed();
                drop(dst);
                flush_writeback();
            }
            total
        })
    });
    group.finish();
}

fn prepare(c: &mut Criterion) {
    let f = fixture();
    let content = f.store.content();
    let layer = export_layer(
        &content,
        &f.tree,
        &ExportOptions {
            compression: Compression::Zstd,
            ..Default::default()
        },
    )
    .unwrap();
    let mut group = c.benchmark_group("prepare_on_large_parent");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    let mut backends = vec![BackendChoice::Native];
    if f.store.snapshotter(BackendChoice::Overlayfs).is_ok() {
        backends.push(BackendChoice::Overlayfs);
    }
    for choice in backends {
        let s = f.store.snapshotter(choice).unwrap();
        let parent = format!("{}-parent", s.backend());
        s.prepare("base", None).unwrap();
        s.apply("base", &content, &layer.digest).unwrap();
        s.commit("base", &parent).unwrap();
        let mut n = 0u64;
        group.bench_function(s.backend().as_str(), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    n += 1;
                    let key = format!("child-{n}");
                    let start = Instant::now();
                    s.prepare(&key, Some(&parent)).unwrap();
                    total += start.elapsed();
                    s.remove(&key).unwrap();
                    flush_writeback();
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group!(benches, layers, prepare);
criterion_main!(benches);
