//! Parallel scheduling, deduplication, `--jobs`, failure and cancellation.

mod common;

use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{overlap, Graph, Workspace};
use img_llb::Definition;
use img_solver::{CancelToken, ChannelSink, NoProgress, ProgressEvent, SolveError, SolveOptions};

#[test]
fn identical_work_in_several_stages_runs_once() {
    let ws = Workspace::new();
    let mut g = Graph::new();
    let base = g.image("alpine");
    let a = g.run("a", base, "RUN apk add gcc", &["apk", "add", "gcc"]);
    let b = g.run("b", base, "RUN apk add gcc (b)", &["apk", "add", "gcc"]);
    assert_eq!(a, b);
    let a2 = g.run("a", a, "RUN make a", &["make", "a"]);
    let b2 = g.run("b", b, "RUN make b", &["make", "b"]);
    let out = g.merge(vec![a2, b2]);
    let def = g.build(out);

    let solver = ws.solver();
    let solved = solver
        .solve(&def, &SolveOptions::default(), &NoProgress)
        .unwrap();
    assert_eq!(solver.executor().runs().len(), def.len());
    assert_eq!(solver.executor().run_count("RUN apk add gcc"), 1);
    assert_eq!(solved.executed.len(), def.len());
    assert!(solved.cached.is_empty());
}

/// Four independent ops run at the same time: each waits until all four have started (see
/// the fake executor's `meet`), which ops run one after the other never do.
#[test]
fn independent_ops_run_at_the_same_time() {
    let ws = Workspace::new();
    let mut g = Graph::new();
    let base = g.image("alpine");
    let stages: Vec<_> = (0..4)
        .map(|i| {
            g.run(
                &format!("s{i}"),
                base,
                &format!("RUN meet {i}"),
                &["meet", "independent-ops", "4", &i.to_string()],
            )
        })
        .collect();
    let out = g.merge(stages);
    let def = g.build(out);

    let solver = ws.solver();
    solver
        .solve(&def, &SolveOptions::default(), &NoProgress)
        .unwrap();
    let runs: Vec<_> = (0..4)
        .map(|i| solver.executor().run_of(&format!("RUN meet {i}")))
        .collect();
    for a in &runs {
        for b in &runs {
            if a.op != b.op {
                assert!(overlap(a, b), "{} and {} did not overlap", a.name, b.name);
            }
        }
    }
}

#[test]
fn an_op_starts_only_after_its_inputs_finished() {
    let ws = Workspace::new();
    let mut g = Graph::new();
    let base = g.image("alpine");
    let one = g.run("s", base, "RUN one", &["sleep", "100", "1"]);
    let two = g.run("s", one, "RUN two", &["sleep", "100", "2"]);
    let side = g.run("t", base, "RUN side", &["sleep", "150", "3"]);
    let three = g.run("s", two, "RUN three", &["sleep", "100", "3"]);
    let out = g.merge(vec![three, side]);
    let def = g.build(out);

    let solver = ws.solver();
    solver
        .solve(&def, &SolveOptions::default(), &NoProgress)
        .unwrap();
    let exec = solver.executor();
    let order = ["FROM alpine", "RUN one", "RUN two", "RUN three", "merge"];
    for pair in order.windows(2) {
        let (before, after) = (exec.run_of(pair[0]), exec.run_of(pair[1]));
        assert!(
            after.start >= before.end,
            "{} started before {} ended",
            pair[1],
            pair[0]
        );
    }
    assert!(overlap(&exec.run_of("RUN side"), &exec.run_of("RUN one")));
    assert!(exec.run_of("merge").start >= exec.run_of("RUN side").end);
}

#[test]
fn jobs_one_runs_exec_ops_one_at_a_time() {
    let ws = Workspace::new();
    let def = four_sleeping_stages("100");

    let solver = ws.solver();
    solver
        .solve(&def, &SolveOptions::default().with_jobs(1), &NoProgress)
        .unwrap();
    let runs: Vec<_> = (0..4)
        .map(|i| solver.executor().run_of(&format!("RUN sleep {i}")))
        .collect();
    for (i, a) in runs.iter().enumerate() {
        for b in &runs[i + 1..] {
            assert!(
                !overlap(a, b),
                "{} and {} overlapped with --jobs 1",
                a.name,
                b.name
            );
        }
    }
}

#[test]
fn a_failure_cancels_running_ops_and_reports_the_instruction() {
    let ws = Workspace::new();
    let mut g = Graph::new();
    let base = g.image("alpine");
    let waiting = g.run("slow", base, "RUN wait", &["wait-cancel"]);
    let failing = g.run("bad", base, "RUN make", &["fail", "2"]);
    let after = g.run("bad", failing, "RUN after", &["true"]);
    let out = g.merge(vec![waiting, after]);
    let def = g.build(out);

    let solver = ws.solver();
    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    let err = solver
        .solve(&def, &SolveOptions::default(), &ChannelSink(tx))
        .unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "the waiting op was not cancelled"
    );

    let SolveError::OpFailed {
        label,
        log_tail,
        source,
    } = &err
    else {
        panic!("unexpected error {err:?}");
    };
    assert_eq!(label.op, failing.digest);
    let location = label.location.as_ref().unwrap();
    assert_eq!(
        (location.file.as_str(), location.start_line),
        ("Dockerfile", 3)
    );
    assert_eq!(err.to_string(), "Dockerfile:3: `RUN make` failed");
    assert_eq!(source.to_string(), "process exited with code 2");
    assert_eq!(log_tail.len(), 20);
    assert_eq!(log_tail.last().unwrap(), "make: *** [all] Error 2");
    assert_eq!(log_tail.first().unwrap(), "line 12");

    assert_eq!(solver.executor().run_count("RUN after"), 0);
    let events: Vec<ProgressEvent> = rx.try_iter().collect();
    assert!(events
        .iter()
        .any(|e| matches!(e, ProgressEvent::Failed { op, .. } if *op == failing.digest)));
    assert!(events
        .iter()
        .any(|e| matches!(e, ProgressEvent::Cancelled { op, .. } if *op == waiting.digest)));

    // Only the image made it into the cache; neither the failed nor the cancelled op did.
    let recorded: Vec<_> = solver
        .cache()
        .records()
        .unwrap()
        .into_iter()
        .map(|r| r.op)
        .collect();
    assert_eq!(recorded, vec![base.digest]);
}

#[test]
fn cancelling_from_outside_stops_the_build() {
    let ws = Workspace::new();
    let mut g = Graph::new();
    let base = g.image("alpine");
    let waiting = g.run("s", base, "RUN wait", &["wait-cancel"]);
    let def = g.build(waiting);

    let solver = ws.solver();
    let cancel = CancelToken::new();
    let trigger = cancel.clone();
    let start = Instant::now();
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        trigger.cancel();
    });
    let err = solver
        .solve(
            &def,
            &SolveOptions::default().with_cancel(cancel),
            &NoProgress,
        )
        .unwrap_err();
    canceller.join().unwrap();
    assert!(matches!(err, SolveError::Cancelled), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[test]
fn progress_reports_every_op_with_timestamps_in_order() {
    let ws = Workspace::new();
    let mut g = Graph::new();
    let base = g.image("alpine");
    let run = g.run("s", base, "RUN build", &["true"]);
    let def = g.build(run);

    let events = Mutex::new(Vec::new());
    let sink = |e: ProgressEvent| events.lock().unwrap().push(e);
    ws.solver()
        .solve(&def, &SolveOptions::default(), &sink)
        .unwrap();
    let first: Vec<ProgressEvent> = std::mem::take(&mut events.lock().unwrap());
    let kinds: Vec<(String, &str)> = first
        .iter()
        .map(|e| {
            let json: serde_json::Value = serde_json::from_str(&e.to_json_line()).unwrap();
            (
                json["op"].as_str().unwrap().to_owned(),
                match e {
                    ProgressEvent::Started { .. } => "started",
                    ProgressEvent::Finished { .. } => "finished",
                    _ => "other",
                },
            )
        })
        .collect();
    let base_s = base.digest.to_string();
    let run_s = run.digest.to_string();
    assert_eq!(
        kinds,
        vec![
            (base_s.clone(), "started"),
            (base_s, "finished"),
            (run_s.clone(), "started"),
            (run_s, "finished")
        ]
    );

    ws.solver()
        .solve(&def, &SolveOptions::default(), &sink)
        .unwrap();
    let second = events.lock().unwrap();
    assert_eq!(second.len(), 2);
    assert!(second
        .iter()
        .all(|e| matches!(e, ProgressEvent::Cached { .. })));
}

#[test]
fn a_panicking_executor_fails_the_build_instead_of_hanging_it() {
    let ws = Workspace::new();
    let mut g = Graph::new();
    let base = g.image("alpine");
    let waiting = g.run("s", base, "RUN wait", &["wait-cancel"]);
    let broken = g.run("t", base, "RUN broken", &["panic"]);
    let out = g.merge(vec![waiting, broken]);
    let def = g.build(out);
    let err = ws
        .solver()
        .solve(&def, &SolveOptions::default(), &NoProgress)
        .unwrap_err();
    let SolveError::Panicked { label } = &err else {
        panic!("unexpected error {err:?}");
    };
    assert_eq!(label.op, broken.digest);
}

/// Four independent stages on one base, each sleeping `millis`, merged at the end.
fn four_sleeping_stages(millis: &str) -> Definition {
    let mut g = Graph::new();
    let base = g.image("alpine");
    let stages: Vec<_> = (0..4)
        .map(|i| {
            g.run(
                &format!("s{i}"),
                base,
                &format!("RUN sleep {i}"),
                &["sleep", millis, &i.to_string()],
            )
        })
        .collect();
    let out = g.merge(stages);
    g.build(out)
}
