//! What a scan finds: packages, where it found them, and package URLs for them.

use std::fmt;

/// The package ecosystem a package belongs to (its purl type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum PackageKind {
    /// A Debian package from the dpkg database.
    Deb,
    /// An Alpine package from the apk database.
    Apk,
    /// A Python distribution (dist-info or egg-info).
    Python,
    /// An npm package (a lockfile entry or an installed `package.json`).
    Npm,
    /// A Rust crate listed in a Cargo.lock.
    Cargo,
}

impl PackageKind {
    /// The purl type: `deb`, `apk`, `pypi`, `npm`, `cargo`.
    pub fn purl_type(self) -> &'static str {
        match self {
            PackageKind::Deb => "deb",
            PackageKind::Apk => "apk",
            PackageKind::Python => "pypi",
            PackageKind::Npm => "npm",
            PackageKind::Cargo => "cargo",
        }
    }

    /// The name of the database the package was read from, for SPDX `sourceInfo` (worded as
    /// syft words it).
    pub(crate) fn source_description(self) -> &'static str {
        match self {
            PackageKind::Deb => "DPKG DB",
            PackageKind::Apk => "APK DB",
            PackageKind::Python => "installed python package manifest file",
            PackageKind::Npm => "javascript package manifest or lockfile",
            PackageKind::Cargo => "Rust Cargo.lock file",
        }
    }
}

impl fmt::Display for PackageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.purl_type())
    }
}

/// One package found in the image.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Package {
    /// Its ecosystem.
    pub kind: PackageKind,
    /// Its name as the ecosystem spells it.
    pub name: String,
    /// Its version as the ecosystem spells it.
    pub version: String,
    /// Its package URL (`pkg:deb/debian/bash@5.2.15-2?arch=amd64&distro=debian-12`).
    pub purl: String,
    /// Its declared license, when the metadata names one.
    pub license: Option<String>,
    /// The files (absolute within the image) where it was found, sorted.
    pub locations: Vec<String>,
}

/// Characters a purl component keeps as they are: RFC 3986 unreserved ones.
fn is_unreserved(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~')
}

/// Percent-encodes a purl component. `keep` adds characters left alone (`:` and `+` in
/// versions, as packageurl-go leaves them).
fn encode(value: &str, keep: &[char]) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if is_unreserved(c) || keep.contains(&c) {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for byte in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{byte:02X}"));
            }
        }
    }
    out
}

/// A package URL from its parts (purl-spec): the namespace's segments and the name encoded,
/// the version keeping `:` and `+`, qualifiers sorted by key and empty ones left out.
pub(crate) fn purl(
    kind: &str,
    namespace: Option<&str>,
    name: &str,
    version: Option<&str>,
    qualifiers: &[(&str, &str)],
) -> String {
    let mut out = format!("pkg:{kind}/");
    if let Some(namespace) = namespace.filter(|n| !n.is_empty()) {
        for segment in namespace.split('/').filter(|s| !s.is_empty()) {
            out.push_str(&encode(segment, &[]));
            out.push('/');
        }
    }
    out.push_str(&encode(name, &[]));
    if let Some(version) = version.filter(|v| !v.is_empty()) {
        out.push('@');
        out.push_str(&encode(version, &[':', '+']));
    }
    let mut qualifiers: Vec<&(&str, &str)> =
        qualifiers.iter().filter(|(_, v)| !v.is_empty()).collect();
    qualifiers.sort();
    for (i, (key, value)) in qualifiers.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(key);
        out.push('=');
        out.push_str(&encode(value, &[]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purls_encode_as_the_spec_shows() {
        assert_eq!(
            purl(
                "deb",
                Some("debian"),
                "libc6",
                Some("2.36-9+deb12u4"),
                &[("distro", "debian-12"), ("arch", "amd64")]
            ),
            "pkg:deb/debian/libc6@2.36-9+deb12u4?arch=amd64&distro=debian-12"
        );
        assert_eq!(
            purl("npm", Some("@babel"), "core", Some("7.24.0"), &[]),
            "pkg:npm/%40babel/core@7.24.0"
        );
        assert_eq!(
            purl(
                "docker",
                None,
                "alpine",
                Some("3.19"),
                &[("platform", "linux/arm/v7")]
            ),
            "pkg:docker/alpine@3.19?platform=linux%2Farm%2Fv7"
        );
        assert_eq!(
            purl(
                "deb",
                Some("debian"),
                "tzdata",
                Some("1:2024a"),
                &[("arch", "")]
            ),
            "pkg:deb/debian/tzdata@1:2024a"
        );
    }
}
