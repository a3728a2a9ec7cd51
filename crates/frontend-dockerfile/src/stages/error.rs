//! The error of planning a build from a Dockerfile.

use crate::instructions::{InstructionError, Location};
use crate::parser::ParseError;
use crate::shell::ShellError;
use img_llb::PlatformError;

/// The error the caller's base-image lookup returns.
pub type BaseImageError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a Dockerfile cannot be planned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrontendError {
    /// The Dockerfile text does not parse.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// An instruction is invalid.
    #[error(transparent)]
    Instruction(#[from] InstructionError),
    /// An instruction other than ARG comes before the first FROM.
    #[error("{location}: no build stage in current context: the first instruction must be FROM (only ARG may come before it), found {keyword} (in `{}`)", location.original)]
    FromFirst {
        /// The instruction.
        location: Box<Location>,
        /// Its keyword.
        keyword: &'static str,
    },
    /// `FROM NAME` where NAME is a local directory given with `--build-context`.
    #[error("{location}: FROM {name}: the build context {name:?} is a local directory, which img cannot start a stage from; use COPY --from={name} (or give docker-image://REF)")]
    FromLocalContext {
        /// The FROM line.
        location: Box<Location>,
        /// The context's name.
        name: String,
    },
    /// No FROM at all.
    #[error("{file}: dockerfile contains no stages to build; add a FROM instruction, such as FROM scratch")]
    NoStages {
        /// The Dockerfile's name.
        file: String,
    },
    /// `--target` names no stage.
    #[error("target stage {target:?} could not be found{}; the stages are: {}", suggestion.as_ref().map(|s| format!(" (did you mean {s}?)")).unwrap_or_default(), available.join(", "))]
    TargetNotFound {
        /// The target asked for.
        target: String,
        /// The closest stage name, if one is close.
        suggestion: Option<String>,
        /// The names (or indexes, for unnamed stages) of the stages.
        available: Vec<String>,
    },
    /// Stages that depend on each other.
    #[error("{location}: circular dependency between stages: {}", chain.join(" -> "))]
    Cycle {
        /// The stages in the cycle, the first repeated at the end.
        chain: Vec<String>,
        /// The instruction that closes the cycle.
        location: Box<Location>,
    },
    /// `COPY --from` or a mount `from` naming a stage defined later.
    #[error("{location}: cannot {} stage {source_stage:?}{}, it needs to be defined before current stage {current_stage:?}; move it above", if *mount { "mount from" } else { "copy from" }, if *mount { " in RUN" } else { "" })]
    StageOrder {
        /// The instruction.
        location: Box<Location>,
        /// The stage named in `from`.
        source_stage: String,
        /// The stage being built.
        current_stage: String,
        /// True for `RUN --mount from=`, false for `COPY --from`.
        mount: bool,
    },
    /// An ONBUILD trigger of a base image that holds more than one instruction.
    #[error("{location}: ONBUILD trigger {trigger:?} of base image {image} should be a single expression")]
    TriggerNotSingle {
        /// The FROM line that ran the trigger.
        location: Box<Location>,
        /// The base image.
        image: String,
        /// The trigger text.
        trigger: String,
    },
    /// A `# check=` directive (or `BUILDKIT_DOCKERFILE_CHECK`) that does not parse.
    #[error("{file}: failed to parse check options: {reason}")]
    CheckOptions {
        /// The Dockerfile's name.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// Build checks failed and `# check=error=true` makes them fatal.
    #[error("lint violation found for rules: {} (error=true in the check options): {}", rule_names(warnings), warnings.iter().map(|w| w.to_string()).collect::<Vec<_>>().join("; "))]
    ChecksFailed {
        /// The findings.
        warnings: Vec<crate::stages::Warning>,
    },
    /// `--from=<n>` beyond the last stage.
    #[error("{location}: invalid stage index {index}: the Dockerfile has {count} stages (in `{}`)", location.original)]
    StageIndex {
        /// The instruction.
        location: Box<Location>,
        /// The index given.
        index: usize,
        /// How many stages there are.
        count: usize,
    },
    /// A word whose variables cannot be expanded.
    #[error("{location}: cannot expand {word:?} (in `{}`)", location.original)]
    Expansion {
        /// The instruction.
        location: Box<Location>,
        /// The word.
        word: String,
        /// Why.
        #[source]
        source: Box<ShellError>,
    },
    /// A FROM whose image is empty once expanded.
    #[error("{location}: base name ({word}) should not be blank; define the ARG it uses before FROM or pass it with --build-arg")]
    BlankBaseName {
        /// The FROM line.
        location: Box<Location>,
        /// The image word as written.
        word: String,
    },
    /// A bad `--platform` or platform option.
    #[error("{location}: bad platform in `{}`", location.original)]
    Platform {
        /// Where the platform was given.
        location: Box<Location>,
        /// What is wrong.
        #[source]
        source: PlatformError,
    },
    /// The caller could not give a base image's config.
    #[error("{location}: cannot get the config of base image {reference} for {platform}")]
    BaseImage {
        /// The FROM line.
        location: Box<Location>,
        /// The image reference.
        reference: String,
        /// The platform asked for.
        platform: String,
        /// The caller's error.
        #[source]
        source: BaseImageError,
    },
    /// An ONBUILD trigger of a base image that does not parse.
    #[error("{location}: ONBUILD trigger {trigger:?} of base image {image} is invalid")]
    Trigger {
        /// The FROM line that ran the trigger.
        location: Box<Location>,
        /// The base image.
        image: String,
        /// The trigger text.
        trigger: String,
        /// Why.
        #[source]
        source: Box<FrontendError>,
    },
}

fn rule_names(warnings: &[crate::stages::Warning]) -> String {
    let mut rules: Vec<&str> = warnings.iter().map(|w| w.rule).collect();
    rules.sort_unstable();
    rules.dedup();
    rules.join(", ")
}
