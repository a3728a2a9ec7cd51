//! The build context's file selection with the frontend's `.dockerignore` matcher (Docker's
//! exact rules), injected into the worker, which only knows glob patterns on its own.

use std::path::Path;
use std::sync::Arc;

use img_frontend_dockerfile::IgnorePatterns;
use img_solver::PathFilter;
use img_worker::{ContextFilterFactory, GlobContextFilter};

/// Selects what the include patterns (a `COPY`'s sources, when the frontend narrows the
/// context) select and `.dockerignore` does not exclude.
struct DockerignoreFilter {
    include: Option<GlobContextFilter>,
    ignore: IgnorePatterns,
}

impl PathFilter for DockerignoreFilter {
    fn selects(&self, path: &str, is_dir: bool) -> bool {
        self.include
            .as_ref()
            .is_none_or(|include| include.selects(path, is_dir))
            && !self.ignore.is_excluded(path)
    }

    fn may_select_under(&self, dir: &str) -> bool {
        self.include
            .as_ref()
            .is_none_or(|include| include.may_select_under(dir))
            && (!self.ignore.is_excluded(dir) || self.ignore.may_include_below(dir))
    }
}

/// The factory the worker calls with a local source's include and exclude patterns.
pub fn dockerignore_filter_factory() -> ContextFilterFactory {
    Arc::new(|include: &[String], exclude: &[String]| {
        let include = if include.is_empty() {
            None
        } else {
            Some(GlobContextFilter::new(include, &[])?)
        };
        // The patterns are `.dockerignore` lines as the frontend cleaned them; parsing them
        // again gives the same rules.
        let ignore = IgnorePatterns::parse(&exclude.join("\n"), Path::new(".dockerignore"))
            .map_err(|e| e.to_string())?;
        Ok(Box::new(DockerignoreFilter { include, ignore }) as Box<dyn PathFilter + Send>)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerignore_rules_with_exceptions() {
        let factory = dockerignore_filter_factory();
        let exclude: Vec<String> = ["*.log", "build", "!build/keep.txt", "docs/**/*.md"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let filter = factory(&[], &exclude).unwrap();
        // path | is a directory | selected
        for (path, dir, want) in [
            ("main.rs", false, true),
            ("app.log", false, false),
            ("sub/app.log", false, true),
            ("build/out.o", false, false),
            ("build/keep.txt", false, true),
            ("docs/a/b.md", false, false),
            ("docs/a/b.txt", false, true),
        ] {
            assert_eq!(filter.selects(path, dir), want, "{path}");
        }
        assert!(filter.may_select_under("build"), "an exception lies below");
        let plain = factory(&[], &["node_modules".to_string()]).unwrap();
        assert!(!plain.may_select_under("node_modules"));
        assert!(plain.may_select_under("src"));
    }

    #[test]
    fn include_patterns_narrow_the_selection() {
        let factory = dockerignore_filter_factory();
        let filter = factory(&["src".to_string()], &["src/*.tmp".to_string()]).unwrap();
        assert!(filter.selects("src/a.rs", false));
        assert!(!filter.selects("src/a.tmp", false));
        assert!(!filter.selects("README", false));
    }

    #[test]
    fn bad_patterns_are_errors() {
        let factory = dockerignore_filter_factory();
        let err = factory(&[], &["[".to_string()]).err().unwrap();
        assert!(err.contains("syntax error"), "{err}");
    }
}
