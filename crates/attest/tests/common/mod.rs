//! Shared test helpers: an image-tree builder, the SPDX 2.3 schema's constraints, and the
//! rule that a missing tool fails under IMG_TEST_REQUIRE_TOOLS=1.

#![allow(dead_code)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Skips (or, under IMG_TEST_REQUIRE_TOOLS=1, fails) when `tool` is not on PATH.
pub fn require_tool(tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()));
    if !found {
        if std::env::var_os("IMG_TEST_REQUIRE_TOOLS").is_some_and(|v| v == "1") {
            panic!(
                "{tool} is not installed, and IMG_TEST_REQUIRE_TOOLS=1 requires every test to run"
            );
        }
        println!("skipping: {tool} is not installed (with IMG_TEST_REQUIRE_TOOLS=1 this fails)");
    }
    found
}

/// A directory standing for an image's root filesystem.
pub struct Tree {
    pub dir: tempfile::TempDir,
}

impl Tree {
    pub fn new() -> Self {
        Tree {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The host path of `path` (absolute within the image).
    pub fn host(&self, path: &str) -> PathBuf {
        self.root().join(path.trim_start_matches('/'))
    }

    pub fn write(&self, path: &str, content: impl AsRef<[u8]>) -> &Self {
        let host = self.host(path);
        std::fs::create_dir_all(host.parent().unwrap()).unwrap();
        std::fs::write(host, content).unwrap();
        self
    }

    pub fn symlink(&self, path: &str, target: impl AsRef<Path>) -> &Self {
        let host = self.host(path);
        std::fs::create_dir_all(host.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, host).unwrap();
        self
    }
}

fn keys(object: &Value) -> HashSet<&str> {
    object
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect()
}

/// Checks an object against a schema entry: every required key present, no key the schema
/// does not define (the SPDX 2.3 schema sets `additionalProperties: false` everywhere).
fn check_object(what: &str, object: &Value, required: &[&str], allowed: &[&str]) {
    let present = keys(object);
    for key in required {
        assert!(
            present.contains(key),
            "{what}: required {key} missing in {object}"
        );
    }
    for key in &present {
        assert!(
            required.contains(key) || allowed.contains(key),
            "{what}: {key} is not an SPDX 2.3 property"
        );
    }
}

fn is_spdx_id(id: &str) -> bool {
    id.strip_prefix("SPDXRef-").is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
    })
}

/// Validates a document against the SPDX 2.3 JSON schema's required properties, allowed
/// properties and enumerations (spdx-spec `schemas/spdx-schema-2-3.json`), plus the
/// specification's rules the schema leaves out: SPDXID syntax, unique ids, relationships that
/// name existing elements, and a DESCRIBES from the document.
pub fn validate_spdx(document: &Value) {
    check_object(
        "document",
        document,
        &[
            "SPDXID",
            "creationInfo",
            "dataLicense",
            "name",
            "spdxVersion",
        ],
        &[
            "annotations",
            "comment",
            "externalDocumentRefs",
            "hasExtractedLicensingInfos",
            "revieweds",
            "documentNamespace",
            "documentDescribes",
            "packages",
            "files",
            "snippets",
            "relationships",
        ],
    );
    assert_eq!(document["spdxVersion"], "SPDX-2.3");
    assert_eq!(document["dataLicense"], "CC0-1.0");
    assert_eq!(document["SPDXID"], "SPDXRef-DOCUMENT");
    // Required by the specification (6.5), though not by the schema.
    let namespace = document["documentNamespace"]
        .as_str()
        .expect("documentNamespace");
    assert!(namespace.starts_with("https://") && !namespace.contains('#'));

    let creation = &document["creationInfo"];
    check_object(
        "creationInfo",
        creation,
        &["created", "creators"],
        &["comment", "licenseListVersion"],
    );
    assert!(
        !creation["creators"].as_array().unwrap().is_empty(),
        "creators: minItems 1"
    );
    let created = creation["created"].as_str().unwrap();
    assert!(
        created.ends_with('Z') && created.len() == 20,
        "created {created} is not UTC seconds"
    );

    let mut ids = HashSet::from(["SPDXRef-DOCUMENT".to_string()]);
    for package in document["packages"].as_array().expect("packages") {
        check_object(
            "package",
            package,
            &["SPDXID", "downloadLocation", "name"],
            &[
                "annotations",
                "attributionTexts",
                "builtDate",
                "checksums",
                "comment",
                "copyrightText",
                "description",
                "externalRefs",
                "filesAnalyzed",
                "hasFiles",
                "homepage",
                "licenseComments",
                "licenseConcluded",
                "licenseDeclared",
                "licenseInfoFromFiles",
                "originator",
                "packageFileName",
                "packageVerificationCode",
                "primaryPackagePurpose",
                "releaseDate",
                "sourceInfo",
                "summary",
                "supplier",
                "validUntilDate",
                "versionInfo",
            ],
        );
        let id = package["SPDXID"].as_str().unwrap();
        assert!(is_spdx_id(id), "bad SPDXID {id}");
        assert!(ids.insert(id.to_string()), "duplicate SPDXID {id}");
        if let Some(purpose) = package.get("primaryPackagePurpose") {
            let allowed = [
                "OTHER",
                "INSTALL",
                "ARCHIVE",
                "FIRMWARE",
                "APPLICATION",
                "FRAMEWORK",
                "LIBRARY",
                "CONTAINER",
                "SOURCE",
                "DEVICE",
                "OPERATING_SYSTEM",
                "FILE",
            ];
            assert!(allowed.contains(&purpose.as_str().unwrap()));
        }
        for reference in package
            .get("externalRefs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            check_object(
                "externalRef",
                reference,
                &["referenceCategory", "referenceLocator", "referenceType"],
                &["comment"],
            );
            let category = reference["referenceCategory"].as_str().unwrap();
            assert!(["OTHER", "PERSISTENT-ID", "SECURITY", "PACKAGE-MANAGER"].contains(&category));
            assert!(!reference["referenceLocator"]
                .as_str()
                .unwrap()
                .contains(' '));
        }
    }
    let extracted: HashSet<&str> = document
        .get("hasExtractedLicensingInfos")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|info| {
            check_object(
                "extracted license",
                info,
                &["extractedText", "licenseId"],
                &["comment", "crossRefs", "name", "seeAlsos"],
            );
            info["licenseId"].as_str().unwrap()
        })
        .collect();
    for package in document["packages"].as_array().unwrap() {
        for field in ["licenseDeclared", "licenseConcluded"] {
            let Some(license) = package[field].as_str() else {
                continue;
            };
            if license == "NOASSERTION" || license == "NONE" {
                continue;
            }
            // Annex D: an expression of license-list ids and LicenseRefs, checked strictly.
            let expression = spdx::Expression::parse(license)
                .unwrap_or_else(|e| panic!("{field} {license:?} is no SPDX expression: {e}"));
            for requirement in expression.requirements() {
                if let spdx::LicenseItem::Other(other) = &requirement.req.license {
                    let id = format!("LicenseRef-{}", other.lic_ref);
                    assert!(
                        extracted.contains(id.as_str()),
                        "{id} has no extracted text"
                    );
                }
            }
        }
    }
    let mut describes = false;
    for relationship in document["relationships"].as_array().expect("relationships") {
        check_object(
            "relationship",
            relationship,
            &["spdxElementId", "relatedSpdxElement", "relationshipType"],
            &["comment"],
        );
        for end in ["spdxElementId", "relatedSpdxElement"] {
            let id = relationship[end].as_str().unwrap();
            assert!(ids.contains(id), "relationship names unknown element {id}");
        }
        let kind = relationship["relationshipType"].as_str().unwrap();
        assert!(
            ["DESCRIBES", "CONTAINS"].contains(&kind),
            "unexpected {kind}"
        );
        describes |= kind == "DESCRIBES" && relationship["spdxElementId"] == "SPDXRef-DOCUMENT";
    }
    assert!(describes, "no DESCRIBES relationship from the document");
}

/// Debian's `docker-registry` on a loopback port, serving from a temporary directory; killed
/// on drop.
pub struct Registry {
    pub port: u16,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Registry {
        use std::io::{BufRead, BufReader, Write};
        use std::net::{TcpListener, TcpStream};
        use std::time::{Duration, Instant};

        let dir = tempfile::tempdir().unwrap();
        for attempt in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let instance = format!("{}-{attempt}-{port}", std::process::id());
            let config = format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n  headers:\n    X-Img-Test-Instance: [{instance}]\n",
                dir.path().join("storage").display()
            );
            let config_path = dir.path().join("config.yml");
            std::fs::write(&config_path, config).unwrap();
            let log_path = dir.path().join("registry.log");
            let log = std::fs::File::create(&log_path).unwrap();
            let mut child = std::process::Command::new("docker-registry")
                .arg("serve")
                .arg(&config_path)
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("cannot run docker-registry (apt-get install docker-registry)");
            // Generous: a loaded machine may be slow to start it; one that fails exits at once.
            let deadline = Instant::now() + Duration::from_secs(120);
            let answers = || {
                let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
                    return false;
                };
                if stream.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n").is_err() {
                    return false;
                }
                let want = format!("x-img-test-instance: {instance}");
                BufReader::new(stream)
                    .lines()
                    .map_while(Result::ok)
                    .take_while(|l| !l.is_empty())
                    .any(|l| l.to_ascii_lowercase() == want)
            };
            while Instant::now() < deadline {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                if answers() {
                    return Registry {
                        port,
                        child,
                        _dir: dir,
                    };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            assert!(
                log.contains("address already in use"),
                "registry did not start: {log}"
            );
        }
        panic!("registry did not start: every port tried was taken");
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
