//! Interoperability with skopeo through the real registry, both ways.

mod common;

use std::process::Command;

use common::*;
use img_registry::{no_progress, Client, Digest, DirBlobStore, Platform, PushOptions, Reference};

fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .output()
        .expect("cannot run skopeo: this test needs it (apt-get install skopeo)");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn pulls_what_skopeo_pushed() {
    let registry = TestRegistry::start(RegistryAuth::Anonymous);
    let layout_dir = tempfile::tempdir().unwrap();
    let layout = DirBlobStore::new(layout_dir.path()).unwrap();
    let image = build_image(
        &layout,
        &[
            vec![("a.txt", b"from skopeo".to_vec())],
            vec![("b.bin", noise(50_000))],
        ],
    );
    write_oci_layout(&layout, &image, "v1");
    let dest_ref = format!("docker://{}/interop/from-skopeo:v1", registry.host());
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", layout_dir.path().display()),
        &dest_ref,
    ]);

    let docker = tempfile::tempdir().unwrap();
    let client = Client::new(client_config(docker.path()));
    let reference =
        Reference::parse(&format!("{}/interop/from-skopeo:v1", registry.host())).unwrap();
    let dest = DirBlobStore::new(tempfile::tempdir().unwrap().keep()).unwrap();
    let resolved = client
        .pull(&reference, &Platform::host(), &dest, &no_progress)
        .unwrap();
    let layers: Vec<Digest> = resolved.layers.iter().map(|d| d.digest().clone()).collect();
    assert_eq!(layers, image.layers);
    for d in &image.layers {
        assert_eq!(read(&dest.blob_path(d)), read(&layout.blob_path(d)));
    }
    let config: serde_json::Value = serde_json::from_slice(&resolved.config).unwrap();
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
    assert_eq!(resolved.manifest.media_type, img_registry::OCI_MANIFEST);

    // The same image converted by skopeo to Docker schema 2 media types.
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--format",
        "v2s2",
        &format!("oci:{}:v1", layout_dir.path().display()),
        &format!("docker://{}/interop/from-skopeo-v2s2:v1", registry.host()),
    ]);
    let v2s2 =
        Reference::parse(&format!("{}/interop/from-skopeo-v2s2:v1", registry.host())).unwrap();
    let dest = DirBlobStore::new(tempfile::tempdir().unwrap().keep()).unwrap();
    let resolved = client
        .pull(&v2s2, &Platform::host(), &dest, &no_progress)
        .unwrap();
    assert_eq!(resolved.manifest.media_type, img_registry::DOCKER_MANIFEST);
    assert_eq!(resolved.layers.len(), 2);
    for d in &resolved.layers {
        assert!(dest.blob_path(d.digest()).is_file());
    }
}

#[test]
fn skopeo_reads_what_img_pushed() {
    let registry = TestRegistry::start(RegistryAuth::Anonymous);
    let src = DirBlobStore::new(tempfile::tempdir().unwrap().keep()).unwrap();
    let image = build_image(
        &src,
        &[
            vec![("etc/os-release", b"ID=img\n".to_vec())],
            vec![("data", noise(80_000))],
        ],
    );
    let docker = tempfile::tempdir().unwrap();
    let client = Client::new(client_config(docker.path()));
    let reference = Reference::parse(&format!("{}/interop/from-img:v2", registry.host())).unwrap();
    let digest = client
        .push(
            &reference,
            &image.manifest,
            &src,
            &PushOptions::default(),
            &no_progress,
        )
        .unwrap();

    let src_ref = format!("docker://{}/interop/from-img:v2", registry.host());
    let inspect: serde_json::Value =
        serde_json::from_str(&skopeo(&["inspect", "--tls-verify=false", &src_ref])).unwrap();
    assert_eq!(inspect["Digest"], digest.to_string());
    assert_eq!(inspect["Os"], "linux");
    let layers: Vec<String> = image.layers.iter().map(|d| d.to_string()).collect();
    assert_eq!(inspect["Layers"], serde_json::json!(layers));

    let out_dir = tempfile::tempdir().unwrap();
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &src_ref,
        &format!("oci:{}:copied", out_dir.path().display()),
    ]);
    let copied = DirBlobStore::new(out_dir.path()).unwrap();
    for d in &image.layers {
        assert_eq!(read(&copied.blob_path(d)), read(&src.blob_path(d)), "{d}");
    }
}
