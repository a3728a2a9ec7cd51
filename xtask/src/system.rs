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

/// The foreign platform the multi-platform tests build for, as dpkg and binfmt_misc name it.
const FOREIGN_ARCH: &str = "arm64";
const FOREIGN_HANDLER: &str = "/proc/sys/fs/binfmt_misc/qemu-aarch64";
const BINFMT_MISC: &str = "/proc/sys/fs/binfmt_misc";

/// What the multi-platform tests need beyond packages: dpkg's arm64 architecture (their base
/// image is Debian's arm64 `busybox-static`) and QEMU's binfmt_misc handlers (arm64 RUN
/// steps). Set up when root; otherwise a missing piece is an error naming the commands.
pub fn ensure_foreign_platforms() -> Result<()> {
    let architectures = Command::new("dpkg")
        .arg("--print-foreign-architectures")
        .output()
        .context("could not run dpkg")?;
    let has_arch = String::from_utf8_lossy(&architectures.stdout)
        .split_whitespace()
        .any(|a| a == FOREIGN_ARCH);
    let has_handler = std::path::Path::new(FOREIGN_HANDLER).exists();
    if has_arch && has_handler {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "the multi-platform tests need dpkg's {FOREIGN_ARCH} architecture and QEMU's \
             binfmt_misc handlers; as root run: dpkg --add-architecture {FOREIGN_ARCH} && \
             apt-get update && mount -t binfmt_misc binfmt_misc {BINFMT_MISC} && \
             update-binfmts --enable"
        );
    }
    if !has_arch {
        println!("adding dpkg architecture {FOREIGN_ARCH}");
        run_status(Command::new("dpkg").args(["--add-architecture", FOREIGN_ARCH]))?;
        run_status(Command::new("apt-get").args(["update", "-qq"]))?;
    }
    if !has_handler {
        println!("registering QEMU's binfmt_misc handlers");
        if !std::path::Path::new(BINFMT_MISC).join("register").exists() {
            run_status(Command::new("mount").args([
                "-t",
                "binfmt_misc",
                "binfmt_misc",
                BINFMT_MISC,
            ]))?;
        }
        run_status(Command::new("update-binfmts").arg("--enable"))?;
    }
    Ok(())
}

fn run_status(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("could not run {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed: {status}");
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
