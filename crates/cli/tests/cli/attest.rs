//! `img build --provenance/--sbom/--attest`: attestation manifests in the image index as
//! BuildKit lays them out, read back from real OCI archives, a real registry (skopeo) and
//! docker archives.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use crate::fixtures::{skopeo_raw_manifest, store_busybox_for_builds, Registry, StoredImage};
use crate::{assert_stderr_contains, assert_success, stderr, tool, Img};

const BASE: &str = "docker.io/library/busybox:latest";

/// A dpkg status database with one package.
const DPKG_STATUS: &str = "\
Package: hello
Status: install ok installed
Priority: optional
Section: devel
Installed-Size: 100
Maintainer: Example <example@example.com>
Architecture: amd64
Version: 2.10-3
Description: the classic greeting
";

const CARGO_LOCK: &str = r#"version = 3

[[package]]
name = "serde"
version = "1.0.0"
source = "registry+https://github.com/rust-lang/crates.io-index"
"#;

const PACKAGE_LOCK: &str = r#"{
  "name": "app",
  "lockfileVersion": 3,
  "packages": {
    "": {"name": "app"},
    "node_modules/left-pad": {"version": "1.3.0", "license": "WTFPL"}
  }
}"#;

/// An image with a package of each kind the SBOM must find.
const PACKAGES: &str = "\
FROM busybox
ARG FLAVOUR
COPY status /var/lib/dpkg/status
COPY Cargo.lock package-lock.json /app/
RUN echo \"$FLAVOUR\" > /flavour
";

/// A test's state with the busybox base stored and a context holding the package files.
fn setup() -> (Img, StoredImage) {
    let img = Img::new();
    let base = store_busybox_for_builds(&img.store(), BASE);
    std::fs::write(img.dir().join("status"), DPKG_STATUS).unwrap();
    std::fs::write(img.dir().join("Cargo.lock"), CARGO_LOCK).unwrap();
    std::fs::write(img.dir().join("package-lock.json"), PACKAGE_LOCK).unwrap();
    (img, base)
}

fn build(img: &Img, dockerfile: &str, args: &[&str]) -> Output {
    std::fs::write(img.dir().join("Dockerfile"), dockerfile).unwrap();
    let mut all = vec!["--progress", "plain", "build"];
    all.extend_from_slice(args);
    all.push(".");
    let out = img.run(&all);
    assert_success(&out, &all);
    out
}

/// An OCI archive unpacked: its blobs by digest.
struct Layout {
    dir: tempfile::TempDir,
}

impl Layout {
    fn unpack(archive: &Path) -> Layout {
        let dir = tempfile::tempdir().unwrap();
        tool(
            "tar",
            &[
                "-xf",
                archive.to_str().unwrap(),
                "-C",
                dir.path().to_str().unwrap(),
            ],
        );
        Layout { dir }
    }

    /// A layout directory already on disk (skopeo's `oci:` output).
    fn at(dir: PathBuf) -> Layout {
        let temp = tempfile::tempdir().unwrap();
        tool(
            "cp",
            &[
                "-a",
                &format!("{}/.", dir.display()),
                temp.path().to_str().unwrap(),
            ],
        );
        Layout { dir: temp }
    }

    fn blob(&self, digest: &str) -> Vec<u8> {
        let hex = digest.strip_prefix("sha256:").unwrap();
        let path = self.dir.path().join("blobs/sha256").join(hex);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn json(&self, digest: &str) -> Value {
        serde_json::from_slice(&self.blob(digest)).unwrap()
    }

    /// The image index `index.json` points at.
    fn index(&self) -> Value {
        let top: Value =
            serde_json::from_slice(&std::fs::read(self.dir.path().join("index.json")).unwrap())
                .unwrap();
        let entry = &top["manifests"][0];
        assert_eq!(
            entry["mediaType"], "application/vnd.oci.image.index.v1+json",
            "{top}"
        );
        self.json(entry["digest"].as_str().unwrap())
    }

    /// Every blob's bytes.
    fn all_blobs(&self) -> Vec<(String, Vec<u8>)> {
        std::fs::read_dir(self.dir.path().join("blobs/sha256"))
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect()
    }
}

/// The statements of an attestation manifest, by predicate type, checking the layout.
fn statements(layout: &Layout, entry: &Value) -> BTreeMap<String, Value> {
    let manifest = layout.json(entry["digest"].as_str().unwrap());
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let config = layout.json(manifest["config"]["digest"].as_str().unwrap());
    assert_eq!(config["architecture"], "unknown");
    assert_eq!(config["os"], "unknown");
    let mut found = BTreeMap::new();
    for layer in manifest["layers"].as_array().unwrap() {
        assert_eq!(layer["mediaType"], "application/vnd.in-toto+json");
        let statement = layout.json(layer["digest"].as_str().unwrap());
        assert_eq!(statement["_type"], "https://in-toto.io/Statement/v0.1");
        let kind = layer["annotations"]["in-toto.io/predicate-type"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(statement["predicateType"], kind.as_str());
        found.insert(kind, statement);
    }
    found
}

const SLSA: &str = "https://slsa.dev/provenance/v0.2";
const SPDX: &str = "https://spdx.dev/Document";

/// Checks the attestation entry `attestation` refers to `image` (an index entry).
fn assert_attests(attestation: &Value, image: &Value) {
    assert_eq!(attestation["platform"]["os"], "unknown", "{attestation}");
    assert_eq!(attestation["platform"]["architecture"], "unknown");
    let annotations = &attestation["annotations"];
    assert_eq!(
        annotations["vnd.docker.reference.type"],
        "attestation-manifest"
    );
    assert_eq!(annotations["vnd.docker.reference.digest"], image["digest"]);
}

#[test]
fn provenance_and_sbom_go_in_an_index_next_to_one_platform_image() {
    let (img, base) = setup();
    build(
        &img,
        PACKAGES,
        &[
            "--provenance=mode=max",
            "--sbom=true",
            "--build-arg",
            "FLAVOUR=sweet",
            "-t",
            "app:1",
            "-o",
            "type=oci,dest=app.tar",
        ],
    );
    let layout = Layout::unpack(&img.dir().join("app.tar"));
    let index = layout.index();
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{index}");
    let image = &entries[0];
    assert_eq!(image["platform"]["os"], "linux");
    assert_eq!(
        image["platform"]["architecture"],
        img_llb::Platform::host().architecture.as_str()
    );
    assert_attests(&entries[1], image);

    let found = statements(&layout, &entries[1]);
    assert_eq!(
        found.keys().collect::<Vec<_>>(),
        [SLSA, SPDX],
        "one statement of each"
    );
    let image_hex = image["digest"]
        .as_str()
        .unwrap()
        .strip_prefix("sha256:")
        .unwrap();
    for statement in found.values() {
        let subject = &statement["subject"][0];
        assert_eq!(subject["digest"]["sha256"], image_hex, "{subject}");
        assert!(
            subject["name"]
                .as_str()
                .unwrap()
                .starts_with("pkg:docker/app@1?platform=linux"),
            "{subject}"
        );
    }

    let provenance = &found[SLSA]["predicate"];
    let materials = provenance["materials"].as_array().unwrap();
    assert!(
        materials
            .iter()
            .any(|m| m["uri"].as_str().unwrap().contains("busybox")
                && m["digest"]["sha256"] == base.manifest.hex()),
        "the base image with its digest: {materials:?}"
    );
    let parameters = &provenance["invocation"]["parameters"];
    assert_eq!(parameters["frontend"], "dockerfile.v0");
    assert_eq!(
        parameters["args"]["build-arg:FLAVOUR"], "sweet",
        "{parameters}"
    );
    assert_eq!(
        provenance["invocation"]["configSource"]["entryPoint"],
        "Dockerfile"
    );
    let steps = provenance["buildConfig"]["llbDefinition"]
        .as_array()
        .unwrap();
    assert!(steps.len() >= 3, "the build's steps in max mode: {steps:?}");

    let sbom = &found[SPDX]["predicate"];
    assert_eq!(sbom["spdxVersion"], "SPDX-2.3");
    let purls: Vec<&str> = sbom["packages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["externalRefs"].as_array().into_iter().flatten())
        .filter_map(|r| r["referenceLocator"].as_str())
        .collect();
    for want in [
        "hello@2.10-3",
        "pkg:cargo/serde@1.0.0",
        "pkg:npm/left-pad@1.3.0",
    ] {
        assert!(
            purls.iter().any(|p| p.contains(want)),
            "{want} not in {purls:?}"
        );
    }
    assert!(purls.iter().any(|p| p.starts_with("pkg:deb/")), "{purls:?}");

    // min mode: no build arguments, no steps.
    build(
        &img,
        PACKAGES,
        &[
            "--attest",
            "type=provenance",
            "--build-arg",
            "FLAVOUR=sweet",
            "-o",
            "type=oci,dest=min.tar",
        ],
    );
    let layout = Layout::unpack(&img.dir().join("min.tar"));
    let index = layout.index();
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{index}");
    let found = statements(&layout, &entries[1]);
    assert_eq!(found.keys().collect::<Vec<_>>(), [SLSA]);
    let provenance = &found[SLSA]["predicate"];
    let text = provenance.to_string();
    assert!(
        !text.contains("FLAVOUR"),
        "min mode records no build args: {text}"
    );
    assert!(provenance.get("buildConfig").is_none(), "{text}");
    assert_eq!(
        provenance["metadata"]["completeness"]["parameters"], false,
        "{text}"
    );
    let subject = &found[SLSA]["subject"][0];
    assert_eq!(
        subject["name"], "_",
        "an unnamed image's subject: {subject}"
    );

    // Without the flags: a plain image, as before.
    build(&img, PACKAGES, &["-o", "type=oci,dest=plain.tar"]);
    let top: Value = serde_json::from_slice(
        &std::fs::read(
            Layout::unpack(&img.dir().join("plain.tar"))
                .dir
                .path()
                .join("index.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        top["manifests"][0]["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
}

#[test]
fn source_date_epoch_makes_attestations_reproducible() {
    let (img, _) = setup();
    let mut digests = Vec::new();
    for dest in ["one.tar", "two.tar"] {
        let mut cmd = img.command();
        std::fs::write(img.dir().join("Dockerfile"), PACKAGES).unwrap();
        let args = [
            "--progress",
            "plain",
            "build",
            "--sbom=true",
            "--provenance=mode=min",
            "-o",
            &format!("type=oci,dest={dest}"),
            ".",
        ];
        let out = cmd
            .args(args)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .output()
            .unwrap();
        assert_success(&out, &args);
        let layout = Layout::unpack(&img.dir().join(dest));
        let index = layout.index();
        let found = statements(&layout, &index["manifests"][1]);
        let metadata = &found[SLSA]["predicate"]["metadata"];
        assert_eq!(metadata["buildStartedOn"], "2023-11-14T22:13:20Z");
        assert_eq!(metadata["buildFinishedOn"], "2023-11-14T22:13:20Z");
        // The SBOM is the same bytes from the same tree at the same time.
        digests.push(found[SPDX]["predicate"].to_string());
    }
    assert_eq!(digests[0], digests[1]);
}

#[test]
fn attestations_are_pushed_with_the_image_and_read_back_by_skopeo() {
    let registry = Registry::anonymous();
    let (img, _) = setup();
    let name = format!("{}/test/attested:1", registry.host());
    build(
        &img,
        PACKAGES,
        &["--provenance=true", "--sbom=true", "-t", &name, "--push"],
    );
    let index: Value = serde_json::from_slice(&skopeo_raw_manifest(&name)).unwrap();
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{index}");
    assert_attests(&entries[1], &entries[0]);

    let copied = img.dir().join("copied");
    tool(
        "skopeo",
        &[
            "copy",
            "--all",
            "--src-tls-verify=false",
            &format!("docker://{name}"),
            &format!("oci:{}:1", copied.display()),
        ],
    );
    let layout = Layout::at(copied);
    let found = statements(&layout, &entries[1]);
    assert_eq!(found.keys().collect::<Vec<_>>(), [SLSA, SPDX]);
    let subject = &found[SPDX]["subject"][0];
    assert!(
        subject["name"]
            .as_str()
            .unwrap()
            // The port's colon is percent-encoded in the purl's namespace.
            .starts_with(&format!(
                "pkg:docker/{}/test/attested@1",
                registry.host().replace(':', "%3A")
            )),
        "{subject}"
    );
    // The image store keeps the index under the name too.
    let listed = img.ok(&["ls"]);
    assert!(listed.contains("test/attested"), "{listed}");
}

#[test]
fn a_secret_value_appears_in_no_blob() {
    let (img, _) = setup();
    const VALUE: &str = "s3cr3t-token-value-7f1c";
    std::fs::write(img.dir().join("token.txt"), VALUE).unwrap();
    let dockerfile = "\
FROM busybox
RUN --mount=type=secret,id=tok wc -c < /run/secrets/tok > /secret-size
";
    build(
        &img,
        dockerfile,
        &[
            "--secret",
            "id=tok,src=token.txt",
            "--build-arg",
            &format!("tok={VALUE}"),
            "--provenance=mode=max",
            "--sbom=true",
            "-o",
            "type=oci,dest=app.tar",
        ],
    );
    let archive = std::fs::read(img.dir().join("app.tar")).unwrap();
    assert!(
        !String::from_utf8_lossy(&archive).contains(VALUE),
        "the secret is in the archive"
    );
    let layout = Layout::unpack(&img.dir().join("app.tar"));
    for (name, blob) in layout.all_blobs() {
        // Layers are compressed: look inside them too.
        let plain = match tool_output("zcat", &blob) {
            Some(plain) => plain,
            None => blob.clone(),
        };
        for bytes in [&blob, &plain] {
            assert!(
                !String::from_utf8_lossy(bytes).contains(VALUE),
                "the secret is in blob {name}"
            );
        }
    }
    // The provenance names the secret by id, and says parameters are incomplete.
    let index = layout.index();
    let found = statements(&layout, &index["manifests"][1]);
    let parameters = &found[SLSA]["predicate"]["invocation"]["parameters"];
    assert_eq!(parameters["secrets"][0]["id"], "tok", "{parameters}");
    assert!(
        parameters["args"].get("build-arg:tok").is_none(),
        "{parameters}"
    );
}

/// `program` fed `input`; its output when it succeeds.
fn tool_output(program: &str, input: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write;
    let mut child = std::process::Command::new(program)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().ok()?;
    let _ = writer.join();
    out.status.success().then_some(out.stdout)
}

#[test]
fn a_docker_archive_drops_attestations_with_a_warning() {
    let (img, _) = setup();
    let out = build(
        &img,
        PACKAGES,
        &[
            "--sbom=true",
            "-t",
            "app:1",
            "-o",
            "type=docker,dest=app.tar",
        ],
    );
    assert_stderr_contains(&out, "type=docker cannot hold attestations");
    let unpacked = tempfile::tempdir().unwrap();
    tool(
        "tar",
        &[
            "-xf",
            img.dir().join("app.tar").to_str().unwrap(),
            "-C",
            unpacked.path().to_str().unwrap(),
        ],
    );
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(unpacked.path().join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest.as_array().unwrap().len(), 1, "{manifest}");
    assert_eq!(manifest[0]["RepoTags"][0], "docker.io/library/app:1");
    let listing = tool("tar", &["-tf", img.dir().join("app.tar").to_str().unwrap()]);
    assert!(!listing.contains("index.json"), "{listing}");
    // The warning is on standard error only, after the progress.
    assert!(!String::from_utf8_lossy(&out.stdout).contains("attestations"));

    // With an output that holds them too, the OCI archive keeps them and the docker archive
    // still gets the image alone.
    let out = build(
        &img,
        PACKAGES,
        &[
            "--sbom=true",
            "-o",
            "type=docker,dest=both.tar,name=app:2",
            "-o",
            "type=oci,dest=both-oci.tar",
        ],
    );
    assert_stderr_contains(&out, "type=docker cannot hold attestations");
    let layout = Layout::unpack(&img.dir().join("both-oci.tar"));
    assert_eq!(layout.index()["manifests"].as_array().unwrap().len(), 2);
    let listing = tool(
        "tar",
        &["-tf", img.dir().join("both.tar").to_str().unwrap()],
    );
    assert!(
        listing.contains("manifest.json"),
        "{stderr}",
        stderr = stderr(&out)
    );
    assert!(!listing.contains("index.json"), "{listing}");
}

#[test]
fn bad_attestation_flags_are_refused_before_building() {
    let (img, _) = setup();
    std::fs::write(img.dir().join("Dockerfile"), PACKAGES).unwrap();
    for (flag, message) in [
        ("--provenance=mode=everything", "give mode=min or mode=max"),
        (
            "--sbom=generator=example/scanner",
            "cannot run the SBOM generator",
        ),
        ("--attest=type=vex", "unknown attestation type"),
    ] {
        img.fails(&["build", flag, "."], message);
    }
}

#[test]
fn each_platform_image_gets_its_attestation_manifest() {
    let registry = Registry::anonymous();
    let base = crate::multiplatform::serve_busybox(&registry);
    let img = Img::new();
    std::fs::write(img.dir().join("a"), "a\n").unwrap();
    let dockerfile = format!("FROM {base}\nCOPY a /a\n");
    build(
        &img,
        &dockerfile,
        &[
            "--platform",
            "linux/amd64,linux/arm64",
            "--provenance=true",
            "-t",
            "app:1",
            "-o",
            "type=oci,dest=app.tar",
        ],
    );
    let layout = Layout::unpack(&img.dir().join("app.tar"));
    let index = layout.index();
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 4, "{index}");
    let mut material_digests = Vec::new();
    for (i, arch) in ["amd64", "arm64"].iter().enumerate() {
        assert_eq!(entries[i]["platform"]["architecture"], *arch);
        let attestation = &entries[i + 2];
        assert_attests(attestation, &entries[i]);
        let found = statements(&layout, attestation);
        let statement = &found[SLSA];
        let subject = statement["subject"][0]["name"].as_str().unwrap();
        assert!(subject.ends_with(&format!("linux%2F{arch}")), "{subject}");
        let materials = statement["predicate"]["materials"].as_array().unwrap();
        assert_eq!(materials.len(), 1, "{materials:?}");
        material_digests.push(materials[0]["digest"]["sha256"].clone());
    }
    assert_ne!(
        material_digests[0], material_digests[1],
        "each platform names the manifest it was built on"
    );
}
