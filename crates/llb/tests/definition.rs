//! Digest stability, builder behaviour and the serialized forms of a definition.

use img_llb::{
    CacheSharing, CopyAction, Definition, DefinitionBuilder, DefinitionError, Digest, ExecOp,
    FileOp, ImageSource, LocalSource, MergeOp, MkdirAction, Mount, MountKind, Op, OpMetadata,
    OpRef, Platform, SourceLocation, SourceOp,
};

fn alpine() -> SourceOp {
    SourceOp::Image(ImageSource {
        reference: "docker.io/library/alpine:3.20".into(),
        platform: Platform::new("linux", "amd64"),
    })
}

fn run(root: OpRef, script: &str) -> ExecOp {
    ExecOp::new(
        Some(root),
        vec!["/bin/sh".into(), "-c".into(), script.into()],
    )
    .with_env("PATH", "/usr/bin:/bin")
    .with_cwd("/src")
}

fn located(description: &str, line: u32) -> OpMetadata {
    OpMetadata {
        description: description.into(),
        location: Some(SourceLocation {
            file: "Dockerfile".into(),
            start_line: line,
            end_line: line,
            text: description.into(),
        }),
        stage: Some("build".into()),
        ignore_cache: false,
    }
}

/// Pins the canonical form: if this changes, every cache key of every user changes, so it must
/// only change together with the digest domain version.
#[test]
fn op_digests_are_pinned() {
    let image: Op = alpine().into();
    assert_eq!(
        String::from_utf8(image.canonical_bytes()).unwrap(),
        r#"{"source":{"image":{"platform":{"architecture":"amd64","os":"linux","variant":null},"reference":"docker.io/library/alpine:3.20"}}}"#
    );
    assert_eq!(
        image.digest().to_string(),
        "sha256:268f72c9c0e22e134f489fd73208e31a4fac7e71654060df4125bd92f641b6e6"
    );
}

#[test]
fn digest_covers_inputs_and_fields_but_not_metadata() {
    let base = OpRef::new(Op::from(alpine()).digest());
    let a: Op = run(base, "make").into();
    let b: Op = run(base, "make test").into();
    assert_ne!(a.digest(), b.digest());

    let other_base = OpRef::new(Digest::of(b"another image"));
    let c: Op = run(other_base, "make").into();
    assert_ne!(
        a.digest(),
        c.digest(),
        "input digest must be part of the op digest"
    );

    let mut one = DefinitionBuilder::new();
    let base1 = one.add(alpine(), located("FROM alpine", 1)).unwrap();
    let r1 = one.add(run(base1, "make"), located("RUN make", 2)).unwrap();
    let mut two = DefinitionBuilder::new();
    let base2 = two.add(alpine(), OpMetadata::default()).unwrap();
    let r2 = two
        .add(run(base2, "make"), located("RUN make", 40))
        .unwrap();
    assert_eq!(r1, r2, "metadata must not change digests");
}

#[test]
fn same_work_in_two_stages_is_one_op_and_unused_ops_are_dropped() {
    let mut g = DefinitionBuilder::new();
    let base = g.add(alpine(), OpMetadata::described("FROM")).unwrap();
    let first = g
        .add(
            run(base, "apk add gcc"),
            located("[a 2/2] RUN apk add gcc", 3),
        )
        .unwrap();
    let second = g
        .add(
            run(base, "apk add gcc"),
            located("[b 2/2] RUN apk add gcc", 7),
        )
        .unwrap();
    assert_eq!(first, second);
    let unused = g.add(run(base, "true"), OpMetadata::default()).unwrap();
    let merged = g
        .add(
            MergeOp {
                inputs: vec![first, second],
            },
            OpMetadata::described("merge"),
        )
        .unwrap();
    let def = g.build(merged).unwrap();
    assert_eq!(def.len(), 3);
    assert!(def.op(&unused.digest).is_none());
    assert_eq!(
        def.metadata(&first.digest).unwrap().description,
        "[a 2/2] RUN apk add gcc",
        "the first metadata given is kept"
    );
}

#[test]
fn inputs_must_exist_before_use() {
    let mut g = DefinitionBuilder::new();
    let ghost = OpRef::new(Digest::of(b"nothing"));
    let err = g.add(run(ghost, "x"), OpMetadata::default()).unwrap_err();
    assert!(matches!(err, DefinitionError::MissingInput { input, .. } if input == ghost.digest));
    let base = g.add(alpine(), OpMetadata::default()).unwrap();
    let bad_output = OpRef {
        digest: base.digest,
        output: 3,
    };
    let err = g
        .add(run(bad_output, "x"), OpMetadata::default())
        .unwrap_err();
    assert!(matches!(
        err,
        DefinitionError::NoSuchOutput { output: 3, .. }
    ));
}

fn sample() -> Definition {
    let mut g = DefinitionBuilder::new();
    let base = g.add(alpine(), located("FROM alpine", 1)).unwrap();
    let context = g
        .add(
            SourceOp::Local(LocalSource {
                exclude_patterns: vec!["target".into()],
                ..LocalSource::new("context")
            }),
            OpMetadata::described("load build context"),
        )
        .unwrap();
    let workdir = g
        .add(
            FileOp::new(Some(base)).with_action(MkdirAction {
                path: "/src".into(),
                mode: 0o755,
                make_parents: true,
                owner: None,
            }),
            located("WORKDIR /src", 2),
        )
        .unwrap();
    let copy = g
        .add(
            FileOp::new(Some(workdir)).with_action(CopyAction::new(
                context,
                vec!["src/*.c".into()],
                "/src/",
            )),
            located("COPY src/*.c /src/", 3),
        )
        .unwrap();
    let build = g
        .add(
            run(copy, "make \"all\"").with_mount(Mount {
                target: "/root/.cache".into(),
                kind: MountKind::Cache {
                    id: "ccache".into(),
                    sharing: CacheSharing::Locked,
                    source: None,
                    selector: "/".into(),
                    readonly: false,
                    uid: 0,
                    gid: 0,
                    mode: 0o755,
                },
            }),
            located("RUN make \"all\"", 4),
        )
        .unwrap();
    g.build(build).unwrap()
}

#[test]
fn json_round_trips_and_is_stable() {
    let def = sample();
    let json = def.to_json();
    let back = Definition::from_json(&json).unwrap();
    assert_eq!(back, def);
    assert_eq!(back.to_json(), json, "serialization must be deterministic");
}

#[test]
fn json_with_a_tampered_op_is_rejected() {
    let json = sample().to_json().replace("make \\\"all\\\"", "make evil");
    let err = Definition::from_json(&json).unwrap_err();
    assert!(
        matches!(err, DefinitionError::DigestMismatch { .. }),
        "{err}"
    );
}

#[test]
fn dot_has_one_node_per_op_and_one_edge_per_input() {
    let def = sample();
    let dot = def.to_dot();
    assert!(dot.starts_with("digraph llb {"));
    assert_eq!(dot.matches("[label=").count(), def.len());
    assert_eq!(dot.matches(" -> ").count(), 4);
    assert!(dot.contains("RUN make \\\"all\\\"\\n"), "{dot}");
    assert!(dot.contains("Dockerfile:4"), "{dot}");
}

#[test]
fn map_inputs_visits_in_input_order() {
    let def = sample();
    let build = def.op(&def.output().digest).unwrap();
    let inputs = build.inputs();
    assert_eq!(inputs.len(), 1);
    let mut seen = Vec::new();
    let replaced = build.map_inputs(|r| {
        seen.push(*r);
        OpRef::new(Digest::of(b"key"))
    });
    assert_eq!(seen, inputs);
    assert_eq!(replaced.inputs(), vec![OpRef::new(Digest::of(b"key"))]);
}

#[test]
fn every_kind_of_input_is_listed_in_a_fixed_order() {
    use img_llb::{DiffOp, FileAction, MkfileAction};
    let r = |s: &str| OpRef::new(Digest::of(s.as_bytes()));
    let bind = |source: OpRef| Mount {
        target: "/mnt".into(),
        kind: MountKind::Bind {
            source,
            selector: "/".into(),
            readonly: true,
        },
    };
    let exec: Op = ExecOp::new(Some(r("root")), vec!["true".into()])
        .with_mount(bind(r("bind")))
        .with_mount(Mount {
            target: "/tmp".into(),
            kind: MountKind::Tmpfs { size: None },
        })
        .into();
    assert_eq!(exec.inputs(), vec![r("root"), r("bind")]);
    let file: Op = FileOp::new(Some(r("base")))
        .with_action(FileAction::Mkfile(MkfileAction {
            path: "/f".into(),
            mode: 0o644,
            data: "x".into(),
            owner: None,
        }))
        .with_action(CopyAction::new(r("ctx"), vec!["a".into()], "/"))
        .into();
    assert_eq!(file.inputs(), vec![r("base"), r("ctx")]);
    let diff: Op = DiffOp {
        lower: Some(r("lower")),
        upper: r("upper"),
    }
    .into();
    assert_eq!(diff.inputs(), vec![r("lower"), r("upper")]);
    for op in [exec, file, diff] {
        let mut visited = Vec::new();
        op.map_inputs(|x| {
            visited.push(*x);
            *x
        });
        assert_eq!(
            visited,
            op.inputs(),
            "map_inputs and inputs disagree for {op:?}"
        );
    }
}

/// Graphviz itself must accept the output (graphviz is in xtask/test-packages.txt).
#[test]
fn graphviz_renders_the_dot_output() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let def = sample();
    let mut child = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("graphviz `dot` must be installed (apt-get install graphviz)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(def.to_dot().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let svg = String::from_utf8(out.stdout).unwrap();
    assert_eq!(svg.matches("class=\"node\"").count(), def.len());
    assert!(svg.contains("WORKDIR /src"), "{svg}");
}

#[test]
fn dependency_order_puts_inputs_first() {
    let def = sample();
    let order = def.dependency_order();
    assert_eq!(order.len(), def.len());
    assert_eq!(*order.last().unwrap(), def.output().digest);
    for (position, digest) in order.iter().enumerate() {
        for input in def.op(digest).unwrap().inputs() {
            let input_position = order.iter().position(|d| *d == input.digest).unwrap();
            assert!(input_position < position);
        }
    }
    let names: Vec<&str> = order
        .iter()
        .map(|d| def.metadata(d).unwrap().description.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "FROM alpine",
            "WORKDIR /src",
            "load build context",
            "COPY src/*.c /src/",
            "RUN make \"all\""
        ]
    );
}

#[test]
fn one_graph_for_several_platforms_shares_identical_ops() {
    let image = |arch: &str| {
        SourceOp::Image(ImageSource {
            reference: "docker.io/library/busybox:latest".into(),
            platform: Platform::new("linux", arch),
        })
    };
    let mut g = DefinitionBuilder::new();
    g.add(
        SourceOp::Local(LocalSource::new("unused")),
        OpMetadata::default(),
    )
    .unwrap();
    let mut outputs = Vec::new();
    for arch in ["amd64", "arm64"] {
        let base = g.add(image(arch), OpMetadata::default()).unwrap();
        // The same step on the build platform's image for both targets: one op.
        let native = g.add(image("amd64"), OpMetadata::default()).unwrap();
        let tool = g
            .add(run(native, "make tool"), OpMetadata::default())
            .unwrap();
        outputs.push(
            g.add(
                run(base, "cp /tool/out /").with_mount(Mount {
                    target: "/tool".into(),
                    kind: MountKind::Bind {
                        source: tool,
                        selector: "/".into(),
                        readonly: true,
                    },
                }),
                OpMetadata::default(),
            )
            .unwrap(),
        );
    }
    // Repeats are dropped, the order is kept.
    outputs.push(outputs[0]);
    let def = g.build_outputs(&outputs).unwrap();
    assert_eq!(def.outputs(), outputs[..2]);
    assert_eq!(def.output(), outputs[0]);
    // busybox amd64, busybox arm64, one `make tool`, two final steps; the unused context is
    // dropped.
    assert_eq!(def.len(), 5);
    let order = def.dependency_order();
    assert_eq!(order.len(), 5);
    for output in &outputs[..2] {
        assert!(order.contains(&output.digest));
    }
    let back = Definition::from_json(&def.to_json()).unwrap();
    assert_eq!(back, def);
    assert!(matches!(
        DefinitionBuilder::new().build_outputs(&[]),
        Err(DefinitionError::NoOutput)
    ));
    // A one-output graph serializes as before: no extra key.
    assert!(!sample().to_json().contains("more_outputs"));
}
