//! The crate as an ordinary user: a user created for the test runs this test binary (under
//! `setpriv`), and both backends must work there — overlayfs with `userxattr` inside a user
//! namespace, layers applied without CAP_CHOWN/CAP_MKNOD (skipped with warnings).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use img_snapshot::{
    run_mounted, ApplyWarning, Backend, BackendChoice, Compression, ExportOptions, StateDir, Store,
};

const USER: &str = "imgsnaptest";
const CHILD_ENV: &str = "IMG_SNAPSHOT_UNPRIVILEGED_STATE";

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn backends_work_for_an_unprivileged_user() {
    if !nix::unistd::geteuid().is_root() || !have("useradd") || !have("setpriv") {
        let reason = "needs root to create a user, plus useradd and setpriv";
        if std::env::var_os("IMG_TEST_REQUIRE_TOOLS").is_some_and(|v| v == "1") {
            panic!("{reason}, and IMG_TEST_REQUIRE_TOOLS=1 requires every tool");
        }
        println!("skipping: {reason} (with IMG_TEST_REQUIRE_TOOLS=1 this fails)");
        return;
    }
    let exists = Command::new("id")
        .arg(USER)
        .output()
        .unwrap()
        .status
        .success();
    if !exists {
        let status = Command::new("useradd")
            .args(["--system", "--no-create-home", USER])
            .status()
            .unwrap();
        assert!(status.success(), "useradd failed");
    }
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    // The build tree may not be readable by the test user: run a copy of this binary.
    let exe = dir.path().join("unprivileged-test");
    fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
    let work = dir.path().join("work");
    fs::create_dir(&work).unwrap();
    let status = Command::new("chown")
        .arg(format!("{USER}:{USER}"))
        .arg(&work)
        .status()
        .unwrap();
    assert!(status.success());
    let out = Command::new("setpriv")
        .args([
            "--reuid",
            USER,
            "--regid",
            USER,
            "--clear-groups",
            "--reset-env",
        ])
        // --reset-env drops the caller's environment; pass the state directory explicitly.
        .arg("env")
        .arg(format!("{CHILD_ENV}={}", work.display()))
        .arg(&exe)
        .args([
            "--ignored",
            "--exact",
            "unprivileged_child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .current_dir(&work)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("1 passed") && stdout.contains("overlayfs: ["),
        "child did not run:\n{stdout}"
    );
    println!("{stdout}");
}

/// A base layer with root-owned entries, a device node, and a directory to delete later.
fn base_layer_bytes() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add_mode =
        |name: &str, kind: tar::EntryType, mode: u32, data: &[u8], dev: Option<(u32, u32)>| {
            let mut h = tar::Header::new_ustar();
            h.set_path(name).unwrap();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_600_000_000);
            h.set_size(data.len() as u64);
            if let Some((major, minor)) = dev {
                h.set_device_major(major).unwrap();
                h.set_device_minor(minor).unwrap();
            }
            h.set_cksum();
            b.append(&h, data).unwrap();
        };
    let mut add = |name: &str, kind: tar::EntryType, data: &[u8], dev: Option<(u32, u32)>| {
        let mode = if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        };
        add_mode(name, kind, mode, data, dev)
    };
    add("dev/", tar::EntryType::Directory, b"", None);
    add("dev/null", tar::EntryType::Char, b"", Some((1, 3)));
    add("etc/", tar::EntryType::Directory, b"", None);
    add("etc/keep", tar::EntryType::Regular, b"keep\n", None);
    add("etc/gone", tar::EntryType::Regular, b"gone\n", None);
    add("old/", tar::EntryType::Directory, b"", None);
    add("old/a", tar::EntryType::Regular, b"a\n", None);
    // A read-only directory with contents, like /proc or /sys in base images.
    add_mode("ro/", tar::EntryType::Directory, 0o555, b"", None);
    add_mode("ro/inside", tar::EntryType::Regular, 0o444, b"x", None);
    b.into_inner().unwrap()
}

#[test]
#[ignore = "run as an unprivileged user by backends_work_for_an_unprivileged_user"]
fn unprivileged_child() {
    let Some(work) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    assert!(!nix::unistd::geteuid().is_root(), "must run unprivileged");
    let store = Store::open(&StateDir::at(Path::new(&work).join("state"))).unwrap();
    let content = store.content();
    let base = content
        .write_blob(&base_layer_bytes(), None)
        .unwrap()
        .digest;
    let auto = store.snapshotter(BackendChoice::Auto).unwrap();
    assert_eq!(
        auto.backend(),
        Backend::Overlayfs,
        "overlay in a user namespace works on this kernel"
    );
    let opts = ExportOptions {
        compression: Compression::Gzip,
        source_date_epoch: Some(1_700_000_000),
        ..Default::default()
    };
    let mut digests = Vec::new();
    for choice in [BackendChoice::Overlayfs, BackendChoice::Native] {
        let s = store.snapshotter(choice).unwrap();
        let p = |k: &str| format!("{}-{k}", s.backend());
        s.prepare(&p("base"), None).unwrap();
        let report = s.apply(&p("base"), &content, &base).unwrap();
        assert!(
            report.warnings.contains(&ApplyWarning::DeviceSkipped {
                path: "dev/null".into()
            }),
            "{:?}",
            report.warnings
        );
        assert!(
            report
                .warnings
                .iter()
                .any(|w| matches!(w, ApplyWarning::OwnershipNotSet { .. }))
                || nix::unistd::getuid().as_raw() == 0
        );
        s.commit(&p("base"), &p("base-c")).unwrap();
        s.prepare(&p("work"), Some(&p("base-c"))).unwrap();
        let target = tempfile::tempdir_in(&work).unwrap();
        let script =
            "rm etc/gone && rm -r old && mkdir old && echo b > old/b && echo new > etc/new";
        let status = run_mounted(
            &s.mounts(&p("work")).unwrap(),
            target.path(),
            &["/bin/sh", "-ec", script],
        )
        .unwrap();
        assert!(status.success(), "{script}");
        let layer = s.diff(&p("work"), &content, &opts).unwrap();
        let blob = content.open(&layer.digest).unwrap();
        let names: Vec<String> = tar::Archive::new(flate2::read::MultiGzDecoder::new(blob))
            .entries()
            .unwrap()
            .map(|e| String::from_utf8(e.unwrap().path_bytes().into_owned()).unwrap())
            .collect();
        assert!(
            names.contains(&"etc/.wh.gone".to_string()),
            "{}: {names:?}",
            s.backend()
        );
        assert!(
            names.contains(&"old/b".to_string()),
            "{}: {names:?}",
            s.backend()
        );
        println!("{}: {names:?}", s.backend());
        digests.push((s.backend(), names));
    }
    // Overlay marks the recreated directory opaque; native lists the deleted children.
    let overlay = &digests[0].1;
    assert!(
        overlay.contains(&"old/.wh..wh..opq".to_string()),
        "{overlay:?}"
    );
    let native = &digests[1].1;
    assert!(native.contains(&"old/.wh.a".to_string()), "{native:?}");
    let deep = deep_overlay_chain(&store, &work);
    // Removing snapshots with read-only directories works without privileges too.
    let report = store.gc(&img_snapshot::GcRoots::default()).unwrap();
    assert_eq!(report.snapshots_removed.len(), 4 + deep);
    assert_eq!(
        std::fs::read_dir(store.state().snapshots())
            .unwrap()
            .count(),
        0
    );
}

/// A chain too deep for one overlay mount on top of the overlay base (whose read-only
/// directory and root-owned entries belong to this user now): flattening it needs no
/// privilege. Returns how many snapshots it made.
fn deep_overlay_chain(store: &Store, work: &std::ffi::OsStr) -> usize {
    const DEPTH: usize = 150;
    let s = store.snapshotter(BackendChoice::Overlayfs).unwrap();
    let mut parent = "overlayfs-base-c".to_owned();
    for i in 0..DEPTH {
        let key = format!("deep{i}");
        let active = s.prepare(&key, Some(&parent)).unwrap();
        if i % 40 == 0 {
            let target = tempfile::tempdir_in(work).unwrap();
            let script = format!("echo {i} > ro/f{i}; rm -f etc/keep");
            let status =
                run_mounted(&active.mounts, target.path(), &["/bin/sh", "-ec", &script]).unwrap();
            assert!(status.success(), "{script}");
        }
        parent = format!("{key}-c");
        s.commit(&key, &parent).unwrap();
    }
    let mounts = s.mounts(&parent).unwrap();
    assert!(mounts.iter().all(|m| m.data().len() < 4096), "{mounts:?}");
    let flats = std::fs::read_dir(store.state().snapshots())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().join("flat").is_dir())
        .count();
    assert!(flats >= 1, "a {DEPTH}-deep chain was flattened");
    println!("deep chain of {DEPTH}: {flats} flattened views");
    let target = tempfile::tempdir_in(work).unwrap();
    let script = "test \"$(cat ro/f0 ro/f120)\" = \"$(printf '0\\n120')\" \
                  && test \"$(stat -c %a ro)\" = 555 && test ! -e etc/keep && test -f old/a";
    let status = run_mounted(&mounts, target.path(), &["/bin/sh", "-ec", script]).unwrap();
    assert!(status.success(), "{script}");
    DEPTH
}
