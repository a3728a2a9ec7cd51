//! `img doctor`: checks this host as a rootless build needs it and prints, for each problem,
//! the command or pod-spec change that fixes it. Exits non-zero when builds with RUN steps
//! cannot work here; problems that only limit them (no subordinate ids: only root exists in
//! steps; no binfmt_misc: no foreign platforms) are reported and the exit code stays 0.
//!
//! Runs as the user sees the host, never in img's own user namespace (`main` re-executes only
//! `build` there), and refreshes the report builds read from the cache.

use std::io::Write;

use anyhow::Context;
use img_sandbox::{platform_probe, ProbeResult, ProbeStatus};

use crate::config::Config;
use crate::flags::ReportFormat;
use crate::host_check::{probe_name, write_probe, HostReport};

pub fn run(config: &Config, format: ReportFormat, platforms: Option<&str>) -> anyhow::Result<()> {
    let platforms = platforms
        .map(img_llb::Platform::parse_list)
        .transpose()
        .context("invalid --platform")?
        .unwrap_or_default();
    let report = HostReport::probe(config);
    // `--platform`: one more check per platform, required since it was asked for.
    let dir = super::build::host_binfmt_dir();
    let emulation: Vec<ProbeResult> = platforms
        .iter()
        .map(|p| platform_probe(&dir, &p.to_string()))
        .collect();
    let mut out = std::io::stdout().lock();
    match format {
        ReportFormat::Json => {
            let mut value = serde_json::to_value(&report)?;
            if !emulation.is_empty() {
                value["platforms"] = serde_json::to_value(&emulation)?;
            }
            serde_json::to_writer_pretty(&mut out, &value)?;
            writeln!(out)?;
        }
        ReportFormat::Text => write_text(&mut out, &report, &emulation)?,
    }
    let emulated = emulation.iter().all(|p| p.status == ProbeStatus::Ok);
    if report.doctor.can_run_steps && emulated {
        Ok(())
    } else {
        Err(super::Failed.into())
    }
}

/// The probes, then `--platform`'s checks, then the verdict.
fn write_text(
    out: &mut impl Write,
    report: &HostReport,
    emulation: &[ProbeResult],
) -> std::io::Result<()> {
    for probe in report.doctor.probes.iter().chain(emulation) {
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
    let unemulated = emulation
        .iter()
        .filter(|p| p.status != ProbeStatus::Ok)
        .count();
    if report.doctor.can_run_steps && unemulated > 0 {
        writeln!(
            out,
            "verdict: builds with RUN steps work here, but not for {unemulated} of the platforms asked about (see above)"
        )
    } else if report.doctor.can_run_steps {
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
