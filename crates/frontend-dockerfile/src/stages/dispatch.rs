//! The stage walk: global ARGs, stage selection from the target, dependency resolution with
//! cycle detection, and each stage's instructions in order.

use std::collections::{BTreeMap, BTreeSet};

use crate::ast::Dockerfile;
use crate::instructions::{
    location_of, parse_instruction, suggest, ArgInstruction, FromInstruction, Instruction,
    InstructionError, InstructionErrorKind, Location,
};
use crate::shell::Lexer;
use crate::stages::apply::{apply, resolve_workdir, StageState};
use crate::stages::config::{HistoryEntry, ImageConfig, DEFAULT_PATH};
use crate::stages::expand::{expand_instruction, Expanded, WordExpander};
use crate::stages::lint::{
    file_warnings, lint_in_context, lint_instruction, lint_repeated, CheckConfig, Warning, Warnings,
};
use crate::stages::lint_from;
use crate::stages::{
    BaseImageResolver, BuildOptions, BuildPlan, CheckReport, FrontendError, PlannedInstruction,
    Platform, SourceRef, Stage, StageBase,
};

/// Build args every RUN may use without an ARG, in any letter case; kept out of history and
/// cache keys.
const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "FTP_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
];

/// A stage as written.
struct StageSource {
    name: Option<String>,
    from: FromInstruction,
    location: Location,
    instructions: Vec<(Instruction, Location)>,
}

enum Visit {
    Pending,
    InProgress,
    Done(Box<DoneStage>),
}

struct DoneStage {
    stage: Stage,
    state: StageState,
    deps: BTreeSet<usize>,
}

/// Plans one build.
pub(crate) struct Planner<'a> {
    options: &'a BuildOptions,
    resolver: &'a dyn BaseImageResolver,
    lexer: Lexer,
    stages: Vec<StageSource>,
    global_env: BTreeMap<String, String>,
    target: usize,
    target_platform: Platform,
    proxies: BTreeMap<String, String>,
    visits: Vec<Visit>,
    chain: Vec<usize>,
    warnings: Warnings,
    checks: CheckConfig,
}

impl<'a> Planner<'a> {
    /// Types every instruction, splits the stages and evaluates the global ARGs.
    pub(crate) fn new(
        dockerfile: &Dockerfile,
        options: &'a BuildOptions,
        resolver: &'a dyn BaseImageResolver,
    ) -> Result<Planner<'a>, FrontendError> {
        let file = options.file_name.as_str();
        let mut warnings = Warnings::default();
        let syntax_override = options.build_args.get("BUILDKIT_SYNTAX");
        file_warnings(dockerfile, file, syntax_override, &mut warnings);
        let mut global_args: Vec<(ArgInstruction, Location)> = Vec::new();
        let mut stages: Vec<StageSource> = Vec::new();
        for node in &dockerfile.instructions {
            let instruction = parse_instruction(node, file)?;
            let location = location_of(node, file);
            lint_instruction(&instruction, &location, node, &mut warnings);
            match (instruction, stages.last_mut()) {
                (Instruction::From(from), _) => {
                    let earlier: Vec<&str> =
                        stages.iter().filter_map(|s| s.name.as_deref()).collect();
                    lint_from::stage_name(&from, &location, &earlier, &mut warnings);
                    stages.push(StageSource {
                        name: from.stage_name.clone(),
                        from,
                        location,
                        instructions: Vec::new(),
                    });
                }
                (Instruction::Arg(arg), None) => global_args.push((arg, location)),
                (other, None) => {
                    return Err(FrontendError::FromFirst {
                        location: Box::new(location),
                        keyword: other.keyword(),
                    })
                }
                (other, Some(stage)) => stage.instructions.push((other, location)),
            }
        }
        if stages.is_empty() {
            return Err(FrontendError::NoStages {
                file: file.to_string(),
            });
        }
        let target = match &options.target {
            None => stages.len() - 1,
            Some(t) => {
                let wanted = t.to_lowercase();
                // With a duplicate name, the last stage of that name is the one meant.
                stages
                    .iter()
                    .rposition(|s| s.name.as_deref() == Some(wanted.as_str()))
                    .ok_or_else(|| FrontendError::TargetNotFound {
                        suggestion: suggest(
                            &wanted,
                            stages.iter().filter_map(|s| s.name.as_deref()),
                        ),
                        target: t.clone(),
                        available: stages
                            .iter()
                            .enumerate()
                            .map(|(i, s)| {
                                s.name.clone().unwrap_or_else(|| format!("#{i} (unnamed)"))
                            })
                            .collect(),
                    })?
            }
        };
        // The build arg wins over the directive, as in BuildKit.
        let check_value = options
            .build_args
            .get("BUILDKIT_DOCKERFILE_CHECK")
            .or(dockerfile.directives.check.as_ref())
            .cloned()
            .unwrap_or_default();
        let checks =
            CheckConfig::parse(&check_value).map_err(|reason| FrontendError::CheckOptions {
                file: file.to_string(),
                reason,
            })?;
        let target_platform = options
            .target_platform
            .clone()
            .unwrap_or_else(|| options.build_platform.clone());
        let proxies = options
            .build_args
            .iter()
            .filter(|(k, _)| PROXY_ARGS.iter().any(|p| p.eq_ignore_ascii_case(k)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut planner = Planner {
            options,
            resolver,
            lexer: Lexer::new(dockerfile.directives.escape),
            visits: stages.iter().map(|_| Visit::Pending).collect(),
            stages,
            global_env: BTreeMap::new(),
            target,
            target_platform,
            proxies,
            chain: Vec::new(),
            warnings,
            checks,
        };
        planner.global_env = planner.global_args(&global_args, true)?;
        planner.lint_from_lines(&global_args);
        Ok(planner)
    }

    /// The automatic platform args, then the global ARGs in order; `--build-arg` wins, unless
    /// `with_build_args` is false (the defaults alone, for `InvalidDefaultArgInFrom`).
    fn global_args(
        &self,
        args: &[(ArgInstruction, Location)],
        with_build_args: bool,
    ) -> Result<BTreeMap<String, String>, FrontendError> {
        let mut env = BTreeMap::new();
        let build = &self.options.build_platform;
        let target = &self.target_platform;
        // The target's name; for the default target, the last stage's name, else `default`.
        let stage_name = self.stages[self.target]
            .name
            .clone()
            .unwrap_or_else(|| "default".into());
        let automatic = [
            ("TARGETPLATFORM", target.to_string()),
            ("TARGETOS", target.os.clone()),
            ("TARGETARCH", target.architecture.clone()),
            ("TARGETVARIANT", target.variant.clone().unwrap_or_default()),
            ("BUILDPLATFORM", build.to_string()),
            ("BUILDOS", build.os.clone()),
            ("BUILDARCH", build.architecture.clone()),
            ("BUILDVARIANT", build.variant.clone().unwrap_or_default()),
            ("TARGETOSVERSION", String::new()),
            ("BUILDOSVERSION", String::new()),
            ("TARGETSTAGE", stage_name),
        ];
        for (k, v) in automatic {
            let value = self.options.build_args.get(k).cloned().unwrap_or(v);
            env.insert(k.to_string(), value);
        }
        for (arg, location) in args {
            // Each declaration sees the ones before it, in the same instruction too.
            for decl in &arg.args {
                let given = self
                    .options
                    .build_args
                    .get(&decl.name)
                    .filter(|_| with_build_args);
                let value = match (given, &decl.default) {
                    (Some(v), _) => Some(v.clone()),
                    (None, Some(d)) => Some(self.expand(d, &env, location)?),
                    (None, None) => env.get(&decl.name).cloned(),
                };
                if let Some(v) = value {
                    env.insert(decl.name.clone(), v);
                }
            }
        }
        Ok(env)
    }

    /// The checks of every stage's FROM words, reachable or not, as BuildKit makes them
    /// before planning. A word that cannot be expanded is left to planning to report.
    fn lint_from_lines(&mut self, global_args: &[(ArgInstruction, Location)]) {
        let declared: BTreeSet<String> = global_args
            .iter()
            .flat_map(|(arg, _)| arg.args.iter().map(|d| d.name.clone()))
            .collect();
        let globals = lint_from::Globals {
            lexer: &self.lexer,
            env: &self.global_env,
            defaults: self.global_args(global_args, false).ok(),
            declared,
        };
        let froms: Vec<(&FromInstruction, &Location)> =
            self.stages.iter().map(|s| (&s.from, &s.location)).collect();
        lint_from::check_from_lines(&froms, &globals, &mut self.warnings);
    }

    /// Plans the target and everything it needs.
    pub(crate) fn run(mut self) -> Result<BuildPlan, FrontendError> {
        let target = self.target;
        let location = self.stages[target].location.clone();
        self.dispatch(target, &location)?;
        let mut done: BTreeMap<usize, DoneStage> = BTreeMap::new();
        for (i, visit) in std::mem::take(&mut self.visits).into_iter().enumerate() {
            if let Visit::Done(d) = visit {
                done.insert(i, *d);
            }
        }
        // Dependencies first; among stages that are ready, Dockerfile order.
        let mut order = Vec::new();
        let mut emitted = BTreeSet::new();
        while emitted.len() < done.len() {
            let next = done
                .iter()
                .find(|(i, d)| !emitted.contains(*i) && d.deps.iter().all(|x| emitted.contains(x)))
                .map(|(i, _)| *i);
            let Some(next) = next else { break };
            emitted.insert(next);
            order.push(next);
        }
        let mut stages: Vec<Stage> = Vec::new();
        for i in order {
            if let Some(d) = done.remove(&i) {
                stages.push(d.stage);
            }
        }
        let mut warnings = self.warnings.list;
        self.checks.filter(&mut warnings);
        if self.checks.error && warnings.iter().any(Warning::is_check) {
            return Err(FrontendError::ChecksFailed {
                warnings: warnings.into_iter().filter(Warning::is_check).collect(),
            });
        }
        Ok(BuildPlan {
            stages,
            global_args: self.global_env,
            warnings,
        })
    }

    /// Evaluates the checks without building: every stage when no target is given (as
    /// BuildKit checks all of them), else the target and what it needs. A planning error ends
    /// the checking and is reported with what was found before it.
    pub(crate) fn check(mut self) -> CheckReport {
        let result = if self.options.target.is_some() {
            let location = self.stages[self.target].location.clone();
            self.dispatch(self.target, &location)
        } else {
            (0..self.stages.len()).try_for_each(|i| {
                let location = self.stages[i].location.clone();
                self.dispatch(i, &location)
            })
        };
        let mut warnings = self.warnings.list;
        self.checks.filter(&mut warnings);
        warnings.retain(Warning::is_check);
        // In file order; findings about one line keep the order they were made in.
        warnings.sort_by_key(|w| w.line);
        CheckReport {
            warnings,
            error: result.err(),
            error_on_warnings: self.checks.error,
        }
    }

    /// Plans stage `index` (and, first, the stages it uses). `at` is the instruction that
    /// needs it, for the cycle error.
    fn dispatch(&mut self, index: usize, at: &Location) -> Result<(), FrontendError> {
        match self.visits[index] {
            Visit::Done(_) => return Ok(()),
            Visit::InProgress => {
                let start = self.chain.iter().position(|i| *i == index).unwrap_or(0);
                let mut chain: Vec<String> = self.chain[start..]
                    .iter()
                    .map(|i| self.stage_label(*i))
                    .collect();
                chain.push(self.stage_label(index));
                return Err(FrontendError::Cycle {
                    chain,
                    location: Box::new(at.clone()),
                });
            }
            Visit::Pending => {}
        }
        self.visits[index] = Visit::InProgress;
        self.chain.push(index);
        let result = self.dispatch_stage(index);
        self.chain.pop();
        let done = result?;
        self.visits[index] = Visit::Done(Box::new(done));
        Ok(())
    }

    fn stage_label(&self, index: usize) -> String {
        self.stages[index]
            .name
            .clone()
            .unwrap_or_else(|| format!("#{index}"))
    }

    fn dispatch_stage(&mut self, index: usize) -> Result<DoneStage, FrontendError> {
        let from = self.stages[index].from.clone();
        let location = self.stages[index].location.clone();
        let globals = self.global_env.clone();
        let image_word = self.expand_from(&from.image, &globals, &location)?;
        if image_word.is_empty() {
            return Err(FrontendError::BlankBaseName {
                location: Box::new(location),
                word: from.image.clone(),
            });
        }
        let explicit_platform = match &from.platform {
            Some(p) => {
                let value = self.expand_from(p, &globals, &location)?;
                Some(
                    Platform::parse(&value).map_err(|source| FrontendError::Platform {
                        location: Box::new(location.clone()),
                        source,
                    })?,
                )
            }
            None => None,
        };
        // A named context of that name comes first, before stages and images.
        let named = self.options.named_contexts.get(&image_word).cloned();
        let named_base = named.is_some();
        let image_word = match named {
            Some(super::NamedContext::Image { reference }) => reference,
            Some(super::NamedContext::Local) => {
                return Err(FrontendError::FromLocalContext {
                    location: Box::new(location),
                    name: image_word,
                })
            }
            None => image_word,
        };
        let lowered = image_word.to_lowercase();
        // The nearest earlier stage of that name, if the name is used twice.
        let base_stage = if named_base {
            None
        } else {
            self.stages[..index]
                .iter()
                .rposition(|s| s.name.as_deref() == Some(lowered.as_str()))
        };
        let mut deps = BTreeSet::new();
        let (base, mut state, platform) = if let Some(j) = base_stage {
            self.dispatch(j, &location)?;
            deps.insert(j);
            // `dispatch` returned Ok, so the parent is done; anything else would be a cycle.
            let Visit::Done(parent) = &self.visits[j] else {
                return Err(FrontendError::Cycle {
                    chain: vec![self.stage_label(j), self.stage_label(index)],
                    location: Box::new(location),
                });
            };
            let state = parent.state.for_child();
            // BuildKit ignores `FROM --platform` on a stage base: the parent's platform wins.
            let platform = parent.stage.platform.clone();
            (StageBase::Stage { index: j }, state, platform)
        } else {
            let scratch = lowered == "scratch";
            // `FROM --platform` picks the base image's platform; scratch has none to pick.
            let platform = match explicit_platform {
                Some(p) if !scratch => p,
                _ => self.target_platform.clone(),
            };
            let (base, image) = if scratch {
                // BuildKit's empty image: working directory `/` (PATH is added below).
                let mut image = ImageConfig::default();
                image.config.working_dir = Some("/".to_string());
                (StageBase::Scratch, image)
            } else {
                let image = self
                    .resolver
                    .image_config(&image_word, &platform)
                    .map_err(|source| FrontendError::BaseImage {
                        location: Box::new(location.clone()),
                        reference: image_word.clone(),
                        platform: platform.to_string(),
                        source,
                    })?
                    .unwrap_or_default();
                lint_from::base_image_platform(
                    &image_word,
                    &platform,
                    &image,
                    &location,
                    &mut self.warnings,
                );
                (
                    StageBase::Image {
                        reference: image_word.clone(),
                    },
                    image,
                )
            };
            let mut state = StageState {
                image,
                ..StageState::default()
            };
            let config = &mut state.image;
            if config.os.is_empty() {
                config.os = platform.os.clone();
                config.architecture = platform.architecture.clone();
                config.variant = platform.variant.clone();
            }
            if config.config.env_value("PATH").is_none() && platform.os != "windows" {
                config.config.set_env("PATH", DEFAULT_PATH);
            }
            (base, state, platform)
        };
        let mut planned = Vec::new();
        // The base's ONBUILD triggers run right after FROM, and are not passed further down.
        let triggers = state.image.config.on_build.take().unwrap_or_default();
        for text in triggers {
            let trigger_error = |source: FrontendError| FrontendError::Trigger {
                location: Box::new(location.clone()),
                image: image_word.clone(),
                trigger: text.clone(),
                source: Box::new(source),
            };
            let parsed = crate::parser::parse(&text, &self.options.file_name)
                .map_err(|e| trigger_error(e.into()))?;
            if parsed.instructions.len() != 1 {
                return Err(FrontendError::TriggerNotSingle {
                    location: Box::new(location.clone()),
                    image: image_word.clone(),
                    trigger: text.clone(),
                });
            }
            for node in &parsed.instructions {
                let instruction = parse_instruction(node, &self.options.file_name)
                    .map_err(|e| trigger_error(e.into()))?;
                let step = self.step(index, &mut state, &instruction, &location, &mut deps, true);
                planned.push(step.map_err(trigger_error)?);
            }
        }
        let instructions = self.stages[index].instructions.clone();
        for (instruction, at) in &instructions {
            planned.push(self.step(index, &mut state, instruction, at, &mut deps, false)?);
        }
        lint_repeated(&mut self.warnings, &planned);
        // With an explicit target platform, the final image says it is for that platform
        // (BuildKit sets it over the base image's).
        if let (true, Some(p)) = (index == self.target, &self.options.target_platform) {
            state.image.os = p.os.clone();
            state.image.architecture = p.architecture.clone();
            state.image.variant = p.variant.clone();
        }
        if index == self.target && !self.options.labels.is_empty() {
            let labels = state.image.config.labels.get_or_insert_with(BTreeMap::new);
            labels.extend(self.options.labels.clone());
        }
        Ok(DoneStage {
            stage: Stage {
                index,
                name: self.stages[index].name.clone(),
                location,
                base,
                platform,
                instructions: planned,
                image: state.image.clone(),
            },
            state,
            deps,
        })
    }

    /// Expands, resolves and applies one instruction of a stage.
    fn step(
        &mut self,
        current: usize,
        state: &mut StageState,
        instruction: &Instruction,
        at: &Location,
        deps: &mut BTreeSet<usize>,
        from_trigger: bool,
    ) -> Result<PlannedInstruction, FrontendError> {
        let context = state.context(&self.proxies);
        let env = state.expansion_env();
        let declared: BTreeSet<String> = state.args.iter().map(|(k, _)| k.clone()).collect();
        let mut arg_history = None;
        let expanded = match instruction {
            Instruction::Arg(arg) => {
                let (declared_arg, entry) = self.declare_args(state, arg, at)?;
                arg_history = Some(entry);
                Ok(Instruction::Arg(declared_arg))
            }
            other => {
                let mut expander = InstructionExpander {
                    planner: self,
                    env: &env,
                    declared: &declared,
                    location: at,
                };
                expand_instruction(other, &mut expander)
            }
        };
        let mut expanded = match expanded {
            Ok(i) => i,
            Err(Expanded::Failed(e)) => return Err(e),
            Err(Expanded::Invalid(kind)) => return Err(self.error_at(at, kind)),
        };
        match &mut expanded {
            Instruction::Copy(c) => {
                if let Some(from) = &mut c.from {
                    *from = self.expand_copy_from(from, at)?;
                }
            }
            Instruction::Run(r) => {
                for m in &mut r.mounts {
                    if let Some(target) = &mut m.target {
                        // A relative target is under the working directory; `/` cannot be
                        // covered by a mount.
                        let resolved = resolve_workdir(&context.workdir, target);
                        if resolved == "/" {
                            return Err(self.error_at(
                                at,
                                InstructionErrorKind::InvalidMountTarget {
                                    target: target.clone(),
                                },
                            ));
                        }
                        *target = resolved;
                    }
                }
            }
            _ => {}
        }
        let ignore = self.options.dockerignore.as_ref();
        lint_in_context(&mut self.warnings, state, &expanded, at, ignore);
        let mut sources = Vec::new();
        match &expanded {
            Instruction::Copy(c) => {
                if let Some(from) = &c.from {
                    sources.push(self.resolve_source(from, current, false, at, deps)?);
                }
            }
            Instruction::Run(r) => {
                for m in &r.mounts {
                    if let Some(from) = &m.from {
                        sources.push(self.resolve_source(from, current, true, at, deps)?);
                    }
                }
            }
            _ => {}
        }
        let history = match &expanded {
            Instruction::Arg(_) => arg_history,
            Instruction::From(_) => {
                return Err(self.error_at(
                    at,
                    InstructionErrorKind::ArgumentCount {
                        instruction: "FROM",
                        expected: "to start a stage, not to appear inside ONBUILD",
                    },
                ))
            }
            other => apply(state, other, &context).map_err(|kind| self.error_at(at, kind))?,
        };
        if let Some(entry) = &history {
            state.image.history.push(entry.clone());
        }
        Ok(PlannedInstruction {
            instruction: expanded,
            location: at.clone(),
            context,
            history,
            sources,
            from_trigger,
        })
    }

    /// `COPY --from` may only use the global ARGs: BuildKit resolves it before the stage runs.
    fn expand_copy_from(&mut self, from: &str, at: &Location) -> Result<String, FrontendError> {
        if !from.contains('$') {
            return Ok(from.to_string());
        }
        let expansion = self
            .lexer
            .expand_word_tracking(from, &self.global_env)
            .map_err(|source| FrontendError::Expansion {
                location: Box::new(at.clone()),
                word: from.to_string(),
                source: Box::new(source),
            })?;
        if !expansion.unset.is_empty() {
            return Err(self.error_at(
                at,
                InstructionErrorKind::CopyFromVariable {
                    value: from.to_string(),
                },
            ));
        }
        Ok(expansion.value)
    }

    /// ARG inside a stage: a build arg wins, then the default, then the global value. Each
    /// declaration sees the ones before it (BuildKit adds each to the environment in turn), and
    /// a default is expanded only when no build arg replaces it, so `${X:?}` fails only then.
    fn declare_args(
        &mut self,
        state: &mut StageState,
        arg: &ArgInstruction,
        at: &Location,
    ) -> Result<(ArgInstruction, HistoryEntry), FrontendError> {
        let mut out = arg.clone();
        let mut words = Vec::new();
        for decl in &mut out.args {
            let from_build = self.options.build_args.get(&decl.name).cloned();
            if let (None, Some(default)) = (&from_build, &decl.default) {
                let env = state.expansion_env();
                let declared: BTreeSet<String> =
                    state.args.iter().map(|(k, _)| k.clone()).collect();
                let mut expander = InstructionExpander {
                    planner: self,
                    env: &env,
                    declared: &declared,
                    location: at,
                };
                decl.default = Some(expander.word(default)?);
            }
            let value = from_build
                .or_else(|| decl.default.clone())
                .or_else(|| self.global_env.get(&decl.name).cloned());
            words.push(match &value {
                Some(v) => format!("{}={v}", decl.name),
                None => decl.name.clone(),
            });
            match state.args.iter_mut().find(|(k, _)| *k == decl.name) {
                Some(slot) => slot.1 = value,
                None => state.args.push((decl.name.clone(), value)),
            }
        }
        let entry = HistoryEntry::new(format!("ARG {}", words.join(" ")), true);
        Ok((out, entry))
    }

    /// `--from` of COPY or a mount: a stage name or index, else an image reference.
    fn resolve_source(
        &mut self,
        from: &str,
        current: usize,
        mount: bool,
        at: &Location,
        deps: &mut BTreeSet<usize>,
    ) -> Result<SourceRef, FrontendError> {
        match self.options.named_contexts.get(from) {
            Some(super::NamedContext::Image { reference }) => {
                return Ok(SourceRef::Image {
                    reference: reference.clone(),
                })
            }
            // The lowering reads a local context of that name.
            Some(super::NamedContext::Local) => {
                return Ok(SourceRef::Image {
                    reference: from.to_string(),
                })
            }
            _ => {}
        }
        let lowered = from.to_lowercase();
        // With a duplicate name, the last stage of that name is the one meant, as in BuildKit.
        let index = match self
            .stages
            .iter()
            .rposition(|s| s.name.as_deref() == Some(lowered.as_str()))
        {
            Some(i) => i,
            // Only COPY takes a stage index; a mount's `from=0` names an image.
            None if !mount && !from.is_empty() && from.bytes().all(|b| b.is_ascii_digit()) => {
                let index = from.parse::<usize>().unwrap_or(usize::MAX);
                if index >= self.stages.len() {
                    return Err(FrontendError::StageIndex {
                        location: Box::new(at.clone()),
                        index,
                        count: self.stages.len(),
                    });
                }
                index
            }
            None => {
                return Ok(SourceRef::Image {
                    reference: from.to_string(),
                })
            }
        };
        // BuildKit dispatches stages in order, so a stage can only use the stages before it;
        // using itself is a cycle.
        if index > current {
            return Err(FrontendError::StageOrder {
                location: Box::new(at.clone()),
                source_stage: self.stage_label(index),
                current_stage: self.stage_label(current),
                mount,
            });
        }
        self.dispatch(index, at)?;
        deps.insert(index);
        Ok(SourceRef::Stage { index })
    }

    fn error_at(&self, at: &Location, kind: InstructionErrorKind) -> FrontendError {
        FrontendError::Instruction(InstructionError {
            location: Box::new(at.clone()),
            kind,
        })
    }

    /// Expands a FROM word with the global args (`lint_from_lines` checked it already).
    fn expand_from(
        &self,
        word: &str,
        env: &BTreeMap<String, String>,
        at: &Location,
    ) -> Result<String, FrontendError> {
        self.expand(word, env, at)
    }

    fn expand(
        &self,
        word: &str,
        env: &BTreeMap<String, String>,
        at: &Location,
    ) -> Result<String, FrontendError> {
        self.lexer
            .expand_word(word, env)
            .map_err(|source| FrontendError::Expansion {
                location: Box::new(at.clone()),
                word: word.to_string(),
                source: Box::new(source),
            })
    }
}

/// Expands the words of one instruction with the stage's variables, reporting `UndefinedVar`.
struct InstructionExpander<'p, 'a> {
    planner: &'p mut Planner<'a>,
    env: &'p BTreeMap<String, String>,
    declared: &'p BTreeSet<String>,
    location: &'p Location,
}

impl InstructionExpander<'_, '_> {
    fn run(&mut self, word: &str, lexer: &Lexer) -> Result<String, FrontendError> {
        let expansion = lexer
            .expand_word_tracking(word, self.env)
            .map_err(|source| FrontendError::Expansion {
                location: Box::new(self.location.clone()),
                word: word.to_string(),
                source: Box::new(source),
            })?;
        for name in &expansion.unset {
            let positional =
                name.chars().all(|c| c.is_ascii_digit()) || "@*#?-$!".contains(name.as_str());
            if !self.declared.contains(name) && !positional {
                // BuildKit suggests among the variables the instruction sees.
                let options = self.env.keys().map(String::as_str);
                let hint = suggest(name, options)
                    .map(|s| format!(" (did you mean ${s}?)"))
                    .unwrap_or_default();
                self.planner.warnings.add(
                    "UndefinedVar",
                    self.location,
                    format!("Usage of undefined variable '${name}'{hint}"),
                );
            }
        }
        Ok(expansion.value)
    }
}

impl WordExpander for InstructionExpander<'_, '_> {
    fn word(&mut self, word: &str) -> Result<String, FrontendError> {
        let lexer = self.planner.lexer.clone();
        self.run(word, &lexer)
    }

    fn words(&mut self, word: &str) -> Result<Vec<String>, FrontendError> {
        let lexer = self.planner.lexer.clone();
        // Expanded once with tracking for the UndefinedVar check, then split.
        self.run(word, &lexer)?;
        lexer
            .expand_words(word, self.env)
            .map_err(|source| FrontendError::Expansion {
                location: Box::new(self.location.clone()),
                word: word.to_string(),
                source: Box::new(source),
            })
    }

    fn heredoc(&mut self, body: &str) -> Result<String, FrontendError> {
        // BuildKit's `ExpandRaw`: a fresh lexer with `\` as escape whatever the directive says,
        // quotes kept as text, escapes processed.
        let lexer = Lexer::new('\\').with_raw_quotes(true);
        self.run(body, &lexer)
    }
}
