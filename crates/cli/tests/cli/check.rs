//! `img build --check` / `--call=check`: the build checks without a build, and
//! `# check=error=true` failing a real build.

use crate::{assert_fails, stderr, Img};

/// An Img whose working directory holds `ctx/` with `dockerfile` and a `.dockerignore`.
fn img_with(dockerfile: &str) -> Img {
    let img = Img::new();
    let ctx = img.dir().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    std::fs::write(ctx.join(".dockerignore"), "*.log\n").unwrap();
    img
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn check_prints_each_finding_builds_nothing_and_exits_1() {
    let img = img_with("FROM scratch as build\nMAINTAINER me\nCOPY app.log /x\n");
    let out = img.run(&["build", "--check", "ctx"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    for expected in [
        "Check complete, 3 warnings have been found!",
        "WARNING: FromAsCasing - The 'as' keyword should match the case of the 'from' keyword",
        "Dockerfile:1: 'as' and 'FROM' keywords' casing do not match",
        "WARNING: MaintainerDeprecated - ",
        "Dockerfile:2: Maintainer instruction is deprecated in favor of using label",
        "Dockerfile:3: Attempting to Copy file \"app.log\" that is excluded by .dockerignore",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
    assert!(!text.contains("http"), "links in:\n{text}");
    // Nothing was built: no image, and nothing stored at all.
    assert!(img.store().images().list().unwrap().is_empty());
    let usage = img.ok(&["du"]);
    let total = usage
        .lines()
        .find(|l| l.starts_with("Total:"))
        .unwrap_or("");
    assert!(total.trim_end().ends_with(" 0B"), "{usage}");
}

#[test]
fn call_check_is_the_same_and_a_clean_dockerfile_passes() {
    let img = img_with("FROM scratch\nCOPY Dockerfile /Dockerfile\nCMD [\"true\"]\n");
    let text = img.ok(&["build", "--call=check", "ctx"]);
    assert_eq!(text, "Check complete, no warnings found.\n");
    let img = img_with("FROM scratch\nMAINTAINER me\nCMD run\n");
    let out = img.run(&["build", "--call", "check", "ctx"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout(&out).contains("Check complete, 2 warnings have been found!"));
}

#[test]
fn skipped_rules_are_not_reported() {
    let img = img_with("FROM scratch\nMAINTAINER me\n");
    let text = img.ok(&[
        "build",
        "--check",
        "--build-arg",
        "BUILDKIT_DOCKERFILE_CHECK=skip=MaintainerDeprecated",
        "ctx",
    ]);
    assert_eq!(text, "Check complete, no warnings found.\n");
}

#[test]
fn a_planning_error_ends_the_check_with_the_findings_so_far() {
    let img =
        img_with("FROM scratch\nMAINTAINER me\nCOPY --from=later /a /b\nFROM scratch AS later\n");
    let out = assert_fails(
        img.run(&["build", "--check", "ctx"]),
        "cannot copy from stage \"later\"",
    );
    let text = stdout(&out);
    assert!(
        text.contains("Dockerfile:2: Maintainer instruction is deprecated"),
        "{text}"
    );
    assert!(!text.contains("Check complete"), "{text}");
}

#[test]
fn check_error_true_fails_a_build_before_it_runs() {
    let img = img_with("# check=error=true\nFROM scratch\nMAINTAINER me\n");
    let dest = img.dir().join("out.tar");
    let output = format!("type=tar,dest={}", dest.display());
    img.fails(
        &["build", "-o", &output, "ctx"],
        "lint violation found for rules: MaintainerDeprecated",
    );
    assert!(!dest.exists());
}
