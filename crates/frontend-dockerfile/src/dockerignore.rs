//! `.dockerignore`: which files of the build context are left out.
//!
//! Reproduces Docker's rules (moby `patternmatcher` and its `ignorefile` reader, as BuildKit
//! applies them to the context):
//!
//! - a line whose first character is `#` is a comment (`  # x` is the pattern `# x`);
//! - lines are trimmed, blank lines skipped, each pattern is `filepath.Clean`ed and one leading
//!   `/` removed, so `/a/./b/` is `a/b`; `!` (spaces after it allowed) makes an exception;
//! - each pattern is an [`img_llb::PathPattern`] in its `**` syntax: `*` is any run and `?`
//!   any one character, neither crossing `/`; `**` is any number of directories; `[a-z]`,
//!   `[^a-z]` classes and `\` escapes as in Go's `filepath.Match`;
//! - a path is excluded when the last pattern that matches it, or any of its parent
//!   directories, is not an exception: excluding `docs` excludes `docs/a/b` too.

use std::path::{Path, PathBuf};

use img_llb::{PathPattern, PatternError};

/// A `.dockerignore` file that could not be used.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum DockerignoreError {
    /// The file exists but could not be read.
    #[error("cannot read {}: {source}", file.display())]
    Read {
        /// The ignore file.
        file: PathBuf,
        /// The underlying failure.
        #[source]
        source: std::io::Error,
    },
    /// A pattern is not valid `filepath.Match` syntax (unclosed `[`, `[]`, a trailing `\`, …).
    #[error("{}:{line}: syntax error in pattern {pattern:?}; escape [ ] \\ with a backslash to match them literally", file.display())]
    InvalidPattern {
        /// The ignore file.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The pattern as cleaned.
        pattern: String,
        /// What is wrong with it.
        #[source]
        source: PatternError,
    },
    /// A line that is only `!`: an exception for nothing.
    #[error("{}:{line}: illegal exclusion pattern: \"!\"; write the path to re-include after the !", file.display())]
    LoneExclamation {
        /// The ignore file.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
    },
}

/// The parsed patterns of one `.dockerignore` file.
#[derive(Debug, Clone, Default)]
pub struct IgnorePatterns {
    /// The cleaned lines, `!` included, in file order.
    lines: Vec<String>,
    rules: Vec<Rule>,
    has_exceptions: bool,
}

#[derive(Debug, Clone)]
struct Rule {
    exception: bool,
    /// The pattern without the `!`.
    pattern: PathPattern,
}

impl IgnorePatterns {
    /// Parses the text of an ignore file; `file` is only used in errors.
    pub fn parse(text: &str, file: &Path) -> Result<IgnorePatterns, DockerignoreError> {
        let mut patterns = IgnorePatterns::default();
        for (index, raw) in text.split('\n').enumerate() {
            let line = index + 1;
            let raw = raw.strip_suffix('\r').unwrap_or(raw);
            let raw = if index == 0 {
                raw.strip_prefix('\u{feff}').unwrap_or(raw)
            } else {
                raw
            };
            let Some(cleaned) = clean_line(raw) else {
                continue;
            };
            let rule = compile_rule(&cleaned).map_err(|problem| match problem {
                RuleProblem::LoneExclamation => DockerignoreError::LoneExclamation {
                    file: file.to_owned(),
                    line,
                },
                RuleProblem::Syntax(pattern, source) => DockerignoreError::InvalidPattern {
                    file: file.to_owned(),
                    line,
                    pattern,
                    source,
                },
            })?;
            patterns.has_exceptions |= rule.exception;
            patterns.rules.push(rule);
            patterns.lines.push(cleaned);
        }
        Ok(patterns)
    }

    /// Reads and parses an ignore file.
    pub fn read(file: &Path) -> Result<IgnorePatterns, DockerignoreError> {
        let text = std::fs::read(file).map_err(|source| DockerignoreError::Read {
            file: file.to_owned(),
            source,
        })?;
        IgnorePatterns::parse(&String::from_utf8_lossy(&text), file)
    }

    /// The cleaned patterns in file order (exceptions keep their `!`), as BuildKit forwards them
    /// with the context.
    pub fn patterns(&self) -> &[String] {
        &self.lines
    }

    /// True when there are no patterns: nothing is excluded.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// True when some pattern is a `!` exception.
    pub fn has_exceptions(&self) -> bool {
        self.has_exceptions
    }

    /// Whether the context-relative, `/`-separated path is left out of the context.
    pub fn is_excluded(&self, relative_path: &str) -> bool {
        let path = crate::gopath::clean(relative_path.trim_start_matches('/'));
        if path == "." || self.rules.is_empty() {
            return false;
        }
        let mut excluded = false;
        for rule in &self.rules {
            // Only a rule that could flip the answer needs evaluating.
            if rule.exception != excluded {
                continue;
            }
            if rule.pattern.matches_or_parent_matches(&path) {
                excluded = !rule.exception;
            }
        }
        excluded
    }

    /// For a directory that [`is_excluded`](Self::is_excluded): whether an exception could
    /// re-include something below it, so a context walker must still descend. False means the
    /// whole directory can be skipped. An exception counts when it could match a path below
    /// `dir` (or matches `dir` or a parent, which re-includes everything below).
    pub fn may_include_below(&self, dir: &str) -> bool {
        if !self.has_exceptions {
            return false;
        }
        let dir = crate::gopath::clean(dir.trim_start_matches('/'));
        self.rules.iter().filter(|rule| rule.exception).any(|rule| {
            rule.pattern.may_match_below(&dir) || rule.pattern.matches_or_parent_matches(&dir)
        })
    }
}

/// The ignore file for a build: `<Dockerfile name>.dockerignore` beside the Dockerfile wins over
/// `.dockerignore` at the root of the context; `None` when neither exists.
pub fn ignore_file_for(context: &Path, dockerfile: &Path) -> Option<PathBuf> {
    let specific = dockerfile.file_name().map(|name| {
        let mut name = name.to_os_string();
        name.push(".dockerignore");
        dockerfile.with_file_name(name)
    });
    specific
        .into_iter()
        .chain(std::iter::once(context.join(".dockerignore")))
        .find(|candidate| candidate.is_file())
}

/// Applies the ignore-file line rules; `None` for comments and blank lines.
fn clean_line(raw: &str) -> Option<String> {
    if raw.starts_with('#') {
        return None;
    }
    let mut pattern = raw.trim();
    if pattern.is_empty() {
        return None;
    }
    let exception = pattern.starts_with('!');
    if exception {
        pattern = pattern[1..].trim();
    }
    let mut cleaned = String::new();
    if !pattern.is_empty() {
        cleaned = crate::gopath::clean(pattern);
        // A leading slash means the context root, which is where patterns start anyway.
        if cleaned.len() > 1 && cleaned.starts_with('/') {
            cleaned.remove(0);
        }
    }
    Some(if exception {
        format!("!{cleaned}")
    } else {
        cleaned
    })
}

enum RuleProblem {
    LoneExclamation,
    Syntax(String, PatternError),
}

fn compile_rule(line: &str) -> Result<Rule, RuleProblem> {
    // patternmatcher cleans once more, with the `!` still attached.
    let cleaned = crate::gopath::clean(line.trim());
    let (exception, pattern) = match cleaned.strip_prefix('!') {
        Some("") => return Err(RuleProblem::LoneExclamation),
        Some(rest) => (true, rest.to_owned()),
        None => (false, cleaned),
    };
    let pattern = PathPattern::new(&pattern).map_err(|e| RuleProblem::Syntax(pattern, e))?;
    Ok(Rule { exception, pattern })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> IgnorePatterns {
        IgnorePatterns::parse(text, Path::new(".dockerignore")).unwrap()
    }

    #[test]
    fn cleans_lines_like_docker() {
        let patterns = parse(
            "\u{feff}test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n  #not a comment\n./x/../y/\r\n",
        );
        assert_eq!(
            patterns.patterns(),
            [
                "test1",
                "test2",
                "a/file/here",
                "lastfile",
                "!inverted/abs/path",
                "#not a comment",
                "y"
            ]
        );
    }

    #[test]
    fn clean_path_matches_go() {
        for (input, want) in [
            ("", "."),
            ("a/b/", "a/b"),
            ("./a//b/./c", "a/b/c"),
            ("a/../..", ".."),
            ("/../a", "/a"),
            ("/", "/"),
            ("a/b/../../..", ".."),
        ] {
            assert_eq!(crate::gopath::clean(input), want, "{input}");
        }
    }

    #[test]
    fn errors_name_file_and_line() {
        let err =
            IgnorePatterns::parse("ok\n# c\n!\n", Path::new("ctx/.dockerignore")).unwrap_err();
        assert!(matches!(
            err,
            DockerignoreError::LoneExclamation { line: 3, .. }
        ));
        assert_eq!(
            err.to_string(),
            "ctx/.dockerignore:3: illegal exclusion pattern: \"!\"; write the path to re-include after the !"
        );
        let err = IgnorePatterns::parse("a\nb[\n", Path::new(".dockerignore")).unwrap_err();
        assert!(matches!(
            err,
            DockerignoreError::InvalidPattern { line: 2, ref pattern, .. } if pattern == "b["
        ));
        // `!/` cleans to a lone `!`.
        assert!(IgnorePatterns::parse("!/", Path::new("x")).is_err());
    }

    #[test]
    fn walker_can_skip_directories_without_exceptions_below() {
        let patterns = parse("node_modules\nbuild\n!build/keep.txt\n");
        assert!(patterns.is_excluded("node_modules"));
        assert!(!patterns.may_include_below("node_modules"));
        assert!(patterns.is_excluded("build"));
        assert!(patterns.may_include_below("build"));
        assert!(!patterns.is_excluded("build/keep.txt"));
        assert!(parse("a\n!*/x\n").may_include_below("a"));
        assert!(!parse("a\n!b/*.txt\n").may_include_below("a"));
        assert!(parse("a\n!**/*.txt\n").may_include_below("a/deep"));
        assert!(!parse("a\n").may_include_below("a"));
    }

    #[test]
    fn ignore_file_next_to_dockerfile_wins() {
        let dir = tempfile::tempdir().unwrap();
        let context = dir.path().join("ctx");
        let build = dir.path().join("build");
        std::fs::create_dir_all(&context).unwrap();
        std::fs::create_dir_all(&build).unwrap();
        let dockerfile = build.join("app.Dockerfile");
        assert_eq!(ignore_file_for(&context, &dockerfile), None);
        std::fs::write(context.join(".dockerignore"), "x\n").unwrap();
        assert_eq!(
            ignore_file_for(&context, &dockerfile),
            Some(context.join(".dockerignore"))
        );
        std::fs::write(build.join("app.Dockerfile.dockerignore"), "y\n").unwrap();
        assert_eq!(
            ignore_file_for(&context, &dockerfile),
            Some(build.join("app.Dockerfile.dockerignore"))
        );
        let read = IgnorePatterns::read(&build.join("app.Dockerfile.dockerignore")).unwrap();
        assert_eq!(read.patterns(), ["y"]);
        assert!(matches!(
            IgnorePatterns::read(&build.join("missing")),
            Err(DockerignoreError::Read { .. })
        ));
    }
}
