//! The unprivileged user the rootless tests run as, and its subordinate id ranges.
//!
//! The real `newuidmap` reads the real /etc/subuid, so the ranges are added with `usermod` for
//! the length of a [`TestUserSession`] and removed when it ends, even when the test fails;
//! sessions of all test processes take turns through a lock file.

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use super::INIT_OVERRIDE_ENV;

/// Login of the test user (made with useradd when missing; no home, no shell).
pub const TEST_USER: &str = "imgsbxtest";
/// First subordinate id given to the test user.
pub const RANGE_START: u32 = 300_000;
/// Number of subordinate ids given to the test user.
pub const RANGE_COUNT: u32 = 65_536;

fn run_ok(program: &str, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(status.success(), "{program} {args:?}: {status}");
}

fn ensure_test_user() {
    let exists = Command::new("id")
        .arg(TEST_USER)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !exists {
        run_ok(
            "useradd",
            &[
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                TEST_USER,
            ],
        );
    }
}

/// The test user's current ranges in a subordinate id file, as `start-end` arguments.
fn ranges_of_test_user(path: &str) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let (start, count) = (
                f.get(1)?.parse::<u64>().ok()?,
                f.get(2)?.parse::<u64>().ok()?,
            );
            (f[0] == TEST_USER && count > 0).then(|| format!("{start}-{}", start + count - 1))
        })
        .collect()
}

fn remove_test_user_ranges() {
    for r in ranges_of_test_user("/etc/subuid") {
        run_ok("usermod", &["--del-subuids", &r, TEST_USER]);
    }
    for r in ranges_of_test_user("/etc/subgid") {
        run_ok("usermod", &["--del-subgids", &r, TEST_USER]);
    }
}

/// The test user exists and has (or has not) its ranges until this is dropped. Root only.
pub struct TestUserSession {
    _lock: File,
}

impl TestUserSession {
    /// Waits for other sessions, then sets the test user up.
    pub fn start(with_ranges: bool) -> TestUserSession {
        let lock = File::create("/tmp/img-sandbox-test-user.lock").expect("lock file");
        // SAFETY: flock on an open descriptor; released when the file closes.
        assert_eq!(
            unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) },
            0,
            "flock"
        );
        ensure_test_user();
        remove_test_user_ranges();
        if with_ranges {
            let range = format!("{RANGE_START}-{}", RANGE_START + RANGE_COUNT - 1);
            run_ok(
                "usermod",
                &["--add-subuids", &range, "--add-subgids", &range, TEST_USER],
            );
        }
        TestUserSession { _lock: lock }
    }
}

impl Drop for TestUserSession {
    fn drop(&mut self) {
        remove_test_user_ranges();
    }
}

/// Runs a copy of test binary `exe` (with a copy of the init beside it, named by
/// [`INIT_OVERRIDE_ENV`]) as the test user, optionally under `wrapper`: the build directory may
/// sit where the test user cannot reach (under /root).
pub fn run_copy_as_test_user(exe: &Path, args: &[&str], wrapper: &[&str]) -> Output {
    let bin = tempfile::Builder::new()
        .prefix("img-sandbox-bin-")
        .tempdir()
        .expect("tempdir");
    fs::set_permissions(bin.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let copy = bin.path().join("tests");
    fs::copy(exe, &copy).expect("copy test binary");
    let init = bin.path().join("img-sandbox-init");
    fs::copy(env!("CARGO_BIN_EXE_img-sandbox-init"), &init).expect("copy init");
    Command::new("setpriv")
        .args([
            &format!("--reuid={TEST_USER}"),
            &format!("--regid={TEST_USER}"),
            "--init-groups",
            "--",
        ])
        .args(wrapper)
        .arg(&copy)
        .args(args)
        .env(INIT_OVERRIDE_ENV, &init)
        .env("TMPDIR", "/tmp")
        .env("HOME", "/tmp")
        .output()
        .expect("setpriv")
}
