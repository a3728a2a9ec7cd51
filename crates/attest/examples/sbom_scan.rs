//! Scans a root filesystem and prints its SPDX document: `cargo run -p img-attest --example
//! sbom_scan -- DIR [NAME]`. The package and warning counts and the time taken go to stderr.

use std::time::{Instant, SystemTime};

use img_attest::{scan_rootfs, ScanLimits, SpdxOptions};

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(root) = args.next() else {
        eprintln!("usage: sbom_scan DIR [NAME]");
        std::process::exit(2);
    };
    let name = args.next().unwrap_or_else(|| root.clone());
    let started = Instant::now();
    let report = match scan_rootfs(root.as_ref(), ScanLimits::default()) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let elapsed = started.elapsed();
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    eprintln!(
        "{} packages, {} warnings, scanned in {:.2?}",
        report.packages.len(),
        report.warnings.len(),
        elapsed
    );
    let document = report.to_spdx(&SpdxOptions::new(name, SystemTime::now()));
    println!(
        "{}",
        serde_json::to_string_pretty(&document).expect("serializes")
    );
}
