//! What a `docker build` user types, checked against Docker's and BuildKit's documented
//! behaviour: image IDs, untagged images, COPY ownership, the buildx flags.

use serde_json::Value;

use crate::build::{read, Build};

/// `docker build .` keeps the result untagged and prints its ID; `img ls` shows it as
/// `<none>`, `img rm` takes its ID or a prefix, and `img prune` keeps it until then.
#[test]
fn a_build_without_a_name_keeps_an_untagged_image() {
    let b = Build::new();
    b.write("Dockerfile", "FROM busybox\nRUN echo untagged > /u\n");
    let id = b.digest(&["--iidfile", "iid"]);
    assert_eq!(read(&b.path("iid")), id);
    let hex = id.strip_prefix("sha256:").unwrap();
    let short = &hex[..12];

    let rows = b
        .img
        .ok(&["ls", "--format", "{{.Name}} {{.ID}} {{.Digest}}"]);
    let none: Vec<&str> = rows.lines().filter(|l| l.starts_with("<none> ")).collect();
    assert_eq!(none.len(), 1, "{rows}");
    assert!(
        none[0].starts_with(&format!("<none> {short} sha256:")),
        "{rows}"
    );
    let manifest: img_snapshot::Digest = none[0].rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(
        b.img
            .ok(&["ls", "--filter", "dangling=true", "--format", "{{.ID}}"]),
        format!("{short}\n")
    );
    assert!(!b
        .img
        .ok(&["ls", "--filter", "reference=*", "--format", "{{.Name}}"])
        .contains("<none>"));

    // Found by a prefix of its ID, as Docker finds it.
    let inspect: Value = serde_json::from_str(&b.img.ok(&["inspect", &hex[..8]])).unwrap();
    let doc = inspect
        .get("manifest")
        .or_else(|| inspect.get("Manifest"))
        .unwrap();
    assert_eq!(doc["config"]["digest"], id.as_str());

    // Garbage collection keeps an untagged image: it is an image of the store.
    b.img.ok(&["prune", "--all"]);
    let content = b.img.store().content();
    assert!(content.exists(&manifest));
    b.img.ok(&["inspect", &id]);

    // Removed by a prefix of its ID; then its blobs are garbage.
    assert_eq!(b.img.ok(&["rm", short]), format!("Deleted: {id}\n"));
    assert!(!b.img.ok(&["ls"]).contains("<none>"));
    b.img.ok(&["prune"]);
    assert!(!b.img.store().content().exists(&manifest));
    b.img.fails(&["rm", short], "no image named");
}

/// Naming an untagged image (by tag or by building it again with `-t`) takes it off the
/// `<none>` rows; an ID shared by two names is not removed by ID.
#[test]
fn an_untagged_image_once_named_is_no_longer_none() {
    let b = Build::new();
    b.write("Dockerfile", "FROM busybox\nRUN echo named > /n\n");
    let id = b.digest(&[]);
    let short = &id["sha256:".len()..][..12];
    assert_eq!(
        b.img.ok(&["tag", short, "app:1"]),
        format!("Successfully tagged {short} as app:1\n")
    );
    let rows = b.img.ok(&["ls", "--format", "{{.Name}} {{.ID}}"]);
    assert!(!rows.contains("<none>"), "{rows}");
    assert!(rows.contains(&format!("app:1 {short}")), "{rows}");

    // The same build named: one image, never `<none>`.
    b.write("Dockerfile", "FROM busybox\nRUN echo other > /o\n");
    let other = b.digest(&[]);
    assert_ne!(other, id);
    assert!(b.img.ok(&["ls"]).contains("<none>"));
    assert_eq!(b.digest(&["-t", "other"]), other);
    assert!(!b.img.ok(&["ls"]).contains("<none>"));

    b.img.ok(&["tag", "app:1", "app:2"]);
    b.img
        .fails(&["rm", short], "has several names (app:1, app:2)");
    b.img.ok(&["rm", "app:2"]);
    assert_eq!(
        b.img.ok(&["rm", short]),
        format!("Untagged: app:1\nDeleted: {id}\n")
    );
}

/// COPY of a directory's contents, as BuildKit does it: a missing destination is made 0755,
/// owned by root or the `--chown` user; an existing one keeps its mode and owner; only what
/// it holds takes the source's metadata.
#[test]
fn copying_a_directorys_contents_keeps_the_destinations_own_metadata() {
    let b = Build::new();
    b.write(
        "Dockerfile",
        "FROM busybox AS base\n\
         RUN mkdir -p /m/sub && echo x > /m/sub/f && chown -R 2000:2000 /m && chmod 700 /m\n\
         FROM busybox\n\
         RUN mkdir /pre && chown 5:5 /pre && chmod 755 /pre\n\
         COPY --from=base /m /pre\n\
         COPY --from=base /m /new\n\
         COPY --from=base --chown=7:7 /m /chowned\n\
         COPY --from=base /m /deep/er/\n\
         RUN stat -c '%n %a %u:%g' /pre /pre/sub /pre/sub/f /new /new/sub /chowned \
             /chowned/sub /deep /deep/er > /stats\n",
    );
    b.ok(&["-o", "type=local,dest=out"]);
    assert_eq!(
        read(&b.path("out/stats")),
        "/pre 755 5:5\n\
         /pre/sub 755 2000:2000\n\
         /pre/sub/f 644 2000:2000\n\
         /new 755 0:0\n\
         /new/sub 755 2000:2000\n\
         /chowned 755 7:7\n\
         /chowned/sub 755 7:7\n\
         /deep 755 0:0\n\
         /deep/er 755 0:0\n"
    );
}

/// `--add-host`, `--ulimit` and `--shm-size` reach RUN steps (as buildx passes them to
/// BuildKit) and are part of the step's cache key.
#[test]
fn add_host_ulimit_and_shm_size_reach_run_steps() {
    let b = Build::new();
    b.write(
        "Dockerfile",
        "FROM busybox\n\
         RUN grep -v localhost /etc/hosts | grep -v ip6 > /hosts; ulimit -Sn > /nofile; \
             ulimit -Hn >> /nofile; df -k /dev/shm | tail -n 1 | awk '{print $2}' > /shm\n",
    );
    b.ok(&[
        "--add-host",
        "db:10.0.0.5",
        "--add-host",
        "v6=::1",
        "--ulimit",
        "nofile=1024:2048",
        "--shm-size",
        "128m",
        "-o",
        "type=local,dest=out",
    ]);
    assert_eq!(read(&b.path("out/hosts")), "10.0.0.5\tdb\n::1\tv6\n");
    assert_eq!(read(&b.path("out/nofile")), "1024\n2048\n");
    assert_eq!(read(&b.path("out/shm")), "131072\n");

    // Another value is another step: nothing stale comes from the cache.
    b.ok(&["--add-host", "db:10.0.0.6", "-o", "type=local,dest=out2"]);
    assert_eq!(read(&b.path("out2/hosts")), "10.0.0.6\tdb\n");
    // The default /dev/shm is Docker's 64 MiB.
    assert_eq!(read(&b.path("out2/shm")), "65536\n");

    b.fails(
        &["--ulimit", "files=1", "-o", "type=local,dest=x"],
        "unknown resource",
    );
    b.fails(
        &["--add-host", "db", "-o", "type=local,dest=x"],
        "give HOST:IP",
    );
}

/// The image manifest in an OCI archive img wrote (its index.json's first entry).
fn archive_manifest(b: &Build, archive: &str) -> Value {
    let dir = b.path(&format!("{archive}.d"));
    std::fs::create_dir_all(&dir).unwrap();
    let untar = std::process::Command::new("tar")
        .arg("-xf")
        .arg(b.path(archive))
        .arg("-C")
        .arg(&dir)
        .status()
        .unwrap();
    assert!(untar.success());
    let blob = |digest: &str| {
        read(
            &dir.join("blobs/sha256")
                .join(digest.strip_prefix("sha256:").unwrap()),
        )
    };
    let index: Value = serde_json::from_str(&read(&dir.join("index.json"))).unwrap();
    serde_json::from_str(&blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap()
}

/// The size of the last layer of the image in an OCI archive img wrote.
fn last_layer_size(b: &Build, archive: &str) -> u64 {
    archive_manifest(b, archive)["layers"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()["size"]
        .as_u64()
        .unwrap()
}

/// `-o …,compression-level=N` reaches the layer writer: the same text layer at gzip level 1
/// is larger than at level 9; a level out of the compression's range is refused.
#[test]
fn compression_level_of_an_output() {
    let b = Build::new();
    let text: String = (0..20_000u32)
        .map(|i| {
            format!(
                "line {} of {} says {}\n",
                i,
                i % 97,
                i.wrapping_mul(2_654_435_761) % 1000
            )
        })
        .collect();
    b.write("text", &text);
    b.write("Dockerfile", "FROM scratch\nCOPY text /text\n");
    b.ok(&["-o", "type=oci,dest=fast.tar,compression-level=1"]);
    b.ok(&[
        "-o",
        "type=oci,dest=small.tar,compression=gzip,compression-level=9",
    ]);
    let (fast, small) = (
        last_layer_size(&b, "fast.tar"),
        last_layer_size(&b, "small.tar"),
    );
    assert!(
        fast > small,
        "level 1: {fast} bytes, level 9: {small} bytes"
    );
    b.fails(
        &["-o", "type=oci,dest=x.tar,compression-level=12"],
        "gzip takes 0 to 9",
    );
}

/// The media types of every layer of the image in an OCI archive img wrote.
fn layer_media_types(b: &Build, archive: &str) -> Vec<String> {
    archive_manifest(b, archive)["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap().to_owned())
        .collect()
}

/// `-o …,force-compression=true` writes the base image's gzip layers again as zstd; without
/// it they keep their compression.
#[test]
fn force_compression_rewrites_base_layers() {
    let b = Build::new();
    b.write("Dockerfile", "FROM busybox\nRUN echo forced > /forced\n");
    b.ok(&["-o", "type=oci,dest=kept.tar,compression=zstd"]);
    let kept = layer_media_types(&b, "kept.tar");
    assert!(kept.len() >= 2, "{kept:?}");
    assert!(kept[0].ends_with("+gzip"), "{kept:?}");
    assert!(kept.last().unwrap().ends_with("+zstd"), "{kept:?}");
    b.ok(&[
        "-o",
        "type=oci,dest=forced.tar,name=forced:v1,compression=zstd,force-compression=true",
    ]);
    let forced = layer_media_types(&b, "forced.tar");
    assert_eq!(forced.len(), kept.len());
    assert!(forced.iter().all(|t| t.ends_with("+zstd")), "{forced:?}");
    // The image is whole: its layers apply on a fresh state directory.
    b.img
        .ok(&["load", "-i", b.path("forced.tar").to_str().unwrap()]);
}

/// `-o …,oci-mediatypes=false` writes Docker's schema 2 media types, base image layers
/// included, in an archive and in a push that skopeo reads back; zstd needs OCI's.
#[test]
fn docker_media_types_on_request() {
    let registry = crate::fixtures::Registry::anonymous();
    let b = Build::new();
    b.write("Dockerfile", "FROM busybox\nRUN echo docker > /docker\n");
    b.ok(&["-o", "type=oci,dest=docker.tar,oci-mediatypes=false"]);
    let types = layer_media_types(&b, "docker.tar");
    assert!(types.len() >= 2, "{types:?}");
    assert!(
        types
            .iter()
            .all(|t| t == "application/vnd.docker.image.rootfs.diff.tar.gzip"),
        "{types:?}"
    );

    let name = format!("{}/team/docker-types:1", registry.host());
    let dest = format!("type=registry,name={name},oci-mediatypes=false");
    b.ok(&["-o", &dest]);
    let raw: Value = serde_json::from_slice(&crate::fixtures::skopeo_raw_manifest(&name)).unwrap();
    assert_eq!(
        raw["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        raw["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
    b.fails(
        &[
            "-o",
            "type=oci,dest=z.tar,compression=zstd,oci-mediatypes=false",
        ],
        "zstd layers need OCI media types",
    );
}

/// `--annotation` as buildx reads it: on the manifest by default or with `manifest:`, on its
/// descriptor with `manifest-descriptor:`; index annotations need an index.
#[test]
fn annotations_reach_the_manifest_and_its_descriptor() {
    let b = Build::new();
    b.write("Dockerfile", "FROM busybox\nRUN echo a > /a\n");
    b.ok(&[
        "-t",
        "ann",
        "--annotation",
        "org.opencontainers.image.title=app",
        "--annotation",
        "manifest:org.example.m=1",
        "--annotation",
        "manifest-descriptor:org.example.d=2",
        "--metadata-file",
        "meta.json",
        "-o",
        "type=oci,dest=ann.tar",
        "-o",
        "type=image",
    ]);
    let inspect: Value = serde_json::from_str(&b.img.ok(&["inspect", "ann"])).unwrap();
    let manifest = inspect
        .get("manifest")
        .or_else(|| inspect.get("Manifest"))
        .unwrap();
    assert_eq!(
        manifest["annotations"],
        serde_json::json!({"org.opencontainers.image.title": "app", "org.example.m": "1"})
    );
    // The OCI layout's index.json carries the descriptor's annotations beside the name.
    let out = b.path("layout");
    std::fs::create_dir(&out).unwrap();
    crate::tool(
        "tar",
        &[
            "xf",
            b.path("ann.tar").to_str().unwrap(),
            "-C",
            out.to_str().unwrap(),
        ],
    );
    let index: Value = serde_json::from_str(&read(&out.join("index.json"))).unwrap();
    let annotations = &index["manifests"][0]["annotations"];
    assert_eq!(annotations["org.example.d"], "2", "{index}");
    assert_eq!(annotations["org.opencontainers.image.ref.name"], "latest");
    let meta: Value = serde_json::from_str(&read(&b.path("meta.json"))).unwrap();
    assert_eq!(
        meta["containerimage.descriptor"]["annotations"]["org.example.d"],
        "2"
    );

    b.fails(
        &["--annotation", "index:k=v"],
        "index annotations are not supported for a single-platform build",
    );

    // buildx's `-o` spelling of the same, with the compression of the export.
    b.ok(&[
        "-o",
        "type=oci,dest=o.tar,compression=uncompressed,annotation.org.example.o=3,\
         annotation-manifest-descriptor.org.example.od=4",
    ]);
    let archive = b.path("o.tar");
    let archive = archive.to_str().unwrap();
    let index: Value =
        serde_json::from_str(&crate::tool("tar", &["-xOf", archive, "index.json"])).unwrap();
    let entry = &index["manifests"][0];
    assert_eq!(entry["annotations"]["org.example.od"], "4", "{index}");
    let blob = format!(
        "blobs/sha256/{}",
        entry["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:")
    );
    let manifest: Value =
        serde_json::from_str(&crate::tool("tar", &["-xOf", archive, &blob])).unwrap();
    assert_eq!(manifest["annotations"]["org.example.o"], "3", "{manifest}");
    let layers = manifest["layers"].as_array().unwrap();
    let own = layers.last().unwrap();
    assert_eq!(
        own["mediaType"], "application/vnd.oci.image.layer.v1.tar",
        "{manifest}"
    );
    b.fails(
        &[
            "-o",
            "type=oci,dest=a.tar,compression=zstd",
            "-o",
            "type=oci,dest=b.tar,compression=gzip",
        ],
        "ask for different compressions",
    );
    b.fails(
        &[
            "-o",
            "type=oci,dest=a.tar,oci-mediatypes=false",
            "-o",
            "type=oci,dest=b.tar,oci-mediatypes=true",
        ],
        "ask for different media types",
    );
}

/// `--build-context`: a directory for `COPY --from` and `RUN --mount from=`, an image for
/// `FROM`; a named context wins over a stage of the same name, as in BuildKit.
#[test]
fn named_build_contexts_win_over_stages_and_images() {
    let b = Build::new();
    let extra = b.path("extra");
    std::fs::create_dir_all(extra.join("sub")).unwrap();
    std::fs::write(extra.join("sub/f"), "from the directory\n").unwrap();
    b.write(
        "Dockerfile",
        "FROM busybox AS files\n\
         RUN mkdir /sub && echo from the stage > /sub/f\n\
         FROM base\n\
         COPY --from=files /sub/f /copied\n\
         RUN --mount=from=files,target=/m cat /m/sub/f > /mounted\n",
    );
    let extra_arg = format!("files={}", extra.display());
    b.ok(&[
        "--build-context",
        &extra_arg,
        "--build-context",
        "base=docker-image://busybox:latest",
        "-o",
        "type=local,dest=out",
    ]);
    assert_eq!(read(&b.path("out/copied")), "from the directory\n");
    assert_eq!(read(&b.path("out/mounted")), "from the directory\n");
    assert!(b.path("out/bin/busybox").exists());

    // Without it, the stage of that name is used; and `base` is no image anywhere.
    b.write(
        "Dockerfile",
        "FROM busybox AS files\n\
         RUN mkdir /sub && echo from the stage > /sub/f\n\
         FROM busybox\n\
         COPY --from=files /sub/f /copied\n",
    );
    b.ok(&["-o", "type=local,dest=plain"]);
    assert_eq!(read(&b.path("plain/copied")), "from the stage\n");

    b.write("Dockerfile", "FROM files\n");
    b.fails(
        &["--build-context", &extra_arg, "-o", "type=local,dest=x"],
        "is a local directory",
    );
    b.fails(
        &[
            "--build-context",
            "files=/nonexistent",
            "-o",
            "type=local,dest=x",
        ],
        "is not a directory",
    );
}

/// `--build-context NAME=oci-layout://PATH[:TAG][@DIGEST]`: an image read from a local OCI
/// layout (here one img exported and `tar` unpacked), by tag, by digest, and as the layout's
/// only image; `--pull` does not send it to a registry.
#[test]
fn an_oci_layout_directory_as_a_named_context() {
    let b = Build::new();
    b.write(
        "Dockerfile",
        "FROM busybox\nRUN echo from the layout > /marker\n",
    );
    b.ok(&["-o", "type=oci,dest=layout.tar,name=marker:v1"]);
    let layout = b.path("layout");
    std::fs::create_dir_all(&layout).unwrap();
    let untar = std::process::Command::new("tar")
        .arg("-xf")
        .arg(b.path("layout.tar"))
        .arg("-C")
        .arg(&layout)
        .status()
        .unwrap();
    assert!(untar.success());
    let index: Value = serde_json::from_str(&read(&layout.join("index.json"))).unwrap();
    let digest = index["manifests"][0]["digest"].as_str().unwrap().to_owned();

    b.write("Dockerfile", "FROM base\nRUN cat /marker > /seen\n");
    for (value, out) in [
        (format!("oci-layout://{}:v1", layout.display()), "by-tag"),
        (
            format!("oci-layout://{}@{digest}", layout.display()),
            "by-digest",
        ),
        (format!("oci-layout://{}", layout.display()), "only-image"),
    ] {
        let arg = format!("base={value}");
        let dest = format!("type=local,dest={out}");
        b.ok(&["--pull", "--build-context", &arg, "-o", &dest]);
        assert_eq!(read(&b.path(&format!("{out}/seen"))), "from the layout\n");
    }

    b.fails(
        &[
            "--build-context",
            &format!("base=oci-layout://{}:v1", b.path("Dockerfile").display()),
            "-o",
            "type=local,dest=x",
        ],
        "is not an OCI image layout",
    );
    // A blob that does not match its name is refused before the build starts.
    let manifest_path = layout
        .join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap());
    let manifest: Value = serde_json::from_str(&read(&manifest_path)).unwrap();
    let top_layer = manifest["layers"].as_array().unwrap().last().unwrap()["digest"]
        .as_str()
        .unwrap()
        .strip_prefix("sha256:")
        .unwrap()
        .to_owned();
    std::fs::write(layout.join("blobs/sha256").join(top_layer), b"tampered").unwrap();
    b.img.ok(&["prune", "--all"]);
    b.fails(
        &[
            "--build-context",
            &format!("base=oci-layout://{}:v1", layout.display()),
            "-o",
            "type=local,dest=y",
        ],
        "does not match its digest",
    );
}

/// Serves `files` (path to body) over HTTP on loopback, one request at a time, until the
/// test process ends; returns the base URL.
fn serve(files: Vec<(&'static str, Vec<u8>)>) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            // The headers, up to the empty line.
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let path = request.split_whitespace().nth(1).unwrap_or("").to_owned();
            let found = files.iter().find(|(p, _)| *p == path);
            let (status, body) = match found {
                Some((_, body)) => ("200 OK", body.clone()),
                None => ("404 Not Found", b"not found".to_vec()),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(&body);
        }
    });
    base
}

/// `img build URL`, as `docker build URL` reads a URL that is no git repository: a tarball
/// of the context, or a Dockerfile alone.
#[test]
fn remote_contexts_as_a_tarball_or_a_dockerfile() {
    let b = Build::new();
    b.write("Dockerfile", "FROM busybox\nCOPY f.txt /f.txt\n");
    b.write("f.txt", "from the tarball\n");
    let tgz = b.path("ctx.tgz");
    crate::tool(
        "tar",
        &[
            "czf",
            tgz.to_str().unwrap(),
            "-C",
            b.ctx().to_str().unwrap(),
            ".",
        ],
    );
    let base = serve(vec![
        ("/ctx.tgz", std::fs::read(&tgz).unwrap()),
        (
            "/Dockerfile",
            b"FROM busybox\nRUN echo from-url > /u\n".to_vec(),
        ),
    ]);
    let url = format!("{base}/ctx.tgz");
    b.img.ok(&["build", "-o", "type=local,dest=from-tar", &url]);
    assert_eq!(read(&b.path("from-tar/f.txt")), "from the tarball\n");
    let url = format!("{base}/Dockerfile");
    b.img
        .ok(&["build", "-o", "type=local,dest=from-file", &url]);
    assert_eq!(read(&b.path("from-file/u")), "from-url\n");
    let url = format!("{base}/missing.tgz");
    b.img
        .fails(&["build", &url], "cannot download the build context");
}

/// `--ssh ID=KEYFILE`: a RUN step with `--mount=type=ssh` finds an agent socket at
/// SSH_AUTH_SOCK (served by img, as buildx serves key files); the key reaches no layer.
#[test]
fn ssh_key_files_are_served_by_an_agent() {
    let b = Build::new();
    let key = b.path("id_ed25519");
    crate::tool(
        "ssh-keygen",
        &["-q", "-t", "ed25519", "-N", "", "-f", key.to_str().unwrap()],
    );
    b.write(
        "Dockerfile",
        "FROM busybox\n\
         RUN --mount=type=ssh test -S \"$SSH_AUTH_SOCK\" && echo \"$SSH_AUTH_SOCK\" > /agent\n",
    );
    let spec = format!("default={}", key.display());
    b.ok(&["--ssh", &spec, "-t", "ssh", "-o", "type=oci,dest=ssh.tar"]);
    let out = b.path("layout");
    std::fs::create_dir(&out).unwrap();
    crate::tool(
        "tar",
        &[
            "xf",
            b.path("ssh.tar").to_str().unwrap(),
            "-C",
            out.to_str().unwrap(),
        ],
    );
    // Every blob, layers uncompressed, holds no line of the key.
    let secret_line = read(&key).lines().nth(1).unwrap().to_owned();
    let mut agent_file_seen = false;
    for blob in std::fs::read_dir(out.join("blobs/sha256")).unwrap() {
        let path = blob.unwrap().path();
        let listing = std::process::Command::new("tar")
            .args(["xzOf", path.to_str().unwrap()])
            .output()
            .unwrap();
        let raw = std::fs::read(&path).unwrap();
        for bytes in [&listing.stdout, &raw] {
            assert!(
                !String::from_utf8_lossy(bytes).contains(&secret_line),
                "{} holds the key",
                path.display()
            );
        }
        agent_file_seen |= listing.status.success()
            && String::from_utf8_lossy(&listing.stdout).contains("/run/buildkit/ssh_agent");
    }
    assert!(
        agent_file_seen,
        "no layer holds the /agent file the step wrote"
    );
}
