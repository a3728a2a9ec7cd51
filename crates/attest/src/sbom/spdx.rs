//! SPDX 2.3 JSON, shaped as syft (BuildKit's default scanner) writes it: the document, one
//! package for the scanned image that the document DESCRIBES, and one package per package found
//! that the image CONTAINS, each with its purl as a `PACKAGE-MANAGER` external reference.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{Package, ScanReport};
use crate::statement::{Statement, Subject};
use crate::timestamp::rfc3339_seconds;

/// The predicate type of an SPDX document in an in-toto statement.
pub const SPDX_PREDICATE_TYPE: &str = "https://spdx.dev/Document";

const NOASSERTION: &str = "NOASSERTION";
const DOCUMENT_ID: &str = "SPDXRef-DOCUMENT";
const ROOT_ID: &str = "SPDXRef-DocumentRoot-Image";

/// What the document says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpdxOptions {
    /// The name of what was scanned: the image name, or its digest.
    pub name: String,
    /// The document's creation time (the build's time for reproducible output).
    pub created: SystemTime,
    /// `creationInfo.creators` entries (`Tool: img-0.1.0`).
    pub creators: Vec<String>,
}

impl SpdxOptions {
    /// Options naming `name`, created at `created`, by this version of img.
    pub fn new(name: impl Into<String>, created: SystemTime) -> Self {
        SpdxOptions {
            name: name.into(),
            created,
            creators: vec![format!("Tool: img-{}", env!("CARGO_PKG_VERSION"))],
        }
    }
}

/// An SPDX 2.3 document (the fields img writes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpdxDocument {
    /// `SPDX-2.3`.
    #[serde(rename = "spdxVersion")]
    pub spdx_version: String,
    /// `CC0-1.0`, as the specification requires.
    #[serde(rename = "dataLicense")]
    pub data_license: String,
    /// `SPDXRef-DOCUMENT`.
    #[serde(rename = "SPDXID")]
    pub spdx_id: String,
    /// What was scanned.
    pub name: String,
    /// A URI unique to this document (derived from its content, so stable across scans).
    #[serde(rename = "documentNamespace")]
    pub document_namespace: String,
    /// Who made it and when.
    #[serde(rename = "creationInfo")]
    pub creation_info: SpdxCreationInfo,
    /// The image and its packages.
    pub packages: Vec<SpdxPackage>,
    /// License texts referenced as `LicenseRef-…` (metadata licenses that are not SPDX
    /// expressions).
    #[serde(
        rename = "hasExtractedLicensingInfos",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub extracted_licenses: Vec<SpdxLicenseInfo>,
    /// DESCRIBES and CONTAINS.
    pub relationships: Vec<SpdxRelationship>,
}

/// `creationInfo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpdxCreationInfo {
    /// `Tool: name-version` and the like.
    pub creators: Vec<String>,
    /// RFC 3339, UTC, seconds.
    pub created: String,
}

/// One package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpdxPackage {
    /// Its name.
    pub name: String,
    /// `SPDXRef-…`, unique in the document.
    #[serde(rename = "SPDXID")]
    pub spdx_id: String,
    /// Its version.
    #[serde(
        rename = "versionInfo",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub version_info: Option<String>,
    /// `NOASSERTION`: a scan does not know where a package was downloaded from.
    #[serde(rename = "downloadLocation")]
    pub download_location: String,
    /// `false`: files are not listed.
    #[serde(rename = "filesAnalyzed")]
    pub files_analyzed: bool,
    /// Where the package was found (`acquired package info from DPKG DB: /var/lib/dpkg/status`).
    #[serde(
        rename = "sourceInfo",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub source_info: Option<String>,
    /// `NOASSERTION`.
    #[serde(rename = "licenseConcluded")]
    pub license_concluded: String,
    /// The license the metadata declares, or `NOASSERTION`.
    #[serde(rename = "licenseDeclared")]
    pub license_declared: String,
    /// `NOASSERTION`.
    #[serde(rename = "copyrightText")]
    pub copyright_text: String,
    /// `CONTAINER` for the image itself.
    #[serde(
        rename = "primaryPackagePurpose",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub primary_package_purpose: Option<String>,
    /// The purl.
    #[serde(
        rename = "externalRefs",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub external_refs: Vec<SpdxExternalRef>,
}

/// An external reference (the purl).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpdxExternalRef {
    /// `PACKAGE-MANAGER`.
    #[serde(rename = "referenceCategory")]
    pub reference_category: String,
    /// `purl`.
    #[serde(rename = "referenceType")]
    pub reference_type: String,
    /// The purl itself.
    #[serde(rename = "referenceLocator")]
    pub reference_locator: String,
}

/// A license that is not an SPDX expression, kept as text under a `LicenseRef-` id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpdxLicenseInfo {
    /// `LicenseRef-…`.
    #[serde(rename = "licenseId")]
    pub license_id: String,
    /// The text as the metadata had it.
    #[serde(rename = "extractedText")]
    pub extracted_text: String,
}

/// A relationship between two elements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpdxRelationship {
    /// The subject element.
    #[serde(rename = "spdxElementId")]
    pub spdx_element_id: String,
    /// The object element.
    #[serde(rename = "relatedSpdxElement")]
    pub related_spdx_element: String,
    /// `DESCRIBES`, `CONTAINS`.
    #[serde(rename = "relationshipType")]
    pub relationship_type: String,
}

/// Keeps `[A-Za-z0-9.-]`, as SPDX ids allow, replacing the rest with `-`.
fn id_part(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn short_hash(value: &str) -> String {
    hex::encode(&Sha256::digest(value.as_bytes())[..8])
}

/// `license` as a valid SPDX expression of license-list identifiers, as is or canonicalized
/// (`GPL-2+` is `GPL-2.0-or-later`, `apache2` is `Apache-2.0`); `None` when it names a license
/// the list does not have.
fn spdx_expression(license: &str) -> Option<String> {
    if spdx::Expression::parse(license).is_ok() {
        return Some(license.to_string());
    }
    let canonical = spdx::Expression::canonicalize(license).ok()??;
    spdx::Expression::parse(&canonical).ok()?;
    Some(canonical)
}

/// The license-list identifier of one license name as distributions write it: Debian's DEP-5
/// short names (`GPL-2+`, `LGPL-2.1`, `BSD-3-clause`, `Expat`) and ids in the wrong case.
fn license_list_name(name: &str) -> Option<String> {
    let (base, or_later) = match name.strip_suffix('+') {
        Some(base) => (base, true),
        None => (name, false),
    };
    for family in ["AGPL", "LGPL", "GPL", "GFDL"] {
        if let Some(version) = base.strip_prefix(family).and_then(|v| v.strip_prefix('-')) {
            let version = if version.contains('.') {
                version.to_string()
            } else {
                format!("{version}.0")
            };
            return spdx::gnu_license_id(&format!("{family}-{version}"), or_later)
                .map(|id| id.name.to_string());
        }
    }
    // DEP-5 calls the MIT license by the name of the project that wrote it.
    if base.eq_ignore_ascii_case("expat") {
        return Some("MIT".to_string());
    }
    let id = spdx::identifiers::LICENSES
        .iter()
        .find(|license| license.name.eq_ignore_ascii_case(base))?;
    Some(if or_later {
        format!("{}+", id.name)
    } else {
        id.name.to_string()
    })
}

/// The `licenseDeclared` of a package's license text: the SPDX expression it is, else the same
/// expression with each unknown name replaced by a `LicenseRef-` whose text is recorded in
/// `extracted` (so `GPL-2+ AND permissive` keeps its GPL), else one `LicenseRef-` for all.
fn declared_license(license: &str, extracted: &mut BTreeMap<String, String>) -> String {
    if let Some(expression) = spdx_expression(license) {
        return expression;
    }
    let mut out: Vec<String> = Vec::new();
    let mut term: Vec<&str> = Vec::new();
    let mut refs: Vec<(String, String)> = Vec::new();
    let mut flush = |term: &mut Vec<&str>, out: &mut Vec<String>| {
        if term.is_empty() {
            return;
        }
        let text = term.join(" ");
        term.clear();
        match spdx_expression(&text).or_else(|| license_list_name(&text)) {
            Some(expression) => out.push(expression),
            None => {
                let id = format!("LicenseRef-{}", id_part(&text));
                refs.push((id.clone(), text));
                out.push(id);
            }
        }
    };
    let spaced = license.replace('(', " ( ").replace(')', " ) ");
    for token in spaced.split_whitespace() {
        let operator = token.to_ascii_uppercase();
        if matches!(operator.as_str(), "AND" | "OR" | "(" | ")") {
            flush(&mut term, &mut out);
            out.push(operator);
        } else {
            term.push(token);
        }
    }
    flush(&mut term, &mut out);
    // A list of licenses (`A AND B AND A`, as the Debian copyright gives them) names each once,
    // even when two spellings became the same id.
    if out.iter().all(|t| !matches!(t.as_str(), "OR" | "(" | ")")) {
        let mut seen = std::collections::BTreeSet::new();
        let terms: Vec<String> = out
            .iter()
            .filter(|t| t.as_str() != "AND")
            .filter(|t| seen.insert(t.to_string()))
            .cloned()
            .collect();
        out = terms.join(" AND ").split(' ').map(str::to_string).collect();
    }
    let joined = out.join(" ").replace("( ", "(").replace(" )", ")");
    if spdx::Expression::parse(&joined).is_ok() {
        extracted.extend(refs);
        return joined;
    }
    let id = format!("LicenseRef-{}", id_part(license));
    extracted.insert(id.clone(), license.to_string());
    id
}

impl ScanReport {
    /// The SPDX 2.3 document of this scan. Deterministic: the same report and options give the
    /// same bytes.
    pub fn to_spdx(&self, options: &SpdxOptions) -> SpdxDocument {
        let mut packages = vec![SpdxPackage {
            name: options.name.clone(),
            spdx_id: ROOT_ID.to_string(),
            version_info: None,
            download_location: NOASSERTION.to_string(),
            files_analyzed: false,
            source_info: None,
            license_concluded: NOASSERTION.to_string(),
            license_declared: NOASSERTION.to_string(),
            copyright_text: NOASSERTION.to_string(),
            primary_package_purpose: Some("CONTAINER".to_string()),
            external_refs: Vec::new(),
        }];
        let mut relationships = vec![SpdxRelationship {
            spdx_element_id: DOCUMENT_ID.to_string(),
            related_spdx_element: ROOT_ID.to_string(),
            relationship_type: "DESCRIBES".to_string(),
        }];
        let mut extracted: BTreeMap<String, String> = BTreeMap::new();
        for package in &self.packages {
            let spdx_id = format!(
                "SPDXRef-Package-{}-{}-{}",
                package.kind.purl_type(),
                id_part(&package.name),
                short_hash(&package.purl)
            );
            relationships.push(SpdxRelationship {
                spdx_element_id: ROOT_ID.to_string(),
                related_spdx_element: spdx_id.clone(),
                relationship_type: "CONTAINS".to_string(),
            });
            packages.push(spdx_package(package, spdx_id, &mut extracted));
        }
        let mut namespace_input =
            format!("{}\n{}\n", options.name, rfc3339_seconds(options.created));
        for package in &self.packages {
            namespace_input.push_str(&package.purl);
            namespace_input.push('\n');
        }
        SpdxDocument {
            spdx_version: "SPDX-2.3".to_string(),
            data_license: "CC0-1.0".to_string(),
            spdx_id: DOCUMENT_ID.to_string(),
            name: options.name.clone(),
            document_namespace: format!(
                "https://img-build.github.io/spdx/{}-{}",
                id_part(&options.name),
                hex::encode(Sha256::digest(namespace_input.as_bytes()))
            ),
            creation_info: SpdxCreationInfo {
                creators: options.creators.clone(),
                created: rfc3339_seconds(options.created),
            },
            packages,
            extracted_licenses: extracted
                .into_iter()
                .map(|(license_id, extracted_text)| SpdxLicenseInfo {
                    license_id,
                    extracted_text,
                })
                .collect(),
            relationships,
        }
    }
}

fn spdx_package(
    package: &Package,
    spdx_id: String,
    extracted: &mut BTreeMap<String, String>,
) -> SpdxPackage {
    let license_declared = match &package.license {
        Some(license) => declared_license(license, extracted),
        None => NOASSERTION.to_string(),
    };
    SpdxPackage {
        name: package.name.clone(),
        spdx_id,
        version_info: Some(package.version.clone()),
        download_location: NOASSERTION.to_string(),
        files_analyzed: false,
        source_info: Some(format!(
            "acquired package info from {}: {}",
            package.kind.source_description(),
            package.locations.join(", ")
        )),
        license_concluded: NOASSERTION.to_string(),
        license_declared,
        copyright_text: NOASSERTION.to_string(),
        primary_package_purpose: None,
        external_refs: vec![SpdxExternalRef {
            reference_category: "PACKAGE-MANAGER".to_string(),
            reference_type: "purl".to_string(),
            reference_locator: package.purl.clone(),
        }],
    }
}

/// The in-toto statement of an SBOM about `subject`.
pub fn sbom_statement(document: &SpdxDocument, subject: Vec<Subject>) -> Statement {
    Statement::new(
        SPDX_PREDICATE_TYPE,
        subject,
        serde_json::to_value(document).expect("an SPDX document serializes"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn licenses_become_spdx_expressions_or_license_refs() {
        let mut extracted = BTreeMap::new();
        let mut declared = |license: &str| declared_license(license, &mut extracted);
        assert_eq!(declared("MIT"), "MIT");
        assert_eq!(declared("MIT OR Apache-2.0"), "MIT OR Apache-2.0");
        assert_eq!(declared("MPL-2.0 AND MIT"), "MPL-2.0 AND MIT");
        assert_eq!(
            declared("GPL-2.0-only WITH Classpath-exception-2.0"),
            "GPL-2.0-only WITH Classpath-exception-2.0"
        );
        assert_eq!(declared("GPL-2+"), "GPL-2.0-or-later");
        assert_eq!(declared("LGPL-2.1"), "LGPL-2.1-only");
        assert_eq!(declared("Expat"), "MIT");
        assert_eq!(
            declared("BSD-3-clause AND BSD-3-Clause AND public-domain"),
            "BSD-3-Clause AND LicenseRef-public-domain"
        );
        assert_eq!(
            declared("BSD-3-clause AND GPL-2+ AND permissive"),
            "BSD-3-Clause AND GPL-2.0-or-later AND LicenseRef-permissive"
        );
        assert_eq!(declared("Apache 2.0"), "Apache-2.0");
        assert_eq!(
            declared("Custom Corp License"),
            "LicenseRef-Custom-Corp-License"
        );
        assert_eq!(declared("(MIT"), "LicenseRef--MIT");
        assert_eq!(
            extracted.into_iter().collect::<Vec<_>>(),
            [
                ("LicenseRef--MIT".to_string(), "(MIT".to_string()),
                (
                    "LicenseRef-Custom-Corp-License".to_string(),
                    "Custom Corp License".to_string()
                ),
                (
                    "LicenseRef-permissive".to_string(),
                    "permissive".to_string()
                ),
                (
                    "LicenseRef-public-domain".to_string(),
                    "public-domain".to_string()
                ),
            ]
        );
    }
}
