//! Lowering: Dockerfile → plan → build graph, with assertions on the ops each instruction makes.

use std::collections::{BTreeMap, BTreeSet};

use img_frontend_dockerfile::{
    lower, parse, plan, BaseImageError, BuildOptions, GraphFormat, ImageConfig, LowerError,
    LowerOptions, LoweredBase, LoweredBuild, Platform,
};
use img_llb::{
    CacheSharing, CopyAction, Definition, Digest, ExecOp, FileAction, FileOp, IdOrName, MergeOp,
    MountKind, NetworkMode, Op, OpRef, Owner, SecurityMode, SourceOp,
};

const ALPINE_PINNED: &str =
    "docker.io/library/alpine:3.20@sha256:1111111111111111111111111111111111111111111111111111111111111111";

/// Base image configs the resolver knows: alpine with two layers of history, and an image
/// with ONBUILD triggers.
fn base_images() -> BTreeMap<String, ImageConfig> {
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

fn build_options() -> BuildOptions {
    BuildOptions::new().build_platform(Platform::parse("linux/amd64").unwrap())
}

fn lower_options() -> LowerOptions {
    LowerOptions::new()
        .resolved_image("alpine:3.20", ALPINE_PINNED)
        .target_platform(Platform::parse("linux/amd64").unwrap())
        .exclude_patterns(vec!["*.md".to_string(), ".git".to_string()])
}

fn try_lower_with(
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

fn lower_with(dockerfile: &str, options: &BuildOptions) -> LoweredBuild {
    try_lower_with(dockerfile, options, &lower_options()).expect("lower")
}

fn lower_text(dockerfile: &str) -> LoweredBuild {
    lower_with(dockerfile, &build_options())
}

fn op<'d>(def: &'d Definition, r: &OpRef) -> &'d Op {
    def.op(&r.digest).expect("op in definition")
}

fn as_exec<'d>(def: &'d Definition, r: &OpRef) -> &'d ExecOp {
    match op(def, r) {
        Op::Exec(e) => e,
        other => panic!("expected exec, got {}", other.kind_name()),
    }
}

fn as_file<'d>(def: &'d Definition, r: &OpRef) -> &'d FileOp {
    match op(def, r) {
        Op::File(f) => f,
        other => panic!("expected file op, got {}", other.kind_name()),
    }
}

fn as_merge<'d>(def: &'d Definition, r: &OpRef) -> &'d MergeOp {
    match op(def, r) {
        Op::Merge(m) => m,
        other => panic!("expected merge, got {}", other.kind_name()),
    }
}

fn as_source<'d>(def: &'d Definition, r: &OpRef) -> &'d SourceOp {
    match op(def, r) {
        Op::Source(s) => s,
        other => panic!("expected source, got {}", other.kind_name()),
    }
}

fn copies(file: &FileOp) -> Vec<&CopyAction> {
    file.actions
        .iter()
        .filter_map(|a| match a {
            FileAction::Copy(c) => Some(c),
            _ => None,
        })
        .collect()
}

fn description(def: &Definition, r: &OpRef) -> String {
    def.metadata(&r.digest)
        .map(|m| m.description.clone())
        .unwrap_or_default()
}

/// The op whose description ends with `suffix` (exactly one must).
fn find(def: &Definition, suffix: &str) -> OpRef {
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
fn ancestors(def: &Definition, digest: Digest) -> BTreeSet<Digest> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![digest];
    while let Some(d) = stack.pop() {
        if seen.insert(d) {
            stack.extend(def.op(&d).unwrap().inputs().iter().map(|r| r.digest));
        }
    }
    seen
}

fn env_of(exec: &ExecOp) -> BTreeMap<&str, &str> {
    exec.env
        .iter()
        .map(|kv| kv.split_once('=').unwrap())
        .collect()
}

#[test]
fn from_image_workdir_user_and_run() {
    let build = lower_text(
        "FROM alpine:3.20\nENV A=1\nWORKDIR /src\nUSER app:staff\nARG V=7\nRUN make \\\n  all\n",
    );
    let def = &build.definition;
    let run = def.output();
    let exec = as_exec(def, &run);
    assert_eq!(exec.args, ["/bin/sh", "-c", "make   all"]);
    let env = env_of(exec);
    assert_eq!(env["A"], "1");
    assert_eq!(env["V"], "7");
    assert!(env["PATH"].contains("/usr/bin"));
    assert_eq!(exec.cwd, "/src");
    assert_eq!(exec.user.as_deref(), Some("app:staff"));
    assert_eq!(exec.network, NetworkMode::Sandbox);
    assert_eq!(exec.security, SecurityMode::Sandbox);
    assert!(exec.mounts.is_empty());

    let meta = def.metadata(&run.digest).unwrap();
    assert_eq!(meta.description, "[3/3] RUN make   all");
    let location = meta.location.as_ref().unwrap();
    assert_eq!(
        (
            location.file.as_str(),
            location.start_line,
            location.end_line
        ),
        ("Dockerfile", 6, 7)
    );
    assert_eq!(meta.stage.as_deref(), Some("0"));

    let mkdir_ref = exec.root.unwrap();
    let mkdir = as_file(def, &mkdir_ref);
    match mkdir.actions.as_slice() {
        [FileAction::Mkdir(m)] => {
            assert_eq!(
                (m.path.as_str(), m.mode, m.make_parents),
                ("/src", 0o755, true)
            );
            // USER comes after WORKDIR: the directory is root's.
            assert_eq!(m.owner, None);
        }
        other => panic!("unexpected actions {other:?}"),
    }
    assert_eq!(description(def, &mkdir_ref), "[2/3] WORKDIR /src");
    let image_ref = mkdir.base.unwrap();
    match as_source(def, &image_ref) {
        SourceOp::Image(image) => {
            assert_eq!(image.reference, ALPINE_PINNED);
            assert_eq!(image.platform.to_string(), "linux/amd64");
        }
        other => panic!("unexpected source {other:?}"),
    }
    assert_eq!(
        description(def, &image_ref),
        format!("[1/3] FROM {ALPINE_PINNED}")
    );
    assert_eq!(def.len(), 3);
}

#[test]
fn layers_line_up_with_history() {
    let build = lower_text(
        "FROM alpine:3.20\nENV A=1\nWORKDIR /\nWORKDIR /app\nCOPY a /a\nLABEL x=y\nRUN true\n",
    );
    let target = build.target();
    // The base is the image op at the bottom of the chain.
    let mut bottom = build.definition.output();
    while let Some(first) = build
        .definition
        .op(&bottom.digest)
        .unwrap()
        .inputs()
        .first()
    {
        bottom = *first;
    }
    assert_eq!(
        target.base,
        LoweredBase::Image {
            reference: ALPINE_PINNED.to_string(),
            op: bottom,
        }
    );
    let created: Vec<&str> = target
        .layers
        .iter()
        .map(|l| build.image.history[l.history_index].created_by.as_str())
        .collect();
    assert_eq!(created[0], "WORKDIR /app");
    assert!(created[1].starts_with("COPY a /a"), "{created:?}");
    assert!(created[2].starts_with("RUN /bin/sh -c true"), "{created:?}");
    for layer in &target.layers {
        assert!(!build.image.history[layer.history_index].empty_layer);
    }
    // Every non-empty entry after the base image's is a layer op, in order.
    let own: Vec<usize> = build
        .image
        .history
        .iter()
        .enumerate()
        .skip(2)
        .filter(|(_, h)| !h.empty_layer)
        .map(|(i, _)| i)
        .collect();
    let layer_indexes: Vec<usize> = target.layers.iter().map(|l| l.history_index).collect();
    assert_eq!(own, layer_indexes);
    // Each layer's parent is the previous layer (the image op for the first).
    for pair in target.layers.windows(2) {
        assert_eq!(pair[1].parent, Some(pair[0].op));
    }
    assert_eq!(target.output, Some(build.definition.output()));
    let aligned = build.history_layers();
    assert_eq!(aligned.len(), build.image.history.len());
    for (entry, layer) in build.image.history.iter().zip(&aligned).skip(2) {
        assert_eq!(entry.empty_layer, layer.is_none(), "{}", entry.created_by);
    }
    assert!(
        aligned[..2].iter().all(Option::is_none),
        "base image entries"
    );
}

#[test]
fn run_mounts_network_and_security() {
    let build = lower_text(concat!(
        "FROM alpine:3.20 AS build\nRUN make\n",
        "FROM alpine:3.20\nWORKDIR /w\n",
        "RUN --mount=type=cache,target=/root/.cache,id=gocache,sharing=locked,uid=1000,mode=0700 ",
        "--mount=type=bind,source=src,target=rel,rw ",
        "--mount=type=tmpfs,target=/tmp,size=64m ",
        "--mount=type=secret,id=token,env=TOKEN ",
        "--mount=type=secret,id=npmrc,target=/root/.npmrc,required ",
        "--mount=type=ssh ",
        "--mount=type=bind,from=build,source=/out,target=/out ",
        "--mount=type=cache,from=build,source=/seed,target=/seeded ",
        "--network=none --security=insecure make\n",
    ));
    let def = &build.definition;
    let exec = as_exec(def, &def.output());
    assert_eq!(exec.network, NetworkMode::None);
    assert_eq!(exec.security, SecurityMode::Insecure);
    let build_stage = build.stage(0).unwrap().output.unwrap();
    let context = build
        .context
        .expect("the context is read by the bind mount");
    let targets: Vec<&str> = exec.mounts.iter().map(|m| m.target.as_str()).collect();
    assert_eq!(
        targets,
        [
            "/root/.cache",
            "/w/rel",
            "/tmp",
            "",
            "/root/.npmrc",
            "/run/buildkit/ssh_agent.0",
            "/out",
            "/seeded"
        ]
    );
    assert_eq!(
        exec.mounts[0].kind,
        MountKind::Cache {
            id: "gocache".into(),
            sharing: CacheSharing::Locked,
            source: None,
            selector: "/".into(),
            readonly: false,
            uid: 1000,
            gid: 0,
            mode: 0o700,
        }
    );
    assert_eq!(
        exec.mounts[1].kind,
        MountKind::Bind {
            source: context,
            selector: "/src".into(),
            readonly: false,
        }
    );
    assert_eq!(
        exec.mounts[2].kind,
        MountKind::Tmpfs {
            size: Some(64 * 1024 * 1024)
        }
    );
    assert_eq!(
        exec.mounts[3].kind,
        MountKind::Secret {
            id: "token".into(),
            env: Some("TOKEN".into()),
            required: false,
            uid: 0,
            gid: 0,
            mode: 0o400,
        }
    );
    assert!(matches!(
        &exec.mounts[4].kind,
        MountKind::Secret { id, required: true, .. } if id == "npmrc"
    ));
    assert_eq!(
        exec.mounts[5].kind,
        MountKind::Ssh {
            id: "default".into(),
            required: false,
            uid: 0,
            gid: 0,
            mode: 0o600,
        }
    );
    assert_eq!(
        exec.mounts[6].kind,
        MountKind::Bind {
            source: build_stage,
            selector: "/out".into(),
            readonly: true,
        }
    );
    assert!(matches!(
        &exec.mounts[7].kind,
        MountKind::Cache { source: Some(s), selector, .. } if *s == build_stage && selector == "/seed"
    ));
    // The context source names what the build reads from it.
    match as_source(def, &context) {
        SourceOp::Local(local) => assert_eq!(local.follow_paths, ["src"]),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn shebang_heredoc_runs_a_mounted_file() {
    let build = lower_text("FROM alpine:3.20\nRUN <<EOF\n#!/bin/sh\necho hi\nEOF\n");
    let def = &build.definition;
    let exec = as_exec(def, &def.output());
    assert_eq!(exec.args, ["/bin/sh", "-c", "/dev/pipes/EOF"]);
    let MountKind::Bind {
        source,
        selector,
        readonly,
    } = &exec.mounts[0].kind
    else {
        panic!("expected a bind mount, got {:?}", exec.mounts);
    };
    assert_eq!(exec.mounts[0].target, "/dev/pipes");
    assert_eq!((selector.as_str(), *readonly), ("/", true));
    let file = as_file(def, source);
    assert_eq!(file.base, None);
    match file.actions.as_slice() {
        [FileAction::Mkfile(f)] => {
            assert_eq!(f.path, "/EOF");
            assert_eq!(f.mode, 0o755);
            assert_eq!(f.data, "#!/bin/sh\necho hi\n");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        description(def, &def.output()),
        "[2/2] RUN <<EOF (#!/bin/sh...)"
    );
}

#[test]
fn plain_heredoc_is_the_shell_script() {
    let build = lower_text("FROM alpine:3.20\nRUN <<EOF\necho a\necho b\nEOF\n");
    let exec = as_exec(&build.definition, &build.definition.output());
    assert_eq!(exec.args, ["/bin/sh", "-c", "echo a\necho b\n"]);
    assert!(exec.mounts.is_empty());
}

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
fn same_dockerfile_gives_the_same_graph_and_a_golden_root() {
    let text = "FROM alpine:3.20\nWORKDIR /app\nCOPY . .\nRUN make\n";
    let a = lower_text(text);
    let b = lower_text(text);
    assert_eq!(a.definition, b.definition);
    assert_eq!(a.definition.to_json(), b.definition.to_json());
    // Pinned so that any change of the op format or of lowering is noticed; update it only
    // for a deliberate change (it invalidates every cache).
    assert_eq!(
        a.definition.output().digest.to_string(),
        "sha256:ae9de90ca18a40177b72d060f6bdf9b71cf1ca4081b60556d03a859ce70931f2"
    );
}

#[test]
fn build_args_change_only_the_steps_that_see_them() {
    let text = concat!(
        "FROM alpine:3.20 AS a\nRUN one\nARG V\nRUN two\nRUN three\n",
        "FROM alpine:3.20 AS b\nRUN four\n",
        "FROM scratch\nCOPY --from=a /x /x\nCOPY --from=b /y /y\n",
    );
    let v1 = lower_with(text, &build_options().build_arg("V", "1"));
    let v2 = lower_with(text, &build_options().build_arg("V", "2"));
    let digest = |build: &LoweredBuild, suffix: &str| find(&build.definition, suffix).digest;
    assert_eq!(digest(&v1, "RUN one"), digest(&v2, "RUN one"));
    assert_eq!(digest(&v1, "RUN four"), digest(&v2, "RUN four"));
    assert_ne!(digest(&v1, "RUN two"), digest(&v2, "RUN two"));
    assert_ne!(
        digest(&v1, "RUN three"),
        digest(&v2, "RUN three"),
        "descendant"
    );
    assert_ne!(v1.definition.output(), v2.definition.output());
    let two = as_exec(&v1.definition, &find(&v1.definition, "RUN two"));
    assert_eq!(env_of(two)["V"], "1");
    // An argument no stage declares changes nothing.
    let unused = lower_with(
        text,
        &build_options().build_arg("V", "1").build_arg("W", "9"),
    );
    assert_eq!(unused.definition, v1.definition);
}

#[test]
fn independent_stages_are_independent_subgraphs() {
    let build = lower_text(concat!(
        "FROM alpine:3.20 AS a\nRUN one\n",
        "FROM alpine:3.20 AS b\nRUN two\n",
        "FROM scratch\nCOPY --from=a /x /x\nCOPY --from=b /y /y\n",
    ));
    let def = &build.definition;
    let a = build.stage(0).unwrap().output.unwrap().digest;
    let b = build.stage(1).unwrap().output.unwrap().digest;
    assert!(!ancestors(def, a).contains(&b));
    assert!(!ancestors(def, b).contains(&a));
    let root = ancestors(def, def.output().digest);
    assert!(root.contains(&a) && root.contains(&b));
    assert_eq!(description(def, &OpRef::new(a)), "[a 2/2] RUN one");
    assert_eq!(
        def.metadata(&b).unwrap().stage.as_deref(),
        Some("b"),
        "stage names for --no-cache-filter"
    );
}

#[test]
fn stages_doing_the_same_work_share_ops() {
    let build = lower_text(concat!(
        "FROM alpine:3.20 AS a\nRUN make\n",
        "FROM alpine:3.20 AS b\nRUN make\n",
        "FROM scratch\nCOPY --from=a / /a\nCOPY --from=b / /b\n",
    ));
    assert_eq!(
        build.stage(0).unwrap().output,
        build.stage(1).unwrap().output
    );
    assert_eq!(build.definition.len(), 4);
}

#[test]
fn a_stage_built_on_another_continues_its_chain() {
    let build = lower_text(concat!(
        "FROM alpine:3.20 AS base\nRUN setup\n",
        "FROM base\nRUN app\n",
    ));
    let base = build.stage(0).unwrap();
    let target = build.target();
    assert_eq!(target.base, base.base);
    assert_eq!(target.layers.len(), 2);
    assert_eq!(target.layers[0], base.layers[0]);
    assert_eq!(target.layers[1].parent, base.output);
    let history: Vec<&str> = target
        .layers
        .iter()
        .map(|l| build.image.history[l.history_index].created_by.as_str())
        .collect();
    assert!(
        history[0].contains("setup") && history[1].contains("app"),
        "{history:?}"
    );
    assert_eq!(
        description(&build.definition, &build.definition.output()),
        "[stage-1 1/1] RUN app"
    );
}

#[test]
fn proxy_args_reach_the_process_but_not_the_digest() {
    let text = "FROM alpine:3.20\nRUN curl example.com\n";
    let plain = lower_with(text, &build_options());
    let proxied = lower_with(
        text,
        &build_options().build_arg("HTTP_PROXY", "http://proxy:3128"),
    );
    let root = proxied.definition.output();
    assert_eq!(root, plain.definition.output());
    assert!(!as_exec(&proxied.definition, &root)
        .env
        .iter()
        .any(|e| e.starts_with("HTTP_PROXY")));
    assert_eq!(
        proxied.proxy_env(&root.digest),
        [("HTTP_PROXY".to_string(), "http://proxy:3128".to_string())]
    );
    assert!(plain.proxy_env(&root.digest).is_empty());
    assert!(!proxied.render(GraphFormat::Json).contains("proxy:3128"));
    let debug = format!("{proxied:?}");
    assert!(debug.contains("HTTP_PROXY") && !debug.contains("proxy:3128"));
}

#[test]
fn renders_json_that_reads_back_and_dot_with_one_node_per_op() {
    let build = lower_text("FROM alpine:3.20\nCOPY a /a\nRUN make\n");
    let json = build.render(GraphFormat::Json);
    assert_eq!(Definition::from_json(&json).unwrap(), build.definition);
    let dot = build.render(GraphFormat::Dot);
    assert_eq!(dot.matches("[label=").count(), build.definition.len());
    assert!(dot.contains("[3/3] RUN make"));
    assert!(dot.contains("Dockerfile:3"));
}

#[test]
fn unsupported_forms_are_located_errors() {
    let err = try_lower_with(
        "FROM alpine:3.20\nCOPY --chmod=u+x run.sh /\n",
        &build_options(),
        &lower_options(),
    )
    .unwrap_err();
    assert!(matches!(err, LowerError::SymbolicChmod { .. }), "{err}");
    assert!(err.to_string().starts_with("Dockerfile:2:"), "{err}");

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

/// A readable listing of a graph in dependency order: one line per op with its kind, progress
/// name, Dockerfile lines and the listing numbers of its inputs, then the op's essentials.
fn listing(build: &LoweredBuild) -> String {
    let def = &build.definition;
    let order = def.dependency_order();
    let number = |d: &Digest| order.iter().position(|o| o == d).unwrap() + 1;
    let mut out = String::new();
    for (i, digest) in order.iter().enumerate() {
        let op = def.op(digest).unwrap();
        let meta = def.metadata(digest).cloned().unwrap_or_default();
        let inputs: Vec<String> = op
            .inputs()
            .iter()
            .map(|r| number(&r.digest).to_string())
            .collect();
        let lines = meta
            .location
            .map(|l| format!(" @{}-{}", l.start_line, l.end_line))
            .unwrap_or_default();
        out.push_str(&format!(
            "{} {} {:?}{lines} <- [{}]\n",
            i + 1,
            op.kind_name(),
            meta.description,
            inputs.join(",")
        ));
        let detail = match op {
            Op::Source(SourceOp::Image(s)) => format!("{} {}", s.reference, s.platform),
            Op::Source(SourceOp::Local(s)) => format!(
                "{} follow={:?} exclude={:?}",
                s.name, s.follow_paths, s.exclude_patterns
            ),
            Op::Source(SourceOp::Http(s)) => format!(
                "{} file={:?} checksum={}",
                s.url,
                s.filename,
                s.checksum.map(|c| c.to_string()).unwrap_or_default()
            ),
            Op::Source(SourceOp::Git(s)) => {
                format!(
                    "{} ref={:?} keep_git_dir={}",
                    s.url, s.reference, s.keep_git_dir
                )
            }
            Op::Exec(e) => {
                let mut d = format!("args={:?} cwd={} user={:?}", e.args, e.cwd, e.user);
                for m in &e.mounts {
                    let kind = match &m.kind {
                        MountKind::Bind {
                            source,
                            selector,
                            readonly,
                        } => format!(
                            "bind from {} {selector} readonly={readonly}",
                            number(&source.digest)
                        ),
                        MountKind::Cache {
                            id,
                            sharing,
                            source,
                            selector,
                            readonly,
                            uid,
                            gid,
                            mode,
                        } => format!(
                            "cache id={id} {sharing:?} from={:?} {selector} readonly={readonly} {uid}:{gid} {mode:o}",
                            source.map(|s| number(&s.digest))
                        ),
                        other => format!("{other:?}"),
                    };
                    d.push_str(&format!("\n    mount {} {kind}", m.target));
                }
                d
            }
            Op::File(f) => f
                .actions
                .iter()
                .map(|a| match a {
                    FileAction::Copy(c) => format!(
                        "copy {:?} -> {} from {} owner={:?} mode={:?} unpack={}",
                        c.src,
                        c.dest,
                        number(&c.source.digest),
                        c.owner,
                        c.mode.map(|m| format!("{m:o}")),
                        c.unpack_archive
                    ),
                    FileAction::Mkdir(m) => {
                        format!("mkdir {} {:o} owner={:?}", m.path, m.mode, m.owner)
                    }
                    FileAction::Mkfile(m) => format!("mkfile {} {:o} {:?}", m.path, m.mode, m.data),
                    other => format!("{other:?}"),
                })
                .collect::<Vec<_>>()
                .join("\n    "),
            Op::Merge(m) => format!("merge {} inputs", m.inputs.len()),
            other => other.kind_name().to_string(),
        };
        if !detail.is_empty() {
            out.push_str(&format!("    {detail}\n"));
        }
    }
    let layers: Vec<String> = build
        .target()
        .layers
        .iter()
        .map(|l| format!("{}:{}", number(&l.op.digest), l.history_index))
        .collect();
    out.push_str(&format!("layers (op:history) {}\n", layers.join(" ")));
    out
}

/// `lower-cases/<case>/Dockerfile` lowered and listed must equal `expected.txt` next to it.
/// `IMG_BLESS=1 cargo test --test lower` rewrites the expectations (review the diff).
#[test]
fn lower_cases() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lower-cases");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty());
    let bless = std::env::var_os("IMG_BLESS").is_some();
    let mut failures = Vec::new();
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(dir.join("Dockerfile")).unwrap();
        let actual = listing(&lower_text(&text));
        let expected_path = dir.join("expected.txt");
        if bless {
            std::fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|e| panic!("{name}/expected.txt: {e}"));
        if expected != actual {
            failures.push(format!(
                "{name}:\n--- expected\n{expected}--- actual\n{actual}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
