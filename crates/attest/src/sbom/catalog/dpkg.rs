//! Debian packages: `/var/lib/dpkg/status` (one paragraph per package) and distroless'
//! `/var/lib/dpkg/status.d/*` (one file per package), as syft's dpkg cataloger reads them.
//! Licenses come from the machine-readable `/usr/share/doc/NAME/copyright` when there is one.

use std::collections::BTreeSet;

use super::{field, fields, paragraphs, Catalog};
use crate::sbom::package::{purl, Package, PackageKind};

const STATUS: &str = "/var/lib/dpkg/status";
const STATUS_DIR: &str = "/var/lib/dpkg/status.d";

pub(super) fn catalog(catalog: &mut Catalog<'_>) {
    if let Some(text) = catalog.read_text(STATUS) {
        catalog_status(catalog, &text, STATUS, true);
    }
    let entries = match catalog.fs.list(STATUS_DIR) {
        Ok(entries) => entries,
        Err(_) => return,
    };
    for (name, kind) in entries {
        // status.d holds `NAME` paragraphs and `NAME.md5sums` file lists.
        if kind != crate::sbom::rootfs::EntryKind::File || name.ends_with(".md5sums") {
            continue;
        }
        let path = format!("{STATUS_DIR}/{name}");
        if let Some(text) = catalog.read_text(&path) {
            catalog_status(catalog, &text, &path, false);
        }
    }
}

/// Parses a status file. `needs_status`: the main status file lists removed packages too, so
/// only those whose `Status` ends in `installed` count; status.d entries have no `Status`.
fn catalog_status(catalog: &mut Catalog<'_>, text: &str, path: &str, needs_status: bool) {
    for paragraph in paragraphs(text) {
        let fields = fields(paragraph);
        let (Some(name), Some(version)) = (field(&fields, "Package"), field(&fields, "Version"))
        else {
            catalog.warn(path, "a paragraph without Package or Version was skipped");
            continue;
        };
        if needs_status {
            let installed = field(&fields, "Status")
                .is_some_and(|s| s.split_whitespace().last() == Some("installed"));
            if !installed {
                continue;
            }
        }
        let arch = field(&fields, "Architecture").unwrap_or("");
        let namespace = catalog
            .distro
            .id
            .clone()
            .unwrap_or_else(|| "debian".to_string());
        let distro = catalog.distro.qualifier();
        let purl = purl(
            "deb",
            Some(&namespace),
            name,
            Some(version),
            &[("arch", arch), ("distro", &distro)],
        );
        let copyright = format!("/usr/share/doc/{name}/copyright");
        let mut locations = vec![path.to_string()];
        let license = match catalog.fs.read(&copyright) {
            Ok(bytes) => {
                locations.push(copyright);
                copyright_license(&String::from_utf8_lossy(&bytes))
            }
            Err(_) => None,
        };
        locations.sort();
        catalog.packages.push(Package {
            kind: PackageKind::Deb,
            name: name.to_string(),
            version: version.to_string(),
            purl,
            license,
            locations,
        });
    }
}

/// The licenses named in a DEP-5 copyright file's `License:` lines, sorted and joined with
/// ` AND ` (syft lists each one; SPDX wants one expression).
fn copyright_license(text: &str) -> Option<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(value) = line.strip_prefix("License:") else {
            continue;
        };
        let value = value.trim();
        // Only short identifiers: free text after the first line is the license body.
        if !value.is_empty()
            && value.len() <= 64
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '+' | '_'))
        {
            names.insert(value.to_string());
        }
    }
    if names.is_empty() {
        None
    } else {
        Some(names.into_iter().collect::<Vec<_>>().join(" AND "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dep5_license_lines_give_the_license() {
        let text = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles: *\nCopyright: 1999 X\nLicense: GPL-2+\n\nFiles: debian/*\nLicense: GPL-2+\n\nLicense: GPL-2+\n This program is free software\n";
        assert_eq!(copyright_license(text).as_deref(), Some("GPL-2+"));
        assert_eq!(copyright_license("no license here"), None);
    }
}
