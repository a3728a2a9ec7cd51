//! Local sources: which files of the build context are selected, the cache key of a local
//! source (a digest of everything selected), and the private copy of the selection a `RUN`
//! mount shows.

use std::path::Path;
use std::sync::Arc;

use img_llb::{LocalSource, PathPattern, PatternError};

use super::copy::Copier;
use super::plan::{plan_tree, PlannedSource, Selection};
use super::record::{combine, first_difference, planned_reads, source_reads};
use super::root::{rel_str, TreeRoot};
use super::{Worker, WorkerError, WorkerRef};
use img_solver::{CacheKeyExtra, PathFilter};

/// Builds the filter of a local source from its include and exclude patterns (in
/// `.dockerignore` syntax). The solver crate does not know the frontend's matcher, so the cli
/// injects it through this; an `Err` carries a message naming the bad pattern.
pub type ContextFilterFactory =
    Arc<dyn Fn(&[String], &[String]) -> Result<Box<dyn PathFilter + Send>, String> + Send + Sync>;

pub(super) fn default_filter_factory() -> ContextFilterFactory {
    Arc::new(|include, exclude| {
        Ok(Box::new(GlobContextFilter::new(include, exclude)?) as Box<dyn PathFilter + Send>)
    })
}

/// A `.dockerignore`-style filter: an exclude pattern matches a path or any of its parent
/// directories, later patterns override earlier ones, and `!pattern` re-includes. Include
/// patterns (when any) select what matches them and everything below. Patterns use `**` as
/// Docker reads it ([`PathPattern::new`]) and are compiled once.
#[derive(Debug, Clone)]
pub struct GlobContextFilter {
    include: Vec<PathPattern>,
    exclude: Vec<(PathPattern, bool)>,
}

/// Compiles an include or exclude pattern (of a local source or of a copy) as Docker cleans
/// it: a leading `/` or `./` and a trailing `/` say nothing, paths being relative to the root.
pub(crate) fn filter_pattern(pattern: &str) -> Result<PathPattern, PatternError> {
    let clean = pattern.trim_start_matches('/');
    let clean = clean.strip_prefix("./").unwrap_or(clean);
    PathPattern::new(clean.trim_end_matches('/'))
}

fn compile(pattern: &str) -> Result<PathPattern, String> {
    filter_pattern(pattern).map_err(|e| e.to_string())
}

impl GlobContextFilter {
    /// A filter from include and exclude patterns; `Err` names the malformed pattern.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, String> {
        let include = include
            .iter()
            .map(|p| compile(p))
            .collect::<Result<_, _>>()?;
        let exclude = exclude
            .iter()
            .filter(|p| !p.trim().is_empty() && !p.starts_with('#'))
            .map(|p| match p.strip_prefix('!') {
                Some(rest) => compile(rest).map(|pat| (pat, true)),
                None => compile(p).map(|pat| (pat, false)),
            })
            .collect::<Result<_, _>>()?;
        Ok(GlobContextFilter { include, exclude })
    }

    fn excluded(&self, path: &str) -> bool {
        let mut excluded = false;
        for (pattern, negated) in &self.exclude {
            if pattern.matches_or_parent_matches(path) {
                excluded = !negated;
            }
        }
        excluded
    }
}

impl PathFilter for GlobContextFilter {
    fn selects(&self, path: &str, _is_dir: bool) -> bool {
        let included = self.include.is_empty()
            || self
                .include
                .iter()
                .any(|p| p.matches_or_parent_matches(path));
        included && !self.excluded(path)
    }

    fn may_select_under(&self, dir: &str) -> bool {
        let included = self.include.is_empty()
            || self
                .include
                .iter()
                .any(|p| p.matches_or_parent_matches(dir) || p.may_match_below(dir));
        // A re-inclusion below an excluded directory keeps the walk going into it.
        included && (!self.excluded(dir) || self.exclude.iter().any(|(_, negated)| *negated))
    }
}

/// A local source as a cache key names it: its name and patterns.
pub(super) type LocalKey = (String, Vec<String>, Vec<String>);

/// A private copy of a local source's selection, checked against what the source's cache key
/// was computed from. A `RUN` mount shows this copy: binding the directory in place would show
/// the step files edited after the key was computed, and files the selection leaves out.
#[derive(Debug)]
pub(crate) struct StagedLocal {
    dir: tempfile::TempDir,
}

impl StagedLocal {
    /// The copy's directory.
    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Worker {
    /// A local source is keyed by a digest of everything it selects (without ownership: a
    /// `COPY` from the context gives files to root, so the client's uid never matters). What
    /// was read is kept for [`Worker::staged_local`].
    pub(super) fn local_cache_key(
        &self,
        local: &LocalSource,
    ) -> Result<CacheKeyExtra, WorkerError> {
        let Some(dir) = self.options.locals.get(&local.name) else {
            return Err(WorkerError::UnknownLocal {
                name: local.name.clone(),
            });
        };
        let filter = self.local_filter(&local.include_patterns, &local.exclude_patterns)?;
        let tree = TreeRoot::open(dir).map_err(WorkerError::file("opening", dir))?;
        let source = whole_tree(&tree, filter.as_ref())?;
        let cache = self.options.checksum_cache.as_ref();
        let reads = planned_reads(&tree, &[source], false, cache)?;
        let digest = combine(&reads);
        let key = (
            local.name.clone(),
            local.include_patterns.clone(),
            local.exclude_patterns.clone(),
        );
        let reads = Arc::new(reads);
        let previous = self
            .local_reads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), Arc::clone(&reads));
        if previous.is_some_and(|p| p != reads) {
            // A worker solving again after the context changed: the old copy is stale.
            self.staged_locals
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
        }
        Ok(CacheKeyExtra::new().with_salt(format!("local:{digest}")))
    }

    /// The private copy of local source `source`'s selection, made once per build and checked
    /// against the source's cache key.
    pub(super) fn staged_local(&self, source: &WorkerRef) -> Result<Arc<StagedLocal>, WorkerError> {
        let WorkerRef::Local {
            name,
            path,
            include_patterns,
            exclude_patterns,
        } = source
        else {
            return Err(WorkerError::MissingInput {
                what: "local source",
            });
        };
        let key = (
            name.clone(),
            include_patterns.clone(),
            exclude_patterns.clone(),
        );
        // Held while copying: two steps mounting the context share one copy.
        let mut staged = self.staged_locals.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(copy) = staged.get(&key) {
            return Ok(copy.clone());
        }
        let expected = self
            .local_reads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned()
            .ok_or(WorkerError::MissingInput {
                what: "record of what the local source's cache key read",
            })?;
        let filter = self.local_filter(include_patterns, exclude_patterns)?;
        let tree = TreeRoot::open(path).map_err(WorkerError::file("opening", path))?;
        let source = whole_tree(&tree, filter.as_ref())?;
        let scratch = self.scratch();
        let dir = tempfile::Builder::new()
            .prefix("local-")
            .tempdir_in(&scratch)
            .map_err(WorkerError::file("creating a directory in", &scratch))?;
        let contents = Copier::plain().copy(&tree, &source.entries, dir.path())?;
        let mut reads = Vec::new();
        source_reads(&source, &contents, false, &mut reads);
        if let Some(changed) = first_difference(&expected, &reads) {
            return Err(WorkerError::ContextChanged {
                path: rel_str(&changed),
            });
        }
        let copy = Arc::new(StagedLocal { dir });
        staged.insert(key, copy.clone());
        Ok(copy)
    }
}

/// Everything of `tree` that `filter` selects, as one planned source.
fn whole_tree(
    tree: &TreeRoot,
    filter: &(dyn PathFilter + Send),
) -> Result<PlannedSource, WorkerError> {
    let selection = Selection {
        filter: Some(filter),
        ..Selection::all()
    };
    Ok(PlannedSource {
        name: Default::default(),
        links: Vec::new(),
        entries: plan_tree(tree, Path::new(""), &selection)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(include: &[&str], exclude: &[&str]) -> GlobContextFilter {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        GlobContextFilter::new(&s(include), &s(exclude)).unwrap()
    }

    #[test]
    fn dockerignore_like_selection() {
        let f = filter(&[], &["node_modules", "*.log", "!keep.log", "docs/**/*.md"]);
        let cases = [
            ("src/main.rs", true),
            ("node_modules", false),
            ("node_modules/x/index.js", false),
            ("debug.log", false),
            ("keep.log", true),
            ("sub/debug.log", true),
            ("docs/a/b/c.md", false),
            ("docs/readme.txt", true),
        ];
        for (path, want) in cases {
            assert_eq!(f.selects(path, false), want, "{path}");
        }
    }

    #[test]
    fn patterns_read_go_classes_and_double_stars() {
        let f = filter(&[], &["[^k]*.log", "**/tmp", "!**/tmp/keep"]);
        let cases = [
            ("debug.log", false),
            ("keep.log", true),
            ("a/b/tmp/x", false),
            ("a/b/tmp/keep", true),
        ];
        for (path, want) in cases {
            assert_eq!(f.selects(path, false), want, "{path}");
        }
        let err = GlobContextFilter::new(&[], &["ok".into(), "bad[".into()]).unwrap_err();
        assert!(err.contains("bad["), "{err}");
    }

    #[test]
    fn include_patterns_select_below_and_walk_towards() {
        let f = filter(&["app/src"], &[]);
        assert!(f.selects("app/src/main.rs", false));
        assert!(!f.selects("app/other", false));
        assert!(f.may_select_under("app"));
        assert!(!f.may_select_under("lib"));
    }
}
