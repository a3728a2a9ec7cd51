//! `--cache-to` / `--cache-from`: two clean state directories stand for two CI pods, sharing
//! the cache through a real registry, an OCI layout directory, or an image's inline cache.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::fixtures::{store_busybox_for_builds, Registry};
use crate::{assert_success, stderr, Img};

const BASE: &str = "docker.io/library/busybox:latest";

/// One pod: a fresh state directory with the base image, and the build context.
pub(crate) struct Pod {
    pub(crate) img: Img,
}

impl Pod {
    pub(crate) fn new(dockerfile: &str) -> Pod {
        let img = Img::new();
        store_busybox_for_builds(&img.store(), BASE);
        std::fs::create_dir_all(img.dir().join("ctx")).unwrap();
        std::fs::write(img.dir().join("ctx/Dockerfile"), dockerfile).unwrap();
        Pod { img }
    }

    /// A pod whose base image is byte for byte `other`'s (copied from its store), so that
    /// both build on the same base whatever the layer compression made of it.
    pub(crate) fn with_base_of(other: &Pod, dockerfile: &str) -> Pod {
        let img = Img::new();
        let (from, to) = (other.img.store(), img.store());
        let record = from.images().get(BASE).unwrap().expect("the base image");
        let manifest: img_snapshot::Digest = record.target.digest().to_string().parse().unwrap();
        let bytes = from.content().read_blob(&manifest).unwrap();
        let doc: Value = serde_json::from_slice(&bytes).unwrap();
        let mut blobs = vec![doc["config"]["digest"].as_str().unwrap().to_owned()];
        for layer in doc["layers"].as_array().unwrap() {
            blobs.push(layer["digest"].as_str().unwrap().to_owned());
        }
        for blob in blobs {
            let digest: img_snapshot::Digest = blob.parse().unwrap();
            let data = from.content().read_blob(&digest).unwrap();
            to.content().write_blob(&data, Some(&digest)).unwrap();
        }
        to.content().write_blob(&bytes, Some(&manifest)).unwrap();
        to.images().put(BASE, &record.target).unwrap();
        std::fs::create_dir_all(img.dir().join("ctx")).unwrap();
        std::fs::write(img.dir().join("ctx/Dockerfile"), dockerfile).unwrap();
        Pod { img }
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut cmd = self.img.command();
        cmd.args(["--progress", "plain", "build"])
            .args(args)
            .arg("ctx")
            .stdin(Stdio::null());
        cmd
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("img runs")
    }

    /// A build into `out/` that must succeed; returns the progress.
    pub(crate) fn build(&self, args: &[&str]) -> String {
        let mut all = vec!["-o", "type=local,dest=out"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        assert_success(&out, &all);
        stderr(&out)
    }

    pub(crate) fn file(&self, rel: &str) -> String {
        let path = self.img.dir().join("out").join(rel);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }
}

/// The progress id (`#3`) of the step whose progress line names `step`.
fn step_id<'p>(progress: &'p str, step: &str) -> &'p str {
    let line = progress
        .lines()
        .find(|l| l.contains(step) && l.starts_with('#'))
        .unwrap_or_else(|| panic!("no {step} in {progress}"));
    line.split_whitespace().next().unwrap()
}

/// Whether the step whose progress line names `step` was taken from the cache.
pub(crate) fn cached(progress: &str, step: &str) -> bool {
    progress.contains(&format!("{} CACHED", step_id(progress, step)))
}

/// Whether the step whose progress line names `step` ran (a build that refused a cache layer
/// solves again: the step may show as cached first, then run).
pub(crate) fn ran(progress: &str, step: &str) -> bool {
    progress.contains(&format!("{} DONE", step_id(progress, step)))
}

/// Two stages, each with a step writing random bytes: equal files prove reuse, not a rerun.
const TWO_STAGES: &str = "FROM busybox AS builder
RUN head -c 32 /dev/urandom | od -An -tx1 > /built
FROM busybox
COPY --from=builder /built /built
RUN head -c 32 /dev/urandom | od -An -tx1 > /final
";

#[test]
fn registry_cache_mode_max_lets_a_fresh_pod_run_no_step() {
    let registry = Registry::anonymous();
    let cache = format!("{}/ci/app:buildcache", registry.host());
    let a = Pod::new(TWO_STAGES);
    let progress = a.build(&["--cache-to", &format!("type=registry,ref={cache},mode=max")]);
    assert!(
        progress.contains(&format!("exporting cache to {cache}")),
        "{progress}"
    );

    let b = Pod::with_base_of(&a, TWO_STAGES);
    let progress = b.build(&["--cache-from", &format!("type=registry,ref={cache}")]);
    for step in [
        "RUN head -c 32 /dev/urandom | od -An -tx1 > /built",
        "COPY --from=builder",
        "> /final",
    ] {
        assert!(cached(&progress, step), "{step} ran in pod B:\n{progress}");
    }
    assert_eq!(b.file("built"), a.file("built"));
    assert_eq!(b.file("final"), a.file("final"));
    assert!(!progress.contains("warning"), "{progress}");
    // The hits' layers were downloaded (busybox's was there already), with their size shown.
    assert!(progress.contains("importing cache layers"), "{progress}");
    assert!(!progress.contains(" 0 layers downloaded"), "{progress}");
}

#[test]
fn mode_min_exports_only_the_final_chain() {
    let registry = Registry::anonymous();
    let cache = format!("{}/ci/min:buildcache", registry.host());
    let a = Pod::new(TWO_STAGES);
    a.build(&["--cache-to", &format!("type=registry,ref={cache}")]);

    let b = Pod::with_base_of(&a, TWO_STAGES);
    let progress = b.build(&["--cache-from", &cache]);
    // The builder stage's step is not in a mode=min cache: it runs again, with new bytes.
    assert!(!cached(&progress, "> /built"), "{progress}");
    assert_ne!(b.file("built"), a.file("built"));

    // The final stage's own chain is: a pod building a final stage that does not depend on
    // the builder's output reuses it.
    let single = "FROM busybox\nRUN head -c 32 /dev/urandom | od -An -tx1 > /final\n";
    let c = Pod::new(single);
    c.build(&["--cache-to", &format!("type=registry,ref={cache}")]);
    let d = Pod::with_base_of(&c, single);
    let progress = d.build(&["--cache-from", &cache]);
    assert!(cached(&progress, "> /final"), "{progress}");
    assert_eq!(d.file("final"), c.file("final"));
}

#[test]
fn local_cache_directory_round_trips() {
    let single = "FROM busybox\nRUN head -c 32 /dev/urandom | od -An -tx1 > /r\nRUN true\n";
    let shared = tempfile::tempdir().unwrap();
    let dir = shared.path().join("cache");
    let a = Pod::new(single);
    a.build(&[
        "--cache-to",
        &format!("type=local,dest={},mode=max", dir.display()),
    ]);
    assert!(dir.join("index.json").is_file() && dir.join("oci-layout").is_file());

    let b = Pod::with_base_of(&a, single);
    let progress = b.build(&["--cache-from", &format!("type=local,src={}", dir.display())]);
    assert!(cached(&progress, "> /r"), "{progress}");
    assert!(cached(&progress, "RUN true"), "{progress}");
    assert_eq!(b.file("r"), a.file("r"));
}

#[test]
fn inline_cache_is_read_back_from_the_pushed_image() {
    let registry = Registry::anonymous();
    let image = format!("{}/ci/inline:1", registry.host());
    let single = "FROM busybox\nRUN head -c 32 /dev/urandom | od -An -tx1 > /r\n";
    let a = Pod::new(single);
    let out = a.run(&["-t", &image, "--push", "--cache-to", "type=inline"]);
    assert_success(&out, &["inline"]);

    let b = Pod::with_base_of(&a, single);
    let copy = format!("{}/ci/inline:2", registry.host());
    let out = b.run(&["-t", &copy, "--push", "--cache-from", &image]);
    assert_success(&out, &["inline import"]);
    assert!(cached(&stderr(&out), "> /r"), "{}", stderr(&out));
    // Same layers, byte for byte: pod B's image holds pod A's random bytes.
    let layers = |name: &str| {
        let doc: Value = serde_json::from_str(&crate::tool(
            "skopeo",
            &["inspect", "--tls-verify=false", &format!("docker://{name}")],
        ))
        .unwrap();
        doc["Layers"].clone()
    };
    assert_eq!(layers(&copy), layers(&image));
}

#[test]
fn missing_refs_and_corrupt_blobs_are_warnings_and_the_build_goes_on() {
    let registry = Registry::anonymous();
    let single = "FROM busybox\nRUN head -c 32 /dev/urandom | od -An -tx1 > /r\n";
    let pod = Pod::new(single);
    let missing = format!("{}/ci/none:here", registry.host());
    let progress = pod.build(&[
        "--cache-from",
        &missing,
        "--cache-from",
        "type=local,src=/nonexistent/cache",
    ]);
    assert!(
        progress.contains(&format!("warning: cannot import cache from {missing}")),
        "{progress}"
    );
    assert!(
        progress.contains("warning: cannot import cache from /nonexistent/cache"),
        "{progress}"
    );
    assert!(!cached(&progress, "> /r"));

    // A layer whose bytes do not match its digest is refused; the step runs instead.
    let shared = tempfile::tempdir().unwrap();
    let dir = shared.path().join("cache");
    let a = Pod::new(single);
    a.build(&["--cache-to", &format!("type=local,dest={}", dir.display())]);
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let blob = |digest: &str| {
        dir.join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    for layer in manifest["layers"].as_array().unwrap() {
        let path: PathBuf = blob(layer["digest"].as_str().unwrap());
        let size = std::fs::metadata(&path).unwrap().len() as usize;
        std::fs::write(&path, vec![b'x'; size]).unwrap();
    }
    let b = Pod::with_base_of(&a, single);
    let progress = b.build(&["--cache-from", &format!("type=local,src={}", dir.display())]);
    assert!(ran(&progress, "> /r"), "{progress}");
    assert!(progress.contains("refused"), "{progress}");
    assert_ne!(b.file("r"), a.file("r"));
}

#[test]
fn concurrent_exporters_to_one_ref_leave_a_valid_cache() {
    let registry = Registry::anonymous();
    let cache = format!("{}/ci/race:buildcache", registry.host());
    let to = format!("type=registry,ref={cache},mode=max");
    let pods: Vec<Pod> = (0..2)
        .map(|i| Pod::new(&format!("FROM busybox\nRUN echo pod {i} > /pod && head -c 32 /dev/urandom | od -An -tx1 > /r\n")))
        .collect();
    let children: Vec<_> = pods
        .iter()
        .map(|p| {
            p.command(&["-o", "type=local,dest=out", "--cache-to", &to])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("img starts")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert_success(&out, &["concurrent export"]);
    }
    // Whichever push came last, the cache is whole: a third pod imports it without warning
    // and one of the two builds is entirely cached there.
    let hits: Vec<bool> = (0..2)
        .map(|i| {
            let pod = Pod::with_base_of(&pods[i], &format!("FROM busybox\nRUN echo pod {i} > /pod && head -c 32 /dev/urandom | od -An -tx1 > /r\n"));
            let progress = pod.build(&["--cache-from", &cache]);
            assert!(!progress.contains("warning"), "{progress}");
            let hit = cached(&progress, "RUN echo pod");
            if hit {
                assert_eq!(pod.file("r"), pods[i].file("r"));
            }
            hit
        })
        .collect();
    assert_eq!(hits.iter().filter(|h| **h).count(), 1, "{hits:?}");
}

#[test]
fn cache_mounts_travel_to_a_fresh_pod() {
    let registry = Registry::anonymous();
    let cache = format!("{}/ci/mounts:buildcache", registry.host());
    let dockerfile = "FROM busybox
ARG RUN_ID
RUN --mount=type=cache,target=/cache,id=demo echo \"build $RUN_ID\" >> /cache/log && cat /cache/log > /seen
";
    let a = Pod::new(dockerfile);
    let progress = a.build(&[
        "--build-arg",
        "RUN_ID=1",
        "--cache-to",
        &format!("type=registry,ref={cache},mode=max,cache-mounts=true"),
    ]);
    assert!(progress.contains("cache mount \"demo\""), "{progress}");

    let b = Pod::with_base_of(&a, dockerfile);
    let progress = b.build(&["--build-arg", "RUN_ID=2", "--cache-from", &cache]);
    assert!(progress.contains("restoring cache mounts"), "{progress}");
    assert_eq!(b.file("seen"), "build 1\nbuild 2\n");

    // Over the size limit a mount is skipped with a warning.
    let c = Pod::new(dockerfile);
    let progress = c.build(&[
        "--build-arg",
        "RUN_ID=3",
        "--cache-to",
        &format!("type=registry,ref={cache}-small,cache-mounts=true,cache-mounts-max-size=1"),
    ]);
    assert!(
        progress.contains("over cache-mounts-max-size=1; not exported"),
        "{progress}"
    );
}

#[test]
fn bad_cache_specs_are_refused_before_the_build() {
    let pod = Pod::new("FROM busybox\n");
    for (spec, says) in [
        (
            ["-t", "x", "--cache-to", "type=registry"],
            "type=registry needs ref=REFERENCE",
        ),
        (["-t", "x", "--cache-to", "type=s3"], "unknown type \"s3\""),
        (
            ["-t", "x", "--cache-from", "type=local"],
            "type=local needs src=DIRECTORY",
        ),
    ] {
        let out = pod.run(&spec);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).contains(says), "{}", stderr(&out));
    }
}

#[test]
fn secrets_reach_neither_the_cache_metadata_nor_its_layers() {
    let pod = Pod::new(
        "FROM busybox\nRUN --mount=type=secret,id=token wc -c < /run/secrets/token > /len\n",
    );
    let secret = "s3cr3t-value-that-must-not-leak";
    std::fs::write(pod.img.dir().join("token.txt"), secret).unwrap();
    let shared = tempfile::tempdir().unwrap();
    let dir = shared.path().join("cache");
    pod.build(&[
        "--secret",
        "id=token,src=token.txt",
        "--cache-to",
        &format!("type=local,dest={},mode=max", dir.display()),
    ]);
    assert_eq!(pod.file("len").trim(), secret.len().to_string());
    let unpacked = shared.path().join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    for entry in std::fs::read_dir(dir.join("blobs/sha256")).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(secret),
            "{} holds the secret",
            path.display()
        );
        // Layers are gzip tars: look inside them too.
        if bytes.starts_with(&[0x1f, 0x8b]) {
            crate::tool(
                "tar",
                &[
                    "-xzf",
                    path.to_str().unwrap(),
                    "-C",
                    unpacked.to_str().unwrap(),
                ],
            );
        }
    }
    let found = Command::new("grep")
        .args(["-r", "-l", secret])
        .arg(&unpacked)
        .output()
        .unwrap();
    assert!(
        found.stdout.is_empty(),
        "the secret is in {}",
        String::from_utf8_lossy(&found.stdout)
    );
}

#[test]
fn a_failed_cache_export_fails_the_build_unless_ignore_error() {
    let pod = Pod::new("FROM busybox\nRUN echo hi > /hi\n");
    // A file where the cache directory should be: nothing can be written under it.
    std::fs::write(pod.img.dir().join("blocker"), "").unwrap();
    let out = pod.run(&[
        "-o",
        "type=local,dest=out",
        "--cache-to",
        "type=local,dest=blocker/cache",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot export the cache to blocker/cache"),
        "{}",
        stderr(&out)
    );

    let progress = pod.build(&[
        "--cache-to",
        "type=local,dest=blocker/cache,ignore-error=true",
    ]);
    assert!(
        progress.contains("warning: cannot export cache to blocker/cache (ignored)"),
        "{progress}"
    );
    assert_eq!(pod.file("hi"), "hi\n");
}
