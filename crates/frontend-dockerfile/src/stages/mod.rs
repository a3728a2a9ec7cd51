//! Stages, ARG scoping, variable substitution and the image config: the step after typed
//! instructions. It decides which stages the target needs, gives every instruction its
//! expanded words and the state it runs in (environment, shell, working directory, user), and
//! computes the image config and history each stage describes. Lowering to the build graph
//! reads the resulting [`BuildPlan`] and nothing else.
//!
//! Base images are the caller's business: planning asks a [`BaseImageResolver`] for their
//! configs (for their environment, working directory, and ONBUILD triggers) and never pulls.

mod apply;
mod config;
mod dispatch;
mod error;
mod expand;
mod lint;
mod lint_from;
mod rules;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::ast::Dockerfile;
use crate::dockerignore::IgnorePatterns;
use crate::instructions::{Instruction, Location};

pub use config::{
    ContainerConfig, Empty, HealthcheckConfig, HistoryEntry, ImageConfig, DEFAULT_PATH,
};
pub use error::{BaseImageError, FrontendError};
pub use img_llb::{Platform, PlatformError};
pub use lint::Warning;

/// What the build was asked for, besides the Dockerfile.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BuildOptions {
    /// The Dockerfile's name, used in errors and warnings (`Dockerfile` by default).
    pub file_name: String,
    /// `--build-arg` values.
    pub build_args: BTreeMap<String, String>,
    /// `--target`: the stage to build; the last stage by default.
    pub target: Option<String>,
    /// The platform to build for; the build platform by default.
    pub target_platform: Option<Platform>,
    /// The platform the build runs on; the host by default.
    pub build_platform: Platform,
    /// `--label` values, set on the target stage's image on top of its own labels.
    pub labels: BTreeMap<String, String>,
    /// The context's `.dockerignore` patterns, for the `CopyIgnoredFile` check.
    pub dockerignore: Option<IgnorePatterns>,
    /// `--build-context NAME=…`: a `FROM NAME` or `--from=NAME` uses these instead of the
    /// stage or image of that name, as BuildKit resolves named contexts first.
    pub named_contexts: BTreeMap<String, NamedContext>,
}

/// What a named build context stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NamedContext {
    /// An image (`docker-image://REF`): used as if `REF` were written.
    Image {
        /// The reference.
        reference: String,
    },
    /// A local directory the lowering knows by the context's name
    /// ([`crate::LowerOptions::local_context`]), for `COPY --from` and `RUN --mount from=`.
    Local,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            file_name: "Dockerfile".to_string(),
            build_args: BTreeMap::new(),
            target: None,
            target_platform: None,
            build_platform: Platform::host(),
            labels: BTreeMap::new(),
            dockerignore: None,
            named_contexts: BTreeMap::new(),
        }
    }
}

impl BuildOptions {
    /// Options with the defaults: no build args, the last stage, the host platform.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the Dockerfile's name for messages.
    pub fn file_name(mut self, name: impl Into<String>) -> Self {
        self.file_name = name.into();
        self
    }

    /// Adds a `--build-arg`.
    pub fn build_arg(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.build_args.insert(name.into(), value.into());
        self
    }

    /// Sets `--target`.
    pub fn target(mut self, stage: impl Into<String>) -> Self {
        self.target = Some(stage.into());
        self
    }

    /// Sets the target platform.
    pub fn target_platform(mut self, platform: Platform) -> Self {
        self.target_platform = Some(platform);
        self
    }

    /// Sets the build platform.
    pub fn build_platform(mut self, platform: Platform) -> Self {
        self.build_platform = platform;
        self
    }

    /// Adds a named build context (`--build-context NAME=…`).
    pub fn named_context(mut self, name: impl Into<String>, context: NamedContext) -> Self {
        self.named_contexts.insert(name.into(), context);
        self
    }

    /// Adds a `--label`.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Sets the context's `.dockerignore` patterns, which COPY and ADD sources are checked
    /// against.
    pub fn dockerignore(mut self, patterns: IgnorePatterns) -> Self {
        self.dockerignore = Some(patterns);
        self
    }
}

/// Gives the config of a base image, which the caller pulls or finds in its store.
pub trait BaseImageResolver {
    /// The config of `reference` (as written in FROM, variables expanded) for `platform`;
    /// `Ok(None)` when the caller has none to give, which plans the stage as if the image had
    /// an empty config.
    fn image_config(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<Option<ImageConfig>, BaseImageError>;
}

impl<F> BaseImageResolver for F
where
    F: Fn(&str, &Platform) -> Result<Option<ImageConfig>, BaseImageError>,
{
    fn image_config(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<Option<ImageConfig>, BaseImageError> {
        self(reference, platform)
    }
}

/// The validated plan of a build: the stages the target needs, dependencies first, the target
/// last.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct BuildPlan {
    /// The stages to build, each after every stage it uses.
    pub stages: Vec<Stage>,
    /// The global ARGs (declared before the first FROM) with their values, and the automatic
    /// platform args.
    pub global_args: BTreeMap<String, String>,
    /// Findings of the build checks and the parser.
    pub warnings: Vec<Warning>,
}

impl BuildPlan {
    /// The target stage.
    pub fn target(&self) -> &Stage {
        // A plan is only built with its target in it (see `dispatch::Planner::finish`).
        &self.stages[self.stages.len() - 1]
    }

    /// The stage at `index` in the Dockerfile, if the target needs it.
    pub fn stage(&self, index: usize) -> Option<&Stage> {
        self.stages.iter().find(|s| s.index == index)
    }
}

/// One stage of the plan.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Stage {
    /// The stage's position among the Dockerfile's stages (0 is the first FROM).
    pub index: usize,
    /// The stage name (`AS name`), lower-cased.
    pub name: Option<String>,
    /// The FROM line.
    #[serde(skip)]
    pub location: Location,
    /// What the stage starts from.
    pub base: StageBase,
    /// The platform the stage is built for (`FROM --platform`, or the target platform).
    pub platform: Platform,
    /// The instructions after FROM, expanded, with base-image ONBUILD triggers first.
    pub instructions: Vec<PlannedInstruction>,
    /// The image config the stage describes, with its history.
    pub image: ImageConfig,
}

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StageBase {
    /// `FROM scratch`: an empty filesystem.
    Scratch,
    /// An image reference, variables expanded (normalising it is the caller's business).
    Image {
        /// The reference as written, expanded.
        reference: String,
    },
    /// An earlier stage.
    Stage {
        /// Its index in the Dockerfile.
        index: usize,
    },
}

/// Where `COPY --from` or `RUN --mount from=` takes files from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SourceRef {
    /// A stage of this Dockerfile, by index.
    Stage {
        /// Its index in the Dockerfile.
        index: usize,
    },
    /// An image (or a named build context of that name, if the caller has one).
    Image {
        /// The reference as written, expanded.
        reference: String,
    },
}

/// An instruction of a stage, ready to lower.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct PlannedInstruction {
    /// The instruction, its words expanded (never the command of RUN, CMD or ENTRYPOINT).
    pub instruction: Instruction,
    /// Where it is (for an ONBUILD trigger of a base image: the FROM line).
    #[serde(skip)]
    pub location: Location,
    /// The state the instruction runs in, before its own effect.
    pub context: InstructionContext,
    /// The history entry it adds to the image config (ONBUILD adds none).
    pub history: Option<HistoryEntry>,
    /// For COPY: the resolved `--from`. For RUN: one entry per mount, in order, for mounts
    /// with `from`.
    pub sources: Vec<SourceRef>,
    /// True for an ONBUILD trigger of the base image, run right after FROM.
    pub from_trigger: bool,
}

/// The state an instruction runs in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct InstructionContext {
    /// The environment a RUN sees: the image's `Env`, then the ARG values in scope (this
    /// stage's and its parent stages') that ENV does not override.
    pub env: Vec<(String, String)>,
    /// Proxy build args (`HTTP_PROXY`, …) that no ARG declares: passed to RUN, but kept out of
    /// the history and the cache key.
    pub proxy_env: Vec<(String, String)>,
    /// The ARGs this stage declared so far, each with the value a RUN sees (empty when it has
    /// none); they key the cache and show in the RUN history as `|N k=v …`.
    pub args: Vec<(String, String)>,
    /// The shell that runs shell-form commands.
    pub shell: Vec<String>,
    /// The working directory (absolute).
    pub workdir: String,
    /// The user, if set.
    pub user: Option<String>,
}

/// What `--check` found: the findings of the build checks that the `# check=` options report,
/// and the error that stopped planning, if one did.
#[derive(Debug)]
#[non_exhaustive]
pub struct CheckReport {
    /// The findings, by line.
    pub warnings: Vec<Warning>,
    /// The planning error that ended the checking early, if any.
    pub error: Option<FrontendError>,
    /// True when the options say `error=true`: findings fail the build.
    pub error_on_warnings: bool,
}

impl CheckReport {
    /// True when the check fails: any finding, or a planning error.
    pub fn failed(&self) -> bool {
        !self.warnings.is_empty() || self.error.is_some()
    }
}

/// Evaluates the build checks of a parsed Dockerfile without building anything, as
/// `docker build --check` does: every stage is planned when `options` names no target (base
/// image configs are still asked for, since some checks need them). An error before any stage
/// is planned (invalid instructions, unreadable check options) is returned as such.
pub fn check(
    dockerfile: &Dockerfile,
    options: &BuildOptions,
    base_images: &dyn BaseImageResolver,
) -> Result<CheckReport, FrontendError> {
    Ok(dispatch::Planner::new(dockerfile, options, base_images)?.check())
}

/// Plans a parsed Dockerfile: selects the stages the target needs, scopes ARGs, expands words,
/// runs base-image ONBUILD triggers and computes each stage's image config.
pub fn plan(
    dockerfile: &Dockerfile,
    options: &BuildOptions,
    base_images: &dyn BaseImageResolver,
) -> Result<BuildPlan, FrontendError> {
    dispatch::Planner::new(dockerfile, options, base_images)?.run()
}
