//! The solver: runs every op as soon as its inputs are ready, each on a thread of its own.
//!
//! Design: the calling thread is a dispatcher. It builds a petgraph graph of the definition
//! (one node per distinct op digest, so work shared by several stages runs once), starts a
//! scoped thread for every op whose inputs are done, and waits for completions on a channel.
//! Ops are blocking work (processes, downloads), so they never run on rayon's pool, whose few
//! threads would serialize independent `RUN`s on a small machine; rayon is left to CPU work
//! such as hashing inside an op. `jobs` bounds concurrently executing exec ops with a
//! semaphore taken after the cache lookup, so cache hits never wait for a slot.
//!
//! The first failure cancels the shared token: running ops are asked to stop, no new op
//! starts, and the dispatcher returns that failure once every thread has returned. Results are
//! recorded in the cache only after an op has succeeded.

use std::collections::{BTreeSet, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::Scope;
use std::time::{Duration, Instant, SystemTime};

use img_llb::{Definition, Digest, Op, OpMetadata};
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::Direction;

use crate::error::{ExecutorError, OpLabel};
use crate::executor::{ExecContext, Inputs};
use crate::explain::{self, InputFacts, StepInputs};
use crate::key::cache_key;
use crate::progress::{ProgressEvent, ProgressSink};
use crate::{CacheDb, CacheKey, CacheKeyExtra, CancelToken, Executor, SolveError};

mod remote;

/// How often the dispatcher checks the caller's cancel token while ops run.
const CANCEL_POLL: Duration = Duration::from_millis(25);

/// Per-solve settings: `--jobs`, `--no-cache`, `--no-cache-filter`, and interruption.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SolveOptions {
    /// At most this many exec ops run at once; `None` is unbounded (BuildKit's default).
    pub jobs: Option<usize>,
    /// Ignore cached results for every op (they are still recorded).
    pub no_cache: bool,
    /// Ignore cached results for ops of these stages and everything built on them.
    pub no_cache_filter: BTreeSet<String>,
    /// Cancelling it stops the build (e.g. on Ctrl-C).
    pub cancel: CancelToken,
    /// How many lines of a failed op's output the error keeps.
    pub log_tail_lines: usize,
    /// Separates the step histories of unrelated builds sharing one cache: a miss is
    /// explained by comparing the step with the last one recorded at the same Dockerfile
    /// location within this scope (the cli uses the Dockerfile's absolute path).
    pub history_scope: String,
}

impl Default for SolveOptions {
    fn default() -> Self {
        SolveOptions {
            jobs: None,
            no_cache: false,
            no_cache_filter: BTreeSet::new(),
            cancel: CancelToken::new(),
            log_tail_lines: 20,
            history_scope: String::new(),
        }
    }
}

impl SolveOptions {
    /// Bounds concurrent exec ops (`--jobs N`); 0 is treated as 1.
    pub fn with_jobs(mut self, jobs: usize) -> Self {
        self.jobs = Some(jobs.max(1));
        self
    }

    /// Sets `--no-cache`.
    pub fn with_no_cache(mut self, no_cache: bool) -> Self {
        self.no_cache = no_cache;
        self
    }

    /// Adds a stage to `--no-cache-filter`.
    pub fn with_no_cache_stage(mut self, stage: impl Into<String>) -> Self {
        self.no_cache_filter.insert(stage.into());
        self
    }

    /// Sets the scope of the step history that explains misses (see
    /// [`SolveOptions::history_scope`]).
    pub fn with_history_scope(mut self, scope: impl Into<String>) -> Self {
        self.history_scope = scope.into();
        self
    }

    /// Uses `cancel` to interrupt the build.
    pub fn with_cancel(mut self, cancel: CancelToken) -> Self {
        self.cancel = cancel;
        self
    }
}

/// A successful solve.
#[derive(Debug, Clone)]
pub struct Solved<O> {
    /// The output of the definition's output op.
    pub output: O,
    /// Its cache key.
    pub cache_key: CacheKey,
    /// Ops that were executed, in completion order.
    pub executed: Vec<Digest>,
    /// Ops whose result came from the cache, in completion order.
    pub cached: Vec<Digest>,
    /// The output of every op of the definition, the output op's included: an exporter reads
    /// the results of intermediate steps (each layer of an image) from here.
    pub outputs: HashMap<Digest, O>,
    /// The cache key of every op of the definition, for exporting the cache elsewhere.
    pub keys: HashMap<Digest, CacheKey>,
}

/// Runs definitions with an [`Executor`] and a persistent [`CacheDb`].
#[derive(Debug)]
pub struct Solver<E> {
    executor: E,
    cache: CacheDb,
}

struct OpDone<O> {
    output: O,
    key: CacheKey,
    /// The op ignored the cache, so ops built on it must too: their keys are unchanged but the
    /// result they were recorded on top of may differ from the fresh one.
    forced: bool,
    from_cache: bool,
    /// Why the op missed the cache, when known: steps built on it name it.
    cause: Option<Arc<str>>,
}

enum Outcome<O> {
    Done(OpDone<O>),
    Failed(SolveError),
    Cancelled,
}

/// What a started op needs from the dispatcher.
struct Ready<'d, O> {
    digest: Digest,
    op: &'d Op,
    metadata: &'d OpMetadata,
    inputs: Inputs<O>,
    input_keys: HashMap<Digest, CacheKey>,
    /// Per input reference (in [`Op::inputs`] order): its description and why it missed.
    input_labels: Vec<(&'d str, Option<Arc<str>>)>,
    inherited_force: bool,
}

/// Shared by the threads of one solve.
struct Shared<'d> {
    options: &'d SolveOptions,
    progress: &'d dyn ProgressSink,
    cancel: CancelToken,
    exec_slots: JobSlots,
}

impl<E: Executor> Solver<E> {
    /// A solver using `executor`, with results cached in `cache`.
    pub fn new(executor: E, cache: CacheDb) -> Self {
        Solver { executor, cache }
    }

    /// The executor.
    pub fn executor(&self) -> &E {
        &self.executor
    }

    /// The cache database.
    pub fn cache(&self) -> &CacheDb {
        &self.cache
    }

    /// Runs `definition` and returns its output op's result. Blocks until every op it started
    /// has returned, also on failure or cancellation.
    pub fn solve(
        &self,
        definition: &Definition,
        options: &SolveOptions,
        progress: &dyn ProgressSink,
    ) -> Result<Solved<E::Output>, SolveError> {
        let graph = build_graph(definition);
        let mut waiting_on: Vec<usize> = graph
            .node_indices()
            .map(|n| graph.neighbors_directed(n, Direction::Incoming).count())
            .collect();
        let shared = Shared {
            options,
            progress,
            // A private token: a failure cancels this solve without touching the caller's.
            cancel: CancelToken::new(),
            exec_slots: JobSlots::new(options.jobs),
        };
        let mut done: HashMap<Digest, OpDone<E::Output>> = HashMap::new();
        let mut executed = Vec::new();
        let mut cached = Vec::new();
        let mut first_error: Option<SolveError> = None;

        std::thread::scope(|scope| {
            let (tx, rx) = mpsc::channel::<(NodeIndex, Outcome<E::Output>)>();
            let mut running = 0usize;
            let mut ready: Vec<NodeIndex> = graph
                .node_indices()
                .filter(|n| waiting_on[n.index()] == 0)
                .collect();
            loop {
                if options.cancel.is_cancelled() {
                    shared.cancel.cancel();
                }
                if !shared.cancel.is_cancelled() {
                    for node in ready.drain(..) {
                        let job = self.prepare(definition, graph[node], &done);
                        let tx = tx.clone();
                        let shared = &shared;
                        start(scope, move || {
                            let outcome = catch_unwind(AssertUnwindSafe(|| self.run(&job, shared)))
                                .unwrap_or_else(|_| {
                                    Outcome::Failed(SolveError::Panicked {
                                        label: label(job.digest, job.metadata),
                                    })
                                });
                            // The dispatcher outlives every op thread of the scope.
                            let _ = tx.send((node, outcome));
                        });
                        running += 1;
                    }
                }
                if running == 0 {
                    break;
                }
                let (node, outcome) = match rx.recv_timeout(CANCEL_POLL) {
                    Ok(message) => message,
                    Err(RecvTimeoutError::Timeout) => continue,
                    // Unreachable while `tx` is alive in this scope.
                    Err(RecvTimeoutError::Disconnected) => break,
                };
                running -= 1;
                match outcome {
                    Outcome::Done(result) => {
                        let digest = graph[node];
                        if result.from_cache {
                            cached.push(digest);
                        } else {
                            executed.push(digest);
                        }
                        done.insert(digest, result);
                        for next in graph.neighbors_directed(node, Direction::Outgoing) {
                            waiting_on[next.index()] -= 1;
                            if waiting_on[next.index()] == 0 {
                                ready.push(next);
                            }
                        }
                    }
                    Outcome::Failed(error) => {
                        if first_error.is_none() {
                            first_error = Some(error);
                        }
                        shared.cancel.cancel();
                    }
                    Outcome::Cancelled => {}
                }
            }
        });

        if let Some(error) = first_error {
            return Err(error);
        }
        let output_digest = definition.output().digest;
        let Some(result) = done.get(&output_digest) else {
            return Err(SolveError::Cancelled);
        };
        let (output, cache_key) = (result.output.clone(), result.key);
        Ok(Solved {
            output,
            cache_key,
            executed,
            cached,
            keys: done.iter().map(|(d, r)| (*d, r.key)).collect(),
            outputs: done.into_iter().map(|(d, r)| (d, r.output)).collect(),
        })
    }

    fn prepare<'d>(
        &self,
        definition: &'d Definition,
        digest: Digest,
        done: &HashMap<Digest, OpDone<E::Output>>,
    ) -> Ready<'d, E::Output> {
        static NO_METADATA: OpMetadata = OpMetadata {
            description: String::new(),
            location: None,
            stage: None,
            ignore_cache: false,
        };
        // Graph nodes come from the definition, and an op starts only once its inputs are done.
        let op = definition
            .op(&digest)
            .expect("graph nodes are ops of the definition");
        let mut entries = Vec::new();
        let mut input_keys = HashMap::new();
        let mut input_labels = Vec::new();
        let mut inherited_force = false;
        for input in op.inputs() {
            let result = &done[&input.digest];
            entries.push((input, result.output.clone()));
            input_keys.insert(input.digest, result.key);
            let label = definition
                .metadata(&input.digest)
                .map_or("", |m| m.description.as_str());
            input_labels.push((label, result.cause.clone()));
            inherited_force |= result.forced;
        }
        Ready {
            digest,
            op,
            metadata: definition.metadata(&digest).unwrap_or(&NO_METADATA),
            inputs: Inputs::new(entries),
            input_keys,
            input_labels,
            inherited_force,
        }
    }

    /// Everything one op goes through: key, lookup, execution, recording.
    fn run(&self, job: &Ready<'_, E::Output>, shared: &Shared<'_>) -> Outcome<E::Output> {
        let options = shared.options;
        let op_label = || label(job.digest, job.metadata);
        let extra = match self
            .executor
            .cache_key_extra(job.op, &job.inputs, &shared.cancel)
        {
            Ok(extra) => extra,
            // Failing because the solve is being cancelled is not a failure of its own.
            Err(_) if shared.cancel.is_cancelled() => return Outcome::Cancelled,
            Err(err) => {
                return Outcome::Failed(SolveError::CacheKey {
                    label: op_label(),
                    source: boxed(err),
                })
            }
        };
        let key = cache_key(job.op, &job.input_keys, &extra);
        let forced = job.inherited_force
            || options.no_cache
            || job.metadata.ignore_cache
            || job
                .metadata
                .stage
                .as_ref()
                .is_some_and(|s| options.no_cache_filter.contains(s));
        let cache_err = |source| {
            Outcome::Failed(SolveError::Cache {
                label: op_label(),
                source,
            })
        };

        if !forced {
            match self.load_cached(job, &key, shared) {
                Ok(Some(output)) => {
                    return Outcome::Done(OpDone {
                        output,
                        key,
                        forced,
                        from_cache: true,
                        cause: None,
                    })
                }
                Ok(None) => {}
                Err(outcome) => return outcome,
            }
        }
        // A miss: compare with the last miss at this location, then forget the listings
        // (they can be large) before the op runs.
        let changes = match self.explain_miss(job, &key, extra, forced, options) {
            Ok(changes) => changes,
            Err(err) => return cache_err(err),
        };
        let cause: Option<Arc<str>> = changes
            .as_deref()
            .and_then(explain::root_cause)
            .map(Arc::from);

        let _slot = if matches!(job.op, Op::Exec(_)) {
            match shared.exec_slots.acquire(&shared.cancel) {
                Some(slot) => Some(slot),
                None => return Outcome::Cancelled,
            }
        } else {
            None
        };
        if shared.cancel.is_cancelled() {
            return Outcome::Cancelled;
        }
        let started = Instant::now();
        shared.progress.emit(ProgressEvent::Started {
            op: job.digest,
            name: job.metadata.description.clone(),
            location: job.metadata.location.clone(),
            at: SystemTime::now(),
        });
        if let Some(changes) = changes {
            shared.progress.emit(ProgressEvent::CacheMiss {
                op: job.digest,
                summary: explain::summary(&changes),
                changes,
                at: SystemTime::now(),
            });
        }
        let ctx = ExecContext::new(
            job.digest,
            key,
            job.metadata,
            &shared.cancel,
            shared.progress,
            options.log_tail_lines,
        );
        let output = match self.executor.execute(job.op, &job.inputs, &ctx) {
            Ok(output) => output,
            Err(_) if shared.cancel.is_cancelled() => {
                shared.progress.emit(ProgressEvent::Cancelled {
                    op: job.digest,
                    at: SystemTime::now(),
                });
                return Outcome::Cancelled;
            }
            Err(err) => {
                let source = boxed(err);
                shared.progress.emit(ProgressEvent::Failed {
                    op: job.digest,
                    error: crate::error::error_chain(source.as_ref()),
                    at: SystemTime::now(),
                });
                return Outcome::Failed(SolveError::OpFailed {
                    label: op_label(),
                    log_tail: ctx.take_tail(),
                    source,
                });
            }
        };
        let recorded = self.cache.record(
            &key,
            &self.executor.output_id(&output),
            &job.digest,
            &job.metadata.description,
            self.executor.output_size(&output),
        );
        if let Err(err) = recorded {
            return cache_err(err);
        }
        shared.progress.emit(ProgressEvent::Finished {
            op: job.digest,
            at: SystemTime::now(),
            duration: started.elapsed(),
        });
        Outcome::Done(OpDone {
            output,
            key,
            forced,
            from_cache: false,
            cause,
        })
    }

    /// Records what the key of a missed op was made of, under its Dockerfile location, and
    /// returns what changed since the last record there (none without a record, or when the
    /// cache was ignored on purpose).
    fn explain_miss(
        &self,
        job: &Ready<'_, E::Output>,
        key: &CacheKey,
        extra: CacheKeyExtra,
        forced: bool,
        options: &SolveOptions,
    ) -> Result<Option<Vec<crate::CacheChange>>, crate::CacheError> {
        let Some(step) = step_id(&options.history_scope, job.op, job.metadata) else {
            return Ok(None);
        };
        let facts: Vec<InputFacts<'_>> = job
            .op
            .inputs()
            .into_iter()
            .zip(&job.input_labels)
            .map(|(input, (label, cause))| InputFacts {
                input,
                label,
                key: job.input_keys[&input.digest],
                cause: cause.clone(),
            })
            .collect();
        let instruction = job
            .metadata
            .location
            .as_ref()
            .map_or(job.metadata.description.as_str(), |l| l.text.as_str());
        let account = StepInputs::of(job.op, instruction, *key, &facts, &extra);
        let listings: Vec<_> = facts
            .iter()
            .map(|f| extra.listings.get(&f.input).and_then(|l| l.path_digests()))
            .collect();
        drop(extra);
        let old = self.cache.step_history(&step)?;
        let changes = match (&old, forced) {
            (Some((was, was_listings)), false) => {
                let causes: Vec<_> = facts.iter().map(|f| f.cause.clone()).collect();
                Some(explain::compare(
                    was,
                    was_listings,
                    &account,
                    &listings,
                    &causes,
                ))
            }
            _ => None,
        };
        // A content checksum that came from a record has no listing; the old one still
        // describes the same content when the checksum is unchanged.
        let mut stored = listings;
        if let Some((was, mut was_listings)) = old {
            for (i, listing) in stored.iter_mut().enumerate() {
                let same = match (was.inputs.get(i), account.inputs.get(i)) {
                    (Some(a), Some(b)) => a.content.is_some() && a.content == b.content,
                    _ => false,
                };
                if listing.is_none() && same {
                    *listing = was_listings.get_mut(i).and_then(Option::take);
                }
            }
        }
        self.cache.record_step(&step, &account, &stored)?;
        Ok(changes)
    }

    /// The cached output for `key`, or `None` when there is none or it was pruned.
    fn load_cached(
        &self,
        job: &Ready<'_, E::Output>,
        key: &CacheKey,
        shared: &Shared<'_>,
    ) -> Result<Option<E::Output>, Outcome<E::Output>> {
        let cache_err = |source| {
            Outcome::Failed(SolveError::Cache {
                label: label(job.digest, job.metadata),
                source,
            })
        };
        let Some(record) = self.cache.lookup(key).map_err(cache_err)? else {
            return self.load_remote(job, key, shared);
        };
        match self.executor.load(&record.output_id) {
            Ok(Some(output)) => {
                self.cache.touch(key).map_err(cache_err)?;
                shared.progress.emit(ProgressEvent::Cached {
                    op: job.digest,
                    name: job.metadata.description.clone(),
                    location: job.metadata.location.clone(),
                    at: SystemTime::now(),
                });
                Ok(Some(output))
            }
            Ok(None) => {
                self.cache.remove(key).map_err(cache_err)?;
                Ok(None)
            }
            Err(err) => Err(Outcome::Failed(SolveError::Load {
                label: label(job.digest, job.metadata),
                output_id: record.output_id,
                source: boxed(err),
            })),
        }
    }
}

/// Where the step history keeps an op: the scope, the Dockerfile location (or, without one,
/// the description) and the kind of op. `None` for an op with neither.
fn step_id(scope: &str, op: &Op, metadata: &OpMetadata) -> Option<String> {
    let place = match &metadata.location {
        Some(location) => format!("{}:{}", location.file, location.start_line),
        None if !metadata.description.is_empty() => format!("#{}", metadata.description),
        None => return None,
    };
    Some(format!("{scope}\n{place}\n{}", op.kind_name()))
}

/// One node per op and one edge per (input op, op) pair, however often the input is used.
fn build_graph(definition: &Definition) -> DiGraph<Digest, ()> {
    let mut graph = DiGraph::with_capacity(definition.len(), definition.len());
    let mut index = HashMap::with_capacity(definition.len());
    for (digest, _) in definition.ops() {
        index.insert(*digest, graph.add_node(*digest));
    }
    for (digest, op) in definition.ops() {
        let inputs: BTreeSet<Digest> = op.inputs().iter().map(|r| r.digest).collect();
        for input in inputs {
            // A built Definition contains every input of every op.
            if let (Some(&from), Some(&to)) = (index.get(&input), index.get(digest)) {
                graph.add_edge(from, to, ());
            }
        }
    }
    graph
}

fn start<'scope, 'env>(scope: &'scope Scope<'scope, 'env>, f: impl FnOnce() + Send + 'scope) {
    scope.spawn(f);
}

fn label(op: Digest, metadata: &OpMetadata) -> Box<OpLabel> {
    Box::new(OpLabel {
        op,
        description: metadata.description.clone(),
        location: metadata.location.clone(),
    })
}

fn boxed<E: std::error::Error + Send + Sync + 'static>(err: E) -> ExecutorError {
    Box::new(err)
}

/// A counting semaphore for exec ops; unbounded when `limit` is `None`.
struct JobSlots {
    limit: Option<usize>,
    used: Mutex<usize>,
    freed: Condvar,
}

struct JobSlot<'a>(&'a JobSlots);

impl JobSlots {
    fn new(limit: Option<usize>) -> Self {
        JobSlots {
            limit,
            used: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    /// Waits for a free slot; `None` if the solve is cancelled meanwhile.
    fn acquire(&self, cancel: &CancelToken) -> Option<JobSlot<'_>> {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        while self.limit.is_some_and(|limit| *used >= limit) {
            if cancel.is_cancelled() {
                return None;
            }
            used = self
                .freed
                .wait_timeout(used, CANCEL_POLL)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *used += 1;
        Some(JobSlot(self))
    }
}

impl Drop for JobSlot<'_> {
    fn drop(&mut self) {
        let mut used = self.0.used.lock().unwrap_or_else(|e| e.into_inner());
        *used -= 1;
        self.0.freed.notify_one();
    }
}
