//! Python distributions: `*.dist-info/METADATA` and `*.egg-info/PKG-INFO` (or an `*.egg-info`
//! file) under a `site-packages` or `dist-packages` directory, read as the core metadata
//! specification defines them (RFC 822 headers).

use super::{field, fields, Catalog};
use crate::sbom::package::{purl, Package, PackageKind};

/// Whether `path` is a Python metadata file this cataloger reads.
pub(super) fn wants(path: &str) -> bool {
    let under_packages = path
        .split('/')
        .any(|c| c == "site-packages" || c == "dist-packages");
    if !under_packages {
        return false;
    }
    let mut parts = path.rsplit('/');
    let file = parts.next().unwrap_or("");
    let parent = parts.next().unwrap_or("");
    (file == "METADATA" && parent.ends_with(".dist-info"))
        || (file == "PKG-INFO" && parent.ends_with(".egg-info"))
        || file.ends_with(".egg-info")
}

pub(super) fn catalog_file(catalog: &mut Catalog<'_>, path: &str) {
    let Some(text) = catalog.read_text(path) else {
        return;
    };
    // The headers end at the first blank line; the description follows.
    let headers = text
        .split("\n\n")
        .next()
        .unwrap_or("")
        .replace("\r\n", "\n");
    let fields = fields(&headers);
    let (Some(name), Some(version)) = (field(&fields, "Name"), field(&fields, "Version")) else {
        catalog.warn(path, "no Name or Version header, skipped");
        return;
    };
    catalog.packages.push(Package {
        kind: PackageKind::Python,
        name: name.to_string(),
        version: version.to_string(),
        purl: purl("pypi", None, &normalize(name), Some(version), &[]),
        license: license(&fields),
        locations: vec![path.to_string()],
    });
}

/// PEP 503 name normalization, which the pypi purl type requires: lowercase, runs of `-_.`
/// become `-`.
fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut last_dash = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !last_dash {
                out.push('-');
            }
            last_dash = true;
        } else {
            out.push(c.to_ascii_lowercase());
            last_dash = false;
        }
    }
    out
}

/// `License-Expression` (metadata 2.4), else a one-line `License`, else the first
/// `License ::` classifier's last part.
fn license(fields: &[(String, String)]) -> Option<String> {
    if let Some(expression) = field(fields, "License-Expression") {
        return Some(expression.to_string());
    }
    if let Some(license) = field(fields, "License") {
        // Some projects paste the whole license text here; only a short name is a license id.
        if !license.contains('\n') && license.len() <= 64 && license != "UNKNOWN" {
            return Some(license.to_string());
        }
    }
    fields
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("Classifier"))
        .find_map(|(_, v)| {
            v.strip_prefix("License ::")
                .and_then(|rest| rest.rsplit("::").next())
                .map(|name| name.trim().to_string())
        })
        .filter(|name| !name.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognizes_metadata_paths() {
        assert!(wants(
            "/usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA"
        ));
        assert!(wants(
            "/usr/local/lib/python3.12/site-packages/req.egg-info/PKG-INFO"
        ));
        assert!(wants("/usr/lib/python3/dist-packages/foo-1.0.egg-info"));
        assert!(!wants("/src/pkg.dist-info/METADATA"));
        assert!(!wants("/usr/lib/python3/dist-packages/six.py"));
    }

    #[test]
    fn normalizes_names() {
        assert_eq!(normalize("Jinja2"), "jinja2");
        assert_eq!(normalize("typing_extensions"), "typing-extensions");
        assert_eq!(normalize("zope.interface"), "zope-interface");
    }
}
