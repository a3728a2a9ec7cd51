//! `--annotation`, as buildx reads it: `KEY=VALUE` annotates the image manifest;
//! `manifest:KEY=VALUE` says so explicitly, `manifest-descriptor:KEY=VALUE` annotates the
//! manifest's descriptor (in an OCI layout's `index.json` and in a multi-platform image's
//! index), and `index:` / `index-descriptor:` the image index of a multi-platform build.
//! `manifest[PLATFORM]:` and `manifest-descriptor[PLATFORM]:` annotate one platform's image
//! only, the platform normalized as `--platform` normalizes it.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use img_llb::Platform;
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
    /// `manifest[PLATFORM]:` and `manifest-descriptor[PLATFORM]:`, for one platform's image.
    pub per_platform: Vec<PlatformAnnotation>,
}

/// An annotation of one platform's manifest or manifest descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformAnnotation {
    /// The platform whose image it annotates.
    pub platform: Platform,
    /// On the manifest's descriptor rather than on the manifest.
    pub on_descriptor: bool,
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
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
            if key.is_empty() {
                bail!("invalid --annotation {spec:?}: the key is empty");
            }
            if let Some((base, platform)) = kind.split_once('[') {
                let Some(platform) = platform.strip_suffix(']') else {
                    bail!("invalid --annotation {spec:?}: give TYPE[PLATFORM]:KEY=VALUE");
                };
                if !base.starts_with("manifest") {
                    bail!(
                        "invalid --annotation {spec:?}: only manifest and manifest-descriptor annotations take a platform"
                    );
                }
                let platform = Platform::parse(platform)
                    .map_err(|e| anyhow::anyhow!("invalid --annotation {spec:?}: {e}"))?;
                annotations.per_platform.push(PlatformAnnotation {
                    platform,
                    on_descriptor: base == "manifest-descriptor",
                    key: key.to_owned(),
                    value: value.to_owned(),
                });
                continue;
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

    /// The manifest annotations of `platform`'s image: those for every platform, then its own.
    pub fn manifest_for(&self, platform: &Platform) -> BTreeMap<String, String> {
        self.for_platform(&self.manifest, platform, false)
    }

    /// The manifest descriptor annotations of `platform`'s image.
    pub fn descriptor_for(&self, platform: &Platform) -> BTreeMap<String, String> {
        self.for_platform(&self.descriptor, platform, true)
    }

    fn for_platform(
        &self,
        common: &BTreeMap<String, String>,
        platform: &Platform,
        on_descriptor: bool,
    ) -> BTreeMap<String, String> {
        let mut annotations = common.clone();
        for own in &self.per_platform {
            if own.on_descriptor == on_descriptor && own.platform == *platform {
                annotations.insert(own.key.clone(), own.value.clone());
            }
        }
        annotations
    }

    /// BuildKit's rule: only a build that makes an index (several platforms, or attestations)
    /// has one to annotate.
    pub fn check_platform_count(&self, platforms: usize, attestations: bool) -> anyhow::Result<()> {
        if platforms < 2 && !attestations && self.index != IndexAnnotations::default() {
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
            ("index[linux/amd64]:k=v", "take a platform"),
            ("manifest[linux/amd64:k=v", "TYPE[PLATFORM]"),
            ("manifest[nonsense/os/arch/x]:k=v", "invalid --annotation"),
            ("manifest:=v", "key is empty"),
        ] {
            let err = format!("{:#}", parse(&[spec]).unwrap_err());
            assert!(err.contains(want), "{spec}: {err}");
        }
    }

    #[test]
    fn annotations_for_one_platform() {
        let a = parse(&[
            "manifest:org.example.all=1",
            "manifest[linux/arm64]:org.example.arm=2",
            "manifest-descriptor[linux/amd64]:org.example.amd=3",
        ])
        .unwrap();
        let arm64 = Platform::parse("linux/arm64").unwrap();
        let amd64 = Platform::parse("linux/amd64").unwrap();
        assert_eq!(
            a.manifest_for(&arm64),
            BTreeMap::from([
                ("org.example.all".into(), "1".into()),
                ("org.example.arm".into(), "2".into()),
            ])
        );
        assert_eq!(
            a.manifest_for(&amd64),
            BTreeMap::from([("org.example.all".into(), "1".into())])
        );
        assert!(a.descriptor_for(&arm64).is_empty());
        assert_eq!(
            a.descriptor_for(&amd64),
            BTreeMap::from([("org.example.amd".into(), "3".into())])
        );
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
        let err = format!("{:#}", a.check_platform_count(1, false).unwrap_err());
        assert!(err.contains("single-platform"), "{err}");
        a.check_platform_count(2, false).unwrap();
        a.check_platform_count(1, true).unwrap();
        parse(&["manifest:k=v"])
            .unwrap()
            .check_platform_count(1, false)
            .unwrap();
    }
}
