//! Hostile build contexts through the `img` binary: links leading out of the context, given
//! as a directory and as a tar on standard input, read by every instruction form. Each build
//! fails with BuildKit's "not found" or copies links as links; the bytes of a secret kept
//! beside the context never reach an output, a snapshot or a message.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::fixtures::store_busybox_for_builds;
use crate::{stderr, tool, Img};

/// The bytes that must never leave the host's file.
const MARKER: &str = "IMG-CLI-HOST-SECRET-5d20a1";

/// How the context is handed to `img build`.
#[derive(Clone, Copy, Debug)]
enum Given {
    Directory,
    TarOnStdin,
}

/// What one build must give.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// Failure with BuildKit's `"<path>": not found`.
    NotFound,
    /// Failure: the Dockerfile is not in the context.
    NoDockerfile,
    /// Success.
    Built,
}

struct Case {
    what: &'static str,
    dockerfile: &'static str,
    expect: Expect,
}

/// Every form reading the context, on a context whose `id.txt`, `sub/deep.txt` and `linkdir`
/// lead out of it.
const CASES: &[Case] = &[
    Case {
        what: "COPY literal",
        dockerfile: "COPY id.txt /out/",
        expect: Expect::NotFound,
    },
    Case {
        what: "COPY wildcard",
        dockerfile: "COPY *.txt /out/",
        expect: Expect::NotFound,
    },
    Case {
        what: "ADD wildcard",
        dockerfile: "ADD *.txt /out/",
        expect: Expect::NotFound,
    },
    Case {
        what: "nested wildcard",
        dockerfile: "COPY sub/*.txt /out/",
        expect: Expect::NotFound,
    },
    // Nothing matches inside the context, and a Dockerfile's wildcard may match nothing.
    Case {
        what: "linkdir/*",
        dockerfile: "COPY linkdir/* /out/",
        expect: Expect::Built,
    },
    Case {
        what: "bind mount",
        dockerfile: "RUN --mount=type=bind,source=id.txt,target=/m cat /m > /leak",
        expect: Expect::NotFound,
    },
    Case {
        what: "COPY . (links stay links)",
        dockerfile: "COPY . /out/",
        expect: Expect::Built,
    },
    Case {
        what: "ADD archive with escaping links",
        dockerfile: "ADD evil.tar /x/",
        expect: Expect::Built,
    },
];

/// A test directory: the secret at `<tmp>/host/secret.txt`, a busybox image in the store.
struct Setup {
    img: Img,
    host: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let img = Img::new();
        store_busybox_for_builds(&img.store(), "docker.io/library/busybox:latest");
        let host = img.dir.path().join("host");
        std::fs::create_dir(&host).unwrap();
        std::fs::write(host.join("secret.txt"), MARKER).unwrap();
        // An ignore file a `.dockerignore` link may point at: read, it would fail the build
        // with its (invalid) first line in the message.
        std::fs::write(host.join("ignore"), format!("[{MARKER}\n")).unwrap();
        Setup { img, host }
    }

    /// A fresh context `name` whose links lead out of it, `relative` or absolute.
    fn context(&self, name: &str, relative: bool, dockerfile: &str) -> PathBuf {
        let ctx = self.img.dir().join(name);
        std::fs::create_dir_all(ctx.join("sub")).unwrap();
        std::fs::write(
            ctx.join("Dockerfile"),
            format!("FROM busybox\n{dockerfile}\n"),
        )
        .unwrap();
        std::fs::write(ctx.join("plain.md"), "harmless\n").unwrap();
        let secret = self.host.join("secret.txt");
        if relative {
            // <tmp>/work/<name>/id.txt -> ../../host/secret.txt
            symlink("../../host/secret.txt", ctx.join("id.txt")).unwrap();
            symlink("../../../host/secret.txt", ctx.join("sub/deep.txt")).unwrap();
            symlink("../../host", ctx.join("linkdir")).unwrap();
        } else {
            symlink(&secret, ctx.join("id.txt")).unwrap();
            symlink(&secret, ctx.join("sub/deep.txt")).unwrap();
            symlink(&self.host, ctx.join("linkdir")).unwrap();
        }
        std::fs::write(ctx.join("evil.tar"), evil_archive(&self.host)).unwrap();
        ctx
    }

    /// `img build -o type=tar,dest=<out>` of `ctx`, given the `given` way.
    fn build(&self, ctx: &Path, given: Given, out: &Path) -> Output {
        let dest = format!("type=tar,dest={}", out.display());
        match given {
            Given::Directory => self.img.run(&["build", "-o", &dest, ctx.to_str().unwrap()]),
            Given::TarOnStdin => {
                let archive = self.img.dir().join("context.tar");
                // GNU tar keeps links as links.
                tool(
                    "tar",
                    &[
                        "-C",
                        ctx.to_str().unwrap(),
                        "-cf",
                        archive.to_str().unwrap(),
                        ".",
                    ],
                );
                let bytes = std::fs::read(&archive).unwrap();
                self.img
                    .run_with_input(&["build", "-o", &dest, "-"], &bytes)
            }
        }
    }

    /// Checks one build's outcome; a description of what is wrong, if anything.
    fn judge(&self, what: &str, expect: Expect, output: &Output, out: &Path) -> Option<String> {
        let err = stderr(output);
        if err.contains(MARKER) {
            return Some(format!("{what}: the secret is in the messages:\n{err}"));
        }
        let built = output.status.success();
        let problem = match expect {
            Expect::Built if !built => Some(format!("failed:\n{err}")),
            Expect::Built => {
                let tar = std::fs::read(out).unwrap_or_default();
                tar.windows(MARKER.len())
                    .any(|w| w == MARKER.as_bytes())
                    .then(|| "the secret is in the output".to_owned())
            }
            Expect::NotFound if built || !err.contains("not found") => Some(format!(
                "expected \"not found\", got {}:\n{err}",
                output.status
            )),
            Expect::NoDockerfile if built || !err.contains("not in the build context") => Some(
                format!("expected no Dockerfile, got {}:\n{err}", output.status),
            ),
            _ => None,
        };
        problem.map(|p| format!("{what}: {p}"))
    }

    /// Nothing in the state directory (snapshots, staged copies) holds the secret.
    fn state_is_clean(&self) -> Option<String> {
        let leaked = files_holding(&self.img.state(), MARKER.as_bytes());
        (!leaked.is_empty()).then(|| format!("the secret was copied to {leaked:?}"))
    }
}

/// A tar whose links lead out of wherever it is unpacked, with files written through them.
fn evil_archive(host: &Path) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |kind: tar::EntryType, path: &str, link: Option<&Path>, data: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_600_000_000);
        if let Some(link) = link {
            header.set_link_name(link).unwrap();
        }
        header.set_path(path).unwrap();
        header.set_cksum();
        tar.append(&header, data).unwrap();
    };
    add(tar::EntryType::Symlink, "esc", Some(host), b"");
    add(
        tar::EntryType::Regular,
        "esc/planted.txt",
        None,
        b"planted\n",
    );
    add(
        tar::EntryType::Symlink,
        "secret-link",
        Some(&host.join("secret.txt")),
        b"",
    );
    tar.into_inner().unwrap()
}

/// Paths of regular files under `dir` (links never followed) holding `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
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

fn hostile_contexts(given: Given) {
    let setup = Setup::new();
    let mut problems = Vec::new();
    let mut n = 0;
    let mut run = |what: String, ctx: PathBuf, expect: Expect| {
        n += 1;
        let out = setup.img.dir().join(format!("out-{n}.tar"));
        let output = setup.build(&ctx, given, &out);
        problems.extend(setup.judge(&what, expect, &output, &out));
        std::fs::remove_dir_all(&ctx).unwrap();
    };
    for relative in [false, true] {
        for case in CASES {
            let ctx = setup.context("ctx", relative, case.dockerfile);
            let what = format!(
                "{} ({} links)",
                case.what,
                if relative { "relative" } else { "absolute" }
            );
            run(what, ctx, case.expect);
        }
    }
    // A `.dockerignore` linking out is no ignore file (its invalid line would fail the build).
    let ctx = setup.context("ctx", false, "COPY plain.md /out/");
    symlink(setup.host.join("ignore"), ctx.join(".dockerignore")).unwrap();
    run(".dockerignore linking out".into(), ctx, Expect::Built);
    // A Dockerfile linking out is not there.
    let ctx = setup.context("ctx", false, "");
    std::fs::remove_file(ctx.join("Dockerfile")).unwrap();
    symlink(setup.host.join("secret.txt"), ctx.join("Dockerfile")).unwrap();
    run("Dockerfile linking out".into(), ctx, Expect::NoDockerfile);
    problems.extend(setup.state_is_clean());
    assert!(
        problems.is_empty(),
        "{given:?} context:\n{}",
        problems.join("\n")
    );
    assert!(
        !setup.host.join("planted.txt").exists(),
        "an archive planted a file on the host"
    );
}

#[test]
fn hostile_links_in_a_directory_context_never_reach_the_image() {
    hostile_contexts(Given::Directory);
}

#[test]
fn hostile_links_in_a_tar_context_on_stdin_never_reach_the_image() {
    hostile_contexts(Given::TarOnStdin);
}
