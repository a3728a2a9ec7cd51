//! Outputs: image store names, `docker save` archives (podman load), OCI archives (skopeo),
//! root filesystem tars.

use std::process::Command;

use img_snapshot::Compression;
use img_worker::{
    export_image, store_image, write_docker_archive, write_oci_archive, write_rootfs_tar,
    ArchiveOutput, ImageExportOptions,
};
use libtest_mimic::Trial;

use crate::common::*;

pub fn tests() -> Vec<Trial> {
    vec![
        t(
            "image_is_named_in_the_local_store_and_usable_as_a_base",
            stored_image_is_a_base,
        ),
        t(
            "docker_archive_loads_with_podman",
            docker_archive_loads_with_podman,
        ),
        t(
            "oci_archive_inspects_with_skopeo",
            oci_archive_inspects_with_skopeo,
        ),
        t(
            "archives_copied_by_the_kernel_match_the_buffered_ones",
            archives_copied_by_the_kernel_match_the_buffered_ones,
        ),
        t(
            "oci_archive_copied_by_the_kernel_unpacks_with_umoci",
            oci_archive_copied_by_the_kernel_unpacks_with_umoci,
        ),
        t("rootfs_tar_is_deterministic", rootfs_tar_is_deterministic),
        t("zstd_and_uncompressed_layers", zstd_and_uncompressed_layers),
    ]
}

fn built_image(
    fx: &Fixture,
) -> Result<
    (
        img_solver::Solver<img_worker::Worker>,
        img_solver::Solved<img_worker::WorkerRef>,
        img_worker::ExportedImage,
    ),
    String,
> {
    let solver = fx.solver();
    let mut graph = Graph::on_busybox();
    graph.run("echo payload > /payload");
    let (solved, image) = build(&solver, &graph, Some(1_700_000_000))?;
    Ok((solver, solved, image))
}

fn stored_image_is_a_base() -> TestResult {
    let fx = Fixture::new();
    let (_, _, image) = built_image(&fx)?;
    store_image(&fx.store(), &image, &["localhost/derived:1".into()]).map_err(fail)?;
    let record = fx
        .store()
        .images()
        .get("localhost/derived:1")
        .map_err(fail)?;
    check(
        record.is_some_and(|r| r.target.digest().to_string() == image.manifest_digest.to_string()),
        "name points at the manifest",
    )?;
    // The stored image serves as the base of another build, its layers reused as they are.
    let solver = fx.solver();
    let mut builder = img_llb::DefinitionBuilder::new();
    let base = builder
        .add(
            img_llb::SourceOp::Image(img_llb::ImageSource {
                reference: "localhost/derived:1".into(),
                platform: img_llb::Platform::new("linux", "amd64"),
            }),
            img_llb::OpMetadata::described("FROM derived"),
        )
        .unwrap();
    let mut graph = Graph {
        builder,
        base,
        steps: Vec::new(),
    };
    graph.run("cat /payload > /again");
    let (_, derived) = build(&solver, &graph, None)?;
    check(
        derived.layers.len() == 3,
        format!("{} layers", derived.layers.len()),
    )?;
    check(
        derived.layers[..2] == image.layers[..],
        "base layers reused as they are",
    )
}

fn docker_archive_loads_with_podman() -> TestResult {
    check(
        have_tool("podman"),
        "podman is not installed (apt-get install podman)",
    )?;
    let fx = Fixture::new();
    let (solver, _, image) = built_image(&fx)?;
    let tag = format!("localhost/img-worker-test:{}", std::process::id());
    let path = fx.dir.path().join("image.tar");
    let file = std::fs::File::create(&path).map_err(fail)?;
    let scratch = solver.executor().store().state().tmp();
    write_docker_archive(
        &fx.store().content(),
        &image,
        std::slice::from_ref(&tag),
        &scratch,
        &file,
    )
    .map_err(fail)?;
    // A storage of the test's own: nothing is left in the machine's image store, and it works
    // for whoever runs the test.
    let podman = || {
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(fx.dir.path().join("podman/root"))
            .arg("--runroot")
            .arg(fx.dir.path().join("podman/run"))
            .arg("--tmpdir")
            .arg(fx.dir.path().join("podman/tmp"))
            .args(["--storage-driver", "vfs", "--events-backend", "none"]);
        c
    };
    let load = podman()
        .args(["load", "-i"])
        .arg(&path)
        .output()
        .map_err(fail)?;
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&load.stdout),
        String::from_utf8_lossy(&load.stderr)
    );
    let inspect = podman()
        .args([
            "image",
            "inspect",
            "--format",
            "{{.Id}} {{len .RootFS.Layers}}",
            &tag,
        ])
        .output()
        .map_err(fail)?;
    check(load.status.success(), format!("podman load: {output}"))?;
    let inspected = String::from_utf8_lossy(&inspect.stdout).trim().to_owned();
    check(
        inspected == format!("{} 2", image.config_digest.hex()),
        format!("podman sees {inspected:?}"),
    )
}

fn oci_archive_inspects_with_skopeo() -> TestResult {
    check(
        have_tool("skopeo"),
        "skopeo is not installed (apt-get install skopeo)",
    )?;
    let fx = Fixture::new();
    let (_, _, image) = built_image(&fx)?;
    let path = fx.dir.path().join("image-oci.tar");
    let file = std::fs::File::create(&path).map_err(fail)?;
    write_oci_archive(&fx.store().content(), &image, &["app:1".into()], &file).map_err(fail)?;
    let out = Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci-archive:{}", path.display()))
        .output()
        .map_err(fail)?;
    check(
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )?;
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(fail)?;
    check(
        doc["Digest"] == image.manifest_digest.to_string(),
        format!("{}", doc["Digest"]),
    )?;
    check(
        doc["Layers"].as_array().map(Vec::len) == Some(2),
        format!("{}", doc["Layers"]),
    )
}

/// The archive rebuilt entry by entry with the tar crate's builder: the format the archive
/// writers must keep byte for byte.
fn rebuilt_with_tar_builder(archive: &[u8]) -> Result<Vec<u8>, String> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut entries = tar::Archive::new(archive);
    for entry in entries.entries().map_err(fail)? {
        let mut entry = entry.map_err(fail)?;
        let mut header = entry.header().clone();
        let path = entry.path().map_err(fail)?.into_owned();
        builder
            .append_data(&mut header, path, &mut entry)
            .map_err(fail)?;
    }
    builder.into_inner().map_err(fail)
}

fn archives_copied_by_the_kernel_match_the_buffered_ones() -> TestResult {
    let fx = Fixture::new();
    let (solver, _, image) = built_image(&fx)?;
    let content = fx.store().content();
    let scratch = solver.executor().store().state().tmp();
    let names = ["app:1".to_owned()];
    type Write<'a> = dyn Fn(ArchiveOutput<'_>) -> Result<(), img_worker::ExportError> + 'a;
    let oci_names = [img_worker::OciName {
        full: Some("docker.io/library/app:1".to_owned()),
        ref_name: "1".to_owned(),
    }];
    let oci = |out: ArchiveOutput<'_>| write_oci_archive(&content, &image, &oci_names, out);
    let docker =
        |out: ArchiveOutput<'_>| write_docker_archive(&content, &image, &names, &scratch, out);
    let writers: [(&str, &Write<'_>); 2] = [("oci", &oci), ("docker", &docker)];
    for (kind, write) in writers {
        let mut buffered = Vec::new();
        write(ArchiveOutput::Writer(&mut buffered)).map_err(fail)?;
        let path = fx.dir.path().join(format!("{kind}.tar"));
        // Written after a few bytes already in the file: the copy goes at the file's offset.
        let mut file = std::fs::File::create(&path).map_err(fail)?;
        std::io::Write::write_all(&mut file, b"xyz").map_err(fail)?;
        write(ArchiveOutput::File(&file)).map_err(fail)?;
        let in_file = std::fs::read(&path).map_err(fail)?;
        check(in_file[..3] == *b"xyz", "the file's first bytes are kept")?;
        check(
            in_file[3..] == buffered[..],
            format!("{kind}: the file copy differs from the buffered archive"),
        )?;
        check(
            rebuilt_with_tar_builder(&buffered)? == buffered,
            format!("{kind}: the archive differs from what tar::Builder writes"),
        )?;
        // A pipe, as standard output may be: sendfile, or the plain copy.
        let (reader, writer) = nix::unistd::pipe().map_err(fail)?;
        let drain = std::thread::spawn(move || {
            let mut got = Vec::new();
            std::io::Read::read_to_end(&mut std::fs::File::from(reader), &mut got).map(|_| got)
        });
        let pipe = std::fs::File::from(writer);
        write(ArchiveOutput::File(&pipe)).map_err(fail)?;
        drop(pipe);
        let piped = drain
            .join()
            .map_err(|_| "the reader panicked".to_owned())?
            .map_err(fail)?;
        check(
            piped == buffered,
            format!("{kind}: the piped archive differs from the buffered one"),
        )?;
    }
    Ok(())
}

fn oci_archive_copied_by_the_kernel_unpacks_with_umoci() -> TestResult {
    check(
        have_tool("umoci"),
        "umoci is not installed (apt-get install umoci)",
    )?;
    check(
        have_tool("skopeo"),
        "skopeo is not installed (apt-get install skopeo)",
    )?;
    let fx = Fixture::new();
    let (_, _, image) = built_image(&fx)?;
    let path = fx.dir.path().join("image-oci.tar");
    let file = std::fs::File::create(&path).map_err(fail)?;
    write_oci_archive(&fx.store().content(), &image, &["v1".into()], &file).map_err(fail)?;
    drop(file);
    let layout = fx.dir.path().join("layout");
    std::fs::create_dir(&layout).map_err(fail)?;
    let untar = Command::new("tar")
        .arg("-xf")
        .arg(&path)
        .arg("-C")
        .arg(&layout)
        .status()
        .map_err(fail)?;
    check(untar.success(), "tar -xf of the OCI archive")?;
    let bundle = fx.dir.path().join("bundle");
    let unpack = Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:v1", layout.display()))
        .arg(&bundle)
        .output()
        .map_err(fail)?;
    check(
        unpack.status.success(),
        format!("umoci unpack: {}", String::from_utf8_lossy(&unpack.stderr)),
    )?;
    let payload = std::fs::read_to_string(bundle.join("rootfs/payload")).map_err(fail)?;
    check(payload == "payload\n", format!("payload is {payload:?}"))?;
    let inspect = Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci-archive:{}", path.display()))
        .output()
        .map_err(fail)?;
    check(
        inspect.status.success(),
        String::from_utf8_lossy(&inspect.stderr).into_owned(),
    )
}

fn rootfs_tar_is_deterministic() -> TestResult {
    let fx = Fixture::new();
    let (solver, solved, _) = built_image(&fx)?;
    let mut first = Vec::new();
    write_rootfs_tar(
        solver.executor(),
        &solved.output,
        Some(1_700_000_000),
        &mut first,
    )
    .map_err(fail)?;
    let mut second = Vec::new();
    write_rootfs_tar(
        solver.executor(),
        &solved.output,
        Some(1_700_000_000),
        &mut second,
    )
    .map_err(fail)?;
    check(first == second, "two tars of the same tree differ")?;
    let mut archive = tar::Archive::new(first.as_slice());
    let mut names = Vec::new();
    for entry in archive.entries().map_err(fail)? {
        let entry = entry.map_err(fail)?;
        check(
            entry.header().mtime().unwrap_or(0) <= 1_700_000_000,
            "mtime clamped",
        )?;
        names.push(entry.path().map_err(fail)?.to_string_lossy().into_owned());
    }
    check(names.iter().any(|n| n == "payload"), "payload in rootfs")?;
    check(
        names.iter().any(|n| n == "bin/busybox"),
        "busybox in rootfs",
    )
}

fn zstd_and_uncompressed_layers() -> TestResult {
    check(
        have_tool("skopeo"),
        "skopeo is not installed (apt-get install skopeo)",
    )?;
    let fx = Fixture::new();
    let solver = fx.solver();
    let mut graph = Graph::on_busybox();
    graph.run("echo compressed > /c");
    let solved = solve(&solver, &graph.definition()).map_err(fail)?;
    for (compression, media_type) in [
        (
            Compression::Zstd,
            "application/vnd.oci.image.layer.v1.tar+zstd",
        ),
        (
            Compression::Uncompressed,
            "application/vnd.oci.image.layer.v1.tar",
        ),
    ] {
        let options = ImageExportOptions::new().with_compression(compression);
        let image =
            export_image(solver.executor(), &graph.request(&solved), &options).map_err(fail)?;
        check(
            image.layers[1].media_type == media_type,
            format!("{:?}", image.layers[1]),
        )?;
        check(
            image.layers[0].media_type.ends_with("+gzip"),
            "the base layer is kept as it is",
        )?;
        let path = fx.dir.path().join("image.tar");
        let file = std::fs::File::create(&path).map_err(fail)?;
        write_oci_archive(&fx.store().content(), &image, &[], &file).map_err(fail)?;
        let out = Command::new("skopeo")
            .arg("inspect")
            .arg(format!("oci-archive:{}", path.display()))
            .output()
            .map_err(fail)?;
        check(
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )?;
    }
    Ok(())
}
