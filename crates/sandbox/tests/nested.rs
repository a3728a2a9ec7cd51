//! uid 0 of a user namespace that is not the host's (a Kubernetes pod with `hostUsers:
//! false`): its uid_map is `0 200000 65536`, and like a container it has no CAP_SYS_ADMIN, so
//! the mount, pid, ipc and uts namespaces of a step can only be made inside a nested user
//! namespace. The outer test (root) makes such a namespace, maps it from outside and drops
//! CAP_SYS_ADMIN from its bounding set, then re-runs the inner test in it.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

use common::containment::assert_contained;
use common::*;
use img_sandbox::{IdRange, SandboxError, SetupError};

const POD_RANGE: u32 = 200_000;
const CAP_SYS_ADMIN: libc::c_ulong = 21;

#[test]
fn root_of_a_pods_user_namespace_nests_one_per_step() {
    if !is_root() {
        eprintln!("skipped: only root can map a pod-like namespace (0 {POD_RANGE} 65536)");
        return;
    }
    let pipe = || {
        let (r, w) = nix::unistd::pipe().expect("pipe");
        (fs::File::from(r), fs::File::from(w))
    };
    let (mut ready_r, ready_w) = pipe();
    let (go_r, mut go_w) = pipe();
    let mut command = Command::new(std::env::current_exe().expect("exe"));
    command.args([
        "--exact",
        "inner_pod_namespace_root",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    let (ready_fd, go_fd) = {
        use std::os::fd::AsRawFd;
        (ready_w.as_raw_fd(), go_r.as_raw_fd())
    };
    // SAFETY: only system calls between fork and exec.
    unsafe {
        command.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWUSER) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let pid = libc::getpid().to_le_bytes();
            libc::write(ready_fd, pid.as_ptr().cast(), 4);
            let mut byte = 0u8;
            libc::read(go_fd, (&mut byte as *mut u8).cast(), 1);
            // Root of the new namespace (the host's root is not mapped in it).
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setresgid(0, 0, 0) != 0
                || libc::setresuid(0, 0, 0) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // As a container's default capabilities: no CAP_SYS_ADMIN after exec.
            if libc::prctl(libc::PR_CAPBSET_DROP, CAP_SYS_ADMIN, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mapper = std::thread::spawn(move || {
        let mut pid = [0u8; 4];
        ready_r.read_exact(&mut pid).expect("child pid");
        let pid = i32::from_le_bytes(pid);
        let map = format!("0 {POD_RANGE} 65536\n");
        fs::write(format!("/proc/{pid}/uid_map"), &map).expect("uid_map");
        fs::write(format!("/proc/{pid}/gid_map"), &map).expect("gid_map");
        go_w.write_all(&[1]).expect("go");
    });
    let output = command.output().expect("run inner test");
    drop((ready_w, go_r));
    mapper.join().expect("mapper");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
#[ignore = "run by root_of_a_pods_user_namespace_nests_one_per_step in a pod-like namespace"]
fn inner_pod_namespace_root() {
    assert_eq!(nix::unistd::getuid().as_raw(), 0);
    let status = fs::read_to_string("/proc/self/status").expect("status");
    let cap_bnd = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:\t"))
        .expect("CapBnd");
    let cap_bnd = u64::from_str_radix(cap_bnd, 16).expect("hex");
    assert_eq!(
        cap_bnd & (1 << CAP_SYS_ADMIN),
        0,
        "CAP_SYS_ADMIN still there"
    );
    // What img did before: no user namespace, so no mount namespace either.
    assert_eq!(
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS),
        Err(nix::errno::Errno::EPERM)
    );

    let mapping = mapping();
    assert!(mapping.uses_user_namespace());
    assert_eq!(
        mapping.uid_map(),
        [IdRange {
            container_id: 0,
            host_id: 0,
            count: 65536
        }]
    );
    let (_tmp, root) = temp_rootfs();
    assert_eq!(stdout_of(&sh(&root, "id -u; id -g").build()), "0\n0\n");
    // Every id the pod has exists in the step, with the same number.
    let out = stdout_of(
        &sh(
            &root,
            "touch /f && chown 1000:1000 /f && stat -c '%u %g' /f",
        )
        .build(),
    );
    assert_eq!(out, "1000 1000\n");
    let meta = fs::metadata(root.join("f")).expect("f");
    assert_eq!((meta.uid(), meta.gid()), (1000, 1000));
    stdout_of(&sh(&root, "rm /f").build());
    assert_contained(&root);
    // A user the pod does not have is refused with a typed error.
    let mut process = img_sandbox::Process::new(["true"]);
    process.user = "70000".into();
    let spec = img_sandbox::SandboxSpec::builder(
        img_sandbox::Rootfs::Directory(root.clone()),
        process,
        mapping,
    )
    .build();
    let (result, _) = run(&spec);
    assert!(
        matches!(
            result,
            Err(SandboxError::Setup(SetupError::Unmapped { uid: 70000, .. }))
        ),
        "{result:?}"
    );
}
