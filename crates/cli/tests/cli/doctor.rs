//! `img doctor`: the host checks, their fixes and exit code, and the cached report builds use.

use std::process::{Output, Stdio};

use serde_json::Value;

use crate::fixtures::store_busybox_for_builds;
use crate::{assert_success, stderr, Img, NOBODY};

/// Every probe's line name for root, in the order the report lists them (`step-ids` is
/// real root's only).
const PROBES: [&str; 9] = [
    "user-namespaces",
    "newuidmap/newgidmap",
    "subordinate-ids",
    "overlayfs-in-userns",
    "proc-mount",
    "step-ids",
    "seccomp",
    "binfmt-misc",
    "state-directory",
];

/// The line of `text` about `probe`, and the line under it.
fn probe_lines<'t>(text: &'t str, probe: &str) -> (&'t str, &'t str) {
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.split_whitespace().nth(1) == Some(probe))
        .unwrap_or_else(|| panic!("no {probe} line in:\n{text}"));
    (lines[at], lines.get(at + 1).copied().unwrap_or(""))
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("utf-8 output")
}

/// As root here every check that builds need passes; binfmt_misc depends on the host, and a
/// problem with it only limits platforms, so the exit code is 0 either way.
#[test]
fn as_root_every_check_builds_need_passes() {
    let img = Img::new();
    let text = img.ok(&["doctor"]);
    for probe in PROBES {
        let (line, next) = probe_lines(&text, probe);
        if probe == "binfmt-misc" {
            if line.starts_with("problem") {
                assert!(next.trim_start().starts_with("fix: "), "{text}");
            }
            continue;
        }
        assert!(line.starts_with("ok "), "{line}\n{text}");
    }
    let (backend, _) = probe_lines(&text, "backend");
    assert!(backend.starts_with("ok "), "{text}");
    assert!(
        text.lines()
            .last()
            .is_some_and(|l| l.starts_with("verdict: builds with RUN steps work here")),
        "{text}"
    );
}

#[test]
fn json_format_prints_the_report() {
    let img = Img::new();
    let report: Value =
        serde_json::from_str(&img.ok(&["doctor", "--format", "json"])).expect("the report is JSON");
    assert_eq!(report["can_run_steps"], true, "{report:#}");
    let probes = report["probes"].as_array().expect("a list of probes");
    assert_eq!(probes.len(), PROBES.len(), "{report:#}");
    for probe in probes {
        let problem = probe["status"] == "Problem";
        assert_eq!(probe["fix"].is_string(), problem, "{probe}");
        assert!(probe["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }
    assert_eq!(report["backend"]["asked"], "auto");
    assert!(report["backend"]["picked"].is_string(), "{report:#}");
    // `-b native` is reported as asked, not probed.
    let native: Value = serde_json::from_str(&img.ok(&["-b", "native", "doctor", "--format=json"]))
        .expect("the report is JSON");
    assert_eq!(native["backend"]["picked"], "native");
}

/// Without subordinate ids an ordinary user's RUN steps still run (only root exists in them),
/// so the doctor names the problem and its fix but exits 0.
#[test]
fn an_ordinary_user_without_subordinate_ids_is_told_how_to_add_them() {
    for file in ["/etc/subuid", "/etc/subgid"] {
        let ranges = std::fs::read_to_string(file).unwrap_or_default();
        assert!(
            !ranges
                .lines()
                .any(|l| l.starts_with("nobody:") || l.starts_with(&format!("{NOBODY}:"))),
            "this test needs nobody without ranges in {file}"
        );
    }
    let img = Img::new();
    let out = img
        .command_as_nobody()
        .arg("doctor")
        .stdin(Stdio::null())
        .output()
        .expect("setpriv runs");
    assert_success(&out, &["doctor as nobody"]);
    let text = stdout(&out);
    let (line, fix) = probe_lines(&text, "subordinate-ids");
    assert!(line.starts_with("problem "), "{text}");
    assert!(
        line.contains("nobody has 0 subordinate uids and 0 subordinate gids"),
        "{line}"
    );
    assert!(
        fix.contains(
            "fix: sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 nobody"
        ),
        "{fix}"
    );
    // The user namespace checks ran as nobody, not as root.
    let (userns, _) = probe_lines(&text, "user-namespaces");
    assert!(userns.contains("allowed (max_user_namespaces"), "{userns}");
    // The backend was asked of img in the user namespace a build runs in.
    let (backend, _) = probe_lines(&text, "backend");
    assert!(backend.starts_with("ok "), "{text}");
    assert!(
        text.contains("verdict: builds with RUN steps work here, with limits (subordinate-ids"),
        "{text}"
    );
}

/// A state directory that cannot be made stops every build: the doctor says how to fix it
/// and exits 1.
#[test]
fn an_unusable_state_directory_fails_the_check() {
    let img = Img::new();
    let blocker = img.dir().join("a-file");
    std::fs::write(&blocker, "not a directory").unwrap();
    let state = blocker.join("state");
    let out = img
        .command()
        .env("IMG_STATE", &state)
        .arg("doctor")
        .stdin(Stdio::null())
        .output()
        .expect("img runs");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    let (line, fix) = probe_lines(&text, "state-directory");
    assert!(line.starts_with("problem "), "{text}");
    assert!(
        fix.contains(&format!("fix: mkdir -p {}", state.display())),
        "{fix}"
    );
    assert!(
        text.contains("verdict: builds with RUN steps cannot work here (state-directory)"),
        "{text}"
    );
    // Nothing else went to standard error: the verdict is the message.
    assert_eq!(stderr(&out), "");
}

/// A build checks the host first, from `<state>/doctor.json` while the host is unchanged.
#[test]
fn builds_probe_the_host_once_and_reuse_the_report() {
    let img = Img::new();
    store_busybox_for_builds(&img.store(), "docker.io/library/busybox:latest");
    std::fs::write(img.dir().join("Dockerfile"), "FROM busybox\nRUN true\n").unwrap();
    let build = |tag: &str| {
        let out = img.run(&["-q", "build", "--no-cache", "-t", tag, "."]);
        assert_success(&out, &["build", tag]);
    };
    build("first");
    let cache = img.state().join("doctor.json");
    let report: Value =
        serde_json::from_slice(&std::fs::read(&cache).expect("the build cached the report"))
            .expect("JSON");
    assert_eq!(report["report"]["can_run_steps"], true, "{report:#}");
    let written = std::fs::metadata(&cache).unwrap().modified().unwrap();
    build("second");
    assert_eq!(
        std::fs::metadata(&cache).unwrap().modified().unwrap(),
        written,
        "the second build probed again"
    );
}
