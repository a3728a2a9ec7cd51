//! The commands each builder runs: img, buildah (serial, and with `--jobs 4` so multi-stage
//! scenarios compare parallel stages with parallel stages), and BuildKit when a daemon is
//! given.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Result};

/// `img --state STATE build --progress=plain -t TAG CONTEXT`.
pub fn img_build(img: &Path, state: &Path, tag: &str, context: &Path) -> Command {
    let mut command = Command::new(img);
    command
        .arg("--state")
        .arg(state)
        .args(["build", "--progress=plain", "-t", tag])
        .arg(context);
    command
}

/// `img --state STATE build --progress=plain -o type=oci,dest=DEST CONTEXT`.
pub fn img_build_oci(img: &Path, state: &Path, dest: &Path, context: &Path) -> Command {
    let mut command = Command::new(img);
    command
        .arg("--state")
        .arg(state)
        .args(["build", "--progress=plain", "-o"])
        .arg(format!("type=oci,dest={}", dest.display()))
        .arg(context);
    command
}

/// `img --state STATE pull REFERENCE`.
pub fn img_pull(img: &Path, state: &Path, reference: &str) -> Command {
    let mut command = Command::new(img);
    command.arg("--state").arg(state).args(["pull", reference]);
    command
}

/// `buildah bud` as a user would run it here (runc, host network), with its layer cache;
/// `jobs` runs that many stages at once (buildah builds stages one by one by default).
pub fn buildah_bud(root: &Path, jobs: Option<u32>, tag: &str, context: &Path) -> Command {
    buildah_bud_with(root, jobs, &[], tag, context)
}

/// [`buildah_bud`] with `extra` options (`--cache-from REPO`, say).
pub fn buildah_bud_with(
    root: &Path,
    jobs: Option<u32>,
    extra: &[&str],
    tag: &str,
    context: &Path,
) -> Command {
    let mut command = buildah(root);
    command.args([
        "bud",
        "--runtime",
        "runc",
        "--network",
        "host",
        "--layers",
        "--tls-verify=false",
        "-q",
        "-t",
        tag,
    ]);
    if let Some(jobs) = jobs {
        command.arg(format!("--jobs={jobs}"));
    }
    command.args(extra).arg(context);
    command
}

/// `buildah bud` then `buildah push` into an OCI archive: buildah's `-o` writes root
/// filesystems only, so the archive is a second command, timed with the build.
pub fn buildah_bud_oci(root: &Path, tag: &str, context: &Path, dest: &Path) -> Command {
    let bud = buildah_bud(root, None, tag, context);
    let mut push = buildah(root);
    push.args(["push", "-q", tag])
        .arg(format!("oci-archive:{}", dest.display()));
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("{} && {}", shell_line(&bud), shell_line(&push)));
    command
}

/// `buildah push TAG DESTINATION` to the loopback registry.
pub fn buildah_push(root: &Path, tag: &str, destination: &str) -> Command {
    let mut command = buildah(root);
    command.args(["push", "-q", "--tls-verify=false", tag, destination]);
    command
}

/// `buildah pull` of a base image from the loopback registry.
pub fn buildah_pull(root: &Path, reference: &str) -> Command {
    let mut command = buildah(root);
    command.args(["pull", "-q", "--tls-verify=false", reference]);
    command
}

fn buildah(root: &Path) -> Command {
    let mut command = Command::new("buildah");
    command
        .arg("--root")
        .arg(root.join("root"))
        .arg("--runroot")
        .arg(root.join("runroot"));
    command
}

pub fn remove_buildah_root(root: &Path) {
    // buildah leaves overlay mounts behind only when a run crashed; unmount before deleting.
    let _ = buildah(root)
        .args(["rm", "--all"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = buildah(root)
        .args(["rmi", "--all", "--force"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = std::fs::remove_dir_all(root);
}

/// A running BuildKit daemon: `BUILDCTL` names the buildctl binary and `BUILDKIT_HOST` the
/// daemon's address (buildctl reads it from the environment). The daemon must reach the
/// benchmark registry over plain HTTP: `[registry."127.0.0.1:5555"] http = true` in its
/// buildkitd.toml (the registry listens on that port when BuildKit is compared).
#[derive(Debug, Clone)]
pub struct BuildKit {
    buildctl: PathBuf,
}

impl BuildKit {
    /// The daemon named by the environment; `None` (the BuildKit column is skipped) when
    /// `BUILDCTL` is unset.
    pub fn from_env() -> Result<Option<BuildKit>> {
        let Some(buildctl) = std::env::var_os("BUILDCTL") else {
            return Ok(None);
        };
        if std::env::var_os("BUILDKIT_HOST").is_none() {
            bail!("BUILDCTL is set but BUILDKIT_HOST is not: give the daemon's address too");
        }
        let buildkit = BuildKit {
            buildctl: PathBuf::from(buildctl),
        };
        let mut probe = buildkit.command();
        probe.arg("debug").arg("workers");
        super::quiet(&mut probe)?;
        Ok(Some(buildkit))
    }

    fn command(&self) -> Command {
        Command::new(&self.buildctl)
    }

    /// Empties the daemon's build cache, for a cold build.
    pub fn prune(&self) -> Result<()> {
        super::quiet(self.command().args(["prune", "--all"]))
    }

    /// `buildctl build` of `context` (its Dockerfile inside) with `output`
    /// (`type=image,name=…`, `type=oci,dest=…`).
    pub fn build(&self, context: &Path, output: &str) -> Command {
        let mut command = self.command();
        command
            .args([
                "build",
                "--frontend",
                "dockerfile.v0",
                "--progress",
                "plain",
            ])
            .arg(format!("--local=context={}", context.display()))
            .arg(format!("--local=dockerfile={}", context.display()))
            .args(["--output", output]);
        command
    }
}

/// A command as one shell line (arguments single-quoted).
pub fn shell_line(command: &Command) -> String {
    let quote = |s: &std::ffi::OsStr| format!("'{}'", s.to_string_lossy().replace('\'', r"'\''"));
    std::iter::once(quote(command.get_program()))
        .chain(command.get_args().map(quote))
        .collect::<Vec<_>>()
        .join(" ")
}
