//! The system packages the tests use, and installing the missing ones.

use std::process::Command;

use anyhow::{bail, Context, Result};

/// A program the tests run, and the Debian package that provides it.
const TEST_PROGRAMS: &[(&str, &str)] = &[
    ("docker-registry", "docker-registry"),
    ("skopeo", "skopeo"),
    ("umoci", "umoci"),
    ("podman", "podman"),
    ("runc", "runc"),
    ("newuidmap", "uidmap"),
    ("busybox", "busybox-static"),
    ("htpasswd", "apache2-utils"),
    ("pigz", "pigz"),
    ("zstd", "zstd"),
    ("dot", "graphviz"),
];

/// Installs the packages of any missing test program with apt-get (root only).
pub fn ensure_test_packages() -> Result<()> {
    let missing: Vec<&str> = TEST_PROGRAMS
        .iter()
        .filter(|(program, _)| !on_path(program))
        .map(|&(_, package)| package)
        .collect();
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

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}
