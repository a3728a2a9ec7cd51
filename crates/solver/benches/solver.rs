//! Solver benchmarks: the scheduler's cache lookup of a fully cached 10-stage graph with a fake
//! executor (outputs are ids in memory, nothing is built or mounted: what a no-op rebuild costs
//! in the solver alone, not a whole `img build`), and cache-key checksums of a 20,000-file
//! context, cold (every file read) and warm (path/size/mtime/inode cache).

use std::collections::HashSet;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use img_llb::{
    CopyAction, Definition, DefinitionBuilder, ExecOp, FileOp, ImageSource, LocalSource, MergeOp,
    Op, OpMetadata, Platform, SourceOp,
};
use img_solver::{
    checksum_tree, CacheDb, CacheKeyExtra, ChecksumOptions, ExecContext, Executor, Inputs,
    NoProgress, SelectAll, SolveOptions, Solver,
};

/// Outputs are ids kept in memory; the context source is keyed by a real context checksum.
struct BenchExecutor {
    context: PathBuf,
    checksums: CacheDb,
    stored: Mutex<HashSet<String>>,
}

#[derive(Debug, thiserror::Error)]
#[error("bench executor failed")]
struct BenchError(#[from] img_solver::ChecksumError);

impl Executor for BenchExecutor {
    type Output = String;
    type Error = BenchError;

    fn cache_key_extra(
        &self,
        op: &Op,
        _inputs: &Inputs<String>,
        _cancel: &img_solver::CancelToken,
    ) -> Result<CacheKeyExtra, BenchError> {
        if let Op::Source(SourceOp::Local(_)) = op {
            let sum = checksum_tree(
                &self.context,
                &SelectAll,
                &ChecksumOptions::default(),
                Some(&self.checksums),
            )?;
            return Ok(CacheKeyExtra::new().with_salt(sum.digest.to_string()));
        }
        Ok(CacheKeyExtra::new())
    }

    fn execute(
        &self,
        _op: &Op,
        _inputs: &Inputs<String>,
        ctx: &ExecContext<'_>,
    ) -> Result<String, BenchError> {
        let id = ctx.op().to_string();
        self.stored.lock().unwrap().insert(id.clone());
        Ok(id)
    }

    fn output_id(&self, output: &String) -> String {
        output.clone()
    }

    fn load(&self, id: &str) -> Result<Option<String>, BenchError> {
        Ok(self.stored.lock().unwrap().get(id).cloned())
    }
}

/// Ten stages of FROM, COPY from the context, three RUNs; the last stage copies from all.
fn ten_stages() -> Definition {
    let mut g = DefinitionBuilder::new();
    let meta = |d: String| OpMetadata::described(d);
    let context = g
        .add(
            SourceOp::Local(LocalSource::new("context")),
            meta("context".into()),
        )
        .unwrap();
    let mut finals = Vec::new();
    for stage in 0..10 {
        let base = g
            .add(
                SourceOp::Image(ImageSource {
                    reference: format!("docker.io/library/img{stage}:latest"),
                    platform: Platform::new("linux", "amd64"),
                }),
                meta(format!("[s{stage} 1/5] FROM")),
            )
            .unwrap();
        let mut cur = g
            .add(
                FileOp::new(Some(base)).with_action(CopyAction::new(
                    context,
                    vec![format!("d{stage}")],
                    "/src/",
                )),
                meta(format!("[s{stage} 2/5] COPY")),
            )
            .unwrap();
        for step in 0..3 {
            cur = g
                .add(
                    ExecOp::new(
                        Some(cur),
                        vec![
                            "/bin/sh".into(),
                            "-c".into(),
                            format!("make {stage}.{step}"),
                        ],
                    ),
                    meta(format!("[s{stage} {}/5] RUN", step + 3)),
                )
                .unwrap();
        }
        finals.push(cur);
    }
    let out = g
        .add(MergeOp { inputs: finals }, meta("merge".into()))
        .unwrap();
    g.build(out).unwrap()
}

fn make_context(root: &Path, dirs: usize, files_per_dir: usize, size: usize) {
    let block: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
    for d in 0..dirs {
        let dir = root.join(format!("d{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..files_per_dir {
            let mut content = block.clone();
            content[..8].copy_from_slice(&((d * files_per_dir + f) as u64).to_le_bytes());
            std::fs::write(dir.join(format!("f{f}.txt")), content).unwrap();
        }
    }
    // Let the files leave the checksum cache's racy window before the warm runs.
    std::thread::sleep(Duration::from_millis(1100));
}

fn cached_graph_lookup(c: &mut Criterion) {
    let state = tempfile::tempdir().unwrap();
    let context = state.path().join("context");
    make_context(&context, 10, 20, 1024);
    let db_path = state.path().join("cache.db");
    let executor = || BenchExecutor {
        context: context.clone(),
        checksums: CacheDb::open(&db_path).unwrap(),
        stored: Mutex::new(HashSet::new()),
    };
    let def = ten_stages();
    let solver = Solver::new(executor(), CacheDb::open(&db_path).unwrap());
    let first = solver
        .solve(&def, &SolveOptions::default(), &NoProgress)
        .unwrap();
    assert_eq!(first.executed.len(), def.len());
    // Warm the checksum cache past the racy window, as a second build would.
    solver
        .solve(&def, &SolveOptions::default(), &NoProgress)
        .unwrap();

    c.bench_function("cache_lookup_10_stages_51_ops_fake_executor", |b| {
        b.iter(|| {
            let solved = solver
                .solve(&def, &SolveOptions::default(), &NoProgress)
                .unwrap();
            assert!(solved.executed.is_empty());
            black_box(solved.output)
        })
    });
    c.bench_function("cache_lookup_10_stages_51_ops_fake_executor_db_open", |b| {
        b.iter(|| {
            let fresh = Solver::new(
                BenchExecutor {
                    context: context.clone(),
                    checksums: CacheDb::open(&db_path).unwrap(),
                    stored: Mutex::new(solver.executor().stored.lock().unwrap().clone()),
                },
                CacheDb::open(&db_path).unwrap(),
            );
            let solved = fresh
                .solve(&def, &SolveOptions::default(), &NoProgress)
                .unwrap();
            assert!(solved.executed.is_empty());
            black_box(solved.output)
        })
    });
}

fn context_checksums(c: &mut Criterion) {
    let state = tempfile::tempdir().unwrap();
    let context = state.path().join("context");
    make_context(&context, 200, 100, 10 * 1024);
    let db = CacheDb::open(state.path().join("cache.db")).unwrap();
    let options = ChecksumOptions::default();
    let cold = checksum_tree(&context, &SelectAll, &options, Some(&db)).unwrap();
    assert_eq!(cold.files_read, 20_000);
    let warm = checksum_tree(&context, &SelectAll, &options, Some(&db)).unwrap();
    assert_eq!(warm.files_read, 0);
    assert_eq!(warm.digest, cold.digest);

    let mut group = c.benchmark_group("context_checksum_20000_files_10k");
    group.sample_size(10);
    group.bench_function("cold", |b| {
        b.iter(|| black_box(checksum_tree(&context, &SelectAll, &options, None).unwrap()))
    });
    group.bench_function("warm", |b| {
        b.iter(|| {
            let sum = checksum_tree(&context, &SelectAll, &options, Some(&db)).unwrap();
            assert_eq!(sum.files_read, 0);
            black_box(sum)
        })
    });
    group.finish();
}

criterion_group!(benches, cached_graph_lookup, context_checksums);
criterion_main!(benches);
