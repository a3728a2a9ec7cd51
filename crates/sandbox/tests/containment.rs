//! A step cannot reach the host: seccomp, read-only /sys and /proc/sys, masks, no device
//! files, and for real root a user namespace of the step's own mapped to subordinate ids.
//! `unprivileged.rs` runs the same probes as an ordinary user.

mod common;

use common::containment::{assert_contained, assert_setuid_works};
use common::*;
use img_sandbox::{DEFAULT_ROOT_RANGE_START, ROOT_RANGE_COUNT};

#[test]
fn a_step_is_contained_and_setuid_programs_work() {
    let (_tmp, root) = temp_rootfs();
    let uid_map = assert_contained(&root);
    if is_root() {
        // Not the host's root: container 0 is a subordinate id of root's (this host's
        // /etc/subuid has no entry for root, or the test names it).
        let expected = mapping().uid_map()[0];
        assert_eq!(
            uid_map,
            [0, u64::from(expected.host_id), u64::from(expected.count)]
        );
        assert_ne!(expected.host_id, 0);
        if std::fs::read_to_string("/etc/subuid")
            .unwrap_or_default()
            .lines()
            .all(|l| !l.starts_with("root:") && !l.starts_with("0:"))
        {
            assert!(expected.host_id >= DEFAULT_ROOT_RANGE_START);
            assert_eq!(expected.count, ROOT_RANGE_COUNT);
        }
    }
    if mapping().host_uid(1000).is_some() {
        assert_setuid_works(&root);
    }
}

#[test]
fn files_a_real_root_step_makes_keep_their_ids_on_disk() {
    use std::os::unix::fs::MetadataExt;
    let (_tmp, root) = temp_rootfs();
    let out = stdout_of(
        &sh(
            &root,
            "mkdir /made && touch /made/by-root && touch /made/by-app && chown 1000:1000 /made/by-app \
             && stat -c '%u %g' /etc/passwd /made/by-root /made/by-app",
        )
        .build(),
    );
    if mapping().host_uid(1000).is_none() {
        return; // Only root exists (see unprivileged.rs); chown failed above otherwise.
    }
    assert_eq!(
        out, "0 0\n0 0\n1000 1000\n",
        "image files are the step's root's"
    );
    let owner = |name: &str| {
        let m = std::fs::metadata(root.join("made").join(name)).expect("stat");
        (m.uid(), m.gid())
    };
    assert_eq!(
        owner("by-app"),
        (
            mapping().host_uid(1000).unwrap(),
            mapping().host_gid(1000).unwrap()
        )
    );
    assert_eq!(
        owner("by-root"),
        (
            mapping().host_uid(0).unwrap(),
            mapping().host_gid(0).unwrap()
        )
    );
    stdout_of(&sh(&root, "rm -r /made").build());
}

/// Where the kernel cannot idmap the state directory's filesystem (overlayfs, as a container's
/// root filesystem is), real root's steps still run, with the host's ids in a user namespace
/// of their own, and the caller is told once. The outer test mounts an overlay in a private
/// mount namespace and re-runs the inner one there.
#[test]
fn real_root_on_a_filesystem_without_idmapped_mounts_is_told() {
    if !is_root() {
        eprintln!("skipped: only real root's steps use idmapped mounts");
        return;
    }
    let (tmp, root) = temp_rootfs();
    let exe = std::env::current_exe().expect("current exe");
    let script = format!(
        "mkdir -p {d}/upper {d}/work {d}/merged && mount -t overlay overlay \
         -o lowerdir={root},upperdir={d}/upper,workdir={d}/work {d}/merged && \
         IMG_TEST_OVERLAY_ROOT={d}/merged exec {exe} --exact inner_overlay_root --ignored \
         --nocapture --test-threads=1",
        d = tmp.path().display(),
        root = root.display(),
        exe = exe.display()
    );
    let output = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .expect("unshare");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
#[ignore = "run by real_root_on_a_filesystem_without_idmapped_mounts_is_told"]
fn inner_overlay_root() {
    let root = std::path::PathBuf::from(std::env::var_os("IMG_TEST_OVERLAY_ROOT").expect("root"));
    let (result, out) = run(&sh(
        &root,
        "cat /proc/self/uid_map; grep Seccomp: /proc/self/status",
    )
    .build());
    assert!(result.expect("ran").success(), "{}", out.stderr);
    let fields: Vec<&str> = out.stdout.split_whitespace().collect();
    assert_eq!(fields, ["0", "0", "4294967295", "Seccomp:", "2"]);
    assert!(
        out.stderr.contains("cannot make an idmapped mount of")
            && out.stderr.contains(&root.display().to_string()),
        "{}",
        out.stderr
    );
    let (_, again) = run(&sh(&root, "true").build());
    assert!(again.stderr.is_empty(), "said twice: {}", again.stderr);
}
