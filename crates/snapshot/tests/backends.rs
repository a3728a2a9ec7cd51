//! Both snapshotter backends on real mounts: the same change gives the same layer, and a
//! layer applied on either backend gives the same tree.

mod common;

use std::fs;
use std::path::Path;

use img_snapshot::{
    apply_layer, export_layer, run_mounted, ApplyOptions, Backend, BackendChoice, Compression,
    ExportOptions, LayerDescriptor, SnapshotError, SnapshotKind, Snapshotter, Store,
};

use common::{build_rich_tree, store, summarize};

const EPOCH: i64 = 1_700_000_000;

fn opts() -> ExportOptions {
    ExportOptions {
        compression: Compression::Gzip,
        source_date_epoch: Some(EPOCH),
        ..Default::default()
    }
}

fn overlay_available(store: &Store) -> Option<Snapshotter> {
    match store.snapshotter(BackendChoice::Overlayfs) {
        Ok(s) => Some(s),
        Err(e) => {
            common::cannot_run(&format!("overlayfs unavailable: {e}"));
            None
        }
    }
}

/// Runs `script` with the snapshot mounted, as a build step would.
fn change(s: &Snapshotter, key: &str, script: &str) {
    let target = tempfile::tempdir().unwrap();
    let mounts = s.mounts(key).unwrap();
    let status = run_mounted(&mounts, target.path(), &["/bin/sh", "-ec", script]).unwrap();
    assert!(status.success(), "{script}: {status:?}");
}

/// base layer -> committed "base" -> active "work" changed by `script` -> diff.
fn layer_for(
    store: &Store,
    s: &Snapshotter,
    base: &LayerDescriptor,
    script: &str,
) -> LayerDescriptor {
    let content = store.content();
    s.prepare("base-active", None).unwrap();
    let report = s.apply("base-active", &content, &base.digest).unwrap();
    assert_eq!(report.diff_id, base.diff_id);
    s.commit("base-active", "base").unwrap();
    s.prepare("work", Some("base")).unwrap();
    change(s, "work", script);
    s.diff("work", &content, &opts()).unwrap()
}

fn base_layer(store: &Store, dir: &Path) -> LayerDescriptor {
    let src = dir.join("base-src");
    fs::create_dir(&src).unwrap();
    build_rich_tree(&src);
    export_layer(&store.content(), &src, &opts()).unwrap()
}

fn tar_names(store: &Store, layer: &LayerDescriptor) -> Vec<String> {
    let blob = store.content().open(&layer.digest).unwrap();
    let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(blob));
    archive
        .entries()
        .unwrap()
        .map(|e| String::from_utf8(e.unwrap().path_bytes().into_owned()).unwrap())
        .collect()
}

const SCRIPT: &str = "
echo new > newfile
echo changed > dir/file
rm dir/exec
rm -r private
mkdir -p newdir/sub
ln -s ../../newfile newdir/sub/l
ln newfile newdir/hl
mkfifo newdir/fifo
chmod 0700 dir/sub
";

#[test]
fn both_backends_produce_identical_layers() {
    let native_store = store();
    let native = native_store
        .store
        .snapshotter(BackendChoice::Native)
        .unwrap();
    assert_eq!(native.backend(), Backend::Native);
    let base = base_layer(&native_store.store, native_store.dir.path());
    let native_layer = layer_for(&native_store.store, &native, &base, SCRIPT);
    let names = tar_names(&native_store.store, &native_layer);
    let want = [
        ".wh.private",
        "dir/",
        "dir/.wh.exec",
        "dir/file",
        "dir/sub/",
        "newdir/",
        "newdir/fifo",
        "newdir/hl",
        "newdir/sub/",
        "newdir/sub/l",
        "newfile",
    ];
    assert_eq!(names, want);

    let overlay_store = store();
    let Some(overlay) = overlay_available(&overlay_store.store) else {
        return;
    };
    // The same base blob in the second store.
    let blob = native_store
        .store
        .content()
        .read_blob(&base.digest)
        .unwrap();
    overlay_store
        .store
        .content()
        .write_blob(&blob, Some(&base.digest))
        .unwrap();
    let overlay_layer = layer_for(&overlay_store.store, &overlay, &base, SCRIPT);
    assert_eq!(tar_names(&overlay_store.store, &overlay_layer), names);
    assert_eq!(
        overlay_layer.diff_id, native_layer.diff_id,
        "same tar from both backends"
    );
    assert_eq!(
        overlay_layer.digest, native_layer.digest,
        "same blob from both backends"
    );
}

#[test]
fn overlay_opaque_directory_becomes_opaque_whiteout_and_applies_on_both_backends() {
    let t = store();
    let Some(overlay) = overlay_available(&t.store) else {
        return;
    };
    let base = base_layer(&t.store, t.dir.path());
    let layer = layer_for(
        &t.store,
        &overlay,
        &base,
        "rm -r dir; mkdir dir; echo fresh > dir/only",
    );
    let names = tar_names(&t.store, &layer);
    assert!(names.contains(&"dir/.wh..wh..opq".to_string()), "{names:?}");

    // Native: base + layer gives a dir holding only the new file.
    let native = t.store.snapshotter(BackendChoice::Native).unwrap();
    native.prepare("n-base", None).unwrap();
    native
        .apply("n-base", &t.store.content(), &base.digest)
        .unwrap();
    native.commit("n-base", "n-base-c").unwrap();
    native.prepare("n-top", Some("n-base-c")).unwrap();
    native
        .apply("n-top", &t.store.content(), &layer.digest)
        .unwrap();
    let tree = mounted_listing(&native, "n-top");
    assert!(
        tree.contains("./dir/only") && !tree.contains("./dir/file"),
        "{tree}"
    );

    // Overlay: applying writes an opaque directory, and the mounted view agrees.
    overlay.prepare("o-top", Some("base")).unwrap();
    overlay
        .apply("o-top", &t.store.content(), &layer.digest)
        .unwrap();
    let tree = mounted_listing(&overlay, "o-top");
    assert!(
        tree.contains("./dir/only") && !tree.contains("./dir/file"),
        "{tree}"
    );
}

fn mounted_listing(s: &Snapshotter, key: &str) -> String {
    let target = tempfile::tempdir().unwrap();
    let out = target
        .path()
        .join("..")
        .join(format!("listing-{}", std::process::id()));
    let out = out.canonicalize().unwrap_or(out);
    let script = format!("find . | sort > {}", out.display());
    let status = run_mounted(
        &s.mounts(key).unwrap(),
        target.path(),
        &["/bin/sh", "-c", &script],
    )
    .unwrap();
    assert!(status.success());
    let listing = fs::read_to_string(&out).unwrap();
    fs::remove_file(&out).unwrap();
    listing
}

#[test]
fn layer_from_either_backend_rebuilds_the_same_tree() {
    let t = store();
    let native = t.store.snapshotter(BackendChoice::Native).unwrap();
    let base = base_layer(&t.store, t.dir.path());
    let layer = layer_for(&t.store, &native, &base, SCRIPT);
    // Apply base + diff into a plain directory and compare with the changed native snapshot.
    let rebuilt = t.dir.path().join("rebuilt");
    fs::create_dir(&rebuilt).unwrap();
    for l in [&base, &layer] {
        apply_layer(
            t.store.content().open(&l.digest).unwrap(),
            &rebuilt,
            &ApplyOptions::default(),
        )
        .unwrap();
    }
    let listing = mounted_listing(&native, "work");
    let mut want: Vec<String> = summarize(&rebuilt)
        .keys()
        .map(|p| format!("./{}", p.display()))
        .collect();
    want.push(".".into());
    want.sort();
    let got: Vec<String> = listing.lines().map(str::to_owned).collect();
    assert_eq!(got, want);
}

#[test]
fn snapshot_lifecycle_and_errors() {
    let t = store();
    for s in [
        Some(t.store.snapshotter(BackendChoice::Native).unwrap()),
        overlay_available(&t.store),
    ]
    .into_iter()
    .flatten()
    {
        let p = |k: &str| format!("{}-{k}", s.backend());
        let active = s.prepare(&p("a"), None).unwrap();
        assert_eq!(active.mounts.len(), 1);
        assert!(matches!(
            s.prepare(&p("a"), None),
            Err(SnapshotError::Exists { .. })
        ));
        assert!(matches!(
            s.prepare(&p("b"), Some(&p("a"))),
            Err(SnapshotError::NotCommitted { .. })
        ));
        assert!(matches!(
            s.prepare(&p("b"), Some("missing")),
            Err(SnapshotError::NotFound { .. })
        ));
        change(&s, &p("a"), "echo hi > f");
        let info = s.commit(&p("a"), &p("a-c")).unwrap();
        assert_eq!(info.kind, SnapshotKind::Committed);
        assert!(info.size.unwrap() > 0);
        assert!(matches!(
            s.commit(&p("a-c"), &p("x")),
            Err(SnapshotError::NotActive { .. })
        ));
        s.prepare(&p("b"), Some(&p("a-c"))).unwrap();
        s.commit(&p("b"), &p("b-c")).unwrap();
        s.prepare(&p("c"), Some(&p("b-c"))).unwrap();
        let mounts = s.mounts(&p("c")).unwrap();
        if s.backend() == Backend::Overlayfs {
            let m = &mounts[0];
            assert_eq!(m.kind, "overlay");
            assert!(m.options.contains(&"userxattr".to_string()), "{m:?}");
            let lower = m
                .options
                .iter()
                .find(|o| o.starts_with("lowerdir="))
                .unwrap();
            assert_eq!(
                lower.matches(':').count(),
                1,
                "two lower layers, nearest first: {lower}"
            );
            // A read-only view of a committed chain has no upper directory.
            let ro = &s.mounts(&p("b-c")).unwrap()[0];
            assert!(
                ro.read_only() && !ro.options.iter().any(|o| o.starts_with("upperdir=")),
                "{ro:?}"
            );
        }
        change(&s, &p("c"), "test \"$(cat f)\" = hi");
        let f = s.host_path(&p("c"), Path::new("/f")).unwrap().unwrap();
        assert_eq!(fs::read(f).unwrap(), b"hi\n");
        assert_eq!(s.host_path(&p("c"), Path::new("missing")).unwrap(), None);
        assert_eq!(s.host_path(&p("c"), Path::new("../f")).unwrap(), None);
        assert!(matches!(
            s.remove(&p("b-c")),
            Err(SnapshotError::HasChildren { children: 1, .. })
        ));
        s.remove(&p("c")).unwrap();
        s.remove(&p("b-c")).unwrap();
        let keys: Vec<String> = s.list().unwrap().into_iter().map(|i| i.key).collect();
        assert!(keys.contains(&p("a-c")) && !keys.contains(&p("b-c")));
    }
}

#[test]
fn auto_backend_picks_overlay_when_the_probe_mounts() {
    let t = store();
    let auto = t.store.snapshotter(BackendChoice::Auto).unwrap();
    let expected = if t.store.snapshotter(BackendChoice::Overlayfs).is_ok() {
        Backend::Overlayfs
    } else {
        Backend::Native
    };
    assert_eq!(auto.backend(), expected);
    let native = t.store.snapshotter(BackendChoice::Native).unwrap();
    native.prepare("n", None).unwrap();
    if expected == Backend::Overlayfs {
        assert!(matches!(
            auto.mounts("n"),
            Err(SnapshotError::WrongBackend { .. })
        ));
    }
}

#[test]
fn overlay_apply_links_to_a_file_from_a_lower_layer() {
    let t = store();
    let Some(overlay) = overlay_available(&t.store) else {
        return;
    };
    let content = t.store.content();
    let base = base_layer(&t.store, t.dir.path());
    // A layer holding only a hardlink whose target ("hard1") lives in the base layer, and a
    // file in a directory ("private") that exists only below.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_path("alias").unwrap();
    h.set_link_name("hard1").unwrap();
    h.set_entry_type(tar::EntryType::Link);
    h.set_size(0);
    h.set_cksum();
    b.append(&h, std::io::empty()).unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_path("private/added").unwrap();
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_650_000_000);
    h.set_size(3);
    h.set_cksum();
    b.append(&h, &b"new"[..]).unwrap();
    let top = content
        .write_blob(&b.into_inner().unwrap(), None)
        .unwrap()
        .digest;

    overlay.prepare("b", None).unwrap();
    overlay.apply("b", &content, &base.digest).unwrap();
    overlay.commit("b", "b-c").unwrap();
    overlay.prepare("top", Some("b-c")).unwrap();
    overlay.apply("top", &content, &top).unwrap();
    let target = tempfile::tempdir().unwrap();
    // "private" was created in the upper directory only to hold the new file: it must keep
    // the lower directory's mode (0700 in the base).
    let script = "test \"$(cat alias)\" = linked && test \"$(cat private/added)\" = new \
                  && test \"$(stat -c %a private)\" = 700 && test -f dir/sub/big";
    let status = run_mounted(
        &overlay.mounts("top").unwrap(),
        target.path(),
        &["/bin/sh", "-ec", script],
    )
    .unwrap();
    assert!(status.success());
}

#[test]
fn a_snapshot_of_the_other_backend_is_neither_reused_nor_a_parent() {
    let t = store();
    let Some(overlay) = overlay_available(&t.store) else {
        return;
    };
    let native = t.store.snapshotter(BackendChoice::Native).unwrap();
    // An overlayfs snapshot's directory holds only its diff: a native child would copy that
    // diff as if it were the whole tree.
    let active = overlay.prepare("o", None).unwrap();
    drop(active);
    overlay.commit("o", "o-done").unwrap();
    assert!(overlay.lease_existing("o-done", &[]).unwrap().is_some());
    assert!(
        native.lease_existing("o-done", &[]).unwrap().is_none(),
        "a cache hit on another backend's snapshot must be a miss"
    );
    assert!(matches!(
        native.prepare("n-on-o", Some("o-done")),
        Err(SnapshotError::WrongBackend { .. })
    ));

    native.prepare("n", None).unwrap();
    native.commit("n", "n-done").unwrap();
    assert!(overlay.lease_existing("n-done", &[]).unwrap().is_none());
    assert!(matches!(
        overlay.prepare("o-on-n", Some("n-done")),
        Err(SnapshotError::WrongBackend { .. })
    ));
}
