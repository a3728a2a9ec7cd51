//! A build cached with one snapshot backend, reloaded with the other: the cached results are
//! misses, rebuilt on this backend, never an overlayfs diff taken for a whole tree.

use img_snapshot::BackendChoice;
use img_solver::{CacheDb, Solver};
use img_worker::{write_rootfs_dir, Worker};
use libtest_mimic::Trial;

use crate::common::*;

pub fn tests() -> Vec<Trial> {
    let probe = tempfile::tempdir().expect("tempdir");
    let overlay = img_snapshot::Store::open(&img_snapshot::StateDir::at(probe.path()))
        .expect("store")
        .snapshotter(BackendChoice::Overlayfs)
        .is_ok();
    // `cargo xtask test` sets this: there every test must run.
    let required = std::env::var_os("IMG_TEST_REQUIRE_TOOLS").is_some_and(|v| v == "1");
    vec![Trial::test(
        "a_result_cached_on_one_backend_is_rebuilt_on_the_other",
        move || {
            if !overlay {
                return Err("overlayfs is unavailable, so there is no other backend".into());
            }
            rebuilt_on_the_other_backend().map_err(Into::into)
        },
    )
    .with_ignored_flag(!overlay && !required)]
}

fn solver_on(fx: &Fixture, choice: BackendChoice) -> Solver<Worker> {
    let store = fx.store();
    let snapshotter = store.snapshotter(choice).expect("snapshotter");
    let worker = Worker::new(store, &snapshotter, fx.options()).expect("worker");
    let cache = CacheDb::open(fx.state().root().join("cache.db")).expect("cache db");
    Solver::new(worker, cache)
}

fn rebuilt_on_the_other_backend() -> TestResult {
    let fx = Fixture::new();
    let mut graph = Graph::on_busybox();
    graph.run("echo base > /base.txt");
    graph.run("echo top > /top.txt");
    let definition = graph.definition();

    let overlay = solver_on(&fx, BackendChoice::Overlayfs);
    let first = solve(&overlay, &definition).map_err(fail)?;
    check(first.cached.is_empty(), "a fresh state has nothing cached")?;
    drop(overlay);

    let native = solver_on(&fx, BackendChoice::Native);
    let second = solve(&native, &definition).map_err(fail)?;
    // The base image source may come from its record: a lazy result, unpacked on this
    // backend when a step needs it. No step's overlayfs snapshot is reused.
    check(
        second.cached.iter().all(|d| *d == graph.base.digest),
        format!(
            "overlayfs results reused by the native backend: {:?}",
            second.cached
        ),
    )?;
    // The native top snapshot holds the whole tree, not an overlay upper directory.
    let out = fx.dir.path().join("rootfs");
    write_rootfs_dir(native.executor(), &second.output, &out).map_err(fail)?;
    check(read(&out.join("base.txt")) == "base\n", "base.txt")?;
    check(read(&out.join("top.txt")) == "top\n", "top.txt")?;
    check(
        out.join("bin/busybox").is_file(),
        "busybox from the base layer",
    )?;

    let again = solve(&native, &definition).map_err(fail)?;
    check(
        again.executed.is_empty(),
        format!("native rebuild re-ran {:?}", again.executed),
    )
}
