//! Shared test fixtures: a real distribution registry on a loopback port, a token server, a
//! fault-injecting TCP proxy, a second host for redirects and upload sessions (`foreign`), and
//! small images built from real gzip tar layers.
#![allow(dead_code)]

mod foreign;
#[allow(unused_imports)] // used by some test binaries only
pub use foreign::{ForeignHost, SeenRequest};

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use img_registry::{sha256_digest, ClientConfig, Digest, DirBlobStore};

/// A port free right now (bound to 0, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How the test registry authenticates.
pub enum RegistryAuth {
    Anonymous,
    Htpasswd {
        user: String,
        password: String,
    },
    Token {
        realm: String,
        service: String,
        issuer: String,
        root_cert_pem: String,
    },
}

/// Debian's `docker-registry` serving from a temporary directory; killed on drop.
pub struct TestRegistry {
    pub port: u16,
    child: Child,
    pub dir: tempfile::TempDir,
}

/// Settings beyond authentication.
#[derive(Default)]
pub struct RegistryOptions {
    /// `http.host`: the URL the registry puts in the `Location`s it generates (upload sessions
    /// included), as when it sits behind another host.
    pub public_url: Option<String>,
    /// The `redirect` storage middleware: blob downloads answered with a 307 to this base URL
    /// plus the blob's storage path, as with S3 or GCS presigned URLs.
    pub redirect_blobs_to: Option<String>,
}

impl TestRegistry {
    pub fn start(auth: RegistryAuth) -> TestRegistry {
        Self::start_with(auth, RegistryOptions::default())
    }

    pub fn start_with(auth: RegistryAuth, options: RegistryOptions) -> TestRegistry {
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).unwrap();
        let auth_yaml = match &auth {
            RegistryAuth::Anonymous => String::new(),
            RegistryAuth::Htpasswd { user, password } => {
                let out = Command::new("htpasswd")
                    .args(["-Bbn", user, password])
                    .output()
                    .expect(
                        "cannot run htpasswd: this test needs it (apt-get install apache2-utils)",
                    );
                assert!(out.status.success());
                let path = dir.path().join("htpasswd");
                std::fs::write(&path, out.stdout).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: test-realm\n    path: {}\n",
                    path.display()
                )
            }
            RegistryAuth::Token {
                realm,
                service,
                issuer,
                root_cert_pem,
            } => {
                let path = dir.path().join("token-root.pem");
                std::fs::write(&path, root_cert_pem).unwrap();
                format!(
                    "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {}\n",
                    path.display()
                )
            }
        };
        let public_url = options
            .public_url
            .map(|u| format!("  host: {u}\n"))
            .unwrap_or_default();
        let middleware = options
            .redirect_blobs_to
            .map(|u| {
                format!("middleware:\n  storage:\n    - name: redirect\n      options:\n        baseurl: {u}\n")
            })
            .unwrap_or_default();
        // A port found free may be taken again (by an outgoing connection or another test's
        // server) before the registry binds it: try another one then. Each registry names
        // itself in a response header, so an answer from whatever else took the port is not
        // mistaken for this registry's.
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let port = free_port();
            let instance = format!(
                "{}-{}-{port}",
                std::process::id(),
                STARTED.fetch_add(1, Ordering::SeqCst)
            );
            let config = format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: img-registry-tests\n  headers:\n    X-Img-Test-Instance: [{instance}]\n{public_url}{auth_yaml}{middleware}",
                storage.display()
            );
            let config_path = dir.path().join("config.yml");
            std::fs::write(&config_path, config).unwrap();
            match spawn_registry(
                &config_path,
                &dir.path().join("registry.log"),
                port,
                &instance,
            ) {
                Ok(child) => return TestRegistry { port, child, dir },
                Err(log) if log.contains("address already in use") && attempts < 5 => {}
                Err(log) => panic!("registry did not start: {log}"),
            }
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// The filesystem storage driver's root directory.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }
}

/// Starts `docker-registry` and waits until it answers `/v2/` on `port` with its `instance`
/// header; on failure the child is gone and the error is its log.
fn spawn_registry(
    config: &Path,
    log_path: &Path,
    port: u16,
    instance: &str,
) -> Result<Child, String> {
    let log = std::fs::File::create(log_path).unwrap();
    let mut child = Command::new("docker-registry")
        .arg("serve")
        .arg(config)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("cannot run docker-registry: this test needs it (apt-get install docker-registry)");
    let read_log = || std::fs::read_to_string(log_path).unwrap_or_default();
    // Generous: a loaded 2-core machine may take a while to start the registry, and one that
    // fails exits, which is noticed at once.
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Err(format!("exited with {status}: {}", read_log()));
        }
        if answers_as(port, instance) {
            return Ok(child);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(format!("no answer on /v2/ in 120 s: {}", read_log()))
}

/// Whether `GET /v2/` on `port` is answered with `X-Img-Test-Instance: instance`.
fn answers_as(port: u16, instance: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    if s.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let want = format!("x-img-test-instance: {instance}");
    BufReader::new(s)
        .lines()
        .map_while(|l| l.ok())
        .take_while(|l| !l.is_empty())
        .any(|l| l.to_ascii_lowercase() == want)
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client config whose Docker config directory is a fresh temporary directory.
pub fn client_config(docker_dir: &Path) -> ClientConfig {
    ClientConfig {
        docker_config_dir: Some(docker_dir.to_path_buf()),
        ..ClientConfig::default()
    }
}

/// A small image written into `store`: real gzip tar layers, a config with their diff ids,
/// and an OCI manifest. Returns the manifest bytes and the layer digests.
pub struct TestImage {
    pub manifest: Vec<u8>,
    pub digest: Digest,
    pub config: Digest,
    pub layers: Vec<Digest>,
}

pub fn gzip_tar_layer(files: &[(&str, &[u8])]) -> (Vec<u8>, String) {
    let mut tar_bytes = Vec::new();
    {
        let mut builder = tar::Builder::new(&mut tar_bytes);
        for (name, content) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(0);
            header.set_cksum();
            builder.append_data(&mut header, name, *content).unwrap();
        }
        builder.finish().unwrap();
    }
    let diff_id = sha256_digest(&tar_bytes).to_string();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar_bytes).unwrap();
    (gz.finish().unwrap(), diff_id)
}

pub fn build_image(store: &DirBlobStore, layers: &[Vec<(&str, Vec<u8>)>]) -> TestImage {
    let mut layer_descs = Vec::new();
    let mut diff_ids = Vec::new();
    let mut digests = Vec::new();
    for files in layers {
        let files: Vec<(&str, &[u8])> = files.iter().map(|(n, c)| (*n, c.as_slice())).collect();
        let (blob, diff_id) = gzip_tar_layer(&files);
        let d = store.put_bytes(&blob).unwrap();
        layer_descs.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": d.to_string(),
            "size": blob.len(),
        }));
        diff_ids.push(diff_id);
        digests.push(d);
    }
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [],
    });
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_digest = store.put_bytes(&config_bytes).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest.to_string(),
            "size": config_bytes.len(),
        },
        "layers": layer_descs,
    });
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let digest = store.put_bytes(&manifest).unwrap();
    TestImage {
        manifest,
        digest,
        config: config_digest,
        layers: digests,
    }
}

/// Writes `oci-layout` and `index.json` so `store` is an OCI image layout with `image`
/// tagged `tag` (what skopeo's `oci:` transport reads).
pub fn write_oci_layout(store: &DirBlobStore, image: &TestImage, tag: &str) {
    std::fs::write(
        store.root().join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": image.digest.to_string(),
            "size": image.manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    std::fs::write(
        store.root().join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
}

/// Incompressible bytes (xorshift), so gzip layers keep their size.
pub fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Files left in a store's blob directories (to check nothing partial remains).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Token server (distribution token authentication specification).

/// A token issuer: a self-signed P-256 certificate (given to the registry as its root bundle)
/// whose key signs ES256 JWTs carrying the certificate in `x5c`.
pub struct TokenServer {
    pub port: u16,
    pub root_cert_pem: String,
    pub requests: Arc<AtomicUsize>,
    pub scopes_seen: Arc<Mutex<Vec<String>>>,
}

pub const TOKEN_SERVICE: &str = "img-test-registry";
pub const TOKEN_ISSUER: &str = "img-test-issuer";

impl TokenServer {
    pub fn start(user: &str, password: &str) -> TokenServer {
        Self::start_with(user, password, 0)
    }

    /// Like `start`, but the first `stale` tokens are already expired (while the response
    /// claims a 300 s lifetime), as when a registry revokes a token a client still holds.
    pub fn start_with(user: &str, password: &str, stale: usize) -> TokenServer {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["img-test-issuer".to_string()]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::DigitalSignature,
            rcgen::KeyUsagePurpose::KeyCertSign,
        ];
        let cert = params.self_signed(&key).unwrap();
        let cert_der_b64 = base64::engine::general_purpose::STANDARD.encode(cert.der());
        let rng = ring::rand::SystemRandom::new();
        let signer = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &key.serialize_der(),
            &rng,
        )
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let scopes_seen = Arc::new(Mutex::new(Vec::new()));
        let expected_auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let (req_count, seen) = (requests.clone(), scopes_seen.clone());
        std::thread::spawn(move || {
            let mut issued = 0;
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                req_count.fetch_add(1, Ordering::SeqCst);
                let expired = issued < stale;
                if let Ok(true) = serve_token(
                    stream,
                    &expected_auth,
                    &signer,
                    &rng,
                    &cert_der_b64,
                    &seen,
                    expired,
                ) {
                    issued += 1;
                }
            }
        });
        TokenServer {
            port,
            root_cert_pem: cert.pem(),
            requests,
            scopes_seen,
        }
    }

    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    pub fn registry_auth(&self) -> RegistryAuth {
        RegistryAuth::Token {
            realm: self.realm(),
            service: TOKEN_SERVICE.to_string(),
            issuer: TOKEN_ISSUER.to_string(),
            root_cert_pem: self.root_cert_pem.clone(),
        }
    }
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn serve_token(
    stream: TcpStream,
    expected_auth: &str,
    signer: &ring::signature::EcdsaKeyPair,
    rng: &ring::rand::SystemRandom,
    cert_der_b64: &str,
    seen: &Mutex<Vec<String>>,
    expired: bool,
) -> std::io::Result<bool> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut authorization = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("authorization") {
                authorization = Some(v.trim().to_string());
            }
        }
    }
    let target = request_line.split(' ').nth(1).unwrap_or("");
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    let mut scopes = Vec::new();
    let mut account = String::new();
    for pair in query.split('&') {
        if let Some((k, v)) = pair.split_once('=') {
            match k {
                "scope" => scopes.push(percent_decode(v)),
                "account" => account = percent_decode(v),
                _ => {}
            }
        }
    }
    let mut out = stream;
    if authorization.as_deref() != Some(expected_auth) {
        let body = r#"{"details":"incorrect username or password"}"#;
        write!(out, "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())?;
        return Ok(false);
    }
    seen.lock().unwrap().extend(scopes.iter().cloned());
    let access: Vec<serde_json::Value> = scopes
        .iter()
        .filter_map(|s| {
            let mut parts = s.splitn(3, ':');
            let (t, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
            Some(serde_json::json!({"type": t, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
        })
        .collect();
    let mut now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if expired {
        // Well past the registry's 60 s leeway.
        now -= 3600;
    }
    let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [cert_der_b64]});
    let claims = serde_json::json!({
        "iss": TOKEN_ISSUER, "sub": account, "aud": TOKEN_SERVICE,
        "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", scopes.len()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64url(&serde_json::to_vec(&header).unwrap()),
        b64url(&serde_json::to_vec(&claims).unwrap())
    );
    let sig = signer.sign(rng, signing_input.as_bytes()).unwrap();
    let token = format!("{signing_input}.{}", b64url(sig.as_ref()));
    let body = serde_json::json!({"token": token, "expires_in": 300}).to_string();
    write!(out, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())?;
    Ok(true)
}

// ---------------------------------------------------------------------------------------
// Fault-injecting proxy.

/// What the proxy does to `GET .../blobs/<target>` responses.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The first such response is cut after half its body (connection closed).
    CutFirstHalfway,
    /// Every such response has its first body byte flipped.
    Corrupt,
    /// The first such request is answered 503 without reaching the registry.
    UnavailableFirst,
}

/// A TCP proxy on a loopback port in front of a registry. Requests are forwarded with
/// `Connection: close`, so each connection carries one request.
pub struct FaultProxy {
    pub port: u16,
    pub hits: Arc<AtomicUsize>,
    pub range_requests: Arc<AtomicUsize>,
    pub patch_requests: Arc<AtomicUsize>,
}

impl FaultProxy {
    pub fn start(upstream: u16, target: Digest, fault: Fault) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let range_requests = Arc::new(AtomicUsize::new(0));
        let patch_requests = Arc::new(AtomicUsize::new(0));
        let (h, r, p) = (hits.clone(), range_requests.clone(), patch_requests.clone());
        let needle = format!("/blobs/{target}");
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let (h, r, p, needle) = (h.clone(), r.clone(), p.clone(), needle.clone());
                std::thread::spawn(move || {
                    let _ = proxy_one(client, upstream, &needle, fault, &h, &r, &p);
                });
            }
        });
        FaultProxy {
            port,
            hits,
            range_requests,
            patch_requests,
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

fn proxy_one(
    client: TcpStream,
    upstream: u16,
    needle: &str,
    fault: Fault,
    hits: &AtomicUsize,
    ranges: &AtomicUsize,
    patches: &AtomicUsize,
) -> std::io::Result<()> {
    let mut client_reader = BufReader::new(client.try_clone()?);
    // The client tries TLS first on a loopback registry: refuse it at once, as the registry
    // itself would, rather than wait for a request line that may never come.
    if client_reader.fill_buf()?.first() == Some(&0x16) {
        let mut out = client;
        out.write_all(b"HTTP/1.0 400 Bad Request\r\nConnection: close\r\n\r\n")?;
        let _ = out.shutdown(Shutdown::Both);
        return Ok(());
    }
    let mut head = Vec::new();
    let mut request_line = String::new();
    client_reader.read_line(&mut request_line)?;
    let is_target = request_line.starts_with("GET ") && request_line.contains(needle);
    if request_line.starts_with("PATCH ") {
        patches.fetch_add(1, Ordering::SeqCst);
    }
    head.extend_from_slice(request_line.as_bytes());
    loop {
        let mut line = String::new();
        client_reader.read_line(&mut line)?;
        if line.trim_end().is_empty() {
            break;
        }
        if line.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        if is_target && line.to_ascii_lowercase().starts_with("range:") {
            ranges.fetch_add(1, Ordering::SeqCst);
        }
        head.extend_from_slice(line.as_bytes());
    }
    head.extend_from_slice(b"Connection: close\r\n\r\n");
    let mut server = TcpStream::connect(("127.0.0.1", upstream))?;
    server.write_all(&head)?;
    // Whatever body the client sends (uploads) goes through as is.
    let mut up = server.try_clone()?;
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_reader, &mut up);
    });
    let mut out = client;
    if !is_target {
        std::io::copy(&mut server, &mut out)?;
        let _ = out.shutdown(Shutdown::Both);
        return Ok(());
    }
    let hit = hits.fetch_add(1, Ordering::SeqCst);
    if fault == Fault::UnavailableFirst && hit == 0 {
        out.write_all(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )?;
        let _ = out.shutdown(Shutdown::Both);
        return Ok(());
    }
    let mut server_reader = BufReader::new(server);
    let mut content_length = 0u64;
    let mut status_ok = false;
    let mut first = true;
    loop {
        let mut line = String::new();
        server_reader.read_line(&mut line)?;
        if first {
            status_ok = line.contains(" 200 ") || line.contains(" 206 ");
            first = false;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            content_length = v.trim().parse().unwrap_or(0);
        }
        out.write_all(line.as_bytes())?;
        if line.trim_end().is_empty() {
            break;
        }
    }
    let mut body = Vec::new();
    server_reader.read_to_end(&mut body)?;
    match fault {
        Fault::CutFirstHalfway if hit == 0 && status_ok => {
            let half = (content_length / 2) as usize;
            out.write_all(&body[..half.min(body.len())])?;
        }
        Fault::Corrupt if status_ok && !body.is_empty() => {
            body[0] ^= 0xff;
            out.write_all(&body)?;
        }
        _ => out.write_all(&body)?,
    }
    out.flush()?;
    let _ = out.shutdown(Shutdown::Both);
    Ok(())
}

/// Reads a whole file for comparisons.
pub fn read(path: &Path) -> Vec<u8> {
    let mut v = Vec::new();
    std::fs::File::open(path)
        .unwrap()
        .read_to_end(&mut v)
        .unwrap();
    v
}
