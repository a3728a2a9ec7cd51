//! Remote sources are resolved again at every build: a URL whose content changed, or a git
//! branch that moved, is a cache miss with the new content; an unchanged URL is answered
//! `304 Not Modified` and the step is a cache hit.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use img_llb::{CopyAction, FileOp, HttpSource, OpMetadata, SourceOp};
use img_solver::CacheDb;
use img_worker::{write_rootfs_dir, WorkerOptions};
use libtest_mimic::Trial;

use crate::common::*;

pub fn tests() -> Vec<Trial> {
    vec![
        t(
            "add_url_asks_again_with_the_etag_and_misses_when_the_file_changed",
            url_revalidated_by_etag,
        ),
        t(
            "add_url_without_etag_asks_again_with_if_modified_since",
            url_revalidated_by_date,
        ),
        t(
            "add_git_ref_is_resolved_to_its_commit_at_every_build",
            git_branch_moves,
        ),
    ]
}

/// What the test server serves now, and what it saw.
#[derive(Default)]
struct Served {
    body: Vec<u8>,
    etag: Option<String>,
    last_modified: String,
    /// Each request's conditional header (`If-None-Match` or `If-Modified-Since`), if any.
    conditions: Vec<Option<String>>,
    /// Each response's status.
    statuses: Vec<u16>,
}

/// A loopback HTTP server answering GETs from `served` (conditionally, as a real server does)
/// until the test ends.
fn serve(served: Arc<Mutex<Served>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut condition = None;
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                let lower = line.to_ascii_lowercase();
                for name in ["if-none-match:", "if-modified-since:"] {
                    if lower.starts_with(name) {
                        condition = Some(line[name.len()..].trim().to_owned());
                    }
                }
                line.clear();
            }
            let mut s = served.lock().unwrap();
            let current = match &s.etag {
                Some(etag) => condition.as_deref() == Some(etag.as_str()),
                None => condition.as_deref() == Some(s.last_modified.as_str()),
            };
            let etag = s
                .etag
                .as_ref()
                .map(|e| format!("ETag: {e}\r\n"))
                .unwrap_or_default();
            let (status, body) = if current {
                (304, Vec::new())
            } else {
                (200, s.body.clone())
            };
            let head = format!(
                "HTTP/1.1 {status} {}\r\n{etag}Last-Modified: {}\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n",
                if status == 304 { "Not Modified" } else { "OK" },
                s.last_modified,
                body.len()
            );
            s.conditions.push(condition);
            s.statuses.push(status);
            drop(s);
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    port
}

/// Options with the checksum cache, where the worker keeps what it learnt about a URL.
fn cached_options(fx: &Fixture) -> WorkerOptions {
    let mut options = fx.options();
    options.checksum_cache =
        Some(CacheDb::open(fx.state().root().join("cache.db")).expect("cache db"));
    options
}

fn url_graph(port: u16) -> Graph {
    let mut graph = Graph::on_busybox();
    let http = graph
        .builder
        .add(
            SourceOp::Http(HttpSource {
                url: format!("http://127.0.0.1:{port}/files/data.txt"),
                checksum: None,
                filename: None,
            }),
            OpMetadata::described("download"),
        )
        .unwrap();
    let mut action = CopyAction::new(http, vec!["/data.txt".into()], "/downloads/");
    action.allow_wildcard = false;
    graph.step(
        FileOp::new(Some(graph.top())).with_action(action),
        "ADD url",
    );
    graph
}

/// Builds `graph` in a new process's worker and returns `/downloads/data.txt` and whether the
/// ADD step was executed.
fn build_url(fx: &Fixture, graph: &Graph) -> Result<(String, bool), String> {
    let solver = fx.solver_with(cached_options(fx));
    let solved = solve(&solver, &graph.definition()).map_err(|e| fail(&e))?;
    let out = fx
        .dir
        .path()
        .join(format!("rootfs-{}", solved.executed.len()));
    let _ = std::fs::remove_dir_all(&out);
    write_rootfs_dir(solver.executor(), &solved.output, &out).map_err(|e| fail(&e))?;
    let step = graph.top().digest;
    Ok((
        read(&out.join("downloads/data.txt")),
        solved.executed.contains(&step),
    ))
}

fn url_revalidated(etag: bool) -> TestResult {
    let fx = Fixture::new();
    let served = Arc::new(Mutex::new(Served {
        body: b"one".to_vec(),
        etag: etag.then(|| "\"v1\"".to_owned()),
        last_modified: "Wed, 21 Oct 2015 07:28:00 GMT".into(),
        ..Served::default()
    }));
    let port = serve(served.clone());
    let graph = url_graph(port);

    let (first, ran) = build_url(&fx, &graph)?;
    check(
        first == "one" && ran,
        format!("first build: {first:?}, ran {ran}"),
    )?;

    let (second, ran) = build_url(&fx, &graph)?;
    check(
        second == "one" && !ran,
        format!("unchanged URL: {second:?}, ran {ran}"),
    )?;

    {
        let mut s = served.lock().unwrap();
        s.body = b"two".to_vec();
        if etag {
            s.etag = Some("\"v2\"".into());
        }
        s.last_modified = "Thu, 22 Oct 2015 07:28:00 GMT".into();
    }
    let (third, ran) = build_url(&fx, &graph)?;
    check(
        third == "two" && ran,
        format!("changed URL: {third:?}, ran {ran}"),
    )?;

    let s = served.lock().unwrap();
    let validator = if etag {
        "\"v1\""
    } else {
        "Wed, 21 Oct 2015 07:28:00 GMT"
    };
    check(
        s.statuses == [200, 304, 200],
        format!("statuses {:?}", s.statuses),
    )?;
    check(
        s.conditions == [None, Some(validator.to_owned()), Some(validator.to_owned())],
        format!("conditions {:?}", s.conditions),
    )
}

fn url_revalidated_by_etag() -> TestResult {
    url_revalidated(true)
}

fn url_revalidated_by_date() -> TestResult {
    url_revalidated(false)
}

fn git_branch_moves() -> TestResult {
    check(
        have_tool("git"),
        "git is not installed (apt-get install git)",
    )?;
    let fx = Fixture::new();
    let repo = fx.dir.path().join("repo");
    std::fs::create_dir(&repo).map_err(fail)?;
    git(&repo, &["init", "-q", "-b", "main"])?;
    std::fs::write(repo.join("version"), "one").map_err(fail)?;
    git(&repo, &["add", "version"])?;
    git(&repo, &["commit", "-qm", "one"])?;
    let mut graph = Graph::on_busybox();
    graph.add_git(&repo, "main");
    let build = |name: &str| -> Result<(String, bool), String> {
        let solver = fx.solver();
        let solved = solve(&solver, &graph.definition()).map_err(|e| fail(&e))?;
        let out = fx.dir.path().join(name);
        write_rootfs_dir(solver.executor(), &solved.output, &out).map_err(|e| fail(&e))?;
        Ok((
            read(&out.join("src/version")),
            solved.executed.contains(&graph.top().digest),
        ))
    };
    let (first, ran) = build("first")?;
    check(
        first == "one" && ran,
        format!("first: {first:?}, ran {ran}"),
    )?;
    let (again, ran) = build("again")?;
    check(
        again == "one" && !ran,
        format!("branch unchanged: {again:?}, ran {ran}"),
    )?;
    std::fs::write(repo.join("version"), "two").map_err(fail)?;
    git(&repo, &["commit", "-qam", "two"])?;
    let (moved, ran) = build("moved")?;
    check(
        moved == "two" && ran,
        format!("branch moved: {moved:?}, ran {ran}"),
    )
}
