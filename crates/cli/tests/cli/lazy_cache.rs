//! Lazy `--cache-from`: a hit needs only the cache metadata; layers are downloaded when a step
//! or an export needs them, and a push to the registry the cache is in downloads none. The
//! registry's access log counts what was really downloaded.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::fixtures::Registry;
use crate::remote_cache::{cached, ran, Pod};
use crate::{assert_success, stderr};

/// Two steps writing random bytes, then a last step whose only input is a build argument.
const DOCKERFILE: &str = "FROM busybox
RUN head -c 32 /dev/urandom | od -An -tx1 > /r
RUN head -c 32 /dev/urandom | od -An -tx1 > /s
ARG LAST
RUN echo \"$LAST\" > /t
";

/// The layers of a manifest in the registry, bottom first.
fn layers(reference: &str) -> Vec<String> {
    let raw = crate::fixtures::skopeo_raw_manifest(reference);
    let doc: Value = serde_json::from_slice(&raw).unwrap();
    doc["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_owned())
        .collect()
}

/// The config blob of the cache manifest at `reference`: the one blob a hit reads.
fn config_blob(reference: &str) -> String {
    let raw = crate::fixtures::skopeo_raw_manifest(reference);
    let doc: Value = serde_json::from_slice(&raw).unwrap();
    doc["config"]["digest"].as_str().unwrap().to_owned()
}

/// Layer blobs `registry` served since `before` GETs, the cache config left out.
fn layer_downloads(registry: &Registry, before: usize, config: &str) -> BTreeSet<String> {
    registry.blob_gets()[before..]
        .iter()
        .filter(|d| *d != config)
        .cloned()
        .collect()
}

/// Pod A builds with LAST=1 and exports a mode=max cache to `cache`; returns pod A.
/// The pod's state directory holds no snapshot: nothing was unpacked.
fn assert_no_snapshots(pod: &Pod) {
    let snapshots = pod
        .img
        .store()
        .snapshotter(img_snapshot::BackendChoice::Auto)
        .unwrap()
        .list()
        .unwrap();
    assert!(snapshots.is_empty(), "{snapshots:?}");
}

fn pod_a(cache: &str) -> Pod {
    let a = Pod::new(DOCKERFILE);
    a.build(&[
        "--build-arg",
        "LAST=1",
        "--cache-to",
        &format!("type=registry,ref={cache},mode=max"),
    ]);
    a
}

/// Reads `/<name>` from the layers of the image at `reference`, pulled with skopeo.
fn file_in_image(reference: &str, name: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let oci = dir.path().join("oci");
    crate::tool(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{reference}"),
            &format!("oci:{}", oci.display()),
        ],
    );
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    for layer in layers(reference) {
        let blob = oci
            .join("blobs/sha256")
            .join(layer.trim_start_matches("sha256:"));
        crate::tool(
            "tar",
            &[
                "-xzf",
                blob.to_str().unwrap(),
                "-C",
                rootfs.to_str().unwrap(),
            ],
        );
    }
    std::fs::read_to_string(rootfs.join(name)).unwrap()
}

#[test]
fn a_push_from_a_fresh_pod_downloads_no_layer() {
    let registry = Registry::anonymous();
    let cache = format!("{}/ci/app:buildcache", registry.host());
    let a = pod_a(&cache);
    let config = config_blob(&cache);

    let b = Pod::with_base_of(&a, DOCKERFILE);
    // Another repository of the same registry: every layer is mounted from the cache's.
    let image = format!("{}/ci/deploy:1", registry.host());
    let before = registry.blob_gets().len();
    let args = [
        "--build-arg",
        "LAST=1",
        "--cache-from",
        &cache,
        "-t",
        &image,
        "--push",
    ];
    let out = b.run(&args);
    assert_success(&out, &args);
    let progress = stderr(&out);
    for step in ["> /r", "> /s", "> /t"] {
        assert!(cached(&progress, step), "{step} ran in pod B:\n{progress}");
    }
    assert!(!progress.contains("warning"), "{progress}");
    // The registry served the cache config and nothing else.
    assert_eq!(
        layer_downloads(&registry, before, &config),
        BTreeSet::new(),
        "{progress}"
    );
    assert!(
        progress.contains("0 layers downloaded and verified, 0 B; 0 layers unpacked"),
        "{progress}"
    );
    assert!(progress.contains("Mounted from ci/app"), "{progress}");
    // Nothing was unpacked: not even the base image.
    assert_no_snapshots(&b);

    // The pushed image is pod A's: its layers are the cache's, and its random bytes A's.
    let cache_layers: BTreeSet<String> = layers(&cache).into_iter().collect();
    let pushed = layers(&image);
    assert_eq!(pushed.len(), 4, "{pushed:?}");
    assert!(
        pushed.iter().all(|l| cache_layers.contains(l)),
        "{pushed:?} vs {cache_layers:?}"
    );
    assert_eq!(file_in_image(&image, "r"), a.file("r"));
    assert_eq!(file_in_image(&image, "s"), a.file("s"));
}

#[test]
fn an_oci_archive_downloads_blobs_but_unpacks_nothing() {
    let registry = Registry::anonymous();
    let cache = format!("{}/ci/oci:buildcache", registry.host());
    let a = pod_a(&cache);
    let config = config_blob(&cache);
    let cache_layers = layers(&cache);

    let c = Pod::with_base_of(&a, DOCKERFILE);
    let before = registry.blob_gets().len();
    let args = [
        "--build-arg",
        "LAST=1",
        "--cache-from",
        &cache,
        "-o",
        "type=oci,dest=image.tar",
    ];
    let out = c.run(&args);
    assert_success(&out, &args);
    let progress = stderr(&out);
    assert!(cached(&progress, "> /t"), "{progress}");
    // The three layers of this build were downloaded (busybox's was here), none unpacked.
    let downloaded = layer_downloads(&registry, before, &config);
    assert_eq!(downloaded.len(), 3, "{downloaded:?}");
    assert!(
        downloaded.iter().all(|d| cache_layers.contains(d)),
        "{downloaded:?}"
    );
    assert!(progress.contains("0 layers unpacked"), "{progress}");
    assert_no_snapshots(&c);
    // The archive holds them.
    let listing = crate::tool(
        "tar",
        &["-tf", c.img.dir().join("image.tar").to_str().unwrap()],
    );
    for layer in &downloaded {
        let name = format!("blobs/sha256/{}", layer.trim_start_matches("sha256:"));
        assert!(listing.contains(&name), "{name} not in {listing}");
    }

    // The blobs are here now: the next build on this state directory needs no cache import.
    let before = registry.blob_gets().len();
    let args = ["--build-arg", "LAST=1", "-o", "type=oci,dest=again.tar"];
    let out = c.run(&args);
    assert_success(&out, &args);
    let progress = stderr(&out);
    for step in ["> /r", "> /s", "> /t"] {
        assert!(cached(&progress, step), "{step} ran again:\n{progress}");
    }
    assert_eq!(registry.blob_gets().len(), before, "{progress}");
}

#[test]
fn a_changed_last_step_downloads_only_the_chain_under_it() {
    let registry = Registry::anonymous();
    let cache = format!("{}/ci/last:buildcache", registry.host());
    let a = pod_a(&cache);
    let config = config_blob(&cache);
    // The image pod A's build makes: busybox, /r, /s, /t.
    let full = Pod::with_base_of(&a, DOCKERFILE);
    let reference = format!("{}/ci/last:1", registry.host());
    let args = [
        "--build-arg",
        "LAST=1",
        "--cache-from",
        &cache,
        "-t",
        &reference,
        "--push",
    ];
    assert_success(&full.run(&args), &args);
    let chain = layers(&reference);

    let d = Pod::with_base_of(&a, DOCKERFILE);
    let image = format!("{}/ci/last:2", registry.host());
    let before = registry.blob_gets().len();
    let args = [
        "--build-arg",
        "LAST=2",
        "--cache-from",
        &cache,
        "-t",
        &image,
        "--push",
    ];
    let out = d.run(&args);
    assert_success(&out, &args);
    let progress = stderr(&out);
    assert!(cached(&progress, "> /r"), "{progress}");
    assert!(cached(&progress, "> /s"), "{progress}");
    assert!(ran(&progress, "> /t"), "{progress}");
    // The /r and /s layers, under the step that ran; never /t's old layer.
    let want: BTreeSet<String> = chain[1..3].iter().cloned().collect();
    assert_eq!(
        layer_downloads(&registry, before, &config),
        want,
        "{progress}"
    );
    assert!(
        progress.contains("2 layers downloaded and verified"),
        "{progress}"
    );
    assert!(progress.contains("3 layers unpacked"), "{progress}");
    assert_eq!(file_in_image(&image, "r"), a.file("r"));
    assert_eq!(file_in_image(&image, "t"), "2\n");
}

#[test]
fn a_corrupt_layer_runs_the_step_or_fails_an_export_clearly() {
    let registry = Registry::anonymous();
    let cache = format!("{}/ci/bad:buildcache", registry.host());
    let a = pod_a(&cache);
    let reference = format!("{}/ci/bad:1", registry.host());
    let args = [
        "--build-arg",
        "LAST=1",
        "--cache-from",
        &cache,
        "-t",
        &reference,
        "--push",
    ];
    assert_success(&Pod::with_base_of(&a, DOCKERFILE).run(&args), &args);
    // Damage /s's layer in the registry: same size, other bytes.
    let s_layer = layers(&reference)[2].clone();
    let file = registry.blob_file(&s_layer);
    let size = std::fs::metadata(&file).unwrap().len() as usize;
    std::fs::write(&file, vec![b'x'; size]).unwrap();

    // A step needs it: refused with a warning, and the step runs instead.
    let e = Pod::with_base_of(&a, DOCKERFILE);
    let progress = e.build(&["--build-arg", "LAST=3", "--cache-from", &cache]);
    assert!(
        progress.contains(&format!("layer {s_layer} refused")),
        "{progress}"
    );
    assert!(ran(&progress, "> /s"), "{progress}");
    assert_eq!(e.file("r"), a.file("r"));
    assert_ne!(e.file("s"), a.file("s"));
    assert_eq!(e.file("t"), "3\n");

    // A push to another registry reads it when nothing can fall back any more: a clear
    // error naming the layer.
    let elsewhere = Registry::anonymous();
    let f = Pod::with_base_of(&a, DOCKERFILE);
    let image = format!("{}/other/app:1", elsewhere.host());
    let out = f.run(&[
        "--build-arg",
        "LAST=1",
        "--cache-from",
        &cache,
        "-t",
        &image,
        "--push",
    ]);
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains(&format!("cannot push {image}")), "{text}");
    assert!(text.contains(&s_layer), "{text}");
    assert!(!text.contains("panicked"), "{text}");
}
