//! Stage bases, metadata-only instructions, ONBUILD triggers and located errors.

use img_frontend_dockerfile::LoweredBase;

use crate::*;

#[test]
fn metadata_instructions_make_no_ops() {
    let build = lower_text(concat!(
        "FROM alpine:3.20\nENV A=1\nLABEL a=b\nEXPOSE 80\nUSER app\nVOLUME /data\n",
        "STOPSIGNAL SIGTERM\nHEALTHCHECK CMD true\nSHELL [\"/bin/bash\", \"-c\"]\n",
        "ONBUILD RUN x\nMAINTAINER me\nARG Z=1\nENTRYPOINT [\"app\"]\nCMD [\"serve\"]\n",
    ));
    assert_eq!(build.definition.len(), 1);
    assert!(matches!(
        op(&build.definition, &build.definition.output()),
        Op::Source(SourceOp::Image(_))
    ));
    assert!(build.target().layers.is_empty());
    assert_eq!(build.image.config.cmd, Some(vec!["serve".to_string()]));
    assert_eq!(build.image.config.user.as_deref(), Some("app"));
}

#[test]
fn scratch_without_content_is_an_empty_filesystem() {
    let build = lower_text("FROM scratch\nENV A=1\n");
    let def = &build.definition;
    let empty = as_file(def, &def.output());
    assert_eq!((empty.base, empty.actions.len()), (None, 0));
    assert_eq!(build.target().output, None);
    assert_eq!(build.target().base, LoweredBase::Scratch);

    let build = lower_text("FROM scratch\nCOPY a /a\nRUN [\"/a\"]\n");
    let def = &build.definition;
    let exec = as_exec(def, &def.output());
    let copy = as_file(def, &exec.root.unwrap());
    assert_eq!(copy.base, None);
    assert_eq!(exec.args, ["/a"]);
    assert_eq!(build.target().layers.len(), 2);
    assert_eq!(build.target().layers[0].parent, None);
}

#[test]
fn onbuild_triggers_of_the_base_image_run_first() {
    let build = lower_text("FROM onbuild-base\nRUN after\n");
    let def = &build.definition;
    let after = as_exec(def, &def.output());
    let trigger_run = as_exec(def, &after.root.unwrap());
    assert_eq!(trigger_run.args, ["/bin/sh", "-c", "echo triggered"]);
    let trigger_copy = as_file(def, &trigger_run.root.unwrap());
    assert_eq!(copies(trigger_copy)[0].dest, "/etc/app.conf");
    assert_eq!(
        description(def, &after.root.unwrap()),
        "[3/4] ONBUILD RUN echo triggered"
    );
    let meta = def.metadata(&after.root.unwrap().digest).unwrap();
    assert_eq!(
        meta.location.as_ref().unwrap().start_line,
        1,
        "triggers point at FROM"
    );
    assert_eq!(build.target().layers.len(), 3);
}

#[test]
fn a_symbolic_chmod_travels_to_the_copy_and_an_octal_one_replaces_the_bits() {
    let build =
        lower_text("FROM alpine:3.20\nCOPY --chmod=u+x,go=rX run.sh /\nCOPY --chmod=640 a /\n");
    let def = &build.definition;
    let symbolic = as_file(def, &build.target().layers[0].op);
    let copy = copies(symbolic)[0];
    assert_eq!(copy.mode, None);
    let chmod = copy
        .symbolic_mode
        .as_ref()
        .expect("the symbolic mode is kept");
    assert_eq!(
        chmod.apply(0o600, false),
        0o755,
        "X sees the execute bit u+x just added"
    );
    let octal = as_file(def, &build.target().layers[1].op);
    assert_eq!(copies(octal)[0].mode, Some(0o640));
    assert_eq!(copies(octal)[0].symbolic_mode, None);
}

#[test]
fn unsupported_forms_are_located_errors() {
    let err = try_lower_with(
        "FROM alpine:3.20\nADD --checksum=sha256:0000000000000000000000000000000000000000000000000000000000000000 local.tar /\n",
        &build_options(),
        &lower_options(),
    )
    .unwrap_err();
    assert!(matches!(err, LowerError::ChecksumNeedsUrl { .. }), "{err}");

    let err = try_lower_with(
        "FROM alpine:3.20\nADD --checksum=md5:abc https://example.com/x /\n",
        &build_options(),
        &lower_options(),
    )
    .unwrap_err();
    assert!(matches!(err, LowerError::InvalidChecksum { .. }), "{err}");

    let err = try_lower_with(
        "FROM alpine:3.20\nCOPY git@github.com:foo/bar.git /src\n",
        &build_options(),
        &lower_options(),
    )
    .unwrap_err();
    assert!(matches!(err, LowerError::GitSourceInCopy { .. }), "{err}");
}
