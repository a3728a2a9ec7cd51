//! Credentials through a `docker-credential-*` helper found on PATH, with Docker's config
//! located through `DOCKER_CONFIG`. A binary of its own: it sets process environment.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;
use img_registry::{
    login, logout, no_progress, Client, ClientConfig, DirBlobStore, Error, Platform, PushOptions,
    Reference,
};

/// A helper storing one file per server URL in `store`, speaking Docker's protocol: `store`
/// reads JSON, `get`/`erase` read the server URL, "credentials not found" on stdout + exit 1.
fn write_helper(bin: &std::path::Path, store: &std::path::Path) {
    let script = format!(
        r#"#!/bin/sh
set -e
read_key() {{ read -r url || true; echo "{store}/$(printf %s "$url" | tr -c 'A-Za-z0-9' '_')"; }}
case "$1" in
  store)
    json=$(cat)
    url=$(printf %s "$json" | sed 's/.*"ServerURL":"\([^"]*\)".*/\1/')
    printf %s "$json" > "{store}/$(printf %s "$url" | tr -c 'A-Za-z0-9' '_')"
    echo store >> "{store}/calls" ;;
  get)
    f=$(read_key); echo get >> "{store}/calls"
    if [ -f "$f" ]; then cat "$f"; else echo "credentials not found in native keychain"; exit 1; fi ;;
  erase)
    f=$(read_key); echo erase >> "{store}/calls"
    if [ -f "$f" ]; then rm "$f"; else echo "credentials not found in native keychain"; exit 1; fi ;;
  *) echo "unknown action $1"; exit 1 ;;
esac
"#,
        store = store.display()
    );
    let path = bin.join("docker-credential-imgtest");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn credential_helper_login_pull_logout() {
    let bin = tempfile::tempdir().unwrap();
    let helper_store = tempfile::tempdir().unwrap();
    write_helper(bin.path(), helper_store.path());
    let docker = tempfile::tempdir().unwrap();
    // This binary has one test, so changing the environment races with nothing.
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    std::env::set_var("PATH", path);
    std::env::set_var("DOCKER_CONFIG", docker.path());

    let registry = TestRegistry::start(RegistryAuth::Htpasswd {
        user: "carol".into(),
        password: "pw-carol".into(),
    });
    let host = registry.host();
    // credHelpers for this registry wins over a credsStore that does not exist.
    std::fs::write(
        docker.path().join("config.json"),
        serde_json::json!({"credsStore": "no-such-store", "credHelpers": {host.clone(): "imgtest"}}).to_string(),
    )
    .unwrap();
    let config = ClientConfig::default();

    let err = login(&host, "carol", "bad", &config).unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    let calls = std::fs::read_to_string(helper_store.path().join("calls")).unwrap_or_default();
    assert!(
        !calls.contains("store"),
        "nothing stored after a failed login: {calls:?}"
    );

    login(&host, "carol", "pw-carol", &config).unwrap();
    let stored_name: String = host
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let stored: serde_json::Value =
        serde_json::from_slice(&read(&helper_store.path().join(&stored_name))).unwrap();
    assert_eq!(stored["Username"], "carol");
    assert_eq!(stored["Secret"], "pw-carol");
    let docker_json: serde_json::Value =
        serde_json::from_slice(&read(&docker.path().join("config.json"))).unwrap();
    assert_eq!(
        docker_json["auths"][&host],
        serde_json::json!({}),
        "secrets stay in the helper"
    );
    assert_eq!(docker_json["credHelpers"][&host], "imgtest");

    let src = DirBlobStore::new(tempfile::tempdir().unwrap().keep()).unwrap();
    let image = build_image(&src, &[vec![("f", b"helper".to_vec())]]);
    let reference = Reference::parse(&format!("{host}/helper/app:1")).unwrap();
    let client = Client::new(config.clone());
    client
        .push(
            &reference,
            &image.manifest,
            &src,
            &PushOptions::default(),
            &no_progress,
        )
        .unwrap();
    let dest = DirBlobStore::new(tempfile::tempdir().unwrap().keep()).unwrap();
    client
        .pull(&reference, &Platform::host(), &dest, &no_progress)
        .unwrap();

    assert!(logout(&host, &config).unwrap());
    assert!(!helper_store.path().join(&stored_name).exists());
    let err = Client::new(config).fetch_manifest(&reference).unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
}
