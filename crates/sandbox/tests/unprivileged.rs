//! The rootless tier: steps run by an ordinary user, with and without subordinate id ranges.
//!
//! Run as root (CI), each outer test makes sure the user `imgsbxtest` exists, gives it a
//! /etc/subuid and /etc/subgid range (or makes sure it has none) for the duration of the test
//! only, and re-runs this test binary as that user with `setpriv`, selecting one of the
//! `#[ignore]`d inner tests below. The real `newuidmap` reads the real /etc/subuid, so the files
//! are edited with `usermod` and restored by a guard even when the test fails. Run as an ordinary
//! user, the outer tests run the inner ones directly.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

use common::containment::{assert_contained, assert_setuid_works};
use common::test_user::*;
use common::*;
use img_sandbox::{
    IdMapping, NetworkMode, Process, Rootfs, SandboxError, SandboxSpec, SecretBytes, SetupError,
    StepMount,
};

/// `unshare(1)` arguments that put the inner test in a user namespace of its own, as root of it
/// (the model of `buildah unshare`).
const OWN_USER_NAMESPACE: &[&str] = &["unshare", "--user", "--map-root-user", "--mount"];

fn run_inner_as_test_user(inner: &str, with_ranges: bool, wrapper: &[&str]) {
    let _session = TestUserSession::start(with_ranges);
    let args = [
        "--exact",
        inner,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ];
    let output = run_copy_as_test_user(
        &std::env::current_exe().expect("current exe"),
        &args,
        wrapper,
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{inner} as {TEST_USER}:\n{stdout}\n{stderr}"
    );
}

fn run_outer(inner: &str, with_ranges: bool, wrapper: &[&str]) {
    if is_root() {
        run_inner_as_test_user(inner, with_ranges, wrapper);
        return;
    }
    // Already unprivileged: run the inner test that matches this user's files.
    let has_ranges = mapping().host_uid(1).is_some();
    if has_ranges == with_ranges || !wrapper.is_empty() {
        let exe = std::env::current_exe().expect("current exe");
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        let status = command
            .args(["--exact", inner, "--ignored", "--test-threads=1"])
            .status()
            .expect("rerun");
        assert!(status.success());
    }
}

#[test]
fn unprivileged_user_with_subordinate_ranges() {
    run_outer("inner_with_subordinate_ranges", true, &[]);
}

#[test]
fn unprivileged_user_without_subordinate_ranges() {
    run_outer("inner_without_subordinate_ranges", false, &[]);
}

#[test]
fn unprivileged_user_as_root_of_its_own_user_namespace() {
    run_outer("inner_as_namespace_root", false, OWN_USER_NAMESPACE);
}

/// As in a pod with `allowPrivilegeEscalation: false`: no_new_privs keeps the setuid
/// newuidmap from working.
#[test]
fn unprivileged_user_whose_newuidmap_is_refused() {
    run_outer(
        "inner_with_refused_newuidmap",
        true,
        &["setpriv", "--no-new-privs", "--"],
    );
}

fn common_rootless_checks(root: &std::path::Path) {
    assert_eq!(stdout_of(&sh(root, "id -u; id -g").build()), "0\n0\n");
    let out = stdout_of(
        &sh(root, "cat /proc/net/dev")
            .network(NetworkMode::None)
            .build(),
    );
    let interfaces: Vec<&str> = out
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(interfaces, ["lo"]);
    let (result, out) = run(&sh(root, "cat /etc/shadow 2>&1; ls /root /tmp").build());
    assert!(result.expect("ran").success(), "{}", out.stderr);
    assert!(
        out.stdout.starts_with("cat: can't open '/etc/shadow'"),
        "host files visible: {}",
        out.stdout
    );
    let spec = sh(root, "cat /run/secrets/s")
        .mount(StepMount::Secret {
            data: SecretBytes::new("pw"),
            target: "/run/secrets/s".into(),
            mode: 0o400,
            uid: 0,
            gid: 0,
        })
        .build();
    assert_eq!(stdout_of(&spec), "pw");
    assert!(!root.join("run").exists(), "secret mount point left behind");
    assert!(!root.join("etc/hosts").exists(), "hosts stub left behind");
    let uid_map = assert_contained(root);
    assert_ne!(uid_map, [0, 0, u64::from(u32::MAX)]);
}

#[test]
#[ignore = "run by unprivileged_user_with_subordinate_ranges as the test user"]
fn inner_with_subordinate_ranges() {
    let mapping = mapping();
    assert!(mapping.uses_user_namespace());
    assert!(mapping.limitation().is_none());
    let expected_host_uid = mapping.host_uid(1000).expect("uid 1000 mapped");
    let (tmp, root) = temp_rootfs();
    common_rootless_checks(&root);
    assert_setuid_works(&root);
    // chown inside lands on the subordinate id outside.
    assert_eq!(
        stdout_of(&sh(&root, "touch /f; chown 1000:1000 /f; stat -c %u /f").build()),
        "1000\n"
    );
    let meta = fs::metadata(root.join("f")).expect("f");
    assert_eq!(
        (meta.uid(), meta.gid()),
        (expected_host_uid, mapping.host_gid(1000).expect("gid"))
    );
    stdout_of(&sh(&root, "rm /f").build());
    // USER app resolves through the image's passwd and runs as a mapped id.
    let mut process = Process::new(["id", "-u"]);
    process.user = "app".into();
    process.env = vec!["PATH=/bin".into()];
    let spec =
        SandboxSpec::builder(Rootfs::Directory(root.clone()), process, mapping.clone()).build();
    assert_eq!(stdout_of(&spec), "1000\n");
    // overlayfs inside the user namespace, as the snapshotter will use it.
    let (upper, work, merged) = (
        tmp.path().join("u"),
        tmp.path().join("w"),
        tmp.path().join("m"),
    );
    for d in [&upper, &work, &merged] {
        fs::create_dir(d).expect("mkdir");
    }
    let rootfs = Rootfs::Mounted {
        root: merged.clone(),
        mounts: vec![img_sandbox::Mount::overlay(
            std::slice::from_ref(&root),
            &upper,
            &work,
            &merged,
        )],
    };
    let script = "echo layered > /new && rm /etc/group && rm -r /home && mkdir -p /home/x";
    let mut process = Process::new(["sh", "-c", script]);
    process.env = vec!["PATH=/bin".into()];
    stdout_of(&SandboxSpec::builder(rootfs, process, mapping).build());
    // What a layer differ finds: a whiteout, and an opaque directory marked in user xattrs.
    assert!(
        is_whiteout(&upper.join("etc/group")),
        "no whiteout for /etc/group"
    );
    assert_eq!(
        xattr(&upper.join("home"), "user.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(
        fs::read_to_string(upper.join("new")).expect("upper"),
        "layered\n"
    );
    assert!(root.join("etc/group").exists());
    // overlayfs leaves its work directory mode 000; let the temporary directory go.
    fs::set_permissions(work.join("work"), fs::Permissions::from_mode(0o700)).expect("chmod work");
}

#[test]
#[ignore = "run by unprivileged_user_without_subordinate_ranges as the test user"]
fn inner_without_subordinate_ranges() {
    let mapping = mapping();
    assert!(mapping.uses_user_namespace());
    assert_eq!(mapping.host_uid(1), None);
    let uid = nix::unistd::getuid().as_raw();
    assert_eq!(
        mapping,
        IdMapping::single_id(uid, nix::unistd::getgid().as_raw())
    );
    let limitation = mapping.limitation().expect("limited").to_string();
    assert!(
        limitation.contains("usermod --add-subuids") && limitation.contains(TEST_USER),
        "{limitation}"
    );
    let (_tmp, root) = temp_rootfs();
    common_rootless_checks(&root);
    let (result, out) = run(&sh(&root, "touch /f; chown 1000 /f").build());
    assert_ne!(result.expect("ran").code, Some(0));
    assert!(out.stderr.contains("Invalid argument"), "{}", out.stderr);
    let mut process = Process::new(["id", "-u"]);
    process.user = "app".into();
    let (result, _) =
        run(&SandboxSpec::builder(Rootfs::Directory(root.clone()), process, mapping).build());
    assert!(
        matches!(
            result,
            Err(SandboxError::Setup(SetupError::Unmapped {
                uid: 1000,
                gid: 1000
            }))
        ),
        "{result:?}"
    );
}

#[test]
#[ignore = "run by unprivileged_user_as_root_of_its_own_user_namespace"]
fn inner_as_namespace_root() {
    // uid 0 of a user namespace: a nested one with the same ids, maps written directly.
    let mapping = mapping();
    assert!(mapping.uses_user_namespace());
    assert_eq!(
        mapping.uid_map(),
        [img_sandbox::IdRange {
            container_id: 0,
            host_id: 0,
            count: 1
        }]
    );
    assert!(mapping.limitation().is_some());
    let (_tmp, root) = temp_rootfs();
    common_rootless_checks(&root);
    // Only one id exists in this namespace (unshare --map-root-user).
    let (result, out) = run(&sh(&root, "touch /f; chown 1000 /f").build());
    assert_ne!(result.expect("ran").code, Some(0));
    assert!(out.stderr.contains("Invalid argument"), "{}", out.stderr);
}

#[test]
#[ignore = "run by unprivileged_user_whose_newuidmap_is_refused with no_new_privs"]
fn inner_with_refused_newuidmap() {
    // The ranges are there, the helpers too, but the kernel refuses them their privileges.
    let mapping = mapping();
    assert!(mapping.host_uid(1000).is_some(), "{mapping:?}");
    let (_tmp, root) = temp_rootfs();
    let (result, out) = run(&sh(&root, "id -u; touch /f; chown 1000 /f || echo refused").build());
    assert!(result.expect("ran").success(), "{}", out.stderr);
    assert_eq!(out.stdout, "0\nrefused\n");
    assert!(
        out.stderr.contains("img: warning: newuidmap was refused")
            && out.stderr.contains("Operation not permitted"),
        "{}",
        out.stderr
    );
    // Said once per process.
    let (_, again) = run(&sh(&root, "true").build());
    assert!(!again.stderr.contains("warning"), "{}", again.stderr);
}
