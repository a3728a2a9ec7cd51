//! A fake executor for solver tests: exec ops sleep, fail or wait for cancellation according to
//! their arguments, outputs are files in a store directory (so a fresh process can reload
//! them), and every run is timed and counted.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use img_llb::{
    CopyAction, Definition, DefinitionBuilder, Digest, ExecOp, FileAction, FileOp, ImageSource,
    LocalSource, MergeOp, Op, OpMetadata, OpRef, Platform, SourceLocation, SourceOp,
};
use img_solver::{
    checksum_tree, CacheDb, CacheKeyExtra, ChecksumOptions, ExecContext, Executor, Inputs,
    LogStream,
};

/// What a fake op produced: a stored id, and for the local source the directory it stands for.
#[derive(Clone, Debug)]
pub struct FakeOutput {
    pub id: String,
    pub dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum FakeError {
    #[error("process exited with code {code}")]
    Exit { code: i32 },
    #[error("cancelled")]
    Cancelled,
    #[error("checksum failed")]
    Checksum(#[from] img_solver::ChecksumError),
    #[error("store i/o failed")]
    Io(#[from] std::io::Error),
}

/// One execution of an op.
#[derive(Clone, Debug)]
pub struct Run {
    pub op: Digest,
    pub name: String,
    pub start: Instant,
    pub end: Instant,
}

pub struct FakeExecutor {
    store: PathBuf,
    context: PathBuf,
    checksums: Option<CacheDb>,
    runs: Mutex<Vec<Run>>,
    names: Mutex<HashMap<Digest, String>>,
    counter: AtomicU64,
    /// The manifest digest each image reference resolves to (salted into its key).
    image_digests: Mutex<HashMap<String, String>>,
}

impl FakeExecutor {
    pub fn new(store: &Path, context: &Path, checksum_db: Option<&Path>) -> Self {
        std::fs::create_dir_all(store).unwrap();
        FakeExecutor {
            store: store.to_path_buf(),
            context: context.to_path_buf(),
            checksums: checksum_db.map(|p| CacheDb::open(p).unwrap()),
            runs: Mutex::new(Vec::new()),
            names: Mutex::new(HashMap::new()),
            counter: AtomicU64::new(0),
            image_digests: Mutex::new(HashMap::new()),
        }
    }

    /// Makes `reference` resolve to `digest` from now on, as a moved tag would.
    pub fn set_image_digest(&self, reference: &str, digest: &str) {
        self.image_digests
            .lock()
            .unwrap()
            .insert(reference.to_owned(), digest.to_owned());
    }

    pub fn runs(&self) -> Vec<Run> {
        self.runs.lock().unwrap().clone()
    }

    /// How many times ops with this description ran.
    pub fn run_count(&self, name: &str) -> usize {
        self.runs().iter().filter(|r| r.name == name).count()
    }

    pub fn run_of(&self, name: &str) -> Run {
        self.runs()
            .into_iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("{name} did not run"))
    }

    fn store_output(&self, op: Digest, dir: Option<PathBuf>) -> Result<FakeOutput, FakeError> {
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        let id = format!("{}-{}-{n}", op.short(), std::process::id());
        std::fs::write(self.store.join(&id), op.to_string())?;
        Ok(FakeOutput { id, dir })
    }
}

/// Selects exactly the named paths (and everything under them), as a COPY of them would read.
fn selection(paths: &[String]) -> impl Fn(&str) -> bool + Sync + '_ {
    move |p: &str| {
        paths.iter().any(|s| {
            let s = s.trim_start_matches('/');
            p == s || p.starts_with(&format!("{s}/"))
        })
    }
}

impl Executor for FakeExecutor {
    type Output = FakeOutput;
    type Error = FakeError;

    fn cache_key_extra(
        &self,
        op: &Op,
        inputs: &Inputs<FakeOutput>,
        _cancel: &img_solver::CancelToken,
    ) -> Result<CacheKeyExtra, FakeError> {
        let options = ChecksumOptions::default();
        let mut extra = CacheKeyExtra::new();
        match op {
            Op::Source(SourceOp::Local(_)) => {
                let sum = checksum_tree(
                    &self.context,
                    &img_solver::SelectAll,
                    &options,
                    self.checksums.as_ref(),
                )?;
                extra = extra.with_salt(sum.digest.to_string());
            }
            Op::Source(SourceOp::Image(image)) => {
                if let Some(digest) = self.image_digests.lock().unwrap().get(&image.reference) {
                    extra = extra.with_salt(format!("manifest:{digest}"));
                }
            }
            Op::File(file) => {
                for action in &file.actions {
                    if let FileAction::Copy(copy) = action {
                        if let Some(dir) = inputs.get(&copy.source).and_then(|o| o.dir.as_ref()) {
                            let filter = selection(&copy.src);
                            let sum =
                                checksum_tree(dir, &filter, &options, self.checksums.as_ref())?;
                            extra = extra.with_tree(copy.source, &sum);
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(extra)
    }

    fn execute(
        &self,
        op: &Op,
        _inputs: &Inputs<FakeOutput>,
        ctx: &ExecContext<'_>,
    ) -> Result<FakeOutput, FakeError> {
        let name = ctx.metadata().description.clone();
        let start = Instant::now();
        let result = match op {
            Op::Exec(exec) => run_script(&exec.args, ctx),
            _ => Ok(()),
        };
        self.runs.lock().unwrap().push(Run {
            op: ctx.op(),
            name: name.clone(),
            start,
            end: Instant::now(),
        });
        self.names.lock().unwrap().insert(ctx.op(), name);
        result?;
        let dir = matches!(op, Op::Source(SourceOp::Local(_))).then(|| self.context.clone());
        self.store_output(ctx.op(), dir)
    }

    fn output_id(&self, output: &FakeOutput) -> String {
        output.id.clone()
    }

    fn load(&self, id: &str) -> Result<Option<FakeOutput>, FakeError> {
        if !self.store.join(id).exists() {
            return Ok(None);
        }
        // The local source stands for the context directory wherever it was loaded.
        let dir = Some(self.context.clone());
        Ok(Some(FakeOutput {
            id: id.to_owned(),
            dir,
        }))
    }
}

/// How many `meet KEY N` processes have started, by KEY, with the condition they wait on.
static MEETINGS: std::sync::Mutex<Option<std::collections::HashMap<String, usize>>> =
    std::sync::Mutex::new(None);
static MET: std::sync::Condvar = std::sync::Condvar::new();

/// `meet KEY N`: waits until N processes of the same KEY have started, so they provably ran
/// at the same time; run one after the other, the first fails after a minute. Nothing here
/// depends on how fast the machine is.
fn meet(key: &str, count: usize) -> Result<(), FakeError> {
    let mut meetings = MEETINGS.lock().unwrap();
    *meetings
        .get_or_insert_with(Default::default)
        .entry(key.to_owned())
        .or_default() += 1;
    MET.notify_all();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while meetings.as_ref().unwrap()[key] < count {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(FakeError::Exit { code: 124 });
        }
        meetings = MET.wait_timeout(meetings, left).unwrap().0;
    }
    Ok(())
}

/// The fake "process": `sleep MS`, `meet KEY N`, `fail CODE`, `panic`, `wait-cancel`;
/// anything else succeeds at once.
fn run_script(args: &[String], ctx: &ExecContext<'_>) -> Result<(), FakeError> {
    match args.first().map(String::as_str) {
        Some("meet") => meet(&args[1], args[2].parse().unwrap()),
        Some("sleep") => {
            let ms: u64 = args[1].parse().unwrap();
            if ctx.cancel_token().wait_timeout(Duration::from_millis(ms)) {
                return Err(FakeError::Cancelled);
            }
            Ok(())
        }
        Some("fail") => {
            std::thread::sleep(Duration::from_millis(50));
            for i in 1..=30 {
                ctx.log(LogStream::Stdout, format!("line {i}\n").as_bytes());
            }
            ctx.log(LogStream::Stderr, b"make: *** [all] Error 2\n");
            Err(FakeError::Exit {
                code: args[1].parse().unwrap(),
            })
        }
        Some("panic") => panic!("executor bug"),
        Some("wait-cancel") => {
            if ctx.cancel_token().wait_timeout(Duration::from_secs(20)) {
                Err(FakeError::Cancelled)
            } else {
                Ok(())
            }
        }
        _ => Ok(()),
    }
}

/// A small graph vocabulary for tests.
pub struct Graph {
    pub builder: DefinitionBuilder,
    line: u32,
}

impl Graph {
    pub fn new() -> Self {
        Graph {
            builder: DefinitionBuilder::new(),
            line: 0,
        }
    }

    fn meta(&mut self, name: &str, stage: &str) -> OpMetadata {
        self.line += 1;
        OpMetadata {
            description: name.to_owned(),
            location: Some(SourceLocation {
                file: "Dockerfile".into(),
                start_line: self.line,
                end_line: self.line,
                text: name.to_owned(),
            }),
            stage: Some(stage.to_owned()),
            ignore_cache: false,
        }
    }

    pub fn image(&mut self, reference: &str) -> OpRef {
        let meta = self.meta(&format!("FROM {reference}"), "base");
        self.builder
            .add(
                SourceOp::Image(ImageSource {
                    reference: reference.into(),
                    platform: Platform::new("linux", "amd64"),
                }),
                meta,
            )
            .unwrap()
    }

    pub fn context(&mut self) -> OpRef {
        let meta = self.meta("load build context", "context");
        self.builder
            .add(SourceOp::Local(LocalSource::new("context")), meta)
            .unwrap()
    }

    /// An exec op whose description is `name` and whose "process" is `script`.
    pub fn run(&mut self, stage: &str, root: OpRef, name: &str, script: &[&str]) -> OpRef {
        let meta = self.meta(name, stage);
        let args = script.iter().map(|s| s.to_string()).collect();
        self.builder
            .add(ExecOp::new(Some(root), args), meta)
            .unwrap()
    }

    /// As [`Graph::run`], with environment variables (how build args reach a `RUN`).
    pub fn run_env(
        &mut self,
        stage: &str,
        root: OpRef,
        name: &str,
        script: &[&str],
        env: &[(&str, &str)],
    ) -> OpRef {
        let meta = self.meta(name, stage);
        let args = script.iter().map(|s| s.to_string()).collect();
        let mut exec = ExecOp::new(Some(root), args);
        for (key, value) in env {
            exec = exec.with_env(key, value);
        }
        self.builder.add(exec, meta).unwrap()
    }

    pub fn copy(&mut self, stage: &str, base: OpRef, from: OpRef, path: &str) -> OpRef {
        let meta = self.meta(&format!("COPY {path}"), stage);
        let op = FileOp::new(Some(base)).with_action(CopyAction::new(
            from,
            vec![path.to_owned()],
            "/app/",
        ));
        self.builder.add(op, meta).unwrap()
    }

    pub fn merge(&mut self, inputs: Vec<OpRef>) -> OpRef {
        let meta = self.meta("merge", "final");
        self.builder.add(MergeOp { inputs }, meta).unwrap()
    }

    pub fn build(self, output: OpRef) -> Definition {
        self.builder.build(output).unwrap()
    }
}

/// A test's state: a temp dir with the cache database, an output store and a context.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("context")).unwrap();
        Workspace { dir }
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("cache.db")
    }

    pub fn context(&self) -> PathBuf {
        self.dir.path().join("context")
    }

    pub fn executor(&self) -> FakeExecutor {
        FakeExecutor::new(
            &self.dir.path().join("store"),
            &self.context(),
            Some(&self.db_path()),
        )
    }

    pub fn solver(&self) -> img_solver::Solver<FakeExecutor> {
        img_solver::Solver::new(self.executor(), CacheDb::open(self.db_path()).unwrap())
    }
}

/// Whether two runs overlap in time.
pub fn overlap(a: &Run, b: &Run) -> bool {
    a.start < b.end && b.start < a.end
}
