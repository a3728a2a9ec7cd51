//! The mount plan against the recording system calls.
use super::*;
use crate::idmap::IdMapping;
use crate::spec::{Mount, Process, SecretBytes, SecurityMode};
use crate::syscalls::recording::RecordingSyscalls;

fn spec(mounts: Vec<StepMount>, network: NetworkMode) -> SandboxSpec {
    let mut b = SandboxSpec::builder(
        Rootfs::Mounted {
            root: "/r".into(),
            mounts: vec![Mount::overlay(
                &["/l1".into(), "/l0".into()],
                Path::new("/u"),
                Path::new("/w"),
                Path::new("/r"),
            )],
        },
        Process::new(["true"]),
        IdMapping::single_id(1000, 1000),
    )
    .hostname("box")
    .network(network);
    for m in mounts {
        b = b.mount(m);
    }
    b.build()
}

fn run(sys: &RecordingSyscalls, spec: &SandboxSpec) -> Result<MountStubs> {
    RootSetup {
        sys,
        spec,
        staging: Path::new("/st"),
        tty_gid_mapped: false,
        idmapped: &[],
    }
    .run()
}

#[test]
fn plans_rootfs_special_filesystems_and_pivot_in_order() {
    let sys = RecordingSyscalls::with_dirs(&["/r", "/r/proc", "/r/dev", "/r/sys", "/r/etc"]);
    run(&sys, &spec(vec![], NetworkMode::Host)).expect("setup");
    let calls = sys.calls();
    let expected_prefix = [
        "mount - / - [MS_REC | MS_PRIVATE] ",
        "mount overlay /r overlay [] lowerdir=/l1:/l0,upperdir=/u,workdir=/w,userxattr",
        "mount /r /r - [MS_BIND | MS_REC] ",
        "mount tmpfs /st tmpfs [MS_NOSUID | MS_NODEV] mode=755",
        "mount proc /r/proc proc [MS_NOSUID | MS_NODEV | MS_NOEXEC] ",
        "mount tmpfs /r/dev tmpfs [MS_NOSUID | MS_NODEV | MS_STRICTATIME] mode=755,size=65536k",
        "create /r/dev/null 666",
        "mount /dev/null /r/dev/null - [MS_BIND] ",
    ];
    assert_eq!(&calls[..expected_prefix.len()], expected_prefix);
    assert!(calls.contains(&"mount devpts /r/dev/pts devpts [MS_NOSUID | MS_NOEXEC] newinstance,ptmxmode=0666,mode=0620".to_string()));
    assert!(calls.contains(&"symlink /r/dev/ptmx -> pts/ptmx".to_string()));
    // Host network: sysfs is the host's, bound with its submounts, then read-only all the way
    // down.
    let sys_bind = "mount /sys /r/sys - [MS_BIND | MS_REC] ".to_string();
    let sys_ro = "read-only -R /r/sys".to_string();
    let position = |line: &String| calls.iter().position(|c| c == line);
    assert!(
        position(&sys_bind) < position(&sys_ro) && position(&sys_bind).is_some(),
        "{calls:#?}"
    );
    assert!(!calls.contains(&"loopback_up".to_string()));
    assert_eq!(calls[calls.len() - 2], "sethostname box");
    assert_eq!(calls.last().map(String::as_str), Some("pivot_root /r"));
}

#[test]
fn etc_files_get_stubs_only_when_absent_and_stubs_are_cleaned_newest_first() {
    let sys = RecordingSyscalls::with_dirs(&["/r", "/r/proc", "/r/dev", "/r/sys", "/r/etc"]);
    sys.add("/r/etc/hosts", FileKind::File, None);
    let stubs = run(&sys, &spec(vec![], NetworkMode::None)).expect("setup");
    let calls = sys.calls();
    assert!(calls.contains(&"create /r/etc/hostname 644".to_string()));
    assert!(calls.contains(&"create /r/etc/resolv.conf 644".to_string()));
    assert!(
        !calls.iter().any(|c| c == "create /r/etc/hosts 644"),
        "existing file reused"
    );
    assert!(calls.contains(&"mount /st/hosts /r/etc/hosts - [MS_BIND] ".to_string()));
    assert!(calls.contains(&"loopback_up".to_string()));
    assert!(calls
        .iter()
        .any(|c| c.starts_with("mount sysfs /r/sys sysfs")));

    let sys2 = RecordingSyscalls::default();
    stubs.clean(&sys2);
    let calls = sys2.calls();
    let (umounts, rest) = calls.split_at(
        calls
            .iter()
            .position(|c| c.starts_with("remove"))
            .expect("removes"),
    );
    assert_eq!(
        umounts,
        [
            "umount /etc/resolv.conf",
            "umount /etc/hosts",
            "umount /etc/hostname",
            "umount /sys",
            "umount /dev",
            "umount /proc"
        ]
    );
    assert_eq!(
        rest,
        [
            "remove /etc/resolv.conf",
            "restore_times /etc",
            "remove /etc/hostname",
            "restore_times /etc"
        ]
    );
}

#[test]
fn step_mounts_create_nested_stubs_and_bind_with_their_mode() {
    let sys = RecordingSyscalls::with_dirs(&[
        "/r", "/r/proc", "/r/dev", "/r/sys", "/r/etc", "/src", "/cache",
    ]);
    sys.add("/sock", FileKind::File, None);
    let mounts = vec![
        StepMount::Secret {
            data: SecretBytes::new("pw"),
            target: "/run/secrets/token".into(),
            mode: 0o400,
            uid: 0,
            gid: 0,
        },
        StepMount::Bind {
            source: "/src".into(),
            target: "/src".into(),
            mode: BindMode::ReadOnly,
        },
        StepMount::Bind {
            source: "/src".into(),
            target: "/work".into(),
            mode: BindMode::ReadWriteDiscard,
        },
        StepMount::Cache {
            source: "/cache".into(),
            target: "/root/.cache".into(),
        },
        StepMount::Tmpfs {
            target: "/tmp".into(),
            size: Some(1 << 20),
        },
        StepMount::SshAgent {
            socket: "/sock".into(),
            target: "/run/ssh.sock".into(),
        },
    ];
    let stubs = run(&sys, &spec(mounts, NetworkMode::Host)).expect("setup");
    let calls = sys.calls();
    for want in [
        "mkdir /r/run 755",
        "mkdir /r/run/secrets 755",
        "create /r/run/secrets/token 644",
        "write /st/secret-0 2B 600",
        "chmod /st/secret-0 400",
        "mount /st/secret-0 /r/run/secrets/token - [MS_BIND] ",
        "mount - /r/run/secrets/token - [MS_RDONLY | MS_NOSUID | MS_NODEV | MS_REMOUNT | MS_BIND] ",
        "mount /src /r/src - [MS_BIND | MS_REC] ",
        "mount - /r/src - [MS_RDONLY | MS_NOSUID | MS_NODEV | MS_REMOUNT | MS_BIND] ",
        "mount overlay /r/work overlay [] lowerdir=/src,upperdir=/st/discard-2-upper,workdir=/st/discard-2-work,userxattr",
        "mount /cache /r/root/.cache - [MS_BIND | MS_REC] ",
        "mount tmpfs /r/tmp tmpfs [MS_NOSUID | MS_NODEV] size=1048576",
        "create /r/run/ssh.sock 644",
        "mount /sock /r/run/ssh.sock - [MS_BIND] ",
    ] {
        assert!(calls.contains(&want.to_string()), "missing {want:?} in {calls:#?}");
    }
    let sys2 = RecordingSyscalls::default();
    stubs.clean(&sys2);
    let removed: Vec<String> = sys2
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("remove"))
        .collect();
    assert_eq!(
        removed,
        [
            "remove /run/secrets/token",
            "remove /run/secrets",
            "remove /run/ssh.sock",
            "remove /run",
            "remove /root/.cache",
            "remove /root",
            "remove /tmp",
            "remove /work",
            "remove /src",
            "remove /etc/resolv.conf",
            "remove /etc/hosts",
            "remove /etc/hostname"
        ]
    );
}

#[test]
fn symlinks_resolve_inside_the_root() {
    let sys = RecordingSyscalls::with_dirs(&["/r", "/r/etc", "/r/run"]);
    sys.add(
        "/r/etc/resolv.conf",
        FileKind::Symlink,
        Some("/run/resolv.conf"),
    );
    sys.add("/r/escape", FileKind::Symlink, Some("../../../../etc"));
    let spec = spec(vec![], NetworkMode::Host);
    let setup = RootSetup {
        sys: &sys,
        spec: &spec,
        staging: Path::new("/st"),
        tty_gid_mapped: false,
        idmapped: &[],
    };
    assert_eq!(
        setup.resolve(Path::new("/etc/resolv.conf")),
        Path::new("/r/run/resolv.conf")
    );
    assert_eq!(
        setup.resolve(Path::new("/escape/passwd")),
        Path::new("/r/etc/passwd")
    );
    assert_eq!(setup.resolve(Path::new("/../../x")), Path::new("/r/x"));
}

#[test]
fn masked_proc_is_reported_as_such() {
    let sys = RecordingSyscalls {
        fail_mount_fstype: Some("proc"),
        ..RecordingSyscalls::with_dirs(&["/r", "/r/proc"])
    };
    let err = run(&sys, &spec(vec![], NetworkMode::Host)).expect_err("proc refused");
    assert_eq!(err, ChildFailure::ProcMasked { errno: libc::EPERM });
}

#[test]
fn proc_gets_docker_masks_unless_insecure() {
    let dirs = [
        "/r",
        "/r/proc",
        "/r/dev",
        "/r/sys",
        "/r/etc",
        "/r/proc/sys",
        "/r/proc/acpi",
        "/r/sys/firmware",
        "/r/sys/devices/system/cpu",
        "/r/sys/devices/system/cpu/cpu0",
        "/r/sys/devices/system/cpu/cpu0/thermal_throttle",
        "/r/sys/devices/system/cpu/cpufreq",
    ];
    let sys = RecordingSyscalls::with_dirs(&dirs);
    sys.add("/r/proc/kcore", FileKind::File, None);
    run(&sys, &spec(vec![], NetworkMode::Host)).expect("setup");
    let calls = sys.calls();
    for want in [
        "mount /r/proc/sys /r/proc/sys - [MS_BIND | MS_REC] ",
        "read-only -R /r/proc/sys",
        "mount tmpfs /r/proc/acpi tmpfs [MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC] size=0",
        "mount /dev/null /r/proc/kcore - [MS_BIND] ",
        "mount tmpfs /r/sys/firmware tmpfs [MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC] size=0",
        "mount tmpfs /r/sys/devices/system/cpu/cpu0/thermal_throttle tmpfs [MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC] size=0",
        "read-only -R /r/sys",
    ] {
        assert!(
            calls.contains(&want.to_string()),
            "missing {want:?} in {calls:#?}"
        );
    }
    assert!(
        !calls
            .iter()
            .any(|c| c.contains("/r/proc/fs") || c.contains("cpufreq")),
        "absent paths are skipped"
    );

    let sys = RecordingSyscalls::with_dirs(&dirs);
    let insecure = SandboxSpec {
        security: SecurityMode::Insecure,
        ..spec(vec![], NetworkMode::Host)
    };
    run(&sys, &insecure).expect("setup");
    assert!(
        !sys.calls().iter().any(|c| c.contains("/r/proc/")),
        "insecure keeps /proc whole"
    );
}

#[test]
fn secrets_for_unmapped_owners_are_refused_before_writing() {
    let sys = RecordingSyscalls::with_dirs(&["/r", "/r/proc", "/r/dev", "/r/sys", "/r/etc"]);
    let secret = StepMount::Secret {
        data: SecretBytes::new("pw"),
        target: "/run/secrets/s".into(),
        mode: 0o400,
        uid: 1000,
        gid: 1000,
    };
    let err = run(&sys, &spec(vec![secret], NetworkMode::Host)).expect_err("uid 1000 unmapped");
    assert_eq!(
        err,
        ChildFailure::Unmapped {
            uid: 1000,
            gid: 1000
        }
    );
    let calls = sys.calls();
    assert!(!calls.iter().any(|c| c.contains("secret")), "{calls:?}");
    // The stubs made before the failure are gone again, at their host paths.
    assert!(
        calls.contains(&"umount /r/etc/hosts".to_string()),
        "{calls:?}"
    );
    assert!(
        calls.contains(&"remove /r/etc/hostname".to_string()),
        "{calls:?}"
    );
}

#[test]
fn parses_mount_options() {
    let (flags, data) = parse_options(&[
        "ro".into(),
        "nosuid".into(),
        "lowerdir=/a".into(),
        "size=1m".into(),
    ]);
    assert_eq!(flags, MsFlags::MS_RDONLY | MsFlags::MS_NOSUID);
    assert_eq!(data, "lowerdir=/a,size=1m");
}

#[test]
fn resolv_conf_drops_nameservers_without_host_network() {
    let host = "search x\nnameserver 127.0.0.53\n";
    assert_eq!(resolv_conf_from_host(host, NetworkMode::Host), host);
    assert_eq!(resolv_conf_from_host(host, NetworkMode::None), "search x\n");
}
