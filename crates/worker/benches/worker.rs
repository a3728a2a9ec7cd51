//! Worker benchmarks on real snapshots: copying a 2,000-file context into a layer and
//! exporting it (nothing cached), and the same build again from the cache (what a no-change
//! `img build` costs, export included).

use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, Criterion};
use img_llb::{
    CopyAction, Definition, DefinitionBuilder, FileOp, LocalSource, OpMetadata, SourceOp,
};
use img_sandbox::{HostPaths, IdMapping};
use img_snapshot::{BackendChoice, StateDir, Store};
use img_solver::{CacheDb, NoProgress, SolveOptions, Solver};
use img_worker::{
    export_image, ImageExportOptions, ImageRequest, LayerSource, LocalDirs, Worker, WorkerOptions,
};

const FILES: usize = 2_000;
const FILE_SIZE: usize = 4096;

fn context(dir: &Path) {
    for i in 0..FILES {
        let sub = dir.join(format!("d{:02}", i % 50));
        std::fs::create_dir_all(&sub).unwrap();
        let data: Vec<u8> = (0..FILE_SIZE).map(|b| ((b * 31 + i) % 251) as u8).collect();
        std::fs::write(sub.join(format!("f{i}.txt")), data).unwrap();
    }
}

/// `FROM scratch` + `COPY . /app/`.
fn definition() -> (Definition, img_llb::OpRef) {
    let mut graph = DefinitionBuilder::new();
    let ctx = graph
        .add(
            SourceOp::Local(LocalSource::new("context")),
            OpMetadata::described("context"),
        )
        .unwrap();
    let copy = graph
        .add(
            FileOp::new(None).with_action(CopyAction::new(ctx, vec!["/".into()], "/app/")),
            OpMetadata::described("COPY . /app/"),
        )
        .unwrap();
    (graph.build(copy).unwrap(), copy)
}

fn solver(state: &Path, context: &Path) -> Solver<Worker> {
    let store = Store::open(&StateDir::at(state)).unwrap();
    let snapshotter = store.snapshotter(BackendChoice::Auto).unwrap();
    let mut options = WorkerOptions::new(IdMapping::detect(&HostPaths::default()).unwrap());
    options.locals = LocalDirs::new().with("context", context);
    options.checksum_cache = Some(CacheDb::open(state.join("cache.db")).unwrap());
    let worker = Worker::new(store, &snapshotter, options).unwrap();
    Solver::new(worker, CacheDb::open(state.join("cache.db")).unwrap())
}

fn build(solver: &Solver<Worker>, definition: &Definition, copy: img_llb::OpRef, no_cache: bool) {
    let options = SolveOptions::default().with_no_cache(no_cache);
    let solved = solver.solve(definition, &options, &NoProgress).unwrap();
    let request = ImageRequest {
        base: None,
        layers: vec![LayerSource {
            output: solved.outputs[&copy.digest].clone(),
            history_index: Some(0),
        }],
        config: serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "history": [{"created_by": "COPY . /app/"}],
        }),
    };
    export_image(solver.executor(), &request, &ImageExportOptions::new()).unwrap();
}

fn worker(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("context");
    context(&ctx);
    let state = tmp.path().join("state");
    let (definition, copy) = definition();
    let solver = solver(&state, &ctx);
    let mut group = c.benchmark_group("worker");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(15));
    group.bench_function("copy_2000_files_and_export_uncached", |b| {
        b.iter(|| build(&solver, &definition, copy, true))
    });
    build(&solver, &definition, copy, false);
    group.bench_function("cached_rebuild_and_export", |b| {
        b.iter(|| build(&solver, &definition, copy, false))
    });
    group.finish();
}

criterion_group!(benches, worker);

fn main() {
    // The binary must be able to act as the sandbox init, as every binary using the worker.
    img_sandbox::maybe_run_init();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
