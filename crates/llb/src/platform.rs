//! Platforms (`linux/amd64`, `linux/arm/v7`): the one type every stage of img uses for them, and
//! the one place their names are normalized.
//!
//! Normalization follows containerd's `platforms.Normalize`, which BuildKit and buildx use:
//! architectures take Go's names (`x86_64` is `amd64`, `aarch64` is `arm64`), arm64's default
//! variant `v8` is dropped, and `arm` without a variant means `v7`. [`Platform::parse`] also
//! takes buildx's short forms: `local` (the host), an architecture alone (`arm64` is
//! `linux/arm64`) and an operating system alone (`linux` is the host's architecture on Linux).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An OS, CPU architecture and optional variant, as in an OCI image index.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Platform {
    /// Operating system, e.g. `linux`.
    pub os: String,
    /// CPU architecture in Go's spelling, e.g. `amd64`, `arm64`.
    pub architecture: String,
    /// Architecture variant, e.g. `v7` for `linux/arm/v7`; when matching, `None` takes any.
    pub variant: Option<String>,
}

/// A platform string that names no platform.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid platform {value:?}: expected os/arch[/variant], such as linux/amd64 or linux/arm/v7"
)]
pub struct PlatformError {
    /// The string as given.
    pub value: String,
}

/// Operating systems Go (and so OCI images) knows, for the one-word form.
const KNOWN_OS: &[&str] = &[
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "illumos",
    "ios",
    "js",
    "linux",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "wasip1",
    "windows",
];

/// Architectures Go knows (and their aliases), for the one-word form.
const KNOWN_ARCH: &[&str] = &[
    "386", "i386", "amd64", "x86_64", "x86-64", "arm", "armhf", "armel", "arm64", "aarch64",
    "loong64", "mips", "mipsle", "mips64", "mips64le", "ppc64", "ppc64le", "riscv64", "s390x",
    "wasm",
];

impl Platform {
    /// A platform from its parts, normalized (`Platform::new("linux", "x86_64")` is
    /// `linux/amd64`).
    pub fn new(os: impl Into<String>, architecture: impl Into<String>) -> Self {
        Platform::normalized(&os.into(), &architecture.into(), None)
    }

    /// The same platform with `variant`, normalized again (`arm64` drops `v8`).
    pub fn with_variant(self, variant: Option<&str>) -> Self {
        Platform::normalized(&self.os, &self.architecture, variant)
    }

    /// The platform this program runs on: what a build targets and pulls by default.
    pub fn host() -> Self {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "x86" => "386",
            "aarch64" => "arm64",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "loongarch64" => "loong64",
            other => other,
        };
        Platform::new(std::env::consts::OS, arch)
    }

    /// Parses `os/arch[/variant]`, or one of buildx's short forms (`local`, `arm64`, `linux`).
    pub fn parse(value: &str) -> Result<Self, PlatformError> {
        let err = || PlatformError {
            value: value.to_string(),
        };
        let trimmed = value.trim();
        let parts: Vec<&str> = trimmed.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(err());
        }
        match parts.as_slice() {
            ["local"] => Ok(Platform::host()),
            [one] => {
                let one = one.to_ascii_lowercase();
                if KNOWN_OS.contains(&one.as_str()) {
                    Ok(Platform::new(one, Platform::host().architecture))
                } else if KNOWN_ARCH.contains(&one.as_str()) {
                    Ok(Platform::new("linux", one))
                } else {
                    Err(err())
                }
            }
            [os, arch] => Ok(Platform::normalized(os, arch, None)),
            [os, arch, variant] => Ok(Platform::normalized(os, arch, Some(variant))),
            _ => Err(err()),
        }
    }

    /// Parses a comma-separated list (`--platform linux/amd64,arm64`): each entry as
    /// [`Platform::parse`] takes it, duplicates (after normalization) dropped, order kept.
    pub fn parse_list(value: &str) -> Result<Vec<Self>, PlatformError> {
        let mut platforms: Vec<Platform> = Vec::new();
        for entry in value.split(',') {
            let platform = Platform::parse(entry).map_err(|_| PlatformError {
                value: entry.to_string(),
            })?;
            if !platforms.contains(&platform) {
                platforms.push(platform);
            }
        }
        Ok(platforms)
    }

    /// Whether an image index entry for `other` can serve a request for `self`.
    pub fn matches(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && match (&self.variant, &other.variant) {
                (None, _) => true,
                (Some(want), Some(have)) => want == have,
                (Some(_), None) => false,
            }
    }

    /// The name BuildKit gives this platform's directory in a multi-platform `local` or `tar`
    /// output: `linux_amd64`, `linux_arm_v7`.
    pub fn directory_name(&self) -> String {
        self.to_string().replace('/', "_")
    }

    fn normalized(os: &str, architecture: &str, variant: Option<&str>) -> Self {
        let variant = variant
            .map(str::to_ascii_lowercase)
            .filter(|v| !v.is_empty());
        let (architecture, variant) = normalize_arch(&architecture.to_ascii_lowercase(), variant);
        Platform {
            os: os.to_ascii_lowercase(),
            architecture,
            variant,
        }
    }
}

/// containerd's normalization: Go architecture names, arm64's variant v8 is the default, arm
/// without a variant means v7.
fn normalize_arch(arch: &str, variant: Option<String>) -> (String, Option<String>) {
    match arch {
        "i386" | "386" => ("386".into(), None),
        "x86_64" | "x86-64" | "amd64" => ("amd64".into(), variant.filter(|v| v != "v1")),
        "aarch64" | "arm64" => ("arm64".into(), variant.filter(|v| v != "v8" && v != "8")),
        "armhf" => ("arm".into(), Some("v7".into())),
        "armel" => ("arm".into(), Some("v6".into())),
        "arm" => {
            let v = match variant.as_deref() {
                None | Some("7") | Some("v7") => "v7",
                Some("5") => "v5",
                Some("6") => "v6",
                Some("8") => "v8",
                Some(other) => other,
            };
            ("arm".into(), Some(v.to_string()))
        }
        other => (other.to_string(), variant),
    }
}

impl FromStr for Platform {
    type Err = PlatformError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Platform::parse(s)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalizes() {
        let host_arch = Platform::host().architecture;
        for (input, shown) in [
            ("linux/amd64", "linux/amd64".to_string()),
            ("linux/x86_64", "linux/amd64".to_string()),
            ("linux/amd64/v1", "linux/amd64".to_string()),
            ("linux/arm64/v8", "linux/arm64".to_string()),
            ("linux/aarch64", "linux/arm64".to_string()),
            ("linux/arm", "linux/arm/v7".to_string()),
            ("linux/arm/6", "linux/arm/v6".to_string()),
            ("linux/armhf", "linux/arm/v7".to_string()),
            ("Linux/AMD64", "linux/amd64".to_string()),
            (" linux/riscv64 ", "linux/riscv64".to_string()),
            ("arm64", "linux/arm64".to_string()),
            ("arm", "linux/arm/v7".to_string()),
            ("linux", format!("linux/{host_arch}")),
            ("local", Platform::host().to_string()),
        ] {
            assert_eq!(
                Platform::parse(input).unwrap().to_string(),
                shown,
                "{input}"
            );
        }
        for bad in ["", "linux/", "/amd64", "a/b/c/d", "linux/arm/", "nonsense"] {
            assert!(bad.parse::<Platform>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn lists_are_normalized_deduplicated_and_keep_their_order() {
        let shown = |s: &str| {
            Platform::parse_list(s)
                .unwrap()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            shown("linux/arm64,linux/amd64"),
            ["linux/arm64", "linux/amd64"]
        );
        assert_eq!(
            shown("arm64, linux/aarch64,linux/arm64/v8,amd64"),
            ["linux/arm64", "linux/amd64"]
        );
        assert_eq!(shown("linux/arm/v7"), ["linux/arm/v7"]);
        let err = Platform::parse_list("linux/amd64,,arm64").unwrap_err();
        assert_eq!(err.value, "");
        let err = Platform::parse_list("linux/amd64,bogus").unwrap_err();
        assert_eq!(err.value, "bogus");
    }

    #[test]
    fn matching_ignores_a_missing_variant_on_the_request_side() {
        let p = |s: &str| s.parse::<Platform>().unwrap();
        assert!(p("linux/arm64").matches(&p("linux/arm64/v8")));
        assert!(p("linux/arm/v7").matches(&p("linux/arm/v7")));
        assert!(!p("linux/arm/v6").matches(&p("linux/arm/v7")));
        assert!(!p("linux/amd64").matches(&p("windows/amd64")));
        let any_arm = Platform {
            variant: None,
            ..p("linux/arm")
        };
        assert!(any_arm.matches(&p("linux/arm/v6")));
    }

    #[test]
    fn host_is_named_in_go_terms() {
        let host = Platform::host();
        assert_eq!(host.os, std::env::consts::OS);
        assert_ne!(host.architecture, "x86_64");
        assert_ne!(host.architecture, "aarch64");
    }

    #[test]
    fn directory_names_as_buildkit_lays_them_out() {
        assert_eq!(
            Platform::parse("linux/arm/v7").unwrap().directory_name(),
            "linux_arm_v7"
        );
        assert_eq!(
            Platform::parse("linux/amd64").unwrap().directory_name(),
            "linux_amd64"
        );
    }
}
