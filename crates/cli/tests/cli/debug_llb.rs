//! `img debug llb`: the build graph as JSON and as Graphviz dot.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::{assert_success, stderr, Img};

const DOCKERFILE: &str = "FROM busybox AS build\nCOPY . /src\nRUN make -C /src\n\nFROM scratch\nCOPY --from=build /src/app /app\n";

fn img_with_context() -> Img {
    let img = Img::new();
    let ctx = img.dir().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), DOCKERFILE).unwrap();
    std::fs::write(ctx.join(".dockerignore"), "*.log\n").unwrap();
    img
}

#[test]
fn json_lists_the_ops_with_their_dockerfile_lines() {
    let img = img_with_context();
    let out = img.run(&["debug", "llb", "--build-arg", "X=1", "ctx"]);
    assert_success(&out, &["debug", "llb"]);
    let graph: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let ops = graph["ops"].as_array().expect("an ops array");
    assert!(ops.len() >= 5, "{graph}");
    let text = graph.to_string();
    assert!(text.contains("make -C /src"), "{text}");
    // The .dockerignore patterns reach the context source.
    assert!(text.contains("*.log"), "{text}");
    // --target stops at the stage.
    let out = img.run(&["debug", "llb", "--target", "build", "ctx"]);
    assert_success(&out, &["debug", "llb", "--target"]);
    let target: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(target["ops"].as_array().unwrap().len() < ops.len());
}

#[test]
fn dot_renders_with_graphviz() {
    let img = img_with_context();
    let out = img.run(&["debug", "llb", "--format", "dot", "ctx"]);
    assert_success(&out, &["debug", "llb", "--format", "dot"]);
    assert!(
        out.stdout.starts_with(b"digraph"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let mut dot = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("graphviz is installed (apt-get install graphviz)");
    dot.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    let svg = dot.wait_with_output().unwrap();
    assert!(
        svg.status.success(),
        "{}",
        String::from_utf8_lossy(&svg.stderr)
    );
    assert!(String::from_utf8_lossy(&svg.stdout).contains("<svg"));
}

#[test]
fn a_bad_dockerfile_is_reported_with_file_and_line() {
    let img = Img::new();
    let ctx = img.dir().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(
        ctx.join("app.Dockerfile"),
        "FROM busybox\nRUN true\nCOPY --bogus=1 a b\n",
    )
    .unwrap();
    let out = img.run(&["debug", "llb", "-f", "ctx/app.Dockerfile", "ctx"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("ctx/app.Dockerfile:3"), "{err}");
    assert!(err.contains("bogus"), "{err}");
}

#[test]
fn a_dockerfile_on_stdin() {
    let img = Img::new();
    let out = img.run_with_input(
        &["debug", "llb", "-"],
        b"FROM scratch\nCOPY <<EOF /a\nhi\nEOF\n",
    );
    assert_success(&out, &["debug", "llb", "-"]);
    let graph: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!graph["ops"].as_array().unwrap().is_empty());
}
