//! Provenance predicates against BuildKit's field names and min/max rules.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use img_attest::{
    provenance_predicate, provenance_statement, BuildRecord, BuildStep, Material, ProvenanceMode,
    SecretUse, Subject,
};
use img_llb::{Digest, Platform};
use oci_spec::image::{Descriptor, MediaType};
use serde_json::{json, Value};

const DOCKERFILE: &str = "FROM alpine:3.19 AS base\nRUN apk add --no-cache curl\nCOPY . /src\n";

fn keys(value: &Value) -> BTreeSet<&str> {
    value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect()
}

fn set<'a>(names: &[&'a str]) -> BTreeSet<&'a str> {
    names.iter().copied().collect()
}

fn record(mode: ProvenanceMode) -> BuildRecord {
    let alpine = Digest::of(b"alpine index");
    let layer = Descriptor::new(
        MediaType::ImageLayerGzip,
        1234,
        Digest::of(b"layer").to_oci(),
    );
    BuildRecord {
        mode,
        builder_id: "https://github.com/img-build/img/actions/runs/1".into(),
        frontend: "dockerfile.v0".into(),
        dockerfile_path: Some("Dockerfile".into()),
        remote_context: None,
        build_args: BTreeMap::from([("VERSION".into(), "1.2.3".into())]),
        labels: BTreeMap::from([("org.opencontainers.image.title".into(), "app".into())]),
        target: Some("base".into()),
        frontend_attrs: BTreeMap::from([
            ("no-cache".into(), "".into()),
            ("platform".into(), "linux/amd64".into()),
            ("image-resolve-mode".into(), "pull".into()),
            ("attest:provenance".into(), "mode=max".into()),
        ]),
        secrets: vec![SecretUse {
            id: "npmrc".into(),
            optional: false,
        }],
        ssh: vec![SecretUse {
            id: "default".into(),
            optional: true,
        }],
        locals: vec!["context".into(), "dockerfile".into()],
        materials: vec![
            Material::Http {
                url: "https://example.com/tool.tgz".into(),
                digest: Digest::of(b"tool"),
            },
            Material::Image {
                reference: "docker.io/library/alpine:3.19".into(),
                platform: Some(Platform::new("linux", "amd64")),
                digest: alpine,
            },
            Material::Git {
                url: "https://github.com/moby/buildkit.git#v0.12.0".into(),
                commit: "4b220de5058abfd01ff619c9d2ff6b09a049bea0".into(),
            },
        ],
        builder_platform: Some(Platform::new("linux", "arm64")),
        invocation_id: "rpv7a389uzil5lqmrgwhijwjz".into(),
        started: Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_120)),
        finished: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_060)),
        reproducible: false,
        network_access: true,
        vcs: BTreeMap::from([
            ("source".into(), "https://github.com/img-build/img".into()),
            ("revision".into(), "".into()),
        ]),
        steps: vec![
            BuildStep {
                op: json!({"source": {"identifier": "docker-image://docker.io/library/alpine:3.19"}}),
                digest: Some(Digest::of(b"op0")),
                source_lines: vec![(1, 1)],
                layers: vec![layer],
                ..BuildStep::default()
            },
            BuildStep {
                op: json!({"exec": {"meta": {"args": ["/bin/sh", "-c", "apk add --no-cache curl"]}}}),
                inputs: vec![(0, 0)],
                digest: Some(Digest::of(b"op1")),
                source_lines: vec![(2, 2)],
                ..BuildStep::default()
            },
        ],
        dockerfile: Some(("Dockerfile".into(), DOCKERFILE.as_bytes().to_vec())),
    }
}

#[test]
fn min_mode_has_buildkits_fields_and_drops_arguments_secrets_and_steps() {
    let predicate = provenance_predicate(&record(ProvenanceMode::Min));
    assert_eq!(
        keys(&predicate),
        set(&[
            "builder",
            "buildType",
            "materials",
            "invocation",
            "metadata"
        ])
    );
    assert_eq!(
        predicate["buildType"],
        "https://mobyproject.org/buildkit@v1"
    );
    assert_eq!(
        predicate["builder"]["id"],
        "https://github.com/img-build/img/actions/runs/1"
    );

    // Images first, then git, then HTTP, each with its digest.
    assert_eq!(
        predicate["materials"],
        json!([
            {"uri": "pkg:docker/alpine@3.19?platform=linux%2Famd64",
             "digest": {"sha256": Digest::of(b"alpine index").hex()}},
            {"uri": "https://github.com/moby/buildkit.git#v0.12.0",
             "digest": {"sha1": "4b220de5058abfd01ff619c9d2ff6b09a049bea0"}},
            {"uri": "https://example.com/tool.tgz",
             "digest": {"sha256": Digest::of(b"tool").hex()}},
        ])
    );

    let invocation = &predicate["invocation"];
    assert_eq!(
        keys(invocation),
        set(&["configSource", "parameters", "environment"])
    );
    assert_eq!(
        invocation["configSource"],
        json!({"entryPoint": "Dockerfile"})
    );
    assert_eq!(
        invocation["environment"],
        json!({"platform": "linux/arm64"})
    );
    assert_eq!(
        invocation["parameters"],
        json!({
            "frontend": "dockerfile.v0",
            "args": {"no-cache": "", "target": "base"},
            "locals": [{"name": "context"}, {"name": "dockerfile"}],
        })
    );

    let metadata = &predicate["metadata"];
    assert_eq!(
        keys(metadata),
        set(&[
            "buildInvocationID",
            "buildStartedOn",
            "buildFinishedOn",
            "completeness",
            "reproducible",
            "https://mobyproject.org/buildkit@v1#metadata",
        ])
    );
    assert_eq!(metadata["buildInvocationID"], "rpv7a389uzil5lqmrgwhijwjz");
    assert_eq!(metadata["buildStartedOn"], "2023-11-14T22:13:20.12Z");
    assert_eq!(metadata["buildFinishedOn"], "2023-11-14T22:14:20Z");
    // Build arguments were left out, and a local context is not a tracked material.
    assert_eq!(
        metadata["completeness"],
        json!({"parameters": false, "environment": true, "materials": false})
    );
    assert_eq!(metadata["reproducible"], false);
    assert_eq!(
        metadata["https://mobyproject.org/buildkit@v1#metadata"],
        json!({"vcs": {"source": "https://github.com/img-build/img"}})
    );

    let text = predicate.to_string();
    for absent in [
        "1.2.3",
        "VERSION",
        "npmrc",
        "org.opencontainers",
        "llbDefinition",
    ] {
        assert!(!text.contains(absent), "min mode leaks {absent}");
    }
}

#[test]
fn max_mode_records_arguments_ids_steps_sources_and_layers() {
    let predicate = provenance_predicate(&record(ProvenanceMode::Max));
    assert_eq!(
        keys(&predicate),
        set(&[
            "builder",
            "buildType",
            "materials",
            "invocation",
            "buildConfig",
            "metadata"
        ])
    );
    let parameters = &predicate["invocation"]["parameters"];
    assert_eq!(
        parameters["args"],
        json!({
            "build-arg:VERSION": "1.2.3",
            "label:org.opencontainers.image.title": "app",
            "no-cache": "",
            "target": "base",
        }),
        "host-specific and attest: options are dropped"
    );
    assert_eq!(parameters["secrets"], json!([{"id": "npmrc"}]));
    assert_eq!(
        parameters["ssh"],
        json!([{"id": "default", "optional": true}])
    );
    assert_eq!(
        predicate["metadata"]["completeness"]["parameters"], true,
        "max mode has every argument"
    );

    let config = &predicate["buildConfig"];
    assert_eq!(keys(config), set(&["llbDefinition", "digestMapping"]));
    let steps = config["llbDefinition"].as_array().unwrap();
    assert_eq!(keys(&steps[0]), set(&["id", "op"]));
    assert_eq!(steps[0]["id"], "step0");
    assert_eq!(steps[1]["id"], "step1");
    assert_eq!(steps[1]["inputs"], json!(["step0:0"]));
    assert_eq!(
        steps[1]["op"]["exec"]["meta"]["args"][2],
        "apk add --no-cache curl"
    );
    assert_eq!(
        config["digestMapping"][Digest::of(b"op1").to_string()],
        "step1"
    );

    let buildkit = &predicate["metadata"]["https://mobyproject.org/buildkit@v1#metadata"];
    assert_eq!(keys(buildkit), set(&["vcs", "source", "layers"]));
    assert_eq!(
        buildkit["source"]["locations"]["step1"],
        json!({"locations": [{"ranges": [{"start": {"line": 2}, "end": {"line": 2}}]}]})
    );
    let info = &buildkit["source"]["infos"][0];
    assert_eq!(info["filename"], "Dockerfile");
    assert_eq!(info["language"], "Dockerfile");
    let data = base64::engine::general_purpose::STANDARD
        .decode(info["data"].as_str().unwrap())
        .unwrap();
    assert_eq!(data, DOCKERFILE.as_bytes());
    let layers = &buildkit["layers"]["step0:0"];
    assert_eq!(layers[0][0]["digest"], Digest::of(b"layer").to_string());
    assert_eq!(
        layers[0][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_eq!(layers[0][0]["size"], 1234);
}

#[test]
fn a_build_arg_named_like_a_secret_is_never_recorded() {
    let mut record = record(ProvenanceMode::Max);
    record.build_args.insert(
        "npmrc".into(),
        "//registry.npmjs.org/:_authToken=s3cr3t".into(),
    );
    let predicate = provenance_predicate(&record);
    assert!(!predicate.to_string().contains("s3cr3t"));
    assert_eq!(
        predicate["invocation"]["parameters"]["args"]["build-arg:VERSION"],
        "1.2.3"
    );
    assert_eq!(predicate["metadata"]["completeness"]["parameters"], false);
}

#[test]
fn a_remote_context_is_the_config_source_with_its_commit() {
    let mut record = record(ProvenanceMode::Min);
    record.remote_context = Some("https://github.com/moby/buildkit.git#v0.12.0".into());
    record.locals.clear();
    record.network_access = false;
    record.build_args.clear();
    record.labels.clear();
    let predicate = provenance_predicate(&record);
    assert_eq!(
        predicate["invocation"]["configSource"],
        json!({
            "uri": "https://github.com/moby/buildkit.git#v0.12.0",
            "digest": {"sha1": "4b220de5058abfd01ff619c9d2ff6b09a049bea0"},
            "entryPoint": "Dockerfile",
        })
    );
    let metadata = &predicate["metadata"];
    assert_eq!(
        metadata["completeness"],
        json!({"parameters": true, "environment": true, "materials": true})
    );
    assert_eq!(
        metadata["https://mobyproject.org/buildkit@v1#hermetic"],
        true
    );
}

#[test]
fn an_empty_record_writes_what_buildkit_always_writes() {
    let predicate = provenance_predicate(&BuildRecord {
        builder_platform: Some(Platform::new("linux", "amd64")),
        ..BuildRecord::default()
    });
    assert_eq!(
        predicate,
        json!({
            "builder": {"id": ""},
            "buildType": "https://mobyproject.org/buildkit@v1",
            "invocation": {
                "configSource": {},
                "parameters": {},
                "environment": {"platform": "linux/amd64"},
            },
            "metadata": {
                "completeness": {"parameters": false, "environment": true, "materials": true},
                "reproducible": false,
                "https://mobyproject.org/buildkit@v1#metadata": {},
                "https://mobyproject.org/buildkit@v1#hermetic": true,
            },
        })
    );
}

#[test]
fn the_statement_names_each_image_and_keeps_in_totos_field_order() {
    let manifest = Digest::of(b"image manifest");
    let subject = Subject::for_image(
        &[
            "docker.io/library/app:1".into(),
            "registry.local:5000/team/app:latest".into(),
        ],
        &Platform::new("linux", "arm").with_variant(Some("v7")),
        &manifest,
    );
    let statement = provenance_statement(&record(ProvenanceMode::Min), subject);
    let bytes = statement.to_json();
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(
        text.starts_with(r#"{"_type":"https://in-toto.io/Statement/v0.1","predicateType":"https://slsa.dev/provenance/v0.2","subject":["#),
        "{text}"
    );
    let value: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        value["subject"],
        json!([
            {"name": "pkg:docker/app@1?platform=linux%2Farm%2Fv7", "digest": {"sha256": manifest.hex()}},
            {"name": "pkg:docker/registry.local%3A5000/team/app@latest?platform=linux%2Farm%2Fv7",
             "digest": {"sha256": manifest.hex()}},
        ])
    );
    assert_eq!(
        value["predicate"]["buildType"],
        "https://mobyproject.org/buildkit@v1"
    );
}
