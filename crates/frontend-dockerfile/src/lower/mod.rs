//! Lowering: the last step of the frontend, from a [`BuildPlan`] to the build graph.
//!
//! Every stage becomes a chain of ops on its base (an image source, an empty filesystem for
//! `scratch`, or the last op of another stage): RUN an exec op, COPY and ADD a file op of copy
//! actions (onto an empty base merged back for `--link`, as BuildKit does), WORKDIR a mkdir.
//! Metadata instructions (ENV, LABEL, CMD, …) change only the image config, which the plan has
//! already computed. Each op carries the Dockerfile lines it came from and a BuildKit-style
//! progress name in its metadata, which digests ignore.
//!
//! The build arguments a RUN can see are in its environment and so in its digest; a step that
//! cannot see an argument does not change when the argument does. Proxy arguments are the
//! exception: they reach the process but stay out of the digest (see
//! [`LoweredBuild::proxy_env`]).

mod build;
mod context;
mod copy;
mod describe;
mod error;
mod git;
mod paths;
mod run;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use img_llb::{Definition, Digest, OpRef};

use crate::stages::{BuildPlan, ImageConfig, Platform};

pub use error::LowerError;

/// What lowering needs besides the plan.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LowerOptions {
    /// The name of the build context's local source (`context`).
    pub context_name: String,
    /// The `.dockerignore` patterns ([`crate::IgnorePatterns::patterns`]); paths they match are
    /// left out of the build context.
    pub exclude_patterns: Vec<String>,
    /// Image references as written in the Dockerfile (after ARG expansion) mapped to the pinned
    /// `name@sha256:…` the caller resolved, so that an image source changes its digest when the
    /// image changes; a reference missing here is used as written.
    pub resolved_images: BTreeMap<String, String>,
    /// As `resolved_images`, for one platform: the same reference resolves to another
    /// manifest per platform (`FROM --platform=$BUILDPLATFORM busybox` and `FROM busybox` in
    /// one Dockerfile). Looked up first.
    pub resolved_platform_images: BTreeMap<(String, Platform), String>,
    /// The platform of images named by `COPY --from` and `RUN --mount from=`.
    pub target_platform: Platform,
    /// Names given with `--build-context name=<dir>`: a `COPY --from` or `RUN --mount from=`
    /// naming one of them reads that local directory instead of an image.
    pub local_contexts: BTreeSet<String>,
}

impl Default for LowerOptions {
    fn default() -> Self {
        LowerOptions {
            context_name: "context".to_string(),
            exclude_patterns: Vec::new(),
            resolved_images: BTreeMap::new(),
            resolved_platform_images: BTreeMap::new(),
            target_platform: Platform::host(),
            local_contexts: BTreeSet::new(),
        }
    }
}

impl LowerOptions {
    /// The defaults: context `context`, no ignore patterns, references as written, the host
    /// platform.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the build context's name.
    pub fn context_name(mut self, name: impl Into<String>) -> Self {
        self.context_name = name.into();
        self
    }

    /// Sets the `.dockerignore` patterns.
    pub fn exclude_patterns(mut self, patterns: impl IntoIterator<Item = String>) -> Self {
        self.exclude_patterns = patterns.into_iter().collect();
        self
    }

    /// Pins the image written as `written` to `pinned` (`name@sha256:…`).
    pub fn resolved_image(mut self, written: impl Into<String>, pinned: impl Into<String>) -> Self {
        self.resolved_images.insert(written.into(), pinned.into());
        self
    }

    /// Pins the image written as `written`, used for `platform`, to `pinned`.
    pub fn resolved_platform_image(
        mut self,
        written: impl Into<String>,
        platform: Platform,
        pinned: impl Into<String>,
    ) -> Self {
        self.resolved_platform_images
            .insert((written.into(), platform), pinned.into());
        self
    }

    /// Sets the target platform.
    pub fn target_platform(mut self, platform: Platform) -> Self {
        self.target_platform = platform;
        self
    }

    /// Declares a local named build context.
    pub fn local_context(mut self, name: impl Into<String>) -> Self {
        self.local_contexts.insert(name.into());
        self
    }
}

/// The build graph of a plan, with what an exporter needs to turn its result into an image.
#[derive(Clone)]
#[non_exhaustive]
pub struct LoweredBuild {
    /// The graph; its output is the target stage's root filesystem.
    pub definition: Definition,
    /// The target stage's image config, history included (from the plan).
    pub image: ImageConfig,
    /// Every stage of the plan, in plan order (dependencies first, the target last).
    pub stages: Vec<LoweredStage>,
    /// The build context's source op, when the build reads the context.
    pub context: Option<OpRef>,
    proxy_env: BTreeMap<Digest, Vec<(String, String)>>,
}

/// One lowered stage.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoweredStage {
    /// The stage's index in the Dockerfile.
    pub index: usize,
    /// The stage's name, if it has one.
    pub name: Option<String>,
    /// What the chain of layers starts from (through parent stages).
    pub base: LoweredBase,
    /// The op whose output is the stage's filesystem; `None` for an empty filesystem (`FROM
    /// scratch` with nothing added).
    pub output: Option<OpRef>,
    /// The layer-producing steps from the base to the end of this stage, parent stages' first:
    /// one per RUN, COPY, ADD and WORKDIR that creates a directory.
    pub layers: Vec<LayerStep>,
}

/// What a stage's layers are stacked on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoweredBase {
    /// An empty filesystem: no layers below.
    Scratch,
    /// An image, whose own layers and history come first in the image.
    Image {
        /// The reference as pinned (or as written, when not resolved).
        reference: String,
        /// Its source op.
        op: OpRef,
    },
}

/// One step that adds a layer to the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LayerStep {
    /// The op whose output is the filesystem after the step.
    pub op: OpRef,
    /// The filesystem before the step; `None` for an empty one. The layer is the difference.
    pub parent: Option<OpRef>,
    /// The step's entry in the stage's image history (`history[i]`, whose `empty_layer` is
    /// false). Entries before the first step's come from the base image.
    pub history_index: usize,
    /// For `COPY --link` / `ADD --link`: the op with only the copied files, on an empty
    /// filesystem (the upper input of the merge `op`). Its whole content is the layer, so an
    /// exporter can take it as is instead of diffing `op` against `parent`.
    pub linked: Option<OpRef>,
}

/// The text formats of `img debug llb`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GraphFormat {
    /// The definition's stable JSON serialization.
    Json,
    /// Graphviz dot: one node per op, labelled with its instruction and location.
    Dot,
}

impl fmt::Debug for LoweredBuild {
    // Proxy URLs may carry credentials (`http://user:password@proxy`): show only the names.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proxy_names: BTreeMap<&Digest, Vec<&str>> = self
            .proxy_env
            .iter()
            .map(|(d, vars)| (d, vars.iter().map(|(k, _)| k.as_str()).collect()))
            .collect();
        f.debug_struct("LoweredBuild")
            .field("definition", &self.definition)
            .field("image", &self.image)
            .field("stages", &self.stages)
            .field("context", &self.context)
            .field("proxy_env", &proxy_names)
            .finish()
    }
}

impl LoweredBuild {
    /// The target stage.
    pub fn target(&self) -> &LoweredStage {
        // `lower` always records the target, last.
        &self.stages[self.stages.len() - 1]
    }

    /// The stage at `index` in the Dockerfile, if the target needs it.
    pub fn stage(&self, index: usize) -> Option<&LoweredStage> {
        self.stages.iter().find(|s| s.index == index)
    }

    /// The target's layer steps lined up with [`LoweredBuild::image`]'s history: entry `i` is
    /// the step that made `history[i]`'s layer, `None` for an empty layer and for the base
    /// image's own entries (whose layers the exporter takes from the base image).
    pub fn history_layers(&self) -> Vec<Option<&LayerStep>> {
        let mut out = vec![None; self.image.history.len()];
        for layer in &self.target().layers {
            if let Some(slot) = out.get_mut(layer.history_index) {
                *slot = Some(layer);
            }
        }
        out
    }

    /// The proxy variables (`HTTP_PROXY`, …) to add to the environment of the exec op with
    /// `digest`. They are build arguments no ARG declares, so, as in BuildKit, they reach the
    /// process without being part of its cache key (the op's digest).
    pub fn proxy_env(&self, digest: &Digest) -> &[(String, String)] {
        self.proxy_env.get(digest).map_or(&[], Vec::as_slice)
    }

    /// The graph rendered for `img debug llb --format`.
    pub fn render(&self, format: GraphFormat) -> String {
        match format {
            GraphFormat::Json => self.definition.to_json(),
            GraphFormat::Dot => self.definition.to_dot(),
        }
    }
}

/// Lowers a build plan to the build graph whose output is the target stage's filesystem.
pub fn lower(plan: &BuildPlan, options: &LowerOptions) -> Result<LoweredBuild, LowerError> {
    build::Lowerer::new(plan, options).run()
}
