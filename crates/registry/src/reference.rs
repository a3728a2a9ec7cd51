//! Image references: Docker's grammar and normalization.
//!
//! `alpine` means `docker.io/library/alpine:latest`, exactly as `docker pull alpine` reads it
//! (distribution/reference `ParseNormalizedNamed` followed by `TagNameOnly`).

use std::fmt;
use std::str::FromStr;

use oci_spec::image::Digest;

/// The registry that unqualified names resolve to.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that actually serves Docker Hub's registry API.
pub(crate) const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
/// The key Docker uses for Docker Hub in `config.json` and credential helpers.
pub(crate) const DOCKER_HUB_CONFIG_KEY: &str = "https://index.docker.io/v1/";

const NAME_TOTAL_LENGTH_MAX: usize = 255;
const TAG_LENGTH_MAX: usize = 128;

/// Why a string is not a valid image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReferenceError {
    /// The string is empty.
    #[error("invalid reference: empty string")]
    Empty,
    /// The repository path has uppercase letters (Docker refuses them).
    #[error("invalid reference {input:?}: repository name must be lowercase")]
    Uppercase {
        /// The reference as given.
        input: String,
    },
    /// A 64-hex string would be confused with an image id.
    #[error("invalid reference {input:?}: cannot use a 64-character hexadecimal string as a repository name")]
    LooksLikeImageId {
        /// The reference as given.
        input: String,
    },
    /// The registry host (or port) does not follow the grammar.
    #[error("invalid reference {input:?}: bad registry host {domain:?}")]
    Domain {
        /// The reference as given.
        input: String,
        /// The offending host part.
        domain: String,
    },
    /// A path component of the repository name does not follow the grammar.
    #[error("invalid reference {input:?}: bad repository path component {component:?} (lowercase letters, digits and single '.', '_', '__' or '-' separators)")]
    PathComponent {
        /// The reference as given.
        input: String,
        /// The offending path component.
        component: String,
    },
    /// The tag does not match `[\w][\w.-]{0,127}`.
    #[error("invalid reference {input:?}: bad tag {tag:?} (letters, digits, '_', '.', '-', at most 128, not starting with '.' or '-')")]
    Tag {
        /// The reference as given.
        input: String,
        /// The offending tag.
        tag: String,
    },
    /// The digest is not `algorithm:hex`.
    #[error("invalid reference {input:?}: bad digest {digest:?}")]
    Digest {
        /// The reference as given.
        input: String,
        /// The offending digest.
        digest: String,
    },
    /// The full name is longer than 255 characters.
    #[error("invalid reference {input:?}: repository name longer than 255 characters")]
    TooLong {
        /// The reference as given.
        input: String,
    },
}

/// A fully qualified image reference: registry, repository, and a tag and/or digest.
///
/// Parsing normalizes like Docker: `alpine` becomes `docker.io/library/alpine:latest`,
/// `index.docker.io/x` becomes `docker.io/x`, and a reference with neither tag nor digest gets
/// the tag `latest`. [`Display`](fmt::Display) prints the full form; [`Reference::familiar`]
/// prints the short form Docker shows users.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalizes a reference (see the type documentation).
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        input.parse()
    }

    /// The registry host, with port if any (`docker.io`, `localhost:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry (`library/alpine`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if the reference has one (`latest` is filled in when neither tag nor digest
    /// was given).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if the reference pins one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The same repository with the given digest (the tag is kept for display).
    pub fn with_digest(&self, digest: Digest) -> Self {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// The same repository with the given tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Self, ReferenceError> {
        if !is_tag(tag) {
            return Err(ReferenceError::Tag {
                input: format!("{}/{}:{tag}", self.registry, self.repository),
                tag: tag.to_string(),
            });
        }
        Ok(Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        })
    }

    /// What to put after `/manifests/` in a registry URL: the digest when pinned (a digest
    /// wins over a tag, as in Docker), else the tag.
    pub(crate) fn manifest_selector(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// The reference shown for a manifest request: the repository with the tag or digest
    /// actually asked for (an index entry's digest, say).
    pub(crate) fn with_selector(&self, selector: &str) -> String {
        let sep = if selector.contains(':') { '@' } else { ':' };
        format!("{}/{}{sep}{selector}", self.registry, self.repository)
    }

    /// The short form Docker prints: `alpine:latest`, `user/app:1`, `localhost:5000/x:y`.
    pub fn familiar(&self) -> String {
        let mut out = String::new();
        if self.registry == DOCKER_HUB {
            match self.repository.strip_prefix("library/") {
                Some(rest) if !rest.contains('/') => out.push_str(rest),
                _ => out.push_str(&self.repository),
            }
        } else {
            out.push_str(&self.registry);
            out.push('/');
            out.push_str(&self.repository);
        }
        self.push_suffix(&mut out);
        out
    }

    fn push_suffix(&self, out: &mut String) {
        if let Some(tag) = &self.tag {
            out.push(':');
            out.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            out.push('@');
            out.push_str(digest.as_ref());
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = format!("{}/{}", self.registry, self.repository);
        self.push_suffix(&mut out);
        f.write_str(&out)
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let err_input = || input.to_string();
        // The digest follows the last '@'; the tag follows the last ':' after the last '/'.
        let (rest, digest) = match input.rsplit_once('@') {
            Some((rest, d)) => (
                rest,
                Some(parse_digest(d).ok_or_else(|| ReferenceError::Digest {
                    input: err_input(),
                    digest: d.to_string(),
                })?),
            ),
            None => (input, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            if !is_tag(tag) {
                return Err(ReferenceError::Tag {
                    input: err_input(),
                    tag: tag.to_string(),
                });
            }
        }
        if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ReferenceError::LooksLikeImageId { input: err_input() });
        }
        let (mut registry, mut repository) = split_domain(name);
        if registry == "index.docker.io" {
            registry = DOCKER_HUB.to_string();
        }
        if registry == DOCKER_HUB && !repository.contains('/') {
            repository = format!("library/{repository}");
        }
        if !is_domain(&registry) {
            return Err(ReferenceError::Domain {
                input: err_input(),
                domain: registry,
            });
        }
        if repository.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase { input: err_input() });
        }
        if let Some(bad) = repository.split('/').find(|c| !is_path_component(c)) {
            return Err(ReferenceError::PathComponent {
                input: err_input(),
                component: bad.to_string(),
            });
        }
        if registry.len() + 1 + repository.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(ReferenceError::TooLong { input: err_input() });
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_string()),
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

/// Docker's `splitDockerDomain`: the first component is a registry host only if it contains
/// '.' or ':', is `localhost`, or has uppercase letters (which no repository path may have).
fn split_domain(name: &str) -> (String, String) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first.to_string(), rest.to_string())
        }
        _ => (DOCKER_HUB.to_string(), name.to_string()),
    }
}

/// Normalizes what a user types for `login`/`logout` into the registry host used in
/// references: `https://index.docker.io/v1/`, `index.docker.io` and `registry-1.docker.io`
/// all mean Docker Hub; a scheme and path are dropped.
pub fn normalize_registry(input: &str) -> String {
    let trimmed = input.trim();
    let no_scheme = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"))
        .unwrap_or(trimmed);
    let host = no_scheme.split('/').next().unwrap_or_default();
    match host {
        "" | "docker.io" | "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
        other => other.to_string(),
    }
}

fn is_domain(domain: &str) -> bool {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        // Bracketed IPv6 literal.
        match rest.split_once(']') {
            Some((ip, after)) => {
                if ip.parse::<std::net::Ipv6Addr>().is_err() {
                    return false;
                }
                match after {
                    "" => return true,
                    p => match p.strip_prefix(':') {
                        Some(port) => ("x", Some(port)),
                        None => return false,
                    },
                }
            }
            None => return false,
        }
    } else {
        match domain.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (domain, None),
        }
    };
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    !host.is_empty()
        && host.split('.').all(|c| {
            !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !c.starts_with('-')
                && !c.ends_with('-')
        })
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn is_path_component(c: &str) -> bool {
    let bytes = c.as_bytes();
    if bytes.is_empty() {
        return false;
    }
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    let mut need_alnum = true;
    while i < bytes.len() {
        let b = bytes[i];
        if alnum(b) {
            need_alnum = false;
            i += 1;
            continue;
        }
        if need_alnum {
            return false;
        }
        let sep_len = match b {
            b'.' => 1,
            b'_' if bytes.get(i + 1) == Some(&b'_') => 2,
            b'_' => 1,
            b'-' => bytes[i..].iter().take_while(|&&x| x == b'-').count(),
            _ => return false,
        };
        i += sep_len;
        need_alnum = true;
    }
    !need_alnum
}

fn is_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= TAG_LENGTH_MAX
        && word(bytes[0])
        && bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-')
}

fn parse_digest(s: &str) -> Option<Digest> {
    let (alg, hex) = s.split_once(':')?;
    let alg_ok = !alg.is_empty()
        && alg.split(['+', '.', '_', '-']).all(|c| {
            c.as_bytes().first().is_some_and(u8::is_ascii_alphabetic)
                && c.bytes().all(|b| b.is_ascii_alphanumeric())
        });
    if !alg_ok || hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Digest::from_str(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn normalizes_like_docker() {
        // input | full form | familiar form
        let cases = [
            ("alpine", "docker.io/library/alpine:latest", "alpine:latest"),
            (
                "alpine:3.19",
                "docker.io/library/alpine:3.19",
                "alpine:3.19",
            ),
            ("user/app", "docker.io/user/app:latest", "user/app:latest"),
            (
                "docker.io/alpine",
                "docker.io/library/alpine:latest",
                "alpine:latest",
            ),
            (
                "index.docker.io/user/app:1",
                "docker.io/user/app:1",
                "user/app:1",
            ),
            (
                "docker.io/library/a/b",
                "docker.io/library/a/b:latest",
                "library/a/b:latest",
            ),
            ("localhost/x", "localhost/x:latest", "localhost/x:latest"),
            (
                "localhost:5000/x/y:t",
                "localhost:5000/x/y:t",
                "localhost:5000/x/y:t",
            ),
            (
                "127.0.0.1:5000/repo",
                "127.0.0.1:5000/repo:latest",
                "127.0.0.1:5000/repo:latest",
            ),
            (
                "[::1]:5000/repo:v",
                "[::1]:5000/repo:v",
                "[::1]:5000/repo:v",
            ),
            (
                "Example.com/repo",
                "Example.com/repo:latest",
                "Example.com/repo:latest",
            ),
            (
                "a__b-c---d/e.f_g",
                "docker.io/a__b-c---d/e.f_g:latest",
                "a__b-c---d/e.f_g:latest",
            ),
        ];
        for (input, full, familiar) in cases {
            let r = Reference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), full, "{input}");
            assert_eq!(r.familiar(), familiar, "{input}");
        }
    }

    #[test]
    fn digests_and_tags() {
        let r = Reference::parse(&format!("alpine@{D}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().unwrap().to_string(), D);
        assert_eq!(r.manifest_selector(), D);
        assert_eq!(r.familiar(), format!("alpine@{D}"));

        let r = Reference::parse(&format!("host:5000/repo:tag@{D}")).unwrap();
        assert_eq!(r.registry(), "host:5000");
        assert_eq!(r.repository(), "repo");
        assert_eq!(r.tag(), Some("tag"));
        assert_eq!(r.manifest_selector(), D);
        assert_eq!(r.to_string(), format!("host:5000/repo:tag@{D}"));
    }

    #[test]
    fn rejects_invalid() {
        let hex64 = "a".repeat(64);
        let long = format!("x/{}", "a".repeat(260));
        type Check = fn(&ReferenceError) -> bool;
        let cases: [(&str, Check); 11] = [
            ("", |e| matches!(e, ReferenceError::Empty)),
            ("Alpine", |e| matches!(e, ReferenceError::Uppercase { .. })),
            ("docker.io/User/app", |e| {
                matches!(e, ReferenceError::Uppercase { .. })
            }),
            ("alpine:", |e| matches!(e, ReferenceError::Tag { .. })),
            ("alpine:-x", |e| matches!(e, ReferenceError::Tag { .. })),
            ("alpine@sha256:abc", |e| {
                matches!(e, ReferenceError::Digest { .. })
            }),
            ("a//b", |e| {
                matches!(e, ReferenceError::PathComponent { .. })
            }),
            ("a/-b", |e| {
                matches!(e, ReferenceError::PathComponent { .. })
            }),
            ("host:port/x", |e| {
                matches!(e, ReferenceError::Domain { .. })
            }),
            (&hex64, |e| {
                matches!(e, ReferenceError::LooksLikeImageId { .. })
            }),
            (&long, |e| matches!(e, ReferenceError::TooLong { .. })),
        ];
        for (input, check) in cases {
            let err = Reference::parse(input).expect_err(input);
            assert!(check(&err), "{input}: {err:?}");
            assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn registry_names_for_login() {
        for (input, want) in [
            ("https://index.docker.io/v1/", "docker.io"),
            ("index.docker.io", "docker.io"),
            ("docker.io", "docker.io"),
            ("localhost:5000", "localhost:5000"),
            ("http://localhost:5000/v2/", "localhost:5000"),
        ] {
            assert_eq!(normalize_registry(input), want, "{input}");
        }
    }
}
