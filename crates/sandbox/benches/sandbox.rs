//! Start and tear down the sandbox for `true`: the fixed cost every RUN step pays.
//!
//! Compare with util-linux: `hyperfine -N 'unshare --user --map-root-user --mount --pid --fork true'`.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use img_sandbox::{
    CancelToken, DiscardOutput, HostPaths, IdMapping, Process, Rootfs, Sandbox, SandboxSpec,
};

fn busybox_root(root: &Path) {
    for d in ["bin", "etc", "proc", "dev", "sys", "tmp"] {
        fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static is installed");
    symlink("busybox", root.join("bin/true")).expect("symlink");
}

fn start_and_tear_down(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tempdir");
    busybox_root(tmp.path());
    let sandbox = Sandbox::new().with_init_program(env!("CARGO_BIN_EXE_img-sandbox-init"));
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    let mut mappings = vec![(
        "detected",
        IdMapping::detect(&HostPaths::default()).expect("mapping"),
    )];
    if uid == 0 {
        // Root can also take the rootless path: a user namespace mapping only itself.
        mappings.push(("user_namespace", IdMapping::single_id(uid, gid)));
    }
    let mut group = c.benchmark_group("sandbox_true");
    for (name, mapping) in mappings {
        let spec = SandboxSpec::builder(
            Rootfs::Directory(tmp.path().to_path_buf()),
            Process::new(["/bin/true"]),
            mapping,
        )
        .build();
        group.bench_function(name, |b| {
            b.iter(|| {
                let exit = sandbox
                    .run(&spec, &mut DiscardOutput, &CancelToken::new())
                    .expect("run");
                assert!(exit.success());
            })
        });
    }
    group.finish();
}

criterion_group!(benches, start_and_tear_down);
criterion_main!(benches);
