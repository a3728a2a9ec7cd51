//! Path patterns: which paths a COPY source wildcard, a copy's include and exclude patterns, a
//! local source's include and exclude patterns and a `.dockerignore` line select.
//!
//! What a pattern selects is part of the meaning of the build graph (a [`CopyAction`] with
//! wildcards, a [`LocalSource`] with patterns), so every stage must read a pattern the same way:
//! the frontend when it checks a Dockerfile against `.dockerignore`, the worker when it walks the
//! build context and when it copies. This module is that one reading, compiled once per pattern.
//!
//! Two syntaxes share one matcher:
//!
//! - [`PathPattern::glob`] is Go's `filepath.Match`, with which BuildKit expands COPY source
//!   wildcards: `*` is any run and `?` any one character, neither matching `/`; `[…]` is one
//!   character of a class of characters and ranges (`[a-z0-9]`), negated by a leading `^` (a
//!   class may match `/`); `\` makes the next character literal, inside a class too. `**` is
//!   two stars, no more than one.
//! - [`PathPattern::new`] adds `**`, as `.dockerignore` and include/exclude patterns read it
//!   (moby's patternmatcher): `**/`, or `**` inside a pattern, is any number of directories
//!   (`a/**/b` matches `a/b` and `a/x/y/b`); a trailing `**` is anything at all. Two oddities of
//!   Docker's implementation are kept, so that a context is filtered exactly as Docker filters
//!   it: a pattern that starts with `**` and is literal after it matches every path ending in
//!   the rest (`**.txt` matches `a/b.txt`), and in a pattern with wildcards an unbracketed `^`
//!   only matches at the start of the path (so `a^*` matches nothing, while `a^b` matches
//!   `a^b`).
//!
//! Paths are `/`-separated and relative, without `.` or empty components (callers clean them).
//! A malformed pattern (an unclosed `[`, an empty class, `[-a]`, a trailing `\`) is an error, as
//! Go's `ErrBadPattern` is, wherever it appears in the pattern. Matching runs a small automaton
//! over the path, in time linear in the path's length times the pattern's, so no pattern can
//! make matching slow.
//!
//! ```
//! use img_llb::PathPattern;
//!
//! let go = PathPattern::new("**/*.go")?;
//! assert!(go.matches("main.go") && go.matches("cmd/img/main.go"));
//! let docs = PathPattern::new("docs")?;
//! assert!(docs.matches_or_parent_matches("docs/guide/index.md"));
//! let source = PathPattern::glob("src/*.rs")?;
//! assert!(source.matches("src/lib.rs") && !source.matches("src/a/b.rs"));
//! assert!(source.may_match_below("src") && !source.may_match_below("tests"));
//! # Ok::<(), img_llb::PatternError>(())
//! ```
//!
//! [`CopyAction`]: crate::CopyAction
//! [`LocalSource`]: crate::LocalSource

use std::fmt;

/// A pattern that is not valid `filepath.Match` syntax.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    /// The pattern ends with a `\` that escapes nothing.
    #[error("bad pattern {pattern:?}: it ends with a lone \\ (write \\\\ to match a backslash)")]
    TrailingBackslash {
        /// The pattern.
        pattern: String,
    },
    /// A `[` whose class is never closed by `]`.
    #[error("bad pattern {pattern:?}: the [ at character {position} is never closed (write \\[ to match a bracket)")]
    UnclosedClass {
        /// The pattern.
        pattern: String,
        /// The 1-based character position of the `[`.
        position: usize,
    },
    /// A class that is empty or has an item starting with `-` or `]` (`[]`, `[-a]`, `[a-]`,
    /// `[a-b-c]`).
    #[error("bad pattern {pattern:?}: the character class at character {position} is empty or has a stray - or ] (write \\- and \\] inside brackets)")]
    BadClass {
        /// The pattern.
        pattern: String,
        /// The 1-based character position of the `[`.
        position: usize,
    },
}

/// A compiled path pattern; see the [module documentation](self) for the syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    text: String,
    tokens: Vec<Token>,
    fast: Fast,
}

/// One step of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// This character.
    Char(char),
    /// `?`: any one character but `/`.
    AnyChar,
    /// `*`: any run of characters without `/`.
    Star,
    /// `[…]`: one character of the class (or, negated, of none of it).
    Class(Class),
    /// `**/`, or `**` inside a pattern: nothing, or any run that ends with `/`. Only while
    /// compiling: the automaton runs it as `Either(2), AnyRun, Char('/')`.
    AnyDirs,
    /// Goes on at the next token or `skip` tokens after it, without consuming anything.
    Either(usize),
    /// A trailing `**`: any run at all.
    AnyRun,
    /// An unbracketed `^` in a `**`-syntax pattern with wildcards: matches nothing, and only at
    /// the start of the path (Docker turns such patterns into regexes without escaping `^`).
    StartAnchor,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Class {
    negated: bool,
    ranges: Vec<(char, char)>,
}

impl Class {
    fn matches(&self, c: char) -> bool {
        self.ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != self.negated
    }
}

/// Patterns without wildcards are compared without the automaton, as Docker does.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fast {
    /// The whole path equals this text.
    Exact(String),
    /// The path starts with this text (`text**`).
    Prefix(String),
    None,
}

/// How Docker's `**` syntax classifies a pattern; decides the two oddities.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Exact,
    Prefix,
    Suffix,
    Wildcards,
}

impl PathPattern {
    /// Compiles a pattern with `**` (`.dockerignore`, include and exclude patterns).
    pub fn new(pattern: &str) -> Result<PathPattern, PatternError> {
        validate(pattern)?;
        compile_double_star(pattern)
    }

    /// Compiles a pattern in Go's `filepath.Match` syntax (COPY source wildcards), where `**`
    /// is the same as `*`.
    pub fn glob(pattern: &str) -> Result<PathPattern, PatternError> {
        validate(pattern)?;
        let chars: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::with_capacity(chars.len());
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            i += 1;
            match c {
                // Consecutive stars match what one star matches.
                '*' if tokens.last() == Some(&Token::Star) => {}
                '*' => tokens.push(Token::Star),
                '?' => tokens.push(Token::AnyChar),
                '\\' => {
                    tokens.push(Token::Char(chars[i]));
                    i += 1;
                }
                '[' => {
                    let (class, next) = parse_class(&chars, i, pattern)?;
                    tokens.push(Token::Class(class));
                    i = next;
                }
                other => tokens.push(Token::Char(other)),
            }
        }
        let fast = literal_text(&tokens).map_or(Fast::None, Fast::Exact);
        Ok(PathPattern {
            text: pattern.to_owned(),
            tokens,
            fast,
        })
    }

    /// The pattern as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `name` holds a wildcard (`*`, `?` or `[` not escaped by `\`), as BuildKit
    /// decides whether a COPY source is a pattern or a plain path.
    pub fn has_wildcards(name: &str) -> bool {
        let mut chars = name.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '*' | '?' | '[' => return true,
                _ => {}
            }
        }
        false
    }

    /// Whether the whole of `path` matches.
    pub fn matches(&self, path: &str) -> bool {
        match &self.fast {
            Fast::Exact(text) => return path == text,
            Fast::Prefix(text) => return path.starts_with(text.as_str()),
            Fast::None => {}
        }
        self.run(path, false)
    }

    /// Whether `path` or one of its parent directories matches: a pattern that names a
    /// directory selects everything below it (`.dockerignore`'s rule).
    pub fn matches_or_parent_matches(&self, path: &str) -> bool {
        self.matches(path)
            || path
                .match_indices('/')
                .any(|(slash, _)| self.matches(&path[..slash]))
    }

    /// Whether some path below directory `dir` could match, so that a walk must descend into
    /// it. Exact for every pattern but one whose class can match no character at all.
    pub fn may_match_below(&self, dir: &str) -> bool {
        if let Fast::Exact(text) | Fast::Prefix(text) = &self.fast {
            // A literal prefix of the pattern, or the pattern's literal part ends inside `dir`.
            let below = format!("{dir}/");
            return text.starts_with(&below)
                || (matches!(self.fast, Fast::Prefix(_)) && below.starts_with(text.as_str()));
        }
        self.run(dir, true)
    }

    /// Runs the automaton over `path` (and a `/` after it when `descend`): with `descend`,
    /// whether any state is still alive, else whether the pattern's end is reached.
    fn run(&self, path: &str, descend: bool) -> bool {
        let n = self.tokens.len();
        let mut current = vec![false; n + 1];
        let mut next = vec![false; n + 1];
        current[0] = true;
        self.close(&mut current, true);
        let tail = descend.then_some('/');
        for c in path.chars().chain(tail) {
            next.iter_mut().for_each(|s| *s = false);
            let mut alive = false;
            for (i, token) in self.tokens.iter().enumerate() {
                if !current[i] {
                    continue;
                }
                let (stay, advance) = match token {
                    Token::Char(x) => (false, *x == c),
                    Token::AnyChar => (false, c != '/'),
                    Token::Class(class) => (false, class.matches(c)),
                    Token::Star => (c != '/', false),
                    Token::AnyRun => (true, false),
                    // `AnyDirs` is expanded when compiling and never reaches here.
                    Token::StartAnchor | Token::Either(_) | Token::AnyDirs => (false, false),
                };
                next[i] |= stay;
                next[i + 1] |= advance;
                alive |= stay || advance;
            }
            if !alive {
                return false;
            }
            std::mem::swap(&mut current, &mut next);
            self.close(&mut current, false);
        }
        if descend {
            current.iter().any(|s| *s)
        } else {
            current[n]
        }
    }

    /// Adds the states reachable without consuming a character: past a star or `**`, which
    /// may match nothing, and past a start anchor at the start of the path.
    fn close(&self, states: &mut [bool], at_start: bool) {
        // Every such move goes forward, so one pass in order reaches them all.
        for (i, token) in self.tokens.iter().enumerate() {
            if !states[i] {
                continue;
            }
            match token {
                Token::Star | Token::AnyRun => states[i + 1] = true,
                Token::StartAnchor if at_start => states[i + 1] = true,
                Token::Either(skip) => {
                    states[i + 1] = true;
                    states[i + 1 + skip] = true;
                }
                _ => {}
            }
        }
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Compiles a validated pattern in the `**` syntax, classifying it as Docker's patternmatcher
/// does: literal text, literal text then a trailing `**`, a leading `**` then literal text, or
/// anything else.
fn compile_double_star(pattern: &str) -> Result<PathPattern, PatternError> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::with_capacity(chars.len());
    let mut kind = Kind::Exact;
    let mut i = 0;
    let mut first = true;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                // `**/` is the same as `**`.
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i == chars.len() {
                    kind = if kind == Kind::Exact {
                        Kind::Prefix
                    } else {
                        Kind::Wildcards
                    };
                    tokens.push(Token::AnyRun);
                } else {
                    kind = Kind::Wildcards;
                    tokens.push(Token::AnyDirs);
                }
                if first {
                    kind = Kind::Suffix;
                }
            }
            '*' => {
                kind = Kind::Wildcards;
                tokens.push(Token::Star);
            }
            '?' => {
                kind = Kind::Wildcards;
                tokens.push(Token::AnyChar);
            }
            '\\' => {
                kind = Kind::Wildcards;
                tokens.push(Token::Char(chars[i]));
                i += 1;
            }
            '[' => {
                kind = Kind::Wildcards;
                let (class, next) = parse_class(&chars, i, pattern)?;
                tokens.push(Token::Class(class));
                i = next;
            }
            ']' => {
                kind = Kind::Wildcards;
                tokens.push(Token::Char(']'));
            }
            '^' => tokens.push(Token::StartAnchor),
            other => tokens.push(Token::Char(other)),
        }
        first = false;
    }
    // Outside the wildcard kind, Docker compares text, where `^` is just a character.
    if kind != Kind::Wildcards {
        for token in &mut tokens {
            if *token == Token::StartAnchor {
                *token = Token::Char('^');
            }
        }
    }
    let fast = match kind {
        Kind::Exact => literal_text(&tokens).map_or(Fast::None, Fast::Exact),
        Kind::Prefix => literal_text(&tokens[..tokens.len() - 1]).map_or(Fast::None, Fast::Prefix),
        Kind::Suffix => {
            // `**text` matches every path ending in `text` (not only `text` after a `/`);
            // `**/text` matches `text` and every path ending in `/text`.
            if tokens.first() == Some(&Token::AnyDirs) && !pattern.starts_with("**/") {
                tokens[0] = Token::AnyRun;
            }
            Fast::None
        }
        Kind::Wildcards => Fast::None,
    };
    let tokens = tokens
        .into_iter()
        .flat_map(|token| match token {
            Token::AnyDirs => vec![Token::Either(2), Token::AnyRun, Token::Char('/')],
            other => vec![other],
        })
        .collect();
    Ok(PathPattern {
        text: pattern.to_owned(),
        tokens,
        fast,
    })
}

/// The text of a pattern made only of literal characters.
fn literal_text(tokens: &[Token]) -> Option<String> {
    tokens
        .iter()
        .map(|t| match t {
            Token::Char(c) => Some(*c),
            _ => None,
        })
        .collect()
}

/// Rejects what Go's `filepath.Match` rejects with `ErrBadPattern`, anywhere in the pattern.
fn validate(pattern: &str) -> Result<(), PatternError> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' if i + 1 == chars.len() => {
                return Err(PatternError::TrailingBackslash {
                    pattern: pattern.to_owned(),
                })
            }
            '\\' => i += 2,
            '[' => i = parse_class(&chars, i + 1, pattern)?.1,
            _ => i += 1,
        }
    }
    Ok(())
}

/// Parses the class whose items start at `chars[start]` (just after its `[`), as Go's
/// `matchChunk` does. Returns the class and the index after its `]`.
fn parse_class(
    chars: &[char],
    start: usize,
    pattern: &str,
) -> Result<(Class, usize), PatternError> {
    let position = start; // 1-based position of the `[`.
    let unclosed = || PatternError::UnclosedClass {
        pattern: pattern.to_owned(),
        position,
    };
    let bad = || PatternError::BadClass {
        pattern: pattern.to_owned(),
        position,
    };
    let mut i = start;
    let negated = chars.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    // One possibly escaped item; like Go, an item may not start with `-` or `]`, and may not
    // be the pattern's last character (the class would be unclosed).
    let item = |i: &mut usize| -> Result<char, PatternError> {
        match chars.get(*i) {
            None => return Err(unclosed()),
            Some('-' | ']') => return Err(bad()),
            Some('\\') => *i += 1,
            Some(_) => {}
        }
        let c = *chars.get(*i).ok_or_else(unclosed)?;
        *i += 1;
        if *i == chars.len() {
            return Err(unclosed());
        }
        Ok(c)
    };
    let mut ranges = Vec::new();
    loop {
        if chars.get(i) == Some(&']') && !ranges.is_empty() {
            return Ok((Class { negated, ranges }, i + 1));
        }
        let lo = item(&mut i)?;
        let hi = if chars.get(i) == Some(&'-') {
            i += 1;
            item(&mut i)?
        } else {
            lo
        };
        ranges.push((lo, hi));
    }
}

#[cfg(test)]
mod tests;
