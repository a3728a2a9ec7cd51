//! A Debian bookworm base image made with debootstrap, for tests and benchmarks that need a real
//! distribution without Docker Hub: the root filesystem is built once from the Debian mirror
//! this machine's apt uses, kept between runs (it takes minutes), and turned into an image by
//! img from a tar of it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// The Debian release the bases are made of.
const SUITE: &str = "bookworm";

/// Where the bases come from when apt's configuration names no bookworm mirror.
const FALLBACK_MIRROR: &str = "http://deb.debian.org/debian";
const FALLBACK_SECURITY: &str = "http://deb.debian.org/debian-security";

/// The archives apt reads: the main mirror (bookworm and bookworm-updates) and the security
/// archive, as Debian's own images list them.
struct Mirrors {
    main: String,
    security: String,
}

/// Makes (once) a bookworm root filesystem in `rootfs`: debootstrap's minbase variant plus the
/// packages `include`, with apt pointed at bookworm, bookworm-updates and bookworm-security as
/// in `debian:bookworm-slim`. The tree is built beside `rootfs` and renamed into place when
/// complete, so an interrupted run leaves nothing that looks finished.
pub fn bookworm_rootfs(rootfs: &Path, include: &[&str]) -> Result<()> {
    if rootfs.is_dir() {
        return Ok(());
    }
    if !crate::system::on_path("debootstrap") {
        bail!("debootstrap is needed to make a Debian base image: apt-get install debootstrap");
    }
    let mirrors = apt_mirrors();
    let partial = with_suffix(rootfs, ".partial");
    let _ = std::fs::remove_dir_all(&partial);
    if let Some(parent) = rootfs.parent() {
        std::fs::create_dir_all(parent)?;
    }
    println!(
        "debootstrap {SUITE} from {} into {} (once; kept between runs)",
        mirrors.main,
        rootfs.display()
    );
    let mut debootstrap = Command::new("debootstrap");
    debootstrap.arg("--variant=minbase");
    if !include.is_empty() {
        debootstrap.arg(format!("--include={}", include.join(",")));
    }
    let output = debootstrap
        .arg(SUITE)
        .arg(&partial)
        .arg(&mirrors.main)
        .stdin(Stdio::null())
        .output()
        .context("could not run debootstrap")?;
    if !output.status.success() {
        bail!(
            "debootstrap {SUITE} failed: {}\n{}{}",
            output.status,
            tail(&output.stdout),
            tail(&output.stderr)
        );
    }
    write_apt_sources(&partial, &mirrors)?;
    std::fs::rename(&partial, rootfs)
        .with_context(|| format!("could not move {} into place", partial.display()))
}

/// Writes `rootfs` as a tar archive at `tar`, for `ADD rootfs.tar /`: numeric owners, entries in
/// name order (the same tree always gives the same archive, so the image made from it keeps its
/// digest and every cache key below it), without device nodes and apt's caches.
pub fn write_rootfs_tar(rootfs: &Path, tar: &Path) -> Result<()> {
    let output = Command::new("tar")
        .arg("-C")
        .arg(rootfs)
        .args([
            "--numeric-owner",
            "--sort=name",
            "--exclude=./dev/*",
            "--exclude=./var/cache/apt/*",
            "--exclude=./var/lib/apt/lists/*",
            "-cf",
        ])
        .arg(tar)
        .arg(".")
        .stdin(Stdio::null())
        .output()
        .context("could not run tar")?;
    if !output.status.success() {
        bail!(
            "tar of {} failed: {}\n{}",
            rootfs.display(),
            output.status,
            tail(&output.stderr)
        );
    }
    Ok(())
}

/// Builds `rootfs` into a one-layer image with img (`FROM scratch`, `ADD rootfs.tar /`) in the
/// state directory `state`, its layer compressed with `compression` (img's `--compression`),
/// and pushes it as `reference`; `context` receives the tar and the Dockerfile. The build time
/// is fixed (`SOURCE_DATE_EPOCH`), so the same tree always gives the same image digest, and a
/// state directory kept between runs makes a rerun cheap.
pub fn publish_image(
    img: &Path,
    rootfs: &Path,
    context: &Path,
    state: &Path,
    reference: &str,
    compression: &str,
) -> Result<()> {
    std::fs::create_dir_all(context)?;
    write_rootfs_tar(rootfs, &context.join("rootfs.tar"))?;
    std::fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nADD rootfs.tar /\nCMD [\"bash\"]\n",
    )?;
    let img_at = |args: &[&str]| {
        let mut command = Command::new(img);
        command
            .arg("--state")
            .arg(state)
            .args(["--progress", "quiet"])
            .args(args)
            .env("SOURCE_DATE_EPOCH", "1700000000");
        command
    };
    let context_arg = context.to_string_lossy().into_owned();
    run_quietly(&mut img_at(&[
        "build",
        "--compression",
        compression,
        "-t",
        reference,
        &context_arg,
    ]))?;
    run_quietly(&mut img_at(&["push", reference]))
}

/// Runs `command` with its output captured, failing with the end of its output.
fn run_quietly(command: &mut Command) -> Result<()> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not start {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed: {}\n{}{}",
            output.status,
            tail(&output.stdout),
            tail(&output.stderr)
        );
    }
    Ok(())
}

/// The deb822 sources file of Debian's images, in place of debootstrap's one-line list.
fn write_apt_sources(rootfs: &Path, mirrors: &Mirrors) -> Result<()> {
    let apt = rootfs.join("etc/apt");
    std::fs::create_dir_all(apt.join("sources.list.d"))?;
    let _ = std::fs::remove_file(apt.join("sources.list"));
    let keyring = "/usr/share/keyrings/debian-archive-keyring.gpg";
    std::fs::write(
        apt.join("sources.list.d/debian.sources"),
        format!(
            "Types: deb\nURIs: {main}\nSuites: {SUITE} {SUITE}-updates\nComponents: main\nSigned-By: {keyring}\n\n\
             Types: deb\nURIs: {security}\nSuites: {SUITE}-security\nComponents: main\nSigned-By: {keyring}\n",
            main = mirrors.main,
            security = mirrors.security,
        ),
    )?;
    Ok(())
}

/// The mirrors in this machine's apt configuration (`/etc/apt/sources.list` and the files of
/// `/etc/apt/sources.list.d`, one-line and deb822 formats), else deb.debian.org.
fn apt_mirrors() -> Mirrors {
    let mut entries = Vec::new();
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        more.sort();
        files.extend(more);
    }
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        if file.extension().is_some_and(|ext| ext == "sources") {
            entries.extend(deb822_entries(&text));
        } else {
            entries.extend(one_line_entries(&text));
        }
    }
    let find = |suite: &str| {
        entries
            .iter()
            .find(|(_, suites)| suites.iter().any(|s| s == suite))
            .map(|(uri, _)| uri.trim_end_matches('/').to_owned())
    };
    Mirrors {
        main: find(SUITE).unwrap_or_else(|| FALLBACK_MIRROR.to_owned()),
        security: find(&format!("{SUITE}-security"))
            .unwrap_or_else(|| FALLBACK_SECURITY.to_owned()),
    }
}

/// `(uri, suites)` of each `deb` line of a one-line sources list.
fn one_line_entries(text: &str) -> Vec<(String, Vec<String>)> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            if words.next()? != "deb" {
                return None;
            }
            let mut word = words.next()?;
            if word.starts_with('[') {
                // Options: `[arch=amd64 signed-by=...]`, possibly several words.
                while !word.ends_with(']') {
                    word = words.next()?;
                }
                word = words.next()?;
            }
            let suite = words.next()?;
            Some((word.to_owned(), vec![suite.to_owned()]))
        })
        .collect()
}

/// `(uri, suites)` of each `Types: deb` stanza of a deb822 sources file (one pair per URI).
fn deb822_entries(text: &str) -> Vec<(String, Vec<String>)> {
    let mut entries = Vec::new();
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| value.split_whitespace().map(str::to_owned).collect())
            })
        };
        let types: Vec<String> = field("Types").unwrap_or_default();
        if !types.iter().any(|t| t == "deb") {
            continue;
        }
        let suites: Vec<String> = field("Suites").unwrap_or_default();
        for uri in field("URIs").unwrap_or_default() {
            entries.push((uri, suites.clone()));
        }
    }
    entries
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// The last lines of a command's output, for error messages.
fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(20);
    lines[start..].join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_one_line_sources_with_and_without_options() {
        let text = "# comment\ndeb http://ftp.example.org/debian bookworm main\n\
                    deb [arch=amd64 signed-by=/k.gpg] http://sec.example.org/debian-security/ bookworm-security main\n\
                    deb-src http://ftp.example.org/debian bookworm main\n";
        assert_eq!(
            one_line_entries(text),
            vec![
                (
                    "http://ftp.example.org/debian".to_owned(),
                    vec!["bookworm".to_owned()]
                ),
                (
                    "http://sec.example.org/debian-security/".to_owned(),
                    vec!["bookworm-security".to_owned()]
                ),
            ]
        );
    }

    #[test]
    fn reads_deb822_stanzas() {
        let text = "Types: deb\n# a comment\nURIs: http://m.example.org/debian\n\
                    Suites: bookworm bookworm-updates\nComponents: main\n\n\
                    Types: deb-src\nURIs: http://src.example.org/debian\nSuites: bookworm\n";
        assert_eq!(
            deb822_entries(text),
            vec![(
                "http://m.example.org/debian".to_owned(),
                vec!["bookworm".to_owned(), "bookworm-updates".to_owned()]
            )]
        );
    }
}
