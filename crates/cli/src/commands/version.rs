//! `img version` and `img --version`.

use std::io::Write;

/// img's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit img was built from, when the build set `IMG_GIT_COMMIT`.
pub fn git_commit() -> &'static str {
    match option_env!("IMG_GIT_COMMIT") {
        Some(commit) if !commit.is_empty() => commit,
        _ => "unknown",
    }
}

/// `os/arch` in the names registries use.
pub fn platform() -> String {
    let p = img_registry::Platform::host();
    match &p.variant {
        Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
        None => format!("{}/{}", p.os, p.architecture),
    }
}

/// The one-line form printed by `img --version`.
pub fn short() -> String {
    format!("img {VERSION}, build {}", git_commit())
}

/// The report printed by `img version`.
pub fn long() -> String {
    format!(
        "img:\n Version:       {VERSION}\n Git commit:    {}\n Rust version:  {}\n OS/Arch:       {}\n",
        git_commit(),
        env!("IMG_RUSTC_VERSION"),
        platform()
    )
}

pub fn run() -> anyhow::Result<()> {
    std::io::stdout().lock().write_all(long().as_bytes())?;
    Ok(())
}
