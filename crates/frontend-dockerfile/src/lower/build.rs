//! The stage walk of lowering: each stage's chain of ops, the shared sources, and the layer
//! bookkeeping the exporter reads.

use std::collections::BTreeMap;

use img_llb::{
    DefinitionBuilder, Digest, FileOp, ImageSource, LocalSource, MkdirAction, Op, OpMetadata,
    OpRef, Platform as LlbPlatform, SourceOp,
};

use crate::instructions::{Instruction, Location};
use crate::lower::describe::{instruction_text, StepCounter};
use crate::lower::{
    context, paths, LayerStep, LowerError, LowerOptions, LoweredBase, LoweredBuild, LoweredStage,
};
use crate::stages::{BuildPlan, PlannedInstruction, Platform, SourceRef, Stage, StageBase};

/// Lowers one plan.
pub(crate) struct Lowerer<'a> {
    pub(super) plan: &'a BuildPlan,
    pub(super) options: &'a LowerOptions,
    pub(super) graph: DefinitionBuilder,
    pub(super) stages: BTreeMap<usize, LoweredStage>,
    pub(super) context: Option<OpRef>,
    pub(super) proxy_env: BTreeMap<Digest, Vec<(String, String)>>,
    follow_paths: Vec<String>,
}

impl<'a> Lowerer<'a> {
    pub(crate) fn new(plan: &'a BuildPlan, options: &'a LowerOptions) -> Lowerer<'a> {
        Lowerer {
            plan,
            options,
            graph: DefinitionBuilder::new(),
            stages: BTreeMap::new(),
            context: None,
            proxy_env: BTreeMap::new(),
            follow_paths: context::follow_paths(plan),
        }
    }

    pub(crate) fn run(mut self) -> Result<LoweredBuild, LowerError> {
        let mut order = Vec::with_capacity(self.plan.stages.len());
        for stage in &self.plan.stages {
            let lowered = self.lower_stage(stage)?;
            order.push(stage.index);
            self.stages.insert(stage.index, lowered);
        }
        let target = self.plan.target();
        let root = match self.stages.get(&target.index).and_then(|s| s.output) {
            Some(op) => op,
            None => self.empty_fs()?,
        };
        let definition = self.graph.build(root)?;
        let stages = order.iter().filter_map(|i| self.stages.remove(i)).collect();
        // Keep only what the definition holds (every op is reachable today; this keeps the
        // invariant if that changes).
        let proxy_env = self
            .proxy_env
            .into_iter()
            .filter(|(d, _)| definition.op(d).is_some())
            .collect();
        let context = self.context.filter(|c| definition.op(&c.digest).is_some());
        Ok(LoweredBuild {
            definition,
            image: target.image.clone(),
            stages,
            context,
            proxy_env,
        })
    }

    fn lower_stage(&mut self, stage: &Stage) -> Result<LoweredStage, LowerError> {
        let mut steps = StepCounter::new(self.plan, stage);
        let (mut current, base, mut layers) = match &stage.base {
            StageBase::Scratch => (None, LoweredBase::Scratch, Vec::new()),
            StageBase::Image { reference } => {
                let pinned = self.pinned(reference, &stage.platform);
                let description = steps.next(&format!("FROM {pinned}"), false);
                let metadata = steps.metadata(description, &stage.location);
                let image = ImageSource {
                    reference: pinned.clone(),
                    platform: llb_platform(&stage.platform),
                };
                let op = self.graph.add(SourceOp::Image(image), metadata)?;
                let base = LoweredBase::Image {
                    reference: pinned,
                    op,
                };
                (Some(op), base, Vec::new())
            }
            StageBase::Stage { index } => {
                let parent = self.stage_ref(*index, &stage.location)?;
                (parent.output, parent.base.clone(), parent.layers.clone())
            }
        };
        // The stage's history is the base's (and parent stages') then one entry per planned
        // instruction that writes one.
        let own_entries = stage
            .instructions
            .iter()
            .filter(|p| p.history.is_some())
            .count();
        let mut history_index = stage.image.history.len().saturating_sub(own_entries);
        for planned in &stage.instructions {
            let entry = planned.history.as_ref().map(|_| history_index);
            if entry.is_some() {
                history_index += 1;
            }
            let Some(op) = self.lower_instruction(current, planned, &mut steps)? else {
                continue;
            };
            if let Some(history_index) = entry {
                let linked = match self.graph.op(&op.digest) {
                    Some(Op::Merge(merge)) => merge.inputs.last().copied(),
                    _ => None,
                };
                layers.push(LayerStep {
                    op,
                    parent: current,
                    history_index,
                    linked,
                });
            }
            current = Some(op);
        }
        Ok(LoweredStage {
            index: stage.index,
            name: stage.name.clone(),
            base,
            output: current,
            layers,
        })
    }

    /// The op a filesystem-changing instruction adds on `current`, or `None` for an
    /// instruction that changes only the image config.
    fn lower_instruction(
        &mut self,
        current: Option<OpRef>,
        planned: &PlannedInstruction,
        steps: &mut StepCounter,
    ) -> Result<Option<OpRef>, LowerError> {
        let location = &planned.location;
        let text = instruction_text(location, &planned.instruction);
        match &planned.instruction {
            Instruction::Run(run) => self.lower_run(current, planned, run, steps).map(Some),
            Instruction::Copy(copy) => self.lower_copy(current, planned, copy, steps).map(Some),
            Instruction::Add(add) => self.lower_add(current, planned, add, steps).map(Some),
            Instruction::Workdir(workdir) => {
                let wd = if workdir.path.starts_with('/') {
                    paths::absolute(&workdir.path)
                } else {
                    paths::absolute(&format!("{}/{}", planned.context.workdir, workdir.path))
                };
                // BuildKit counts every WORKDIR as a step but creates only a directory other
                // than `/`, owned by the current USER (names resolved in the filesystem).
                let description = steps.next(&text, planned.from_trigger);
                if wd == "/" {
                    return Ok(None);
                }
                let owner = match &planned.context.user {
                    Some(user) => Some(crate::lower::copy::parse_owner(user, location)?),
                    None => None,
                };
                let op = FileOp::new(current).with_action(MkdirAction {
                    path: wd,
                    mode: 0o755,
                    make_parents: true,
                    owner,
                });
                let metadata = steps.metadata(description, location);
                Ok(Some(self.graph.add(op, metadata)?))
            }
            _ => Ok(None),
        }
    }

    /// The pinned form of an image reference for `platform`, or the reference as written.
    pub(super) fn pinned(&self, reference: &str, platform: &Platform) -> String {
        self.options
            .resolved_platform_images
            .get(&(reference.to_owned(), platform.clone()))
            .or_else(|| self.options.resolved_images.get(reference))
            .cloned()
            .unwrap_or_else(|| reference.to_string())
    }

    /// An image source op, or a local source op when `reference` names a local build context.
    fn image_or_local(
        &mut self,
        reference: &str,
        platform: &Platform,
        metadata: OpMetadata,
    ) -> Result<OpRef, LowerError> {
        let op = if self.options.local_contexts.contains(reference) {
            SourceOp::Local(LocalSource::new(reference))
        } else {
            SourceOp::Image(ImageSource {
                reference: self.pinned(reference, platform),
                platform: llb_platform(platform),
            })
        };
        Ok(self.graph.add(op, metadata)?)
    }

    /// The filesystem a `--from` names: a stage's output, an image, or a local context.
    pub(super) fn source_fs(
        &mut self,
        source: &SourceRef,
        location: &Location,
    ) -> Result<OpRef, LowerError> {
        match source {
            SourceRef::Stage { index } => match self.stage_ref(*index, location)?.output {
                Some(op) => Ok(op),
                None => self.empty_fs(),
            },
            SourceRef::Image { reference } => {
                let pinned = self.pinned(reference, &self.options.target_platform);
                let metadata = OpMetadata {
                    location: Some(crate::lower::describe::source_location(location)),
                    ..OpMetadata::described(format!("FROM {pinned}"))
                };
                let platform = self.options.target_platform.clone();
                self.image_or_local(reference, &platform, metadata)
            }
        }
    }

    fn stage_ref(&self, index: usize, location: &Location) -> Result<&LoweredStage, LowerError> {
        self.stages
            .get(&index)
            .ok_or_else(|| LowerError::MissingStage {
                location: Box::new(location.clone()),
                index,
            })
    }

    /// The build context's source op, shared by the whole build.
    pub(super) fn context_fs(&mut self) -> Result<OpRef, LowerError> {
        if let Some(op) = self.context {
            return Ok(op);
        }
        let source = LocalSource {
            name: self.options.context_name.clone(),
            include_patterns: Vec::new(),
            exclude_patterns: self.options.exclude_patterns.clone(),
            follow_paths: self.follow_paths.clone(),
        };
        let op = self.graph.add(
            SourceOp::Local(source),
            OpMetadata::described("[internal] load build context"),
        )?;
        self.context = Some(op);
        Ok(op)
    }

    /// An empty filesystem, for `--from` a stage with nothing in it and a target without
    /// content.
    pub(super) fn empty_fs(&mut self) -> Result<OpRef, LowerError> {
        Ok(self.graph.add(
            Op::File(FileOp::new(None)),
            OpMetadata::described("[internal] empty filesystem"),
        )?)
    }
}

/// The graph's platform type from the frontend's.
pub(super) fn llb_platform(platform: &Platform) -> LlbPlatform {
    LlbPlatform {
        os: platform.os.clone(),
        architecture: platform.architecture.clone(),
        variant: platform.variant.clone(),
    }
}
