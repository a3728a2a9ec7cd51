//! Lowering cases as data: `lower-cases/<case>/Dockerfile` and the expected op listing.

use img_llb::MountKind;

use crate::*;

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
