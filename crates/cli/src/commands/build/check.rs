//! `img build --check` (`--call=check`): the Dockerfile's build checks evaluated without
//! building, printed as BuildKit prints them (a rule's description where BuildKit links to its
//! documentation). Exits non-zero when the checks find anything.

use std::io::Write;

use anyhow::Context;
use img_frontend_dockerfile::{CheckReport, Warning};
use img_registry::Client;

use crate::commands::Failed;
use crate::config::Config;
use crate::context::{BuildContext, ContextSpec};
use crate::flags::BuildFlags;
use crate::graph::{check_dockerfile, GraphOptions, ImageConfigs};

pub fn run(config: &Config, flags: &BuildFlags) -> anyhow::Result<()> {
    let options = GraphOptions::from_flags(&flags.graph, |k| std::env::var(k).ok())?;
    let spec = ContextSpec::parse(&flags.graph.context)?;
    let context = BuildContext::prepare(&spec, flags.graph.file.as_deref(), &std::env::temp_dir())?;
    // Some checks need base image configs; the store is only read, and only if it exists.
    let store = if config.state.root().exists() {
        Some(config.open_store()?)
    } else {
        None
    };
    let client = Client::new(config.registry.clone());
    let images = ImageConfigs {
        store: store.as_ref(),
        client: Some(&client),
        pull: flags.pull,
    };
    let report = check_dockerfile(&context, &options, &images)?;
    let mut out = std::io::stdout().lock();
    write_report(&mut out, &report).context("cannot write the check report")?;
    if let Some(err) = report.error {
        return Err(anyhow::Error::new(err).context("the check stopped at an error"));
    }
    if report.failed() {
        return Err(Failed.into());
    }
    Ok(())
}

/// The summary line (none when an error stopped the check), then each finding: rule and
/// description, then where and what.
fn write_report(out: &mut impl Write, report: &CheckReport) -> std::io::Result<()> {
    if report.error.is_none() {
        match report.warnings.len() {
            0 => writeln!(out, "Check complete, no warnings found.")?,
            1 => writeln!(out, "Check complete, 1 warning has been found!")?,
            n => writeln!(out, "Check complete, {n} warnings have been found!")?,
        }
    }
    for (i, warning) in report.warnings.iter().enumerate() {
        if i > 0 || report.error.is_none() {
            writeln!(out)?;
        }
        write_warning(out, warning)?;
    }
    Ok(())
}

fn write_warning(out: &mut impl Write, warning: &Warning) -> std::io::Result<()> {
    writeln!(out, "WARNING: {} - {}", warning.rule, warning.description)?;
    if warning.line > 0 {
        writeln!(
            out,
            "{}:{}: {}",
            warning.file, warning.line, warning.message
        )
    } else {
        writeln!(out, "{}: {}", warning.file, warning.message)
    }
}
