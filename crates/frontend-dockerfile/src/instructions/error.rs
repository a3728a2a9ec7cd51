//! The error of turning a syntax-tree node into a typed instruction.

use std::fmt;

use crate::instructions::mount::MountError;

/// Where an instruction is: the Dockerfile's name, its first line and the line as written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    /// The Dockerfile's name as the caller gave it (`Dockerfile`, `build/app.Dockerfile`).
    pub file: String,
    /// The 1-based first line of the instruction.
    pub line: usize,
    /// The 1-based last line (continuations and heredoc bodies included).
    pub end_line: usize,
    /// The instruction as written, continuations joined.
    pub original: String,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// An instruction that cannot be turned into a typed instruction, with where it is.
#[derive(Debug, thiserror::Error)]
#[error("{location}: {kind} (in `{}`)", location.original)]
pub struct InstructionError {
    /// Where the instruction is.
    pub location: Box<Location>,
    /// What is wrong with it (part of the message, so not a separate source).
    pub kind: InstructionErrorKind,
}

/// What is wrong with an instruction.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InstructionErrorKind {
    /// The keyword is not a Dockerfile instruction.
    #[error("unknown instruction: {}{}", shown(keyword), did_you_mean(suggestion))]
    UnknownInstruction {
        /// The keyword as written.
        keyword: String,
        /// The closest known instruction, if one is close.
        suggestion: Option<String>,
    },
    /// A flag this instruction does not take.
    #[error("unknown flag: --{flag}{}", did_you_mean_flag(suggestion))]
    UnknownFlag {
        /// The flag name without `--`.
        flag: String,
        /// The closest flag this instruction takes, if one is close.
        suggestion: Option<String>,
    },
    /// A non-repeatable flag was given twice.
    #[error("duplicate flag specified: --{flag}")]
    DuplicateFlag {
        /// The flag name without `--`.
        flag: String,
    },
    /// A string flag without `=value`.
    #[error("missing a value on flag: --{flag} (write --{flag}=<value>)")]
    MissingFlagValue {
        /// The flag name without `--`.
        flag: String,
    },
    /// A boolean flag whose value is neither true nor false.
    #[error("expecting boolean value for flag --{flag}, not: {value}")]
    NotBoolean {
        /// The flag name without `--`.
        flag: String,
        /// The value given.
        value: String,
    },
    /// A flag value outside its allowed set or syntax.
    #[error("invalid value {value:?} for --{flag}: expected {expected}")]
    InvalidFlagValue {
        /// The flag name without `--`.
        flag: String,
        /// The value given.
        value: String,
        /// What the flag accepts.
        expected: &'static str,
    },
    /// A feature that only BuildKit's labs frontend has.
    #[error(
        "{feature} is only supported in the Dockerfile labs frontend, which img does not provide"
    )]
    LabsOnly {
        /// The feature, such as `the --device flag of RUN`.
        feature: &'static str,
    },
    /// The wrong number of arguments.
    #[error("{instruction} requires {expected}")]
    ArgumentCount {
        /// The instruction keyword, upper case.
        instruction: &'static str,
        /// How many it takes, such as `exactly one argument`.
        expected: &'static str,
    },
    /// A stage name that is not allowed.
    #[error("invalid name for build stage: {name:?}, name can't start with a number or contain symbols (allowed: a-z, 0-9, '-', '_', '.', starting with a letter)")]
    InvalidStageName {
        /// The name as written.
        name: String,
    },
    /// An ENV, LABEL or ARG with an empty name.
    #[error("{instruction} names can not be blank")]
    BlankName {
        /// The instruction keyword, upper case.
        instruction: &'static str,
    },
    /// An instruction that only takes the JSON (exec) form.
    #[error(
        "{instruction} requires the arguments to be in JSON form, such as [\"/bin/sh\", \"-c\"]"
    )]
    JsonFormRequired {
        /// The instruction keyword, upper case.
        instruction: &'static str,
    },
    /// An empty VOLUME entry.
    #[error("VOLUME specified can not be an empty string")]
    EmptyVolume,
    /// A HEALTHCHECK type other than CMD or NONE.
    #[error("unknown type {kind:?} in HEALTHCHECK (try CMD)")]
    UnknownHealthcheckType {
        /// The type word as written.
        kind: String,
    },
    /// `HEALTHCHECK NONE` with more words.
    #[error("HEALTHCHECK NONE takes no arguments")]
    HealthcheckNoneArguments,
    /// `HEALTHCHECK CMD` without a command.
    #[error("missing command after HEALTHCHECK CMD")]
    MissingHealthcheckCommand,
    /// A HEALTHCHECK duration that is not a Go duration, or is below the minimum.
    #[error("invalid duration {value:?} for --{flag}: {reason}")]
    InvalidDuration {
        /// The flag name without `--`.
        flag: &'static str,
        /// The value given.
        value: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// `--retries` that is not a non-negative integer.
    #[error("invalid value {value:?} for --retries: expected a non-negative integer")]
    InvalidRetries {
        /// The value given.
        value: String,
    },
    /// A trigger that ONBUILD does not allow.
    #[error("{trigger} isn't allowed as an ONBUILD trigger")]
    ForbiddenTrigger {
        /// The trigger keyword, upper case.
        trigger: String,
    },
    /// A `--chmod` value that is neither octal nor symbolic.
    #[error("invalid chmod parameter {value:?}: expected an octal mode such as 0755 or a symbolic one such as u=rwX,go=rX")]
    InvalidChmod {
        /// The value given.
        value: String,
    },
    /// A heredoc where it cannot go.
    #[error("{instruction} cannot accept a heredoc as {position}")]
    HeredocNotAllowed {
        /// The instruction keyword, upper case.
        instruction: &'static str,
        /// Where the heredoc was, such as `a destination`.
        position: &'static str,
    },
    /// Several sources, or a wildcard, copied to a destination that is not a directory.
    #[error("when using {instruction} with more than one source file, the destination must be a directory and end with a /")]
    DestinationNotDirectory {
        /// The instruction keyword, upper case.
        instruction: &'static str,
    },
    /// An EXPOSE word that is not `port[-port][/tcp|udp|sctp]`.
    #[error("invalid port {value:?}: expected port[-port][/tcp|/udp|/sctp], ports 0-65535")]
    InvalidPort {
        /// The word, expanded.
        value: String,
    },
    /// A STOPSIGNAL that is neither a signal name nor a number.
    #[error("invalid signal {value:?}: expected a signal name such as SIGTERM or a number")]
    InvalidSignal {
        /// The value, expanded.
        value: String,
    },
    /// A word that is empty once its variables are expanded.
    #[error("{instruction} needs a non-empty value once variables are expanded")]
    EmptyValue {
        /// The instruction keyword, upper case.
        instruction: &'static str,
    },
    /// A URL source in COPY.
    #[error("source can't be a URL for COPY: {source_url} (use ADD to download it)")]
    UrlSourceInCopy {
        /// The source.
        source_url: String,
    },
    /// `ADD --checksum` with several sources.
    #[error(
        "checksum can't be specified for multiple sources; use one ADD per checksummed source"
    )]
    ChecksumWithSeveralSources,
    /// `COPY --from` with a variable that is not a global ARG.
    #[error("variable expansion is not supported for --from ({value}), define a new stage with FROM using ARG from global scope as a workaround")]
    CopyFromVariable {
        /// The value as written.
        value: String,
    },
    /// A mount whose target is the root directory.
    #[error("invalid mount target {target:?}: a mount cannot cover /")]
    InvalidMountTarget {
        /// The target as written.
        target: String,
    },
    /// A bad `RUN --mount` value.
    #[error(transparent)]
    Mount(#[from] MountError),
}

/// An empty keyword (a line holding only an escape) is shown as `""` rather than as nothing.
fn shown(keyword: &str) -> &str {
    if keyword.is_empty() {
        "\"\""
    } else {
        keyword
    }
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!(" (did you mean {s}?)"),
        None => String::new(),
    }
}

fn did_you_mean_flag(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!(" (did you mean --{s}?)"),
        None => String::new(),
    }
}

/// The closest of `candidates` to `word`, when it is close enough to be a likely typo.
pub(crate) fn suggest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let lower = word.to_ascii_lowercase();
    // BuildKit suggests within an edit distance of 2; shorter words need a closer match so
    // that `X` does not suggest every two-letter word.
    let threshold = (lower.chars().count().saturating_sub(1)).clamp(1, 2);
    candidates
        .into_iter()
        .map(|c| (strsim::osa_distance(&lower, &c.to_ascii_lowercase()), c))
        .filter(|(d, _)| *d > 0 && *d <= threshold)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_words_only() {
        let words = ["from", "run", "copy", "entrypoint"];
        assert_eq!(suggest("FORM", words).as_deref(), Some("from"));
        assert_eq!(suggest("cpy", words).as_deref(), Some("copy"));
        assert_eq!(suggest("ENTRYPONT", words).as_deref(), Some("entrypoint"));
        assert_eq!(suggest("banana", words), None);
    }
}
