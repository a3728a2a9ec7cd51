//! Copy rules, archives, downloads, git checkouts, stage-to-stage copies, diffs and a base
//! image pulled from a real registry (and a build pushed back to it).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::{symlink, MetadataExt};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use img_llb::{
    CopyAction, DiffOp, Digest as OpDigest, FileOp, HttpSource, LocalSource, OpMetadata, OpRef,
    SourceOp,
};
use img_registry::{Client, ClientConfig, Reference};
use img_solver::SolveError;
use img_worker::{push_image, write_rootfs_dir, DownloadTimeouts, WorkerError};
use libtest_mimic::Trial;

use crate::common::*;

pub fn tests() -> Vec<Trial> {
    vec![
        t("copy_follows_dockers_destination_rules", copy_rules),
        t("copy_of_a_missing_source_names_it", copy_missing_source),
        t(
            "add_unpacks_tar_gz_bz2_xz_detected_by_content",
            add_unpacks_archive,
        ),
        t(
            "http_source_downloads_with_mode_0600_and_last_modified",
            http_source,
        ),
        t(
            "http_source_with_a_wrong_checksum_fails",
            http_checksum_mismatch,
        ),
        t(
            "http_source_fails_when_the_server_goes_silent",
            http_idle_timeout,
        ),
        t(
            "http_source_download_stops_when_the_build_is_cancelled",
            http_cancelled,
        ),
        t(
            "git_source_checks_out_a_tag_without_the_git_dir",
            git_source,
        ),
        t(
            "copy_from_a_stage_is_keyed_by_the_copied_content",
            copy_from_stage_by_content,
        ),
        t("diff_holds_only_the_changes_of_a_step", diff_op),
        t(
            "base_image_is_pulled_from_a_registry_and_the_build_pushed",
            registry_round_trip,
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

fn rootfs(fx: &Fixture, graph: &Graph) -> Result<std::path::PathBuf, String> {
    let solver = fx.solver();
    let solved = solve(&solver, &graph.definition()).map_err(fail)?;
    let out = fx.dir.path().join(format!("rootfs-{}", graph.steps.len()));
    write_rootfs_dir(solver.executor(), &solved.output, &out).map_err(fail)?;
    Ok(out)
}

fn copy_rules() -> TestResult {
    let fx = Fixture::new();
    fx.write("file.txt", "file");
    fx.write("other.txt", "other");
    fx.write("tree/x/y.txt", "y");
    symlink("file.txt", fx.context().join("link")).map_err(fail)?;
    let mut graph = Graph::on_busybox();
    let ctx = context_op(&mut graph);
    let c = |src: &[&str], dest: &str| {
        CopyAction::new(ctx, src.iter().map(|s| s.to_string()).collect(), dest)
    };
    let op = FileOp::new(Some(graph.top()))
        .with_action(c(&["/file.txt"], "/renamed"))
        .with_action(c(&["/file.txt"], "/into/"))
        .with_action(c(&["/file.txt"], "/tmp"))
        .with_action(c(&["/tree"], "/contents"))
        .with_action(c(&["/file.txt", "/other.txt"], "/many/"))
        .with_action(c(&["/link"], "/followed"))
        .with_action(c(&["/tr*/x/*.txt"], "/deep/a/b/"))
        .with_action(c(&["/file.txt"], "/bin/usr-link-target"));
    graph.step(op, "COPY rules");
    let out = rootfs(&fx, &graph)?;
    let cases: &[(&str, &str)] = &[
        ("renamed", "file"),
        ("into/file.txt", "file"),
        ("tmp/file.txt", "file"),
        ("contents/x/y.txt", "y"),
        ("many/file.txt", "file"),
        ("many/other.txt", "other"),
        ("followed", "file"),
        ("deep/a/b/y.txt", "y"),
        ("bin/usr-link-target", "file"),
    ];
    for (path, want) in cases {
        let got = read(&out.join(path));
        check(got == *want, format!("{path}: {got:?}, want {want:?}"))?;
    }
    check(
        !out.join("contents/tree").exists(),
        "a directory's contents, not the directory",
    )?;
    let followed = std::fs::symlink_metadata(out.join("followed")).map_err(fail)?;
    check(followed.is_file(), "top-level symlink followed")
}

fn copy_missing_source() -> TestResult {
    let fx = Fixture::new();
    let mut graph = Graph::on_busybox();
    let ctx = context_op(&mut graph);
    let op = FileOp::new(Some(graph.top())).with_action(CopyAction::new(
        ctx,
        vec!["/absent.txt".into()],
        "/x",
    ));
    graph.step(op, "COPY absent.txt /x");
    // As in BuildKit, the missing source is found while the step's cache key is computed.
    match solve(&fx.solver(), &graph.definition()) {
        Err(SolveError::CacheKey { source, .. }) => check(
            matches!(source.downcast_ref::<WorkerError>(), Some(WorkerError::SourceNotFound { path }) if path == "/absent.txt"),
            format!("error: {source}"),
        ),
        other => Err(format!(
            "expected a failure, got {:?}",
            other.map(|s| s.output)
        )),
    }
}

/// A tar holding `name` with `data`, written through `compress`.
fn archive<W: std::io::Write>(out: W, name: &str, data: &[u8]) -> Result<W, String> {
    let mut tar = tar::Builder::new(out);
    let mut header = tar::Header::new_ustar();
    header.set_size(data.len() as u64);
    header.set_mode(0o755);
    header.set_mtime(1_600_000_000);
    header.set_uid(0);
    header.set_gid(0);
    tar.append_data(&mut header, name, data).map_err(fail)?;
    tar.into_inner().map_err(fail)
}

fn add_unpacks_archive() -> TestResult {
    let fx = Fixture::new();
    let create = |name: &str| std::fs::File::create(fx.context().join(name)).map_err(fail);
    let gz = flate2::write::GzEncoder::new(create("a.tgz")?, flate2::Compression::fast());
    archive(gz, "pkg/bin/tool", b"tool\n")?
        .finish()
        .map_err(fail)?;
    let bz = bzip2::write::BzEncoder::new(create("b.tar.bz2")?, bzip2::Compression::fast());
    archive(bz, "pkg/share/from-bzip2", b"bz\n")?
        .finish()
        .map_err(fail)?;
    let xz = xz2::write::XzEncoder::new(create("c.tar.xz")?, 1);
    archive(xz, "pkg/share/from-xz", b"xz\n")?
        .finish()
        .map_err(fail)?;
    std::fs::write(fx.context().join("d.txt.gz"), b"\x1f\x8bnot a tar").map_err(fail)?;
    let mut graph = Graph::on_busybox();
    let ctx = context_op(&mut graph);
    let mut action = CopyAction::new(
        ctx,
        ["/a.tgz", "/b.tar.bz2", "/c.tar.xz", "/d.txt.gz"]
            .map(String::from)
            .to_vec(),
        "/opt/",
    );
    action.unpack_archive = true;
    graph.step(
        FileOp::new(Some(graph.top())).with_action(action),
        "ADD a.tgz b.tar.bz2 c.tar.xz d.txt.gz /opt/",
    );
    let out = rootfs(&fx, &graph)?;
    for (path, want) in [
        ("opt/pkg/bin/tool", "tool\n"),
        ("opt/pkg/share/from-bzip2", "bz\n"),
        ("opt/pkg/share/from-xz", "xz\n"),
    ] {
        check(
            read(&out.join(path)) == want,
            format!("{path} not unpacked"),
        )?;
    }
    check(!out.join("opt/a.tgz").exists(), "archive itself not copied")?;
    check(
        out.join("opt/d.txt.gz").exists(),
        "a non-tar is copied as it is",
    )?;
    let meta = std::fs::metadata(out.join("opt/pkg/bin/tool")).map_err(fail)?;
    check(
        meta.mtime() == 1_600_000_000,
        format!("mtime {}", meta.mtime()),
    )
}

/// Serves `body` for any GET on a loopback port, `requests` times.
fn serve(body: &'static [u8], requests: usize) -> (u16, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        for _ in 0..requests {
            let Ok((mut stream, _)) = listener.accept() else {
                return;
            };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body);
        }
    });
    (port, handle)
}

fn http_step(graph: &mut Graph, port: u16, checksum: Option<OpDigest>) {
    let http = graph
        .builder
        .add(
            SourceOp::Http(HttpSource {
                url: format!("http://127.0.0.1:{port}/files/data.bin?x=1"),
                checksum,
                filename: None,
            }),
            OpMetadata::described("download"),
        )
        .unwrap();
    let mut action = CopyAction::new(http, vec!["/data.bin".into()], "/downloads/");
    action.allow_wildcard = false;
    graph.step(
        FileOp::new(Some(graph.top())).with_action(action),
        "ADD url",
    );
}

fn http_source() -> TestResult {
    let fx = Fixture::new();
    let (port, server) = serve(b"downloaded bytes", 2);
    let mut graph = Graph::on_busybox();
    http_step(&mut graph, port, Some(OpDigest::of(b"downloaded bytes")));
    let out = rootfs(&fx, &graph)?;
    drop(server);
    let path = out.join("downloads/data.bin");
    check(read(&path) == "downloaded bytes", read(&path))?;
    let meta = std::fs::metadata(&path).map_err(fail)?;
    check(
        meta.mode() & 0o7777 == 0o600,
        format!("mode {:o}", meta.mode() & 0o7777),
    )?;
    check(
        meta.mtime() == 1_445_412_480,
        format!("mtime {}", meta.mtime()),
    )
}

fn http_checksum_mismatch() -> TestResult {
    let fx = Fixture::new();
    let (port, _server) = serve(b"tampered", 1);
    let mut graph = Graph::on_busybox();
    http_step(&mut graph, port, Some(OpDigest::of(b"expected")));
    match solve(&fx.solver(), &graph.definition()) {
        Err(SolveError::OpFailed { source, .. }) => check(
            matches!(
                source.downcast_ref::<WorkerError>(),
                Some(WorkerError::ChecksumMismatch { .. })
            ),
            format!("error: {source}"),
        ),
        other => Err(format!(
            "expected a failure, got {:?}",
            other.map(|s| s.output)
        )),
    }
}

/// A server that answers one GET with headers and the start of a body, then goes silent
/// (holding the connection open) until `release` is dropped; `sent` hears when it has.
fn stalling_server() -> (
    u16,
    std::sync::mpsc::Receiver<()>,
    std::sync::mpsc::Sender<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (sent_tx, sent) = std::sync::mpsc::channel();
    let (release, release_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
            line.clear();
        }
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\nConnection: close\r\n\r\n";
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(&[b'x'; 1000]);
        let _ = stream.flush();
        let _ = sent_tx.send(());
        // Silent until the test is done.
        let _ = release_rx.recv();
    });
    (port, sent, release)
}

fn http_idle_timeout() -> TestResult {
    let fx = Fixture::new();
    let (port, _sent, release) = stalling_server();
    let mut options = fx.options();
    options.download_timeouts =
        DownloadTimeouts::new(Duration::from_secs(5), Duration::from_secs(1));
    let mut graph = Graph::on_busybox();
    http_step(&mut graph, port, None);
    let outcome = solve(&fx.solver_with(options), &graph.definition());
    drop(release);
    // An unpinned URL is downloaded when its key is computed (the key is the content's
    // digest); the failure is the same either way.
    match outcome {
        Err(SolveError::OpFailed { source, .. } | SolveError::CacheKey { source, .. }) => check(
            matches!(
                source.downcast_ref::<WorkerError>(),
                Some(WorkerError::Download { .. })
            ),
            format!("error: {}", fail(&*source)),
        ),
        other => Err(format!(
            "expected a timeout, got {:?}",
            other.map(|s| s.output)
        )),
    }
}

fn http_cancelled() -> TestResult {
    let fx = Fixture::new();
    let (port, sent, release) = stalling_server();
    let mut options = fx.options();
    // Far longer than the test waits: only the cancellation can end the download.
    options.download_timeouts =
        DownloadTimeouts::new(Duration::from_secs(600), Duration::from_secs(600));
    let solver = fx.solver_with(options);
    let mut graph = Graph::on_busybox();
    http_step(&mut graph, port, None);
    let cancel = img_solver::CancelToken::new();
    let solve_options = img_solver::SolveOptions::default().with_cancel(cancel.clone());
    let sent: std::sync::mpsc::Receiver<()> = sent;
    let (result, waited) = std::thread::scope(|scope| {
        let canceller = scope.spawn(move || {
            // The download is under way: the server sent its headers and part of the body.
            let started = sent.recv_timeout(Duration::from_secs(120)).is_ok();
            let at = Instant::now();
            cancel.cancel();
            (started, at)
        });
        let result = solver.solve(&graph.definition(), &solve_options, &img_solver::NoProgress);
        let (started, at) = canceller.join().unwrap();
        (result.map(|_| started), at.elapsed())
    });
    drop(release);
    eprintln!("    the download stopped {waited:?} after the cancel");
    check(
        matches!(result, Err(SolveError::Cancelled)),
        format!("{:?}", result.map_err(|e| fail(&e))),
    )?;
    check(
        waited < Duration::from_secs(60),
        format!("the cancel took {waited:?}"),
    )
}

fn git_source() -> TestResult {
    check(
        have_tool("git"),
        "git is not installed (apt-get install git)",
    )?;
    let fx = Fixture::new();
    let repo = fx.dir.path().join("repo");
    std::fs::create_dir(&repo).map_err(fail)?;
    git(&repo, &["init", "-q"])?;
    std::fs::write(repo.join("version"), "one").map_err(fail)?;
    git(&repo, &["add", "version"])?;
    git(&repo, &["commit", "-qm", "one"])?;
    git(&repo, &["tag", "v1"])?;
    std::fs::write(repo.join("version"), "two").map_err(fail)?;
    git(&repo, &["commit", "-qam", "two"])?;
    let mut graph = Graph::on_busybox();
    graph.add_git(&repo, "v1");
    let out = rootfs(&fx, &graph)?;
    check(
        read(&out.join("src/version")) == "one",
        read(&out.join("src/version")),
    )?;
    check(!out.join("src/.git").exists(), ".git removed")
}

/// Stage A makes /out/a and /out/b; the final stage copies /out/a from it.
fn stage_graph(b_content: &str) -> (Graph, OpRef, OpRef) {
    let mut stage = Graph::on_busybox();
    let made = stage.run(&format!(
        "mkdir /out && echo a > /out/a && echo {b_content} > /out/b"
    ));
    let mut graph = Graph {
        builder: stage.builder,
        base: stage.base,
        steps: Vec::new(),
    };
    let op = FileOp::new(Some(graph.base)).with_action(CopyAction::new(
        made,
        vec!["/out/a".into()],
        "/from-stage/",
    ));
    let copy = graph.step(op, "COPY --from=A /out/a /from-stage/");
    let run = graph.run("cat /from-stage/a > /seen");
    (graph, copy, run)
}

fn copy_from_stage_by_content() -> TestResult {
    let fx = Fixture::new();
    let (first, _, _) = stage_graph("one");
    solve(&fx.solver(), &first.definition()).map_err(fail)?;
    // Stage A's command changes (so it runs again) but /out/a stays the same: the copy and
    // the step after it are found in the cache by content.
    let (second, copy, run) = stage_graph("two");
    let solved = solve(&fx.solver(), &second.definition()).map_err(fail)?;
    check(
        solved.cached.contains(&copy.digest) && solved.cached.contains(&run.digest),
        format!("executed {:?}", solved.executed),
    )?;
    check(
        solved.executed.len() == 1,
        format!("executed {:?}", solved.executed),
    )
}

fn diff_op() -> TestResult {
    let fx = Fixture::new();
    let mut graph = Graph::on_busybox();
    let base = graph.top();
    let run = graph.run("echo only-this > /new-file");
    let diff = graph
        .builder
        .add(
            DiffOp {
                lower: Some(base),
                upper: run,
            },
            OpMetadata::described("diff"),
        )
        .unwrap();
    let definition = graph.builder.clone().build(diff).unwrap();
    let solver = fx.solver();
    let solved = solve(&solver, &definition).map_err(fail)?;
    let out = fx.dir.path().join("diff");
    write_rootfs_dir(solver.executor(), &solved.output, &out).map_err(fail)?;
    let names: Vec<String> = std::fs::read_dir(&out)
        .map_err(fail)?
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    check(names == ["new-file"], format!("diff holds {names:?}"))
}

/// Debian's `docker-registry` on a loopback port; killed on drop.
struct Registry {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_registry() -> Result<Registry, String> {
    check(
        have_tool("docker-registry"),
        "docker-registry is not installed (apt-get install docker-registry)",
    )?;
    let dir = tempfile::tempdir().map_err(fail)?;
    let port = TcpListener::bind("127.0.0.1:0")
        .map_err(fail)?
        .local_addr()
        .map_err(fail)?
        .port();
    let config = format!(
        "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
        dir.path().join("storage").display()
    );
    let config_path = dir.path().join("config.yml");
    std::fs::write(&config_path, config).map_err(fail)?;
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(fail)?;
    let registry = Registry {
        port,
        child,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        check(Instant::now() < deadline, "registry did not start")?;
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(registry)
}

fn client(fx: &Fixture) -> Client {
    Client::new(ClientConfig {
        docker_config_dir: Some(fx.dir.path().join("docker-config")),
        ..ClientConfig::default()
    })
}

fn registry_round_trip() -> TestResult {
    let registry = start_registry()?;
    let source = Fixture::new();
    // Push the busybox image (as a build result: busybox plus one step) to the registry.
    let solver = source.solver();
    let mut graph = Graph::on_busybox();
    graph.run("echo pushed > /pushed");
    let (_, image) = build(&solver, &graph, None)?;
    let reference =
        Reference::parse(&format!("127.0.0.1:{}/test/base:1", registry.port)).map_err(fail)?;
    let pushed =
        push_image(&client(&source), solver.executor(), &reference, &image).map_err(fail)?;
    check(
        pushed.to_string() == image.manifest_digest.to_string(),
        "pushed digest",
    )?;

    // A fresh state directory builds on it: pulled, unpacked, recorded under its name.
    let fx = Fixture::new();
    let mut options = fx.options();
    options.registry = Some(client(&fx));
    let solver = fx.solver_with(options);
    let mut builder = img_llb::DefinitionBuilder::new();
    let base = builder
        .add(
            SourceOp::Image(img_llb::ImageSource {
                reference: reference.to_string(),
                platform: img_llb::Platform::new("linux", "amd64"),
            }),
            OpMetadata::described("FROM pulled"),
        )
        .unwrap();
    let mut graph = Graph {
        builder,
        base,
        steps: Vec::new(),
    };
    graph.run("cat /pushed > /seen-after-pull");
    let (solved, derived) = build(&solver, &graph, None)?;
    check(
        derived.layers[..2] == image.layers[..],
        "pulled layers reused as they are",
    )?;
    let recorded = fx
        .store()
        .images()
        .get(&reference.to_string())
        .map_err(fail)?;
    check(
        recorded.is_some(),
        "pulled image recorded in the image store",
    )?;
    let out = fx.dir.path().join("pulled");
    write_rootfs_dir(solver.executor(), &solved.output, &out).map_err(fail)?;
    check(
        read(&out.join("seen-after-pull")) == "pushed\n",
        "step ran on the pulled image",
    )?;

    // Without a registry the next build finds the image in the local store.
    drop(registry);
    let solver = fx.solver();
    solve(&solver, &graph.definition()).map_err(fail)?;
    Ok(())
}
