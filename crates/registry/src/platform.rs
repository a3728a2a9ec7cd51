//! Target platforms (`linux/amd64`, `linux/arm/v7`) and how an index entry is matched.

use std::fmt;
use std::str::FromStr;

/// An `os/architecture[/variant]` triple, normalized like containerd's `platforms.Normalize`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    /// Operating system (`linux`).
    pub os: String,
    /// CPU architecture in Go's naming (`amd64`, `arm64`, `arm`, `386`, `ppc64le`, `s390x`).
    pub architecture: String,
    /// Architecture variant (`v7` for arm); `None` matches any variant.
    pub variant: Option<String>,
}

/// A platform string that is not `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid platform {input:?}: expected os/architecture[/variant], e.g. linux/amd64")]
pub struct PlatformError {
    /// The string as given.
    pub input: String,
}

impl Platform {
    /// Builds a platform from its parts, normalizing architecture names and variants.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Self {
        let os = os.to_ascii_lowercase();
        let (architecture, variant) = normalize_arch(
            &architecture.to_ascii_lowercase(),
            variant
                .map(str::to_ascii_lowercase)
                .filter(|v| !v.is_empty()),
        );
        Platform {
            os,
            architecture,
            variant,
        }
    }

    /// The platform this program runs on (what Docker pulls by default).
    pub fn host() -> Self {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "x86" => "386",
            "aarch64" => "arm64",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "riscv64" => "riscv64",
            "s390x" => "s390x",
            "loongarch64" => "loong64",
            "arm" => "arm",
            other => other,
        };
        Platform::new(std::env::consts::OS, arch, None)
    }

    /// Whether an index entry for `other` can serve a request for `self`.
    pub fn matches(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && match (&self.variant, &other.variant) {
                (None, _) => true,
                (Some(want), Some(have)) => want == have,
                (Some(_), None) => false,
            }
    }
}

/// containerd's normalization: Go architecture names, arm64's variant v8 is the default,
/// arm without variant means v7.
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
        let parts: Vec<&str> = s.split('/').collect();
        let err = || PlatformError {
            input: s.to_string(),
        };
        if parts.iter().any(|p| p.is_empty()) {
            return Err(err());
        }
        match parts.as_slice() {
            [os, arch] => Ok(Platform::new(os, arch, None)),
            [os, arch, variant] => Ok(Platform::new(os, arch, Some(variant))),
            _ => Err(err()),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalizes() {
        for (input, shown) in [
            ("linux/amd64", "linux/amd64"),
            ("linux/x86_64", "linux/amd64"),
            ("linux/arm64/v8", "linux/arm64"),
            ("linux/aarch64", "linux/arm64"),
            ("linux/arm", "linux/arm/v7"),
            ("linux/arm/6", "linux/arm/v6"),
            ("Linux/AMD64", "linux/amd64"),
        ] {
            assert_eq!(
                input.parse::<Platform>().unwrap().to_string(),
                shown,
                "{input}"
            );
        }
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d"] {
            assert!(bad.parse::<Platform>().is_err(), "{bad}");
        }
    }

    #[test]
    fn matching() {
        let p = |s: &str| s.parse::<Platform>().unwrap();
        assert!(p("linux/arm64").matches(&p("linux/arm64/v8")));
        assert!(p("linux/arm/v7").matches(&p("linux/arm/v7")));
        assert!(!p("linux/arm/v6").matches(&p("linux/arm/v7")));
        assert!(!p("linux/amd64").matches(&p("windows/amd64")));
        assert_eq!(Platform::host().os, std::env::consts::OS);
    }
}
