//! COPY, ADD and WORKDIR: file ops, copy actions and their sources.

use img_llb::{IdOrName, Owner};

use crate::*;

#[test]
fn copy_from_context_resolves_dest_owner_mode_and_excludes() {
    let build = lower_text(
        "FROM alpine:3.20\nWORKDIR /app\nCOPY --chown=app:1000 --chmod=0640 --exclude=*.tmp src/ lib/*.rs ./dst/\nCOPY single /etc/single\n",
    );
    let def = &build.definition;
    let second = as_file(def, &def.output());
    let first_ref = second.base.unwrap();
    let first = as_file(def, &first_ref);
    let actions = copies(first);
    assert_eq!(actions.len(), 2);
    let context = build.context.unwrap();
    for (action, src) in actions.iter().zip(["/src", "/lib/*.rs"]) {
        assert_eq!(action.source, context);
        assert_eq!(action.src, [src]);
        assert_eq!(action.dest, "/app/dst/");
        assert_eq!(
            action.owner,
            Some(Owner {
                user: IdOrName::Name("app".into()),
                group: Some(IdOrName::Id(1000)),
            })
        );
        assert_eq!(action.mode, Some(0o640));
        assert_eq!(action.exclude_patterns, ["*.tmp"]);
        assert!(action.allow_wildcard && action.allow_empty_wildcard);
        assert!(action.follow_symlinks && action.copy_dir_contents && action.create_dest_path);
        assert!(!action.unpack_archive);
    }
    let single = copies(second)[0];
    assert_eq!(
        (single.src[0].as_str(), single.dest.as_str()),
        ("/single", "/etc/single")
    );
    assert_eq!(single.owner, None);
    match as_source(def, &context) {
        SourceOp::Local(local) => {
            assert_eq!(local.name, "context");
            assert_eq!(local.exclude_patterns, ["*.md", ".git"]);
            assert_eq!(local.follow_paths, ["lib/*.rs", "single", "src"]);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(description(def, &context), "[internal] load build context");
}

#[test]
fn copying_the_whole_context_follows_no_paths() {
    let build = lower_text("FROM alpine:3.20\nCOPY . /app\nCOPY x /x\n");
    match as_source(&build.definition, &build.context.unwrap()) {
        SourceOp::Local(local) => assert!(local.follow_paths.is_empty()),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn copy_parents_keeps_the_path_below_the_pivot() {
    let build = lower_text("FROM alpine:3.20\nCOPY --parents ./src/./pkg/a.go /out/\n");
    let file = as_file(&build.definition, &build.definition.output());
    let action = copies(file)[0];
    assert_eq!(action.src, ["/src"]);
    assert_eq!(action.include_patterns, ["pkg/a.go"]);
}

#[test]
fn copy_from_stage_index_and_image_share_ops() {
    let build = lower_text(concat!(
        "FROM alpine:3.20 AS build\nRUN make\n",
        "FROM alpine:3.20\n",
        "COPY --from=build /out /bin/\n",
        "COPY --from=0 /out2 /bin/\n",
        "COPY --from=busybox:1.36 /bin/busybox /bin/\n",
    ));
    let def = &build.definition;
    let build_out = build.stage(0).unwrap().output.unwrap();
    let third = as_file(def, &def.output());
    let second = as_file(def, &third.base.unwrap());
    let first = as_file(def, &second.base.unwrap());
    assert_eq!(copies(first)[0].source, build_out);
    assert_eq!(copies(second)[0].source, build_out);
    let image = copies(third)[0].source;
    match as_source(def, &image) {
        SourceOp::Image(i) => {
            assert_eq!(i.reference, "busybox:1.36");
            assert_eq!(i.platform.to_string(), "linux/amd64");
        }
        other => panic!("unexpected {other:?}"),
    }
    // Both stages start from the same image op.
    assert_eq!(as_exec(def, &build_out).root, first.base);
    assert_eq!(
        description(def, &def.output()),
        "[stage-1 4/4] COPY --from=busybox:1.36 /bin/busybox /bin/"
    );
    assert_eq!(description(def, &build_out), "[build 2/2] RUN make");
    assert!(build.context.is_none(), "nothing reads the context");
}

#[test]
fn copy_from_a_local_build_context() {
    let options = lower_options().local_context("assets");
    let build = try_lower_with(
        "FROM alpine:3.20\nCOPY --from=assets /logo.png /srv/\n",
        &build_options(),
        &options,
    )
    .unwrap();
    let file = as_file(&build.definition, &build.definition.output());
    match as_source(&build.definition, &copies(file)[0].source) {
        SourceOp::Local(local) => assert_eq!(local.name, "assets"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn copy_link_is_a_merge_of_a_copy_on_scratch() {
    let build = lower_text("FROM alpine:3.20\nRUN make\nCOPY --link app /app/\n");
    let def = &build.definition;
    let merge = as_merge(def, &def.output());
    assert_eq!(merge.inputs.len(), 2);
    let run = build.target().layers[0].op;
    assert_eq!(merge.inputs[0], run);
    let copy = as_file(def, &merge.inputs[1]);
    assert_eq!(
        copy.base, None,
        "a linked copy does not depend on the stage"
    );
    let step = build.target().layers[1];
    assert_eq!(
        (step.op, step.linked),
        (def.output(), Some(merge.inputs[1]))
    );
    assert_eq!(build.target().layers[0].linked, None);
    assert_eq!(copies(copy)[0].dest, "/app/");
    assert_eq!(
        description(def, &merge.inputs[1]),
        "[3/3] COPY --link app /app/"
    );
    assert_eq!(
        description(def, &def.output()),
        "[3/3] LINK COPY --link app /app/"
    );
    // The linked copy is the same op whatever came before it.
    let other = lower_text("FROM alpine:3.20\nRUN other\nCOPY --link app /app/\n");
    let other_merge = as_merge(&other.definition, &other.definition.output());
    assert_eq!(other_merge.inputs[1], merge.inputs[1]);
    assert_ne!(other_merge.inputs[0], merge.inputs[0]);
}

#[test]
fn add_local_archive_url_and_git() {
    let sum = "sha256:".to_string() + &"ab".repeat(32);
    let build = lower_text(&format!(
        concat!(
            "FROM alpine:3.20\n",
            "ADD app.tar.gz /opt/\n",
            "ADD --unpack=false other.tar /keep/\n",
            "ADD --checksum={} https://example.com/dl/tool.tar.gz /usr/local/bin/\n",
            "ADD --chmod=0755 https://example.com/run.sh /bin/run\n",
            "ADD --keep-git-dir=true https://github.com/foo/bar.git#v1.2:docs /src\n",
        ),
        sum
    ));
    let def = &build.definition;
    let chain: Vec<&FileOp> = {
        let mut out = Vec::new();
        let mut r = def.output();
        while let Op::File(f) = op(def, &r) {
            out.push(f);
            r = f.base.unwrap();
        }
        out.reverse();
        out
    };
    assert_eq!(chain.len(), 5);
    let local = copies(chain[0])[0];
    assert!(local.unpack_archive, "local archives are unpacked");
    assert_eq!(local.src, ["/app.tar.gz"]);
    assert!(!copies(chain[1])[0].unpack_archive, "--unpack=false");

    let download = copies(chain[2])[0];
    assert_eq!(download.src, ["/tool.tar.gz"]);
    assert_eq!(download.dest, "/usr/local/bin/");
    assert_eq!(download.mode, Some(0o600));
    assert!(!download.unpack_archive, "downloads are not unpacked");
    match as_source(def, &download.source) {
        SourceOp::Http(http) => {
            assert_eq!(http.url, "https://example.com/dl/tool.tar.gz");
            assert_eq!(http.checksum, Some(sum.parse().unwrap()));
            assert_eq!(http.filename.as_deref(), Some("tool.tar.gz"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(copies(chain[3])[0].mode, Some(0o755));

    let checkout = copies(chain[4])[0];
    assert_eq!(checkout.src, ["/docs"]);
    assert_eq!(checkout.dest, "/src");
    match as_source(def, &checkout.source) {
        SourceOp::Git(git) => {
            assert_eq!(git.url, "https://github.com/foo/bar.git");
            assert_eq!(git.reference.as_deref(), Some("v1.2"));
            assert!(git.keep_git_dir);
        }
        other => panic!("unexpected {other:?}"),
    }
    // Only the local sources are read from the context.
    match as_source(def, &build.context.unwrap()) {
        SourceOp::Local(local) => assert_eq!(local.follow_paths, ["app.tar.gz", "other.tar"]),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn heredoc_copy_is_an_inline_file() {
    let build = lower_text(
        "FROM alpine:3.20\nENV NAME=world\nCOPY <<EOF /etc/greeting\nhello $NAME\nEOF\nCOPY --chmod=0600 <<'RAW' /etc/raw\n$NAME\nRAW\n",
    );
    let def = &build.definition;
    let second = as_file(def, &def.output());
    let first = as_file(def, &second.base.unwrap());
    let expanded = copies(first)[0];
    assert_eq!(expanded.src, ["/EOF"]);
    assert_eq!(expanded.dest, "/etc/greeting");
    assert!(!expanded.allow_wildcard && !expanded.follow_symlinks);
    match as_file(def, &expanded.source).actions.as_slice() {
        [FileAction::Mkfile(f)] => {
            assert_eq!((f.path.as_str(), f.mode), ("/EOF", 0o644));
            assert_eq!(f.data, "hello world\n");
        }
        other => panic!("unexpected {other:?}"),
    }
    let raw = copies(second)[0];
    assert_eq!(raw.mode, Some(0o600));
    match as_file(def, &raw.source).actions.as_slice() {
        [FileAction::Mkfile(f)] => assert_eq!(f.data, "$NAME\n"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(build.context.is_none());
}

#[test]
fn workdir_is_created_with_the_user_and_root_workdir_is_not() {
    let build = lower_text("FROM alpine:3.20\nUSER 1000:1000\nWORKDIR /\nWORKDIR data\n");
    let def = &build.definition;
    let mkdir = as_file(def, &def.output());
    match mkdir.actions.as_slice() {
        [FileAction::Mkdir(m)] => {
            assert_eq!(m.path, "/data");
            assert_eq!(
                m.owner,
                Some(Owner {
                    user: IdOrName::Id(1000),
                    group: Some(IdOrName::Id(1000)),
                })
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(op(def, &mkdir.base.unwrap()), Op::Source(_)));
    // `WORKDIR /` is a step in the count but makes no op.
    assert_eq!(description(def, &def.output()), "[3/3] WORKDIR data");
    assert_eq!(def.len(), 2);
}
