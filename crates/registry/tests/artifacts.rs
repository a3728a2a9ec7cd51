//! What a build cache kept in a registry needs, against the real registry: manifests whose
//! config is not an image config and whose layers are arbitrary blobs, an index listing blobs
//! directly (BuildKit's cache layout), blob existence checks, cross-repository mounts and
//! single-blob pushes.

mod common;

use common::*;
use img_registry::{
    no_progress, Client, Descriptor, Digest, DirBlobStore, Platform, PushOptions, Reference,
    OCI_INDEX, OCI_MANIFEST,
};

const CACHE_CONFIG: &str = "application/vnd.buildkit.cacheconfig.v0";
const GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const OTHER_BLOB: &str = "application/vnd.example.opaque";

fn reference(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

fn descriptor(media_type: &str, bytes: &[u8], digest: &Digest) -> serde_json::Value {
    serde_json::json!({"mediaType": media_type, "digest": digest.to_string(), "size": bytes.len()})
}

fn parse_descriptor(value: &serde_json::Value) -> Descriptor {
    serde_json::from_value(value.clone()).unwrap()
}

/// The blobs of a cache: a config of BuildKit's cache type, a gzip tar layer and an opaque
/// blob, stored in `store`; returned as (descriptor JSON, bytes).
fn cache_blobs(store: &DirBlobStore) -> Vec<(serde_json::Value, Vec<u8>)> {
    let config = serde_json::to_vec(&serde_json::json!({"layers": [], "records": []})).unwrap();
    let (layer, _) = gzip_tar_layer(&[("cache/file", b"cached".as_slice())]);
    let opaque = noise(70_000);
    [
        (CACHE_CONFIG, config),
        (GZIP_LAYER, layer),
        (OTHER_BLOB, opaque),
    ]
    .into_iter()
    .map(|(media_type, bytes)| {
        let digest = store.put_bytes(&bytes).unwrap();
        (descriptor(media_type, &bytes, &digest), bytes)
    })
    .collect()
}

#[test]
fn manifest_with_a_custom_config_and_arbitrary_layers_round_trips() {
    let registry = TestRegistry::start(RegistryAuth::Anonymous);
    let docker = tempfile::tempdir().unwrap();
    let client = Client::new(client_config(docker.path()));
    let src = DirBlobStore::new(tempfile::tempdir().unwrap().keep()).unwrap();
    let blobs = cache_blobs(&src);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": blobs[0].0,
        "layers": [blobs[1].0, blobs[2].0],
    }))
    .unwrap();
    let target = reference(&format!("{}/cache/app:buildcache", registry.host()));
    let digest = client
        .push(
            &target,
            &manifest,
            &src,
            &PushOptions::default(),
            &no_progress,
        )
        .unwrap();

    let fetched = client.fetch_manifest(&target).unwrap();
    assert_eq!(fetched.bytes, manifest);
    assert_eq!(fetched.digest, digest);
    assert_eq!(fetched.media_type, OCI_MANIFEST);
    let dest = DirBlobStore::new(tempfile::tempdir().unwrap().keep()).unwrap();
    for (desc, bytes) in &blobs {
        let desc = parse_descriptor(desc);
        assert!(client.blob_exists(&target, desc.digest()).unwrap());
        client
            .fetch_blob(&target, &desc, &dest, &no_progress)
            .unwrap();
        assert_eq!(&read(&dest.blob_path(desc.digest())), bytes);
    }
    // `pull` takes such a manifest as it is: the config is handed over as bytes, unread.
    let pulled = client
        .pull(
            &target,
            &Platform::host(),
            &DirBlobStore::new(tempfile::tempdir().unwrap().keep()).unwrap(),
            &no_progress,
        )
        .unwrap();
    assert_eq!(
        pulled.config_descriptor.media_type().to_string(),
        CACHE_CONFIG
    );
    assert_eq!(pulled.config, blobs[0].1);
    assert_eq!(pulled.layers.len(), 2);

    let unknown = img_registry::sha256_digest(b"never pushed");
    assert!(!client.blob_exists(&target, &unknown).unwrap());
}

#[test]
fn index_listing_blobs_directly_round_trips() {
    // BuildKit's default cache layout: an index whose entries are the cache blobs and its
    // config, not manifests.
    let registry = TestRegistry::start(RegistryAuth::Anonymous);
    let docker = tempfile::tempdir().unwrap();
    let client = Client::new(client_config(docker.path()));
    let src = DirBlobStore::new(tempfile::tempdir().unwrap().keep()).unwrap();
    let blobs = cache_blobs(&src);
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [blobs[1].0, blobs[2].0, blobs[0].0],
    }))
    .unwrap();
    let target = reference(&format!("{}/cache/index:buildcache", registry.host()));
    client
        .push(&target, &index, &src, &PushOptions::default(), &no_progress)
        .unwrap();

    let fetched = client.fetch_manifest(&target).unwrap();
    assert_eq!(fetched.bytes, index);
    assert_eq!(fetched.media_type, OCI_INDEX);
    let dest = DirBlobStore::new(tempfile::tempdir().unwrap().keep()).unwrap();
    for (desc, bytes) in &blobs {
        let desc = parse_descriptor(desc);
        client
            .fetch_blob(&target, &desc, &dest, &no_progress)
            .unwrap();
        assert_eq!(&read(&dest.blob_path(desc.digest())), bytes);
    }
}

#[test]
fn single_blobs_are_pushed_checked_and_mounted_across_repositories() {
    let registry = TestRegistry::start(RegistryAuth::Anonymous);
    let docker = tempfile::tempdir().unwrap();
    let client = Client::new(client_config(docker.path()));
    let src = DirBlobStore::new(tempfile::tempdir().unwrap().keep()).unwrap();
    let blobs = cache_blobs(&src);
    let first = reference(&format!("{}/team/first:1", registry.host()));
    let second = reference(&format!("{}/team/second:1", registry.host()));

    let layer = parse_descriptor(&blobs[2].0);
    assert!(!client.blob_exists(&first, layer.digest()).unwrap());
    client
        .push_blob(&first, &layer, &src, &PushOptions::default(), &no_progress)
        .unwrap();
    assert!(client.blob_exists(&first, layer.digest()).unwrap());
    assert!(!client.blob_exists(&second, layer.digest()).unwrap());

    // Mounted from the first repository: present in the second without an upload.
    assert!(client.mount_blob(&second, &layer, &first).unwrap());
    assert!(client.blob_exists(&second, layer.digest()).unwrap());
    let dest = DirBlobStore::new(tempfile::tempdir().unwrap().keep()).unwrap();
    client
        .fetch_blob(&second, &layer, &dest, &no_progress)
        .unwrap();
    assert_eq!(read(&dest.blob_path(layer.digest())), blobs[2].1);

    // A blob the source repository lacks is declined (the registry's upload session is
    // cancelled), and so is a source on another registry.
    let config = parse_descriptor(&blobs[0].0);
    assert!(!client.mount_blob(&second, &config, &first).unwrap());
    assert!(!client.blob_exists(&second, config.digest()).unwrap());
    let elsewhere = reference("registry.invalid/team/first:1");
    assert!(!client.mount_blob(&second, &layer, &elsewhere).unwrap());

    // push_blob mounts when told where the blob may be.
    let third = reference(&format!("{}/team/third:1", registry.host()));
    let events = std::sync::Mutex::new(Vec::new());
    let options = PushOptions {
        mount_from: vec![first.clone()],
        ..PushOptions::default()
    };
    client
        .push_blob(&third, &layer, &src, &options, &|e| {
            events.lock().unwrap().push(e.clone())
        })
        .unwrap();
    let events = events.into_inner().unwrap();
    assert!(
        matches!(&events[..], [img_registry::ProgressEvent::Mounted { from, .. }] if from == "team/first"),
        "{events:?}"
    );
}
