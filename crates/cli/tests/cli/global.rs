//! Global flags: version, backend, progress, state directory.

use crate::{stderr, Img};

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
    let output = img.run(&["--backend", "fuse-overlayfs", "version"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output)
            .contains("unknown backend \"fuse-overlayfs\": use auto, overlayfs or native"),
        "{}",
        stderr(&output)
    );
    img.ok(&["-b", "native", "version"]);
}

#[test]
fn an_unknown_progress_mode_is_an_error() {
    let img = Img::new();
    let output = img.run(&["--progress", "fancy", "version"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("fancy"), "{}", stderr(&output));
}

#[test]
fn an_insecure_registry_with_a_scheme_is_an_error() {
    let img = Img::new();
    let output = img.run(&["--insecure-registry", "http://reg.lan", "version"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("invalid --insecure-registry \"http://reg.lan\""),
        "{}",
        stderr(&output)
    );
}
