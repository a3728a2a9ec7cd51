//! Local sources: which files of the build context are selected, and the cache key of a local
//! source (a checksum of the selection).

use std::sync::Arc;

use glob::{MatchOptions, Pattern};
use img_llb::LocalSource;

use super::{Worker, WorkerError};
use img_solver::{checksum_tree, CacheKeyExtra, ChecksumOptions, PathFilter};

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

/// Options for Docker's `filepath.Match`: `*` and `?` never match `/`.
pub(crate) const MATCH: MatchOptions = MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

/// A `.dockerignore`-style filter on glob patterns: an exclude pattern matches a path or any of
/// its parent directories, later patterns override earlier ones, and `!pattern` re-includes.
/// Include patterns (when any) select what matches them and everything below.
#[derive(Debug, Clone)]
pub struct GlobContextFilter {
    include: Vec<Pattern>,
    exclude: Vec<(Pattern, bool)>,
}

fn compile(pattern: &str) -> Result<Pattern, String> {
    let clean = pattern.trim_start_matches('/');
    let clean = clean.strip_prefix("./").unwrap_or(clean);
    Pattern::new(clean.trim_end_matches('/')).map_err(|e| format!("{pattern:?}: {e}"))
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
            if matches_self_or_parent(pattern, path) {
                excluded = !negated;
            }
        }
        excluded
    }
}

/// Whether `pattern` matches `path` or one of its parent directories.
pub(crate) fn matches_self_or_parent(pattern: &Pattern, path: &str) -> bool {
    let mut prefix = path;
    loop {
        if pattern.matches_with(prefix, MATCH) {
            return true;
        }
        match prefix.rfind('/') {
            Some(i) => prefix = &prefix[..i],
            None => return false,
        }
    }
}

/// Whether directory `dir` could hold a path `pattern` matches: each of its components matches
/// the pattern's component at the same depth (a `**` component matches anything below).
pub(crate) fn may_match_below(pattern: &Pattern, dir: &str) -> bool {
    let pattern_parts: Vec<&str> = pattern.as_str().split('/').collect();
    for (i, part) in dir.split('/').enumerate() {
        match pattern_parts.get(i) {
            Some(&"**") => return true,
            Some(p) => match Pattern::new(p) {
                Ok(p) if p.matches_with(part, MATCH) => {}
                _ => return false,
            },
            None => return false,
        }
    }
    true
}

impl PathFilter for GlobContextFilter {
    fn selects(&self, path: &str, _is_dir: bool) -> bool {
        let included =
            self.include.is_empty() || self.include.iter().any(|p| matches_self_or_parent(p, path));
        included && !self.excluded(path)
    }

    fn may_select_under(&self, dir: &str) -> bool {
        let included = self.include.is_empty()
            || self
                .include
                .iter()
                .any(|p| matches_self_or_parent(p, dir) || may_match_below(p, dir));
        // A re-inclusion below an excluded directory keeps the walk going into it.
        included && (!self.excluded(dir) || self.exclude.iter().any(|(_, negated)| *negated))
    }
}

impl Worker {
    /// A local source is keyed by a checksum of its selected files (without ownership: a
    /// `COPY` from the context gives files to root, so the client's uid never matters).
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
        let sum = checksum_tree(
            dir,
            filter.as_ref(),
            &ChecksumOptions::with_ownership(false),
            self.options.checksum_cache.as_ref(),
        )?;
        Ok(CacheKeyExtra::new().with_salt(format!("local:{}", sum.digest)))
    }
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
    fn include_patterns_select_below_and_walk_towards() {
        let f = filter(&["app/src"], &[]);
        assert!(f.selects("app/src/main.rs", false));
        assert!(!f.selects("app/other", false));
        assert!(f.may_select_under("app"));
        assert!(!f.may_select_under("lib"));
    }
}
