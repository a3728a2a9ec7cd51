//! `reexec_in_user_namespace`: the program re-executes itself as root of a user namespace with
//! the caller's subordinate ids, where files of any owner can be made and read and steps run.
//!
//! A test binary of its own (`harness = false`) because the program under test must call the
//! function first thing in `main`. Run as root, it re-runs a copy of itself as the test user
//! with subordinate ranges; run as an ordinary user, it checks itself.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use common::test_user::{run_copy_as_test_user, TestUserSession, RANGE_START, TEST_USER};
use common::*;
use img_sandbox::{reexec_in_user_namespace, HostPaths, IdMapping};

const ROLE_ENV: &str = "IMG_SANDBOX_REEXEC_TEST";

fn main() {
    img_sandbox::maybe_run_init();
    if std::env::var_os(ROLE_ENV).is_some() || !is_root() {
        in_the_namespace();
    } else {
        as_root();
    }
    println!("test result: ok. 1 passed; 0 failed");
}

fn as_root() {
    // Root itself stays where it is.
    reexec_in_user_namespace(&HostPaths::default()).expect("root needs no namespace");
    assert_eq!(
        fs::read_to_string("/proc/self/uid_map")
            .expect("uid_map")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["0", "0", "4294967295"]
    );

    let _session = TestUserSession::start(true);
    // `exec env` sets the role for the copy only.
    let exe = std::env::current_exe().expect("current exe");
    let output = run_copy_as_test_user(&exe, &[], &["env", &format!("{ROLE_ENV}=1")]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("namespace checks passed"),
        "as {TEST_USER}:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn in_the_namespace() {
    let outside_uid = nix::unistd::getuid().as_raw();
    let expected = IdMapping::detect(&HostPaths::default()).expect("mapping");
    reexec_in_user_namespace(&HostPaths::default()).expect("re-exec");
    // Only the copy gets here.
    assert_eq!(nix::unistd::getuid().as_raw(), 0);
    let mapping = IdMapping::detect(&HostPaths::default()).expect("mapping inside");
    // Steps get a nested namespace with the ids this one has, numbered as here.
    assert!(mapping.uses_user_namespace());
    let own = fs::read_to_string("/proc/self/uid_map").expect("own uid_map");
    let own: Vec<Vec<u32>> = own
        .lines()
        .map(|l| {
            l.split_whitespace()
                .map(|n| n.parse().expect("number"))
                .collect()
        })
        .collect();
    let expected_own: Vec<Vec<u32>> = expected
        .uid_map()
        .iter()
        .map(|r| vec![r.container_id, r.host_id, r.count])
        .collect();
    assert_eq!(own, expected_own, "outside uid {outside_uid}");
    for r in mapping.uid_map() {
        assert_eq!(r.container_id, r.host_id);
    }
    let with_ranges = mapping.host_uid(1000).is_some();
    if with_ranges && outside_uid != 0 {
        assert_eq!(expected.host_uid(1000), Some(RANGE_START + 999));
        assert_eq!(mapping.host_uid(1000), Some(1000));
    }

    let (_tmp, root) = temp_rootfs();
    // A step in the namespace needs no namespace of its own and sees the same ids.
    assert_eq!(stdout_of(&sh(&root, "id -u").build()), "0\n");
    if with_ranges {
        // What a layer diff needs: a file of another owner, mode 0600, readable here.
        stdout_of(
            &sh(
                &root,
                "echo private > /key && chown 1000:1000 /key && chmod 600 /key",
            )
            .build(),
        );
        let meta = fs::metadata(root.join("key")).expect("key");
        assert_eq!((meta.uid(), meta.mode() & 0o777), (1000, 0o600));
        assert_eq!(
            fs::read_to_string(root.join("key")).expect("readable as namespace root"),
            "private\n"
        );
        // What layer application needs: chown to any mapped id.
        let made = root.join("made");
        fs::write(&made, "x").expect("write");
        std::os::unix::fs::chown(&made, Some(1000), Some(1000)).expect("chown in namespace");
        fs::set_permissions(&made, fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    println!("namespace checks passed");
}
