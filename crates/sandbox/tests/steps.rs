//! Real steps in real namespaces, as whoever runs the tests (root in CI; the unprivileged tier
//! in `unprivileged.rs` re-runs some of these as a user made for the purpose).

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use img_sandbox::{
    BindMode, CacheMountLock, CacheSharing, CancelToken, LineSink, Mount, NetworkMode, OutputChunk,
    Process, Rootfs, SandboxError, SandboxSpec, SecretBytes, SecurityMode, SetupError, StepMount,
    Stream,
};

#[test]
fn root_inside_and_exit_codes_propagate() {
    let (_tmp, root) = temp_rootfs();
    let (result, out) = run(&sh(&root, "id -u; id -g; exit 3").build());
    let exit = result.expect("ran");
    assert_eq!(exit.code, Some(3));
    assert!(!exit.success());
    assert_eq!(out.stdout, "0\n0\n");
    let (result, _) = run(&sh(&root, "kill -KILL $$").build());
    let exit = result.expect("ran");
    assert_eq!((exit.code, exit.signal), (None, Some(9)));
    assert_eq!(exit.code_or_signal(), 137);
}

#[test]
fn stdout_and_stderr_are_streamed_while_the_step_runs() {
    let (_tmp, root) = temp_rootfs();
    let spec = sh(&root, "echo out; echo err >&2; sleep 0.5; echo late").build();
    let (tx, rx) = mpsc::channel::<OutputChunk>();
    let mut sink = LineSink::new(tx);
    let started = Instant::now();
    let reader = thread::spawn(move || {
        rx.iter()
            .map(|c| {
                (
                    started.elapsed(),
                    c.stream,
                    String::from_utf8_lossy(&c.data).into_owned(),
                )
            })
            .collect::<Vec<_>>()
    });
    let exit = sandbox()
        .run(&spec, &mut sink, &CancelToken::new())
        .expect("ran");
    let total = started.elapsed();
    drop(sink);
    let chunks = reader.join().expect("reader");
    assert!(exit.success());
    let lines: Vec<(Stream, &str)> = chunks.iter().map(|(_, s, t)| (*s, t.as_str())).collect();
    assert!(lines.contains(&(Stream::Stdout, "out\n")), "{lines:?}");
    assert!(lines.contains(&(Stream::Stderr, "err\n")), "{lines:?}");
    assert_eq!(lines.last(), Some(&(Stream::Stdout, "late\n")));
    let first = chunks.iter().find(|(_, _, t)| t == "out\n").expect("out").0;
    assert!(
        first + Duration::from_millis(400) < total,
        "first line at {first:?} of {total:?}: not streamed"
    );
}

#[test]
fn a_step_sees_only_its_root_and_mounts() {
    let (tmp, root) = temp_rootfs();
    let outside = tmp.path().join("host-secret.txt");
    fs::write(&outside, "host data").expect("write");
    let script = format!(
        "ls /; cat {0} && echo LEAK; echo x > {0}.new; echo mine > /written; cat /proc/1/cmdline | tr '\\0' ' '; echo; echo $$",
        outside.display()
    );
    let out = stdout_of(&sh(&root, &script).build());
    let mut listing: Vec<&str> = out.lines().take_while(|l| !l.contains(' ')).collect();
    listing.sort();
    assert!(!out.contains("LEAK"), "{out}");
    assert!(
        !outside.with_extension("txt.new").exists(),
        "wrote outside the root"
    );
    assert_eq!(
        fs::read_to_string(root.join("written")).expect("written in root"),
        "mine\n"
    );
    assert!(
        listing.contains(&"bin") && listing.contains(&"proc") && !listing.contains(&"rootfs"),
        "{listing:?}"
    );
    // A fresh procfs of a fresh pid namespace: the init is pid 1, the shell pid 2.
    assert!(out.contains("img-sandbox-init"), "{out}");
    assert_eq!(out.lines().last(), Some("2"));
}

#[test]
fn network_none_has_only_loopback_and_it_is_up() {
    let (_tmp, root) = temp_rootfs();
    let interfaces = |network| {
        let out = stdout_of(
            &sh(&root, "cat /proc/net/dev; ip link show lo")
                .network(network)
                .build(),
        );
        let names: Vec<String> = out
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(n, _)| n.trim().to_string())
            .filter(|n| !n.contains(' '))
            .collect();
        (names, out)
    };
    let (none, out) = interfaces(NetworkMode::None);
    assert_eq!(none, ["lo", "1"], "{out}");
    assert!(out.contains("<LOOPBACK,UP"), "{out}");
    let host_count = fs::read_to_string("/proc/net/dev")
        .expect("host net")
        .lines()
        .count()
        - 2;
    let (host, _) = interfaces(NetworkMode::Host);
    assert_eq!(host.len() - 1, host_count, "{host:?}");
}

#[test]
fn dev_sys_and_etc_files_are_supplied_and_leave_no_trace() {
    let (_tmp, root) = temp_rootfs();
    let script = "ls /dev; echo ---; readlink /dev/fd; readlink /dev/ptmx; echo hi > /dev/null; head -c 4 /dev/zero | wc -c; \
                  echo ---; hostname; cat /etc/hostname; grep -c builder /etc/hosts; \
                  touch /sys/x 2>/dev/null || echo sys-ro; mount | grep -c ' /dev/shm '";
    let out = stdout_of(&sh(&root, script).hostname("builder").build());
    for dev in [
        "full", "null", "pts", "random", "shm", "stderr", "stdin", "stdout", "tty", "urandom",
        "zero",
    ] {
        assert!(out.lines().any(|l| l == dev), "/dev/{dev} missing in {out}");
    }
    assert!(out.contains("/proc/self/fd\npts/ptmx\n4\n"), "{out}");
    assert!(
        out.contains("---\nbuilder\nbuilder\n1\nsys-ro\n1\n"),
        "{out}"
    );
    for stub in ["etc/hostname", "etc/hosts", "etc/resolv.conf"] {
        assert!(
            !root.join(stub).exists(),
            "{stub} left in the root filesystem"
        );
    }
}

#[test]
fn existing_etc_files_are_mounted_over_and_kept() {
    let (_tmp, root) = temp_rootfs();
    fs::write(root.join("etc/hosts"), "image hosts\n").expect("write");
    let out = stdout_of(
        &sh(&root, "cat /etc/hosts; echo changed >> /etc/hosts")
            .hosts("10.0.0.1 db\n")
            .build(),
    );
    assert_eq!(out, "10.0.0.1 db\n");
    assert_eq!(
        fs::read_to_string(root.join("etc/hosts")).expect("kept"),
        "image hosts\n"
    );
}

#[test]
fn secrets_are_readable_in_the_step_and_absent_afterwards() {
    let (_tmp, root) = temp_rootfs();
    let script = "cat /run/secrets/token; stat -c '%a %u' /run/secrets/token; echo; echo $API_KEY";
    let mut process = Process::new(["/bin/sh", "-c", script]);
    process.env = vec!["PATH=/bin".into()];
    process
        .secret_env
        .push(("API_KEY".into(), SecretBytes::new("k3y")));
    let spec = SandboxSpec::builder(Rootfs::Directory(root.clone()), process, mapping())
        .mount(StepMount::Secret {
            data: SecretBytes::new("s3cret"),
            target: "/run/secrets/token".into(),
            mode: 0o400,
            uid: 0,
            gid: 0,
        })
        .build();
    let debug = format!("{spec:?}");
    assert!(
        !debug.contains("s3cret") && !debug.contains("k3y"),
        "secret in Debug: {debug}"
    );
    let out = stdout_of(&spec);
    assert_eq!(out, "s3cret400 0\n\nk3y\n");
    assert!(
        !root.join("run").exists(),
        "secret mount point left in the root filesystem"
    );
}

#[test]
fn secrets_belong_to_the_requested_owner() {
    let (_tmp, root) = temp_rootfs();
    if mapping().host_uid(1000).is_none() {
        // Only root exists without subordinate ids (see `unprivileged.rs`).
        assert!(mapping().limitation().is_some());
        return;
    }
    let mut process = Process::new(["sh", "-c", "id -u; cat /run/secrets/npmrc"]);
    process.env = vec!["PATH=/bin".into()];
    process.user = "app".into();
    let secret = |uid| StepMount::Secret {
        data: SecretBytes::new("token"),
        target: "/run/secrets/npmrc".into(),
        mode: 0o400,
        uid,
        gid: 1000,
    };
    let spec = SandboxSpec::builder(Rootfs::Directory(root.clone()), process.clone(), mapping())
        .mount(secret(1000))
        .build();
    assert_eq!(stdout_of(&spec), "1000\ntoken");
    let spec = SandboxSpec::builder(Rootfs::Directory(root), process, mapping())
        .mount(secret(0))
        .build();
    let (result, out) = run(&spec);
    assert_eq!(result.expect("ran").code, Some(1));
    assert!(out.stderr.contains("Permission denied"), "{}", out.stderr);
}

#[test]
fn zombies_are_reaped_by_the_init() {
    let (_tmp, root) = temp_rootfs();
    // The subshell exits at once, so its sleep is re-parented to pid 1 and exits later.
    let script =
        "(sleep 0.1 &); sleep 0.6; for f in /proc/[0-9]*/stat; do read l < $f && echo \"$l\"; done";
    let out = stdout_of(&sh(&root, script).build());
    let states: Vec<&str> = out
        .lines()
        .filter_map(|l| {
            l.rsplit_once(") ")
                .map(|(_, rest)| rest.split(' ').next().unwrap_or(""))
        })
        .collect();
    assert!(states.len() >= 2, "{out}");
    assert!(!states.contains(&"Z"), "zombie left: {out}");
}

#[test]
fn background_processes_die_with_the_step() {
    let (_tmp, root) = temp_rootfs();
    let started = Instant::now();
    let out = stdout_of(&sh(&root, "sleep 30 & echo started").build());
    assert_eq!(out, "started\n");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "waited for the background sleep"
    );
}

#[test]
fn cancel_kills_a_step_that_ignores_sigterm() {
    let (_tmp, root) = temp_rootfs();
    let spec = sh(&root, "trap '' TERM; echo ready; while :; do sleep 1; done")
        .cancel_grace(Duration::from_millis(200))
        .build();
    let cancel = CancelToken::new();
    let trigger = cancel.clone();
    let (tx, rx) = mpsc::channel::<OutputChunk>();
    let canceller = thread::spawn(move || {
        let first = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("step started");
        assert_eq!(first.data, b"ready\n");
        trigger.cancel();
    });
    let started = Instant::now();
    let mut sink = tx;
    let result = sandbox().run(&spec, &mut sink, &cancel);
    canceller.join().expect("canceller");
    assert!(matches!(result, Err(SandboxError::Cancelled)), "{result:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn user_workdir_and_environment_follow_docker() {
    let (_tmp, root) = temp_rootfs();
    let mut process = Process::new(["sh", "-c", "id -u; id -G; pwd; echo $HOME; echo $GREETING"]);
    process.env = vec!["PATH=/bin".into(), "GREETING=hi".into()];
    process.cwd = "/home/app/src/deep".into();
    process.user = "app".into();
    let spec = SandboxSpec::builder(Rootfs::Directory(root.clone()), process, mapping()).build();
    let (result, out) = run(&spec);
    if mapping().host_uid(1000).is_none() {
        assert!(
            matches!(
                result,
                Err(SandboxError::Setup(SetupError::Unmapped { uid: 1000, .. }))
            ),
            "{result:?}"
        );
        return;
    }
    assert!(result.expect("ran").success(), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "1000\n1000 29\n/home/app/src/deep\n/home/app\nhi\n"
    );
    assert!(
        root.join("home/app/src/deep").is_dir(),
        "working directory is created as Docker does"
    );
}

#[test]
fn capabilities_and_seccomp_are_dockers_unless_insecure() {
    let (_tmp, root) = temp_rootfs();
    let script = "grep -E '^(CapBnd|NoNewPrivs|Seccomp):' /proc/self/status";
    let docker: u64 = [0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31]
        .iter()
        .map(|b| 1u64 << b)
        .sum();
    // No no_new_privs, as with BuildKit: setuid programs keep working.
    let out = stdout_of(&sh(&root, script).build());
    assert_eq!(
        out,
        format!("CapBnd:\t{docker:016x}\nNoNewPrivs:\t0\nSeccomp:\t2\n")
    );
    let out = stdout_of(&sh(&root, script).security(SecurityMode::Insecure).build());
    assert!(out.ends_with("NoNewPrivs:\t0\nSeccomp:\t0\n"), "{out}");
    assert!(
        !out.starts_with(&format!("CapBnd:\t{docker:016x}")),
        "{out}"
    );
}

#[test]
fn proc_is_confined_like_docker_unless_insecure() {
    let (_tmp, root) = temp_rootfs();
    // kernel/hostname belongs to the step's uts namespace: writable only when not confined.
    let script = "echo other > /proc/sys/kernel/hostname 2>/dev/null && echo rw || echo ro; \
                  [ -e /proc/timer_list ] && wc -c < /proc/timer_list || echo 0";
    assert_eq!(stdout_of(&sh(&root, script).build()), "ro\n0\n");
    let out = stdout_of(&sh(&root, script).security(SecurityMode::Insecure).build());
    assert!(out.starts_with("rw\n"), "{out}");
}

#[test]
fn bind_modes_read_only_read_write_and_discard() {
    let (tmp, root) = temp_rootfs();
    let host = tmp.path().join("ctx");
    fs::create_dir(&host).expect("mkdir");
    fs::write(host.join("f"), "orig\n").expect("write");
    let bind = |target: &str, mode| StepMount::Bind {
        source: host.clone(),
        target: target.into(),
        mode,
    };
    let script = "cat /ro/f; echo a > /ro/f 2>/dev/null || echo ro-refused; echo rw > /rw/f; echo gone > /tmpcopy/f; \
                  cat /tmpcopy/f; echo new > /tmpcopy/n";
    let out = stdout_of(
        &sh(&root, script)
            .mount(bind("/ro", BindMode::ReadOnly))
            .mount(bind("/rw", BindMode::ReadWrite))
            .mount(bind("/tmpcopy", BindMode::ReadWriteDiscard))
            .build(),
    );
    assert_eq!(out, "orig\nro-refused\ngone\n");
    assert_eq!(fs::read_to_string(host.join("f")).expect("read"), "rw\n");
    assert!(!host.join("n").exists(), "discarded write reached the host");
    for stub in ["ro", "rw", "tmpcopy"] {
        assert!(!root.join(stub).exists(), "mount point /{stub} left behind");
    }
}

#[test]
fn tmpfs_mounts_have_their_size() {
    let (_tmp, root) = temp_rootfs();
    let out = stdout_of(
        &sh(&root, "grep ' /scratch ' /proc/mounts")
            .mount(StepMount::Tmpfs {
                target: "/scratch".into(),
                size: Some(1 << 20),
            })
            .build(),
    );
    assert!(
        out.contains("tmpfs /scratch tmpfs") && out.contains("size=1024k"),
        "{out}"
    );
}

#[test]
fn locked_cache_mounts_serialize_steps() {
    let (tmp, root) = temp_rootfs();
    let cache = tmp.path().join("cache");
    let script = "echo start >> /cache/log; sleep 0.3; echo end >> /cache/log";
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let cache = cache.clone();
            let spec_root = root.clone();
            thread::spawn(move || {
                let lock = CacheMountLock::acquire(&cache, CacheSharing::Locked).expect("lock");
                let spec = sh(&spec_root, script)
                    .mount(StepMount::Cache {
                        source: lock.dir().to_path_buf(),
                        target: "/cache".into(),
                    })
                    .build();
                stdout_of(&spec);
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    let log = fs::read_to_string(cache.join("data/log")).expect("log");
    assert_eq!(log, "start\nend\nstart\nend\n");
}

#[test]
fn overlay_rootfs_is_assembled_inside_the_namespaces() {
    let (tmp, lower) = temp_rootfs();
    let (upper, work, merged) = (
        tmp.path().join("upper"),
        tmp.path().join("work"),
        tmp.path().join("merged"),
    );
    for d in [&upper, &work, &merged] {
        fs::create_dir(d).expect("mkdir");
    }
    let rootfs = Rootfs::Mounted {
        root: merged.clone(),
        mounts: vec![Mount::overlay(
            std::slice::from_ref(&lower),
            &upper,
            &work,
            &merged,
        )],
    };
    let mut process = Process::new([
        "sh",
        "-c",
        "echo layer > /new; rm /etc/group; rm -r /home && mkdir -p /home/x; cat /etc/passwd | head -1",
    ]);
    process.env = vec!["PATH=/bin".into()];
    let out = stdout_of(&SandboxSpec::builder(rootfs, process, mapping()).build());
    assert!(
        is_whiteout(&upper.join("etc/group")),
        "no whiteout for /etc/group"
    );
    assert_eq!(
        xattr(&upper.join("home"), "user.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(out, "root:x:0:0:root:/root:/bin/sh\n");
    assert_eq!(
        fs::read_to_string(upper.join("new")).expect("upper"),
        "layer\n"
    );
    assert!(
        lower.join("etc/group").exists() && !lower.join("new").exists(),
        "lower layer changed"
    );
    assert!(
        !upper.join("etc/hosts").exists() && !upper.join("etc/hostname").exists(),
        "stubs in the layer"
    );
    assert!(
        fs::read_dir(&merged).expect("merged").next().is_none(),
        "overlay visible outside the sandbox"
    );
}

#[test]
fn setup_failures_come_back_typed() {
    let (_tmp, root) = temp_rootfs();
    let (result, _) = run(&sh(&root, "true")
        .build()
        .clone_with_args(["no-such-command"]));
    assert!(
        matches!(&result, Err(SandboxError::Setup(SetupError::CommandNotFound { program, .. })) if program == "no-such-command"),
        "{result:?}"
    );
    let mut process = Process::new(["true"]);
    process.user = "nobody-here".into();
    let (result, _) =
        run(&SandboxSpec::builder(Rootfs::Directory(root.clone()), process, mapping()).build());
    let err = result.expect_err("unknown user");
    assert!(
        err.source_chain()
            .contains("unable to find user nobody-here"),
        "{err:?}"
    );
    let bad = sandbox().with_init_program("/bin/true");
    let result = bad.run(
        &sh(&root, "true").build(),
        &mut img_sandbox::DiscardOutput,
        &CancelToken::new(),
    );
    assert!(
        matches!(result, Err(SandboxError::InitNotResponding { .. })),
        "{result:?}"
    );
}

/// Helpers only the tests need.
trait SpecExt {
    fn clone_with_args<const N: usize>(&self, args: [&str; N]) -> SandboxSpec;
}

impl SpecExt for SandboxSpec {
    fn clone_with_args<const N: usize>(&self, args: [&str; N]) -> SandboxSpec {
        let mut process = self.process().clone();
        process.args = args.iter().map(|s| s.to_string()).collect();
        SandboxSpec::builder(self.rootfs().clone(), process, self.id_mapping().clone()).build()
    }
}

trait ErrorChain {
    fn source_chain(&self) -> String;
}

impl<E: std::error::Error> ErrorChain for E {
    fn source_chain(&self) -> String {
        let mut text = self.to_string();
        let mut source = self.source();
        while let Some(s) = source {
            text = format!("{text}: {s}");
            source = s.source();
        }
        text
    }
}

#[test]
fn chown_inside_shows_as_the_mapped_id_on_the_host() {
    let (_tmp, root) = temp_rootfs();
    let mapping = mapping();
    let (result, out) = run(&sh(&root, "touch /owned && chown 1000:1000 /owned").build());
    match mapping.host_uid(1000) {
        Some(host_uid) => {
            assert!(result.expect("ran").success(), "{}", out.stderr);
            let meta = fs::metadata(root.join("owned")).expect("owned");
            assert_eq!(
                (meta.uid(), meta.gid()),
                (host_uid, mapping.host_gid(1000).expect("gid"))
            );
            // Leave nothing the test user cannot delete.
            stdout_of(&sh(&root, "rm /owned").build());
        }
        None => {
            assert_ne!(
                result.expect("ran").code,
                Some(0),
                "chown to an unmapped id must fail"
            );
            assert!(out.stderr.contains("Invalid argument"), "{}", out.stderr);
        }
    }
}

#[test]
fn mapping_helper_failures_are_reported() {
    let (_tmp, root) = temp_rootfs();
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    let range = [img_sandbox::SubIdRange {
        start: 400_000,
        count: 65_536,
    }];
    let mapping = img_sandbox::IdMapping::subordinate(uid, gid, &range, &range);
    let spec =
        SandboxSpec::builder(Rootfs::Directory(root), Process::new(["true"]), mapping).build();
    let paths = img_sandbox::HostPaths {
        newuidmap: "/bin/false".into(),
        newgidmap: "/bin/false".into(),
        ..img_sandbox::HostPaths::default()
    };
    let result = sandbox().with_host_paths(paths).run(
        &spec,
        &mut img_sandbox::DiscardOutput,
        &CancelToken::new(),
    );
    match result {
        Err(SandboxError::IdMap(img_sandbox::IdMapError::HelperFailed {
            program, args, ..
        })) => {
            assert_eq!(program, std::path::Path::new("/bin/false"));
            assert!(
                args.ends_with(&format!("0 {uid} 1 1 400000 65536")),
                "{args}"
            );
        }
        other => panic!("expected a helper failure, got {other:?}"),
    }
}

#[test]
fn ssh_agent_socket_is_bound() {
    let (tmp, root) = temp_rootfs();
    let socket = tmp.path().join("agent.sock");
    // Kept open so the socket stays bound while the step looks at it (busybox has no unix
    // socket client to talk to it).
    let _listener = std::os::unix::net::UnixListener::bind(&socket).expect("listen");
    let spec = sh(&root, "[ -S /run/buildkit/ssh_agent.0 ] && echo socket")
        .mount(StepMount::SshAgent {
            socket,
            target: "/run/buildkit/ssh_agent.0".into(),
        })
        .build();
    assert_eq!(stdout_of(&spec), "socket\n");
    assert!(!root.join("run").exists(), "socket mount point left behind");
}

#[test]
fn a_failed_setup_leaves_no_mount_points_behind() {
    let (tmp, root) = temp_rootfs();
    let spec = sh(&root, "true")
        .mount(StepMount::Bind {
            source: tmp.path().join("missing"),
            target: "/deep/mount/point".into(),
            mode: BindMode::ReadOnly,
        })
        .build();
    let (result, _) = run(&spec);
    assert!(
        matches!(&result, Err(SandboxError::Setup(SetupError::Os { path, .. })) if path.ends_with("rootfs/deep/mount/point")),
        "{result:?}"
    );
    for stub in ["deep", "etc/hosts", "etc/hostname", "etc/resolv.conf"] {
        assert!(!root.join(stub).exists(), "{stub} left behind");
    }
}
