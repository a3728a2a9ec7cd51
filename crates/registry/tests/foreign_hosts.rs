//! Registry credentials go to the registry's own host only: not to the host an upload
//! `Location` names, nor to the object storage a blob download is redirected to. The
//! transfers through those hosts still work, as with S3 presigned URLs.

mod common;

use common::*;
use img_registry::{login, no_progress, Client, DirBlobStore, Platform, PushOptions, Reference};

const USER: &str = "erin";
const PASSWORD: &str = "pw-erin";

fn htpasswd() -> RegistryAuth {
    RegistryAuth::Htpasswd {
        user: USER.into(),
        password: PASSWORD.into(),
    }
}

fn small_image(store: &DirBlobStore) -> TestImage {
    build_image(
        store,
        &[
            vec![("etc/hello", b"hello\n".to_vec())],
            vec![("usr/share/data.bin", noise(200_000))],
        ],
    )
}

/// Asserts that `foreign` saw at least `at_least` requests of `method`, none carrying an
/// `Authorization` header.
fn assert_no_credentials(foreign: &ForeignHost, method: &str, at_least: usize) {
    let seen: Vec<SeenRequest> = foreign
        .seen()
        .into_iter()
        .filter(|r| r.method == method)
        .collect();
    assert!(
        seen.len() >= at_least,
        "expected at least {at_least} {method} requests on the other host: {seen:?}"
    );
    let leaked: Vec<&SeenRequest> = seen.iter().filter(|r| r.authorization.is_some()).collect();
    assert!(
        leaked.is_empty(),
        "credentials sent to another host: {leaked:?}"
    );
}

#[test]
fn upload_locations_on_another_host_get_no_credentials() {
    // The registry hands out upload sessions on the other host (its `http.host`); that host
    // reaches the registry with credentials of its own.
    let foreign = ForeignHost::start();
    let registry = TestRegistry::start_with(
        htpasswd(),
        RegistryOptions {
            public_url: Some(foreign.url()),
            ..RegistryOptions::default()
        },
    );
    foreign.serve(&registry, Some((USER, PASSWORD)));
    let docker = tempfile::tempdir().unwrap();
    let config = client_config(docker.path());
    login(&registry.host(), USER, PASSWORD, &config).unwrap();
    let client = Client::new(config);
    let src = DirBlobStore::new(tempfile::tempdir().unwrap().keep()).unwrap();
    let image = small_image(&src);

    // Monolithic: POST on the registry, then one PUT on the other host per blob.
    let whole = Reference::parse(&format!("{}/far/whole:1", registry.host())).unwrap();
    let options = PushOptions::default();
    client
        .push(&whole, &image.manifest, &src, &options, &no_progress)
        .unwrap();
    assert_no_credentials(&foreign, "PUT", 3);

    // Chunked: PATCHes then the closing PUT, every one on the other host.
    let chunked = Reference::parse(&format!("{}/far/chunked:1", registry.host())).unwrap();
    let options = PushOptions {
        chunk_size: Some(64 << 10),
        ..PushOptions::default()
    };
    client
        .push(&chunked, &image.manifest, &src, &options, &no_progress)
        .unwrap();
    assert_no_credentials(&foreign, "PATCH", 4 + 2);
    assert_no_credentials(&foreign, "PUT", 3 + 3);

    for target in [&whole, &chunked] {
        let dest = DirBlobStore::new(tempfile::tempdir().unwrap().keep()).unwrap();
        let pulled = client
            .pull(target, &Platform::host(), &dest, &no_progress)
            .unwrap();
        assert_eq!(pulled.manifest.digest, image.digest);
        for d in &image.layers {
            assert_eq!(read(&dest.blob_path(d)), read(&src.blob_path(d)), "{d}");
        }
    }
}

#[test]
fn blob_redirects_to_another_host_get_no_credentials() {
    // The registry answers blob GETs and HEADs with a 307 to the other host, which serves the
    // registry's storage directory as object storage would.
    let foreign = ForeignHost::start();
    let registry = TestRegistry::start_with(
        htpasswd(),
        RegistryOptions {
            redirect_blobs_to: Some(foreign.url()),
            ..RegistryOptions::default()
        },
    );
    foreign.serve(&registry, None);
    let docker = tempfile::tempdir().unwrap();
    let config = client_config(docker.path());
    login(&registry.host(), USER, PASSWORD, &config).unwrap();
    let client = Client::new(config);
    let src = DirBlobStore::new(tempfile::tempdir().unwrap().keep()).unwrap();
    let image = small_image(&src);
    let target = Reference::parse(&format!("{}/far/app:1", registry.host())).unwrap();
    client
        .push(
            &target,
            &image.manifest,
            &src,
            &PushOptions::default(),
            &no_progress,
        )
        .unwrap();
    assert!(
        foreign.seen().is_empty(),
        "a first push uploads to the registry"
    );

    // The layers and the config come from the other host.
    let dest = DirBlobStore::new(tempfile::tempdir().unwrap().keep()).unwrap();
    let pulled = client
        .pull(&target, &Platform::host(), &dest, &no_progress)
        .unwrap();
    assert_eq!(pulled.manifest.digest, image.digest);
    for d in image.layers.iter().chain([&image.config]) {
        assert_eq!(read(&dest.blob_path(d)), read(&src.blob_path(d)), "{d}");
    }
    assert_no_credentials(&foreign, "GET", 3);

    // Pushing again: the registry redirects the existence checks (HEAD) there too.
    client
        .push(
            &target,
            &image.manifest,
            &src,
            &PushOptions::default(),
            &no_progress,
        )
        .unwrap();
    assert_no_credentials(&foreign, "HEAD", 3);
}

#[test]
fn a_redirect_loop_is_an_error() {
    // A server that answers `/v2/` and sends every other request back to itself.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            // The client tries TLS first on a loopback registry: refuse it at once, as Go's
            // HTTP server does, rather than wait for a request line that never comes.
            if std::io::BufRead::fill_buf(&mut reader).is_ok_and(|b| b.first() == Some(&0x16)) {
                let _ = std::io::Write::write_all(&mut stream, b"HTTP/1.0 400 Bad Request\r\n\r\n");
                continue;
            }
            let mut line = String::new();
            let _ = std::io::BufRead::read_line(&mut reader, &mut line);
            let path = line.split(' ').nth(1).unwrap_or("/").to_string();
            loop {
                let mut header = String::new();
                match std::io::BufRead::read_line(&mut reader, &mut header) {
                    Ok(n) if n > 0 && !header.trim_end().is_empty() => {}
                    _ => break,
                }
            }
            let answer = if path == "/v2/" {
                "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
            } else {
                format!("HTTP/1.1 302 Found\r\nLocation: {path}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            };
            let _ = std::io::Write::write_all(&mut stream, answer.as_bytes());
        }
    });
    let docker = tempfile::tempdir().unwrap();
    let client = Client::new(client_config(docker.path()));
    let target = Reference::parse(&format!("127.0.0.1:{port}/loop/app:1")).unwrap();
    let err = client.fetch_manifest(&target).unwrap_err();
    assert!(
        matches!(err, img_registry::Error::TooManyRedirects { limit: 10, .. }),
        "{err:?}"
    );
}
