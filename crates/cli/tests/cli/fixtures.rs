//! Test images and a real registry.
//!
//! The base image is a busybox root filesystem built from Debian's static `/bin/busybox`
//! (package busybox-static), stored as a one-layer OCI image through img-snapshot's API, the
//! way a build stores its result.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Command};

use std::time::{Duration, Instant};

use img_snapshot::{export_layer, Digest, ExportOptions, Store};
use oci_spec::image::{Descriptor, MediaType};

/// Commands linked to busybox in the test image.
const APPLETS: &[&str] = &["sh", "ls", "echo", "cat", "true"];

/// What was stored.
pub struct StoredImage {
    pub name: String,
    pub manifest: Digest,
    pub config: Digest,
    pub layer: Digest,
}

/// Writes a busybox rootfs into `root`.
pub fn busybox_rootfs(root: &Path) {
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox"))
        .expect("/bin/busybox exists (apt-get install busybox-static)");
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    std::fs::write(root.join("etc/hostname"), "busybox\n").unwrap();
}

/// Stores a one-layer busybox image named `name` (a full reference, e.g.
/// `docker.io/library/busybox:latest`) in `store`.
pub fn store_busybox(store: &Store, name: &str) -> StoredImage {
    let dir = tempfile::tempdir().unwrap();
    busybox_rootfs(dir.path());
    store_rootfs(
        store,
        name,
        dir.path(),
        serde_json::json!({"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]}),
    )
}

/// A busybox root filesystem with every applet, `/tmp`, and a `root` and an `app` (1000)
/// user: enough to run the RUN steps of the build tests.
pub fn busybox_build_rootfs(root: &Path) {
    busybox_rootfs(root);
    let list = Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .expect("busybox runs");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let link = root.join("bin").join(applet);
        if applet != "busybox" && !link.exists() {
            std::os::unix::fs::symlink("busybox", link).unwrap();
        }
    }
    for dir in ["tmp", "root", "home/app", "var", "run"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\napp:x:1000:\n").unwrap();
}

/// Stores the [`busybox_build_rootfs`] image as `name`, with a label and a `PATH`, as base
/// images have. Its layer has fixed file times, so every state directory gets the same image.
pub fn store_busybox_for_builds(store: &Store, name: &str) -> StoredImage {
    let dir = tempfile::tempdir().unwrap();
    busybox_build_rootfs(dir.path());
    let options = ExportOptions {
        source_date_epoch: Some(1_700_000_000),
        ..ExportOptions::default()
    };
    store_rootfs_with(
        store,
        name,
        dir.path(),
        serde_json::json!({
            "Cmd": ["/bin/sh"],
            "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"],
            "Labels": {"org.example.base": "busybox"},
        }),
        &options,
    )
}

/// Stores the tree `root` as a one-layer image named `name` with `container_config`.
fn store_rootfs(
    store: &Store,
    name: &str,
    root: &Path,
    container_config: serde_json::Value,
) -> StoredImage {
    store_rootfs_with(
        store,
        name,
        root,
        container_config,
        &ExportOptions::default(),
    )
}

fn store_rootfs_with(
    store: &Store,
    name: &str,
    root: &Path,
    container_config: serde_json::Value,
    options: &ExportOptions,
) -> StoredImage {
    let content = store.content();
    let layer = export_layer(&content, root, options).unwrap();
    let config = serde_json::json!({
        "created": "2024-01-01T00:00:00Z",
        "architecture": "amd64",
        "os": "linux",
        "config": container_config,
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id.to_string()]},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "busybox rootfs"}],
    });
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_info = content.write_blob(&config_bytes, None).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_info.digest.to_string(),
            "size": config_info.size,
        },
        "layers": [serde_json::to_value(layer.to_oci()).unwrap()],
    });
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    let manifest_info = content.write_blob(&manifest_bytes, None).unwrap();
    let descriptor = Descriptor::new(
        MediaType::ImageManifest,
        manifest_info.size,
        manifest_info.digest.to_oci(),
    );
    store.images().put(name, &descriptor).unwrap();
    StoredImage {
        name: name.to_owned(),
        manifest: manifest_info.digest,
        config: config_info.digest,
        layer: layer.digest,
    }
}

/// Debian's `docker-registry` serving from a temporary directory on a loopback port the
/// test picked; killed on drop.
pub struct Registry {
    pub port: u16,
    pub ip: IpAddr,
    child: Child,
    dir: tempfile::TempDir,
}

impl Registry {
    /// A registry anyone may push to.
    pub fn anonymous() -> Registry {
        Registry::start(IpAddr::from([127, 0, 0, 1]), None)
    }

    /// A registry anyone may push to, listening on `ip`.
    pub fn anonymous_on(ip: IpAddr) -> Registry {
        Registry::start(ip, None)
    }

    /// A registry that accepts only `user`/`password` (HTTP Basic, htpasswd file).
    pub fn with_password(user: &str, password: &str) -> Registry {
        Registry::start(IpAddr::from([127, 0, 0, 1]), Some((user, password)))
    }

    fn start(ip: IpAddr, auth: Option<(&str, &str)>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind((ip, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let storage = dir.path().join("storage");
        std::fs::create_dir(&storage).unwrap();
        let auth_yaml = match auth {
            None => String::new(),
            Some((user, password)) => {
                let out = Command::new("htpasswd")
                    .args(["-Bbn", user, password])
                    .output()
                    .expect("htpasswd is installed (apt-get install apache2-utils)");
                assert!(out.status.success());
                let path = dir.path().join("htpasswd");
                std::fs::write(&path, out.stdout).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: img-tests\n    path: {}\n",
                    path.display()
                )
            }
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {ip}:{port}\n  secret: img-cli-tests\n{auth_yaml}",
            storage.display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry is installed (apt-get install docker-registry)");
        let mut registry = Registry {
            port,
            ip,
            child,
            dir,
        };
        registry.wait_ready();
        registry
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("registry exited with {status}: {}", self.log());
            }
            if let Ok(mut s) = TcpStream::connect((self.ip, self.port)) {
                s.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n").unwrap();
                let mut line = String::new();
                if BufReader::new(s).read_line(&mut line).is_ok() && line.starts_with("HTTP/") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("registry did not answer /v2/ in time: {}", self.log());
    }

    /// `<ip>:<port>`.
    pub fn host(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// The digests of every blob served so far by a `GET /v2/<repo>/blobs/<digest>`, from the
    /// registry's access log, in order. The registry logs a request once it has answered it,
    /// so a marker request is made first and the log read once the marker is in it: every
    /// request answered before is then logged too.
    pub fn blob_gets(&self) -> Vec<String> {
        let marker = format!("/v2/log-marker/blobs/sha256:{}", "0".repeat(64));
        let count = |log: &str| log.matches(&marker).count();
        let before = count(&self.log());
        if let Ok(mut s) = TcpStream::connect((self.ip, self.port)) {
            let _ = s.write_all(format!("GET {marker} HTTP/1.0\r\n\r\n").as_bytes());
            let mut answer = String::new();
            let _ = BufReader::new(s).read_line(&mut answer);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while count(&self.log()) == before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.log()
            .lines()
            .filter_map(|line| {
                let request = line.split("\"GET ").nth(1)?.split(' ').next()?;
                if request == marker {
                    return None;
                }
                let digest = request.strip_prefix("/v2/")?.split("/blobs/").nth(1)?;
                digest
                    .starts_with("sha256:")
                    .then(|| digest.split('?').next().unwrap_or(digest).to_owned())
            })
            .collect()
    }

    /// The file the registry stores blob `digest` in (`sha256:…`), to damage it.
    pub fn blob_file(&self, digest: &str) -> std::path::PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `skopeo inspect --raw` of an image in a registry reached over plain HTTP: the manifest.
pub fn skopeo_raw_manifest(reference: &str) -> Vec<u8> {
    let image = format!("docker://{reference}");
    crate::tool(
        "skopeo",
        &["inspect", "--raw", "--tls-verify=false", &image],
    )
    .into_bytes()
}

/// The layer digests of a stored image's manifest.
pub fn layers_of(store: &Store, record: &img_snapshot::ImageRecord) -> Vec<Digest> {
    let digest = Digest::try_from(record.target.digest()).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&store.content().read_blob(&digest).unwrap()).unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().parse().unwrap())
        .collect()
}

/// This machine's address on its default route: a registry there is not on loopback, so
/// img treats it as secure unless told otherwise. (Connecting a UDP socket sends nothing.)
pub fn non_loopback_ip() -> IpAddr {
    let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
    socket
        .connect("192.0.2.1:9")
        .expect("this test needs a non-loopback IPv4 address with a route");
    let ip = socket.local_addr().unwrap().ip();
    assert!(
        !ip.is_loopback(),
        "this test needs a non-loopback IPv4 address"
    );
    ip
}

/// Stores `busybox` for a second platform (same layer, an arm64 config) and an OCI index of
/// both under `name`. Returns the index digest and the arm64 manifest digest.
pub fn store_two_platform_index(
    store: &Store,
    amd64: &StoredImage,
    name: &str,
) -> (Digest, Digest) {
    let content = store.content();
    let mut config: serde_json::Value =
        serde_json::from_slice(&content.read_blob(&amd64.config).unwrap()).unwrap();
    config["architecture"] = "arm64".into();
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_info = content.write_blob(&config_bytes, None).unwrap();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&content.read_blob(&amd64.manifest).unwrap()).unwrap();
    manifest["config"]["digest"] = config_info.digest.to_string().into();
    manifest["config"]["size"] = config_info.size.into();
    let arm64 = content
        .write_blob(&serde_json::to_vec(&manifest).unwrap(), None)
        .unwrap();
    let entry = |digest: &Digest, arch: &str| {
        serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest.to_string(),
            "size": content.size(digest).unwrap(),
            "platform": {"os": "linux", "architecture": arch},
        })
    };
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [entry(&amd64.manifest, "amd64"), entry(&arm64.digest, "arm64")],
    });
    let index = content
        .write_blob(&serde_json::to_vec(&index).unwrap(), None)
        .unwrap();
    let descriptor = Descriptor::new(MediaType::ImageIndex, index.size, index.digest.to_oci());
    store.images().put(name, &descriptor).unwrap();
    (index.digest, arm64.digest)
}

/// Debian's static busybox for arm64 (package busybox-static:arm64), downloaded once into the
/// test target's temporary directory. Needs the arm64 architecture in apt's lists: `dpkg
/// --add-architecture arm64 && apt-get update` (`cargo xtask test`'s environment has it).
pub fn arm64_busybox() -> std::path::PathBuf {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("busybox-static-arm64");
    let binary = cache.join("bin/busybox");
    if binary.is_file() {
        return binary;
    }
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let download = Command::new("apt-get")
        .args(["download", "busybox-static:arm64"])
        .current_dir(work.path())
        .output()
        .expect("apt-get runs");
    assert!(
        download.status.success(),
        "the multi-platform tests need Debian's busybox-static:arm64; `apt-get download` failed \
         (run `dpkg --add-architecture arm64 && apt-get update` first): {}",
        String::from_utf8_lossy(&download.stderr)
    );
    let deb = std::fs::read_dir(work.path())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("apt-get download left a .deb");
    let tree = work.path().join("tree");
    let status = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&tree)
        .status()
        .expect("dpkg-deb runs");
    assert!(status.success(), "dpkg-deb -x {} failed", deb.display());
    // Another test may have won the race; its copy is as good.
    let _ = std::fs::rename(&tree, &cache);
    assert!(binary.is_file(), "{} is missing", binary.display());
    binary
}

/// Stores a busybox image per architecture (`amd64` from this machine's `/bin/busybox`, `arm64`
/// from [`arm64_busybox`]), each a [`busybox_build_rootfs`] with that architecture's binary
/// and config, and an OCI index of both under `name`. Returns the index digest.
pub fn store_multiarch_busybox(store: &Store, name: &str) -> Digest {
    let content = store.content();
    let mut entries = Vec::new();
    for arch in ["amd64", "arm64"] {
        let dir = tempfile::tempdir().unwrap();
        busybox_build_rootfs(dir.path());
        if arch == "arm64" {
            let bin = dir.path().join("bin/busybox");
            std::fs::remove_file(&bin).unwrap();
            std::fs::copy(arm64_busybox(), &bin).unwrap();
        }
        let options = ExportOptions {
            source_date_epoch: Some(1_700_000_000),
            ..ExportOptions::default()
        };
        let stored = store_rootfs_with(
            store,
            &format!("{name}-{arch}"),
            dir.path(),
            serde_json::json!({"Cmd": ["/bin/sh"], "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"]}),
            &options,
        );
        store.images().remove(&format!("{name}-{arch}")).unwrap();
        let mut config: serde_json::Value =
            serde_json::from_slice(&content.read_blob(&stored.config).unwrap()).unwrap();
        config["architecture"] = arch.into();
        let config_bytes = serde_json::to_vec(&config).unwrap();
        let config_info = content.write_blob(&config_bytes, None).unwrap();
        let mut manifest: serde_json::Value =
            serde_json::from_slice(&content.read_blob(&stored.manifest).unwrap()).unwrap();
        manifest["config"]["digest"] = config_info.digest.to_string().into();
        manifest["config"]["size"] = config_info.size.into();
        let manifest = content
            .write_blob(&serde_json::to_vec(&manifest).unwrap(), None)
            .unwrap();
        entries.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest.digest.to_string(),
            "size": manifest.size,
            "platform": {"os": "linux", "architecture": arch},
        }));
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    });
    let index = content
        .write_blob(&serde_json::to_vec(&index).unwrap(), None)
        .unwrap();
    let descriptor = Descriptor::new(MediaType::ImageIndex, index.size, index.digest.to_oci());
    store.images().put(name, &descriptor).unwrap();
    index.digest
}
