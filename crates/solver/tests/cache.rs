//! Cache hits and misses across solves, processes and edits, and sharing of the database.

mod common;

use std::time::Duration;

use common::{Graph, Workspace};
use img_llb::{Definition, OpRef};
use img_solver::{CacheDb, NoProgress, SolveOptions, Solver};

/// Two stages copying one context file each onto an image, each followed by a RUN, merged.
struct TwoStages {
    def: Definition,
    copy_a: OpRef,
    run_a: OpRef,
    copy_b: OpRef,
    run_b: OpRef,
}

fn two_stages() -> TwoStages {
    let mut g = Graph::new();
    let base = g.image("alpine");
    let ctx = g.context();
    let copy_a = g.copy("a", base, ctx, "a.txt");
    let run_a = g.run("a", copy_a, "RUN build a", &["make", "a"]);
    let copy_b = g.copy("b", base, ctx, "src");
    let run_b = g.run("b", copy_b, "RUN build b", &["make", "b"]);
    let out = g.merge(vec![run_a, run_b]);
    TwoStages {
        def: g.build(out),
        copy_a,
        run_a,
        copy_b,
        run_b,
    }
}

fn write_context(ws: &Workspace) {
    let ctx = ws.context();
    std::fs::write(ctx.join("a.txt"), "alpha").unwrap();
    std::fs::create_dir_all(ctx.join("src")).unwrap();
    std::fs::write(ctx.join("src/main.c"), "int main() {}").unwrap();
    std::fs::write(ctx.join("README"), "read me").unwrap();
}

#[test]
fn a_fresh_solver_on_the_same_database_reuses_every_result() {
    let ws = Workspace::new();
    write_context(&ws);
    let t = two_stages();
    let first = ws
        .solver()
        .solve(&t.def, &SolveOptions::default(), &NoProgress)
        .unwrap();
    assert_eq!(first.executed.len(), t.def.len());

    // A new executor and a new database connection stand for a later img process.
    let later = ws.solver();
    let second = later
        .solve(&t.def, &SolveOptions::default(), &NoProgress)
        .unwrap();
    assert!(second.executed.is_empty(), "re-ran {:?}", second.executed);
    assert_eq!(second.cached.len(), t.def.len());
    assert_eq!(second.cache_key, first.cache_key);
    assert_eq!(second.output.id, first.output.id);
    assert!(later.executor().runs().is_empty());
}

#[test]
fn editing_a_context_file_reruns_only_the_steps_that_read_it() {
    let ws = Workspace::new();
    write_context(&ws);
    let t = two_stages();
    ws.solver()
        .solve(&t.def, &SolveOptions::default(), &NoProgress)
        .unwrap();

    // Same size, written right away: only the racy-timestamp rule can catch this edit.
    std::fs::write(ws.context().join("src/main.c"), "int main() {1}").unwrap();
    let solver = ws.solver();
    let solved = solver
        .solve(&t.def, &SolveOptions::default(), &NoProgress)
        .unwrap();
    let executed: Vec<String> = solver
        .executor()
        .runs()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(
        executed,
        vec!["load build context", "COPY src", "RUN build b", "merge"],
        "unexpected re-runs"
    );
    for reused in [t.copy_a, t.run_a] {
        assert!(solved.cached.contains(&reused.digest));
    }
    assert!(solved.executed.contains(&t.copy_b.digest));
    assert!(solved.executed.contains(&t.run_b.digest));

    // A file nobody copies changes only the context's own key.
    std::fs::write(ws.context().join("README"), "changed").unwrap();
    let solver = ws.solver();
    solver
        .solve(&t.def, &SolveOptions::default(), &NoProgress)
        .unwrap();
    let executed: Vec<String> = solver
        .executor()
        .runs()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(executed, vec!["load build context"]);
}

#[test]
fn no_cache_reruns_everything_and_no_cache_filter_one_stage_and_its_dependents() {
    let ws = Workspace::new();
    write_context(&ws);
    let t = two_stages();
    ws.solver()
        .solve(&t.def, &SolveOptions::default(), &NoProgress)
        .unwrap();

    let solver = ws.solver();
    let all = solver
        .solve(
            &t.def,
            &SolveOptions::default().with_no_cache(true),
            &NoProgress,
        )
        .unwrap();
    assert_eq!(all.executed.len(), t.def.len());

    let solver = ws.solver();
    solver
        .solve(
            &t.def,
            &SolveOptions::default().with_no_cache_stage("b"),
            &NoProgress,
        )
        .unwrap();
    let mut executed: Vec<String> = solver
        .executor()
        .runs()
        .into_iter()
        .map(|r| r.name)
        .collect();
    executed.sort();
    assert_eq!(executed, vec!["COPY src", "RUN build b", "merge"]);
}

#[test]
fn a_pruned_output_is_rebuilt() {
    let ws = Workspace::new();
    write_context(&ws);
    let t = two_stages();
    let first = ws
        .solver()
        .solve(&t.def, &SolveOptions::default(), &NoProgress)
        .unwrap();
    let record = CacheDb::open(ws.db_path())
        .unwrap()
        .records()
        .unwrap()
        .into_iter()
        .find(|r| r.op == t.run_b.digest)
        .unwrap();
    std::fs::remove_file(ws.dir.path().join("store").join(&record.output_id)).unwrap();

    let solver = ws.solver();
    let second = solver
        .solve(&t.def, &SolveOptions::default(), &NoProgress)
        .unwrap();
    // The merge on top keeps its record: the rebuilt input has the same cache key.
    assert_eq!(second.executed, vec![t.run_b.digest]);
    assert_eq!(second.cache_key, first.cache_key);
}

#[test]
fn records_list_what_was_built() {
    let ws = Workspace::new();
    write_context(&ws);
    let t = two_stages();
    ws.solver()
        .solve(&t.def, &SolveOptions::default(), &NoProgress)
        .unwrap();
    let db = CacheDb::open(ws.db_path()).unwrap();
    let records = db.records().unwrap();
    assert_eq!(records.len(), t.def.len());
    let run_a = records.iter().find(|r| r.op == t.run_a.digest).unwrap();
    assert_eq!(run_a.description, "RUN build a");
    assert!(run_a.last_used_at >= run_a.created_at);
    assert!(db.remove(&run_a.key).unwrap());
    assert!(db.lookup(&run_a.key).unwrap().is_none());
}

#[test]
fn solvers_sharing_one_database_concurrently_never_fail() {
    let ws = Workspace::new();
    write_context(&ws);
    // Several graphs overlapping in their first ops, solved at once by separate solvers, each
    // with its own connection, as separate img processes would.
    let defs: Vec<Definition> = (0..6)
        .map(|i| {
            let mut g = Graph::new();
            let base = g.image("alpine");
            let ctx = g.context();
            let copy = g.copy("a", base, ctx, "a.txt");
            let shared = g.run("a", copy, "RUN shared", &["sleep", "20", "shared"]);
            let own = g.run(
                "a",
                shared,
                &format!("RUN own {i}"),
                &["make", &i.to_string()],
            );
            g.build(own)
        })
        .collect();
    std::thread::scope(|scope| {
        for def in &defs {
            let ws = &ws;
            scope.spawn(move || {
                for _ in 0..3 {
                    let solver: Solver<_> = ws.solver();
                    solver
                        .solve(def, &SolveOptions::default(), &NoProgress)
                        .unwrap();
                }
            });
        }
    });
    let solver = ws.solver();
    for def in &defs {
        let solved = solver
            .solve(def, &SolveOptions::default(), &NoProgress)
            .unwrap();
        assert!(solved.executed.is_empty());
    }
}

#[test]
fn separate_processes_share_the_database() {
    // The test binary runs itself as child processes (see `child_process_solve`).
    let ws = Workspace::new();
    write_context(&ws);
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..3)
        .map(|_| {
            std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "child_process_solve",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("IMG_SOLVER_TEST_CHILD_STATE", ws.dir.path())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "child failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("child solved"));
    }
    let solved = ws
        .solver()
        .solve(&two_stages().def, &SolveOptions::default(), &NoProgress)
        .unwrap();
    assert!(solved.executed.is_empty());
}

/// The child side of `separate_processes_share_the_database`.
#[test]
#[ignore = "run as a child process by separate_processes_share_the_database"]
fn child_process_solve() {
    let Some(state) = std::env::var_os("IMG_SOLVER_TEST_CHILD_STATE") else {
        return;
    };
    let state = std::path::PathBuf::from(state);
    let exec = common::FakeExecutor::new(
        &state.join("store"),
        &state.join("context"),
        Some(&state.join("cache.db")),
    );
    let solver = Solver::new(exec, CacheDb::open(state.join("cache.db")).unwrap());
    for _ in 0..5 {
        solver
            .solve(&two_stages().def, &SolveOptions::default(), &NoProgress)
            .unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    println!("child solved");
}

#[test]
fn checksums_under_a_directory_stream_in_path_order_and_only_below_it() {
    use img_solver::{FileStamp, StampedChecksum};
    let dir = tempfile::tempdir().unwrap();
    let db = CacheDb::open(dir.path().join("cache.db")).unwrap();
    let checksum = |byte: u8| StampedChecksum {
        stamp: FileStamp {
            size: u64::from(byte),
            mtime_ns: 1,
            ctime_ns: 2,
            inode: 3,
        },
        sha256: [byte; 32],
        xattrs: byte.is_multiple_of(2).then_some([byte; 32]),
        recorded_ns: 4,
    };
    // Stored out of order, with neighbours of the directory that are not below it.
    let paths: [&[u8]; 6] = [
        b"/ctx/b/x",
        b"/ctx.txt",
        b"/ctx/a",
        b"/ctx0/a",
        b"/ctx/a.txt",
        b"/ctx/a/\xff",
    ];
    let entries: Vec<(&[u8], StampedChecksum)> = paths
        .iter()
        .enumerate()
        .map(|(i, p)| (*p, checksum(i as u8)))
        .collect();
    db.store_checksums(&entries).unwrap();
    let mut seen = Vec::new();
    db.visit_checksums_under(b"/ctx/", |path, known| {
        seen.push((path.to_vec(), known.sha256[0], known.xattrs.is_some()));
    })
    .unwrap();
    let expected: Vec<(Vec<u8>, u8, bool)> = vec![
        (b"/ctx/a".to_vec(), 2, true),
        (b"/ctx/a.txt".to_vec(), 4, true),
        (b"/ctx/a/\xff".to_vec(), 5, false),
        (b"/ctx/b/x".to_vec(), 0, true),
    ];
    assert_eq!(seen, expected);
    let all = db.checksums_under(b"/ctx").unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(all[&b"/ctx/a/\xff"[..]].stamp.size, 5);
}
