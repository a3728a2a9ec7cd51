//! Shared pieces of the integration tests: a busybox root filesystem and a step runner.
#![allow(dead_code)]

pub mod containment;
pub mod test_user;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use img_sandbox::{
    CancelToken, HostPaths, IdMapping, OutputSink, Process, Rootfs, Sandbox, SandboxError,
    SandboxSpec, SandboxSpecBuilder, StepExit, Stream,
};

/// Debian's busybox-static (package busybox-static).
pub const BUSYBOX: &str = "/bin/busybox";

/// Overrides the init program (a copy the test user can reach; see `unprivileged.rs`).
pub const INIT_OVERRIDE_ENV: &str = "IMG_SANDBOX_TEST_INIT";

/// The crate's init program, built by cargo for the integration tests.
pub fn sandbox() -> Sandbox {
    let init = std::env::var_os(INIT_OVERRIDE_ENV).map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_img-sandbox-init")),
        PathBuf::from,
    );
    Sandbox::new().with_init_program(init)
}

/// The mapping for whoever runs the test (identity for root).
pub fn mapping() -> IdMapping {
    IdMapping::detect(&HostPaths::default()).expect("detect id mapping")
}

/// A root filesystem with busybox, its applets as symlinks, and users root and app (1000).
pub fn busybox_rootfs(dir: &Path) {
    assert!(
        Path::new(BUSYBOX).exists(),
        "{BUSYBOX} missing: apt-get install busybox-static"
    );
    for d in [
        "bin", "etc", "proc", "dev", "sys", "tmp", "root", "home/app",
    ] {
        fs::create_dir_all(dir.join(d)).expect("mkdir");
    }
    fs::set_permissions(dir.join("tmp"), fs::Permissions::from_mode(0o1777)).expect("chmod tmp");
    fs::copy(BUSYBOX, dir.join("bin/busybox")).expect("copy busybox");
    let list = Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            symlink("busybox", dir.join("bin").join(applet)).expect("symlink applet");
        }
    }
    fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
    )
    .expect("passwd");
    fs::write(
        dir.join("etc/group"),
        "root:x:0:\napp:x:1000:\naudio:x:29:app\n",
    )
    .expect("group");
}

/// A temporary busybox root.
pub fn temp_rootfs() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::Builder::new()
        .prefix("img-sandbox-test-")
        .tempdir()
        .expect("tempdir");
    let root = tmp.path().join("rootfs");
    fs::create_dir(&root).expect("mkdir rootfs");
    busybox_rootfs(&root);
    (tmp, root)
}

/// A spec running `sh -c script` in `root`.
pub fn sh(root: &Path, script: &str) -> SandboxSpecBuilder {
    let mut process = Process::new(["/bin/sh", "-c", script]);
    process.env = vec!["PATH=/bin".into()];
    SandboxSpec::builder(Rootfs::Directory(root.to_path_buf()), process, mapping())
}

/// Output of a finished step.
#[derive(Debug, Default, Clone)]
pub struct Captured {
    pub stdout: String,
    pub stderr: String,
    /// Arrival time of each chunk.
    pub chunks: Vec<(Instant, Stream, String)>,
}

#[derive(Clone, Default)]
pub struct Capture(pub Arc<Mutex<Captured>>);

impl OutputSink for Capture {
    fn output(&mut self, stream: Stream, data: &[u8]) {
        let text = String::from_utf8_lossy(data).into_owned();
        let mut c = self.0.lock().expect("lock");
        match stream {
            Stream::Stdout => c.stdout.push_str(&text),
            _ => c.stderr.push_str(&text),
        }
        c.chunks.push((Instant::now(), stream, text));
    }
}

/// Runs a spec, returning the exit and the output.
pub fn run(spec: &SandboxSpec) -> (Result<StepExit, SandboxError>, Captured) {
    run_with(spec, &CancelToken::new())
}

pub fn run_with(
    spec: &SandboxSpec,
    cancel: &CancelToken,
) -> (Result<StepExit, SandboxError>, Captured) {
    let mut capture = Capture::default();
    let result = sandbox().run(spec, &mut capture, cancel);
    let captured = capture.0.lock().expect("lock").clone();
    (result, captured)
}

/// Runs a spec that must succeed, returning stdout.
pub fn stdout_of(spec: &SandboxSpec) -> String {
    let (result, out) = run(spec);
    match result {
        Ok(exit) if exit.success() => out.stdout,
        other => panic!(
            "step failed: {other:?}\nstdout: {}\nstderr: {}",
            out.stdout, out.stderr
        ),
    }
}

/// Whether this process is real root.
pub fn is_root() -> bool {
    nix::unistd::getuid().is_root()
}

/// The value of extended attribute `name` of `path` (not following symlinks), if set.
pub fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let name = std::ffi::CString::new(name).ok()?;
    let mut buf = [0u8; 256];
    // SAFETY: NUL-terminated strings and a buffer of the given size.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n >= 0).then(|| buf[..n as usize].to_vec())
}

/// Whether `path` is an overlayfs whiteout: a 0/0 character device.
pub fn is_whiteout(path: &Path) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == 0)
}
