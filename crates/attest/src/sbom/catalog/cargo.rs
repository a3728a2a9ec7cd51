//! Rust crates: every `[[package]]` of a `Cargo.lock` (format versions 1 to 4 share it).

use serde::Deserialize;

use super::Catalog;
use crate::sbom::package::{purl, Package, PackageKind};

#[derive(Deserialize)]
struct Lockfile {
    #[serde(default)]
    package: Vec<LockedPackage>,
}

#[derive(Deserialize)]
struct LockedPackage {
    name: String,
    version: String,
}

/// Whether `path` is a file this cataloger reads.
pub(super) fn wants(path: &str) -> bool {
    path.rsplit('/').next() == Some("Cargo.lock")
}

pub(super) fn catalog_file(catalog: &mut Catalog<'_>, path: &str) {
    let Some(text) = catalog.read_text(path) else {
        return;
    };
    let lockfile: Lockfile = match toml::from_str(&text) {
        Ok(lockfile) => lockfile,
        Err(e) => {
            catalog.warn(path, format!("not a Cargo.lock: {}", e.message()));
            return;
        }
    };
    for package in lockfile.package {
        catalog.packages.push(Package {
            kind: PackageKind::Cargo,
            purl: purl("cargo", None, &package.name, Some(&package.version), &[]),
            name: package.name,
            version: package.version,
            // Cargo.lock carries no license; the crate's Cargo.toml is not in the image.
            license: None,
            locations: vec![path.to_string()],
        });
    }
}
