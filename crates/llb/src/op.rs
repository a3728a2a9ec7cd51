//! The op enum, references between ops, and op digests.

use serde::{Deserialize, Serialize};

use crate::canonical::to_canonical_json;
use crate::exec::MountKind;
use crate::file::FileAction;
use crate::{Digest, ExecOp, FileOp, SourceOp};

/// A reference to one output of an op: the input edge of the graph.
///
/// Every op kind has exactly one output today (index 0); the index keeps room for ops with
/// several outputs (an exec's writable mounts) without changing the format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OpRef {
    /// The digest of the referenced op.
    pub digest: Digest,
    /// Which output of it.
    pub output: u32,
}

impl OpRef {
    /// Output 0 of the op with `digest`.
    pub fn new(digest: Digest) -> Self {
        OpRef { digest, output: 0 }
    }
}

/// Layers stacked in order, each independent of what is below (`COPY --link`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeOp {
    /// The filesystems merged, lowest first; later ones win on conflicts.
    pub inputs: Vec<OpRef>,
}

/// The changes that turn `lower` into `upper`, as a filesystem of its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffOp {
    /// The base; `None` diffs against an empty filesystem.
    pub lower: Option<OpRef>,
    /// The changed filesystem.
    pub upper: OpRef,
}

/// One node of the build graph.
///
/// Its digest ([`Op::digest`]) is the sha256 of its canonical JSON, which contains the digests
/// of its inputs: two ops are the same work exactly when their digests are equal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Op {
    /// Brings content in: image, local directory, URL, git.
    Source(SourceOp),
    /// Runs a process.
    Exec(ExecOp),
    /// Changes files.
    File(FileOp),
    /// Stacks independent layers.
    Merge(MergeOp),
    /// Takes the difference of two filesystems.
    Diff(DiffOp),
}

/// Tag mixed into every op digest so that a change of this format renames every op instead of
/// silently colliding with old cache entries.
const DIGEST_DOMAIN: &[u8] = b"img-llb/op/v1\n";

impl Op {
    /// The op's canonical serialization: JSON with sorted keys and no whitespace.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // Serializing plain data with string keys into a Value cannot fail.
        to_canonical_json(self).unwrap_or_default()
    }

    /// The op's identity: sha256 over its canonical serialization.
    pub fn digest(&self) -> Digest {
        let mut bytes = DIGEST_DOMAIN.to_vec();
        bytes.extend_from_slice(&self.canonical_bytes());
        Digest::of(&bytes)
    }

    /// Every input reference, in a fixed order: exec root then mount sources; file base then
    /// copy sources; merge inputs; diff lower then upper. A reference used twice appears twice.
    pub fn inputs(&self) -> Vec<OpRef> {
        let mut refs = Vec::new();
        match self {
            Op::Source(_) => {}
            Op::Exec(exec) => {
                refs.extend(exec.root);
                refs.extend(exec.mounts.iter().filter_map(|m| match &m.kind {
                    MountKind::Bind { source, .. } => Some(*source),
                    MountKind::Cache { source, .. } => *source,
                    _ => None,
                }));
            }
            Op::File(file) => {
                refs.extend(file.base);
                refs.extend(file.actions.iter().filter_map(|a| match a {
                    FileAction::Copy(copy) => Some(copy.source),
                    _ => None,
                }));
            }
            Op::Merge(merge) => refs.extend(&merge.inputs),
            Op::Diff(diff) => {
                refs.extend(diff.lower);
                refs.push(diff.upper);
            }
        }
        refs
    }

    /// A copy of this op with every input reference replaced by `f(reference)`, visited in the
    /// order of [`Op::inputs`]. The solver uses it to put cache keys where digests were.
    pub fn map_inputs(&self, mut f: impl FnMut(&OpRef) -> OpRef) -> Op {
        let mut copy = self.clone();
        copy.visit_inputs_mut(&mut |r| *r = f(r));
        copy
    }

    /// A short lowercase name of the op kind: `image`, `local`, `http`, `git`, `exec`, `file`,
    /// `merge` or `diff`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Op::Source(SourceOp::Image(_)) => "image",
            Op::Source(SourceOp::Local(_)) => "local",
            Op::Source(SourceOp::Http(_)) => "http",
            Op::Source(SourceOp::Git(_)) => "git",
            Op::Exec(_) => "exec",
            Op::File(_) => "file",
            Op::Merge(_) => "merge",
            Op::Diff(_) => "diff",
        }
    }

    /// How many outputs the op has; [`OpRef::output`] must be below it.
    pub fn output_count(&self) -> u32 {
        1
    }

    /// Visits input references mutably, in the order [`Op::inputs`] lists them.
    fn visit_inputs_mut(&mut self, f: &mut dyn FnMut(&mut OpRef)) {
        match self {
            Op::Source(_) => {}
            Op::Exec(exec) => {
                if let Some(root) = &mut exec.root {
                    f(root);
                }
                for mount in &mut exec.mounts {
                    match &mut mount.kind {
                        MountKind::Bind { source, .. } => f(source),
                        MountKind::Cache {
                            source: Some(source),
                            ..
                        } => f(source),
                        _ => {}
                    }
                }
            }
            Op::File(file) => {
                if let Some(base) = &mut file.base {
                    f(base);
                }
                for action in &mut file.actions {
                    if let FileAction::Copy(copy) = action {
                        f(&mut copy.source);
                    }
                }
            }
            Op::Merge(merge) => merge.inputs.iter_mut().for_each(f),
            Op::Diff(diff) => {
                if let Some(lower) = &mut diff.lower {
                    f(lower);
                }
                f(&mut diff.upper);
            }
        }
    }
}

impl From<SourceOp> for Op {
    fn from(op: SourceOp) -> Self {
        Op::Source(op)
    }
}
impl From<ExecOp> for Op {
    fn from(op: ExecOp) -> Self {
        Op::Exec(op)
    }
}
impl From<FileOp> for Op {
    fn from(op: FileOp) -> Self {
        Op::File(op)
    }
}
impl From<MergeOp> for Op {
    fn from(op: MergeOp) -> Self {
        Op::Merge(op)
    }
}
impl From<DiffOp> for Op {
    fn from(op: DiffOp) -> Self {
        Op::Diff(op)
    }
}
