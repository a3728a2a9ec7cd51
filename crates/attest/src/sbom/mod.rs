//! Software bills of materials: scan an image's root filesystem for installed packages and
//! describe them in SPDX 2.3, as BuildKit's syft-based scanner does for `--sbom=true`.

mod catalog;
pub(crate) mod package;
mod rootfs;
mod spdx;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

pub use package::{Package, PackageKind};
pub use rootfs::ScanLimits;
pub use spdx::{
    sbom_statement, SpdxCreationInfo, SpdxDocument, SpdxExternalRef, SpdxLicenseInfo, SpdxOptions,
    SpdxPackage, SpdxRelationship, SPDX_PREDICATE_TYPE,
};

/// A file or directory the scan skipped, and why (too large, not UTF-8 JSON, a FIFO…).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ScanWarning {
    /// The path within the image.
    pub path: String,
    /// What was wrong.
    pub reason: String,
}

impl fmt::Display for ScanWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

/// The scan could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScanError {
    /// The root directory could not be opened.
    #[error("cannot open the image filesystem at {path}: {source}")]
    OpenRoot {
        /// The directory given.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What a scan found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// The packages, one per package URL (locations merged), sorted by name, version, purl.
    pub packages: Vec<Package>,
    /// What was skipped, sorted.
    pub warnings: Vec<ScanWarning>,
}

/// Scans the image root filesystem at `root` for packages: the dpkg status database
/// (`/var/lib/dpkg/status`, `status.d/*`), the apk database (`/lib/apk/db/installed`),
/// Python `*.dist-info/METADATA` and `*.egg-info` under `site-packages`/`dist-packages`, npm
/// lockfiles and `node_modules/*/package.json`, and `Cargo.lock` files.
///
/// The tree is hostile input: nothing is read outside it (see [`ScanLimits`] for the bounds),
/// and a file that cannot be read or parsed becomes a [`ScanWarning`], never an error. The
/// result depends only on the tree's content, so two scans of one tree are equal.
///
/// Blocking: it reads the whole tree; run it off async executors and off rayon's pool.
pub fn scan_rootfs(root: &Path, limits: ScanLimits) -> Result<ScanReport, ScanError> {
    let fs = rootfs::RootFs::open(root, limits).map_err(|source| ScanError::OpenRoot {
        path: root.to_path_buf(),
        source,
    })?;
    let mut catalog = catalog::Catalog::new(&fs);
    catalog.run();

    // One package per purl: npm finds a package both in the lockfile and in node_modules.
    let mut merged: BTreeMap<String, Package> = BTreeMap::new();
    for package in catalog.packages {
        match merged.get_mut(&package.purl) {
            Some(existing) => {
                existing.locations.extend(package.locations);
                existing.locations.sort();
                existing.locations.dedup();
                if existing.license.is_none() {
                    existing.license = package.license;
                }
            }
            None => {
                merged.insert(package.purl.clone(), package);
            }
        }
    }
    let mut packages: Vec<Package> = merged.into_values().collect();
    packages.sort_by(|a, b| (&a.name, &a.version, &a.purl).cmp(&(&b.name, &b.version, &b.purl)));
    let mut warnings = catalog.warnings;
    warnings.sort();
    warnings.dedup();
    Ok(ScanReport { packages, warnings })
}
