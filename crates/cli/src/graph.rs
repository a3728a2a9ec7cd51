//! From the Dockerfile to the build graph, as `img build` and `img debug llb` both need it:
//! parse, plan (with base image configs from the local store, else the registry) and lower
//! (with the context's `.dockerignore` patterns).

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use img_frontend_dockerfile::{
    check, lower, parse, plan, BaseImageError, BaseImageResolver, BuildOptions, BuildPlan,
    CheckReport, ImageConfig, LowerOptions, LoweredBuild, Platform,
};
use img_registry::{Client, Reference};
use img_snapshot::Store;

use crate::context::BuildContext;
use crate::flags::GraphFlags;
use crate::named_context::{parse_build_context, NamedContextSpec};

/// The checked options that shape the graph.
#[derive(Debug, Clone, Default)]
pub struct GraphOptions {
    /// `--build-arg` values, those without `=` already taken from the environment.
    pub build_args: BTreeMap<String, String>,
    /// `--target`.
    pub target: Option<String>,
    /// The platform this graph is lowered for: `--platform` when it names one, else the
    /// host's. A multi-platform build lowers a copy per platform (see [`Self::for_platform`]).
    pub platform: Option<Platform>,
    /// Every platform `--platform` names, normalized, without repeats, in order; empty
    /// without the flag.
    pub platforms: Vec<Platform>,
    /// `--label` values.
    pub labels: BTreeMap<String, String>,
    /// `--build-context` values by name.
    pub named_contexts: BTreeMap<String, NamedContextSpec>,
}

impl GraphOptions {
    /// Checks the shared flags; `env` looks up variables for `--build-arg KEY`.
    pub fn from_flags(
        flags: &GraphFlags,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<GraphOptions> {
        let mut build_args = BTreeMap::new();
        for arg in &flags.build_args {
            match arg.split_once('=') {
                Some((key, value)) => {
                    check_key("--build-arg", arg, key)?;
                    build_args.insert(key.to_owned(), value.to_owned());
                }
                None => {
                    check_key("--build-arg", arg, arg)?;
                    // As `docker build`: a name alone takes the environment's value, and is
                    // left out when the environment has none.
                    if let Some(value) = env(arg) {
                        build_args.insert(arg.clone(), value);
                    }
                }
            }
        }
        // buildx passes SOURCE_DATE_EPOCH from the environment as a build argument.
        if !build_args.contains_key("SOURCE_DATE_EPOCH") {
            if let Some(epoch) = env("SOURCE_DATE_EPOCH").filter(|v| !v.is_empty()) {
                build_args.insert("SOURCE_DATE_EPOCH".into(), epoch);
            }
        }
        let platforms = flags
            .platform
            .as_deref()
            .map(Platform::parse_list)
            .transpose()
            .context("invalid --platform")?
            .unwrap_or_default();
        let target = flags.target.clone().filter(|t| !t.is_empty());
        let mut named_contexts = BTreeMap::new();
        for spec in &flags.build_contexts {
            let (name, context) = parse_build_context(spec)?;
            if named_contexts.insert(name.clone(), context).is_some() {
                bail!("--build-context {name} is given twice");
            }
        }
        Ok(GraphOptions {
            build_args,
            target,
            platform: platforms.first().cloned(),
            platforms,
            labels: BTreeMap::new(),
            named_contexts,
        })
    }

    /// Whether `--platform` names more than one platform.
    pub fn is_multi_platform(&self) -> bool {
        self.platforms.len() > 1
    }

    /// These options for one of the platforms of a multi-platform build.
    pub fn for_platform(&self, platform: &Platform) -> GraphOptions {
        GraphOptions {
            platform: Some(platform.clone()),
            ..self.clone()
        }
    }

    /// Fails for a command that works on one platform only when several were given.
    pub fn one_platform(&self, command: &str) -> anyhow::Result<()> {
        if self.is_multi_platform() {
            bail!(
                "{command} takes one --platform; {} were given ({})",
                self.platforms.len(),
                self.platforms
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Ok(())
    }

    /// `SOURCE_DATE_EPOCH`, from the environment or a build argument.
    pub fn source_date_epoch(&self) -> anyhow::Result<Option<i64>> {
        self.build_args
            .get("SOURCE_DATE_EPOCH")
            .map(|v| {
                v.trim().parse::<i64>().with_context(|| {
                    format!("invalid SOURCE_DATE_EPOCH {v:?}: give seconds since 1970")
                })
            })
            .transpose()
    }
}

/// `KEY=VALUE` keys must be non-empty and have no spaces.
pub fn check_key(flag: &str, arg: &str, key: &str) -> anyhow::Result<()> {
    if key.is_empty() || key.chars().any(char::is_whitespace) {
        bail!("invalid {flag} {arg:?}: give KEY=VALUE with a non-empty KEY without spaces");
    }
    Ok(())
}

/// Base image configs for planning: the local image store first (as `docker build` uses a
/// stored image), then the registry; with `pull`, the registry first. An image found nowhere
/// plans with an empty config; the solver reports why it cannot be fetched.
pub struct ImageConfigs<'a> {
    pub store: Option<&'a Store>,
    pub client: Option<&'a Client>,
    pub pull: bool,
}

impl ImageConfigs<'_> {
    fn local(&self, reference: &Reference) -> Option<ImageConfig> {
        let store = self.store?;
        let record = store.images().get(&reference.to_string()).ok()??;
        let parts = crate::image::resolve(&store.content(), &record.target).ok()?;
        serde_json::from_slice(&parts.config_bytes).ok()
    }

    fn remote(&self, reference: &Reference, platform: &Platform) -> Option<ImageConfig> {
        let client = self.client?;
        let image = client.resolve(reference, platform).ok()?;
        serde_json::from_slice(&image.config).ok()
    }
}

impl BaseImageResolver for ImageConfigs<'_> {
    fn image_config(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<Option<ImageConfig>, BaseImageError> {
        let Ok(reference) = Reference::parse(reference) else {
            return Ok(None);
        };
        let config = if self.pull {
            self.remote(&reference, platform)
                .or_else(|| self.local(&reference))
        } else {
            self.local(&reference)
                .or_else(|| self.remote(&reference, platform))
        };
        Ok(config)
    }
}

/// The plan of `context`'s Dockerfile with `options`; base image configs come from `images`.
pub fn plan_dockerfile(
    context: &BuildContext,
    options: &GraphOptions,
    images: &dyn BaseImageResolver,
) -> anyhow::Result<BuildPlan> {
    let dockerfile = parse(&context.dockerfile, &context.dockerfile_name)?;
    Ok(plan(
        &dockerfile,
        &build_options(context, options)?,
        images,
    )?)
}

/// The build checks of `context`'s Dockerfile with `options`, evaluated without building.
pub fn check_dockerfile(
    context: &BuildContext,
    options: &GraphOptions,
    images: &dyn BaseImageResolver,
) -> anyhow::Result<CheckReport> {
    let dockerfile = parse(&context.dockerfile, &context.dockerfile_name)?;
    Ok(check(
        &dockerfile,
        &build_options(context, options)?,
        images,
    )?)
}

/// The frontend's options: the flags, and the context's `.dockerignore` for its checks.
fn build_options(context: &BuildContext, options: &GraphOptions) -> anyhow::Result<BuildOptions> {
    let mut build = BuildOptions::new().file_name(&context.dockerfile_name);
    for (key, value) in &options.build_args {
        build = build.build_arg(key, value);
    }
    for (key, value) in &options.labels {
        build = build.label(key, value);
    }
    if let Some(target) = &options.target {
        build = build.target(target);
    }
    if let Some(platform) = &options.platform {
        build = build.target_platform(platform.clone());
    }
    if let Some(patterns) = context.ignore_patterns()? {
        build = build.dockerignore(patterns);
    }
    for (name, named) in &options.named_contexts {
        build = build.named_context(name, named.for_frontend());
    }
    Ok(build)
}

/// The build graph of `plan`, with the context's `.dockerignore` patterns and base images
/// pinned as `resolved_images` says (written reference and platform to `name@sha256:…`: one
/// reference is a different manifest per platform).
pub fn lower_plan(
    context: &BuildContext,
    options: &GraphOptions,
    plan: &BuildPlan,
    resolved_images: BTreeMap<(String, Platform), String>,
) -> anyhow::Result<LoweredBuild> {
    let mut lower_options = LowerOptions::new();
    if let Some(platform) = &options.platform {
        lower_options = lower_options.target_platform(platform.clone());
    }
    for ((written, platform), pinned) in resolved_images {
        lower_options = lower_options.resolved_platform_image(written, platform, pinned);
    }
    for (name, named) in &options.named_contexts {
        if named.is_local() {
            lower_options = lower_options.local_context(name);
        }
    }
    if let Some(patterns) = context.ignore_patterns()? {
        lower_options = lower_options.exclude_patterns(patterns.patterns().iter().cloned());
    }
    Ok(lower(plan, &lower_options)?)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::flags::{Args, Command, DebugCommand};

    fn options(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<GraphOptions> {
        let mut argv = vec!["img", "debug", "llb"];
        argv.extend_from_slice(args);
        argv.push(".");
        let Some(Command::Debug(DebugCommand::Llb { graph, .. })) =
            Args::try_parse_from(argv)?.command
        else {
            unreachable!("debug llb parses as such")
        };
        GraphOptions::from_flags(&graph, |k| {
            env.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn build_args_take_missing_values_from_the_environment() {
        let o = options(
            &[
                "--build-arg",
                "A=1",
                "--build-arg",
                "B",
                "--build-arg",
                "C",
                "--build-arg",
                "D=",
            ],
            &[("B", "from-env")],
        )
        .unwrap();
        let got: Vec<_> = o
            .build_args
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(got, [("A", "1"), ("B", "from-env"), ("D", "")]);
        assert!(options(&["--build-arg", "=x"], &[]).is_err());
    }

    #[test]
    fn source_date_epoch_from_the_environment_or_an_argument() {
        let o = options(&[], &[("SOURCE_DATE_EPOCH", "1700000000")]).unwrap();
        assert_eq!(o.source_date_epoch().unwrap(), Some(1_700_000_000));
        let o = options(
            &["--build-arg", "SOURCE_DATE_EPOCH=5"],
            &[("SOURCE_DATE_EPOCH", "1700000000")],
        )
        .unwrap();
        assert_eq!(o.source_date_epoch().unwrap(), Some(5));
        assert_eq!(
            options(&[], &[]).unwrap().source_date_epoch().unwrap(),
            None
        );
        let o = options(&["--build-arg", "SOURCE_DATE_EPOCH=yesterday"], &[]).unwrap();
        assert!(o.source_date_epoch().is_err());
    }

    #[test]
    fn platform_and_target() {
        let o = options(&["--platform", "linux/arm64", "--target", "build"], &[]).unwrap();
        assert_eq!(o.platform.unwrap().architecture, "arm64");
        assert_eq!(o.target.as_deref(), Some("build"));
        // buildx's short forms are platforms too.
        let o = options(&["--platform", "arm64"], &[]).unwrap();
        assert_eq!(o.platform.as_ref().unwrap().to_string(), "linux/arm64");
        assert!(!o.is_multi_platform());
        let o = options(&["--platform", "linux/arm64,amd64,linux/aarch64"], &[]).unwrap();
        let shown: Vec<String> = o.platforms.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["linux/arm64", "linux/amd64"]);
        assert!(o.is_multi_platform());
        assert_eq!(
            o.for_platform(&o.platforms[1])
                .platform
                .unwrap()
                .to_string(),
            "linux/amd64"
        );
        let err = o.one_platform("img debug llb").unwrap_err().to_string();
        assert!(err.contains("takes one --platform"), "{err}");
        let err = options(&["--platform", "linux/amd64,bogus"], &[]).unwrap_err();
        assert!(format!("{err:#}").contains("\"bogus\""), "{err:#}");
        let err = options(&["--platform", "linux/"], &[]).unwrap_err();
        assert!(format!("{err:#}").contains("invalid --platform"), "{err:#}");
    }
}
