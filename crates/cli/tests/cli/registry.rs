//! `img pull`, `img push`, `img login`, `img logout` against Debian's docker-registry.

use img_snapshot::Digest;

use crate::fixtures::{skopeo_raw_manifest, store_busybox, Registry, StoredImage};
use crate::{assert_stderr_contains, assert_success, stderr, Img};

/// A fresh state directory holding busybox as `<registry>/<repo>`: its name, img, the image.
fn busybox_named_on(registry: &Registry, repo: &str) -> (String, Img, StoredImage) {
    let name = format!("{}/{repo}", registry.host());
    let img = Img::new();
    let stored = store_busybox(&img.store(), &name);
    (name, img, stored)
}

#[test]
fn push_then_pull_into_a_fresh_store_round_trips_the_image() {
    let registry = Registry::anonymous();
    let (name, source, stored) = busybox_named_on(&registry, "test/busybox:1");

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
    // As with `docker pull`, the layers are unpacked, so a build on the image starts at once.
    let snapshots = store
        .snapshotter(img_snapshot::BackendChoice::Auto)
        .unwrap()
        .list()
        .unwrap();
    assert!(
        snapshots.iter().any(|s| s.key.starts_with("layer/")),
        "the pulled layer is unpacked: {snapshots:?}"
    );

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
    let (name, img, stored) = busybox_named_on(&registry, "test/busybox:2");
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
    let (name, img, _) = busybox_named_on(&registry, "test/quiet:1");
    let output = img.run(&["--quiet", "push", &name]);
    assert_success(&output, &["push"]);
    assert_eq!(stderr(&output), "");
}

#[test]
fn pulling_a_missing_tag_fails_and_stores_no_name() {
    let registry = Registry::anonymous();
    let name = format!("{}/test/absent:1", registry.host());
    let img = Img::new();
    img.fails(&["pull", &name], &format!("cannot pull {name}"));
    assert!(img.store().images().list().unwrap().is_empty());
}

#[test]
fn pushing_an_image_that_is_not_stored_says_so() {
    let img = Img::new();
    img.fails(
        &["push", "127.0.0.1:1/none:1"],
        "no image named 127.0.0.1:1/none:1 in the local store",
    );
}

#[test]
fn pull_with_an_unknown_platform_syntax_is_an_error() {
    let img = Img::new();
    img.fails(
        &["pull", "--platform", "amd64/", "127.0.0.1:1/x:1"],
        "invalid platform \"amd64/\"",
    );
}

#[test]
fn login_push_and_logout_with_a_password_protected_registry() {
    let registry = Registry::with_password("alice", "s3cret");
    let host = registry.host();
    let (name, img, _) = busybox_named_on(&registry, "private/busybox:1");

    let denied = img.run(&["-q", "push", &name]);
    assert!(!denied.status.success(), "anonymous push is refused");

    let wrong = img.run_with_input(
        &["login", "-u", "alice", "--password-stdin", &host],
        b"wrong\n",
    );
    assert!(!wrong.status.success());
    assert_stderr_contains(&wrong, &format!("cannot log in to {host}"));
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
    assert_stderr_contains(
        &output,
        "WARNING! Using --password via the CLI is insecure. Use --password-stdin.",
    );
}

#[test]
fn login_without_a_terminal_needs_the_user_name_and_password_as_flags() {
    let img = Img::new();
    img.fails(
        &["login", "127.0.0.1:1"],
        "standard input is not a terminal; pass --username",
    );
    img.fails(
        &["login", "-u", "x", "127.0.0.1:1"],
        "standard input is not a terminal; use --password-stdin",
    );
    img.fails(
        &["login", "--password-stdin", "127.0.0.1:1"],
        "--password-stdin needs the user name from --username",
    );
    let output = img.run(&["login", "-p", "a", "--password-stdin", "127.0.0.1:1"]);
    assert!(!output.status.success());
}

#[test]
fn a_registry_off_loopback_needs_insecure_registry_for_plain_http() {
    let registry = Registry::anonymous_on(crate::fixtures::non_loopback_ip());
    let (name, img, _) = busybox_named_on(&registry, "test/busybox:1");

    let refused = img.run(&["-q", "push", &name]);
    assert_eq!(
        refused.status.code(),
        Some(1),
        "plain HTTP is not used unasked"
    );
    assert_stderr_contains(&refused, &format!("cannot push {name}"));

    img.ok(&["-q", "--insecure-registry", &registry.host(), "push", &name]);
    let other = Img::new();
    let ip = registry.ip.to_string();
    // A host without a port covers every port of that host.
    other.ok(&["-q", "pull", "--insecure-registry", &ip, &name]);
}

#[test]
fn a_multi_platform_index_is_pushed_whole_and_pulled_for_one_platform() {
    let registry = Registry::anonymous();
    let name = format!("{}/test/multi:1", registry.host());
    let source = Img::new();
    let amd64 = store_busybox(&source.store(), "docker.io/library/busybox:latest");
    let (index, arm64) = crate::fixtures::store_two_platform_index(&source.store(), &amd64, &name);

    let pushed = source.ok(&["-q", "push", &name]);
    assert!(
        pushed.starts_with(&format!("1: digest: {index} ")),
        "{pushed}"
    );
    assert_eq!(Digest::of(&skopeo_raw_manifest(&name)), index);

    // The local index resolves to this machine's platform.
    source.ok(&["unpack", &name]);
    assert!(source.dir().join("rootfs/bin/busybox").is_file());

    for (platform, want) in [(None, &amd64.manifest), (Some("linux/arm64"), &arm64)] {
        let target = Img::new();
        let mut args = vec!["-q", "pull"];
        if let Some(p) = platform {
            args.extend(["--platform", p]);
        }
        args.push(&name);
        let out = target.ok(&args);
        assert_eq!(out, format!("Digest: {index}\n{name}\n"), "{platform:?}");
        let record = target.store().images().get(&name).unwrap().unwrap();
        assert_eq!(
            record.target.digest().to_string(),
            want.to_string(),
            "{platform:?}"
        );
    }

    let target = Img::new();
    // The error lists the platforms there are.
    target.fails(
        &["-q", "pull", "--platform", "linux/s390x", &name],
        "linux/arm64",
    );
}

#[test]
fn tty_progress_redraws_in_place_and_ends_with_the_final_frame() {
    let registry = Registry::anonymous();
    let (name, img, stored) = busybox_named_on(&registry, "test/tty:1");
    let output = img.run(&["--progress=tty", "push", &name]);
    assert_success(&output, &["push"]);
    let err = stderr(&output);
    assert!(
        err.contains("\u{1b}[J"),
        "frames clear below themselves: {err:?}"
    );
    let last_frame = err.rsplit("\u{1b}[J").next().unwrap();
    assert!(
        last_frame.contains(&format!("{}: Pushed", &stored.layer.hex()[..12])),
        "{last_frame:?}"
    );
}

/// Runs `img <args>` on a pseudo-terminal (util-linux `script`), answering each prompt as it
/// appears. Returns everything the terminal showed and the exit status.
fn on_terminal(img: &Img, args: &[&str], answers: &[(&str, &str)]) -> (String, bool) {
    use std::io::{Read, Write};
    use std::process::Stdio;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    let command = std::iter::once(env!("CARGO_BIN_EXE_img"))
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    // The same environment `img.command()` gives img, and nothing else.
    let env = img.command();
    let mut child = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_clear()
        .envs(env.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .current_dir(img.dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script (util-linux) runs");
    let shown = Arc::new(Mutex::new(String::new()));
    let mut stdout = child.stdout.take().unwrap();
    let reader = {
        let shown = shown.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                shown
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    let mut stdin = child.stdin.take().unwrap();
    let mut seen = 0;
    for (prompt, answer) in answers {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = shown.lock().unwrap().clone();
            if let Some(at) = text[seen..].find(prompt) {
                seen += at + prompt.len();
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no prompt {prompt:?} in {text:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // Give the prompt's terminal settings (echo off for passwords) time to apply.
        std::thread::sleep(Duration::from_millis(200));
        stdin.write_all(format!("{answer}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }
    let status = child.wait().unwrap();
    drop(stdin);
    reader.join().unwrap();
    let text = shown.lock().unwrap().clone();
    (text, status.success())
}

#[test]
fn login_on_a_terminal_prompts_for_user_and_password_without_echo() {
    let registry = Registry::with_password("carol", "hunter2");
    let img = Img::new();
    let (shown, ok) = on_terminal(
        &img,
        &["login", &registry.host()],
        &[("Username: ", "carol"), ("Password: ", "hunter2")],
    );
    assert!(ok, "{shown}");
    assert!(shown.contains("Login Succeeded"), "{shown}");
    assert!(
        !shown.contains("hunter2"),
        "the password is not echoed: {shown}"
    );
    let config = std::fs::read_to_string(img.docker_config().join("config.json")).unwrap();
    assert!(config.contains(&registry.host()), "{config}");
}
