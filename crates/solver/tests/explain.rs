//! Why a step missed the cache: the progress names what changed since the last build of the
//! same Dockerfile location.

mod common;

use std::sync::Mutex;

use common::{Graph, Workspace};
use img_llb::{Definition, Digest, OpRef};
use img_solver::{CacheChange, ChangeKind, ProgressEvent, SolveOptions};

/// The `CacheMiss` events of a solve, by op.
#[derive(Default)]
struct Misses(Mutex<Vec<(Digest, String, Vec<CacheChange>)>>);

impl img_solver::ProgressSink for Misses {
    fn emit(&self, event: ProgressEvent) {
        if let ProgressEvent::CacheMiss {
            op,
            summary,
            changes,
            ..
        } = event
        {
            self.0.lock().unwrap().push((op, summary, changes));
        }
    }
}

impl Misses {
    fn of(&self, op: OpRef) -> Option<(String, Vec<CacheChange>)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .find(|(o, _, _)| *o == op.digest)
            .map(|(_, summary, changes)| (summary.clone(), changes.clone()))
    }

    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// `FROM alpine`, `COPY src`, `RUN make` with `VERSION` in its environment.
struct Steps {
    def: Definition,
    image: OpRef,
    copy: OpRef,
    run: OpRef,
}

fn steps(version: &str, command: &str) -> Steps {
    let mut g = Graph::new();
    let image = g.image("alpine");
    let ctx = g.context();
    let copy = g.copy("build", image, ctx, "src");
    let run = g.run_env(
        "build",
        copy,
        "RUN make",
        &[command],
        &[("VERSION", version), ("PATH", "/bin")],
    );
    Steps {
        def: g.build(run),
        image,
        copy,
        run,
    }
}

fn write_sources(ws: &Workspace) {
    let src = ws.context().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for name in ["a.c", "b.c", "c.c", "d.c"] {
        std::fs::write(src.join(name), format!("// {name}\n")).unwrap();
    }
}

fn solve(ws: &Workspace, def: &Definition, image_digest: &str) -> Misses {
    let solver = ws.solver();
    solver
        .executor()
        .set_image_digest("alpine", &format!("sha256:{}", image_digest.repeat(64)));
    let misses = Misses::default();
    solver
        .solve(def, &SolveOptions::default(), &misses)
        .unwrap();
    misses
}

#[test]
fn a_changed_file_is_named_with_a_count_and_steps_built_on_it_say_so() {
    let ws = Workspace::new();
    write_sources(&ws);
    let s = steps("1", "make");
    let first = solve(&ws, &s.def, "a");
    assert_eq!(first.count(), 0, "nothing to compare with on a first build");

    let src = ws.context().join("src");
    std::fs::write(src.join("b.c"), "// b.c edited\n").unwrap();
    std::fs::write(src.join("c.c"), "// c.c edited\n").unwrap();
    std::fs::remove_file(src.join("d.c")).unwrap();
    std::fs::write(src.join("e.c"), "// new\n").unwrap();
    let misses = solve(&ws, &s.def, "a");

    let (summary, changes) = misses.of(s.copy).expect("the COPY missed");
    assert_eq!(summary, "src/b.c changed (and 3 more files)");
    let CacheChange::Files { paths, total, .. } = &changes[0] else {
        panic!("{changes:?}");
    };
    assert_eq!(*total, 4);
    let named: Vec<(&str, ChangeKind)> =
        paths.iter().map(|p| (p.path.as_str(), p.change)).collect();
    assert_eq!(
        named,
        vec![
            ("src/b.c", ChangeKind::Modified),
            ("src/c.c", ChangeKind::Modified),
            ("src/d.c", ChangeKind::Removed),
            ("src/e.c", ChangeKind::Added),
        ]
    );
    let (summary, _) = misses.of(s.run).expect("the RUN missed");
    assert_eq!(
        summary,
        "the step it builds on changed: COPY src (src/b.c changed (and 3 more files))"
    );
    assert!(misses.of(s.image).is_none(), "the image was cached");
}

#[test]
fn a_changed_build_arg_is_named_without_its_value() {
    let ws = Workspace::new();
    write_sources(&ws);
    solve(&ws, &steps("1.0-secretish", "make").def, "a");
    let s = steps("2.0-secretish", "make");
    let misses = solve(&ws, &s.def, "a");
    let (summary, changes) = misses.of(s.run).expect("the RUN missed");
    assert_eq!(summary, "build arg or ENV VERSION changed");
    assert_eq!(
        changes,
        vec![CacheChange::Env {
            name: "VERSION".into(),
            change: ChangeKind::Modified
        }]
    );
    assert!(misses.of(s.copy).is_none(), "the COPY was cached");
    // The database and its write-ahead log.
    for entry in std::fs::read_dir(ws.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let stored = std::fs::read(&path).unwrap();
            let text = String::from_utf8_lossy(&stored);
            assert!(
                !text.contains("secretish"),
                "{} holds a value",
                path.display()
            );
        }
    }
}

#[test]
fn a_moved_base_image_is_named_with_both_digests_down_the_chain() {
    let ws = Workspace::new();
    write_sources(&ws);
    let s = steps("1", "make");
    solve(&ws, &s.def, "a");
    let misses = solve(&ws, &s.def, "b");
    let (summary, _) = misses.of(s.image).expect("the FROM missed");
    assert_eq!(
        summary,
        "base image alpine changed (sha256:aaaaaaaaaaaa -> sha256:bbbbbbbbbbbb)"
    );
    let (summary, _) = misses.of(s.run).expect("the RUN missed");
    assert_eq!(
        summary,
        "the step it builds on changed: COPY src (base image alpine changed (sha256:aaaaaaaaaaaa -> sha256:bbbbbbbbbbbb))"
    );
}

#[test]
fn an_edited_instruction_and_a_pruned_result_are_told_apart() {
    let ws = Workspace::new();
    write_sources(&ws);
    solve(&ws, &steps("1", "make").def, "a");
    let s = steps("1", "make-all");
    let misses = solve(&ws, &s.def, "a");
    let (_, changes) = misses.of(s.run).expect("the RUN missed");
    assert_eq!(
        changes,
        vec![CacheChange::Expansion],
        "same text, other args"
    );

    // The result is gone (pruned) though nothing changed.
    let solver = ws.solver();
    let record = solver
        .cache()
        .records()
        .unwrap()
        .into_iter()
        .find(|r| r.op == s.run.digest)
        .unwrap();
    solver.cache().remove(&record.key).unwrap();
    let misses = solve(&ws, &s.def, "a");
    let (_, changes) = misses.of(s.run).expect("the RUN missed");
    assert_eq!(changes, vec![CacheChange::ResultGone]);
}

#[test]
fn no_cache_explains_nothing() {
    let ws = Workspace::new();
    write_sources(&ws);
    let s = steps("1", "make");
    solve(&ws, &s.def, "a");
    std::fs::write(ws.context().join("src/a.c"), "// edited\n").unwrap();
    let misses = Misses::default();
    ws.solver()
        .solve(
            &s.def,
            &SolveOptions::default().with_no_cache(true),
            &misses,
        )
        .unwrap();
    assert_eq!(misses.count(), 0);
}
