//! Multi-platform builds: each platform's graph is lowered on its own (its TARGET* arguments,
//! its base images), then all are merged into one graph, so an op that is the same for every
//! platform (the context's source, a `FROM --platform=$BUILDPLATFORM` stage with the same
//! inputs) has one digest and runs once. Before anything runs, every foreign platform whose
//! RUN steps the graph holds must have a binfmt_misc handler.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::bail;
use img_frontend_dockerfile::{LoweredBuild, Platform};
use img_llb::{Definition, DefinitionBuilder, Digest, Op, OpMetadata, SourceOp};
use img_sandbox::{binfmt_dir, platform_support, HostPaths};

/// Where binfmt_misc is read, when it is not under /proc (a container may mount it
/// elsewhere; tests point it at a directory of their own).
pub const BINFMT_DIR_VAR: &str = "IMG_BINFMT_MISC";

/// One platform's share of a build.
pub struct PlatformBuild {
    /// The platform `--platform` named; `None` for a build without the flag (the host's).
    pub platform: Option<Platform>,
    /// Its graph and image config.
    pub lowered: LoweredBuild,
    /// The images it read, each with the digest it resolved to (provenance materials).
    pub materials: Vec<img_attest::Material>,
}

/// The graphs of `builds` as one, with one output per build in order. With several
/// platforms, a step that belongs to one platform only is labelled with it, as BuildKit
/// shows `[linux/arm64 2/3] RUN …`; shared steps keep their plain label.
pub fn merge_graphs(builds: &[PlatformBuild]) -> anyhow::Result<Definition> {
    if let [one] = builds {
        return Ok(one.lowered.definition.clone());
    }
    let mut owners: BTreeMap<Digest, usize> = BTreeMap::new();
    for build in builds {
        for (digest, _) in build.lowered.definition.ops() {
            *owners.entry(*digest).or_default() += 1;
        }
    }
    let mut merged = DefinitionBuilder::new();
    let mut outputs = Vec::with_capacity(builds.len());
    for build in builds {
        let definition = &build.lowered.definition;
        for digest in definition.dependency_order() {
            let Some(op) = definition.op(&digest) else {
                continue;
            };
            let mut metadata = definition.metadata(&digest).cloned().unwrap_or_default();
            if let (Some(platform), Some(1)) = (&build.platform, owners.get(&digest)) {
                metadata = labelled(metadata, platform);
            }
            merged.add(op.clone(), metadata)?;
        }
        outputs.push(definition.output());
    }
    Ok(merged.build_outputs(&outputs)?)
}

/// `[2/3] RUN make` becomes `[linux/arm64 2/3] RUN make`; other labels get `[linux/arm64] `.
fn labelled(mut metadata: OpMetadata, platform: &Platform) -> OpMetadata {
    metadata.description = match metadata.description.strip_prefix('[') {
        Some(rest) => format!("[{platform} {rest}"),
        None => format!("[{platform}] {}", metadata.description),
    };
    metadata
}

/// The platforms whose programs the graph's RUN steps execute: the platform of the image each
/// step's root filesystem starts from (following the root input down to its source). A step
/// on a filesystem that starts from no image (`FROM scratch`, a local context) runs whatever
/// was copied there, which no platform names, so it is not counted.
pub fn exec_platforms(definition: &Definition) -> BTreeSet<Platform> {
    let mut found = BTreeSet::new();
    for (_, op) in definition.ops() {
        let Op::Exec(exec) = op else { continue };
        let mut next = exec.root;
        // A chain is finite: every op's inputs come before it.
        while let Some(input) = next {
            match definition.op(&input.digest) {
                Some(Op::Source(SourceOp::Image(image))) => {
                    found.insert(image.platform.clone());
                    break;
                }
                Some(op) => next = op.inputs().first().copied(),
                None => break,
            }
        }
    }
    found
}

/// Where binfmt_misc is: [`BINFMT_DIR_VAR`], else under the host's /proc.
pub fn host_binfmt_dir() -> PathBuf {
    std::env::var_os(BINFMT_DIR_VAR)
        .filter(|v| !v.is_empty())
        .map_or_else(|| binfmt_dir(&HostPaths::default()), PathBuf::from)
}

/// Fails, naming each platform and the fix, when a RUN step of `definition` is for a platform
/// this host can neither run nor emulate.
pub fn check_emulation(definition: &Definition) -> anyhow::Result<()> {
    let dir = host_binfmt_dir();
    let problems: Vec<String> = exec_platforms(definition)
        .iter()
        .filter_map(|p| platform_support(&dir, &p.to_string()).err())
        .map(|e| e.to_string())
        .collect();
    match problems.as_slice() {
        [] => Ok(()),
        [one] => bail!("{one}"),
        many => bail!("{}", many.join("\n")),
    }
}

#[cfg(test)]
mod tests {
    use img_llb::{ExecOp, ImageSource, OpRef};

    use super::*;

    fn image(arch: &str) -> SourceOp {
        SourceOp::Image(ImageSource {
            reference: "docker.io/library/busybox:latest".into(),
            platform: Platform::new("linux", arch),
        })
    }

    #[test]
    fn exec_platforms_follow_the_root_to_its_image() {
        let mut g = DefinitionBuilder::new();
        let arm = g.add(image("arm64"), OpMetadata::default()).unwrap();
        let amd = g.add(image("amd64"), OpMetadata::default()).unwrap();
        let step = |root: OpRef, s: &str| ExecOp::new(Some(root), vec![s.into()]);
        let a = g.add(step(arm, "a"), OpMetadata::default()).unwrap();
        let b = g.add(step(a, "b"), OpMetadata::default()).unwrap();
        // An image nobody runs a step on does not count.
        let scratch = g
            .add(ExecOp::new(None, vec!["c".into()]), OpMetadata::default())
            .unwrap();
        let def = g.build_outputs(&[b, amd, scratch]).unwrap();
        let found: Vec<String> = exec_platforms(&def)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(found, ["linux/arm64"]);
    }

    #[test]
    fn labels_name_the_platform() {
        let p = Platform::new("linux", "arm64");
        let l = labelled(OpMetadata::described("[2/3] RUN make"), &p);
        assert_eq!(l.description, "[linux/arm64 2/3] RUN make");
        let l = labelled(OpMetadata::described("FROM busybox"), &p);
        assert_eq!(l.description, "[linux/arm64] FROM busybox");
    }
}
