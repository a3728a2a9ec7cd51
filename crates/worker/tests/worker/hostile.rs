//! Hostile build contexts: links that lead out of the context, crossed with every way a build
//! reads the context. Each case fails with BuildKit's "not found" or copies a link as a link,
//! and the bytes of a secret kept next to the context never reach a layer, a snapshot or an
//! output.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use img_llb::{
    CopyAction, ExecOp, FileAction, FileOp, LocalSource, Mount, MountKind, OpMetadata, OpRef,
    RmAction, SourceOp,
};
use img_solver::SolveError;
use img_worker::{write_rootfs_dir, WorkerError};
use libtest_mimic::Trial;

use crate::common::*;

pub fn tests() -> Vec<Trial> {
    vec![
        t("hostile_context_absolute_links", || {
            hostile_links(LinkKind::Absolute)
        }),
        t("hostile_context_relative_links_climbing_out", || {
            hostile_links(LinkKind::Relative)
        }),
        t("hostile_context_chained_links", || {
            hostile_links(LinkKind::Chained)
        }),
        t("hostile_context_links_through_a_directory_link", || {
            hostile_links(LinkKind::ThroughDirectory)
        }),
        t(
            "add_of_a_context_archive_with_escaping_links_stays_in_the_image",
            archive_with_escaping_links,
        ),
        t(
            "removing_through_an_image_link_never_touches_the_host",
            rm_through_a_link,
        ),
    ]
}

/// The bytes that must never appear in anything a build writes.
fn marker() -> String {
    format!("IMG-HOST-SECRET-{}-b7c1e4", std::process::id())
}

/// How the context's links lead out of it.
#[derive(Debug, Clone, Copy)]
enum LinkKind {
    /// `id.txt -> /abs/host/secret.txt`.
    Absolute,
    /// `id.txt -> ../host/secret.txt`.
    Relative,
    /// `id.txt -> hop1.lnk -> hop2.lnk -> /abs/host/secret.txt`.
    Chained,
    /// `id.txt -> hostdir.lnk/secret.txt`, `hostdir.lnk -> /abs/host`.
    ThroughDirectory,
}

/// Writes the secret beside the context (`<fixture>/host/secret.txt`) and the context's
/// links: `id.txt` (a file link), `sub/deep.txt` (a file link one level down) and `linkdir`
/// (a directory link), all leading to the secret the `kind` way.
fn hostile_context(fx: &Fixture, kind: LinkKind) -> PathBuf {
    let host = fx.dir.path().join("host");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("secret.txt"), marker()).unwrap();
    let ctx = fx.context();
    std::fs::create_dir_all(ctx.join("sub")).unwrap();
    fx.write("plain.md", "a harmless file\n");
    let abs = host.join("secret.txt");
    let link = |target: &Path, name: &str| symlink(target, ctx.join(name)).unwrap();
    match kind {
        LinkKind::Absolute => {
            link(&abs, "id.txt");
            link(&abs, "sub/deep.txt");
            link(&host, "linkdir");
        }
        LinkKind::Relative => {
            link(Path::new("../host/secret.txt"), "id.txt");
            link(Path::new("../../host/secret.txt"), "sub/deep.txt");
            link(Path::new("../host"), "linkdir");
        }
        LinkKind::Chained => {
            link(Path::new("hop1.lnk"), "id.txt");
            link(Path::new("hop2.lnk"), "hop1.lnk");
            link(&abs, "hop2.lnk");
            link(Path::new("../hop1.lnk"), "sub/deep.txt");
            link(Path::new("hopdir.lnk"), "linkdir");
            link(
                Path::new("../../../../../../../..")
                    .join(host.strip_prefix("/").unwrap())
                    .as_path(),
                "hopdir.lnk",
            );
        }
        LinkKind::ThroughDirectory => {
            link(&host, "hostdir.lnk");
            link(Path::new("hostdir.lnk/secret.txt"), "id.txt");
            link(Path::new("../hostdir.lnk/secret.txt"), "sub/deep.txt");
            link(Path::new("hostdir.lnk"), "linkdir");
        }
    }
    host
}

/// What one form of reading the context must give.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// BuildKit's `"<path>": not found`.
    NotFound,
    /// Success, the context's links copied as links.
    LinksCopied,
}

/// One instruction reading the context, as the frontend lowers it.
struct Form {
    what: &'static str,
    src: &'static str,
    unpack: bool,
    bind: bool,
    expect: Expect,
}

const FORMS: &[Form] = &[
    Form {
        what: "COPY id.txt /out/",
        src: "/id.txt",
        unpack: false,
        bind: false,
        expect: Expect::NotFound,
    },
    Form {
        what: "COPY *.txt /out/",
        src: "/*.txt",
        unpack: false,
        bind: false,
        expect: Expect::NotFound,
    },
    Form {
        what: "ADD *.txt /out/",
        src: "/*.txt",
        unpack: true,
        bind: false,
        expect: Expect::NotFound,
    },
    Form {
        what: "COPY sub/*.txt /out/",
        src: "/sub/*.txt",
        unpack: false,
        bind: false,
        expect: Expect::NotFound,
    },
    Form {
        what: "COPY linkdir/* /out/",
        src: "/linkdir/*",
        unpack: false,
        bind: false,
        expect: Expect::NotFound,
    },
    Form {
        what: "COPY linkdir/ /out/",
        src: "/linkdir/",
        unpack: false,
        bind: false,
        expect: Expect::NotFound,
    },
    Form {
        what: "COPY . /out/",
        src: "/",
        unpack: false,
        bind: false,
        expect: Expect::LinksCopied,
    },
    Form {
        what: "RUN --mount=type=bind,source=id.txt",
        src: "/id.txt",
        unpack: false,
        bind: true,
        expect: Expect::NotFound,
    },
    Form {
        what: "RUN --mount=type=bind,source=linkdir",
        src: "/linkdir",
        unpack: false,
        bind: true,
        expect: Expect::NotFound,
    },
];

fn context_op(graph: &mut Graph) -> OpRef {
    graph
        .builder
        .add(
            SourceOp::Local(LocalSource::new("context")),
            OpMetadata::described("context"),
        )
        .unwrap()
}

fn form_graph(form: &Form) -> Graph {
    let mut graph = Graph::on_busybox();
    let context = context_op(&mut graph);
    if form.bind {
        // Whatever the mount shows is copied into the layer, so a leak would be seen.
        let exec = ExecOp::new(
            Some(graph.top()),
            vec![
                "/bin/sh".into(),
                "-c".into(),
                "mkdir -p /out && cp -r /m /out/mounted".into(),
            ],
        )
        .with_env("PATH", "/bin")
        .with_mount(Mount {
            target: "/m".into(),
            kind: MountKind::Bind {
                source: context,
                selector: form.src.into(),
                readonly: true,
            },
        });
        graph.step(exec, form.what);
    } else {
        let mut action = CopyAction::new(context, vec![form.src.into()], "/out/");
        action.unpack_archive = form.unpack;
        graph.step(
            FileOp::new(Some(graph.top())).with_action(action),
            form.what,
        );
    }
    graph
}

/// The worker's error inside a solve error, if the solve failed with one.
fn worker_error(err: &SolveError) -> Option<&WorkerError> {
    match err {
        SolveError::CacheKey { source, .. } | SolveError::OpFailed { source, .. } => {
            source.downcast_ref::<WorkerError>()
        }
        _ => None,
    }
}

/// Paths of regular files under `dir` (links never followed) holding `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            found.extend(files_holding(&path, needle));
        } else if meta.is_file() {
            let data = std::fs::read(&path).unwrap_or_default();
            if data.windows(needle.len()).any(|w| w == needle) {
                found.push(path);
            }
        }
    }
    found
}

fn hostile_links(kind: LinkKind) -> TestResult {
    let fx = Fixture::new();
    hostile_context(&fx, kind);
    let secret = marker().into_bytes();
    let mut problems = Vec::new();
    for (i, form) in FORMS.iter().enumerate() {
        let graph = form_graph(form);
        let solver = fx.solver();
        let outcome = solve(&solver, &graph.definition());
        match (form.expect, &outcome) {
            (Expect::NotFound, Err(err)) => match worker_error(err) {
                Some(WorkerError::SourceNotFound { .. }) => {}
                _ => problems.push(format!("{}: failed otherwise: {}", form.what, fail(err))),
            },
            (Expect::LinksCopied, Ok(solved)) => {
                let out = fx.dir.path().join(format!("out-{i}"));
                write_rootfs_dir(solver.executor(), &solved.output, &out).map_err(fail)?;
                let copied = std::fs::symlink_metadata(out.join("out/id.txt"));
                if !copied.is_ok_and(|m| m.file_type().is_symlink()) {
                    problems.push(format!("{}: id.txt not copied as a link", form.what));
                }
            }
            (expect, Ok(_)) => {
                problems.push(format!("{}: succeeded, expected {expect:?}", form.what))
            }
            (expect, Err(err)) => problems.push(format!(
                "{}: expected {expect:?}, got {}",
                form.what,
                fail(err)
            )),
        }
        if outcome
            .as_ref()
            .is_err_and(|err| fail(err).contains(&marker()))
        {
            problems.push(format!("{}: the secret is in the error", form.what));
        }
    }
    // Nothing the builds wrote (snapshots, staged copies, outputs) holds the secret.
    let leaked = files_holding(fx.dir.path(), &secret)
        .into_iter()
        .filter(|p| !p.starts_with(fx.dir.path().join("host")))
        .collect::<Vec<_>>();
    if !leaked.is_empty() {
        problems.push(format!("the secret was copied to {leaked:?}"));
    }
    check(problems.is_empty(), problems.join("\n"))
}

/// A tar entry of `kind` named `path`, linking to `link` or holding `data`.
fn tar_entry(
    tar: &mut tar::Builder<Vec<u8>>,
    kind: tar::EntryType,
    path: &str,
    link: Option<&Path>,
    data: &[u8],
) {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(1_600_000_000);
    header.set_uid(0);
    header.set_gid(0);
    if let Some(link) = link {
        header.set_link_name(link).unwrap();
    }
    header.set_path(path).unwrap();
    header.set_cksum();
    tar.append(&header, data).unwrap();
}

fn archive_with_escaping_links() -> TestResult {
    let fx = Fixture::new();
    let host = hostile_context(&fx, LinkKind::Absolute);
    // Links out of the image's root, then files written through them: they land inside the
    // image, at the same paths.
    let mut tar = tar::Builder::new(Vec::new());
    tar_entry(&mut tar, tar::EntryType::Symlink, "esc", Some(&host), b"");
    tar_entry(
        &mut tar,
        tar::EntryType::Regular,
        "esc/planted.txt",
        None,
        b"planted\n",
    );
    tar_entry(
        &mut tar,
        tar::EntryType::Symlink,
        "up",
        Some(Path::new("../../../../..")),
        b"",
    );
    tar_entry(
        &mut tar,
        tar::EntryType::Regular,
        "up/climbed.txt",
        None,
        b"climbed\n",
    );
    std::fs::write(fx.context().join("evil.tar"), tar.into_inner().unwrap()).map_err(fail)?;
    // A hard link to the host's secret.
    let mut tar = tar::Builder::new(Vec::new());
    let abs = host.join("secret.txt");
    tar_entry(&mut tar, tar::EntryType::Link, "hard.txt", Some(&abs), b"");
    std::fs::write(fx.context().join("hard.tar"), tar.into_inner().unwrap()).map_err(fail)?;

    let mut graph = Graph::on_busybox();
    let context = context_op(&mut graph);
    let mut action = CopyAction::new(context, vec!["/evil.tar".into()], "/x/");
    action.unpack_archive = true;
    graph.step(
        FileOp::new(Some(graph.top())).with_action(action),
        "ADD evil.tar /x/",
    );
    let solver = fx.solver();
    let solved = solve(&solver, &graph.definition()).map_err(fail)?;
    let out = fx.dir.path().join("out");
    write_rootfs_dir(solver.executor(), &solved.output, &out).map_err(fail)?;
    check(
        !host.join("planted.txt").exists(),
        "a file was planted on the host",
    )?;
    // The archive is unpacked as if its destination were `/`.
    let inside = out
        .join("x")
        .join(host.strip_prefix("/").unwrap())
        .join("planted.txt");
    check(
        read(&inside) == "planted\n",
        format!("{} not in the image", inside.display()),
    )?;
    check(
        read(&out.join("x/climbed.txt")) == "climbed\n",
        "the climbing link stayed at the destination",
    )?;

    let mut graph = Graph::on_busybox();
    let context = context_op(&mut graph);
    let mut action = CopyAction::new(context, vec!["/hard.tar".into()], "/y/");
    action.unpack_archive = true;
    graph.step(
        FileOp::new(Some(graph.top())).with_action(action),
        "ADD hard.tar /y/",
    );
    let outcome = solve(&fx.solver(), &graph.definition());
    check(
        matches!(
            outcome.as_ref().map_err(worker_error),
            Err(Some(WorkerError::Apply(_)))
        ),
        format!(
            "a hard link out of the archive: {:?}",
            outcome.map(|s| s.output)
        ),
    )?;
    let leaked = files_holding(fx.dir.path(), marker().as_bytes())
        .into_iter()
        .filter(|p| !p.starts_with(&host))
        .collect::<Vec<_>>();
    check(
        leaked.is_empty(),
        format!("the secret was copied to {leaked:?}"),
    )
}

fn rm_through_a_link() -> TestResult {
    let fx = Fixture::new();
    let host = fx.dir.path().join("host");
    std::fs::create_dir_all(&host).map_err(fail)?;
    std::fs::write(host.join("victim.txt"), "keep me").map_err(fail)?;
    std::fs::write(host.join("other.txt"), "keep me too").map_err(fail)?;
    // A stage whose /data is a link to the host directory's path, then removals through it.
    let mut graph = Graph::on_busybox();
    graph.run(&format!("ln -s {} /data", host.display()));
    let rm = |path: &str, wildcard: bool| {
        FileAction::Rm(RmAction {
            path: path.into(),
            allow_not_found: true,
            allow_wildcard: wildcard,
        })
    };
    let op = FileOp::new(Some(graph.top()))
        .with_action(rm("/data/*", true))
        .with_action(rm("/data/victim.txt", false));
    graph.step(op, "rm /data/*");
    solve(&fx.solver(), &graph.definition()).map_err(fail)?;
    check(
        read(&host.join("victim.txt")) == "keep me"
            && read(&host.join("other.txt")) == "keep me too",
        "a host file was removed through a link of the image",
    )
}
