//! The catalogers: one module per package database format, each turning the files it knows
//! into [`Package`]s. Every parser takes bytes read through [`RootFs`] and skips what it cannot
//! understand with a warning; none panics on malformed input.

mod apk;
mod cargo;
mod dpkg;
mod npm;
mod python;

use super::package::Package;
use super::rootfs::{ReadError, RootFs};
use super::ScanWarning;

/// The distribution named by `/etc/os-release`: the namespace and `distro` qualifier of deb and
/// apk purls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Distro {
    /// `ID` (`debian`, `ubuntu`, `alpine`).
    pub id: Option<String>,
    /// `VERSION_ID` (`12`, `3.19.1`).
    pub version_id: Option<String>,
}

impl Distro {
    /// `ID-VERSION_ID`, as syft writes the `distro` qualifier.
    fn qualifier(&self) -> String {
        match (&self.id, &self.version_id) {
            (Some(id), Some(version)) => format!("{id}-{version}"),
            (Some(id), None) => id.clone(),
            _ => String::new(),
        }
    }
}

/// The state of one scan: the filesystem, what was found and what was skipped.
pub(crate) struct Catalog<'a> {
    pub fs: &'a RootFs,
    pub distro: Distro,
    pub packages: Vec<Package>,
    pub warnings: Vec<ScanWarning>,
}

impl<'a> Catalog<'a> {
    pub(crate) fn new(fs: &'a RootFs) -> Self {
        let mut catalog = Catalog {
            fs,
            distro: Distro::default(),
            packages: Vec::new(),
            warnings: Vec::new(),
        };
        catalog.distro = catalog.read_os_release();
        catalog
    }

    /// Records a skipped file or directory.
    pub(crate) fn warn(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.warnings.push(ScanWarning {
            path: path.into(),
            reason: reason.into(),
        });
    }

    /// Reads a file, or records why not (a missing file is silently `None`).
    pub(crate) fn read(&mut self, path: &str) -> Option<Vec<u8>> {
        match self.fs.read(path) {
            Ok(bytes) => Some(bytes),
            Err(ReadError::NotFound) => None,
            Err(e) => {
                self.warn(path, format!("not read: {e}"));
                None
            }
        }
    }

    /// Reads a file as UTF-8 text (invalid sequences replaced: package databases are text,
    /// and one bad byte in a description must not lose the whole database).
    pub(crate) fn read_text(&mut self, path: &str) -> Option<String> {
        self.read(path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    }

    fn read_os_release(&mut self) -> Distro {
        let text = self
            .read_text("/etc/os-release")
            .or_else(|| self.read_text("/usr/lib/os-release"));
        let mut distro = Distro::default();
        for line in text.as_deref().unwrap_or("").lines() {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = value
                .trim()
                .trim_matches('"')
                .trim_matches('\'')
                .to_string();
            if value.is_empty() {
                continue;
            }
            match key.trim() {
                "ID" => distro.id = Some(value),
                "VERSION_ID" => distro.version_id = Some(value),
                _ => {}
            }
        }
        distro
    }

    /// Runs every cataloger: the fixed-path databases, then one walk of the tree for the
    /// language ecosystems' files.
    pub(crate) fn run(&mut self) {
        dpkg::catalog(self);
        apk::catalog(self);
        let mut python_files = Vec::new();
        let mut npm_files = Vec::new();
        let mut cargo_files = Vec::new();
        let mut walk_warnings = Vec::new();
        self.fs.walk_files(
            |path| {
                if python::wants(path) {
                    python_files.push(path.to_string());
                } else if npm::wants(path) {
                    npm_files.push(path.to_string());
                } else if cargo::wants(path) {
                    cargo_files.push(path.to_string());
                }
            },
            |path, reason| walk_warnings.push(ScanWarning { path, reason }),
        );
        self.warnings.extend(walk_warnings);
        for path in python_files {
            python::catalog_file(self, &path);
        }
        for path in npm_files {
            npm::catalog_file(self, &path);
        }
        for path in cargo_files {
            cargo::catalog_file(self, &path);
        }
    }
}

/// Splits RFC 822-style text (dpkg status, apk's database uses its own single-letter form)
/// into paragraphs separated by blank lines.
pub(crate) fn paragraphs(text: &str) -> impl Iterator<Item = &str> {
    text.split("\n\n")
        .flat_map(|p| p.split("\r\n\r\n"))
        .map(|p| p.trim_matches(['\n', '\r']))
        .filter(|p| !p.trim().is_empty())
}

/// The `Key: value` fields of one deb822 / RFC 822 paragraph; continuation lines (starting with
/// a space or tab) are appended to the previous field with a newline.
pub(crate) fn fields(paragraph: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in paragraph.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = out.last_mut() {
                value.push('\n');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((key, value)) = line.split_once(':') {
            out.push((key.trim().to_string(), value.trim().to_string()));
        }
    }
    out
}

/// The first value of `key` (case-insensitive) in `fields`.
pub(crate) fn field<'f>(fields: &'f [(String, String)], key: &str) -> Option<&'f str> {
    fields
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}
