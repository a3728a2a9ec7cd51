//! `img debug llb [--format json|dot] [build options] CONTEXT`: the build graph a Dockerfile
//! lowers to, as `img build` would solve it.

use std::io::Write;

use anyhow::Context;
use img_frontend_dockerfile::GraphFormat;
use img_registry::Client;

use crate::config::Config;
use crate::context::{BuildContext, ContextSpec};
use crate::flags::{GraphFlags, GraphFormatFlag};
use crate::graph::{lower_plan, plan_dockerfile, GraphOptions, ImageConfigs};

pub fn run(config: &Config, format: GraphFormatFlag, flags: &GraphFlags) -> anyhow::Result<()> {
    let options = GraphOptions::from_flags(flags, |k| std::env::var(k).ok())?;
    options.one_platform("img debug llb")?;
    let spec = ContextSpec::parse(&flags.context)?;
    let context = BuildContext::prepare(&spec, flags.file.as_deref(), &std::env::temp_dir())?;
    // The store is only read, and only if it already exists: printing a graph creates no state.
    let store = if config.state.root().exists() {
        Some(config.open_store()?)
    } else {
        None
    };
    let client = Client::new(config.registry.clone());
    let images = ImageConfigs {
        store: store.as_ref(),
        client: Some(&client),
        pull: false,
    };
    let plan = plan_dockerfile(&context, &options, &images)?;
    for warning in &plan.warnings {
        eprintln!("warning: {warning}");
    }
    let lowered = lower_plan(&context, &options, &plan, Default::default())?;
    let format = match format {
        GraphFormatFlag::Json => GraphFormat::Json,
        GraphFormatFlag::Dot => GraphFormat::Dot,
    };
    let mut out = std::io::stdout().lock();
    let text = lowered.render(format);
    out.write_all(text.as_bytes())
        .and_then(|()| {
            if text.ends_with('\n') {
                Ok(())
            } else {
                writeln!(out)
            }
        })
        .context("cannot write the build graph")?;
    Ok(())
}
