//! Developer workflows for img, run as `cargo xtask <command>`.
//!
//! - `cargo xtask test`: installs the system packages the tests need (when run as root and they
//!   are missing), runs every crate's tests, then runs the `img` binary against BuildKit's
//!   conformance data when `../shared/conformance` exists beside the checkout.
//!   Then renders the man pages (`man`), runs the user guide's examples (`doctest`) and the
//!   pod test (see `pod.rs`).
//! - `cargo xtask man`: man pages for img and each command into target/man, checked with man.
//! - `cargo xtask doctest`: the shell blocks of README.md and docs/ marked `<!-- test -->`,
//!   run against the built img and a local registry (see `doctest.rs`).
//! - `cargo xtask bench`: whole builds with img and its peers side by side (see `bench.rs`).
//! - `cargo xtask pod [--from-source]`: the pod test alone: img's own image, built by img
//!   (around the binary under test, or from source as the Dockerfile documents), building
//!   images in pod-like containers.

mod bench;
mod conformance;
mod debian;
mod doctest;
mod man;
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
        Some("setup") => {
            system::ensure_test_packages()?;
            system::ensure_foreign_platforms()
        }
        Some("bench") => bench::run(&workspace_root(), &args[1..]),
        Some("man") => man_pages(&workspace_root()),
        Some("doctest") => {
            let root = workspace_root();
            let img = build_img(&root)?;
            doctest::run(&root, &img, &args[1..])
        }
        Some("pod") => {
            let root = workspace_root();
            let img = build_img(&root)?;
            pod::run(&root, &img, &args[1..])
        }
        Some("conformance") => {
            let root = workspace_root();
            let dir =
                conformance_dir(&root).context("no conformance folder beside the checkout")?;
            let img = build_img(&root)?;
            conformance::run(&dir, &img)
        }
        _ => {
            eprintln!("usage: cargo xtask <command>\n\ncommands:\n  test         run every test (sets up what `setup` does first)\n  setup        install the test packages and register foreign platforms (when root)\n  man          write the man pages into target/man and check they render cleanly\n  doctest      run the marked shell examples of README.md and docs/ [FILE...]\n  conformance  run img against ../shared/conformance\n  pod          build img's image with img and build images in pod-like containers [--from-source]\n  bench        whole builds with img and its peers side by side [--runs N] [--only 1,3,4] [--write]");
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
    system::ensure_foreign_platforms()?;

    let conformance = conformance_dir(&root);
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .current_dir(&root)
        .args(["test", "--workspace", "--all-targets", "--no-fail-fast"])
        .args(extra)
        // Every tool is installed above: a test that would skip for lack of one fails instead.
        .env("IMG_TEST_REQUIRE_TOOLS", "1");
    if let Some(dir) = &conformance {
        cargo.env("IMG_CONFORMANCE_DIR", dir);
    }
    run(&mut cargo)?;

    man_pages(&root)?;
    let img = build_img(&root)?;
    doctest::run(&root, &img, &[])?;

    match &conformance {
        Some(dir) => conformance::run(dir, &img)?,
        None => println!("conformance: no ../shared/conformance beside the checkout, skipped"),
    }
    pod::run(&root, &img, &[])
}

/// Writes the man pages into target/man and checks that each renders without a warning.
fn man_pages(root: &Path) -> Result<()> {
    let dir = target_dir(root).join("man");
    let pages = man::generate(&dir)?;
    man::check(&pages)?;
    println!("man: pages in {}", dir.display());
    Ok(())
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
