//! The Dockerfile frontend: the first stage of img's pipeline.
//!
//! It turns a Dockerfile and the build options into the build graph (`img-llb`) plus the image
//! config the Dockerfile describes. Like BuildKit's frontend it works in separate steps:
//! `parser` turns text into a generic syntax tree, `instructions` turns that tree into typed
//! instructions, `shell` expands variables in words with Docker's rules, and `lower` turns the
//! typed instructions into build-graph ops.
//!
//! Used alone, with no image store: a resolver closure answers `FROM`'s base-image configs
//! (here there are none to give, so every base plans with an empty config).
//!
//! ```
//! use img_frontend_dockerfile::{lower, parse, plan, BuildOptions, LowerOptions, Platform};
//!
//! let dockerfile = parse("FROM scratch\nCOPY app /usr/bin/app\nCMD [\"app\"]\n", "Dockerfile")?;
//! let options = BuildOptions::new().target_platform(Platform::parse("linux/arm64")?);
//! let no_bases = |_: &str, _: &Platform| Ok(None);
//! let build_plan = plan(&dockerfile, &options, &no_bases)?;
//! let lowered = lower(&build_plan, &LowerOptions::new())?;
//!
//! assert_eq!(lowered.image.architecture, "arm64");
//! assert_eq!(lowered.image.config.cmd, Some(vec!["app".to_string()]));
//! assert!(lowered.context.is_some(), "COPY reads the build context");
//! println!("{}", lowered.definition.to_dot());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod ast;
mod dockerignore;
mod gopath;
mod instructions;
mod lower;
mod parser;
mod shell;
mod stages;

pub use ast::{DirectiveLines, Directives, Dockerfile, Heredoc, Node, ParseWarning};
pub use dockerignore::{ignore_file_for, DockerignoreError, IgnorePatterns};
pub use instructions::{
    parse_instruction, AddInstruction, ArgDeclaration, ArgInstruction, CacheSharing, Chmod,
    ChmodFlag, CommandInstruction, CommandLine, CopyInstruction, ExposeInstruction, FileSources,
    FromInstruction, HealthCheck, HealthcheckInstruction, InlineSource, Instruction,
    InstructionError, InstructionErrorKind, KeyValue, KeyValueInstruction, Location,
    MaintainerInstruction, Mount, MountError, MountType, NetworkMode, OnBuildInstruction,
    RunInstruction, RunScript, SecurityMode, ShellInstruction, StopSignalInstruction,
    SymbolicClause, SymbolicOp, SymbolicPerms, UserInstruction, VolumeInstruction,
    WorkdirInstruction,
};
pub use lower::{
    lower, GraphFormat, LayerStep, LowerError, LowerOptions, LoweredBase, LoweredBuild,
    LoweredStage,
};
pub use parser::{parse, LexError, ParseError, ParseErrorKind};
pub use shell::{Environment, Expansion, Lexer, ShellError};
pub use stages::{
    check, plan, BaseImageError, BaseImageResolver, BuildOptions, BuildPlan, CheckReport,
    ContainerConfig, Empty, FrontendError, HealthcheckConfig, HistoryEntry, ImageConfig,
    InstructionContext, NamedContext, PlannedInstruction, Platform, PlatformError, SourceRef,
    Stage, StageBase, Warning, DEFAULT_PATH,
};

/// Any error of this crate: what turning a Dockerfile into a build graph can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Parsing, checking or planning the Dockerfile failed.
    #[error(transparent)]
    Frontend(#[from] FrontendError),
    /// Lowering the plan to the build graph failed.
    #[error(transparent)]
    Lower(#[from] LowerError),
    /// The `.dockerignore` file is invalid.
    #[error(transparent)]
    Dockerignore(#[from] DockerignoreError),
    /// A word could not be expanded.
    #[error(transparent)]
    Shell(#[from] ShellError),
}

impl From<ParseError> for Error {
    fn from(error: ParseError) -> Self {
        Error::Frontend(error.into())
    }
}

impl From<InstructionError> for Error {
    fn from(error: InstructionError) -> Self {
        Error::Frontend(error.into())
    }
}
