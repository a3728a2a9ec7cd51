//! `img doctor`: checks this host as a rootless build needs it and prints, for each problem,
//! the command or pod-spec change that fixes it. Exits non-zero when builds with RUN steps
//! cannot work here; problems that only limit them (no subordinate ids: only root exists in
//! steps; no binfmt_misc: no foreign platforms) are reported and the exit code stays 0.
//!
//! Runs as the user sees the host, never in img's own user namespace (`main` re-executes only
//! `build` there), and refreshes the report builds read from the cache.

use std::io::Write;

use crate::config::Config;
use crate::flags::ReportFormat;
use crate::host_check::{probe_name, write_probe, HostReport};

pub fn run(config: &Config, format: ReportFormat) -> anyhow::Result<()> {
    let report = HostReport::probe(config);
    let mut out = std::io::stdout().lock();
    match format {
        ReportFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        }
        ReportFormat::Text => write_text(&mut out, &report)?,
    }
    if report.doctor.can_run_steps {
        Ok(())
    } else {
        Err(super::Failed.into())
    }
}

fn write_text(out: &mut impl Write, report: &HostReport) -> std::io::Result<()> {
    for probe in &report.doctor.probes {
        write_probe(out, probe)?;
    }
    let backend = &report.backend;
    writeln!(
        out,
        "{:<8} {:<26} {}: {}",
        if backend.picked.is_some() {
            "ok"
        } else {
            "problem"
        },
        format!("backend ({})", backend.asked),
        backend.picked.as_deref().unwrap_or("none"),
        backend.reason
    )?;
    let problems: Vec<&str> = report
        .doctor
        .probes
        .iter()
        .filter(|p| p.fix.is_some() && p.status != img_sandbox::ProbeStatus::Ok)
        .map(|p| probe_name(p.probe))
        .collect();
    if report.doctor.can_run_steps {
        if problems.is_empty() {
            writeln!(out, "verdict: builds with RUN steps work here")
        } else {
            writeln!(
                out,
                "verdict: builds with RUN steps work here, with limits ({})",
                problems.join(", ")
            )
        }
    } else {
        let blocking: Vec<&str> = report
            .doctor
            .probes
            .iter()
            .filter(|p| p.required && p.status != img_sandbox::ProbeStatus::Ok)
            .map(|p| probe_name(p.probe))
            .collect();
        writeln!(
            out,
            "verdict: builds with RUN steps cannot work here ({}); fix the problems above",
            blocking.join(", ")
        )
    }
}
