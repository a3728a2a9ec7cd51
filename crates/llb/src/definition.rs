//! A complete build graph: ops keyed by digest, their metadata, and the output op.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Digest, Op, OpRef};

/// Where in a Dockerfile an op came from. Shown in progress and errors; not part of digests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceLocation {
    /// The Dockerfile's path as the user named it.
    pub file: String,
    /// First line of the instruction, 1-based.
    pub start_line: u32,
    /// Last line of the instruction (after continuations), 1-based.
    pub end_line: u32,
    /// The instruction text, e.g. `RUN make -j4`.
    pub text: String,
}

impl fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.end_line > self.start_line {
            write!(f, "{}:{}-{}", self.file, self.start_line, self.end_line)
        } else {
            write!(f, "{}:{}", self.file, self.start_line)
        }
    }
}

/// What the user should see about an op. Not part of its digest: the same work coming from two
/// Dockerfile lines is still solved once.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpMetadata {
    /// Human name for progress, e.g. `[build 2/4] RUN make`.
    pub description: String,
    /// The Dockerfile instruction it came from, if any.
    pub location: Option<SourceLocation>,
    /// The build stage it belongs to, matched by `--no-cache-filter`: the name given with
    /// `FROM … AS name`, or the stage's index (`"0"`, `"1"`, …) for an unnamed stage.
    pub stage: Option<String>,
    /// Always run the op even when a cached result exists.
    pub ignore_cache: bool,
}

impl OpMetadata {
    /// Metadata with just a description.
    pub fn described(description: impl Into<String>) -> Self {
        OpMetadata {
            description: description.into(),
            ..OpMetadata::default()
        }
    }
}

/// Why a definition could not be built or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DefinitionError {
    /// An op refers to an op that is not in the definition.
    #[error(
        "op {op} refers to input {input} which is not in the definition; add the input op first"
    )]
    MissingInput {
        /// The referring op.
        op: Digest,
        /// The missing input.
        input: Digest,
    },
    /// An op refers to an output index its input does not have.
    #[error("op {op} refers to output {output} of {input}, which has {count} output(s)")]
    NoSuchOutput {
        /// The referring op.
        op: Digest,
        /// The input op.
        input: Digest,
        /// The requested output index.
        output: u32,
        /// How many outputs the input has.
        count: u32,
    },
    /// A definition was finished without naming any output.
    #[error("a definition needs at least one output")]
    NoOutput,
    /// The output op is not in the definition.
    #[error("the definition's output {output} is not one of its ops")]
    MissingOutput {
        /// The missing op.
        output: Digest,
    },
    /// A serialized op is listed under a digest that is not its own.
    #[error("op listed as {listed} has digest {actual}; the definition was edited or corrupted")]
    DigestMismatch {
        /// The digest it was listed under.
        listed: Digest,
        /// The digest of its content.
        actual: Digest,
    },
    /// The serialized definition has an unknown format version.
    #[error("definition format version {version} is not supported (expected {expected})")]
    UnsupportedVersion {
        /// The version found.
        version: u32,
        /// The version this build understands.
        expected: u32,
    },
    /// The JSON text is malformed.
    #[error("invalid definition json")]
    Json(#[source] serde_json::Error),
}

/// A validated build graph: every op's inputs are present, every op is reachable from an
/// output, and every op is stored under its own digest (so the graph has no cycles).
///
/// A graph usually has one output. A multi-platform build has one per platform in one graph,
/// so work the platforms share (the same op, the same digest) is one op and runs once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Definition {
    ops: BTreeMap<Digest, Op>,
    metadata: BTreeMap<Digest, OpMetadata>,
    output: OpRef,
    /// Outputs beyond the first, in order, without repeats.
    more_outputs: Vec<OpRef>,
}

const FORMAT_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct DefinitionDocument {
    version: u32,
    output: OpRef,
    /// Absent for a graph with one output, so such graphs read as before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    more_outputs: Vec<OpRef>,
    ops: Vec<OpEntry>,
}

#[derive(Serialize, Deserialize)]
struct OpEntry {
    digest: Digest,
    op: Op,
    metadata: OpMetadata,
}

impl Definition {
    /// The op whose output is the build result (the first, when there are several).
    pub fn output(&self) -> OpRef {
        self.output
    }

    /// Every output, the first being [`Definition::output`]: one per platform of a
    /// multi-platform build.
    pub fn outputs(&self) -> Vec<OpRef> {
        let mut outputs = vec![self.output];
        outputs.extend(self.more_outputs.iter().copied());
        outputs
    }

    /// The op with `digest`.
    pub fn op(&self, digest: &Digest) -> Option<&Op> {
        self.ops.get(digest)
    }

    /// The metadata of the op with `digest` (empty when none was given).
    pub fn metadata(&self, digest: &Digest) -> Option<&OpMetadata> {
        self.metadata.get(digest)
    }

    /// All ops, ordered by digest.
    pub fn ops(&self) -> impl Iterator<Item = (&Digest, &Op)> {
        self.ops.iter()
    }

    /// Every op digest with inputs before the ops that read them, in a stable order (depth
    /// first from each output in turn, following each op's inputs in order); for listings
    /// such as `img debug llb`, where dependency order reads better than digest order.
    pub fn dependency_order(&self) -> Vec<Digest> {
        let mut order = Vec::with_capacity(self.ops.len());
        let mut visited = BTreeSet::new();
        // Explicit stack instead of recursion: a long Dockerfile makes a deep chain. The
        // first output is visited first (it is on top).
        let mut stack: Vec<(Digest, bool)> = self
            .outputs()
            .iter()
            .rev()
            .map(|o| (o.digest, false))
            .collect();
        while let Some((digest, inputs_done)) = stack.pop() {
            if inputs_done {
                order.push(digest);
                continue;
            }
            if !visited.insert(digest) {
                continue;
            }
            stack.push((digest, true));
            if let Some(op) = self.ops.get(&digest) {
                for input in op.inputs().iter().rev() {
                    if !visited.contains(&input.digest) {
                        stack.push((input.digest, false));
                    }
                }
            }
        }
        order
    }

    /// Number of distinct ops.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether there are no ops (never true for a built definition, which has an output).
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The stable serialized form: pretty JSON, ops ordered by digest.
    pub fn to_json(&self) -> String {
        let doc = DefinitionDocument {
            version: FORMAT_VERSION,
            output: self.output,
            more_outputs: self.more_outputs.clone(),
            ops: self
                .ops
                .iter()
                .map(|(digest, op)| OpEntry {
                    digest: *digest,
                    op: op.clone(),
                    metadata: self.metadata.get(digest).cloned().unwrap_or_default(),
                })
                .collect(),
        };
        // Plain data with string keys always serializes.
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    }

    /// Reads [`Definition::to_json`] output back, checking every digest and reference.
    pub fn from_json(text: &str) -> Result<Definition, DefinitionError> {
        let doc: DefinitionDocument = serde_json::from_str(text).map_err(DefinitionError::Json)?;
        if doc.version != FORMAT_VERSION {
            return Err(DefinitionError::UnsupportedVersion {
                version: doc.version,
                expected: FORMAT_VERSION,
            });
        }
        let mut builder = DefinitionBuilder::new();
        // Entries are sorted by digest, not by dependency, so insert all before checking edges.
        for entry in doc.ops {
            let actual = entry.op.digest();
            if actual != entry.digest {
                return Err(DefinitionError::DigestMismatch {
                    listed: entry.digest,
                    actual,
                });
            }
            builder.ops.insert(actual, entry.op);
            builder.metadata.insert(actual, entry.metadata);
        }
        for (digest, op) in &builder.ops {
            check_inputs(*digest, op, &builder.ops)?;
        }
        let mut outputs = vec![doc.output];
        outputs.extend(doc.more_outputs);
        builder.build_outputs(&outputs)
    }
}

fn check_inputs(
    digest: Digest,
    op: &Op,
    known: &BTreeMap<Digest, Op>,
) -> Result<(), DefinitionError> {
    for input in op.inputs() {
        let Some(input_op) = known.get(&input.digest) else {
            return Err(DefinitionError::MissingInput {
                op: digest,
                input: input.digest,
            });
        };
        if input.output >= input_op.output_count() {
            return Err(DefinitionError::NoSuchOutput {
                op: digest,
                input: input.digest,
                output: input.output,
                count: input_op.output_count(),
            });
        }
    }
    Ok(())
}

/// Assembles a [`Definition`] op by op, inputs first.
///
/// Adding an op that is already present (same digest) returns the same reference, so stages
/// that lower to identical work share one op.
#[derive(Clone, Debug, Default)]
pub struct DefinitionBuilder {
    ops: BTreeMap<Digest, Op>,
    metadata: BTreeMap<Digest, OpMetadata>,
}

impl DefinitionBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        DefinitionBuilder::default()
    }

    /// Adds `op` (whose inputs must already be added) and returns a reference to its output.
    ///
    /// When the op is already present its first metadata is kept, except that `ignore_cache`
    /// from either is honoured.
    pub fn add(
        &mut self,
        op: impl Into<Op>,
        metadata: OpMetadata,
    ) -> Result<OpRef, DefinitionError> {
        let op = op.into();
        let digest = op.digest();
        check_inputs(digest, &op, &self.ops)?;
        self.ops.entry(digest).or_insert(op);
        self.metadata
            .entry(digest)
            .and_modify(|existing| existing.ignore_cache |= metadata.ignore_cache)
            .or_insert(metadata);
        Ok(OpRef::new(digest))
    }

    /// The op already added under `digest`.
    pub fn op(&self, digest: &Digest) -> Option<&Op> {
        self.ops.get(digest)
    }

    /// Finishes the graph with `output` as its result, dropping ops the output does not need
    /// (unused stages are not built, as in BuildKit).
    pub fn build(self, output: OpRef) -> Result<Definition, DefinitionError> {
        self.build_outputs(&[output])
    }

    /// Finishes the graph with several results (one per platform of a multi-platform build),
    /// the first being [`Definition::output`]; repeats are dropped, and ops no output needs
    /// are dropped as [`DefinitionBuilder::build`] drops them.
    pub fn build_outputs(mut self, outputs: &[OpRef]) -> Result<Definition, DefinitionError> {
        let Some(&first) = outputs.first() else {
            return Err(DefinitionError::NoOutput);
        };
        for output in outputs {
            let Some(output_op) = self.ops.get(&output.digest) else {
                return Err(DefinitionError::MissingOutput {
                    output: output.digest,
                });
            };
            if output.output >= output_op.output_count() {
                return Err(DefinitionError::NoSuchOutput {
                    op: output.digest,
                    input: output.digest,
                    output: output.output,
                    count: output_op.output_count(),
                });
            }
        }
        let mut more_outputs: Vec<OpRef> = Vec::new();
        for output in &outputs[1..] {
            if *output != first && !more_outputs.contains(output) {
                more_outputs.push(*output);
            }
        }
        let mut reachable = BTreeSet::new();
        let mut stack: Vec<Digest> = outputs.iter().map(|o| o.digest).collect();
        while let Some(digest) = stack.pop() {
            if !reachable.insert(digest) {
                continue;
            }
            if let Some(op) = self.ops.get(&digest) {
                stack.extend(op.inputs().iter().map(|r| r.digest));
            }
        }
        self.ops.retain(|d, _| reachable.contains(d));
        self.metadata.retain(|d, _| reachable.contains(d));
        Ok(Definition {
            ops: self.ops,
            metadata: self.metadata,
            output: first,
            more_outputs,
        })
    }
}
