//! Lowering: Dockerfile → plan → build graph, with assertions on the ops each instruction
//! makes, on digests, and on whole graphs listed as data (`lower-cases/`).

mod cases;
mod files;
mod graph;
mod run;
mod stage;

use std::collections::{BTreeMap, BTreeSet};

use img_frontend_dockerfile::{
    lower, parse, plan, BaseImageError, BuildOptions, ImageConfig, LowerError, LowerOptions,
    LoweredBuild, Platform,
};
use img_llb::{
    CopyAction, Definition, Digest, ExecOp, FileAction, FileOp, MergeOp, Op, OpRef, SourceOp,
};

pub(crate) const ALPINE_PINNED: &str =
    "docker.io/library/alpine:3.20@sha256:1111111111111111111111111111111111111111111111111111111111111111";

/// Base image configs the resolver knows: alpine with two layers of history, and an image
/// with ONBUILD triggers.
pub(crate) fn base_images() -> BTreeMap<String, ImageConfig> {
    let alpine: ImageConfig = serde_json::from_value(serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "Cmd": ["/bin/sh"]},
        "history": [
            {"created_by": "ADD alpine-minirootfs.tar.gz /"},
            {"created_by": "CMD [\"/bin/sh\"]", "empty_layer": true}
        ]
    }))
    .unwrap();
    let triggers: ImageConfig = serde_json::from_value(serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"OnBuild": ["COPY app.conf /etc/app.conf", "RUN echo triggered"]},
        "history": [{"created_by": "ADD rootfs.tar /"}]
    }))
    .unwrap();
    BTreeMap::from([
        ("alpine:3.20".to_string(), alpine.clone()),
        ("alpine".to_string(), alpine),
        ("onbuild-base".to_string(), triggers),
    ])
}

pub(crate) fn build_options() -> BuildOptions {
    BuildOptions::new().build_platform(Platform::parse("linux/amd64").unwrap())
}

pub(crate) fn lower_options() -> LowerOptions {
    LowerOptions::new()
        .resolved_image("alpine:3.20", ALPINE_PINNED)
        .target_platform(Platform::parse("linux/amd64").unwrap())
        .exclude_patterns(vec!["*.md".to_string(), ".git".to_string()])
}

pub(crate) fn try_lower_with(
    dockerfile: &str,
    options: &BuildOptions,
    lower_options: &LowerOptions,
) -> Result<LoweredBuild, LowerError> {
    let images = base_images();
    let resolver = |reference: &str, _: &Platform| -> Result<Option<ImageConfig>, BaseImageError> {
        Ok(images.get(reference).cloned())
    };
    let parsed = parse(dockerfile, "Dockerfile").expect("parse");
    let planned = plan(&parsed, options, &resolver).expect("plan");
    lower(&planned, lower_options)
}

pub(crate) fn lower_with(dockerfile: &str, options: &BuildOptions) -> LoweredBuild {
    try_lower_with(dockerfile, options, &lower_options()).expect("lower")
}

pub(crate) fn lower_text(dockerfile: &str) -> LoweredBuild {
    lower_with(dockerfile, &build_options())
}

pub(crate) fn op<'d>(def: &'d Definition, r: &OpRef) -> &'d Op {
    def.op(&r.digest).expect("op in definition")
}

pub(crate) fn as_exec<'d>(def: &'d Definition, r: &OpRef) -> &'d ExecOp {
    match op(def, r) {
        Op::Exec(e) => e,
        other => panic!("expected exec, got {}", other.kind_name()),
    }
}

pub(crate) fn as_file<'d>(def: &'d Definition, r: &OpRef) -> &'d FileOp {
    match op(def, r) {
        Op::File(f) => f,
        other => panic!("expected file op, got {}", other.kind_name()),
    }
}

pub(crate) fn as_merge<'d>(def: &'d Definition, r: &OpRef) -> &'d MergeOp {
    match op(def, r) {
        Op::Merge(m) => m,
        other => panic!("expected merge, got {}", other.kind_name()),
    }
}

pub(crate) fn as_source<'d>(def: &'d Definition, r: &OpRef) -> &'d SourceOp {
    match op(def, r) {
        Op::Source(s) => s,
        other => panic!("expected source, got {}", other.kind_name()),
    }
}

pub(crate) fn copies(file: &FileOp) -> Vec<&CopyAction> {
    file.actions
        .iter()
        .filter_map(|a| match a {
            FileAction::Copy(c) => Some(c),
            _ => None,
        })
        .collect()
}

pub(crate) fn description(def: &Definition, r: &OpRef) -> String {
    def.metadata(&r.digest)
        .map(|m| m.description.clone())
        .unwrap_or_default()
}

/// The op whose description ends with `suffix` (exactly one must).
pub(crate) fn find(def: &Definition, suffix: &str) -> OpRef {
    let found: Vec<Digest> = def
        .ops()
        .map(|(d, _)| *d)
        .filter(|d| {
            def.metadata(d)
                .is_some_and(|m| m.description.ends_with(suffix))
        })
        .collect();
    assert_eq!(found.len(), 1, "ops described as …{suffix:?}: {found:?}");
    OpRef::new(found[0])
}

/// Every op `digest` depends on, transitively, itself included.
pub(crate) fn ancestors(def: &Definition, digest: Digest) -> BTreeSet<Digest> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![digest];
    while let Some(d) = stack.pop() {
        if seen.insert(d) {
            stack.extend(def.op(&d).unwrap().inputs().iter().map(|r| r.digest));
        }
    }
    seen
}

pub(crate) fn env_of(exec: &ExecOp) -> BTreeMap<&str, &str> {
    exec.env
        .iter()
        .map(|kv| kv.split_once('=').unwrap())
        .collect()
}
