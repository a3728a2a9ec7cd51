//! Developer workflows for img, run as `cargo xtask <command>`.
//!
//! - `cargo xtask test`: installs the system packages the tests need (when run as root and they
//!   are missing), runs every crate's tests, then runs the `img` binary against BuildKit's
//!   conformance data when `../shared/conformance` exists beside the checkout, then the pod
//!   test (see `pod.rs`).
//! - `cargo xtask pod`: the pod test alone: img's own image, built by img, building images in
//!   pod-like containers.
//! - `cargo xtask bench`: whole builds with img and buildah side by side (see `bench.rs`).

mod bench;
mod conformance;
mod debian;
mod pod;
mod registry;
mod system;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("bench") => bench::run(&workspace_root(), &args[1..]),
        Some("pod") => {
            let root = workspace_root();
            let img = build_img(&root)?;
            pod::run(&root, &img)
        }
        Some("conformance") => {
            let root = workspace_root();
            let dir =
                conformance_dir(&root).context("no conformance folder beside the checkout")?;
            let img = build_img(&root)?;
            conformance::run(&dir, &img)
        }
        _ => {
            eprintln!("usage: cargo xtask <command>\n\ncommands:\n  test         run every test (installs missing system packages when root)\n  conformance  run img against ../shared/conformance\n  pod          build img's image with img and build images in pod-like containers\n  bench        whole builds with img and buildah side by side [--runs N] [--write]");
            std::process::exit(2);
        }
    }
}

/// The workspace root: the parent of this crate's manifest directory.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// BuildKit's parser and word-expansion data, read in place when it exists beside the checkout.
fn conformance_dir(root: &Path) -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("IMG_CONFORMANCE_DIR") {
        return Some(PathBuf::from(dir));
    }
    let dir = root.join("../shared/conformance");
    dir.is_dir().then(|| dir.canonicalize().unwrap_or(dir))
}

fn test(extra: &[String]) -> Result<()> {
    let root = workspace_root();
    system::ensure_test_packages()?;

    let conformance = conformance_dir(&root);
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .current_dir(&root)
        .args(["test", "--workspace", "--all-targets", "--no-fail-fast"])
        .args(extra);
    if let Some(dir) = &conformance {
        cargo.env("IMG_CONFORMANCE_DIR", dir);
    }
    run(&mut cargo)?;

    let img = build_img(&root)?;
    match &conformance {
        Some(dir) => conformance::run(dir, &img)?,
        None => println!("conformance: no ../shared/conformance beside the checkout, skipped"),
    }
    pod::run(&root, &img)
}

/// Builds the `img` binary and returns its path.
fn build_img(root: &Path) -> Result<PathBuf> {
    run(Command::new(env!("CARGO")).current_dir(root).args([
        "build",
        "--quiet",
        "--package",
        "img-cli",
        "--bin",
        "img",
    ]))?;
    Ok(target_dir(root).join("debug/img"))
}

/// Cargo's target directory for this workspace.
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

/// Runs `command`, failing unless it exits successfully.
fn run(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("could not start {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed: {status}");
    }
    Ok(())
}
