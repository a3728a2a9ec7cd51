//! RUN: exec ops, their environment, mounts and heredocs.

use img_llb::{CacheSharing, MountKind, NetworkMode, SecurityMode};

use crate::*;

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
