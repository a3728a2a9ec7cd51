//! Lazy cache hits on a real state directory: a hit downloads nothing until a step or an
//! export needs it, and parallel steps on one hit unpack its chain once.

use std::sync::Arc;

use img_llb::{MergeOp, Op};
use img_remote_cache::LayoutCache;
use img_worker::{export_image, CacheExportOptions, CacheMode, ImageExportOptions};
use libtest_mimic::Trial;

use crate::common::{build, check, fail, solve, t, Fixture, Graph, TestResult};

pub fn tests() -> Vec<Trial> {
    vec![
        t(
            "lazy_hit_nothing_builds_on_is_exported_without_a_download",
            lazy_hit_nothing_builds_on_is_exported_without_a_download,
        ),
        t(
            "lazy_parallel_steps_on_one_hit_unpack_it_once",
            lazy_parallel_steps_on_one_hit_unpack_it_once,
        ),
    ]
}

/// Builds `graph` in a fresh state directory and writes its mode=max cache into a directory;
/// returns the directory and the image's layer digests.
fn export_cache(graph: &Graph) -> Result<(tempfile::TempDir, Vec<String>), String> {
    let fixture = Fixture::new();
    let solver = fixture.solver();
    let (solved, image) = build(&solver, graph, None)?;
    let mut options = CacheExportOptions::default();
    options.mode = CacheMode::Max;
    let built = solver
        .executor()
        .build_cache(&graph.definition(), &solved, &options)
        .map_err(fail)?;
    let dir = tempfile::tempdir().map_err(fail)?;
    let cache = LayoutCache::new(dir.path().join("cache"), None);
    solver
        .executor()
        .export_cache(&cache, &built.config)
        .map_err(fail)?;
    let layers = image.layers.iter().map(|l| l.digest.to_string()).collect();
    Ok((dir, layers))
}

fn one_random_step() -> Graph {
    let mut graph = Graph::on_busybox();
    graph.run("head -c 32 /dev/urandom | od -An -tx1 > /r");
    graph
}

fn lazy_hit_nothing_builds_on_is_exported_without_a_download() -> TestResult {
    let graph = one_random_step();
    let (dir, layers) = export_cache(&graph)?;

    let fixture = Fixture::new();
    let solver = fixture.solver();
    let worker = solver.executor();
    let cache = Arc::new(LayoutCache::new(dir.path().join("cache"), None));
    worker.import_cache(cache).map_err(fail)?;
    let solved = solve(&solver, &graph.definition()).map_err(fail)?;
    let stats = worker.lazy_stats();
    check(
        stats.downloaded == 0 && stats.unpacked == 0,
        format!("a hit alone downloads and unpacks nothing: {stats:?}"),
    )?;
    // The image names the cache's blobs, still without downloading them.
    let image =
        export_image(worker, &graph.request(&solved), &ImageExportOptions::new()).map_err(fail)?;
    let exported: Vec<String> = image.layers.iter().map(|l| l.digest.to_string()).collect();
    check(exported == layers, format!("{exported:?} vs {layers:?}"))?;
    check(
        worker.lazy_stats() == stats,
        "the image export downloaded nothing",
    )?;
    let snapshots = worker.snapshotter().list().map_err(fail)?;
    check(snapshots.is_empty(), format!("no snapshot: {snapshots:?}"))?;
    // An archive needs the blobs: downloaded, not unpacked.
    worker
        .fetch_chain_blobs(&solved.outputs[&graph.top().digest])
        .map_err(fail)?;
    let stats = worker.lazy_stats();
    check(
        stats.downloaded == 1 && stats.unpacked == 0,
        format!("the step's blob only: {stats:?}"),
    )
}

fn lazy_parallel_steps_on_one_hit_unpack_it_once() -> TestResult {
    let graph = one_random_step();
    let (dir, _) = export_cache(&graph)?;

    // Two steps on the hit, side by side, then a merge of both.
    let mut more = one_random_step();
    let hit = more.top();
    let mut branches = Vec::new();
    for name in ["x1", "x2"] {
        let exec = img_llb::ExecOp::new(
            Some(hit),
            vec!["/bin/sh".into(), "-c".into(), format!("cp /r /{name}")],
        )
        .with_env("PATH", "/bin");
        branches.push(more.step(exec, &format!("RUN cp /r /{name}")));
    }
    more.step(
        Op::Merge(MergeOp {
            inputs: branches.clone(),
        }),
        "merge",
    );

    let fixture = Fixture::new();
    let solver = fixture.solver();
    let worker = solver.executor();
    let cache = Arc::new(LayoutCache::new(dir.path().join("cache"), None));
    worker.import_cache(cache).map_err(fail)?;
    solve(&solver, &more.definition()).map_err(fail)?;
    // busybox's layer (in the store already) and the hit's: each unpacked once, the hit's
    // downloaded once, however many steps needed them.
    let stats = worker.lazy_stats();
    check(
        stats.downloaded == 1 && stats.unpacked == 2,
        format!("one download, two unpacked layers: {stats:?}"),
    )
}
