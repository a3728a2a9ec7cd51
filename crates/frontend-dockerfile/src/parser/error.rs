//! The parser's error: where in the Dockerfile, the offending line, and what was wrong.

/// A Dockerfile the parser cannot accept.
///
/// It names the file, the 1-based line range of the offending instruction (or line), that
/// line's text, and the reason ([`ParseErrorKind`]), whose message says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {kind}{}", lines(*.line, *.end_line), show_text(.text))]
#[non_exhaustive]
pub struct ParseError {
    /// The name of the Dockerfile, as given to [`parse`](crate::parse).
    pub file: String,
    /// The 1-based first physical line of the offending instruction or line (0 for an empty
    /// file).
    pub line: usize,
    /// The 1-based last physical line of the offending instruction.
    pub end_line: usize,
    /// The offending line as written (continuations joined); empty when there is none.
    pub text: String,
    /// What was wrong.
    pub kind: ParseErrorKind,
}

/// Why the parser rejected a Dockerfile. The messages keep BuildKit's wording, so errors read
/// the same as `docker build`'s, followed by what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// The file holds no instruction at all.
    #[error(
        "file with no instructions: a Dockerfile needs at least one instruction, such as FROM"
    )]
    NoInstructions,
    /// A physical line is longer than BuildKit's scanner accepts.
    #[error(
        "dockerfile line greater than max allowed size of {max}: split it with line continuations"
    )]
    LineTooLong {
        /// The longest accepted line, in bytes (65535).
        max: usize,
    },
    /// `# escape=` names something other than a backslash or a backtick.
    #[error(
        "invalid escape token '{token}' does not match ` or \\: use `# escape=\\` or `# escape=``"
    )]
    InvalidEscape {
        /// The value given.
        token: String,
    },
    /// A parser directive appears twice in the leading comment block.
    #[error("only one {name} parser directive can be used")]
    RepeatedDirective {
        /// The directive, lowercased (`escape`, `syntax`, `check`).
        name: String,
    },
    /// `ENV KEY` or `LABEL KEY` with no value.
    #[error("{keyword} must have two arguments: write `{keyword} KEY=value`")]
    MissingValue {
        /// The instruction, uppercased (`ENV` or `LABEL`).
        keyword: String,
    },
    /// In the `KEY=value` form of ENV or LABEL, a word without `=`.
    #[error("syntax error - can't find = in {word:?}; must be of the form: name=value")]
    MissingEquals {
        /// The word lacking `=`, quotes kept.
        word: String,
    },
    /// An exec-form (JSON array) argument list holds something other than strings.
    #[error("when using JSON array syntax, arrays must be comprised of strings only")]
    JsonNotStrings,
    /// A heredoc's body has no terminator line.
    #[error("unterminated heredoc {name:?}: end its body with a line holding exactly {name:?}")]
    UnterminatedHeredoc {
        /// The terminator that was never found.
        name: String,
    },
    /// A heredoc terminator word could not be read as a shell word.
    #[error("invalid heredoc name {word:?}: {reason}")]
    InvalidHeredocName {
        /// The terminator word as written.
        word: String,
        /// What the shell-word reader found wrong.
        reason: LexError,
    },
}

/// A shell word that cannot be read (in a heredoc terminator).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LexError {
    /// A quote or `${` is not closed.
    #[error("unexpected end of statement while looking for matching {0}")]
    Unterminated(&'static str),
    /// `${` is not closed.
    #[error("syntax error: missing '}}'")]
    MissingBrace,
    /// `${}`, `${:x}` and the like.
    #[error("syntax error: bad substitution")]
    BadSubstitution,
    /// `${x.y}` and the like.
    #[error("unsupported modifier ({0}) in substitution")]
    UnsupportedModifier(String),
}

/// `:3`, `:3-5`, or nothing for an empty file.
fn lines(start: usize, end: usize) -> String {
    match (start, end) {
        (0, _) => String::new(),
        _ if end > start => format!(":{start}-{end}"),
        _ => format!(":{start}"),
    }
}

fn show_text(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!("\n  | {text}")
    }
}

impl ParseError {
    pub(crate) fn new(
        file: &str,
        line: usize,
        end_line: usize,
        text: &str,
        kind: ParseErrorKind,
    ) -> Self {
        ParseError {
            file: file.to_owned(),
            line,
            end_line: end_line.max(line),
            text: text.trim_end().to_owned(),
            kind,
        }
    }
}
