//! `--build-context NAME=VALUE`, as buildx reads it: `docker-image://REF`,
//! `oci-layout://PATH[:TAG][@DIGEST]`, a git URL, or a local directory. A `FROM NAME`, `COPY --from=NAME` or `RUN --mount from=NAME` then uses it
//! instead of the stage or image of that name, as BuildKit resolves named contexts first.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use img_frontend_dockerfile::NamedContext;

use crate::context::{BuildContext, ContextSpec, GitUrl};
use crate::oci_layout_context::OciLayoutImage;

/// What one `--build-context` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedContextSpec {
    /// `docker-image://REF`.
    Image(String),
    /// `oci-layout://…`: an image in a local OCI layout, and the reference the build names
    /// it by.
    OciLayout {
        /// The image, resolved to its digest.
        image: OciLayoutImage,
        /// Its digest-pinned reference ([`OciLayoutImage::reference`]).
        reference: String,
    },
    /// A local directory.
    Dir(PathBuf),
    /// A git repository, cloned before the build.
    Git(GitUrl),
}

impl NamedContextSpec {
    /// What the frontend sees: an image, or a local context of that name.
    pub fn for_frontend(&self) -> NamedContext {
        match self {
            NamedContextSpec::Image(reference) | NamedContextSpec::OciLayout { reference, .. } => {
                NamedContext::Image {
                    reference: reference.clone(),
                }
            }
            NamedContextSpec::Dir(_) | NamedContextSpec::Git(_) => NamedContext::Local,
        }
    }

    /// Whether the build reads it as a local directory.
    pub fn is_local(&self) -> bool {
        matches!(self, NamedContextSpec::Dir(_) | NamedContextSpec::Git(_))
    }
}

/// Checks one `--build-context NAME=VALUE`.
pub fn parse_build_context(spec: &str) -> anyhow::Result<(String, NamedContextSpec)> {
    let (name, value) = spec
        .split_once('=')
        .with_context(|| format!("invalid --build-context {spec:?}: give NAME=VALUE"))?;
    if name.is_empty() || name.chars().any(char::is_whitespace) || name.contains(',') {
        bail!("invalid --build-context {spec:?}: the name is empty or has spaces or commas");
    }
    if name == "context" {
        bail!("invalid --build-context {spec:?}: \"context\" is the main build context's name");
    }
    if value.is_empty() {
        bail!("invalid --build-context {spec:?}: the value is empty");
    }
    let context = if let Some(reference) = value.strip_prefix("docker-image://") {
        img_registry::Reference::parse(reference).with_context(|| {
            format!("invalid --build-context {spec:?}: {reference:?} is not an image reference")
        })?;
        NamedContextSpec::Image(reference.to_owned())
    } else if let Some(layout) = value.strip_prefix("oci-layout://") {
        let image = OciLayoutImage::resolve(layout)
            .with_context(|| format!("invalid --build-context {name}"))?;
        let reference = image.reference(name);
        NamedContextSpec::OciLayout { image, reference }
    } else {
        match ContextSpec::parse(value)
            .with_context(|| format!("invalid --build-context {spec:?}"))?
        {
            ContextSpec::Git(url) => NamedContextSpec::Git(url),
            ContextSpec::Dir(dir) => {
                if !dir.is_dir() {
                    bail!(
                        "--build-context {name}: {} is not a directory (give a directory, docker-image://REF or a git URL)",
                        dir.display()
                    );
                }
                NamedContextSpec::Dir(dir)
            }
            ContextSpec::Url(_) => {
                bail!("--build-context {spec:?}: a URL that is not a git repository (a tarball) is not supported as a named context; give a git URL, a directory or docker-image://REF")
            }
            ContextSpec::Stdin => {
                bail!(
                    "invalid --build-context {spec:?}: standard input is only for the main context"
                )
            }
        }
    };
    Ok((name.to_owned(), context))
}

/// Copies the images of the `oci-layout://` contexts into the store's content; the lease
/// returned keeps them until the build ends (`None`: there are none).
pub fn import_oci_layouts(
    contexts: &BTreeMap<String, NamedContextSpec>,
    store: &img_snapshot::Store,
) -> anyhow::Result<Option<img_snapshot::Lease>> {
    let layouts: Vec<_> = contexts
        .iter()
        .filter_map(|(name, context)| match context {
            NamedContextSpec::OciLayout { image, .. } => Some((name, image)),
            _ => None,
        })
        .collect();
    if layouts.is_empty() {
        return Ok(None);
    }
    let lease = store
        .lease(std::time::Duration::from_secs(24 * 3600))
        .context("cannot protect the layout images from garbage collection")?;
    let content = store.content();
    for (name, image) in layouts {
        image.import(&content, &lease).with_context(|| {
            format!(
                "--build-context {name}: cannot read {}",
                image.layout.display()
            )
        })?;
    }
    Ok(Some(lease))
}

/// The local named contexts of a build, ready to read: directories as given, git
/// repositories cloned under the scratch directory (removed when this is dropped).
pub struct LocalContexts {
    /// Each local context's directory, by name.
    pub dirs: BTreeMap<String, PathBuf>,
    _clones: Vec<BuildContext>,
}

impl LocalContexts {
    /// Prepares every local context of `contexts`.
    pub fn prepare(
        contexts: &BTreeMap<String, NamedContextSpec>,
        scratch: &Path,
    ) -> anyhow::Result<LocalContexts> {
        let mut dirs = BTreeMap::new();
        let mut clones = Vec::new();
        for (name, context) in contexts {
            match context {
                NamedContextSpec::Image(_) | NamedContextSpec::OciLayout { .. } => {}
                NamedContextSpec::Dir(dir) => {
                    dirs.insert(name.clone(), dir.clone());
                }
                NamedContextSpec::Git(url) => {
                    let clone = BuildContext::checkout(url, scratch)
                        .with_context(|| format!("--build-context {name}"))?;
                    dirs.insert(name.clone(), clone.dir.clone());
                    clones.push(clone);
                }
            }
        }
        Ok(LocalContexts {
            dirs,
            _clones: clones,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_context_values() {
        let dir = tempfile::tempdir().unwrap();
        let spec = format!("files={}", dir.path().display());
        assert_eq!(
            parse_build_context(&spec).unwrap(),
            ("files".into(), NamedContextSpec::Dir(dir.path().into()))
        );
        assert_eq!(
            parse_build_context("base=docker-image://alpine:3.19").unwrap(),
            ("base".into(), NamedContextSpec::Image("alpine:3.19".into()))
        );
        let (_, git) = parse_build_context("src=https://example.com/r.git#v1:sub").unwrap();
        assert!(matches!(git, NamedContextSpec::Git(u) if u.reference.as_deref() == Some("v1")));
        for (spec, want) in [
            ("novalue", "NAME=VALUE"),
            ("=dir", "name is empty"),
            ("x=", "value is empty"),
            ("x=/nonexistent/dir", "not a directory"),
            ("x=docker-image://Bad Ref", "not an image reference"),
            (
                "x=oci-layout:///nonexistent/layout",
                "not an OCI image layout",
            ),
            ("context=.", "main build context"),
        ] {
            let err = format!("{:#}", parse_build_context(spec).unwrap_err());
            assert!(err.contains(want), "{spec}: {err}");
        }
    }
}
