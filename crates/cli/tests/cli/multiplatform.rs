//! `img build --platform linux/amd64,linux/arm64`: one solve, an index, per-platform
//! directories; arm64 steps run through QEMU's binfmt_misc handler. The base image is a
//! busybox index (amd64 from this machine, arm64 from Debian's busybox-static:arm64) served
//! by a real registry.

use std::path::Path;
use std::process::Output;

use img_snapshot::Digest;

use crate::fixtures::{skopeo_raw_manifest, store_multiarch_busybox, Registry};
use crate::{assert_fails, assert_success, stderr, tool, Img};

/// The build-platform stage runs natively once for both targets; its second step
/// cross-compiles (natively) for each target; the final stage runs on the target.
const CROSS: &str = "\
FROM --platform=$BUILDPLATFORM busybox AS tools
RUN uname -m > /native && cat /proc/sys/kernel/random/uuid > /once
ARG TARGETPLATFORM
RUN echo \"built on $(uname -m) for $TARGETPLATFORM\" > /cross

FROM busybox
ARG TARGETPLATFORM TARGETOS TARGETARCH TARGETVARIANT BUILDPLATFORM
COPY --from=tools /native /once /cross /
RUN uname -m > /arch && echo \"$TARGETPLATFORM $TARGETOS $TARGETARCH [$TARGETVARIANT] $BUILDPLATFORM\" > /args
";

/// Where the multi-architecture busybox is served: pushed from a store of its own.
pub(crate) fn serve_busybox(registry: &Registry) -> String {
    let name = format!("{}/library/busybox:latest", registry.host());
    let source = Img::new();
    let index = store_multiarch_busybox(&source.store(), &name);
    source.ok(&["-q", "push", &name]);
    assert_eq!(Digest::of(&skopeo_raw_manifest(&name)), index);
    name
}

fn build(img: &Img, dockerfile: &str, args: &[&str]) -> Output {
    std::fs::write(img.dir().join("Dockerfile"), dockerfile).unwrap();
    let mut all = vec!["--progress", "plain", "build"];
    all.extend_from_slice(args);
    all.push(".");
    img.run(&all)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn two_platforms_build_in_one_solve_into_an_index_pushed_and_laid_out_per_platform() {
    let registry = Registry::anonymous();
    let base = serve_busybox(&registry);
    let dockerfile = CROSS.replace("busybox", &base);
    let app = format!("{}/test/app:1", registry.host());
    let img = Img::new();
    let out = build(
        &img,
        &dockerfile,
        &[
            "--platform",
            "linux/amd64,linux/arm64",
            "-o",
            &format!("type=image,name={app},push=true"),
            "-o",
            "type=local,dest=out",
            "-o",
            "type=oci,dest=app.tar",
            "-o",
            "type=tar,dest=rootfs.tar",
        ],
    );
    assert_success(&out, &["build", "--platform", "linux/amd64,linux/arm64"]);

    // Local output: one directory per platform, as BuildKit names them.
    let dir = img.dir().join("out");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["linux_amd64", "linux_arm64"]);
    let (amd64, arm64) = (dir.join("linux_amd64"), dir.join("linux_arm64"));
    // RUN on the target platform: arm64 through QEMU.
    assert_eq!(read(&amd64.join("arch")), "x86_64\n");
    assert_eq!(read(&arm64.join("arch")), "aarch64\n");
    assert_eq!(
        read(&amd64.join("args")),
        "linux/amd64 linux amd64 [] linux/amd64\n"
    );
    assert_eq!(
        read(&arm64.join("args")),
        "linux/arm64 linux arm64 [] linux/amd64\n"
    );
    // The $BUILDPLATFORM stage ran natively for both targets…
    for root in [&amd64, &arm64] {
        assert_eq!(read(&root.join("native")), "x86_64\n");
    }
    assert_eq!(
        read(&amd64.join("cross")),
        "built on x86_64 for linux/amd64\n"
    );
    assert_eq!(
        read(&arm64.join("cross")),
        "built on x86_64 for linux/arm64\n"
    );
    // …and its shared step ran once: both targets copied the same random id.
    assert_eq!(read(&amd64.join("once")), read(&arm64.join("once")));

    // The pushed index, read back with skopeo: one manifest per platform, platform set, and
    // each config naming its architecture.
    let raw = skopeo_raw_manifest(&app);
    let index: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let platforms: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap(),
                m["platform"]["architecture"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    for arch in ["amd64", "arm64"] {
        let config = tool(
            "skopeo",
            &[
                "inspect",
                "--config",
                "--tls-verify=false",
                "--override-arch",
                arch,
                &format!("docker://{app}"),
            ],
        );
        let config: serde_json::Value = serde_json::from_str(&config).unwrap();
        assert_eq!(config["architecture"], arch);
        assert_eq!(config["os"], "linux");
    }

    // The image store names the same index, and the OCI archive holds it.
    let digest = Digest::of(&raw);
    let record = img.store().images().get(&app).unwrap().unwrap();
    assert_eq!(record.target.digest().to_string(), digest.to_string());
    let archive = format!("oci-archive:{}", img.dir().join("app.tar").display());
    let archived = tool("skopeo", &["inspect", "--raw", &archive]);
    assert_eq!(Digest::of(archived.as_bytes()), digest);

    // The tar output: each platform's tree under its directory.
    let listing = tool(
        "tar",
        &["-tf", &img.dir().join("rootfs.tar").display().to_string()],
    );
    for entry in [
        "linux_amd64/arch",
        "linux_arm64/arch",
        "linux_arm64/bin/busybox",
    ] {
        assert!(
            listing.lines().any(|l| l == entry),
            "{entry} not in the tar"
        );
    }

    // `img ls` shows the platforms of the index.
    let listed = img.ok(&["ls"]);
    let line = listed
        .lines()
        .find(|l| l.contains("test/app"))
        .unwrap_or_else(|| panic!("no test/app in {listed}"));
    assert!(line.contains("linux/amd64,linux/arm64"), "{listed}");

    pulled_whole_and_read_per_platform(&app, &digest);
}

/// `img pull --all-platforms` keeps the index; inspect, unpack and save choose a platform
/// of it with `--platform`; `img push` pushes it whole.
fn pulled_whole_and_read_per_platform(app: &str, index: &Digest) {
    let img = Img::new();
    let out = img.ok(&["-q", "pull", "--all-platforms", app]);
    assert_eq!(out, format!("Digest: {index}\n{app}\n"));
    let record = img.store().images().get(app).unwrap().unwrap();
    assert_eq!(record.target.digest().to_string(), index.to_string());
    assert!(img
        .ok(&["ls", "--format", "{{.Platforms}}"])
        .contains("linux/amd64,linux/arm64"));

    for (platform, arch, machine, uname) in [
        ("linux/arm64", "arm64", 183u16, "aarch64\n"),
        ("linux/amd64", "amd64", 62, "x86_64\n"),
    ] {
        let inspected = img.ok(&["inspect", "--platform", platform, app]);
        let doc: serde_json::Value = serde_json::from_str(&inspected).unwrap();
        assert_eq!(doc["config"]["architecture"], arch);
        assert_eq!(doc["digest"], index.to_string());

        let dir = format!("root-{arch}");
        img.ok(&["unpack", "--platform", platform, "-o", &dir, app]);
        let elf = std::fs::read(img.dir().join(&dir).join("bin/busybox")).unwrap();
        assert_eq!(
            u16::from_le_bytes([elf[18], elf[19]]),
            machine,
            "{platform}"
        );
        assert_eq!(read(&img.dir().join(&dir).join("arch")), uname);

        let tar = format!("{arch}.tar");
        img.ok(&["save", "--platform", platform, "-o", &tar, app]);
        let archive = format!("docker-archive:{}", img.dir().join(&tar).display());
        let config = tool("skopeo", &["inspect", "--config", &archive]);
        let config: serde_json::Value = serde_json::from_str(&config).unwrap();
        assert_eq!(config["architecture"], arch);
    }
    img.fails(
        &["inspect", "--platform", "linux/s390x", app],
        "has no manifest for linux/s390x (it has linux/amd64, linux/arm64)",
    );

    // The whole index goes back to a registry.
    let copy = app.replace("test/app:1", "test/copy:1");
    img.ok(&["tag", app, &copy]);
    img.ok(&["-q", "push", &copy]);
    assert_eq!(Digest::of(&skopeo_raw_manifest(&copy)), *index);
}

#[test]
fn a_platform_without_an_emulator_fails_before_any_step_runs() {
    let img = Img::new();
    store_multiarch_busybox(&img.store(), "docker.io/library/busybox:latest");
    // A binfmt_misc with no handler at all: no foreign platform can run.
    let binfmt = img.dir().join("binfmt_misc");
    std::fs::create_dir(&binfmt).unwrap();
    std::fs::write(binfmt.join("status"), "enabled\n").unwrap();
    std::fs::write(
        img.dir().join("Dockerfile"),
        "FROM busybox\nRUN touch /ran\n",
    )
    .unwrap();
    let out = img
        .command()
        .env("IMG_BINFMT_MISC", &binfmt)
        .args([
            "--progress",
            "plain",
            "build",
            "--platform",
            "linux/amd64,linux/arm64",
            "-o",
            "type=local,dest=out",
            ".",
        ])
        .output()
        .unwrap();
    let out = assert_fails(out, "RUN steps for linux/arm64 need emulation");
    let err = stderr(&out);
    assert!(err.contains("qemu-user-static"), "{err}");
    assert!(err.contains("update-binfmts --enable"), "{err}");
    // Nothing ran: no step's progress, no output.
    assert!(!err.contains("RUN touch"), "{err}");
    assert!(!img.dir().join("out").exists());

    // `img doctor --platform` says the same; with the host's handlers it passes.
    let doctor = img
        .command()
        .env("IMG_BINFMT_MISC", &binfmt)
        .args(["doctor", "--platform", "linux/arm64"])
        .output()
        .unwrap();
    assert!(!doctor.status.success());
    let text = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        text.contains("RUN steps for linux/arm64 need emulation"),
        "{text}"
    );
    let doctor = img
        .command()
        .args(["doctor", "--platform", "linux/arm64,linux/amd64"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        text.contains("linux/arm64: emulated by the binfmt_misc handler"),
        "{text}"
    );
    assert!(text.contains("linux/amd64: runs natively"), "{text}");
}

#[test]
fn a_docker_archive_cannot_hold_two_platforms() {
    let img = Img::new();
    std::fs::write(img.dir().join("Dockerfile"), "FROM scratch\n").unwrap();
    let out = build(
        &img,
        "FROM scratch\n",
        &[
            "--platform",
            "linux/amd64,linux/arm64",
            "-o",
            "type=docker,dest=x.tar",
        ],
    );
    assert_fails(out, "type=docker cannot hold a multi-platform image");
}

/// `--annotation index:` and `index-descriptor:` annotate the index a multi-platform build
/// makes, and `manifest-descriptor:` each manifest's entry in it (`manifest[PLATFORM]:` and
/// `manifest-descriptor[PLATFORM]:` one platform's only); a single-platform build has no index
/// to annotate, and says so before any step runs, as BuildKit does.
#[test]
fn index_annotations_go_on_the_index_of_several_platforms_only() {
    let img = Img::new();
    std::fs::write(img.dir().join("data"), "x").unwrap();
    let annotated = [
        "--annotation",
        "index:org.example.index=i",
        "--annotation",
        "index-descriptor:org.example.index-descriptor=d",
        "--annotation",
        "manifest-descriptor:org.example.manifest-descriptor=m",
        "--annotation",
        "manifest-descriptor[linux/arm64]:org.example.arm-entry=a",
        "--annotation",
        "manifest[linux/amd64]:org.example.amd-manifest=x",
    ];
    let mut args = vec!["--platform", "linux/amd64,linux/arm64"];
    args.extend(annotated);
    args.extend(["-o", "type=oci,dest=app.tar"]);
    let out = build(&img, "FROM scratch\nCOPY data /\n", &args);
    assert_success(&out, &args);

    let archive = img.dir().join("app.tar").display().to_string();
    let layout: serde_json::Value =
        serde_json::from_str(&tool("tar", &["-xOf", &archive, "index.json"])).unwrap();
    let top = &layout["manifests"][0];
    assert_eq!(top["mediaType"], "application/vnd.oci.image.index.v1+json");
    assert_eq!(top["annotations"]["org.example.index-descriptor"], "d");
    let digest = top["digest"].as_str().unwrap();
    let blob = format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
    let index: serde_json::Value =
        serde_json::from_str(&tool("tar", &["-xOf", &archive, &blob])).unwrap();
    assert_eq!(index["annotations"]["org.example.index"], "i");
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    for entry in entries {
        assert_eq!(entry["annotations"]["org.example.manifest-descriptor"], "m");
        let arch = entry["platform"]["architecture"].as_str().unwrap();
        let arm_entry = entry["annotations"].get("org.example.arm-entry");
        assert_eq!(arm_entry.is_some(), arch == "arm64", "{entry}");
        let digest = entry["digest"].as_str().unwrap();
        let blob = format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
        let manifest: serde_json::Value =
            serde_json::from_str(&tool("tar", &["-xOf", &archive, &blob])).unwrap();
        let amd_manifest = manifest
            .get("annotations")
            .and_then(|a| a.get("org.example.amd-manifest"));
        assert_eq!(amd_manifest.is_some(), arch == "amd64", "{manifest}");
    }

    let mut single = vec!["--platform", "linux/amd64"];
    single.extend(annotated);
    single.extend(["-o", "type=oci,dest=single.tar"]);
    let out = build(&img, "FROM scratch\nCOPY data /\n", &single);
    assert_fails(
        out,
        "index annotations are not supported for a single-platform build",
    );
    assert!(!img.dir().join("single.tar").exists());
}
