//! Docker's word expansion: quotes, escapes and `$variable` substitution in Dockerfile words.
//!
//! This reproduces BuildKit's `frontend/dockerfile/shell` lexer rule for rule, including its
//! departures from POSIX sh, because a Dockerfile must expand the same way under img as under
//! `docker build`:
//!
//! - inside double quotes the escape character escapes only `"`, `$` and itself, and is kept
//!   literally before anything else;
//! - an escape character at the very end of a word is dropped;
//! - `${v#p}`, `${v%p}` and `${v/p/r}` patterns know `*`, `?` and the escapes `\*`, `\?`, `\\`
//!   (plus `\}` and `\/` to write those characters), but no bracket expressions: `[` is literal;
//! - positional (`$1`, `$001`) and special (`$@ $* $# $? $- $$ $! $0`) parameters are never set;
//! - there is no field splitting in [`Lexer::expand_word`]; [`Lexer::expand_words`] splits on
//!   whitespace that is neither quoted nor escaped, whether written or produced by an unquoted
//!   expansion, and an empty quoted string yields no word (`""` gives `[]`, unlike sh).
//!
//! Deliberate differences, for inputs no real Dockerfile contains: substitutions nested more than
//! 256 deep, patterns with more than 256 separate `*` and a `${v//p/r}` result over 4 MiB are
//! errors (BuildKit recurses and allocates without bound); and in `expand_words`, text before a
//! `${v:-w}` is kept (`x${u:-a b}` gives `xa`, `b`), where current BuildKit shares one buffer
//! between nesting levels and loses the `x`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use expand::{Expander, WordSplitter, MAX_NESTING};
use pattern::{MAX_REPLACE_ALL_BYTES, MAX_STARS};

mod expand;
mod pattern;

/// Variables visible to an expansion.
pub trait Environment {
    /// The value of variable `name`, or `None` when it is unset (set-but-empty is `Some("")`).
    fn lookup(&self, name: &str) -> Option<&str>;
}

impl Environment for BTreeMap<String, String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl Environment for HashMap<String, String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

/// An ordered list of assignments; a later entry overrides an earlier one of the same name, as
/// repeated `ENV`/`ARG` instructions do.
impl Environment for [(String, String)] {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

impl Environment for Vec<(String, String)> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.as_slice().lookup(name)
    }
}

impl<E: Environment + ?Sized> Environment for &E {
    fn lookup(&self, name: &str) -> Option<&str> {
        (**self).lookup(name)
    }
}

/// Why a word could not be expanded.
///
/// Every variant carries the whole `word` and the byte `position` in it of the construct at
/// fault: the opening quote, or the `$` that starts the substitution.
#[non_exhaustive]
#[derive(Debug, Clone, thiserror::Error)]
pub enum ShellError {
    /// A quote was opened and never closed.
    #[error(
        "failed to process {word:?}: unexpected end of statement while looking for matching {}-quote (opened at offset {position}); close the quote or escape it",
        if *quote == '\'' { "single" } else { "double" }
    )]
    UnterminatedQuote {
        /// The word being expanded.
        word: String,
        /// Byte offset of the opening quote.
        position: usize,
        /// The quote character, `'` or `"`.
        quote: char,
    },
    /// `${` without its closing `}`.
    #[error("failed to process {word:?}: syntax error: missing '}}' for the substitution at offset {position}")]
    MissingBrace {
        /// The word being expanded.
        word: String,
        /// Byte offset of the `$`.
        position: usize,
    },
    /// `${name/pattern` without the `/` that ends the pattern.
    #[error("failed to process {word:?}: syntax error: missing '/' in ${{}} at offset {position}")]
    MissingSlash {
        /// The word being expanded.
        word: String,
        /// Byte offset of the `$`.
        position: usize,
    },
    /// `${}`, `${:…}` or `${{…}`: no variable name.
    #[error("failed to process {word:?}: syntax error: bad substitution at offset {position}; write ${{name}} or escape the $")]
    BadSubstitution {
        /// The word being expanded.
        word: String,
        /// Byte offset of the `$`.
        position: usize,
    },
    /// A modifier Docker does not support, such as `${v:=w}`, `${v:#p}` or `${v.}`.
    #[error("failed to process {word:?}: unsupported modifier ({modifier}) in substitution at offset {position}")]
    UnsupportedModifier {
        /// The word being expanded.
        word: String,
        /// Byte offset of the `$`.
        position: usize,
        /// The modifier as written, e.g. `:=`.
        modifier: String,
    },
    /// `${name?message}` with `name` unset, or `${name:?message}` with `name` unset or empty.
    #[error(
        "failed to process {word:?}: {name}: {}",
        message.as_deref().unwrap_or(if *empty { "is not allowed to be empty" } else { "is not allowed to be unset" })
    )]
    RequiredVariable {
        /// The word being expanded.
        word: String,
        /// Byte offset of the `$`.
        position: usize,
        /// The variable that had to be set.
        name: String,
        /// The message written after `?`, when there was one.
        message: Option<String>,
        /// True when the variable was set but empty (only `:?` rejects that).
        empty: bool,
    },
    /// A `#`, `%` or `/` pattern with an escape other than `\*`, `\?`, `\\`, `\}`, `\/`.
    #[error(
        "failed to process {word:?}: invalid pattern ({pattern}) in substitution at offset {position}: invalid escape '\\{}'",
        escaped.map(String::from).unwrap_or_default()
    )]
    InvalidPatternEscape {
        /// The word being expanded.
        word: String,
        /// Byte offset of the `$`.
        position: usize,
        /// The pattern after expansion.
        pattern: String,
        /// The character after the backslash, `None` when the pattern ends with it.
        escaped: Option<char>,
    },
    /// A pattern with more separate `*` wildcards than any real Dockerfile uses.
    #[error("failed to process {word:?}: pattern ({pattern}) in substitution at offset {position} has more than {MAX_STARS} wildcards")]
    PatternTooComplex {
        /// The word being expanded.
        word: String,
        /// Byte offset of the `$`.
        position: usize,
        /// The pattern after expansion.
        pattern: String,
    },
    /// A `${v//p/r}` whose result would be larger than any real Dockerfile needs (nested
    /// replacements grow exponentially).
    #[error("failed to process {word:?}: the replacement at offset {position} produces more than {MAX_REPLACE_ALL_BYTES} bytes")]
    ResultTooLarge {
        /// The word being expanded.
        word: String,
        /// Byte offset of the `$`.
        position: usize,
    },
    /// `${…}` nested more deeply than any real Dockerfile does.
    #[error("failed to process {word:?}: substitutions nested more than {MAX_NESTING} deep at offset {position}")]
    NestingTooDeep {
        /// The word being expanded.
        word: String,
        /// Byte offset of the `$` of the innermost substitution read.
        position: usize,
    },
}

/// The result of [`Lexer::expand_word_tracking`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Expansion {
    /// The expanded word.
    pub value: String,
    /// Every variable name the word referenced, set or not (including `1`, `@`, … for
    /// positional and special parameters).
    pub used: BTreeSet<String>,
    /// The subset of `used` that was unset in the environment.
    pub unset: BTreeSet<String>,
}

/// Expands words with Docker's rules for a given escape character.
#[derive(Debug, Clone)]
pub struct Lexer {
    escape: char,
    raw_quotes: bool,
    raw_escapes: bool,
}

impl Lexer {
    /// A lexer for the Dockerfile's escape character: `\` by default, `` ` `` after
    /// `# escape=``.
    pub fn new(escape: char) -> Self {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
        }
    }

    /// Keep quote characters in the output (they still group and stop expansion in `'…'`).
    /// BuildKit expands `COPY <<EOF` heredoc bodies this way.
    pub fn with_raw_quotes(mut self, raw: bool) -> Self {
        self.raw_quotes = raw;
        self
    }

    /// Keep escape characters in the output (they still protect the next character).
    /// BuildKit expands `COPY <<EOF` heredoc bodies this way.
    pub fn with_raw_escapes(mut self, raw: bool) -> Self {
        self.raw_escapes = raw;
        self
    }

    /// Expands one word: quotes removed, escapes processed, variables substituted, no field
    /// splitting (BuildKit `ProcessWord`).
    pub fn expand_word(&self, word: &str, env: &dyn Environment) -> Result<String, ShellError> {
        let mut expander = Expander::new(self, word, env, None);
        expander.process_stop_on(None, self.raw_escapes, None, 0)
    }

    /// Expands and splits into words; whitespace from unquoted expansions splits (BuildKit
    /// `ProcessWords`).
    pub fn expand_words(
        &self,
        word: &str,
        env: &dyn Environment,
    ) -> Result<Vec<String>, ShellError> {
        let mut expander = Expander::new(self, word, env, None);
        let mut words = WordSplitter::default();
        expander.process_stop_on(None, self.raw_escapes, Some(&mut words), 0)?;
        Ok(words.finish())
    }

    /// Like [`expand_word`](Self::expand_word), but also returns the variable names the word
    /// referenced, and which of them were unset (for the UndefinedVar check and for cache keys).
    pub fn expand_word_tracking(
        &self,
        word: &str,
        env: &dyn Environment,
    ) -> Result<Expansion, ShellError> {
        let mut tracking = Expansion::default();
        let value = {
            let mut expander = Expander::new(self, word, env, Some(&mut tracking));
            expander.process_stop_on(None, self.raw_escapes, None, 0)?
        };
        tracking.value = value;
        Ok(tracking)
    }
}

impl Default for Lexer {
    fn default() -> Self {
        Lexer::new('\\')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Vec<(String, String)> {
        [
            ("PWD", "/home"),
            ("EMPTY", ""),
            ("path", "/usr/local/bin/tool.tar.gz"),
            ("text", "aXbXc"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn expand(word: &str) -> Result<String, ShellError> {
        Lexer::new('\\').expand_word(word, &env())
    }

    #[test]
    fn later_assignment_wins_in_lists() {
        let list = vec![
            ("A".to_owned(), "1".to_owned()),
            ("A".to_owned(), "2".to_owned()),
        ];
        assert_eq!(Lexer::default().expand_word("$A", &list).unwrap(), "2");
        let slice: &[(String, String)] = &list;
        assert_eq!(Lexer::default().expand_word("$A", &slice).unwrap(), "2");
    }

    #[test]
    fn pattern_operators() {
        assert_eq!(expand("${path#*/}").unwrap(), "usr/local/bin/tool.tar.gz");
        assert_eq!(expand("${path##*/}").unwrap(), "tool.tar.gz");
        assert_eq!(expand("${path%.*}").unwrap(), "/usr/local/bin/tool.tar");
        assert_eq!(expand("${path%%.*}").unwrap(), "/usr/local/bin/tool");
        assert_eq!(expand("${text/X/-}").unwrap(), "a-bXc");
        assert_eq!(expand("${text//X/-}").unwrap(), "a-b-c");
        assert_eq!(expand("${text//X/[$$]}").unwrap(), "a[]b[]c");
        assert_eq!(
            expand("${text//?/<\\$0>}").unwrap(),
            "<\\a><\\X><\\b><\\X><\\c>"
        );
        assert_eq!(expand("${text///-}").unwrap(), "-a-X-b-X-c-");
    }

    #[test]
    fn errors_carry_position_and_data() {
        match expand("ab${UNSET:?set it}").unwrap_err() {
            ShellError::RequiredVariable {
                position,
                name,
                message,
                empty,
                ..
            } => {
                assert_eq!((position, name.as_str()), (2, "UNSET"));
                assert_eq!(message.as_deref(), Some("set it"));
                assert!(!empty);
            }
            other => panic!("unexpected {other:?}"),
        }
        let err = expand("x 'abc").unwrap_err();
        assert!(matches!(
            err,
            ShellError::UnterminatedQuote {
                position: 2,
                quote: '\'',
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            "failed to process \"x 'abc\": unexpected end of statement while looking for matching single-quote (opened at offset 2); close the quote or escape it"
        );
        assert!(matches!(
            expand("${EMPTY:?}").unwrap_err(),
            ShellError::RequiredVariable { empty: true, .. }
        ));
    }

    #[test]
    fn tracking_reports_used_and_unset() {
        let expansion = Lexer::default()
            .expand_word_tracking("$PWD/${NOPE:-$EMPTY}$1", &env())
            .unwrap();
        assert_eq!(expansion.value, "/home/");
        let used: Vec<_> = expansion.used.iter().map(String::as_str).collect();
        assert_eq!(used, ["1", "EMPTY", "NOPE", "PWD"]);
        let unset: Vec<_> = expansion.unset.iter().map(String::as_str).collect();
        assert_eq!(unset, ["1", "NOPE"]);
    }

    #[test]
    fn pattern_wildcards_do_not_match_newlines() {
        // Go's regexp `.`, which BuildKit's patterns compile to, excludes '\n'.
        let env = vec![("x".to_owned(), "a\nb".to_owned())];
        let lexer = Lexer::default();
        assert_eq!(lexer.expand_word("${x#?}", &env).unwrap(), "\nb");
        assert_eq!(lexer.expand_word("${x#??}", &env).unwrap(), "a\nb");
        assert_eq!(lexer.expand_word("${x%%*}", &env).unwrap(), "a\n");
    }

    #[test]
    fn leading_byte_order_mark_is_skipped() {
        assert_eq!(expand("\u{feff}$PWD").unwrap(), "/home");
    }

    #[test]
    fn runaway_patterns_are_errors() {
        let stars = format!("${{path#{}}}", "*a".repeat(MAX_STARS + 1));
        assert!(matches!(
            expand(&stars).unwrap_err(),
            ShellError::PatternTooComplex { position: 0, .. }
        ));
        // Each level inserts the level below between every character of `text`.
        let bomb = (0..12).fold("x".to_owned(), |inner, _| format!("${{text///{inner}}}"));
        assert!(matches!(
            expand(&bomb).unwrap_err(),
            ShellError::ResultTooLarge { .. }
        ));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let word = "${a:-".repeat(100_000);
        assert!(expand(&word).is_err());
    }

    #[test]
    fn raw_modes_keep_quotes_and_escapes() {
        let lexer = Lexer::new('\\')
            .with_raw_quotes(true)
            .with_raw_escapes(true);
        assert_eq!(
            lexer.expand_word("'$PWD' \"$PWD\" \\$PWD", &env()).unwrap(),
            "'$PWD' \"/home\" \\$PWD"
        );
    }
}
