//! `img pull`, `img push`, `img login`, `img logout` against Debian's docker-registry.

use img_snapshot::Digest;

use crate::fixtures::{skopeo_raw_manifest, store_busybox, Registry};
use crate::{assert_success, stderr, Img};

#[test]
fn push_then_pull_into_a_fresh_store_round_trips_the_image() {
    let registry = Registry::anonymous();
    let name = format!("{}/test/busybox:1", registry.host());
    let source = Img::new();
    let stored = store_busybox(&source.store(), &name);

    let out = source.ok(&["--progress=plain", "push", &stored.name]);
    assert_eq!(
        out,
        format!("1: digest: {} size: {}\n", stored.manifest, {
            source.store().content().size(&stored.manifest).unwrap()
        })
    );
    let served = skopeo_raw_manifest(&name);
    assert_eq!(
        Digest::of(&served),
        stored.manifest,
        "the registry holds our manifest"
    );

    let target = Img::new();
    let output = target.run(&["--progress=plain", "pull", &name]);
    assert_success(&output, &["pull"]);
    let out = String::from_utf8(output.stdout.clone()).unwrap();
    assert_eq!(out, format!("Digest: {}\n{name}\n", stored.manifest));
    let progress = stderr(&output);
    let short = &stored.layer.hex()[..12];
    assert!(
        progress.contains(&format!("{short}: Downloading ")),
        "{progress}"
    );
    assert!(
        progress.contains(&format!("{short}: Download complete")),
        "{progress}"
    );

    let store = target.store();
    let record = store
        .images()
        .get(&name)
        .unwrap()
        .expect("the name is stored");
    assert_eq!(
        record.target.digest().to_string(),
        stored.manifest.to_string()
    );
    for blob in [&stored.manifest, &stored.config, &stored.layer] {
        assert!(store.content().exists(blob), "{blob} pulled");
    }

    // Pulling again transfers nothing: every blob is already present.
    let again = target.run(&["--progress=plain", "pull", &name]);
    assert_success(&again, &["pull"]);
    assert!(
        !stderr(&again).contains("Downloading"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn pushing_again_finds_the_layers_present_and_rawjson_reports_it() {
    let registry = Registry::anonymous();
    let name = format!("{}/test/busybox:2", registry.host());
    let img = Img::new();
    let stored = store_busybox(&img.store(), &name);
    img.ok(&["-q", "push", &name]);
    let output = img.run(&["--progress=rawjson", "push", &name]);
    assert_success(&output, &["push"]);
    let events: Vec<serde_json::Value> = stderr(&output)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        events.iter().any(|e| e["event"] == "blob_exists"
            && e["direction"] == "push"
            && e["digest"] == stored.layer.to_string()),
        "{events:#?}"
    );
}

#[test]
fn quiet_prints_no_progress() {
    let registry = Registry::anonymous();
    let name = format!("{}/test/quiet:1", registry.host());
    let img = Img::new();
    store_busybox(&img.store(), &name);
    let output = img.run(&["--quiet", "push", &name]);
    assert_success(&output, &["push"]);
    assert_eq!(stderr(&output), "");
}

#[test]
fn pulling_a_missing_tag_fails_and_stores_no_name() {
    let registry = Registry::anonymous();
    let name = format!("{}/test/absent:1", registry.host());
    let img = Img::new();
    let output = img.run(&["pull", &name]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.contains(&format!("cannot pull {name}")), "{err}");
    assert!(img.store().images().list().unwrap().is_empty());
}

#[test]
fn pushing_an_image_that_is_not_stored_says_so() {
    let img = Img::new();
    let output = img.run(&["push", "127.0.0.1:1/none:1"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("no image named 127.0.0.1:1/none:1 in the local store"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn pull_with_an_unknown_platform_syntax_is_an_error() {
    let img = Img::new();
    let output = img.run(&["pull", "--platform", "amd64", "127.0.0.1:1/x:1"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("invalid platform \"amd64\""),
        "{}",
        stderr(&output)
    );
}

#[test]
fn login_push_and_logout_with_a_password_protected_registry() {
    let registry = Registry::with_password("alice", "s3cret");
    let host = registry.host();
    let name = format!("{host}/private/busybox:1");
    let img = Img::new();
    store_busybox(&img.store(), &name);

    let denied = img.run(&["-q", "push", &name]);
    assert!(!denied.status.success(), "anonymous push is refused");

    let wrong = img.run_with_input(
        &["login", "-u", "alice", "--password-stdin", &host],
        b"wrong\n",
    );
    assert!(!wrong.status.success());
    assert!(
        stderr(&wrong).contains(&format!("cannot log in to {host}")),
        "{}",
        stderr(&wrong)
    );
    assert!(!img.docker_config().join("config.json").exists());

    let ok = img.run_with_input(
        &["login", "-u", "alice", "--password-stdin", &host],
        b"s3cret\n",
    );
    assert_success(&ok, &["login"]);
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "Login Succeeded\n");
    let config = std::fs::read_to_string(img.docker_config().join("config.json")).unwrap();
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert!(config["auths"][&host].is_object(), "{config}");
    assert!(!stderr(&ok).contains("s3cret"));

    img.ok(&["-q", "push", &name]);

    assert_eq!(
        img.ok(&["logout", &host]),
        format!("Removing login credentials for {host}\n")
    );
    assert_eq!(
        img.ok(&["logout", &host]),
        format!("Not logged in to {host}\n")
    );
}

#[test]
fn password_on_the_command_line_warns() {
    let registry = Registry::with_password("bob", "pw");
    let img = Img::new();
    let output = img.run(&["login", "-u", "bob", "-p", "pw", &registry.host()]);
    assert_success(&output, &["login"]);
    assert!(
        stderr(&output)
            .contains("WARNING! Using --password via the CLI is insecure. Use --password-stdin."),
        "{}",
        stderr(&output)
    );
}

#[test]
fn login_without_a_terminal_needs_the_user_name_and_password_as_flags() {
    let img = Img::new();
    let output = img.run(&["login", "127.0.0.1:1"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("standard input is not a terminal; pass --username"),
        "{}",
        stderr(&output)
    );
    let output = img.run(&["login", "-u", "x", "127.0.0.1:1"]);
    assert!(
        stderr(&output).contains("standard input is not a terminal; use --password-stdin"),
        "{}",
        stderr(&output)
    );
    let output = img.run(&["login", "--password-stdin", "127.0.0.1:1"]);
    assert!(
        stderr(&output).contains("--password-stdin needs the user name from --username"),
        "{}",
        stderr(&output)
    );
    let output = img.run(&["login", "-p", "a", "--password-stdin", "127.0.0.1:1"]);
    assert!(!output.status.success());
}
