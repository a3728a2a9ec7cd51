//! Alpine packages: `/lib/apk/db/installed`, paragraphs of single-letter fields (`P:` name,
//! `V:` version, `A:` architecture, `L:` license), as apk-tools writes it.

use super::{paragraphs, Catalog};
use crate::sbom::package::{purl, Package, PackageKind};

const INSTALLED: &str = "/lib/apk/db/installed";

pub(super) fn catalog(catalog: &mut Catalog<'_>) {
    let Some(text) = catalog.read_text(INSTALLED) else {
        return;
    };
    for paragraph in paragraphs(&text) {
        let (mut name, mut version, mut arch, mut license) = (None, None, None, None);
        for line in paragraph.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match key {
                "P" => name = Some(value),
                "V" => version = Some(value),
                "A" => arch = Some(value),
                "L" => license = Some(value),
                _ => {}
            }
        }
        let (Some(name), Some(version)) = (name.filter(|n| !n.is_empty()), version) else {
            catalog.warn(INSTALLED, "an entry without P: or V: was skipped");
            continue;
        };
        let namespace = catalog
            .distro
            .id
            .clone()
            .unwrap_or_else(|| "alpine".to_string());
        let distro = catalog.distro.qualifier();
        let purl = purl(
            "apk",
            Some(&namespace),
            name,
            Some(version),
            &[("arch", arch.unwrap_or("")), ("distro", &distro)],
        );
        catalog.packages.push(Package {
            kind: PackageKind::Apk,
            name: name.to_string(),
            version: version.to_string(),
            purl,
            license: license.filter(|l| !l.is_empty()).map(str::to_string),
            locations: vec![INSTALLED.to_string()],
        });
    }
}
