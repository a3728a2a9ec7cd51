//! The attestation manifest: its layout, and a real registry and skopeo taking it.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use common::{require_tool, Registry};
use img_attest::{
    provenance_statement, sbom_statement, AttestationManifest, BuildRecord, ScanReport,
    SpdxOptions, Statement, Subject,
};
use img_llb::{Digest, Platform};
use serde_json::{json, Value};

/// A real (if empty) image: one uncompressed empty tar layer, its config and manifest.
struct Image {
    layer: Vec<u8>,
    config: Vec<u8>,
    manifest: Vec<u8>,
}

fn image() -> Image {
    // Two zero blocks: the end of an empty tar archive.
    let layer = vec![0u8; 1024];
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [Digest::of(&layer).to_string()]},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": Digest::of(&config).to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": Digest::of(&layer).to_string(), "size": layer.len()}],
    }))
    .unwrap();
    Image {
        layer,
        config,
        manifest,
    }
}

fn statements(image_manifest: &Digest) -> Vec<Statement> {
    let platform = Platform::new("linux", "amd64");
    let subject = Subject::for_image(
        &["docker.io/library/app:1".into()],
        &platform,
        image_manifest,
    );
    let record = BuildRecord {
        frontend: "dockerfile.v0".into(),
        builder_platform: Some(platform),
        ..BuildRecord::default()
    };
    let sbom = ScanReport::default().to_spdx(&SpdxOptions::new(
        "app:1",
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    ));
    vec![
        provenance_statement(&record, subject.clone()),
        sbom_statement(&sbom, subject),
    ]
}

#[test]
fn the_layout_is_buildkits() {
    let image_manifest = Digest::of(&image().manifest);
    let statements = statements(&image_manifest);
    let attestation = AttestationManifest::new(&statements, &image_manifest, true);

    for (layer, statement) in attestation.layers.iter().zip(&statements) {
        assert_eq!(layer.bytes, statement.to_json());
        assert_eq!(layer.digest, Digest::of(&layer.bytes));
        let descriptor = serde_json::to_value(&layer.descriptor).unwrap();
        assert_eq!(
            descriptor,
            json!({
                "mediaType": "application/vnd.in-toto+json",
                "digest": layer.digest.to_string(),
                "size": layer.bytes.len(),
                "annotations": {"in-toto.io/predicate-type": statement.predicate_type},
            })
        );
    }
    assert_eq!(
        serde_json::from_slice::<Value>(&attestation.config.bytes).unwrap(),
        json!({
            "architecture": "unknown",
            "os": "unknown",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [
                attestation.layers[0].digest.to_string(),
                attestation.layers[1].digest.to_string(),
            ]},
        })
    );
    let manifest: Value = serde_json::from_slice(&attestation.manifest.bytes).unwrap();
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    assert_eq!(
        manifest["config"]["digest"],
        attestation.config.digest.to_string()
    );
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 2);
    assert_eq!(
        manifest["layers"][1]["annotations"]["in-toto.io/predicate-type"],
        "https://spdx.dev/Document"
    );
    assert_eq!(
        attestation.manifest.digest,
        Digest::of(&attestation.manifest.bytes)
    );

    let entry = serde_json::to_value(&attestation.index_entry).unwrap();
    assert_eq!(
        entry,
        json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": attestation.manifest.digest.to_string(),
            "size": attestation.manifest.bytes.len(),
            "annotations": {
                "vnd.docker.reference.type": "attestation-manifest",
                "vnd.docker.reference.digest": image_manifest.to_string(),
            },
            "platform": {"architecture": "unknown", "os": "unknown"},
        })
    );
    assert_eq!(attestation.blobs().count(), 4);
}

#[test]
fn docker_media_types_carry_no_layer_annotations() {
    let image_manifest = Digest::of(b"m");
    let attestation =
        AttestationManifest::new(&statements(&image_manifest), &image_manifest, false);
    let manifest: Value = serde_json::from_slice(&attestation.manifest.bytes).unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
    assert!(manifest["layers"][0].get("annotations").is_none());
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.in-toto+json"
    );
}

fn write_blob(layout: &Path, bytes: &[u8]) -> Digest {
    let digest = Digest::of(bytes);
    let dir = layout.join("blobs/sha256");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(digest.hex()), bytes).unwrap();
    digest
}

/// An OCI layout holding the image and its attestations under one index, tagged `latest`.
fn write_layout(layout: &Path) -> (Digest, AttestationManifest) {
    let image = image();
    write_blob(layout, &image.layer);
    write_blob(layout, &image.config);
    let image_manifest = write_blob(layout, &image.manifest);
    let attestation = AttestationManifest::new(&statements(&image_manifest), &image_manifest, true);
    for blob in attestation.blobs() {
        write_blob(layout, &blob.bytes);
    }
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "digest": image_manifest.to_string(), "size": image.manifest.len(),
             "platform": {"architecture": "amd64", "os": "linux"}},
            serde_json::to_value(&attestation.index_entry).unwrap(),
        ],
    }))
    .unwrap();
    let index_digest = write_blob(layout, &index);
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": index_digest.to_string(),
                "size": index.len(),
                "annotations": {"org.opencontainers.image.ref.name": "latest"},
            }],
        }))
        .unwrap(),
    )
    .unwrap();
    (image_manifest, attestation)
}

fn skopeo(args: &[&str]) -> Vec<u8> {
    let output = Command::new("skopeo").args(args).output().unwrap();
    assert!(
        output.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

#[test]
fn a_registry_stores_the_attestations_and_skopeo_reads_them_back() {
    if !require_tool("skopeo") || !require_tool("docker-registry") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let (image_manifest, attestation) = write_layout(&layout);

    let registry = Registry::start();
    let source = format!("oci:{}:latest", layout.display());
    let repository = format!("docker://127.0.0.1:{}/test/attested", registry.port);
    // skopeo checks every blob's digest and size on the way.
    skopeo(&[
        "copy",
        "--all",
        "--dest-tls-verify=false",
        &source,
        &format!("{repository}:1"),
    ]);

    let stored = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("{repository}@{}", attestation.manifest.digest),
    ]);
    assert_eq!(
        stored, attestation.manifest.bytes,
        "the registry kept our bytes"
    );
    let index: Value = serde_json::from_slice(&skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("{repository}:1"),
    ]))
    .unwrap();
    let entry = &index["manifests"][1];
    assert_eq!(
        entry["annotations"]["vnd.docker.reference.digest"],
        image_manifest.to_string()
    );
    assert_eq!(entry["platform"]["os"], "unknown");

    // And back into a layout: the statement layer comes back byte for byte.
    let copy = dir.path().join("copy");
    skopeo(&[
        "copy",
        "--all",
        "--src-tls-verify=false",
        &format!("{repository}:1"),
        &format!("oci:{}:latest", copy.display()),
    ]);
    let layer = &attestation.layers[1];
    let copied = std::fs::read(copy.join("blobs/sha256").join(layer.digest.hex())).unwrap();
    let statement: Value = serde_json::from_slice(&copied).unwrap();
    assert_eq!(statement["predicateType"], "https://spdx.dev/Document");
    assert_eq!(
        statement["subject"][0]["digest"]["sha256"],
        image_manifest.hex()
    );
}
