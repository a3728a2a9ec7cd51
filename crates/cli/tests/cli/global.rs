//! Global flags: version, backend, progress, state directory.

use crate::{assert_stderr_contains, Img};

#[test]
fn version_flag_and_command() {
    let img = Img::new();
    let short = img.ok(&["--version"]);
    assert!(
        short.starts_with(&format!("img {}, build ", env!("CARGO_PKG_VERSION"))),
        "{short}"
    );
    let long = img.ok(&["version"]);
    for field in [
        "Version:",
        "Git commit:",
        "Rust version:  rustc ",
        "OS/Arch:       linux/",
    ] {
        assert!(long.contains(field), "{field} in {long}");
    }
}

#[test]
fn an_unknown_backend_is_an_error() {
    let img = Img::new();
    img.fails(
        &["--backend", "fuse-overlayfs", "version"],
        "unknown backend \"fuse-overlayfs\": use auto, overlayfs or native",
    );
    img.ok(&["-b", "native", "version"]);
}

#[test]
fn an_unknown_progress_mode_is_an_error() {
    let img = Img::new();
    let output = img.run(&["--progress", "fancy", "version"]);
    // clap's usage errors exit with 2.
    assert_eq!(output.status.code(), Some(2));
    assert_stderr_contains(&output, "invalid value 'fancy' for '--progress <PROGRESS>'");
}

#[test]
fn an_insecure_registry_with_a_scheme_is_an_error() {
    let img = Img::new();
    img.fails(
        &["--insecure-registry", "http://reg.lan", "version"],
        "invalid --insecure-registry \"http://reg.lan\"",
    );
}
