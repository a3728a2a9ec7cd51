//! Crash safety of the state directory: `img` killed with SIGKILL at any moment of a build
//! leaves nothing that a later build would take for a good result.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::assert_success;
use crate::build::Build;

const DOCKERFILE: &str = "FROM busybox
COPY data /data
RUN cat /data/* > /all && for i in 1 2 3 4 5 6; do cp /all /all.$i; done
COPY gen.txt /gen.txt
RUN wc -c /all /gen.txt > /sizes
";

/// The same context in any build directory; `generation` changes one file, so each build has
/// steps to run rather than only cache hits.
fn context(b: &Build, generation: &str) {
    b.write("Dockerfile", DOCKERFILE);
    for i in 0..40 {
        b.write(&format!("data/f{i:02}"), &format!("{i}\n").repeat(2000));
    }
    b.write("gen.txt", generation);
}

/// `img build -q` with a fixed `SOURCE_DATE_EPOCH`: the image digest.
fn reproducible_digest(b: &Build) -> String {
    let args = ["-q", "-t", "crash"];
    let out = b.run_env(&args, &[("SOURCE_DATE_EPOCH", "1700000000")]);
    assert_success(&out, &args);
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A number in `0..bound` from the standard library's per-process random keys.
fn random_below(bound: u64, salt: u64) -> u64 {
    RandomState::new().hash_one(salt) % bound.max(1)
}

#[test]
fn a_build_killed_at_any_moment_leaves_a_state_that_builds_the_same_image() {
    // The reference: a build from a fresh state directory, timed to choose when to kill.
    let fresh = Build::new();
    context(&fresh, "final\n");
    let started = Instant::now();
    let expected = reproducible_digest(&fresh);
    let full = started.elapsed();

    let b = Build::new();
    for round in 0..10u64 {
        context(&b, &format!("generation {round}\n"));
        let mut cmd = b.img.command();
        cmd.args(["--progress", "plain", "build", "-t", "crash", "ctx"])
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so the kill reaches every process of the build.
            .process_group(0);
        let mut child = cmd.spawn().expect("img starts");
        let pid = child.id();
        // Anywhere from the start to a little past a whole build (some rounds finish).
        let delay = Duration::from_millis(random_below(full.as_millis() as u64 * 5 / 4, round));
        std::thread::sleep(delay);
        // The group is ours: img and what it started; gone already if the build finished.
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stderr(Stdio::null())
            .status();
        let status = child.wait().expect("img is waited for");
        eprintln!("round {round}: killed after {delay:?} ({status})");
    }

    // Whatever the kills left, the next build succeeds and makes exactly the reference image.
    context(&b, "final\n");
    assert_eq!(reproducible_digest(&b), expected);
    // And its cache is sound: built again, the same image.
    assert_eq!(reproducible_digest(&b), expected);
}
