//! Content store, image store, OCI layout, garbage collection and concurrent use.

mod common;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use img_snapshot::{
    export_layer, BackendChoice, ContentError, ContentStore, Digest, ExportOptions, GcRoots,
    ImageError, StateDir, Store, UsageKind, REF_NAME_ANNOTATION,
};
use oci_spec::image::{Descriptor, MediaType};

use common::store;

fn which(tool: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
}

/// Writes a one-layer image (layer, config, manifest) and returns the manifest descriptor.
fn write_image(store: &Store, dir: &Path, file_content: &[u8]) -> (Descriptor, Vec<Digest>) {
    let content = store.content();
    let src = tempfile::tempdir_in(dir).unwrap();
    fs::create_dir(src.path().join("etc")).unwrap();
    fs::write(src.path().join("etc/hello"), file_content).unwrap();
    let layer = export_layer(&content, src.path(), &ExportOptions::default()).unwrap();
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id.to_string()]},
    });
    let config = content
        .write_blob(&serde_json::to_vec(&config).unwrap(), None)
        .unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.digest.to_string(), "size": config.size},
        "layers": [serde_json::to_value(layer.to_oci()).unwrap()],
    });
    let manifest = content
        .write_blob(&serde_json::to_vec(&manifest).unwrap(), None)
        .unwrap();
    let desc = Descriptor::new(
        MediaType::ImageManifest,
        manifest.size,
        manifest.digest.to_oci(),
    );
    (desc, vec![manifest.digest, config.digest, layer.digest])
}

#[test]
fn ingest_verifies_digest_and_stores_nothing_on_mismatch() {
    let t = store();
    let content = t.store.content();
    let good = Digest::of(b"payload");
    let info = content.write_blob(b"payload", Some(&good)).unwrap();
    assert_eq!(info.digest, good);
    assert!(content.exists(&good));
    assert_eq!(content.size(&good).unwrap(), 7);
    // A second identical write is a no-op.
    content.write_blob(b"payload", Some(&good)).unwrap();

    let wrong = Digest::of(b"something else");
    let mut w = content.ingest(Some(&wrong)).unwrap();
    w.write_all(b"payload!").unwrap();
    match w.commit() {
        Err(ContentError::DigestMismatch { expected, size, .. }) => {
            assert_eq!(expected, wrong);
            assert_eq!(size, 8);
        }
        other => panic!("expected mismatch, got {other:?}"),
    }
    assert!(!content.exists(&wrong));
    assert!(!content.exists(&Digest::of(b"payload!")));
    assert_eq!(
        fs::read_dir(t.store.state().tmp()).unwrap().count(),
        0,
        "no staging file left"
    );
    assert!(matches!(
        content.open(&wrong),
        Err(ContentError::NotFound { .. })
    ));
    content.delete(&good).unwrap();
    assert!(!content.exists(&good));
}

#[test]
fn image_names_are_kept_in_the_database_and_the_oci_index() {
    let t = store();
    let (desc, _) = write_image(&t.store, t.dir.path(), b"hi");
    let images = t.store.images();
    images.put("localhost/app:v1", &desc).unwrap();
    images.tag("localhost/app:v1", "app:latest").unwrap();
    assert_eq!(images.get("app:latest").unwrap().unwrap().target, desc);
    let names: Vec<String> = images.list().unwrap().into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["app:latest", "localhost/app:v1"]);
    assert!(matches!(
        images.tag("missing", "x"),
        Err(ImageError::NotFound { .. })
    ));
    assert!(matches!(
        images.put("bad name", &desc),
        Err(ImageError::InvalidName { .. })
    ));
    let absent = Descriptor::new(MediaType::ImageManifest, 1, Digest::of(b"absent").to_oci());
    assert!(matches!(
        images.put("app:absent", &absent),
        Err(ImageError::MissingTarget { .. })
    ));

    let index = || -> serde_json::Value {
        serde_json::from_slice(&fs::read(t.store.state().content().join("index.json")).unwrap())
            .unwrap()
    };
    let refs = |v: serde_json::Value| -> Vec<String> {
        v["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                m["annotations"][REF_NAME_ANNOTATION]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(refs(index()), ["app:latest", "localhost/app:v1"]);
    assert!(images.remove("app:latest").unwrap());
    assert!(!images.remove("app:latest").unwrap());
    assert_eq!(refs(index()), ["localhost/app:v1"]);
    let layout: serde_json::Value =
        serde_json::from_slice(&fs::read(t.store.state().content().join("oci-layout")).unwrap())
            .unwrap();
    assert_eq!(layout["imageLayoutVersion"], "1.0.0");
}

#[test]
fn skopeo_and_umoci_read_the_store() {
    let t = store();
    let (desc, digests) = write_image(&t.store, t.dir.path(), b"from the store\n");
    t.store.images().put("app:v1", &desc).unwrap();
    let layout = t.store.state().content();
    let reference = format!("{}:app:v1", layout.display());
    if which("skopeo").is_some() {
        let out = Command::new("skopeo")
            .args(["inspect", &format!("oci:{reference}")])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo inspect: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(info["Digest"], digests[0].to_string());
        assert_eq!(info["Layers"][0], digests[2].to_string());
    } else {
        common::cannot_run("skopeo is not installed, so the store is not checked with it");
    }
    if which("umoci").is_some() {
        let bundle = t.dir.path().join("bundle");
        let out = Command::new("umoci")
            .args(["unpack", "--image", &reference])
            .arg(&bundle)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "umoci unpack: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            fs::read(bundle.join("rootfs/etc/hello")).unwrap(),
            b"from the store\n"
        );
    } else {
        common::cannot_run("umoci is not installed, so the store is not checked with it");
    }
}

#[test]
fn gc_keeps_images_roots_and_leases_and_frees_the_rest() {
    let t = store();
    let s = &t.store;
    let content = s.content();
    let (desc, image_blobs) = write_image(s, t.dir.path(), b"kept");
    s.images().put("app:v1", &desc).unwrap();
    let orphan = content.write_blob(&vec![1u8; 50_000], None).unwrap().digest;
    let rooted = content
        .write_blob(b"solver cache record", None)
        .unwrap()
        .digest;
    let lease = s.lease(Duration::from_secs(3600)).unwrap();
    let mut w = content.ingest(None).unwrap().with_lease(&lease);
    w.write_all(b"in-flight build output").unwrap();
    let leased = w.commit().unwrap().digest;

    let snap = s.snapshotter(BackendChoice::Native).unwrap();
    snap.prepare("root-a", None).unwrap();
    snap.commit("root-a", "root").unwrap();
    snap.prepare("child-a", Some("root")).unwrap();
    snap.commit("child-a", "child").unwrap();
    snap.prepare("loose-a", None).unwrap();
    snap.with_lease(&lease)
        .prepare("leased", Some("child"))
        .unwrap();

    let roots = GcRoots {
        blobs: vec![rooted],
        snapshots: vec![],
    };
    let report = s.gc(&roots).unwrap();
    assert_eq!(report.blobs_removed, vec![orphan]);
    let mut removed = report.snapshots_removed.clone();
    removed.sort();
    assert_eq!(removed, ["loose-a"]);
    assert!(report.bytes_reclaimed >= 50_000);
    for d in image_blobs.iter().chain([&rooted, &leased]) {
        assert!(content.exists(d), "{d} must survive");
    }
    // The leased snapshot keeps its parents.
    assert!(snap.stat("child").is_ok() && snap.stat("root").is_ok());

    drop(lease);
    let report = s
        .gc(&GcRoots {
            blobs: vec![],
            snapshots: vec!["root".into()],
        })
        .unwrap();
    let mut removed = report.snapshots_removed.clone();
    removed.sort();
    assert_eq!(removed, ["child", "leased"]);
    let mut want = vec![rooted, leased];
    want.sort();
    assert_eq!(report.blobs_removed, want);
    assert!(snap.stat("root").is_ok());

    s.images().remove("app:v1").unwrap();
    let report = s.gc(&GcRoots::default()).unwrap();
    assert_eq!(report.blobs_removed.len(), 3);
    assert_eq!(report.snapshots_removed, ["root"]);
    assert!(content.list().unwrap().is_empty());
    assert_eq!(fs::read_dir(s.state().snapshots()).unwrap().count(), 0);
}

#[test]
fn disk_usage_lists_blobs_and_snapshots() {
    let t = store();
    let d = t
        .store
        .content()
        .write_blob(&vec![0u8; 10_000], None)
        .unwrap()
        .digest;
    let snap = t.store.snapshotter(BackendChoice::Native).unwrap();
    snap.prepare("s", None).unwrap();
    let du = t.store.disk_usage().unwrap();
    assert!(du
        .iter()
        .any(|r| r.kind == UsageKind::Blob && r.id == d.to_string() && r.size >= 10_000));
    assert!(du
        .iter()
        .any(|r| r.kind == UsageKind::Snapshot && r.id == "s"));
}

const PROCS: usize = 6;
const CHILD_ENV: &str = "IMG_SNAPSHOT_TEST_CHILD_STATE";

/// Run by `concurrent_processes_share_a_state_dir` in several processes at once.
#[test]
#[ignore = "run as a child process by concurrent_processes_share_a_state_dir"]
fn concurrent_child() {
    let Some(state) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let id = std::env::var("IMG_SNAPSHOT_TEST_CHILD_ID").unwrap();
    let store = Store::open(&StateDir::at(state)).unwrap();
    let content: ContentStore = store.content();
    let snap = store.snapshotter(BackendChoice::Native).unwrap();
    for i in 0..20 {
        // Shared blobs raced by every process, and private ones.
        let shared = content
            .write_blob(format!("shared {i}").as_bytes(), None)
            .unwrap();
        content
            .write_blob(format!("private {id} {i}").as_bytes(), None)
            .unwrap();
        let desc = Descriptor::new(
            MediaType::ImageManifest,
            shared.size,
            shared.digest.to_oci(),
        );
        store
            .images()
            .put(&format!("p{id}/img:{i}"), &desc)
            .unwrap();
        store.images().put("shared:latest", &desc).unwrap();
        let key = format!("{id}-{i}");
        snap.prepare(&key, None).unwrap();
        snap.commit(&key, &format!("{key}-c")).unwrap();
    }
}

#[test]
fn concurrent_processes_share_a_state_dir() {
    let t = store();
    let state = t.store.state().root().to_owned();
    let exe = std::env::current_exe().unwrap();
    let procs: Vec<_> = (0..PROCS)
        .map(|id| {
            Command::new(&exe)
                .args([
                    "--ignored",
                    "--exact",
                    "concurrent_child",
                    "--test-threads",
                    "1",
                ])
                .env(CHILD_ENV, &state)
                .env("IMG_SNAPSHOT_TEST_CHILD_ID", id.to_string())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for p in procs {
        let out = p.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "child failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let store = Store::open(&StateDir::at(&state)).unwrap();
    let names = store.images().list().unwrap();
    assert_eq!(names.len(), PROCS * 20 + 1);
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(state.join("content/index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"].as_array().unwrap().len(),
        PROCS * 20 + 1,
        "index.json matches the database"
    );
    let snaps = store
        .snapshotter(BackendChoice::Native)
        .unwrap()
        .list()
        .unwrap();
    assert_eq!(snaps.len(), PROCS * 20);
    assert_eq!(store.content().list().unwrap().len(), 20 + PROCS * 20);
}

#[test]
fn gc_running_alongside_a_build_never_takes_leased_items() {
    let t = store();
    let state = t.store.state().clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let collector = {
        let stop = stop.clone();
        let state = state.clone();
        std::thread::spawn(move || {
            // A second process would open its own store; a second connection behaves the same.
            let store = Store::open(&state).unwrap();
            let mut runs = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                store.gc(&GcRoots::default()).unwrap();
                runs += 1;
            }
            runs
        })
    };
    let build = Store::open(&state).unwrap();
    let snap = build.snapshotter(BackendChoice::Native).unwrap();
    for i in 0..40 {
        let lease = build.lease(Duration::from_secs(600)).unwrap();
        let leased_snap = snap.with_lease(&lease);
        let mut w = build.content().ingest(None).unwrap().with_lease(&lease);
        w.write_all(format!("step {i}").as_bytes()).unwrap();
        let blob = w.commit().unwrap().digest;
        leased_snap.prepare(&format!("step-{i}"), None).unwrap();
        leased_snap
            .commit(&format!("step-{i}"), &format!("step-{i}-c"))
            .unwrap();
        std::thread::sleep(Duration::from_millis(2));
        assert!(
            build.content().exists(&blob),
            "step {i}: leased blob collected"
        );
        assert!(
            snap.stat(&format!("step-{i}-c")).is_ok(),
            "step {i}: leased snapshot collected"
        );
        lease.release().unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(collector.join().unwrap() > 0);
    // Released leases leave nothing behind once gc runs again.
    build.gc(&GcRoots::default()).unwrap();
    assert!(build.content().list().unwrap().is_empty());
}
