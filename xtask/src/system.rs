//! The system packages the tests use, and installing the missing ones.

use std::process::Command;

use anyhow::{bail, Context, Result};

/// Programs the tests run and the Debian packages that provide them, one pair a line; `.ci/run`
/// installs from the same list.
const TEST_PACKAGES: &str = include_str!("../test-packages.txt");

/// The (program, package) pairs of [`TEST_PACKAGES`].
fn test_programs() -> impl Iterator<Item = (&'static str, &'static str)> {
    TEST_PACKAGES
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once(' '))
        .map(|(program, package)| (program.trim(), package.trim()))
}

/// Installs the packages of any missing test program with apt-get (root only).
pub fn ensure_test_packages() -> Result<()> {
    let mut missing: Vec<&str> = test_programs()
        .filter(|(program, _)| !on_path(program))
        .map(|(_, package)| package)
        .collect();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "the tests need these Debian packages: {}\ninstall them with: sudo apt-get install -y {}",
            missing.join(" "),
            missing.join(" ")
        );
    }
    println!("installing test packages: {}", missing.join(" "));
    let update = Command::new("apt-get")
        .args(["update", "-qq"])
        .status()
        .context("could not run apt-get")?;
    if !update.success() {
        bail!("apt-get update failed: {update}");
    }
    let install = Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("could not run apt-get")?;
    if !install.success() {
        bail!("apt-get install {} failed: {install}", missing.join(" "));
    }
    Ok(())
}

/// Whether `program` is an executable file in a `PATH` directory.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
