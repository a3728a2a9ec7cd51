//! Local image commands: ls, tag, rm, inspect, save, load, unpack; archives checked with
//! skopeo, podman and umoci.

use std::path::Path;

use crate::fixtures::{store_busybox, StoredImage};
use crate::{assert_fails, assert_success, tool, Img};

const BUSYBOX: &str = "docker.io/library/busybox:latest";

fn img_with_busybox() -> (Img, StoredImage) {
    let img = Img::new();
    let stored = store_busybox(&img.store(), BUSYBOX);
    (img, stored)
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn ls_lists_names_sizes_and_digests() {
    let (img, stored) = img_with_busybox();
    let table = img.ok(&["ls"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(lines[0].starts_with("NAME"), "{table}");
    for column in ["IMAGE ID", "SIZE", "CREATED", "DIGEST"] {
        assert!(lines[0].contains(column), "{table}");
    }
    assert!(lines[1].starts_with("busybox:latest "), "{table}");
    // The IMAGE ID column: Docker's short image ID, the config digest's first 12 digits.
    let id = stored.config.hex()[..12].to_owned();
    assert!(lines[1].contains(&format!(" {id} ")), "{table}");
    // "Less than a second ago", "1 second ago" or "N seconds ago".
    assert!(lines[1].contains(" second"), "{table}");
    assert!(lines[1].ends_with(&stored.manifest.to_string()), "{table}");

    assert_eq!(
        img.ok(&["ls", "--format", "{{.Name}} {{.Digest}}"]),
        format!("busybox:latest {}\n", stored.manifest)
    );
}

#[test]
fn tag_then_filter_then_rm() {
    let (img, stored) = img_with_busybox();
    assert_eq!(
        img.ok(&["tag", "busybox", "registry.lan:5000/team/bb:1"]),
        "Successfully tagged busybox:latest as registry.lan:5000/team/bb:1\n"
    );
    let all = img.ok(&["ls", "--format", "{{.Name}}\\t{{.Digest}}"]);
    assert_eq!(
        all,
        format!(
            "busybox:latest\t{d}\nregistry.lan:5000/team/bb:1\t{d}\n",
            d = stored.manifest
        )
    );
    assert_eq!(
        img.ok(&[
            "ls",
            "--filter",
            "reference=registry.lan:5000/*",
            "--format",
            "{{.Name}}"
        ]),
        "registry.lan:5000/team/bb:1\n"
    );
    assert_eq!(img.ok(&["rm", "busybox"]), "Untagged: busybox:latest\n");
    assert_eq!(
        img.ok(&["ls", "--format", "{{.Name}}"]),
        "registry.lan:5000/team/bb:1\n"
    );

    let missing = img.fails(
        &["rm", "busybox", "registry.lan:5000/team/bb:1"],
        "no image named docker.io/library/busybox:latest",
    );
    assert_eq!(
        String::from_utf8_lossy(&missing.stdout),
        "Untagged: registry.lan:5000/team/bb:1\n"
    );
    img.fails(&["ls", "--format", "{{.Tag}}"], "unknown field \".Tag\"");
}

#[test]
fn inspect_prints_manifest_and_config() {
    let (img, stored) = img_with_busybox();
    let doc: serde_json::Value = serde_json::from_str(&img.ok(&["inspect", "busybox"])).unwrap();
    assert_eq!(doc["name"], BUSYBOX);
    assert_eq!(doc["digest"], stored.manifest.to_string());
    assert_eq!(
        doc["manifest"]["layers"][0]["digest"],
        stored.layer.to_string()
    );
    assert_eq!(
        doc["manifest"]["config"]["digest"],
        stored.config.to_string()
    );
    assert_eq!(doc["config"]["config"]["Cmd"][0], "/bin/sh");
    let missing = img.run(&["inspect", "nothing"]);
    assert_eq!(missing.status.code(), Some(1));
}

#[test]
fn unpack_writes_the_root_filesystem_and_refuses_an_existing_directory() {
    let (img, _) = img_with_busybox();
    let out = img.ok(&["unpack", "busybox"]);
    assert_eq!(
        out,
        "Successfully unpacked rootfs for busybox:latest to: rootfs\n"
    );
    let rootfs = img.dir().join("rootfs");
    assert_eq!(
        std::fs::read(rootfs.join("bin/busybox")).unwrap(),
        std::fs::read("/bin/busybox").unwrap()
    );
    assert_eq!(
        std::fs::read_link(rootfs.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("etc/hostname")).unwrap(),
        "busybox\n"
    );

    img.fails(&["unpack", "busybox"], "rootfs already exists");
    let elsewhere = img.ok(&["unpack", "-o", "other", "busybox"]);
    assert!(elsewhere.ends_with("to: other\n"), "{elsewhere}");
}

#[test]
fn docker_archive_is_read_by_skopeo_and_podman_and_loads_back() {
    let (img, stored) = img_with_busybox();
    let archive = img.dir().join("busybox.tar");
    img.ok(&["save", "-o", "busybox.tar", "busybox"]);

    let inspected: serde_json::Value = serde_json::from_str(&tool(
        "skopeo",
        &["inspect", &format!("docker-archive:{}", path_str(&archive))],
    ))
    .unwrap();
    assert_eq!(inspected["Architecture"], "amd64");

    let podman = tempfile::tempdir().unwrap();
    let root = podman.path().join("root");
    let runroot = podman.path().join("run");
    let podman_args = |rest: &[&str]| -> Vec<String> {
        let mut args = vec![
            "--root".to_owned(),
            path_str(&root).to_owned(),
            "--runroot".to_owned(),
            path_str(&runroot).to_owned(),
            "--storage-driver".to_owned(),
            "vfs".to_owned(),
        ];
        args.extend(rest.iter().map(|s| s.to_string()));
        args
    };
    let load_args = podman_args(&["load", "-i", path_str(&archive)]);
    let loaded = tool(
        "podman",
        &load_args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(
        loaded.contains("docker.io/library/busybox:latest"),
        "{loaded}"
    );

    let other = Img::new();
    let out = other.ok(&["load", "-i", path_str(&archive)]);
    assert_eq!(out, "Loaded image: busybox:latest\n");
    other.ok(&["unpack", "busybox"]);
    assert_eq!(
        std::fs::read(other.dir().join("rootfs/bin/busybox")).unwrap(),
        std::fs::read("/bin/busybox").unwrap()
    );
    let record = other.store().images().get(BUSYBOX).unwrap().unwrap();
    let layers = crate::fixtures::layers_of(&other.store(), &record);
    assert_eq!(
        layers,
        std::slice::from_ref(&stored.layer),
        "the layer blob is kept as is"
    );
}

#[test]
fn oci_archive_is_read_by_skopeo_and_umoci_and_loads_back_from_stdin() {
    let (img, stored) = img_with_busybox();
    let output = img
        .command()
        .args(["save", "--format", "oci", "busybox"])
        .output()
        .unwrap();
    assert_success(&output, &["save"]);
    let archive = img.dir().join("busybox-oci.tar");
    std::fs::write(&archive, &output.stdout).unwrap();

    let inspected: serde_json::Value = serde_json::from_str(&tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            &format!("oci-archive:{}:latest", path_str(&archive)),
        ],
    ))
    .unwrap();
    assert_eq!(inspected["layers"][0]["digest"], stored.layer.to_string());

    let layout = img.dir().join("layout");
    std::fs::create_dir(&layout).unwrap();
    tool("tar", &["-xf", path_str(&archive), "-C", path_str(&layout)]);
    let bundle = img.dir().join("bundle");
    tool(
        "umoci",
        &[
            "unpack",
            "--rootless",
            "--image",
            &format!("{}:latest", path_str(&layout)),
            path_str(&bundle),
        ],
    );
    assert_eq!(
        std::fs::read(bundle.join("rootfs/bin/busybox")).unwrap(),
        std::fs::read("/bin/busybox").unwrap()
    );

    let other = Img::new();
    let loaded = other.run_with_input(&["load"], &output.stdout);
    assert_success(&loaded, &["load"]);
    assert_eq!(
        String::from_utf8_lossy(&loaded.stdout),
        "Loaded image: busybox:latest\n"
    );
    let record = other.store().images().get(BUSYBOX).unwrap().unwrap();
    assert_eq!(
        record.target.digest().to_string(),
        stored.manifest.to_string()
    );
}

#[test]
fn load_reads_a_docker_archive_written_by_skopeo() {
    let (img, _) = img_with_busybox();
    img.ok(&["save", "--format", "oci", "-o", "oci.tar", "busybox"]);
    let oci = img.dir().join("oci.tar");
    let docker = img.dir().join("docker.tar");
    tool(
        "skopeo",
        &[
            "copy",
            &format!("oci-archive:{}:latest", path_str(&oci)),
            &format!(
                "docker-archive:{}:example.com/tools/bb:2",
                path_str(&docker)
            ),
        ],
    );
    let other = Img::new();
    assert_eq!(
        other.ok(&["load", "-i", path_str(&docker)]),
        "Loaded image: example.com/tools/bb:2\n"
    );
    other.ok(&["unpack", "example.com/tools/bb:2"]);
    assert_eq!(
        std::fs::read(other.dir().join("rootfs/bin/busybox")).unwrap(),
        std::fs::read("/bin/busybox").unwrap()
    );
}

#[test]
fn load_refuses_an_archive_that_is_not_an_image() {
    let img = Img::new();
    let mut archive = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(3);
    header.set_mode(0o644);
    header.set_cksum();
    archive
        .append_data(&mut header, "hello.txt", &b"hi\n"[..])
        .unwrap();
    let bytes = archive.into_inner().unwrap();
    assert_fails(
        img.run_with_input(&["load"], &bytes),
        "neither manifest.json (docker save) nor index.json",
    );
    assert!(img.store().images().list().unwrap().is_empty());
}

#[test]
fn save_refuses_a_missing_image_and_writes_nothing() {
    let img = Img::new();
    let output = img.run(&["save", "-o", "x.tar", "nothing"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(!img.dir().join("x.tar").exists());
}

#[test]
fn load_falls_back_to_manifest_json_when_the_oci_index_names_nothing() {
    let (img, stored) = img_with_busybox();
    let saved = img.command().args(["save", "busybox"]).output().unwrap();
    assert_success(&saved, &["save"]);
    // The docker archive plus an index.json whose entry has no name annotation.
    let mut archive = tar::Builder::new(Vec::new());
    for entry in tar::Archive::new(saved.stdout.as_slice())
        .entries()
        .unwrap()
    {
        let mut entry = entry.unwrap();
        let mut header = entry.header().clone();
        let path = entry.path().unwrap().into_owned();
        archive.append_data(&mut header, path, &mut entry).unwrap();
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": stored.manifest.to_string(),
            "size": 1,
        }],
    });
    let index = serde_json::to_vec(&index).unwrap();
    let mut header = tar::Header::new_ustar();
    header.set_size(index.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    archive
        .append_data(&mut header, "index.json", index.as_slice())
        .unwrap();
    let bytes = archive.into_inner().unwrap();

    let other = Img::new();
    let loaded = other.run_with_input(&["load"], &bytes);
    assert_success(&loaded, &["load"]);
    assert_eq!(
        String::from_utf8_lossy(&loaded.stdout),
        "Loaded image: busybox:latest\n"
    );
}
