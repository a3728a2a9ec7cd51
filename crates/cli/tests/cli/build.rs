//! `img build` end to end: real RUN steps in the sandbox, a real cache, every output checked
//! with the tools that consume it (skopeo, umoci, podman, tar), pushes to a real registry.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::fixtures::{store_busybox_for_builds, Registry};
use crate::{assert_fails, assert_success, stderr, tool, Img};

/// The base image every test Dockerfile starts from.
const BASE: &str = "docker.io/library/busybox:latest";

/// A state directory with the busybox base image, and a build context directory.
pub(crate) struct Build {
    pub(crate) img: Img,
}

impl Build {
    pub(crate) fn new() -> Build {
        let img = Img::new();
        store_busybox_for_builds(&img.store(), BASE);
        std::fs::create_dir_all(img.dir().join("ctx")).unwrap();
        Build { img }
    }

    pub(crate) fn ctx(&self) -> PathBuf {
        self.img.dir().join("ctx")
    }

    pub(crate) fn write(&self, rel: &str, text: &str) {
        let path = self.ctx().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.img.dir().join(rel)
    }

    /// `img --progress=plain build <args> ctx` with extra environment.
    pub(crate) fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = self.img.command();
        cmd.args(["--progress", "plain", "build"])
            .args(args)
            .arg("ctx")
            .envs(env.iter().copied())
            .stdin(Stdio::null());
        cmd.output().expect("img runs")
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    /// A build that must fail with exit code 1, saying `message`.
    pub(crate) fn fails(&self, args: &[&str], message: &str) -> Output {
        assert_fails(self.run(args), message)
    }

    /// A build that must succeed; returns its standard error (the progress).
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_success(&out, args);
        stderr(&out)
    }

    /// `img build -q`: the digest on standard output.
    pub(crate) fn digest(&self, args: &[&str]) -> String {
        let mut all = vec!["-q"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        assert_success(&out, &all);
        let digest = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        assert!(
            digest.starts_with("sha256:") && digest.len() == 71,
            "{digest}"
        );
        digest
    }

    /// `img inspect NAME` as JSON (manifest and config).
    pub(crate) fn inspect(&self, name: &str) -> Value {
        serde_json::from_str(&self.img.ok(&["inspect", name])).unwrap()
    }

    pub(crate) fn config(&self, name: &str) -> Value {
        let doc = self.inspect(name);
        doc.get("config")
            .or_else(|| doc.get("Config"))
            .cloned()
            .unwrap_or_else(|| panic!("no config in {doc}"))
    }
}

pub(crate) fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const MULTI_STAGE: &str = r#"# syntax=docker/dockerfile:1
ARG GREETING=hello
FROM busybox AS build
ARG GREETING
ARG WHO=world
WORKDIR /src
COPY words.txt ./
RUN --mount=type=cache,target=/cache \
    echo "$GREETING $WHO" > message && cat words.txt >> message && \
    echo run >> /cache/runs && wc -l < /cache/runs > runs-seen
RUN <<EOF
set -e
echo "from a heredoc" > heredoc.txt
EOF
COPY <<EOF /src/inline.txt
inline $GREETING
EOF

FROM busybox AS other
RUN echo "other stage" > /other.txt

FROM busybox
COPY --from=build /src/message /src/heredoc.txt /src/inline.txt /app/
COPY --from=other /other.txt /app/
CMD ["cat", "/app/message"]
"#;

#[test]
fn multi_stage_build_args_heredocs_and_cache_mounts() {
    let b = Build::new();
    b.write("Dockerfile", MULTI_STAGE);
    b.write("words.txt", "word\n");
    b.ok(&[
        "-t",
        "app",
        "--build-arg",
        "WHO=img",
        "-o",
        "type=local,dest=out",
    ]);
    let out = b.path("out");
    assert_eq!(read(&out.join("app/message")), "hello img\nword\n");
    assert_eq!(read(&out.join("app/heredoc.txt")), "from a heredoc\n");
    assert_eq!(read(&out.join("app/inline.txt")), "inline hello\n");
    assert_eq!(read(&out.join("app/other.txt")), "other stage\n");

    // `--build-arg KEY` takes the environment's value; the cache mount outlives the build.
    let env_out = b.run_env(
        &["--build-arg", "WHO", "-o", "type=local,dest=out2"],
        &[("WHO", "env")],
    );
    assert_success(&env_out, &["--build-arg", "WHO"]);
    assert_eq!(read(&b.path("out2/app/message")), "hello env\nword\n");

    // --target stops at the stage: its files, not the final stage's. WHO has its default
    // here, a third value, so the step runs a third time and sees the two runs before.
    b.ok(&["--target", "build", "-o", "type=local,dest=target"]);
    assert_eq!(read(&b.path("target/src/runs-seen")).trim(), "3");
    assert!(!b.path("target/app").exists());

    // `prune --all` deletes the cache mount: the next run of the step starts from nothing.
    let pruned = b.img.ok(&["prune", "--all"]);
    assert!(pruned.contains("\nRemoved 1 cache mounts\n"), "{pruned}");
    let mounts = b.img.state().join("cache-mounts");
    assert_eq!(std::fs::read_dir(&mounts).unwrap().count(), 0, "{pruned}");
    b.ok(&[
        "--target",
        "build",
        "--build-arg",
        "WHO=again",
        "-o",
        "type=local,dest=after-prune",
    ]);
    assert_eq!(read(&b.path("after-prune/src/runs-seen")).trim(), "1");
}

#[test]
fn secrets_reach_run_steps_and_stay_out_of_the_image() {
    let b = Build::new();
    b.write(
        "Dockerfile",
        "FROM busybox\nRUN --mount=type=secret,id=token,required=true \
         test \"$(cat /run/secrets/token)\" = s3cret && echo ok > /checked && \
         ! test -e /run/secrets/token.keep\nRUN --mount=type=secret,id=fromenv,env=TOKEN \
         test \"$TOKEN\" = from-env && echo ok > /checked-env\n",
    );
    let secret = b.path("token.txt");
    std::fs::write(&secret, "s3cret").unwrap();
    let src = format!("id=token,src={}", secret.display());
    let out = b.run_env(
        &[
            "--secret",
            &src,
            "--secret",
            "id=fromenv,env=SECRET_VAR",
            "-t",
            "secret-app",
            "-o",
            "type=tar,dest=rootfs.tar",
        ],
        &[("SECRET_VAR", "from-env")],
    );
    assert_success(&out, &["--secret"]);
    let listing = tool("tar", &["tf", b.path("rootfs.tar").to_str().unwrap()]);
    assert!(listing.lines().any(|l| l == "checked"), "{listing}");
    assert!(listing.lines().any(|l| l == "checked-env"), "{listing}");
    assert!(!listing.contains("run/secrets/token"), "{listing}");
    let bytes = std::fs::read(b.path("rootfs.tar")).unwrap();
    assert!(
        !bytes.windows(6).any(|w| w == b"s3cret"),
        "secret in the tar"
    );

    // A required secret that was not given fails the step (secrets are not part of the cache
    // key, as in BuildKit, so only an uncached run notices).
    b.fails(&["--no-cache", "-o", "type=tar,dest=x.tar"], "token");
}

#[test]
fn every_output_type_is_read_by_its_tools() {
    let b = Build::new();
    b.write(
        "Dockerfile",
        "FROM busybox\nRUN mkdir -p /data && echo payload > /data/file\nCMD [\"cat\", \"/data/file\"]\n",
    );
    b.ok(&[
        "-t",
        "outputs:v1",
        "-o",
        "type=image",
        "-o",
        "type=docker,dest=docker.tar",
        "-o",
        "type=oci,dest=oci.tar",
        "-o",
        "type=tar,dest=rootfs.tar",
        "-o",
        "type=local,dest=rootfs",
    ]);
    // The store.
    assert!(b.img.ok(&["ls"]).contains("outputs:v1"));
    // OCI archive: skopeo and umoci.
    let oci = b.path("oci.tar");
    let inspect: Value = serde_json::from_str(&tool(
        "skopeo",
        &["inspect", &format!("oci-archive:{}", oci.display())],
    ))
    .unwrap();
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 2, "{inspect}");
    let layout = b.path("layout");
    std::fs::create_dir(&layout).unwrap();
    tool(
        "tar",
        &["xf", oci.to_str().unwrap(), "-C", layout.to_str().unwrap()],
    );
    let bundle = b.path("bundle");
    tool(
        "umoci",
        &[
            "unpack",
            "--image",
            &format!("{}:v1", layout.display()),
            bundle.to_str().unwrap(),
        ],
    );
    assert_eq!(read(&bundle.join("rootfs/data/file")), "payload\n");
    // Docker archive: podman load.
    let loaded = tool(
        "podman",
        &["load", "-i", b.path("docker.tar").to_str().unwrap()],
    );
    assert!(loaded.contains("outputs:v1"), "{loaded}");
    run_with_podman("docker.io/library/outputs:v1", "payload");
    let _ = Command::new("podman")
        .args(["rmi", "-f", "docker.io/library/outputs:v1"])
        .output();
    // Root filesystem as a tar and as a directory.
    let listing = tool("tar", &["tf", b.path("rootfs.tar").to_str().unwrap()]);
    assert!(listing.lines().any(|l| l == "data/file"), "{listing}");
    assert!(listing.lines().any(|l| l == "bin/busybox"), "{listing}");
    assert_eq!(read(&b.path("rootfs/data/file")), "payload\n");
}

/// Runs `image` with podman where this machine lets runc start containers, and checks its
/// output. Limits are set below the usual hard limits: inside a container runc may lower
/// rlimits but not raise them to podman's defaults. Machines where runc still cannot start a
/// container skip the run.
fn run_with_podman(image: &str, expected: &str) {
    let out = Command::new("podman")
        .args(["run", "--rm", "--runtime", "runc", "--network", "host"])
        .args([
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
        ])
        .arg(image)
        .output()
        .expect("podman runs");
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && (err.contains("rlimit") || err.contains("cgroup")) {
        eprintln!("podman cannot run containers here, not running {image}: {err}");
        return;
    }
    assert!(out.status.success(), "podman run {image}: {err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), expected);
}

#[test]
fn push_to_a_registry() {
    let registry = Registry::anonymous();
    let b = Build::new();
    b.write("Dockerfile", "FROM busybox\nRUN echo pushed > /pushed\n");
    let name = format!("{}/team/pushed:1", registry.host());
    let id = b.digest(&["-t", &name, "--push", "--metadata-file", "push.json"]);
    let meta: Value = serde_json::from_str(&read(&b.path("push.json"))).unwrap();
    let inspect: Value = serde_json::from_str(&tool(
        "skopeo",
        &["inspect", "--tls-verify=false", &format!("docker://{name}")],
    ))
    .unwrap();
    assert_eq!(
        inspect["Digest"], meta["containerimage.digest"],
        "{inspect}"
    );
    // The image ID `-q` prints is the pushed config's digest.
    let config = tool(
        "skopeo",
        &[
            "inspect",
            "--config",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{name}"),
        ],
    );
    assert_eq!(id, img_snapshot::Digest::of(config.as_bytes()).to_string());
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 2);

    // type=registry pushes without naming the image locally.
    let other = format!("{}/team/other:2", registry.host());
    b.ok(&["-o", &format!("type=registry,name={other}")]);
    let raw = tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{other}"),
        ],
    );
    assert!(
        raw.contains("application/vnd.oci.image.manifest.v1+json"),
        "{raw}"
    );
}

#[test]
fn cached_rebuild_is_all_cached_and_a_changed_file_reruns_only_its_dependents() {
    let b = Build::new();
    b.write(
        "Dockerfile",
        "FROM busybox\nCOPY a.txt /a.txt\nRUN cat /a.txt > /a.copy\nCOPY b.txt /b.txt\nRUN cat /b.txt > /b.copy\n",
    );
    b.write("a.txt", "a\n");
    b.write("b.txt", "b\n");
    let first = b.digest(&["-t", "cached"]);
    let again = b.run(&["-t", "cached"]);
    assert_success(&again, &["rebuild"]);
    let progress = stderr(&again);
    for step in [
        "COPY a.txt",
        "RUN cat /a.txt",
        "COPY b.txt",
        "RUN cat /b.txt",
    ] {
        let line = progress
            .lines()
            .find(|l| l.contains(step))
            .unwrap_or_else(|| panic!("no {step} in {progress}"));
        let id = line.split_whitespace().next().unwrap();
        assert!(
            progress.contains(&format!("{id} CACHED")),
            "{step} not cached:\n{progress}"
        );
    }
    assert_eq!(b.digest(&["-t", "cached"]), first);

    // Changing b.txt re-runs the COPY of b.txt and what follows, not the steps before.
    b.write("b.txt", "b2\n");
    let changed = b.ok(&["-t", "cached"]);
    let cached = |step: &str| {
        let line = changed.lines().find(|l| l.contains(step)).unwrap();
        let id = line.split_whitespace().next().unwrap();
        changed.contains(&format!("{id} CACHED"))
    };
    assert!(
        cached("COPY a.txt") && cached("RUN cat /a.txt"),
        "{changed}"
    );
    assert!(
        !cached("COPY b.txt") && !cached("RUN cat /b.txt"),
        "{changed}"
    );
    // The miss says why, on one line per step.
    assert!(changed.contains("cache miss: b.txt changed\n"), "{changed}");
    assert!(
        changed.contains("COPY b.txt /b.txt (b.txt changed)\n"),
        "{changed}"
    );
    assert_ne!(b.digest(&["-t", "cached"]), first);
}

#[test]
fn a_file_capability_set_on_a_copied_file_is_a_change() {
    let b = Build::new();
    // The capability reaches the stage's snapshot; the COPY --from reading it must see it.
    b.write(
        "Dockerfile",
        "FROM busybox AS caps\nCOPY tool /tool\nFROM busybox\nCOPY --from=caps /tool /bin/tool\n",
    );
    b.write("tool", "#!/bin/sh\n");
    b.ok(&["-t", "caps"]);
    let status = Command::new("setcap")
        .arg("cap_net_raw+ep")
        .arg(b.ctx().join("tool"))
        .status()
        .expect("setcap is installed (libcap2-bin)");
    assert!(status.success(), "setcap failed");
    let progress = b.ok(&["-t", "caps"]);
    let misses: Vec<&str> = progress
        .lines()
        .filter(|l| l.contains("cache miss: tool changed"))
        .collect();
    assert_eq!(misses.len(), 2, "COPY and COPY --from miss:\n{progress}");
    let out = b.path("out");
    b.ok(&["-o", &format!("type=local,dest={}", out.display())]);
    let caps = tool("getcap", &[out.join("bin/tool").to_str().unwrap()]);
    assert!(caps.contains("cap_net_raw"), "{caps}");
}

#[test]
fn a_failing_run_reports_the_line_the_exit_code_and_its_output() {
    let b = Build::new();
    b.write(
        "Dockerfile",
        "FROM busybox\nRUN echo fine\nRUN echo \"about to fail\" && exit 3\nRUN echo never\n",
    );
    let out = b.run(&["-t", "failing"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("Dockerfile:3"), "{err}");
    assert!(
        err.contains("RUN echo \"about to fail\" && exit 3"),
        "{err}"
    );
    assert!(
        err.contains("exit code 3") || err.contains("exit code: 3"),
        "{err}"
    );
    assert!(err.contains("about to fail"), "{err}");
    assert!(!b.img.ok(&["ls"]).contains("failing"));
}

#[test]
fn source_date_epoch_gives_the_same_digest_in_two_fresh_state_directories() {
    let digests: Vec<String> = (0..2)
        .map(|_| {
            let b = Build::new();
            b.write(
                "Dockerfile",
                "FROM busybox\nCOPY f.txt /f.txt\nRUN echo built > /built && mkdir -p /d/e\n",
            );
            b.write("f.txt", "same\n");
            let out = b.run_env(
                &["-q", "-t", "repro"],
                &[("SOURCE_DATE_EPOCH", "1700000000")],
            );
            assert_success(&out, &["SOURCE_DATE_EPOCH"]);
            assert_eq!(b.config("repro")["created"], "2023-11-14T22:13:20Z");
            String::from_utf8(out.stdout).unwrap().trim().to_owned()
        })
        .collect();
    assert_eq!(digests[0], digests[1]);
}

#[test]
fn image_config_carries_every_dockerfile_setting() {
    let b = Build::new();
    b.write(
        "Dockerfile",
        r#"FROM busybox
ENV APP_HOME=/srv/app MODE=prod
LABEL org.example.app="config test"
WORKDIR /srv/app
RUN echo hi > hi.txt
USER app:app
EXPOSE 8080/tcp 53/udp
VOLUME ["/data"]
HEALTHCHECK --interval=30s --timeout=5s --retries=3 CMD ["true"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/bin/echo"]
"#,
    );
    b.ok(&["-t", "configured", "--label", "org.example.cli=yes"]);
    let image = b.config("configured");
    let config = &image["config"];
    let env: Vec<&str> = config["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        env.contains(&"APP_HOME=/srv/app") && env.contains(&"MODE=prod"),
        "{env:?}"
    );
    assert!(
        env.contains(&"PATH=/usr/local/bin:/usr/bin:/bin"),
        "{env:?}"
    );
    assert_eq!(config["WorkingDir"], "/srv/app");
    assert_eq!(config["User"], "app:app");
    assert_eq!(config["Entrypoint"], serde_json::json!(["/bin/echo"]));
    // ENTRYPOINT resets the base image's CMD, as in Docker.
    assert!(config.get("Cmd").is_none_or(Value::is_null), "{config}");
    assert_eq!(config["Labels"]["org.example.base"], "busybox");
    assert_eq!(config["Labels"]["org.example.app"], "config test");
    assert_eq!(config["Labels"]["org.example.cli"], "yes");
    assert!(config["ExposedPorts"].get("8080/tcp").is_some(), "{config}");
    assert!(config["ExposedPorts"].get("53/udp").is_some(), "{config}");
    assert!(config["Volumes"].get("/data").is_some(), "{config}");
    assert_eq!(
        config["Healthcheck"]["Test"],
        serde_json::json!(["CMD", "true"])
    );
    assert_eq!(config["Healthcheck"]["Interval"], 30_000_000_000u64);
    assert_eq!(config["Healthcheck"]["Retries"], 3);
    assert_eq!(config["StopSignal"], "SIGTERM");

    // One layer for the base and one each for WORKDIR and RUN; every other instruction is
    // an empty layer in the history.
    let diff_ids = image["rootfs"]["diff_ids"].as_array().unwrap();
    let history = image["history"].as_array().unwrap();
    let with_layer = history
        .iter()
        .filter(|h| h.get("empty_layer") != Some(&Value::Bool(true)))
        .count();
    assert_eq!(with_layer, diff_ids.len(), "{history:?}");
    assert_eq!(diff_ids.len(), 3, "{diff_ids:?}");
    assert!(history.iter().any(|h| h["created_by"]
        .as_str()
        .is_some_and(|c| c.contains("ENV APP_HOME"))
        && h["empty_layer"] == true));

    // CMD alone keeps ENTRYPOINT from the parent stage; a later ENTRYPOINT resets CMD.
    b.write(
        "Dockerfile",
        "FROM busybox AS base\nCMD [\"base-cmd\"]\nFROM base\nENTRYPOINT [\"/bin/sh\", \"-c\"]\n",
    );
    b.ok(&["-t", "reset"]);
    let config = b.config("reset")["config"].clone();
    assert_eq!(config["Entrypoint"], serde_json::json!(["/bin/sh", "-c"]));
    assert!(config.get("Cmd").is_none_or(Value::is_null), "{config}");
}

#[test]
fn dockerfile_and_tar_context_on_stdin() {
    let b = Build::new();
    // A Dockerfile alone on standard input: no context.
    let out = b.img.run_with_input(
        &["build", "-q", "-t", "stdin", "-"],
        b"FROM busybox\nRUN echo from-stdin > /s\n",
    );
    assert_success(&out, &["build", "-"]);
    // A gzip-compressed tar of a context with its Dockerfile.
    b.write("Dockerfile", "FROM busybox\nCOPY f.txt /f.txt\n");
    b.write("f.txt", "from the archive\n");
    let tgz = b.path("ctx.tgz");
    tool(
        "tar",
        &[
            "czf",
            tgz.to_str().unwrap(),
            "-C",
            b.ctx().to_str().unwrap(),
            ".",
        ],
    );
    let out = b.img.run_with_input(
        &["build", "-o", "type=local,dest=from-tar", "-"],
        &std::fs::read(&tgz).unwrap(),
    );
    assert_success(&out, &["build", "- < ctx.tgz"]);
    assert_eq!(read(&b.path("from-tar/f.txt")), "from the archive\n");
}

#[test]
fn iidfile_and_metadata_file() {
    let b = Build::new();
    b.write("Dockerfile", "FROM busybox\nRUN echo m > /m\n");
    let id = b.digest(&[
        "-t",
        "meta",
        "--iidfile",
        "iid",
        "--metadata-file",
        "meta.json",
    ]);
    // Docker's image ID: the config digest.
    assert_eq!(read(&b.path("iid")), id);
    let meta: Value = serde_json::from_str(&read(&b.path("meta.json"))).unwrap();
    assert_eq!(meta["containerimage.config.digest"], id.as_str());
    assert_eq!(meta["image.name"], "docker.io/library/meta:latest");
    let inspect = b.inspect("meta");
    let manifest = inspect.get("manifest").or_else(|| inspect.get("Manifest"));
    let manifest = manifest.unwrap_or_else(|| panic!("no manifest in {inspect}"));
    assert_eq!(manifest["config"]["digest"], id.as_str());
    // The manifest's descriptor, annotated as BuildKit's image exporter annotates it.
    let descriptor = &meta["containerimage.descriptor"];
    let manifest_digest = meta["containerimage.digest"].as_str().unwrap();
    assert_ne!(manifest_digest, id);
    assert_eq!(descriptor["digest"], manifest_digest);
    assert_eq!(
        descriptor["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert!(descriptor["size"].as_u64().unwrap() > 0);
    assert_eq!(descriptor["annotations"]["config.digest"], id.as_str());
    assert_eq!(
        descriptor["annotations"]["org.opencontainers.image.created"],
        b.config("meta")["created"]
    );
}

#[test]
fn insecure_steps_need_the_entitlement() {
    let b = Build::new();
    b.write("Dockerfile", "FROM busybox\nRUN --security=insecure true\n");
    let out = b.run(&["-t", "insecure"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("Dockerfile:2") && err.contains("--allow security.insecure"),
        "{err}"
    );
    // Granted, the step runs with every capability the builder has.
    b.write(
        "Dockerfile",
        "FROM busybox\nRUN --security=insecure grep CapEff /proc/self/status > /caps\n\
         RUN grep CapEff /proc/self/status > /default-caps\n",
    );
    b.ok(&["--allow", "security.insecure", "-o", "type=local,dest=out"]);
    let caps = |file: &str| {
        let text = read(&b.path(file));
        u64::from_str_radix(text.split_whitespace().last().unwrap(), 16).unwrap()
    };
    assert!(
        caps("out/caps").count_ones() > caps("out/default-caps").count_ones(),
        "{} vs {}",
        read(&b.path("out/caps")),
        read(&b.path("out/default-caps"))
    );
}

#[test]
fn a_git_repository_as_the_context() {
    let b = Build::new();
    let repos = b.path("repos");
    let repo = repos.join("app.git");
    std::fs::create_dir_all(repo.join("sub")).unwrap();
    std::fs::write(
        repo.join("sub/Dockerfile"),
        "FROM busybox\nCOPY note.txt /note.txt\n",
    )
    .unwrap();
    std::fs::write(repo.join("sub/note.txt"), "tagged\n").unwrap();
    let git = |args: &[&str]| {
        let mut all = vec![
            "-C",
            repo.to_str().unwrap(),
            "-c",
            "user.name=img",
            "-c",
            "user.email=img@example.com",
        ];
        all.extend_from_slice(args);
        tool("git", &all)
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "v1"]);
    git(&["tag", "v1"]);
    std::fs::write(repo.join("sub/note.txt"), "later\n").unwrap();
    git(&["commit", "-q", "-am", "v2"]);

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // git-daemon itself, not the `git daemon` wrapper, so that killing it stops the server.
    let exec_path = tool("git", &["--exec-path"]);
    let mut daemon = Command::new(Path::new(exec_path.trim()).join("git-daemon"))
        .args([
            "--export-all",
            "--reuseaddr",
            "--listen=127.0.0.1",
            &format!("--port={port}"),
            &format!("--base-path={}", repos.display()),
        ])
        .arg(&repos)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("git daemon runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "git daemon did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let url = format!("git://127.0.0.1:{port}/app.git#v1:sub");
    let out = b
        .img
        .run(&["build", "-o", "type=local,dest=from-git", &url]);
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert_success(&out, &["build", &url]);
    assert_eq!(read(&b.path("from-git/note.txt")), "tagged\n");
}

#[test]
fn ctrl_c_cancels_a_running_step_and_fails_the_build() {
    let b = Build::new();
    b.write("Dockerfile", "FROM busybox\nRUN echo started && sleep 60\n");
    let mut child = b
        .img
        .command()
        .args(["--progress", "plain", "build", "-t", "cancelled", "ctx"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("img starts");
    let mut stderr_pipe = child.stderr.take().unwrap();
    let (lines, seen) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        let mut buf = [0u8; 4096];
        loop {
            match std::io::Read::read(&mut stderr_pipe, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    all.push_str(&String::from_utf8_lossy(&buf[..n]));
                    if all.contains("started") {
                        let _ = lines.send(());
                    }
                }
            }
        }
        all
    });
    seen.recv_timeout(std::time::Duration::from_secs(30))
        .expect("the step starts");
    let started = std::time::Instant::now();
    nix_kill(child.id(), libc::SIGINT);
    let status = child.wait().unwrap();
    let output = reader.join().unwrap();
    assert!(!status.success(), "{output}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "cancelling took {:?}",
        started.elapsed()
    );
    assert!(output.contains("cancel"), "{output}");
    assert!(!b.img.ok(&["ls"]).contains("cancelled"));
}

fn nix_kill(pid: u32, signal: i32) {
    // SAFETY: sending a signal to our own child process.
    let rc = unsafe { libc::kill(pid as i32, signal) };
    assert_eq!(rc, 0, "kill {pid}");
}

#[test]
fn network_none_leaves_steps_only_loopback() {
    let b = Build::new();
    b.write(
        "Dockerfile",
        "FROM busybox\nRUN ip -o link | grep -vc ': lo:' > /ifaces || true\n\
         RUN --network=host ip -o link | grep -vc ': lo:' > /host-ifaces || true\n",
    );
    b.ok(&["--network", "none", "-o", "type=local,dest=none"]);
    assert_eq!(read(&b.path("none/ifaces")).trim(), "0");
    // A step that asks for the host's network keeps it.
    assert_ne!(read(&b.path("none/host-ifaces")).trim(), "0");
    b.ok(&["-o", "type=local,dest=default"]);
    assert_ne!(read(&b.path("default/ifaces")).trim(), "0");
}

#[test]
fn ssh_agent_sockets_reach_run_steps() {
    let b = Build::new();
    b.write(
        "Dockerfile",
        "FROM busybox\nRUN --mount=type=ssh test -S \"$SSH_AUTH_SOCK\" && echo ok > /ssh\n",
    );
    let socket = b.path("agent.sock");
    let _agent = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let sock = socket.to_str().unwrap().to_owned();
    let out = b.run_env(
        &["--ssh", "default", "-o", "type=local,dest=out"],
        &[("SSH_AUTH_SOCK", &sock)],
    );
    assert_success(&out, &["--ssh", "default"]);
    assert_eq!(read(&b.path("out/ssh")), "ok\n");
}

#[test]
fn no_cache_filter_reruns_the_stage_and_what_follows() {
    let b = Build::new();
    b.write(
        "Dockerfile",
        "FROM busybox AS first\nRUN echo one > /one\nFROM first AS second\nRUN echo two > /two\n",
    );
    b.ok(&["-t", "filtered"]);
    let again = b.ok(&["-t", "filtered", "--no-cache-filter", "second"]);
    let cached = |step: &str| {
        let line = again.lines().find(|l| l.contains(step)).unwrap();
        let id = line.split_whitespace().next().unwrap();
        again.contains(&format!("{id} CACHED"))
    };
    assert!(cached("RUN echo one"), "{again}");
    assert!(!cached("RUN echo two"), "{again}");
}

#[test]
fn an_ordinary_user_builds_without_privileges() {
    let b = Build::new();
    b.write(
        "Dockerfile",
        "FROM busybox\nRUN id -u > /uid && mkdir -p /made/here\nCOPY f.txt /f.txt\n",
    );
    b.write("f.txt", "rootless\n");
    let out = b
        .img
        .command_as_nobody()
        .args([
            "--progress",
            "plain",
            "build",
            "-o",
            "type=local,dest=out",
            "ctx",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("setpriv runs");
    assert_success(&out, &["build as nobody"]);
    // RUN steps are root of the user namespace img made for itself.
    assert_eq!(read(&b.path("out/uid")).trim(), "0");
    assert!(b.path("out/made/here").is_dir());
    assert_eq!(read(&b.path("out/f.txt")), "rootless\n");
}

/// Several files copied from another stage are checksummed in parallel while that stage's
/// snapshot is mounted (on overlayfs): every thread doing the work must see the mount, also
/// when the parallel workers were started earlier, outside it (here by the context checksum).
#[test]
fn copy_from_a_stage_checksums_several_files_of_a_mounted_snapshot() {
    let b = Build::new();
    b.write(
        "Dockerfile",
        "FROM busybox AS files\nCOPY f.txt /\nRUN echo a > /a && echo b > /b && echo c > /c\n\
         FROM busybox\nCOPY --from=files /a /b /c /copied/\n",
    );
    b.write("f.txt", "context\n");
    b.ok(&["-o", "type=local,dest=out"]);
    assert_eq!(read(&b.path("out/copied/a")), "a\n");
    assert_eq!(read(&b.path("out/copied/c")), "c\n");
}

#[test]
fn compression_sets_the_layer_media_types() {
    let b = Build::new();
    b.write("Dockerfile", "FROM busybox\nRUN echo z > /z\n");
    for (algo, media_type) in [
        ("zstd", "application/vnd.oci.image.layer.v1.tar+zstd"),
        ("uncompressed", "application/vnd.oci.image.layer.v1.tar"),
    ] {
        let name = format!("compressed:{algo}");
        b.ok(&["-t", &name, "--compression", algo]);
        let manifest = b.inspect(&name)["manifest"].clone();
        let layers = manifest["layers"].as_array().unwrap();
        // The base image's layer is reused as it is; the new one is compressed as asked.
        assert_eq!(
            layers.last().unwrap()["mediaType"],
            media_type,
            "{manifest}"
        );
    }
    let oci = b.path("zstd.tar");
    b.ok(&[
        "--compression",
        "zstd",
        "-o",
        &format!("type=oci,dest={}", oci.display()),
    ]);
    tool(
        "skopeo",
        &["inspect", &format!("oci-archive:{}", oci.display())],
    );
}

#[test]
fn a_base_image_missing_locally_is_pulled_from_its_registry() {
    let registry = Registry::anonymous();
    let base = format!("{}/lib/busybox:1", registry.host());
    let seed = Build::new();
    seed.img.ok(&["tag", BASE, &base]);
    seed.img.ok(&["push", &base]);

    let img = Img::new();
    std::fs::create_dir(img.dir().join("ctx")).unwrap();
    std::fs::write(
        img.dir().join("ctx/Dockerfile"),
        format!("FROM {base}\nRUN echo pulled > /pulled\n"),
    )
    .unwrap();
    let out = img.run(&["build", "-t", "from-registry", "ctx"]);
    assert_success(&out, &["build", "FROM registry"]);
    // The base's config came from the registry: its label is on the built image.
    let built: Value = serde_json::from_str(&img.ok(&["inspect", "from-registry"])).unwrap();
    assert_eq!(
        built["config"]["config"]["Labels"]["org.example.base"],
        "busybox"
    );
    assert_eq!(built["manifest"]["layers"].as_array().unwrap().len(), 2);
}

#[test]
fn the_export_is_a_step_with_its_layers_manifest_and_tarball() {
    let b = Build::new();
    b.write("Dockerfile", "FROM busybox\nCOPY data /data\n");
    b.write("data", &"layer bytes ".repeat(10_000));
    let progress = b.ok(&["-o", "type=oci,dest=oci.tar"]);
    let line = |text: &str| {
        progress
            .lines()
            .find(|l| l.contains(text))
            .unwrap_or_else(|| panic!("no {text:?} in\n{progress}"))
            .to_owned()
    };
    let started = line("exporting to oci image format");
    let id = started.split(' ').next().unwrap().to_owned();
    for text in [
        "exporting layers",
        "exporting manifest sha256:",
        "exporting config sha256:",
        "sending tarball",
    ] {
        assert!(
            line(text).starts_with(&format!("{id} ")),
            "{text} in\n{progress}"
        );
    }
    assert!(line(" done").starts_with(&id), "{progress}");
    assert!(
        progress
            .lines()
            .any(|l| l.starts_with(&format!("{id} DONE "))),
        "{progress}"
    );
    // The archive on standard output, a pipe: the blobs go through sendfile.
    let mut cmd = b.img.command();
    let out = cmd
        .args([
            "--progress",
            "rawjson",
            "build",
            "-o",
            "type=oci,dest=-",
            "ctx",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_success(&out, &["-o", "type=oci,dest=-"]);
    assert_eq!(out.stdout, std::fs::read(b.path("oci.tar")).unwrap());
    let events = stderr(&out);
    assert!(
        events.contains("exporting to oci image format") && events.contains("sending tarball"),
        "{events}"
    );
}
