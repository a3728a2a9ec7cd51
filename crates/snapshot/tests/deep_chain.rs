//! A parent chain deeper than one overlay mount can name (a long Dockerfile): preparing and
//! mounting still work, the mounted view matches the native backend's, a layer's diff is
//! still only its own change, the flattened view is built once and shared, and GC removes it.

#[path = "common/bigtree.rs"]
mod bigtree;
mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use img_snapshot::{
    run_mounted, BackendChoice, Compression, ExportOptions, GcRoots, Mount, Snapshotter, Store,
};

use common::store;

const DEPTH: usize = 120;

/// The shell step that makes snapshot `i` of the chain: overwrites, additions, deletions of
/// files and directories (whiteouts), directories deleted and recreated (opaque) below and
/// above the point where the chain gets flattened, hardlinks, symlinks, fifos and modes.
fn step(i: usize) -> String {
    let mut s = String::new();
    if i == 0 {
        s.push_str(
            "mkdir -p etc d keep; echo base > etc/conf; echo k > keep/k; \
             for n in 0 1 2 3 4 5 6; do echo init > f$n; done\n",
        );
    }
    if i == DEPTH - 1 {
        // The top step changes one deep file and adds one: its diff must be just that.
        s.push_str("echo top > topfile; echo changed > etc/conf\n");
        return s;
    }
    s.push_str(&format!(
        "echo {i} > f{}; mkdir -p d/s{i}; echo {i} > d/s{i}/file\n",
        i % 7
    ));
    if i % 10 == 5 && i > 10 {
        s.push_str(&format!("rm -r d/s{}\n", i - 4));
    }
    match i % 20 {
        7 => s.push_str("rm f6\n"),
        17 => s.push_str(&format!("echo back{i} > f6\n")),
        _ => {}
    }
    match i {
        30 => s.push_str("ln etc/conf etc/hard; ln -s ../f1 etc/sym; mkfifo etc/fifo\n"),
        40 => s.push_str("rm -r d; mkdir d; echo fresh > d/only\n"),
        50 => s.push_str("chmod 0600 etc/conf; chmod 0711 etc\n"),
        80 => s.push_str("rm etc/hard; rm -r d/only; mkdir d/only\n"),
        100 => s.push_str("rm -r keep; mkdir keep; echo again > keep/k2\n"),
        110 => s.push_str("rm etc/fifo; ln -sf ../f2 etc/sym\n"),
        _ => {}
    }
    s
}

fn run(mounts: &[Mount], script: &str) {
    let target = tempfile::tempdir().unwrap();
    let status = run_mounted(mounts, target.path(), &["/bin/sh", "-ec", script]).unwrap();
    assert!(status.success(), "{script}: {status:?}");
}

/// The mounted view as text: type, path, mode, owner, size, link target, content hash; with
/// `mtimes`, nanosecond mtimes too (which differ between two runs of the same steps).
fn mounted_view(mounts: &[Mount], mtimes: bool) -> String {
    let out = tempfile::NamedTempFile::new().unwrap();
    let fmt = if mtimes {
        "%y %p %m %U %G %s %T@ %l\\n"
    } else {
        "%y %p %m %U %G %s %l\\n"
    };
    let script = format!(
        "{{ find . -printf '{fmt}' | sort; find . -type f -exec sha256sum {{}} + | sort -k2; }} > {}",
        out.path().display()
    );
    run(mounts, &script);
    fs::read_to_string(out.path()).unwrap()
}

/// Builds the chain `s0`..`s{DEPTH-1}`, all committed; returns the time each prepare took.
fn build_chain(s: &Snapshotter) -> Vec<Duration> {
    let mut times = Vec::new();
    for i in 0..DEPTH {
        let parent = (i > 0).then(|| format!("s{}", i - 1));
        let start = Instant::now();
        let active = s.prepare(&format!("a{i}"), parent.as_deref()).unwrap();
        times.push(start.elapsed());
        run(&active.mounts, &step(i));
        s.commit(&format!("a{i}"), &format!("s{i}")).unwrap();
    }
    times
}

fn lowerdir(mounts: &[Mount]) -> Option<String> {
    mounts[0]
        .options
        .iter()
        .find_map(|o| o.strip_prefix("lowerdir="))
        .map(str::to_owned)
}

/// Every `snapshots/<id>/flat` in the store.
fn flats(store: &Store) -> BTreeSet<PathBuf> {
    fs::read_dir(store.state().snapshots())
        .unwrap()
        .map(|e| e.unwrap().path().join("flat"))
        .filter(|p| p.exists())
        .collect()
}

fn opts() -> ExportOptions {
    ExportOptions {
        compression: Compression::Uncompressed,
        source_date_epoch: Some(1_700_000_000),
        ..Default::default()
    }
}

fn tar_names(store: &Store, digest: &img_snapshot::Digest) -> Vec<String> {
    let blob = store.content().open(digest).unwrap();
    tar::Archive::new(blob)
        .entries()
        .unwrap()
        .map(|e| String::from_utf8(e.unwrap().path_bytes().into_owned()).unwrap())
        .collect()
}

#[test]
fn a_chain_deeper_than_one_mount_can_name_mounts_and_matches_native() {
    let overlay_store = store();
    let overlay = match overlay_store.store.snapshotter(BackendChoice::Overlayfs) {
        Ok(s) => s,
        Err(e) => {
            common::cannot_run(&format!("overlayfs unavailable: {e}"));
            return;
        }
    };
    let native_store = store();
    let native = native_store
        .store
        .snapshotter(BackendChoice::Native)
        .unwrap();

    let times = build_chain(&overlay);
    build_chain(&native);
    let (slowest, took) = times.iter().enumerate().max_by_key(|(_, t)| **t).unwrap();
    let median = {
        let mut t = times.clone();
        t.sort();
        t[t.len() / 2]
    };
    println!("overlay prepare: slowest a{slowest} {took:?} (flattening), median {median:?}");

    // Flattened exactly once, on the way up; every later snapshot mounts over that view.
    let made = flats(&overlay_store.store);
    assert_eq!(made.len(), 1, "{made:?}");
    let flat = made.iter().next().unwrap().join("fs");
    let flat_ino = fs::metadata(&flat).unwrap().ino();
    let top_key = format!("s{}", DEPTH - 1);
    let top_mounts = overlay.mounts(&top_key).unwrap();
    let lower = lowerdir(&top_mounts).unwrap();
    assert!(lower.ends_with(&flat.display().to_string()), "{lower}");
    for m in &top_mounts {
        assert!(m.data().len() < 4096, "{m:?}");
    }

    // The same steps give the same tree on both backends, writable and read-only views.
    for key in [format!("a{}", DEPTH), top_key.clone()] {
        if key.starts_with('a') {
            overlay.prepare(&key, Some(&top_key)).unwrap();
            native.prepare(&key, Some(&top_key)).unwrap();
        }
        let (o, n) = (
            mounted_view(&overlay.mounts(&key).unwrap(), false),
            mounted_view(&native.mounts(&key).unwrap(), false),
        );
        assert_eq!(o, n, "{key}");
        assert!(o.contains("d ./d/only") && o.contains("./keep/k2") && !o.contains("./keep/k "));
    }

    // Metadata through the flattened mount equals the merged view of the full chain, read
    // layer by layer without mounting (nanosecond mtimes included).
    let view = mounted_view(&top_mounts, true);
    let mut checked = 0;
    for line in view.lines().filter(|l| l.contains(" ./")) {
        let fields: Vec<&str> = line.split(' ').collect();
        let rel = fields[1].trim_start_matches("./");
        if rel.is_empty() || fields.len() < 7 {
            continue;
        }
        let host = overlay
            .host_path(&top_key, Path::new(rel))
            .unwrap()
            .unwrap_or_else(|| panic!("{rel} missing from the chain"));
        let m = fs::symlink_metadata(&host).unwrap();
        let want = format!("{}.{:09}0", m.mtime(), m.mtime_nsec());
        assert_eq!(fields[6], want, "mtime of {rel} ({host:?})");
        assert_eq!(
            fields[2],
            format!("{:o}", m.mode() & 0o7777),
            "mode of {rel}"
        );
        checked += 1;
    }
    assert!(checked > 50, "{checked}");

    // The top layer's diff is its own change only, byte for byte what native makes.
    let (od, nd) = (
        overlay
            .diff(&top_key, &overlay_store.store.content(), &opts())
            .unwrap(),
        native
            .diff(&top_key, &native_store.store.content(), &opts())
            .unwrap(),
    );
    assert_eq!(
        tar_names(&overlay_store.store, &od.digest),
        ["etc/", "etc/conf", "topfile"]
    );
    assert_eq!(od.diff_id, nd.diff_id);

    // Siblings on a deep parent reuse the flattened view; nothing is flattened again.
    for sib in ["sib-a", "sib-b"] {
        let active = overlay.prepare(sib, Some(&top_key)).unwrap();
        assert_eq!(lowerdir(&active.mounts), Some(lower.clone()));
        run(
            &active.mounts,
            &format!("echo {sib} > sib; test \"$(cat f3)\""),
        );
    }
    assert_eq!(flats(&overlay_store.store), made);
    assert_eq!(fs::metadata(&flat).unwrap().ino(), flat_ino);

    // GC keeps it while a snapshot above it is kept, and removes it with its snapshot.
    let gc = |roots: Vec<String>| {
        overlay_store
            .store
            .gc(&GcRoots {
                snapshots: roots,
                ..Default::default()
            })
            .unwrap()
    };
    gc(vec![top_key.clone()]);
    assert_eq!(flats(&overlay_store.store), made);
    run(&overlay.mounts(&top_key).unwrap(), "test -f topfile");
    gc(Vec::new());
    assert!(flats(&overlay_store.store).is_empty());
    assert!(!flat.exists());
    assert_eq!(
        fs::read_dir(overlay_store.store.state().snapshots())
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn flattening_repeats_up_a_very_deep_chain() {
    let t = store();
    let Ok(overlay) = t.store.snapshotter(BackendChoice::Overlayfs) else {
        common::cannot_run("overlayfs unavailable");
        return;
    };
    // 200 empty-ish steps: past the option-length limit whatever the state path.
    let mut parent: Option<String> = None;
    for i in 0..200 {
        let active = overlay
            .prepare(&format!("a{i}"), parent.as_deref())
            .unwrap();
        if i % 50 == 0 {
            run(&active.mounts, &format!("echo {i} > f{i}"));
        }
        overlay.commit(&format!("a{i}"), &format!("s{i}")).unwrap();
        parent = Some(format!("s{i}"));
    }
    // Each flattening starts from the one below it.
    let made = flats(&t.store);
    assert!(made.len() >= 2, "{made:?}");
    let ro = overlay.mounts("s199").unwrap();
    assert!(ro[0].read_only());
    run(
        &ro,
        "test \"$(cat f0 f50 f100 f150)\" = \"$(printf '0\\n50\\n100\\n150')\"",
    );
    // Asking again reuses whatever was built.
    assert_eq!(overlay.mounts("s199").unwrap(), ro);
}

/// The cost of flattening over a realistic base (200 MiB in 20,000 files) plus 120 small
/// steps: `cargo test --release -p img-snapshot --test deep_chain -- --ignored --nocapture`.
#[test]
#[ignore = "timing figure for DESIGN.md"]
fn flattening_time_over_a_large_base() {
    let t = store();
    let Ok(overlay) = t.store.snapshotter(BackendChoice::Overlayfs) else {
        common::cannot_run("overlayfs unavailable");
        return;
    };
    let tree = t.dir.path().join("tree");
    fs::create_dir(&tree).unwrap();
    bigtree::build_big_tree(&tree, 200 << 20, 20_000);
    let layer = img_snapshot::export_layer(&t.store.content(), &tree, &opts()).unwrap();
    overlay.prepare("base", None).unwrap();
    overlay
        .apply("base", &t.store.content(), &layer.digest)
        .unwrap();
    overlay.commit("base", "s-base").unwrap();
    let mut parent = "s-base".to_owned();
    let mut times = Vec::new();
    for i in 0..DEPTH {
        let start = Instant::now();
        let active = overlay.prepare(&format!("a{i}"), Some(&parent)).unwrap();
        times.push((start.elapsed(), i));
        run(&active.mounts, &step(i));
        parent = format!("s{i}");
        overlay.commit(&format!("a{i}"), &parent).unwrap();
    }
    times.sort();
    let (median, slowest) = (times[times.len() / 2], times[times.len() - 1]);
    println!(
        "prepare over 200 MiB / 20,000 files + {DEPTH} steps: median {:?}, slowest (a{}, flattening) {:?}; {} flattened view(s)",
        median.0,
        slowest.1,
        slowest.0,
        flats(&t.store).len()
    );
}

/// A chain made without flattened views (as by an older img) whose children are prepared by
/// several threads with their own store handles, as separate processes would: the parent is
/// flattened once, all 120 layers at a time, and every child mounts over that one view.
#[test]
fn concurrent_children_of_an_unflattened_deep_parent_share_one_flattening() {
    let t = store();
    let Ok(overlay) = t.store.snapshotter(BackendChoice::Overlayfs) else {
        common::cannot_run("overlayfs unavailable");
        return;
    };
    build_chain(&overlay);
    for flat in flats(&t.store) {
        fs::remove_dir_all(flat).unwrap();
    }
    let top = format!("s{}", DEPTH - 1);
    let native_store = store();
    let native = native_store
        .store
        .snapshotter(BackendChoice::Native)
        .unwrap();
    build_chain(&native);
    let want = mounted_view(&native.mounts(&top).unwrap(), false);
    let children: Vec<_> = (0..4)
        .map(|n| {
            let (state, top) = (t.store.state().clone(), top.clone());
            std::thread::spawn(move || {
                let store = Store::open(&state).unwrap();
                let s = store.snapshotter(BackendChoice::Overlayfs).unwrap();
                let start = Instant::now();
                let active = s.prepare(&format!("child{n}"), Some(&top)).unwrap();
                let took = start.elapsed();
                (lowerdir(&active.mounts).unwrap(), active.mounts, took)
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    let made = flats(&t.store);
    assert_eq!(made.len(), 1, "{made:?}");
    let flat = made.iter().next().unwrap().join("fs");
    for (lower, mounts, took) in &children {
        println!("child prepared in {took:?}");
        assert_eq!(lower, &flat.display().to_string());
        // An unchanged child shows the top's tree, as on the native backend.
        assert_eq!(mounted_view(mounts, false), want);
    }
}
