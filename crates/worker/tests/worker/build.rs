//! Building: RUN, COPY, caching across processes, failures, cancellation, mounts, parallelism.

use std::time::{Duration, Instant};

use img_llb::{
    CacheSharing, CopyAction, ExecOp, FileOp, IdOrName, LocalSource, MergeOp, Mount, MountKind,
    OpMetadata, OpRef, Owner, SourceOp,
};
use img_sandbox::SecretBytes;
use img_solver::{CancelToken, NoProgress, SolveError, SolveOptions};
use img_worker::{write_rootfs_dir, SecretSource, SecretStore, WorkerError};
use libtest_mimic::Trial;

use crate::common::*;

pub fn tests() -> Vec<Trial> {
    vec![
        t(
            "run_writes_a_file_into_the_exported_layer",
            run_writes_a_file_into_the_exported_layer,
        ),
        t(
            "copy_from_context_with_wildcard_chown_and_chmod",
            copy_from_context_with_wildcard_chown_and_chmod,
        ),
        t(
            "rebuild_in_a_new_process_is_fully_cached_with_the_same_digest",
            rebuild_is_cached,
        ),
        t(
            "changing_one_context_file_reruns_only_the_steps_reading_it",
            changing_one_file_reruns_dependents,
        ),
        t(
            "run_failure_reports_exit_code_and_output_tail",
            run_failure_reports_exit_code,
        ),
        t(
            "cancellation_kills_a_long_step",
            cancellation_kills_a_long_step,
        ),
        t("cache_mount_persists_between_builds", cache_mount_persists),
        t(
            "secret_mount_is_readable_and_absent_from_the_layer",
            secret_mount,
        ),
        t(
            "independent_runs_execute_in_parallel",
            independent_runs_in_parallel,
        ),
        t(
            "source_date_epoch_gives_identical_digests_in_clean_states",
            source_date_epoch_reproducible,
        ),
        t("unchanged_step_adds_no_layer", unchanged_step_adds_no_layer),
        t(
            "run_mounts_bind_sources_and_tmpfs",
            run_mounts_bind_sources_and_tmpfs,
        ),
        t(
            "gc_keeps_what_the_cache_records_reference",
            gc_keeps_what_the_cache_records_reference,
        ),
        t(
            "copy_of_a_symlink_is_keyed_by_its_target",
            copy_of_a_symlink_is_keyed_by_its_target,
        ),
        t(
            "run_as_user_with_ssh_agent_and_secret_env",
            run_as_user_with_ssh_agent_and_secret_env,
        ),
        t(
            "dockerignored_files_are_neither_copied_nor_mounted",
            dockerignored_files_are_neither_copied_nor_mounted,
        ),
        t(
            "concurrent_processes_share_a_state_directory",
            concurrent_processes_share_a_state_directory,
        ),
    ]
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

fn copy(graph: &mut Graph, context: OpRef, src: &[&str], dest: &str) -> OpRef {
    let action = CopyAction::new(context, src.iter().map(|s| s.to_string()).collect(), dest);
    let op = FileOp::new(Some(graph.top())).with_action(action);
    graph.step(op, &format!("COPY {src:?} {dest}"))
}

fn run_writes_a_file_into_the_exported_layer() -> TestResult {
    let fx = Fixture::new();
    let solver = fx.solver();
    let mut graph = Graph::on_busybox();
    graph.run("echo hello > /greeting && mkdir -p /srv/data");
    let started = Instant::now();
    let (_, image) = build(&solver, &graph, None)?;
    eprintln!(
        "    {} backend: unpack busybox, one RUN, export: {:?}",
        solver.executor().snapshotter().backend(),
        started.elapsed()
    );
    check(
        image.layers.len() == 2,
        format!("layers: {:?}", image.layers),
    )?;
    let files = layer_files(&fx.store(), &image.layers[1].digest);
    let greeting = files.iter().find(|(p, _)| p == "greeting");
    check(
        greeting.is_some_and(|(_, d)| d == b"hello\n"),
        format!(
            "greeting in {:?}",
            files.iter().map(|f| &f.0).collect::<Vec<_>>()
        ),
    )?;
    check(
        files.iter().any(|(p, _)| p == "srv/data"),
        "srv/data in layer",
    )?;
    let config: serde_json::Value = serde_json::from_slice(&image.config).map_err(fail)?;
    check(
        config["rootfs"]["diff_ids"].as_array().map(Vec::len) == Some(2),
        format!("rootfs: {}", config["rootfs"]),
    )?;
    check(
        config["history"][1]["created"].is_string(),
        "history times filled in",
    )
}

fn copy_from_context_with_wildcard_chown_and_chmod() -> TestResult {
    let fx = Fixture::new();
    fx.write("a.txt", "a");
    fx.write("b.txt", "b");
    fx.write("c.md", "c");
    fx.write("dir/sub/d.txt", "d");
    let solver = fx.solver();
    let mut graph = Graph::on_busybox();
    let context = context_op(&mut graph);
    let mut action = CopyAction::new(context, vec!["/*.txt".into()], "/dst/");
    action.owner = Some(Owner {
        user: IdOrName::Name("app".into()),
        group: None,
    });
    action.mode = Some(0o640);
    let op = FileOp::new(Some(graph.top()))
        .with_action(action)
        .with_action(CopyAction::new(context, vec!["/dir".into()], "/copied"));
    graph.step(op, "COPY");
    graph.run("ls -ln /dst /copied/sub > /listing");
    let (solved, _) = build(&solver, &graph, None)?;
    let out = fx.dir.path().join("rootfs");
    write_rootfs_dir(solver.executor(), &solved.output, &out).map_err(fail)?;
    use std::os::unix::fs::MetadataExt;
    let a = std::fs::metadata(out.join("dst/a.txt")).map_err(fail)?;
    check(
        (a.uid(), a.gid()) == (1000, 1000),
        format!("owner {}:{}", a.uid(), a.gid()),
    )?;
    check(a.mode() & 0o7777 == 0o640, format!("mode {:o}", a.mode()))?;
    check(out.join("dst/b.txt").exists(), "b.txt copied")?;
    check(!out.join("dst/c.md").exists(), "c.md not copied")?;
    // A directory's contents are copied, not the directory itself; context files go to root.
    let d = std::fs::metadata(out.join("copied/sub/d.txt")).map_err(fail)?;
    check(d.uid() == 0 && d.gid() == 0, "context files owned by root")?;
    check(
        read(&out.join("listing")).contains("1000"),
        read(&out.join("listing")),
    )
}

fn rebuild_is_cached() -> TestResult {
    let fx = Fixture::new();
    fx.write("app.txt", "v1");
    let mut graph = Graph::on_busybox();
    let context = context_op(&mut graph);
    copy(&mut graph, context, &["/app.txt"], "/app/");
    graph.run("cat /app/app.txt > /app/out");
    // No SOURCE_DATE_EPOCH: the image's times come from its snapshots, so a rebuild from the
    // cache is the same image.
    let first = {
        let solver = fx.solver();
        build(&solver, &graph, None)?.1
    };
    std::thread::sleep(Duration::from_millis(1100));
    let solver = fx.solver();
    let started = Instant::now();
    let (solved, second) = build(&solver, &graph, None)?;
    let took = started.elapsed();
    let executed: Vec<_> = solved
        .executed
        .iter()
        .filter(|d| *d != &context.digest)
        .collect();
    check(executed.is_empty(), format!("executed again: {executed:?}"))?;
    check(
        second.layers_exported == 0,
        format!("{} layers re-exported", second.layers_exported),
    )?;
    check(
        first.manifest_digest == second.manifest_digest,
        format!("{} != {}", first.manifest_digest, second.manifest_digest),
    )?;
    // Shown, not asserted: how long it takes depends on the machine's load.
    eprintln!("    fully cached rebuild with export: {took:?}");
    Ok(())
}

fn changing_one_file_reruns_dependents() -> TestResult {
    let fx = Fixture::new();
    fx.write("a.txt", "a1");
    fx.write("b.txt", "b1");
    fx.write("unrelated.txt", "u1");
    let mut graph = Graph::on_busybox();
    let context = context_op(&mut graph);
    let copy_a = copy(&mut graph, context, &["/a.txt"], "/a/");
    let copy_b = copy(&mut graph, context, &["/b.txt"], "/b/");
    let run = graph.run("cat /a/a.txt /b/b.txt > /both");
    build(&fx.solver(), &graph, None)?;

    fx.write("unrelated.txt", "u2");
    let (solved, _) = build(&fx.solver(), &graph, None)?;
    let ran = |op: &OpRef, solved: &img_solver::Solved<_>| solved.executed.contains(&op.digest);
    check(
        !ran(&copy_a, &solved) && !ran(&copy_b, &solved) && !ran(&run, &solved),
        format!("unrelated change re-ran {:?}", solved.executed),
    )?;

    fx.write("b.txt", "b2");
    let (solved, _) = build(&fx.solver(), &graph, None)?;
    check(!ran(&copy_a, &solved), "COPY a.txt re-ran")?;
    check(
        ran(&copy_b, &solved) && ran(&run, &solved),
        format!("executed {:?}", solved.executed),
    )
}

fn run_failure_reports_exit_code() -> TestResult {
    let fx = Fixture::new();
    let mut graph = Graph::on_busybox();
    graph.run("echo about to fail; echo on stderr >&2; exit 3");
    match solve(&fx.solver(), &graph.definition()) {
        Err(SolveError::OpFailed {
            log_tail, source, ..
        }) => {
            let code = source.downcast_ref::<WorkerError>().and_then(|e| match e {
                WorkerError::ExitCode { code, .. } => Some(*code),
                _ => None,
            });
            check(code == Some(3), format!("error: {source}"))?;
            check(
                log_tail.iter().any(|l| l == "about to fail")
                    && log_tail.iter().any(|l| l == "on stderr"),
                format!("tail: {log_tail:?}"),
            )?;
            check(
                source.to_string().contains("exit code 3"),
                source.to_string(),
            )
        }
        other => Err(format!(
            "expected a failure, got {:?}",
            other.map(|s| s.output)
        )),
    }
}

fn cancellation_kills_a_long_step() -> TestResult {
    let fx = Fixture::new();
    // The token names this test's step among every process of the machine.
    let token = format!("img-cancel-test-{}", std::process::id());
    let mut graph = Graph::on_busybox();
    graph.run(&format!("sleep 100; : {token}"));
    let running = || -> Vec<String> {
        std::process::Command::new("pgrep")
            .args(["-f", &token])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let solver = fx.solver();
    let cancel = CancelToken::new();
    let options = SolveOptions::default().with_cancel(cancel.clone());
    let (result, before, took) = std::thread::scope(|scope| {
        let canceller = scope.spawn(|| {
            // Cancel once the step is seen running, however long a loaded machine takes to
            // start it (bounded, so a step that never starts fails the test instead of hanging).
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut before = running();
            while before.is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
                before = running();
            }
            cancel.cancel();
            (before, Instant::now())
        });
        let result = solver.solve(&graph.definition(), &options, &NoProgress);
        let (before, cancelled_at) = canceller.join().unwrap();
        (result, before, cancelled_at.elapsed())
    });
    check(
        matches!(result, Err(SolveError::Cancelled)),
        format!("{:?}", result.map(|s| s.output)),
    )?;
    eprintln!("    returned {took:?} after the cancel");
    check(
        !before.is_empty(),
        "the step was not seen running within 120 s",
    )?;
    // The step sleeps 100 s: returning well before that means the cancel killed it.
    check(
        took < Duration::from_secs(60),
        format!("cancel took {took:?}"),
    )?;
    let after = running();
    check(
        after.is_empty(),
        format!("still running after the cancel: {after:?}"),
    )
}

fn cache_mount_step(graph: &mut Graph, script: &str) -> OpRef {
    let exec = ExecOp::new(
        Some(graph.top()),
        vec!["/bin/sh".into(), "-c".into(), script.into()],
    )
    .with_env("PATH", "/bin")
    .with_mount(Mount {
        target: "/cache".into(),
        kind: MountKind::Cache {
            id: "test-cache".into(),
            sharing: CacheSharing::Locked,
            source: None,
            selector: "/".into(),
            readonly: false,
            uid: 1000,
            gid: 1000,
            mode: 0o750,
        },
    });
    graph.step(exec, script)
}

fn cache_mount_persists() -> TestResult {
    let fx = Fixture::new();
    let mut first = Graph::on_busybox();
    cache_mount_step(&mut first, "echo from-first-build > /cache/note");
    let (_, image) = build(&fx.solver(), &first, None)?;
    // The step wrote only into the cache, so it adds no layer at all.
    check(
        image.layers.len() == 1,
        format!("{} layers", image.layers.len()),
    )?;

    let mut second = Graph::on_busybox();
    cache_mount_step(
        &mut second,
        "cat /cache/note > /seen && stat -c %u:%g:%a /cache > /owner",
    );
    let (solved, _) = build(&fx.solver(), &second, None)?;
    let out = fx.dir.path().join("rootfs");
    write_rootfs_dir(fx.solver().executor(), &solved.output, &out).map_err(fail)?;
    check(
        read(&out.join("seen")) == "from-first-build\n",
        read(&out.join("seen")),
    )?;
    check(
        read(&out.join("owner")) == "1000:1000:750\n",
        read(&out.join("owner")),
    )
}

fn secret_mount() -> TestResult {
    let fx = Fixture::new();
    let mut options = fx.options();
    options.secrets = SecretStore::new().with(
        "token",
        SecretSource::Bytes(SecretBytes::new("s3cr3t-value")),
    );
    let solver = fx.solver_with(options);
    let mut graph = Graph::on_busybox();
    let exec = ExecOp::new(
        Some(graph.top()),
        vec![
            "/bin/sh".into(),
            "-c".into(),
            "test \"$(cat /run/secrets/token)\" = s3cr3t-value && echo ok > /verified".into(),
        ],
    )
    .with_env("PATH", "/bin")
    .with_mount(Mount {
        target: "/run/secrets/token".into(),
        kind: MountKind::Secret {
            id: "token".into(),
            env: None,
            required: true,
            uid: 0,
            gid: 0,
            mode: 0o400,
        },
    });
    graph.step(exec, "RUN --mount=type=secret");
    let (_, image) = build(&solver, &graph, None)?;
    let files = layer_files(&fx.store(), &image.layers[1].digest);
    check(
        files.iter().any(|(p, d)| p == "verified" && d == b"ok\n"),
        "secret was readable",
    )?;
    check(
        !files.iter().any(|(p, _)| p.contains("secrets/token")),
        "secret file in layer",
    )?;
    check(
        !files
            .iter()
            .any(|(_, d)| d.windows(12).any(|w| w == b"s3cr3t-value")),
        "secret value in layer",
    )
}

/// Independent steps run at the same time: each marks its start in a shared cache mount and
/// waits until another has started too. Run one after the other, the first would wait until
/// its bound (two minutes) and fail; no assertion depends on how fast the machine is.
fn independent_runs_in_parallel() -> TestResult {
    let fx = Fixture::new();
    let mut graph = Graph::on_busybox();
    let base = graph.top();
    let mut runs = Vec::new();
    for i in 0..4 {
        let script = format!(
            "touch /meet/started-{i}; waited=0; \
             while [ $(ls /meet | wc -l) -lt 2 ]; do \
               waited=$((waited + 1)); [ $waited -gt 1200 ] && exit 7; sleep 0.1; \
             done; echo {i} > /run-{i}"
        );
        let exec = ExecOp::new(Some(base), vec!["/bin/sh".into(), "-c".into(), script])
            .with_env("PATH", "/bin")
            .with_mount(Mount {
                target: "/meet".into(),
                kind: MountKind::Cache {
                    id: "meeting-point".into(),
                    sharing: CacheSharing::Shared,
                    source: None,
                    selector: "/".into(),
                    readonly: false,
                    uid: 0,
                    gid: 0,
                    mode: 0o755,
                },
            });
        runs.push(
            graph
                .builder
                .add(exec, OpMetadata::described(format!("RUN {i}")))
                .unwrap(),
        );
    }
    graph.step(MergeOp { inputs: runs }, "merge");
    let solver = fx.solver();
    let solved = solve(&solver, &graph.definition()).map_err(fail)?;
    let out = fx.dir.path().join("rootfs");
    write_rootfs_dir(solver.executor(), &solved.output, &out).map_err(fail)?;
    for i in 0..4 {
        check(
            out.join(format!("run-{i}")).exists(),
            format!("run-{i} merged"),
        )?;
    }
    Ok(())
}

fn source_date_epoch_reproducible() -> TestResult {
    let epoch = 1_700_000_500;
    let mut digests = Vec::new();
    for _ in 0..2 {
        let fx = Fixture::new();
        fx.write("app.txt", "same");
        let mut graph = Graph::on_busybox();
        let context = context_op(&mut graph);
        copy(&mut graph, context, &["/app.txt"], "/app/");
        graph.run("mkdir -p /out && cp /app/app.txt /out/copy && echo built > /out/stamp");
        let (_, image) = build(&fx.solver(), &graph, Some(epoch))?;
        digests.push(image.manifest_digest);
        // Different wall-clock seconds for the second state directory's files.
        std::thread::sleep(Duration::from_millis(1100));
    }
    check(
        digests[0] == digests[1],
        format!("{} != {}", digests[0], digests[1]),
    )
}

fn unchanged_step_adds_no_layer() -> TestResult {
    let fx = Fixture::new();
    let mut graph = Graph::on_busybox();
    graph.run("true");
    graph.run("echo x > /x");
    let (_, image) = build(&fx.solver(), &graph, None)?;
    check(
        image.layers.len() == 2,
        format!("{} layers", image.layers.len()),
    )?;
    let config: serde_json::Value = serde_json::from_slice(&image.config).map_err(fail)?;
    check(
        config["history"][1]["empty_layer"] == true,
        format!("history: {}", config["history"]),
    )?;
    check(
        config["history"][2].get("empty_layer").is_none(),
        "second step has a layer",
    )
}

fn run_mounts_bind_sources_and_tmpfs() -> TestResult {
    let fx = Fixture::new();
    fx.write("input.txt", "from the context\n");
    let mut graph = Graph::on_busybox();
    let context = context_op(&mut graph);
    // A stage with a parent chain, so its read-only view is an overlay the sandbox mounts.
    graph.run("mkdir /data && echo from-stage > /data/file");
    let stage2 = graph.run("echo more > /data/more");
    graph.steps.clear();
    let script = "cat /ctx/input.txt > /result && cat /stage/file /stage/more >> /result \
                  && echo scribble > /stage/scribble && echo temp > /scratch/t \
                  && test ! -e /ctx/scribble";
    let exec = ExecOp::new(
        Some(graph.base),
        vec!["/bin/sh".into(), "-c".into(), script.into()],
    )
    .with_env("PATH", "/bin")
    .with_mount(Mount {
        target: "/ctx".into(),
        kind: MountKind::Bind {
            source: context,
            selector: "/".into(),
            readonly: true,
        },
    })
    .with_mount(Mount {
        target: "/stage".into(),
        kind: MountKind::Bind {
            source: stage2,
            selector: "/data".into(),
            readonly: false,
        },
    })
    .with_mount(Mount {
        target: "/scratch".into(),
        kind: MountKind::Tmpfs { size: None },
    });
    graph.step(exec, "RUN --mount");
    let (solved, image) = build(&fx.solver(), &graph, None)?;
    let files = layer_files(&fx.store(), &image.layers[1].digest);
    let names: Vec<&str> = files.iter().map(|f| f.0.as_str()).collect();
    check(names == ["result"], format!("layer holds {names:?}"))?;
    check(
        files[0].1 == b"from the context\nfrom-stage\nmore\n",
        String::from_utf8_lossy(&files[0].1).into_owned(),
    )?;
    // The read-write bind's writes were discarded: the stage's snapshot is unchanged.
    let out = fx.dir.path().join("stage");
    let stage_output = &solved.outputs[&stage2.digest];
    write_rootfs_dir(fx.solver().executor(), stage_output, &out).map_err(fail)?;
    check(
        !out.join("data/scribble").exists(),
        "rw bind writes discarded",
    )
}

fn gc_keeps_what_the_cache_records_reference() -> TestResult {
    let fx = Fixture::new();
    let mut graph = Graph::on_busybox();
    let run = graph.run("echo kept > /kept");
    build(&fx.solver(), &graph, None)?;
    // The build's lease is gone with its worker; the cache records alone keep its results.
    let solver = fx.solver();
    let roots = solver.executor().gc_roots(solver.cache()).map_err(fail)?;
    drop(solver);
    let report = fx.store().gc(&roots).map_err(fail)?;
    check(
        report.snapshots_removed.is_empty(),
        format!("removed {:?}", report.snapshots_removed),
    )?;
    let (solved, image) = build(&fx.solver(), &graph, None)?;
    check(
        solved.executed.is_empty(),
        format!("executed after gc: {:?}", solved.executed),
    )?;
    check(
        image.layers_exported == 0,
        "the exported layer was kept too",
    )?;
    // Without the roots everything goes, and the next build runs again.
    let report = fx.store().gc(&Default::default()).map_err(fail)?;
    check(
        !report.snapshots_removed.is_empty(),
        "nothing collected without roots",
    )?;
    // The base image source is found again from its record (a lazy result), its blobs being
    // kept by the image store's name; the step runs again.
    let solved = solve(&fx.solver(), &graph.definition()).map_err(fail)?;
    check(
        solved.executed == vec![run.digest],
        format!("executed after full gc: {:?}", solved.executed),
    )
}

fn copy_of_a_symlink_is_keyed_by_its_target() -> TestResult {
    let fx = Fixture::new();
    fx.write("real/config.txt", "v1");
    std::os::unix::fs::symlink("real/config.txt", fx.context().join("config")).map_err(fail)?;
    let mut graph = Graph::on_busybox();
    let context = context_op(&mut graph);
    let copied = copy(&mut graph, context, &["/config"], "/etc/app.conf");
    build(&fx.solver(), &graph, None)?;
    fx.write("real/config.txt", "v2");
    let (solved, _) = build(&fx.solver(), &graph, None)?;
    check(
        solved.executed.contains(&copied.digest),
        "the copy of the link's new target ran again",
    )?;
    let out = fx.dir.path().join("rootfs");
    write_rootfs_dir(fx.solver().executor(), &solved.output, &out).map_err(fail)?;
    check(
        read(&out.join("etc/app.conf")) == "v2",
        read(&out.join("etc/app.conf")),
    )
}

fn run_as_user_with_ssh_agent_and_secret_env() -> TestResult {
    let fx = Fixture::new();
    let socket_path = fx.dir.path().join("agent.sock");
    let _agent = std::os::unix::net::UnixListener::bind(&socket_path).map_err(fail)?;
    let mut options = fx.options();
    options.ssh_agents.insert("default".into(), socket_path);
    options.secrets = SecretStore::new().with("api", SecretSource::Bytes(SecretBytes::new("k3y")));
    let solver = fx.solver_with(options);
    let mut graph = Graph::on_busybox();
    let script = "id -u > /tmp/uid && test -S \"$SSH_AUTH_SOCK\" && test \"$API_KEY\" = k3y \
         && echo fine > /tmp/ok";
    let exec = ExecOp::new(
        Some(graph.top()),
        vec!["/bin/sh".into(), "-c".into(), script.into()],
    )
    .with_env("PATH", "/bin")
    .with_user("app")
    .with_mount(Mount {
        target: "/run/ssh-agent.sock".into(),
        kind: MountKind::Ssh {
            id: "default".into(),
            required: true,
            uid: 1000,
            gid: 1000,
            mode: 0o600,
        },
    })
    .with_mount(Mount {
        target: String::new(),
        kind: MountKind::Secret {
            id: "api".into(),
            env: Some("API_KEY".into()),
            required: true,
            uid: 0,
            gid: 0,
            mode: 0o400,
        },
    });
    graph.step(exec, "RUN --mount=type=ssh --mount=type=secret,env=API_KEY");
    let (_, image) = build(&solver, &graph, None)?;
    let files = layer_files(&fx.store(), &image.layers[1].digest);
    let file = |name: &str| {
        files
            .iter()
            .find(|(p, _)| p == name)
            .map(|(_, d)| String::from_utf8_lossy(d).into_owned())
    };
    check(
        file("tmp/uid").as_deref() == Some("1000\n"),
        format!("uid: {:?}", file("tmp/uid")),
    )?;
    check(
        file("tmp/ok").as_deref() == Some("fine\n"),
        "ssh socket and secret env seen",
    )
}

fn concurrent_processes_share_a_state_directory() -> TestResult {
    let fx = Fixture::new();
    let mut graph = Graph::on_busybox();
    graph.run("echo same > /same");
    let definition = graph.definition();
    let results: Vec<Result<(), String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let solver = fx.solver();
                let definition = &definition;
                scope.spawn(move || solve(&solver, definition).map(drop).map_err(fail))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for result in results {
        result?;
    }
    let layers: Vec<_> = fx
        .store()
        .snapshotter(img_snapshot::BackendChoice::Auto)
        .map_err(fail)?
        .list()
        .map_err(fail)?
        .into_iter()
        .filter(|s| s.key.starts_with("layer/"))
        .collect();
    check(
        layers.len() == 1,
        format!("base layer snapshots: {layers:?}"),
    )
}

fn dockerignored_files_are_neither_copied_nor_mounted() -> TestResult {
    let fx = Fixture::new();
    fx.write("app/main.txt", "main");
    fx.write("app/local.env", "SECRET=1");
    fx.write("node_modules/x/index.js", "x");
    let mut graph = Graph::on_busybox();
    let mut local = LocalSource::new("context");
    local.exclude_patterns = vec!["**/*.env".into(), "node_modules".into()];
    let context = graph
        .builder
        .add(SourceOp::Local(local), OpMetadata::described("context"))
        .unwrap();
    copy(&mut graph, context, &["/"], "/copied/");
    let script = "ls -R /ctx > /mounted-listing";
    let exec = ExecOp::new(
        Some(graph.top()),
        vec!["/bin/sh".into(), "-c".into(), script.into()],
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
    graph.step(exec, "RUN --mount=type=bind");
    let (solved, _) = build(&fx.solver(), &graph, None)?;
    let out = fx.dir.path().join("rootfs");
    write_rootfs_dir(fx.solver().executor(), &solved.output, &out).map_err(fail)?;
    check(out.join("copied/app/main.txt").exists(), "main.txt copied")?;
    check(
        !out.join("copied/app/local.env").exists(),
        "ignored .env copied",
    )?;
    check(
        !out.join("copied/node_modules").exists(),
        "ignored directory copied",
    )?;
    let listing = read(&out.join("mounted-listing"));
    check(
        listing.contains("main.txt")
            && !listing.contains("local.env")
            && !listing.contains("node_modules"),
        listing,
    )
}
