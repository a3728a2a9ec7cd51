//! What a step reads from the build context is what its cache key covers: a file rewritten
//! between the key and the copy never leaves a cache record that disagrees with the image, and
//! a key covers what a followed link leads to.
//!
//! The rewrite happens at a fixed point, not by timing luck: the solver reports an op as
//! started after computing its key and before running it, and the test's progress sink
//! rewrites the file right then, on the op's own thread.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use img_llb::{
    CopyAction, Digest, ExecOp, FileOp, LocalSource, Mount, MountKind, OpMetadata, OpRef, SourceOp,
};
use img_solver::{ProgressEvent, ProgressSink, SolveError, SolveOptions, Solved};
use img_worker::{write_rootfs_dir, Worker, WorkerError, WorkerRef};
use libtest_mimic::Trial;

use crate::common::*;

pub fn tests() -> Vec<Trial> {
    vec![
        t(
            "a_file_rewritten_between_key_and_copy_is_never_cached_under_the_old_key",
            rewritten_before_copy,
        ),
        t(
            "a_file_rewritten_before_a_bind_mount_is_never_cached_under_the_old_key",
            rewritten_before_bind_mount,
        ),
        t(
            "rebuilds_while_a_file_keeps_changing_always_match_their_cache_records",
            rebuilds_while_changing,
        ),
        t(
            "a_wildcard_match_linking_to_another_context_file_is_keyed_by_its_target",
            wildcard_link_keyed_by_target,
        ),
    ]
}

/// Rewrites a context file when a given op starts: after its cache key, before its work.
struct RewriteWhenStarted {
    op: Digest,
    path: PathBuf,
    data: &'static str,
    done: AtomicBool,
}

impl ProgressSink for RewriteWhenStarted {
    fn emit(&self, event: ProgressEvent) {
        if let ProgressEvent::Started { op, .. } = event {
            if op == self.op && !self.done.swap(true, Ordering::SeqCst) {
                std::fs::write(&self.path, self.data).expect("rewrite the context file");
            }
        }
    }
}

fn context_op(graph: &mut Graph) -> OpRef {
    graph
        .builder
        .add(
            SourceOp::Local(LocalSource::new("context")),
            OpMetadata::described("context"),
        )
        .unwrap()
}

/// `COPY a.txt /app/` on busybox; the copy step.
fn copy_graph() -> (Graph, OpRef) {
    let mut graph = Graph::on_busybox();
    let context = context_op(&mut graph);
    let action = CopyAction::new(context, vec!["/a.txt".into()], "/app/");
    let copy = graph.step(
        FileOp::new(Some(graph.top())).with_action(action),
        "COPY a.txt",
    );
    (graph, copy)
}

/// `RUN --mount=type=bind,target=/ctx cp /ctx/a.txt /app/a.txt`; the run step.
fn bind_graph() -> (Graph, OpRef) {
    let mut graph = Graph::on_busybox();
    let context = context_op(&mut graph);
    let exec = ExecOp::new(
        Some(graph.top()),
        vec![
            "/bin/sh".into(),
            "-c".into(),
            "mkdir -p /app && cp /ctx/a.txt /app/a.txt".into(),
        ],
    )
    .with_env("PATH", "/bin")
    .with_mount(Mount {
        target: "/ctx".into(),
        kind: MountKind::Bind {
            source: context,
            selector: "/".into(),
            readonly: true,
        },
    });
    let run = graph.step(exec, "RUN --mount=type=bind");
    (graph, run)
}

/// `/app/a.txt` of the solved graph's result.
fn built_content(
    fx: &Fixture,
    solver: &img_solver::Solver<Worker>,
    solved: &Solved<WorkerRef>,
) -> Result<String, String> {
    let out = tempfile::tempdir_in(fx.dir.path()).map_err(fail)?;
    write_rootfs_dir(solver.executor(), &solved.output, out.path()).map_err(fail)?;
    Ok(read(&out.path().join("app/a.txt")))
}

/// Builds `graph` (rewriting the file as `sink` says, if any) and returns `/app/a.txt`.
fn build_once(
    fx: &Fixture,
    graph: &Graph,
    sink: Option<&RewriteWhenStarted>,
) -> Result<String, SolveError> {
    let solver = fx.solver();
    let solved = match sink {
        Some(sink) => solver.solve(&graph.definition(), &SolveOptions::default(), sink)?,
        None => solve(&solver, &graph.definition())?,
    };
    Ok(built_content(fx, &solver, &solved).expect("the result is readable"))
}

fn changed(err: &SolveError) -> bool {
    matches!(
        err,
        SolveError::OpFailed { source, .. }
            if matches!(source.downcast_ref::<WorkerError>(), Some(WorkerError::ContextChanged { .. }))
    )
}

/// The invariant after any build: for each content the file may have, a build of the file
/// with that content gives that content, from the cache or not.
fn cache_agrees(fx: &Fixture, graph: &Graph, contents: &[&str]) -> TestResult {
    for _ in 0..2 {
        for content in contents {
            fx.write("a.txt", content);
            let got = build_once(fx, graph, None).map_err(|e| fail(&e))?;
            check(
                got == *content,
                format!("built {got:?} from a file holding {content:?}"),
            )?;
        }
    }
    Ok(())
}

fn rewritten_at_start(graph: &Graph, step: OpRef) -> TestResult {
    let fx = Fixture::new();
    fx.write("a.txt", "v1");
    let sink = RewriteWhenStarted {
        op: step.digest,
        path: fx.context().join("a.txt"),
        data: "v2",
        done: AtomicBool::new(false),
    };
    match build_once(&fx, graph, Some(&sink)) {
        Err(err) => check(changed(&err), format!("failed otherwise: {}", fail(&err)))?,
        // Also correct: what was recorded is what the key says. The invariant below holds.
        Ok(got) => check(got == "v1", format!("built {got:?} under the key of v1"))?,
    }
    check(
        sink.done.load(Ordering::SeqCst),
        "the file was not rewritten",
    )?;
    cache_agrees(&fx, graph, &["v1", "v2"])?;
    // Writing the same bytes again (new times, same content) is no change.
    let sink = RewriteWhenStarted {
        op: step.digest,
        path: fx.context().join("a.txt"),
        data: "v2",
        done: AtomicBool::new(false),
    };
    fx.write("a.txt", "v2");
    let solver = fx.solver();
    let options = SolveOptions::default().with_no_cache(true);
    let solved = solver
        .solve(&graph.definition(), &options, &sink)
        .map_err(fail)?;
    let got = built_content(&fx, &solver, &solved)?;
    check(got == "v2", format!("built {got:?}"))
}

fn rewritten_before_copy() -> TestResult {
    let (graph, copy) = copy_graph();
    rewritten_at_start(&graph, copy)
}

fn rewritten_before_bind_mount() -> TestResult {
    let (graph, run) = bind_graph();
    rewritten_at_start(&graph, run)
}

fn rebuilds_while_changing() -> TestResult {
    let fx = Fixture::new();
    let (graph, _) = copy_graph();
    let contents = ["alpha", "bravo", "charlie"];
    fx.write("a.txt", contents[0]);
    let stop = AtomicBool::new(false);
    let path = fx.context().join("a.txt");
    std::thread::scope(|scope| -> TestResult {
        let writer = scope.spawn(|| {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                // Replaced whole (rename), as editors save, or rewritten in place.
                let data = contents[i % contents.len()];
                if i % 2 == 0 {
                    let tmp = path.with_extension("tmp");
                    let _ = std::fs::write(&tmp, data);
                    let _ = std::fs::rename(&tmp, &path);
                } else {
                    let _ = std::fs::write(&path, data);
                }
            }
        });
        let mut outcome = Ok(());
        for _ in 0..8 {
            match build_once(&fx, &graph, None) {
                Ok(got) if got.is_empty() || contents.contains(&got.as_str()) => {}
                Ok(got) => {
                    outcome = Err(format!("built {got:?}"));
                    break;
                }
                // Caught: the file changed between the key and the copy.
                Err(err) if changed(&err) => {}
                // Caught while computing the key: the file was half written or replaced.
                Err(SolveError::CacheKey { .. }) => {}
                Err(err) => {
                    outcome = Err(fail(&err));
                    break;
                }
            }
        }
        stop.store(true, Ordering::SeqCst);
        writer.join().expect("the writer thread");
        outcome
    })?;
    // Whatever the builds recorded, each record agrees with its key.
    cache_agrees(&fx, &graph, &contents)
}

fn wildcard_link_keyed_by_target() -> TestResult {
    let fx = Fixture::new();
    fx.write("real/config.txt", "v1");
    std::os::unix::fs::symlink("real/config.txt", fx.context().join("conf.txt")).map_err(fail)?;
    let mut graph = Graph::on_busybox();
    let context = context_op(&mut graph);
    let action = CopyAction::new(context, vec!["/conf*".into()], "/etc/");
    let copy = graph.step(
        FileOp::new(Some(graph.top())).with_action(action),
        "COPY conf* /etc/",
    );
    let content = |solver: &img_solver::Solver<Worker>,
                   solved: &Solved<WorkerRef>|
     -> Result<String, String> {
        let out = tempfile::tempdir_in(fx.dir.path()).map_err(fail)?;
        write_rootfs_dir(solver.executor(), &solved.output, out.path()).map_err(fail)?;
        let meta = std::fs::symlink_metadata(out.path().join("etc/conf.txt")).map_err(fail)?;
        check(meta.is_file(), "the match is followed, as BuildKit does")?;
        Ok(read(&out.path().join("etc/conf.txt")))
    };
    let solver = fx.solver();
    let solved = solve(&solver, &graph.definition()).map_err(fail)?;
    check(content(&solver, &solved)? == "v1", "first build")?;
    fx.write("real/config.txt", "v2");
    let solver = fx.solver();
    let solved = solve(&solver, &graph.definition()).map_err(fail)?;
    check(
        solved.executed.contains(&copy.digest),
        "editing the link's target re-ran the copy",
    )?;
    check(
        content(&solver, &solved)? == "v2",
        "the new content was copied",
    )
}
