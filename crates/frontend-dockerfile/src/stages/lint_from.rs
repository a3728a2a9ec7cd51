//! Checks of FROM lines. The words of every FROM are checked before any stage is planned, as
//! BuildKit checks them for all stages, reachable or not: `UndefinedArgInFrom`,
//! `RedundantTargetPlatform`, `FromPlatformFlagConstDisallowed` and `InvalidDefaultArgInFrom`.
//! `InvalidBaseImagePlatform` needs the base image's config, so it runs when a stage is planned.

use std::collections::{BTreeMap, BTreeSet};

use crate::instructions::{suggest, FromInstruction, Location};
use crate::shell::{Expansion, Lexer};
use crate::stages::config::ImageConfig;
use crate::stages::lint::Warnings;
use img_llb::Platform;

/// What the FROM words are expanded with.
pub(crate) struct Globals<'a> {
    pub(crate) lexer: &'a Lexer,
    /// The global args with the build args.
    pub(crate) env: &'a BTreeMap<String, String>,
    /// The global args from their defaults alone; `None` when they cannot be evaluated.
    pub(crate) defaults: Option<BTreeMap<String, String>>,
    /// The names every global ARG declares, with a value or not.
    pub(crate) declared: BTreeSet<String>,
}

/// The checks of every FROM line's words. A word that cannot be expanded is left to planning
/// to report.
pub(crate) fn check_from_lines(
    froms: &[(&FromInstruction, &Location)],
    globals: &Globals<'_>,
    warnings: &mut Warnings,
) {
    let (lexer, env, declared) = (globals.lexer, globals.env, &globals.declared);
    for &(from, at) in froms {
        if let Ok(expansion) = lexer.expand_word_tracking(&from.image, env) {
            undefined_args(&expansion, declared, env, at, warnings);
        }
        let Some(platform) = &from.platform else {
            continue;
        };
        if let Ok(expansion) = lexer.expand_word_tracking(platform, env) {
            undefined_args(&expansion, declared, env, at, warnings);
            redundant_target_platform(platform, &expansion, env, at, warnings);
            constant_platform(from.stage_name.as_deref(), &expansion, at, warnings);
        }
    }
    // BuildKit gives up this check at the first word that does not expand.
    let Some(defaults) = &globals.defaults else {
        return;
    };
    for &(from, at) in froms {
        let Ok(base) = lexer.expand_word(&from.image, defaults) else {
            return;
        };
        invalid_default_base(&from.image, &base, at, warnings);
    }
}

/// `ReservedStageName` and `DuplicateStageName`: findings, not errors, as in BuildKit; a
/// reference to a duplicate name means the last stage of that name defined before it.
pub(crate) fn stage_name(
    from: &FromInstruction,
    location: &Location,
    earlier: &[&str],
    warnings: &mut Warnings,
) {
    let Some(name) = &from.stage_name else {
        return;
    };
    if name == "scratch" || name == "context" {
        warnings.add(
            "ReservedStageName",
            location,
            format!("Stage name should not use the same name as reserved stage {name:?}"),
        );
    }
    if earlier.contains(&name.as_str()) {
        warnings.add(
            "DuplicateStageName",
            location,
            format!("Duplicate stage name {name:?}, stage names should be unique"),
        );
    }
}

/// `UndefinedArgInFrom`: a variable in a FROM word that no global ARG declares (declared
/// without a value counts as declared) and that is no automatic platform arg.
fn undefined_args(
    expansion: &Expansion,
    declared: &BTreeSet<String>,
    env: &BTreeMap<String, String>,
    at: &Location,
    warnings: &mut Warnings,
) {
    for name in &expansion.unset {
        if declared.contains(name) || env.contains_key(name) {
            continue;
        }
        let known = declared.iter().chain(env.keys()).map(String::as_str);
        let hint = suggest(name, known)
            .map(|s| format!(" (did you mean {s}?)"))
            .unwrap_or_default();
        warnings.add(
            "UndefinedArgInFrom",
            at,
            format!("FROM argument '{name}' is not declared{hint}"),
        );
    }
}

/// `RedundantTargetPlatform`: `--platform=$TARGETPLATFORM` (the one variable used, and the
/// value it gives) asks for what FROM does anyway.
fn redundant_target_platform(
    written: &str,
    expansion: &Expansion,
    env: &BTreeMap<String, String>,
    at: &Location,
    warnings: &mut Warnings,
) {
    let only_target_platform = expansion.unset.is_empty()
        && expansion.used.len() == 1
        && expansion.used.contains("TARGETPLATFORM");
    if only_target_platform && env.get("TARGETPLATFORM") == Some(&expansion.value) {
        warnings.add(
            "RedundantTargetPlatform",
            at,
            format!(
                "Setting platform to predefined {written} in FROM is redundant as this is the default behavior"
            ),
        );
    }
}

/// `FromPlatformFlagConstDisallowed`: a constant `--platform` pins the stage to one platform,
/// unless the stage's name says so (a stage named `build-arm64` may well be for arm64).
fn constant_platform(
    stage_name: Option<&str>,
    expansion: &Expansion,
    at: &Location,
    warnings: &mut Warnings,
) {
    if !expansion.used.is_empty() {
        return;
    }
    // A value that does not parse fails later, with its own error.
    let Ok(platform) = Platform::parse(&expansion.value) else {
        return;
    };
    let name = stage_name.unwrap_or("");
    if name.contains(&platform.os) || name.contains(&platform.architecture) {
        return;
    }
    warnings.add(
        "FromPlatformFlagConstDisallowed",
        at,
        format!(
            "FROM --platform flag should not use constant value {:?}",
            expansion.value
        ),
    );
}

/// `InvalidDefaultArgInFrom`: with the global ARGs' defaults alone (no build args), the base
/// image name is empty or no valid reference.
fn invalid_default_base(
    written: &str,
    with_defaults: &str,
    at: &Location,
    warnings: &mut Warnings,
) {
    if !is_valid_reference(with_defaults) {
        warnings.add(
            "InvalidDefaultArgInFrom",
            at,
            format!("Default value for ARG {written} results in empty or invalid base image name"),
        );
    }
}

/// `InvalidBaseImagePlatform`: the base image's config names another OS or architecture than
/// the stage is built for.
pub(crate) fn base_image_platform(
    image: &str,
    expected: &Platform,
    config: &ImageConfig,
    at: &Location,
    warnings: &mut Warnings,
) {
    if config.os.is_empty() || config.architecture.is_empty() {
        return;
    }
    let written = match &config.variant {
        Some(v) => format!("{}/{}/{v}", config.os, config.architecture),
        None => format!("{}/{}", config.os, config.architecture),
    };
    let actual = Platform::parse(&written).unwrap_or_else(|_| Platform {
        os: config.os.clone(),
        architecture: config.architecture.clone(),
        variant: config.variant.clone(),
    });
    if actual.os != expected.os || actual.architecture != expected.architecture {
        warnings.add(
            "InvalidBaseImagePlatform",
            at,
            format!(
                "Base image {image} was pulled with platform \"{actual}\", expected \"{expected}\" for current build"
            ),
        );
    }
}

/// Whether `reference` is a valid image reference, `[domain[:port]/]path[:tag][@digest]`, as
/// Docker's reference grammar (`ParseNormalizedNamed`) reads it.
fn is_valid_reference(reference: &str) -> bool {
    // A bare 64-hex-digit string is an image ID, not a name.
    if reference.len() == 64
        && reference
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return false;
    }
    let (name_tag, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    if digest.is_some_and(|d| !is_valid_digest(d)) {
        return false;
    }
    let (name, tag) = match name_tag.rfind(':') {
        Some(i) if !name_tag[i..].contains('/') => (&name_tag[..i], Some(&name_tag[i + 1..])),
        _ => (name_tag, None),
    };
    if tag.is_some_and(|t| !is_valid_tag(t)) || name.is_empty() || name.len() > 255 {
        return false;
    }
    // The first component is a registry when it looks like a host name.
    let (domain, path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first != first.to_lowercase() =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    };
    domain.is_none_or(is_valid_domain) && path.split('/').all(is_valid_path_component)
}

/// `[a-z0-9]+` runs joined by `.`, `_`, `__` or any number of `-`.
fn is_valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let dashes = separator.bytes().all(|b| b == b'-');
        if !(matches!(separator, "." | "_" | "__") || dashes) {
            return false;
        }
    }
    true
}

/// A host name (dot-separated labels of letters, digits and inner `-`) or a bracketed IPv6
/// address, with an optional `:port`.
fn is_valid_domain(domain: &str) -> bool {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.is_empty() || !v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return false;
        }
        match after {
            "" => return true,
            _ => ("v6", after.strip_prefix(':').unwrap_or("x")),
        }
    } else {
        match domain.split_once(':') {
            Some((h, p)) => (h, p),
            None => (domain, "0"),
        }
    };
    let label = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    host.split('.').all(label) && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn is_valid_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && word(bytes[0])
        && bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-')
}

/// `algorithm:hex`, the hex part at least 32 digits.
fn is_valid_digest(digest: &str) -> bool {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return false;
    };
    let algorithm_ok = algorithm.split(['-', '_', '+', '.']).all(|part| {
        part.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
            && part.bytes().all(|b| b.is_ascii_alphanumeric())
    });
    algorithm_ok && hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_as_docker_reads_them() {
        for ok in [
            "alpine",
            "alpine:3.20",
            "library/alpine:latest",
            "docker.io/library/alpine",
            "localhost:5000/team/app:v1.2-rc_3",
            "localhost/app",
            "registry.example.com/a/b/c",
            "[::1]:5000/app",
            "my-registry.io:443/my_app__x/b.c",
            "app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "app:1@sha256:0123456789abcdef0123456789abcdef",
            "scratch",
            "build",
        ] {
            assert!(is_valid_reference(ok), "{ok}");
        }
        for bad in [
            "",
            "alpine:",
            ":tag",
            "Alpine",
            "docker.io/Library/alpine",
            "app:-tag",
            "a//b",
            "a/",
            "-a",
            "a-",
            "a..b",
            "app@sha256:abc",
            "app@:0123456789abcdef0123456789abcdef",
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "a b",
            "host:port/app",
        ] {
            assert!(!is_valid_reference(bad), "{bad}");
        }
    }
}
