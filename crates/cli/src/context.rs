//! The build context and the Dockerfile, wherever they come from: a directory, standard input
//! (a Dockerfile alone, or a tar archive of the context, plain or compressed, as `docker build
//! -` reads it) or a git repository (`https://host/repo.git#ref:subdir`, cloned into a
//! temporary directory, as BuildKit's git context).
//!
//! A context is hostile until proven otherwise: whatever is read from it (the Dockerfile, its
//! `.dockerignore`, a repository's subdirectory) resolves inside it, links included, as
//! BuildKit resolves them in its copy of the context; a link to a host file leads nowhere.
//! Only paths the user names on the command line (`-f`, the context directory) are host paths.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};
use img_frontend_dockerfile::IgnorePatterns;

/// Where the context comes from, as the command line named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextSpec {
    /// A directory.
    Dir(PathBuf),
    /// `-`: standard input.
    Stdin,
    /// A git repository.
    Git(GitUrl),
    /// Another http(s) URL: a context archive or a Dockerfile.
    Url(String),
}

/// A git context URL split as BuildKit splits it: `URL#REF:SUBDIR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitUrl {
    /// What `git clone` is given.
    pub remote: String,
    /// The branch, tag or commit to check out (default: the remote's HEAD).
    pub reference: Option<String>,
    /// The directory of the repository that is the context (default: its root).
    pub subdir: Option<String>,
}

impl ContextSpec {
    /// Classifies the CONTEXT argument the way `docker build` does: `-`, a git URL
    /// (`git://`, `git@`, `ssh://`, or an http(s) URL whose path ends in `.git`, with an
    /// optional `#ref:subdir`), else a directory.
    pub fn parse(arg: &str) -> anyhow::Result<ContextSpec> {
        if arg == "-" {
            return Ok(ContextSpec::Stdin);
        }
        let (url, fragment) = match arg.split_once('#') {
            Some((url, fragment)) => (url, Some(fragment)),
            None => (arg, None),
        };
        let is_http = url.starts_with("https://") || url.starts_with("http://");
        let is_git = url.starts_with("git://")
            || url.starts_with("git@")
            || url.starts_with("ssh://")
            || (is_http && url.trim_end_matches('/').ends_with(".git"));
        if is_git {
            let (reference, subdir) = match fragment {
                None => (None, None),
                Some(fragment) => {
                    let (reference, subdir) = match fragment.split_once(':') {
                        Some((r, s)) => (r, Some(s)),
                        None => (fragment, None),
                    };
                    let subdir = subdir
                        .map(|s| s.trim_matches('/'))
                        .filter(|s| !s.is_empty());
                    if subdir.is_some_and(|s| s.split('/').any(|part| part == "..")) {
                        bail!("invalid git context {arg:?}: the subdirectory must stay inside the repository");
                    }
                    (
                        Some(reference).filter(|r| !r.is_empty()).map(str::to_owned),
                        subdir.map(str::to_owned),
                    )
                }
            };
            return Ok(ContextSpec::Git(GitUrl {
                remote: url.to_owned(),
                reference,
                subdir,
            }));
        }
        if is_http {
            return Ok(ContextSpec::Url(arg.to_owned()));
        }
        Ok(ContextSpec::Dir(PathBuf::from(arg)))
    }
}

/// Where the Dockerfile was read from (and so where `<Dockerfile>.dockerignore` is looked for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerfileSource {
    /// A host path the user named with `-f`.
    Host(PathBuf),
    /// A path inside the context (the default `Dockerfile`, or `-f` in an archive or a
    /// repository), resolved inside it.
    InContext(PathBuf),
    /// Standard input.
    Stdin,
}

/// A build context ready to read, and its Dockerfile.
#[derive(Debug)]
pub struct BuildContext {
    /// The context directory.
    pub dir: PathBuf,
    /// The Dockerfile's bytes.
    pub dockerfile: Vec<u8>,
    /// The Dockerfile's name in messages (`Dockerfile`, or the `-f` value).
    pub dockerfile_name: String,
    /// Where the Dockerfile was read from.
    pub dockerfile_source: DockerfileSource,
    /// The temporary directory holding an extracted or cloned context, removed on drop.
    _temp: Option<tempfile::TempDir>,
}

impl BuildContext {
    /// Prepares the context `spec` with the Dockerfile `file` (`-f`; `-` for standard input).
    /// An extracted or cloned context goes into a new directory under `scratch`.
    pub fn prepare(
        spec: &ContextSpec,
        file: Option<&Path>,
        scratch: &Path,
    ) -> anyhow::Result<BuildContext> {
        let dockerfile_on_stdin = file.is_some_and(|f| f.as_os_str() == "-");
        match spec {
            ContextSpec::Dir(dir) => {
                if !dir.is_dir() {
                    bail!(
                        "the build context {} is not a directory (give a directory, - or a git URL)",
                        dir.display()
                    );
                }
                if dockerfile_on_stdin {
                    let bytes = read_stdin()?;
                    return Ok(BuildContext::new(dir.clone(), bytes, "Dockerfile", None));
                }
                match file {
                    // `-f` is relative to the working directory, as with `docker build`.
                    Some(path) => BuildContext::with_host_file(dir.clone(), path),
                    None => BuildContext::with_context_file(dir.clone(), None, None),
                }
            }
            ContextSpec::Stdin | ContextSpec::Url(_) => {
                let bytes = match spec {
                    ContextSpec::Url(url) => crate::remote_context::download(url)?,
                    _ if dockerfile_on_stdin => {
                        bail!("-f - and context - cannot both read standard input")
                    }
                    _ => read_stdin()?,
                };
                let temp = temp_dir(scratch, "context-")?;
                let dir = temp.path().to_path_buf();
                match archive_kind(&bytes) {
                    Some(kind) => {
                        extract_archive(&bytes, kind, &dir)?;
                        // In an archive, `-f` names a file inside it.
                        BuildContext::with_context_file(dir, file, Some(temp))
                    }
                    None => {
                        // A Dockerfile alone: the build has an empty context.
                        let mut context = BuildContext::new(dir, bytes, "Dockerfile", Some(temp));
                        context.dockerfile_source = DockerfileSource::Stdin;
                        Ok(context)
                    }
                }
            }
            ContextSpec::Git(url) => {
                let (dir, temp) = git_checkout(url, scratch)?;
                if dockerfile_on_stdin {
                    let bytes = read_stdin()?;
                    return Ok(BuildContext::new(dir, bytes, "Dockerfile", Some(temp)));
                }
                BuildContext::with_context_file(dir, file, Some(temp))
            }
        }
    }

    /// The git repository `url` cloned under `scratch`, its subdirectory as the context, with
    /// no Dockerfile (a named build context).
    pub fn checkout(url: &GitUrl, scratch: &Path) -> anyhow::Result<BuildContext> {
        let (dir, temp) = git_checkout(url, scratch)?;
        Ok(BuildContext::new(dir, Vec::new(), "", Some(temp)))
    }

    fn new(
        dir: PathBuf,
        dockerfile: Vec<u8>,
        name: &str,
        temp: Option<tempfile::TempDir>,
    ) -> BuildContext {
        BuildContext {
            dir,
            dockerfile,
            dockerfile_name: name.to_owned(),
            dockerfile_source: DockerfileSource::Stdin,
            _temp: temp,
        }
    }

    /// The Dockerfile at host path `path`, named by the user.
    fn with_host_file(dir: PathBuf, path: &Path) -> anyhow::Result<BuildContext> {
        let bytes = fs::read(path).with_context(|| {
            format!(
                "cannot read the Dockerfile {} (give its path with -f, or - for standard input)",
                path.display()
            )
        })?;
        let mut context = BuildContext::new(dir, bytes, &path.display().to_string(), None);
        context.dockerfile_source = DockerfileSource::Host(path.to_path_buf());
        Ok(context)
    }

    /// The Dockerfile at `file` (default `Dockerfile`) inside the context `dir`, resolved
    /// inside it.
    fn with_context_file(
        dir: PathBuf,
        file: Option<&Path>,
        temp: Option<tempfile::TempDir>,
    ) -> anyhow::Result<BuildContext> {
        let rel = file.unwrap_or(Path::new("Dockerfile"));
        let bytes = img_worker::read_file_in_root(&dir, rel)
            .with_context(|| format!("cannot read the Dockerfile {}", rel.display()))?;
        let Some(bytes) = bytes else {
            bail!(
                "cannot read the Dockerfile {}: it is not in the build context {} (give its path with -f, or - for standard input)",
                rel.display(),
                dir.display()
            );
        };
        let name = file.map_or_else(|| "Dockerfile".to_owned(), |f| f.display().to_string());
        let mut context = BuildContext::new(dir, bytes, &name, temp);
        context.dockerfile_source = DockerfileSource::InContext(rel.to_path_buf());
        Ok(context)
    }

    /// The context's `.dockerignore` patterns: `<Dockerfile>.dockerignore` beside the
    /// Dockerfile wins over `.dockerignore` at the root of the context, as in BuildKit. A file
    /// of the context is read inside it: an ignore file that is a link to a host file is no
    /// ignore file at all.
    pub fn ignore_patterns(&self) -> anyhow::Result<Option<IgnorePatterns>> {
        let with_suffix = |path: &Path| {
            path.file_name().map(|name| {
                let mut name = name.to_os_string();
                name.push(".dockerignore");
                path.with_file_name(name)
            })
        };
        let found: Option<(PathBuf, Vec<u8>)> = match &self.dockerfile_source {
            DockerfileSource::Host(path) => match with_suffix(path) {
                Some(specific) if specific.is_file() => {
                    let bytes = fs::read(&specific)
                        .with_context(|| format!("cannot read {}", specific.display()))?;
                    Some((specific, bytes))
                }
                _ => None,
            },
            DockerfileSource::InContext(rel) => match with_suffix(rel) {
                Some(specific) => self.read_in_context(&specific)?.map(|b| (specific, b)),
                None => None,
            },
            DockerfileSource::Stdin => None,
        };
        let found = match found {
            Some(found) => Some(found),
            None => {
                let root = PathBuf::from(".dockerignore");
                self.read_in_context(&root)?.map(|b| (root, b))
            }
        };
        let Some((file, bytes)) = found else {
            return Ok(None);
        };
        Ok(Some(IgnorePatterns::parse(
            &String::from_utf8_lossy(&bytes),
            &file,
        )?))
    }

    fn read_in_context(&self, rel: &Path) -> anyhow::Result<Option<Vec<u8>>> {
        img_worker::read_file_in_root(&self.dir, rel)
            .with_context(|| format!("cannot read {} in the build context", rel.display()))
    }
}

fn read_stdin() -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    io::stdin()
        .read_to_end(&mut bytes)
        .context("cannot read standard input")?;
    Ok(bytes)
}

fn temp_dir(scratch: &Path, prefix: &str) -> anyhow::Result<tempfile::TempDir> {
    fs::create_dir_all(scratch).with_context(|| format!("cannot create {}", scratch.display()))?;
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(scratch)
        .with_context(|| format!("cannot create a directory in {}", scratch.display()))
}

/// What a context on standard input is packed as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    Tar,
    Gzip,
    Zstd,
    Bzip2,
    Xz,
}

/// Recognizes an archive by its magic bytes (as Docker's `archive.DetectCompression`); a
/// plain tar by the `ustar` magic at offset 257. Anything else is a Dockerfile.
pub fn archive_kind(bytes: &[u8]) -> Option<ArchiveKind> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        Some(ArchiveKind::Gzip)
    } else if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some(ArchiveKind::Zstd)
    } else if bytes.starts_with(b"BZh") {
        Some(ArchiveKind::Bzip2)
    } else if bytes.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Some(ArchiveKind::Xz)
    } else if bytes.get(257..262) == Some(b"ustar") {
        Some(ArchiveKind::Tar)
    } else {
        None
    }
}

/// Unpacks a context archive into `dir`. The tar crate refuses entries that would land
/// outside `dir` (`..`, absolute paths through symlinks).
fn extract_archive(bytes: &[u8], kind: ArchiveKind, dir: &Path) -> anyhow::Result<()> {
    let reader: Box<dyn Read> = match kind {
        ArchiveKind::Tar => Box::new(bytes),
        ArchiveKind::Gzip => Box::new(flate2::read::MultiGzDecoder::new(bytes)),
        ArchiveKind::Zstd => Box::new(
            zstd::stream::read::Decoder::new(bytes).context("cannot read the zstd context")?,
        ),
        ArchiveKind::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(bytes)),
        ArchiveKind::Xz => Box::new(xz2::read::XzDecoder::new_multi_decoder(bytes)),
    };
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive
        .unpack(dir)
        .context("cannot extract the context archive from standard input")
}

/// `url` cloned into a new directory under `scratch`: the context directory (its
/// subdirectory, resolved inside the repository) and the directory to remove.
fn git_checkout(url: &GitUrl, scratch: &Path) -> anyhow::Result<(PathBuf, tempfile::TempDir)> {
    let temp = temp_dir(scratch, "git-")?;
    let checkout = temp.path().join("repo");
    clone(url, &checkout)?;
    let dir = match &url.subdir {
        // The subdirectory is a path of the repository: a link in it stays inside.
        Some(sub) => img_worker::dir_in_root(&checkout, Path::new(sub))
            .with_context(|| format!("cannot read the git context {}", url.remote))?,
        None => Some(checkout),
    };
    let Some(dir) = dir else {
        bail!(
            "the git context {} has no directory {:?}",
            url.remote,
            url.subdir.as_deref().unwrap_or("")
        );
    };
    Ok((dir, temp))
}

/// Clones `url` into `dest` and checks out its reference.
fn clone(url: &GitUrl, dest: &Path) -> anyhow::Result<()> {
    let run = |args: &[&str], cwd: Option<&Path>| -> anyhow::Result<()> {
        let mut cmd = Command::new("git");
        cmd.args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(Stdio::null());
        if let Some(cwd) = cwd {
            cmd.current_dir(cwd);
        }
        let output = cmd
            .output()
            .context("cannot run git to fetch the context (install git)")?;
        if !output.status.success() {
            bail!(
                "git {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    };
    let dest_str = dest.to_str().context("the scratch path is not UTF-8")?;
    run(
        &[
            "clone",
            "--quiet",
            "--recurse-submodules",
            &url.remote,
            dest_str,
        ],
        None,
    )
    .with_context(|| format!("cannot clone the git context {}", url.remote))?;
    if let Some(reference) = &url.reference {
        run(&["checkout", "--quiet", reference], Some(dest)).with_context(|| {
            format!(
                "cannot check out {reference:?} of the git context {}",
                url.remote
            )
        })?;
        run(
            &["submodule", "update", "--quiet", "--init", "--recursive"],
            Some(dest),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(remote: &str, reference: Option<&str>, subdir: Option<&str>) -> ContextSpec {
        ContextSpec::Git(GitUrl {
            remote: remote.into(),
            reference: reference.map(Into::into),
            subdir: subdir.map(Into::into),
        })
    }

    #[test]
    fn context_arguments() {
        // argument | what it is
        let cases = [
            ("-", ContextSpec::Stdin),
            (".", ContextSpec::Dir(".".into())),
            ("some/dir", ContextSpec::Dir("some/dir".into())),
            (
                "https://example.com/repo.git",
                git("https://example.com/repo.git", None, None),
            ),
            (
                "https://example.com/repo.git#v1.2",
                git("https://example.com/repo.git", Some("v1.2"), None),
            ),
            (
                "https://example.com/repo.git#main:docker/app/",
                git(
                    "https://example.com/repo.git",
                    Some("main"),
                    Some("docker/app"),
                ),
            ),
            (
                "https://example.com/repo.git#:sub",
                git("https://example.com/repo.git", None, Some("sub")),
            ),
            (
                "git://127.0.0.1:9418/r.git#abc123",
                git("git://127.0.0.1:9418/r.git", Some("abc123"), None),
            ),
            (
                "git@github.com:o/r.git",
                git("git@github.com:o/r.git", None, None),
            ),
        ];
        for (arg, want) in cases {
            assert_eq!(ContextSpec::parse(arg).unwrap(), want, "{arg}");
        }
    }

    #[test]
    fn bad_remote_contexts_are_refused() {
        assert_eq!(
            ContextSpec::parse("https://example.com/context.tar.gz").unwrap(),
            ContextSpec::Url("https://example.com/context.tar.gz".into())
        );
        let err = ContextSpec::parse("https://h/r.git#main:../escape").unwrap_err();
        assert!(err.to_string().contains("inside the repository"), "{err}");
    }

    fn tar_with(name: &str, data: &[u8]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, data).unwrap();
        builder.into_inner().unwrap()
    }

    #[test]
    fn archives_are_told_from_dockerfiles() {
        let tar = tar_with("Dockerfile", b"FROM scratch\n");
        assert_eq!(archive_kind(&tar), Some(ArchiveKind::Tar));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &tar).unwrap();
        assert_eq!(archive_kind(&gz.finish().unwrap()), Some(ArchiveKind::Gzip));
        let zst = zstd::encode_all(&tar[..], 1).unwrap();
        assert_eq!(archive_kind(&zst), Some(ArchiveKind::Zstd));
        assert_eq!(archive_kind(b"FROM busybox\nRUN true\n"), None);
        assert_eq!(archive_kind(b""), None);
    }

    #[test]
    fn compressed_archives_extract() {
        let tar = tar_with("sub/Dockerfile.app", b"FROM scratch\n");
        let zst = zstd::encode_all(&tar[..], 1).unwrap();
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        io::Write::write_all(&mut bz, &tar).unwrap();
        let bz = bz.finish().unwrap();
        let mut xz = xz2::write::XzEncoder::new(Vec::new(), 1);
        io::Write::write_all(&mut xz, &tar).unwrap();
        let xz = xz.finish().unwrap();
        for (bytes, kind) in [
            (tar.clone(), ArchiveKind::Tar),
            (zst, ArchiveKind::Zstd),
            (bz, ArchiveKind::Bzip2),
            (xz, ArchiveKind::Xz),
        ] {
            assert_eq!(archive_kind(&bytes), Some(kind));
            let dir = tempfile::tempdir().unwrap();
            extract_archive(&bytes, kind, dir.path()).unwrap();
            assert_eq!(
                fs::read(dir.path().join("sub/Dockerfile.app")).unwrap(),
                b"FROM scratch\n"
            );
        }
    }

    #[test]
    fn a_directory_context_reads_its_dockerfile_or_the_f_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("Dockerfile"), "FROM a\n").unwrap();
        fs::write(dir.path().join("other.Dockerfile"), "FROM b\n").unwrap();
        let spec = ContextSpec::Dir(dir.path().into());
        let ctx = BuildContext::prepare(&spec, None, dir.path()).unwrap();
        assert_eq!(ctx.dockerfile, b"FROM a\n");
        assert_eq!(ctx.dockerfile_name, "Dockerfile");
        let other = dir.path().join("other.Dockerfile");
        let ctx = BuildContext::prepare(&spec, Some(&other), dir.path()).unwrap();
        assert_eq!(ctx.dockerfile, b"FROM b\n");
        assert_eq!(ctx.dockerfile_source, DockerfileSource::Host(other.clone()));
        let err = BuildContext::prepare(&spec, Some(Path::new("/nonexistent/Df")), dir.path())
            .unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/Df"), "{err:#}");
    }

    /// A secret file beside (outside) `context`, and its content.
    fn host_secret(outside: &Path) -> (PathBuf, &'static str) {
        let secret = outside.join("secret");
        fs::write(&secret, "[HOST-SECRET-LINE").unwrap();
        (secret, "HOST-SECRET")
    }

    #[test]
    fn a_dockerfile_or_dockerignore_linking_out_of_the_context_is_not_read() {
        let tmp = tempfile::tempdir().unwrap();
        let (secret, marker) = host_secret(tmp.path());
        let dir = tmp.path().join("ctx");
        fs::create_dir(&dir).unwrap();
        std::os::unix::fs::symlink(&secret, dir.join("Dockerfile")).unwrap();
        let spec = ContextSpec::Dir(dir.clone());
        let err = BuildContext::prepare(&spec, None, tmp.path()).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("not in the build context"), "{text}");
        assert!(!text.contains(marker), "{text}");

        // An ignore file linking out is no ignore file; one linking inside is read.
        fs::remove_file(dir.join("Dockerfile")).unwrap();
        fs::write(dir.join("Dockerfile"), "FROM scratch\n").unwrap();
        std::os::unix::fs::symlink(&secret, dir.join(".dockerignore")).unwrap();
        let ctx = BuildContext::prepare(&spec, None, tmp.path()).unwrap();
        assert!(ctx.ignore_patterns().unwrap().is_none());
        fs::remove_file(dir.join(".dockerignore")).unwrap();
        fs::create_dir(dir.join("conf")).unwrap();
        fs::write(dir.join("conf/ignore"), "*.log\n").unwrap();
        std::os::unix::fs::symlink("conf/ignore", dir.join(".dockerignore")).unwrap();
        let patterns = ctx.ignore_patterns().unwrap().unwrap();
        assert_eq!(patterns.patterns(), ["*.log"]);
    }

    /// A tar entry: its path, its kind and target when it is a link, its data.
    type TarEntry<'a> = (&'a str, Option<(tar::EntryType, &'a Path)>, &'a [u8]);

    /// A tar of `entries`.
    fn tar_of(entries: &[TarEntry<'_>]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, link, data) in entries {
            let mut header = tar::Header::new_ustar();
            header.set_mode(0o644);
            header.set_size(data.len() as u64);
            match link {
                Some((kind, target)) => {
                    header.set_entry_type(*kind);
                    header.set_link_name(target).unwrap();
                }
                None => header.set_entry_type(tar::EntryType::Regular),
            }
            header.set_path(path).unwrap();
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn a_context_archive_cannot_write_or_link_outside_its_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let (secret, _) = host_secret(tmp.path());
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        let cases: [(&str, Vec<u8>); 3] = [
            (
                "a file written through a link to a host directory",
                tar_of(&[
                    ("esc", Some((tar::EntryType::Symlink, &outside)), b""),
                    ("esc/planted", None, b"x"),
                ]),
            ),
            (
                "a hard link to a host file",
                tar_of(&[("hard", Some((tar::EntryType::Link, &secret)), b"")]),
            ),
            (
                "a path climbing out",
                tar_of(&[
                    (
                        "up",
                        Some((tar::EntryType::Symlink, Path::new("../outside"))),
                        b"",
                    ),
                    ("up/planted", None, b"x"),
                ]),
            ),
        ];
        for (what, bytes) in cases {
            let dir = tmp.path().join("ctx");
            fs::create_dir(&dir).unwrap();
            let _ = extract_archive(&bytes, ArchiveKind::Tar, &dir);
            assert!(!outside.join("planted").exists(), "{what}: planted outside");
            let hard = fs::symlink_metadata(dir.join("hard"));
            assert!(
                hard.map_or(true, |m| m.file_type().is_symlink()),
                "{what}: host file linked in"
            );
            fs::remove_dir_all(&dir).unwrap();
        }
        // Links themselves are kept; reading through them stays inside.
        let dir = tmp.path().join("ctx");
        fs::create_dir(&dir).unwrap();
        let bytes = tar_of(&[("Dockerfile", Some((tar::EntryType::Symlink, &secret)), b"")]);
        extract_archive(&bytes, ArchiveKind::Tar, &dir).unwrap();
        let err = BuildContext::with_context_file(dir, None, None).unwrap_err();
        assert!(
            format!("{err:#}").contains("not in the build context"),
            "{err:#}"
        );
    }

    #[test]
    fn a_git_context_subdirectory_resolves_inside_the_repository() {
        let tmp = tempfile::tempdir().unwrap();
        let host = tmp.path().join("host");
        fs::create_dir(&host).unwrap();
        fs::write(host.join("Dockerfile"), "FROM host-secret\n").unwrap();
        let repo = tmp.path().join("repo");
        fs::create_dir_all(repo.join("real/app")).unwrap();
        fs::write(repo.join("real/app/Dockerfile"), "FROM inside\n").unwrap();
        std::os::unix::fs::symlink(&host, repo.join("out")).unwrap();
        std::os::unix::fs::symlink("real/app", repo.join("app")).unwrap();
        let git = |args: &[&str]| {
            let status = Command::new("git")
                .arg("-C")
                .arg(&repo)
                .args(["-c", "user.name=img", "-c", "user.email=img@example.com"])
                .args(args)
                .status()
                .expect("git runs");
            assert!(status.success(), "git {args:?}");
        };
        git(&["init", "-q"]);
        git(&["add", "."]);
        git(&["commit", "-q", "-m", "links"]);
        let spec = |sub: &str| {
            ContextSpec::Git(GitUrl {
                remote: repo.display().to_string(),
                reference: None,
                subdir: Some(sub.into()),
            })
        };
        let scratch = tmp.path().join("scratch");
        let ctx = BuildContext::prepare(&spec("app"), None, &scratch).unwrap();
        assert_eq!(ctx.dockerfile, b"FROM inside\n");
        let err = BuildContext::prepare(&spec("out"), None, &scratch).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("has no directory"), "{text}");
        assert!(!text.contains("host-secret"), "{text}");
    }
}
