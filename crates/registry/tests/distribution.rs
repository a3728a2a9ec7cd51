//! Pull and push against the real distribution registry (`docker-registry`) on loopback.

mod common;

use std::sync::Mutex;

use common::*;
use img_registry::{
    login, logout, no_progress, Client, DirBlobStore, Error, Platform, ProgressEvent, PushOptions,
    Reference,
};

fn reference(s: &str) -> Reference {
    Reference::parse(s).unwrap()
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

/// Records every progress event.
#[derive(Default)]
struct Events(Mutex<Vec<ProgressEvent>>);

impl Events {
    fn record(&self) -> impl Fn(&ProgressEvent) + Sync + '_ {
        move |e| self.0.lock().unwrap().push(e.clone())
    }
    fn count(&self, pred: impl Fn(&ProgressEvent) -> bool) -> usize {
        self.0.lock().unwrap().iter().filter(|e| pred(e)).count()
    }
}

#[test]
fn anonymous_push_then_pull_round_trip() {
    let registry = TestRegistry::start(RegistryAuth::Anonymous);
    let docker = tempfile::tempdir().unwrap();
    let src = DirBlobStore::new(tempfile::tempdir().unwrap().keep()).unwrap();
    let image = small_image(&src);
    let client = Client::new(client_config(docker.path()));
    let target = reference(&format!("{}/team/app:v1", registry.host()));

    let events = Events::default();
    let digest = client
        .push(
            &target,
            &image.manifest,
            &src,
            &PushOptions::default(),
            &events.record(),
        )
        .unwrap();
    assert_eq!(digest, image.digest);
    assert_eq!(
        events.count(|e| matches!(e, ProgressEvent::Done { .. })),
        3,
        "config + 2 layers uploaded"
    );

    // Pushing again uploads nothing: HEAD finds every blob.
    let again = Events::default();
    client
        .push(
            &target,
            &image.manifest,
            &src,
            &PushOptions::default(),
            &again.record(),
        )
        .unwrap();
    assert_eq!(
        again.count(|e| matches!(e, ProgressEvent::Exists { .. })),
        3
    );
    assert_eq!(
        again.count(|e| matches!(e, ProgressEvent::Started { .. })),
        0
    );

    let dest_dir = tempfile::tempdir().unwrap();
    let dest = DirBlobStore::new(dest_dir.path()).unwrap();
    let pulled = Events::default();
    let resolved = client
        .pull(&target, &Platform::host(), &dest, &pulled.record())
        .unwrap();
    assert_eq!(resolved.manifest.digest, image.digest);
    assert_eq!(resolved.manifest.bytes, image.manifest);
    assert_eq!(resolved.config_descriptor.digest(), &image.config);
    let layer_digests: Vec<_> = resolved.layers.iter().map(|d| d.digest().clone()).collect();
    assert_eq!(layer_digests, image.layers);
    for d in image.layers.iter().chain([&image.config, &image.digest]) {
        assert_eq!(read(&dest.blob_path(d)), read(&src.blob_path(d)), "{d}");
    }
    assert_eq!(pulled.count(|e| matches!(e, ProgressEvent::Done { .. })), 2);

    // A second pull finds the layers in the sink.
    let second = Events::default();
    client
        .pull(&target, &Platform::host(), &dest, &second.record())
        .unwrap();
    assert_eq!(
        second.count(|e| matches!(e, ProgressEvent::Exists { .. })),
        2
    );

    // By digest, and a tag that does not exist.
    let by_digest = target.with_digest(digest.clone());
    assert_eq!(
        client.fetch_manifest(&by_digest).unwrap().bytes,
        image.manifest
    );
    let err = client
        .fetch_manifest(&target.with_tag("nope").unwrap())
        .unwrap_err();
    match &err {
        Error::ManifestNotFound {
            reference, errors, ..
        } => {
            assert_eq!(reference, &format!("{}/team/app:nope", registry.host()));
            assert_eq!(errors.0[0].code, "MANIFEST_UNKNOWN", "{err}");
        }
        other => panic!("expected a missing manifest, got {other:?}"),
    }
}

#[test]
fn chunked_upload_and_cross_repository_mount() {
    let registry = TestRegistry::start(RegistryAuth::Anonymous);
    let docker = tempfile::tempdir().unwrap();
    let src = DirBlobStore::new(tempfile::tempdir().unwrap().keep()).unwrap();
    let image = small_image(&src);
    let client = Client::new(client_config(docker.path()));
    let base = reference(&format!("{}/base/image:1", registry.host()));

    // 64 KiB chunks: the 200 KB layer goes up in several PATCH requests (counted by a
    // pass-through proxy whose fault never triggers).
    let counter = FaultProxy::start(registry.port, image.digest.clone(), Fault::Corrupt);
    let via_counter = reference(&format!("{}/base/image:1", counter.host()));
    let chunked = PushOptions {
        chunk_size: Some(64 << 10),
        ..PushOptions::default()
    };
    client
        .push(&via_counter, &image.manifest, &src, &chunked, &no_progress)
        .unwrap();
    let patches = counter
        .patch_requests
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        patches >= 4 + 2,
        "200 KB in 64 KiB chunks plus the small blobs: {patches} PATCH requests"
    );
    let dest = DirBlobStore::new(tempfile::tempdir().unwrap().keep()).unwrap();
    client
        .pull(&base, &Platform::host(), &dest, &no_progress)
        .unwrap();
    for d in &image.layers {
        assert_eq!(read(&dest.blob_path(d)), read(&src.blob_path(d)));
    }

    let other = reference(&format!("{}/apps/derived:1", registry.host()));
    let events = Events::default();
    let options = PushOptions {
        mount_from: vec![base.clone()],
        ..PushOptions::default()
    };
    client
        .push(&other, &image.manifest, &src, &options, &events.record())
        .unwrap();
    assert_eq!(
        events.count(|e| matches!(e, ProgressEvent::Mounted { from, .. } if from == "base/image")),
        3,
        "config and layers mounted, nothing uploaded"
    );
    assert_eq!(
        events.count(|e| matches!(e, ProgressEvent::Started { .. })),
        0
    );

    // A mount source that lacks the blobs: the registry opens an upload session instead
    // (202), and the blobs are uploaded through it.
    let fresh = build_image(&src, &[vec![("new", noise(10_000))]]);
    let third = reference(&format!("{}/apps/third:1", registry.host()));
    let events = Events::default();
    client
        .push(&third, &fresh.manifest, &src, &options, &events.record())
        .unwrap();
    assert_eq!(
        events.count(|e| matches!(e, ProgressEvent::Mounted { .. })),
        0
    );
    assert_eq!(events.count(|e| matches!(e, ProgressEvent::Done { .. })), 2);
    client
        .pull(
            &other,
            &Platform::host(),
            &DirBlobStore::new(tempfile::tempdir().unwrap().keep()).unwrap(),
            &no_progress,
        )
        .unwrap();
}

#[test]
fn index_selects_platform_or_lists_the_available_ones() {
    let registry = TestRegistry::start(RegistryAuth::Anonymous);
    let docker = tempfile::tempdir().unwrap();
    let src = DirBlobStore::new(tempfile::tempdir().unwrap().keep()).unwrap();
    let amd = build_image(&src, &[vec![("arch", b"amd64".to_vec())]]);
    let arm = build_image(&src, &[vec![("arch", b"arm/v7".to_vec())]]);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": amd.digest.to_string(),
             "size": amd.manifest.len(), "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": arm.digest.to_string(),
             "size": arm.manifest.len(), "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
        ],
    });
    let index = serde_json::to_vec(&index).unwrap();
    let client = Client::new(client_config(docker.path()));
    let target = reference(&format!("{}/multi:latest", registry.host()));
    let index_digest = client
        .push(&target, &index, &src, &PushOptions::default(), &no_progress)
        .unwrap();

    let arm_platform: Platform = "linux/arm/v7".parse().unwrap();
    let resolved = client.resolve(&target, &arm_platform).unwrap();
    assert_eq!(resolved.manifest.digest, arm.digest);
    assert_eq!(resolved.repo_digest(), &index_digest);
    assert_eq!(resolved.layers[0].digest(), &arm.layers[0]);

    let err = client
        .resolve(&target, &"linux/s390x".parse().unwrap())
        .unwrap_err();
    assert!(
        err.to_string().ends_with(
            "no image for platform linux/s390x; available platforms: linux/amd64, linux/arm/v7"
        ),
        "{err}"
    );
}

#[test]
fn htpasswd_basic_auth_and_login() {
    let registry = TestRegistry::start(RegistryAuth::Htpasswd {
        user: "alice".into(),
        password: "s3cret".into(),
    });
    let docker = tempfile::tempdir().unwrap();
    let config = client_config(docker.path());
    let src = DirBlobStore::new(tempfile::tempdir().unwrap().keep()).unwrap();
    let image = small_image(&src);
    let target = reference(&format!("{}/private/app:1", registry.host()));

    // Anonymous: refused with an authentication error.
    let err = Client::new(config.clone())
        .push(
            &target,
            &image.manifest,
            &src,
            &PushOptions::default(),
            &no_progress,
        )
        .unwrap_err();
    assert!(
        matches!(err, Error::Unauthorized { status: 401, .. }),
        "{err:?}"
    );

    // Wrong password: error, nothing stored.
    let err = login(&registry.host(), "alice", "wrong", &config).unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    assert!(
        !err.to_string().contains("wrong"),
        "no password in errors: {err}"
    );
    assert!(!docker.path().join("config.json").exists());

    login(&registry.host(), "alice", "s3cret", &config).unwrap();
    let text = std::fs::read_to_string(docker.path().join("config.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["auths"][registry.host()]["auth"], "YWxpY2U6czNjcmV0");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(docker.path().join("config.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "config.json holds secrets");

    let client = Client::new(config.clone());
    push_default(&client, &target, &image, &src);
    let dest = DirBlobStore::new(tempfile::tempdir().unwrap().keep()).unwrap();
    client
        .pull(&target, &Platform::host(), &dest, &no_progress)
        .unwrap();

    assert!(logout(&registry.host(), &config).unwrap());
    assert!(!logout(&registry.host(), &config).unwrap());
    let err = Client::new(config).fetch_manifest(&target).unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
}

#[test]
fn token_auth_flow_reuses_tokens() {
    let tokens = TokenServer::start("bob", "hunter2");
    let registry = TestRegistry::start(tokens.registry_auth());
    let docker = tempfile::tempdir().unwrap();
    let config = client_config(docker.path());
    let src = DirBlobStore::new(tempfile::tempdir().unwrap().keep()).unwrap();
    let image = small_image(&src);
    let target = reference(&format!("{}/tok/app:1", registry.host()));

    let err = login(&registry.host(), "bob", "nope", &config).unwrap_err();
    assert!(
        matches!(err, Error::Unauthorized { ref url, .. } if url.ends_with("/token")),
        "{err:?}"
    );
    assert!(
        !docker.path().join("config.json").exists(),
        "failed login stores nothing"
    );

    login(&registry.host(), "bob", "hunter2", &config).unwrap();
    let before = tokens.requests.load(std::sync::atomic::Ordering::SeqCst);
    let client = Client::new(config);
    push_default(&client, &target, &image, &src);
    let dest = DirBlobStore::new(tempfile::tempdir().unwrap().keep()).unwrap();
    let resolved = client
        .pull(&target, &Platform::host(), &dest, &no_progress)
        .unwrap();
    assert_eq!(resolved.manifest.digest, image.digest);
    let used = tokens.requests.load(std::sync::atomic::Ordering::SeqCst) - before;
    // One push-scoped token serves the whole push and the pull (pull is covered by it).
    assert_eq!(used, 1, "token requests");
    assert!(tokens
        .scopes_seen
        .lock()
        .unwrap()
        .contains(&"repository:tok/app:pull,push".to_string()));
}

#[test]
fn interrupted_blob_download_resumes_with_range() {
    let registry = TestRegistry::start(RegistryAuth::Anonymous);
    let docker = tempfile::tempdir().unwrap();
    let src = DirBlobStore::new(tempfile::tempdir().unwrap().keep()).unwrap();
    let image = small_image(&src);
    let client = Client::new(client_config(docker.path()));
    let direct = reference(&format!("{}/cut/app:1", registry.host()));
    push_default(&client, &direct, &image, &src);

    let big_layer = image.layers[1].clone();
    let proxy = FaultProxy::start(registry.port, big_layer.clone(), Fault::CutFirstHalfway);
    let via_proxy = reference(&format!("{}/cut/app:1", proxy.host()));
    let dest = DirBlobStore::new(tempfile::tempdir().unwrap().keep()).unwrap();
    let events = Events::default();
    client
        .pull(&via_proxy, &Platform::host(), &dest, &events.record())
        .unwrap();
    assert_eq!(
        read(&dest.blob_path(&big_layer)),
        read(&src.blob_path(&big_layer))
    );
    assert_eq!(
        proxy.hits.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "cut once, then resumed"
    );
    assert_eq!(
        proxy
            .range_requests
            .load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the retry asked for the rest only"
    );
    assert_eq!(
        events.count(|e| matches!(e, ProgressEvent::Retrying { .. })),
        1
    );
}

#[test]
fn corrupted_blob_is_refused_and_nothing_is_stored() {
    let registry = TestRegistry::start(RegistryAuth::Anonymous);
    let docker = tempfile::tempdir().unwrap();
    let src = DirBlobStore::new(tempfile::tempdir().unwrap().keep()).unwrap();
    let image = small_image(&src);
    let client = Client::new(client_config(docker.path()));
    let direct = reference(&format!("{}/bad/app:1", registry.host()));
    push_default(&client, &direct, &image, &src);

    let layer = image.layers[1].clone();
    let proxy = FaultProxy::start(registry.port, layer.clone(), Fault::Corrupt);
    let via_proxy = reference(&format!("{}/bad/app:1", proxy.host()));
    let dest_dir = tempfile::tempdir().unwrap();
    let dest = DirBlobStore::new(dest_dir.path()).unwrap();
    let err = client
        .pull(&via_proxy, &Platform::host(), &dest, &no_progress)
        .unwrap_err();
    match &err {
        Error::DigestMismatch { expected, .. } => assert_eq!(expected, &layer),
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    assert_eq!(
        proxy.hits.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "a digest mismatch is not retried"
    );
    let left: Vec<_> = files_under(&dest_dir.path().join("blobs"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(layer.digest()))
        .collect();
    assert!(left.is_empty(), "nothing of the bad blob remains: {left:?}");
    assert!(
        !dest.blob_path(&image.digest).exists(),
        "no manifest for an incomplete image"
    );
}

#[test]
fn docker_hub_pulls_go_through_a_configured_mirror() {
    let mirror = TestRegistry::start(RegistryAuth::Anonymous);
    let docker = tempfile::tempdir().unwrap();
    let src = DirBlobStore::new(tempfile::tempdir().unwrap().keep()).unwrap();
    let image = small_image(&src);
    // Seed the mirror as a pull-through cache would hold `docker.io/library/mirrored:1`.
    let client = Client::new(client_config(docker.path()));
    let in_mirror = reference(&format!("{}/library/mirrored:1", mirror.host()));
    push_default(&client, &in_mirror, &image, &src);

    let mut config = client_config(docker.path());
    config.mirrors.insert(
        "docker.io".into(),
        vec![format!("http://{}", mirror.host())],
    );
    let client = Client::new(config);
    let dest = DirBlobStore::new(tempfile::tempdir().unwrap().keep()).unwrap();
    let resolved = client
        .pull(
            &reference("mirrored:1"),
            &Platform::host(),
            &dest,
            &no_progress,
        )
        .unwrap();
    assert_eq!(
        resolved.reference.to_string(),
        "docker.io/library/mirrored:1"
    );
    assert_eq!(resolved.manifest.digest, image.digest);
}

#[test]
fn refused_token_is_refreshed_once() {
    // The first token the server issues is already expired: the registry answers 401 and the
    // client must fetch a new token and carry on.
    let tokens = TokenServer::start_with("dave", "pw", 1);
    let registry = TestRegistry::start(tokens.registry_auth());
    let docker = tempfile::tempdir().unwrap();
    let config = client_config(docker.path());
    let src = DirBlobStore::new(tempfile::tempdir().unwrap().keep()).unwrap();
    let image = small_image(&src);
    let target = reference(&format!("{}/refresh/app:1", registry.host()));
    let client = Client::new(config);
    // Login is checked against the token endpoint only; use a pre-stored login instead.
    std::fs::write(
        docker.path().join("config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"ZGF2ZTpwdw=="}}}}}}"#,
            registry.host()
        ),
    )
    .unwrap();
    push_default(&client, &target, &image, &src);
    assert_eq!(client.fetch_manifest(&target).unwrap().digest, image.digest);
    assert!(tokens.requests.load(std::sync::atomic::Ordering::SeqCst) >= 2);
}

#[test]
fn server_errors_are_retried() {
    let registry = TestRegistry::start(RegistryAuth::Anonymous);
    let docker = tempfile::tempdir().unwrap();
    let src = DirBlobStore::new(tempfile::tempdir().unwrap().keep()).unwrap();
    let image = small_image(&src);
    let client = Client::new(client_config(docker.path()));
    let direct = reference(&format!("{}/flaky/app:1", registry.host()));
    push_default(&client, &direct, &image, &src);

    let layer = image.layers[0].clone();
    let proxy = FaultProxy::start(registry.port, layer.clone(), Fault::UnavailableFirst);
    let via_proxy = reference(&format!("{}/flaky/app:1", proxy.host()));
    let dest = DirBlobStore::new(tempfile::tempdir().unwrap().keep()).unwrap();
    client
        .pull(&via_proxy, &Platform::host(), &dest, &no_progress)
        .unwrap();
    assert_eq!(read(&dest.blob_path(&layer)), read(&src.blob_path(&layer)));
    assert_eq!(
        proxy.hits.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "503 once, then served"
    );
}

#[test]
fn localhost_name_is_plain_http_without_configuration() {
    let registry = TestRegistry::start(RegistryAuth::Anonymous);
    let docker = tempfile::tempdir().unwrap();
    let src = DirBlobStore::new(tempfile::tempdir().unwrap().keep()).unwrap();
    let image = small_image(&src);
    let client = Client::new(client_config(docker.path()));
    let target = reference(&format!("localhost:{}/by-name/app:1", registry.port));
    assert_eq!(
        target.familiar(),
        format!("localhost:{}/by-name/app:1", registry.port)
    );
    push_default(&client, &target, &image, &src);
    assert_eq!(client.fetch_manifest(&target).unwrap().digest, image.digest);
}

/// Pushes `image` from `src` to `target` with default options and no progress.
fn push_default(client: &Client, target: &Reference, image: &TestImage, src: &DirBlobStore) {
    client
        .push(
            target,
            &image.manifest,
            src,
            &PushOptions::default(),
            &no_progress,
        )
        .unwrap();
}
