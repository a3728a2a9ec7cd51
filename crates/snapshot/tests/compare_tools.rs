//! Layer export against the usual command-line pipelines on the same tree. Ignored by default
//! (it writes 200 MB and takes a minute); run with
//! `cargo test --release -p img-snapshot --test compare_tools -- --ignored --nocapture`.

#[path = "common/bigtree.rs"]
mod bigtree;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use img_snapshot::{
    apply_layer, export_layer, ApplyOptions, Compression, ExportOptions, StateDir, Store,
};

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

fn time_shell(label: &str, script: &str, tree: &Path) {
    let start = Instant::now();
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(tree)
        .output()
        .unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let size: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    println!(
        "{label:<28} {secs:>7.2} s  {:>7.1} MB  `{script}`",
        size as f64 / 1e6
    );
}

#[test]
#[ignore = "benchmark: 200 MB tree, run explicitly"]
fn export_versus_tar_pipelines() {
    let mb: u64 = std::env::var("IMG_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-tmp");
    std::fs::create_dir_all(&base).unwrap();
    let dir = tempfile::tempdir_in(&base).unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    bigtree::build_big_tree(&tree, mb << 20, 20_000);
    // Warm the page cache so every contender reads from memory.
    Command::new("sh")
        .arg("-c")
        .arg("tar -cf - . > /dev/null")
        .current_dir(&tree)
        .status()
        .unwrap();
    let store = Store::open(&StateDir::at(dir.path().join("state"))).unwrap();
    println!(
        "tree: {mb} MiB, 20000 files, {} cores",
        std::thread::available_parallelism().unwrap()
    );
    let mut gzip_blob = None;
    for compression in [
        Compression::Gzip,
        Compression::Zstd,
        Compression::Uncompressed,
    ] {
        let start = Instant::now();
        let layer = export_layer(
            &store.content(),
            &tree,
            &ExportOptions {
                compression,
                ..Default::default()
            },
        )
        .unwrap();
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{:<28} {secs:>7.2} s  {:>7.1} MB",
            format!("img export {compression:?}"),
            layer.size as f64 / 1e6
        );
        if compression == Compression::Gzip {
            gzip_blob = Some(store.content().path(&layer.digest));
        }
    }
    let blob = gzip_blob.unwrap();
    let dst = dir.path().join("apply-img");
    std::fs::create_dir(&dst).unwrap();
    let start = Instant::now();
    apply_layer(
        std::fs::File::open(&blob).unwrap(),
        &dst,
        &ApplyOptions::default(),
    )
    .unwrap();
    println!(
        "{:<28} {:>7.2} s",
        "img apply gzip",
        start.elapsed().as_secs_f64()
    );
    for (label, cmd) in [
        ("tar -xzf", "tar -xzf"),
        ("pigz -dc | tar -x", "pigz -dc < BLOB | tar -x #"),
    ] {
        let out = dir.path().join(label.replace(' ', "_").replace('|', ""));
        std::fs::create_dir(&out).unwrap();
        let script = if cmd.contains("BLOB") {
            cmd.replace("BLOB", &blob.display().to_string())
        } else {
            format!("{cmd} {}", blob.display())
        };
        let start = Instant::now();
        let status = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .current_dir(&out)
            .status()
            .unwrap();
        assert!(status.success());
        println!(
            "{label:<28} {:>7.2} s  `{script}`",
            start.elapsed().as_secs_f64()
        );
    }
    let tar = "tar --sort=name --numeric-owner -cf - .";
    time_shell("tar | gzip", &format!("{tar} | gzip | wc -c"), &tree);
    if have("pigz") {
        time_shell("tar | pigz", &format!("{tar} | pigz | wc -c"), &tree);
    }
    if have("zstd") {
        time_shell(
            "tar | zstd -T0",
            &format!("{tar} | zstd -T0 -3 | wc -c"),
            &tree,
        );
    }
    time_shell("tar (uncompressed)", &format!("{tar} | wc -c"), &tree);
}
