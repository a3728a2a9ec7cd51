//! `--annotation`, as buildx reads it: `KEY=VALUE` annotates the image manifest;
//! `manifest:KEY=VALUE` says so explicitly, `manifest-descriptor:KEY=VALUE` annotates the
//! manifest's descriptor (in an OCI layout's `index.json` and in a multi-platform image's
//! index), and `index:` / `index-descriptor:` the image index of a multi-platform build.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use img_worker::IndexAnnotations;

/// The annotations of one build, by where they go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Annotations {
    /// On the manifest.
    pub manifest: BTreeMap<String, String>,
    /// On the manifest's descriptor.
    pub descriptor: BTreeMap<String, String>,
    /// On the image index and on its descriptor (several platforms only).
    pub index: IndexAnnotations,
}

impl Annotations {
    /// Checks every `--annotation` value.
    pub fn parse(specs: &[String]) -> anyhow::Result<Annotations> {
        let mut annotations = Annotations::default();
        for spec in specs {
            let (key, value) = spec
                .split_once('=')
                .with_context(|| format!("invalid --annotation {spec:?}: give [TYPE:]KEY=VALUE"))?;
            // A type prefix is one of buildx's words before a colon; a key may hold colons
            // of its own (`org.example:x`), so anything else is part of the key.
            let (kind, key) = match key.split_once(':') {
                Some((kind, rest)) if is_type(kind) => (kind, rest),
                _ => ("manifest", key),
            };
            if kind.contains('[') {
                bail!(
                    "invalid --annotation {spec:?}: annotations for one platform ({kind}) are not supported; leave the [platform] out to annotate every platform"
                );
            }
            if key.is_empty() {
                bail!("invalid --annotation {spec:?}: the key is empty");
            }
            let map = match kind {
                "manifest" => &mut annotations.manifest,
                "manifest-descriptor" => &mut annotations.descriptor,
                "index" => &mut annotations.index.index,
                _ => &mut annotations.index.descriptor,
            };
            map.insert(key.to_owned(), value.to_owned());
        }
        Ok(annotations)
    }

    /// BuildKit's rule: only a build of several platforms makes an index to annotate.
    pub fn check_platform_count(&self, platforms: usize) -> anyhow::Result<()> {
        if platforms < 2 && self.index != IndexAnnotations::default() {
            bail!(
                "index annotations are not supported for a single-platform build: give several --platform values, or use manifest: or manifest-descriptor:"
            );
        }
        Ok(())
    }
}

fn is_type(word: &str) -> bool {
    let base = word.split('[').next().unwrap_or(word);
    matches!(
        base,
        "manifest" | "manifest-descriptor" | "index" | "index-descriptor"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(specs: &[&str]) -> anyhow::Result<Annotations> {
        Annotations::parse(&specs.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn annotations_by_type() {
        let a = parse(&[
            "org.opencontainers.image.title=app",
            "manifest:org.example.a=1",
            "manifest-descriptor:org.example.d=2",
            "org.example:colon=3",
        ])
        .unwrap();
        assert_eq!(
            a.manifest,
            BTreeMap::from([
                ("org.opencontainers.image.title".into(), "app".into()),
                ("org.example.a".into(), "1".into()),
                ("org.example:colon".into(), "3".into()),
            ])
        );
        assert_eq!(
            a.descriptor,
            BTreeMap::from([("org.example.d".into(), "2".into())])
        );
        for (spec, want) in [
            ("novalue", "[TYPE:]KEY=VALUE"),
            ("manifest[linux/amd64]:k=v", "one platform"),
            ("manifest:=v", "key is empty"),
        ] {
            let err = format!("{:#}", parse(&[spec]).unwrap_err());
            assert!(err.contains(want), "{spec}: {err}");
        }
    }

    #[test]
    fn index_annotations_need_several_platforms() {
        let a = parse(&["index:org.example.i=1", "index-descriptor:org.example.j=2"]).unwrap();
        assert_eq!(
            a.index.index,
            BTreeMap::from([("org.example.i".into(), "1".into())])
        );
        assert_eq!(
            a.index.descriptor,
            BTreeMap::from([("org.example.j".into(), "2".into())])
        );
        let err = format!("{:#}", a.check_platform_count(1).unwrap_err());
        assert!(err.contains("single-platform"), "{err}");
        a.check_platform_count(2).unwrap();
        parse(&["manifest:k=v"])
            .unwrap()
            .check_platform_count(1)
            .unwrap();
    }
}
