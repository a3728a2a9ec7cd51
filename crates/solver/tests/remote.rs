//! The shared-cache seam: a local miss asks the executor's `load_remote`, a hit runs nothing and
//! is recorded locally, and `Solved::keys` gives every op's key for exporting such a cache.

mod common;

use std::collections::HashMap;
use std::sync::Mutex;

use common::{FakeError, FakeExecutor, FakeOutput, Graph, Workspace};
use img_llb::Op;
use img_solver::{
    CacheDb, CacheKey, CacheKeyExtra, ExecContext, Executor, Inputs, NoProgress, SolveOptions,
    Solver,
};

/// The fake executor with a "remote" cache: results by key, and the keys it was asked for.
struct WithRemote {
    inner: FakeExecutor,
    remote: HashMap<CacheKey, FakeOutput>,
    asked: Mutex<Vec<CacheKey>>,
}

impl Executor for WithRemote {
    type Output = FakeOutput;
    type Error = FakeError;

    fn cache_key_extra(
        &self,
        op: &Op,
        inputs: &Inputs<FakeOutput>,
        cancel: &img_solver::CancelToken,
    ) -> Result<CacheKeyExtra, FakeError> {
        self.inner.cache_key_extra(op, inputs, cancel)
    }

    fn execute(
        &self,
        op: &Op,
        inputs: &Inputs<FakeOutput>,
        ctx: &ExecContext<'_>,
    ) -> Result<FakeOutput, FakeError> {
        self.inner.execute(op, inputs, ctx)
    }

    fn output_id(&self, output: &FakeOutput) -> String {
        self.inner.output_id(output)
    }

    fn load(&self, id: &str) -> Result<Option<FakeOutput>, FakeError> {
        self.inner.load(id)
    }

    fn load_remote(&self, key: &CacheKey) -> Result<Option<FakeOutput>, FakeError> {
        self.asked.lock().unwrap().push(*key);
        Ok(self.remote.get(key).cloned())
    }
}

#[test]
fn a_fresh_machine_takes_every_result_from_the_remote_cache_and_records_it() {
    // Machine A builds and "exports" each op's result by key.
    let a = Workspace::new();
    std::fs::write(a.context().join("a.txt"), "alpha").unwrap();
    let mut g = Graph::new();
    let base = g.image("alpine");
    let ctx = g.context();
    let copy = g.copy("s", base, ctx, "a.txt");
    let run = g.run("s", copy, "RUN make", &["make"]);
    let def = g.build(run);
    let built = a
        .solver()
        .solve(&def, &SolveOptions::default(), &NoProgress)
        .unwrap();
    assert_eq!(built.keys.len(), def.len());
    assert_eq!(built.keys[&run.digest], built.cache_key);
    let remote: HashMap<CacheKey, FakeOutput> = built
        .keys
        .iter()
        .map(|(op, key)| (*key, built.outputs[op].clone()))
        .collect();

    // Machine B: same sources (its own context directory), empty database, the same store
    // directory standing for blobs fetched from the remote.
    let b = Workspace::new();
    std::fs::write(b.context().join("a.txt"), "alpha").unwrap();
    let executor = WithRemote {
        inner: FakeExecutor::new(
            &a.dir.path().join("store"),
            &b.context(),
            Some(&b.db_path()),
        ),
        remote,
        asked: Mutex::new(Vec::new()),
    };
    let solver = Solver::new(executor, CacheDb::open(b.db_path()).unwrap());
    let solved = solver
        .solve(&def, &SolveOptions::default(), &NoProgress)
        .unwrap();
    assert!(solved.executed.is_empty(), "ran {:?}", solved.executed);
    assert_eq!(solved.cache_key, built.cache_key);
    assert_eq!(solved.output.id, built.output.id);
    assert!(solver.executor().inner.runs().is_empty());

    // The hits were recorded: the next solve on B hits locally without asking the remote.
    let asked_before = solver.executor().asked.lock().unwrap().len();
    let again = solver
        .solve(&def, &SolveOptions::default(), &NoProgress)
        .unwrap();
    assert!(again.executed.is_empty());
    assert_eq!(solver.executor().asked.lock().unwrap().len(), asked_before);
}

#[test]
fn a_remote_miss_runs_the_step() {
    let ws = Workspace::new();
    let mut g = Graph::new();
    let base = g.image("alpine");
    let run = g.run("s", base, "RUN make", &["make"]);
    let def = g.build(run);
    let executor = WithRemote {
        inner: ws.executor(),
        remote: HashMap::new(),
        asked: Mutex::new(Vec::new()),
    };
    let solver = Solver::new(executor, CacheDb::open(ws.db_path()).unwrap());
    let solved = solver
        .solve(&def, &SolveOptions::default(), &NoProgress)
        .unwrap();
    assert_eq!(solved.executed.len(), def.len());
    assert_eq!(solver.executor().asked.lock().unwrap().len(), def.len());
}
