//! Shared pieces of the worker tests: a state directory with a busybox image, a solver on it,
//! graph builders and layer readers.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use img_llb::{
    CopyAction, Definition, DefinitionBuilder, ExecOp, FileOp, GitSource, ImageSource, Op,
    OpMetadata, OpRef, Platform, SourceOp,
};
use img_sandbox::{HostPaths, IdMapping};
use img_snapshot::{
    export_layer, BackendChoice, Compression, Digest, ExportOptions, StateDir, Store,
};
use img_solver::{CacheDb, NoProgress, SolveError, SolveOptions, Solved, Solver};
use img_worker::{
    export_image, ExportedImage, ImageExportOptions, ImageRequest, LayerSource, LocalDirs, Worker,
    WorkerOptions, WorkerRef,
};
use serde_json::json;

/// Debian's busybox-static.
pub const BUSYBOX: &str = "/bin/busybox";
/// The name the test image is stored under.
pub const BASE: &str = "busybox:test";
/// The epoch the fixture image is made with, so every state directory has the same base.
pub const FIXTURE_EPOCH: i64 = 1_700_000_000;

pub type TestResult = Result<(), String>;

/// A libtest-mimic trial running the test function `f` under `name`.
pub fn t(name: &'static str, f: fn() -> TestResult) -> libtest_mimic::Trial {
    libtest_mimic::Trial::test(name, move || f().map_err(Into::into))
}

/// Turns any error into the test failure message, with its causes.
pub fn fail<E: std::error::Error>(err: E) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// A fresh state directory holding the busybox image, and a build context directory.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("img-worker-test-")
            .tempdir_in(
                std::env::var_os("IMG_TEST_TMP").map_or_else(std::env::temp_dir, PathBuf::from),
            )
            .expect("tempdir");
        fs::create_dir(dir.path().join("context")).expect("context dir");
        let fixture = Fixture { dir };
        busybox_image(&fixture.store()).expect("busybox image");
        fixture
    }

    pub fn state(&self) -> StateDir {
        StateDir::at(self.dir.path().join("state"))
    }

    pub fn store(&self) -> Store {
        Store::open(&self.state()).expect("open store")
    }

    pub fn context(&self) -> PathBuf {
        self.dir.path().join("context")
    }

    pub fn write(&self, rel: &str, data: &str) {
        let path = self.context().join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, data).unwrap();
    }

    pub fn options(&self) -> WorkerOptions {
        let mut options = WorkerOptions::new(IdMapping::detect(&HostPaths::default()).unwrap());
        options.locals = LocalDirs::new().with("context", self.context());
        options
    }

    /// A solver on this state directory, as a new img process would open it.
    pub fn solver_with(&self, options: WorkerOptions) -> Solver<Worker> {
        let store = self.store();
        // IMG_TEST_BACKEND=native runs the suite on full copies instead of overlayfs.
        let choice = match std::env::var("IMG_TEST_BACKEND").as_deref() {
            Ok("native") => BackendChoice::Native,
            Ok("overlayfs") => BackendChoice::Overlayfs,
            _ => BackendChoice::Auto,
        };
        let snapshotter = store.snapshotter(choice).expect("snapshotter");
        let worker = Worker::new(store, &snapshotter, options).expect("worker");
        let cache = CacheDb::open(self.state().root().join("cache.db")).expect("cache db");
        Solver::new(worker, cache)
    }

    pub fn solver(&self) -> Solver<Worker> {
        self.solver_with(self.options())
    }
}

/// Writes a one-layer busybox image (busybox, its applets, root and app users) into `store`.
pub fn busybox_image(store: &Store) -> Result<(), String> {
    let tmp = tempfile::tempdir_in(store.state().tmp()).map_err(fail)?;
    let root = tmp.path();
    for d in ["bin", "etc", "tmp", "root", "home/app", "run", "var"] {
        fs::create_dir_all(root.join(d)).map_err(fail)?;
    }
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).map_err(fail)?;
    fs::copy(BUSYBOX, root.join("bin/busybox")).map_err(fail)?;
    let list = Command::new(BUSYBOX).arg("--list").output().map_err(fail)?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            symlink("busybox", root.join("bin").join(applet)).map_err(fail)?;
        }
    }
    fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
    )
    .map_err(fail)?;
    fs::write(root.join("etc/group"), "root:x:0:\napp:x:1000:\n").map_err(fail)?;
    let content = store.content();
    let options = ExportOptions {
        compression: Compression::Gzip,
        source_date_epoch: Some(FIXTURE_EPOCH),
        ..ExportOptions::default()
    };
    let layer = export_layer(&content, root, &options).map_err(fail)?;
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2023-11-14T22:13:20Z",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id.to_string()]},
        "history": [{"created": "2023-11-14T22:13:20Z", "created_by": "busybox fixture"}],
    });
    let config = serde_json::to_vec(&config).map_err(fail)?;
    let config_info = content.write_blob(&config, None).map_err(fail)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_info.digest.to_string(), "size": config.len()},
        "layers": [{"mediaType": layer.compression.media_type(),
                    "digest": layer.digest.to_string(), "size": layer.size}],
    });
    let manifest = serde_json::to_vec(&manifest).map_err(fail)?;
    let info = content.write_blob(&manifest, None).map_err(fail)?;
    let descriptor = oci_spec::image::Descriptor::new(
        oci_spec::image::MediaType::ImageManifest,
        manifest.len() as u64,
        info.digest.to_oci(),
    );
    store.images().put(BASE, &descriptor).map_err(fail)
}

/// Builds graphs op by op, remembering the layer-producing steps in order.
pub struct Graph {
    pub builder: DefinitionBuilder,
    pub base: OpRef,
    pub steps: Vec<OpRef>,
}

impl Graph {
    pub fn on_busybox() -> Graph {
        let mut builder = DefinitionBuilder::new();
        let base = builder
            .add(
                SourceOp::Image(ImageSource {
                    reference: BASE.into(),
                    platform: Platform::new("linux", "amd64"),
                }),
                OpMetadata::described("FROM busybox"),
            )
            .unwrap();
        Graph {
            builder,
            base,
            steps: Vec::new(),
        }
    }

    pub fn top(&self) -> OpRef {
        *self.steps.last().unwrap_or(&self.base)
    }

    /// Adds a layer step.
    pub fn step(&mut self, op: impl Into<Op>, description: &str) -> OpRef {
        let r = self
            .builder
            .add(op, OpMetadata::described(description))
            .unwrap();
        self.steps.push(r);
        r
    }

    /// Adds the checkout of the git repository `repo` at `reference` and a step copying it to
    /// `/src/` (`ADD repo#reference /src/`).
    pub fn add_git(&mut self, repo: &Path, reference: &str) -> OpRef {
        let checkout = self
            .builder
            .add(
                SourceOp::Git(GitSource {
                    url: repo.display().to_string(),
                    reference: Some(reference.into()),
                    keep_git_dir: false,
                }),
                OpMetadata::described("git"),
            )
            .unwrap();
        let mut action = CopyAction::new(checkout, vec!["/".into()], "/src/");
        action.allow_wildcard = false;
        self.step(
            FileOp::new(Some(self.top())).with_action(action),
            &format!("ADD repo#{reference} /src/"),
        )
    }

    /// Adds `sh -c script` on the current top.
    pub fn run(&mut self, script: &str) -> OpRef {
        let exec = ExecOp::new(
            Some(self.top()),
            vec!["/bin/sh".into(), "-c".into(), script.into()],
        )
        .with_env("PATH", "/bin");
        self.step(exec, &format!("RUN {script}"))
    }

    pub fn definition(&self) -> Definition {
        self.builder.clone().build(self.top()).unwrap()
    }

    /// The image request for the solved graph: busybox's layer, then every step.
    pub fn request(&self, solved: &Solved<WorkerRef>) -> ImageRequest {
        let mut history =
            vec![json!({"created": "2023-11-14T22:13:20Z", "created_by": "busybox fixture"})];
        let mut layers = Vec::new();
        for (i, step) in self.steps.iter().enumerate() {
            history.push(
                json!({"created_by": format!("step {i}"), "comment": "buildkit.dockerfile.v0"}),
            );
            layers.push(LayerSource {
                output: solved.outputs[&step.digest].clone(),
                history_index: Some(i + 1),
            });
        }
        ImageRequest {
            base: Some(solved.outputs[&self.base.digest].clone()),
            layers,
            config: json!({
                "architecture": "amd64",
                "os": "linux",
                "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
                "history": history,
            }),
        }
    }
}

pub fn solve(
    solver: &Solver<Worker>,
    definition: &Definition,
) -> Result<Solved<WorkerRef>, SolveError> {
    solver.solve(definition, &SolveOptions::default(), &NoProgress)
}

/// Solves and exports; `epoch` makes the image reproducible.
pub fn build(
    solver: &Solver<Worker>,
    graph: &Graph,
    epoch: Option<i64>,
) -> Result<(Solved<WorkerRef>, ExportedImage), String> {
    let solved = solve(solver, &graph.definition()).map_err(fail)?;
    let options = ImageExportOptions::new().with_source_date_epoch(epoch);
    let image = export_image(solver.executor(), &graph.request(&solved), &options).map_err(fail)?;
    Ok((solved, image))
}

/// Paths and contents of the regular files of a layer.
pub fn layer_files(store: &Store, digest: &Digest) -> Vec<(String, Vec<u8>)> {
    let blob = store.content().open(digest).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(blob));
    let mut out = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches('/')
            .to_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        out.push((path, data));
    }
    out
}

/// `condition` or a failure saying `what`.
pub fn check(condition: bool, what: impl Into<String>) -> TestResult {
    if condition {
        Ok(())
    } else {
        Err(what.into())
    }
}

/// Whether `path` is an executable on PATH.
/// Runs `git -C dir ARGS` with a fixed identity, failing with git's message.
pub fn git(dir: &Path, args: &[&str]) -> TestResult {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .output()
        .map_err(fail)?;
    check(
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn have_tool(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

pub fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}
