//! Package URLs of container images, as BuildKit's `purl.RefToPURL` writes them for provenance
//! materials and statement subjects.

use img_llb::Platform;

use crate::sbom::package::purl;

/// `pkg:docker/NAMESPACE/NAME@TAG?digest=…&platform=…` for an image reference. The name is
/// Docker's familiar form (`docker.io/library/` dropped), a reference without tag or digest is
/// `latest`, and a reference pinned by digest carries it as the `digest` qualifier (its tag, if
/// any, dropped, as distribution's parser drops it).
pub fn image_purl(reference: &str, platform: Option<&Platform>) -> String {
    let (name_and_tag, digest) = match reference.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (reference, None),
    };
    // A tag follows the last ':' after the last '/' (a ':' before it is a registry port).
    let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_and_tag[last_slash..].rfind(':') {
        Some(i) => (
            &name_and_tag[..last_slash + i],
            Some(&name_and_tag[last_slash + i + 1..]),
        ),
        None => (name_and_tag, None),
    };
    let familiar = familiar_name(name);
    let (namespace, short) = match familiar.rsplit_once('/') {
        Some((namespace, short)) => (Some(namespace), short),
        None => (None, familiar.as_str()),
    };
    let version = match (digest, tag) {
        (Some(_), _) => None,
        (None, Some(tag)) => Some(tag),
        (None, None) => Some("latest"),
    };
    let platform = platform.map(ToString::to_string).unwrap_or_default();
    // packageurl-go keeps qualifiers in the order given: digest, then platform.
    let mut out = purl("docker", namespace, short, version, &[]);
    let mut first = true;
    for (key, value) in [("digest", digest.unwrap_or("")), ("platform", &platform)] {
        if value.is_empty() {
            continue;
        }
        out.push(if first { '?' } else { '&' });
        first = false;
        out.push_str(key);
        out.push('=');
        out.push_str(&value.replace(':', "%3A").replace('/', "%2F"));
    }
    out
}

/// Docker's short name: `docker.io/library/alpine` is `alpine`, `docker.io/user/app` is
/// `user/app`; other registries stay.
fn familiar_name(name: &str) -> String {
    let name = name
        .strip_prefix("docker.io/")
        .or_else(|| name.strip_prefix("index.docker.io/"))
        .unwrap_or(name);
    match name.strip_prefix("library/") {
        Some(rest) if !rest.contains('/') => rest.to_string(),
        _ => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_become_buildkit_purls() {
        let amd64 = Platform::new("linux", "amd64");
        assert_eq!(
            image_purl("docker.io/library/alpine:3.17", Some(&amd64)),
            "pkg:docker/alpine@3.17?platform=linux%2Famd64"
        );
        assert_eq!(image_purl("alpine", None), "pkg:docker/alpine@latest");
        assert_eq!(
            image_purl("docker.io/docker/buildx-bin:0.6.1", None),
            "pkg:docker/docker/buildx-bin@0.6.1"
        );
        assert_eq!(
            image_purl("localhost:5000/team/app", Some(&amd64)),
            "pkg:docker/localhost%3A5000/team/app@latest?platform=linux%2Famd64"
        );
        let pinned = format!("golang:1.22@sha256:{}", "ab".repeat(32));
        assert_eq!(
            image_purl(&pinned, Some(&amd64)),
            format!(
                "pkg:docker/golang?digest=sha256%3A{}&platform=linux%2Famd64",
                "ab".repeat(32)
            )
        );
    }
}
