//! `img debug parse`.

use serde_json::{json, Value};

use crate::{assert_stderr_contains, Img};

fn stdout_json(output: &std::process::Output) -> Value {
    assert!(
        output.status.success(),
        "img failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("img prints JSON")
}

#[test]
fn prints_the_syntax_tree_of_a_file() {
    let img = Img::new();
    let path = img.dir().join("app.Dockerfile");
    std::fs::write(
        &path,
        "# syntax=docker/dockerfile:1\nFROM alpine\nENV a=\"x y\"\nONBUILD RUN <<EOF\nhi\nEOF\n",
    )
    .unwrap();
    let tree = stdout_json(&img.run(&["debug", "parse", "app.Dockerfile"]));
    assert_eq!(
        tree,
        json!({
            "directives": {"escape": "\\", "syntax": "docker/dockerfile:1", "check": null},
            "warnings": [],
            "instructions": [
                {"cmd": "from", "flags": [], "json": false, "args": ["alpine"], "heredocs": [],
                 "start_line": 2, "end_line": 2},
                {"cmd": "env", "flags": [], "json": false, "args": ["a", "\"x y\""], "heredocs": [],
                 "start_line": 3, "end_line": 3},
                {"cmd": "onbuild", "flags": [], "json": false, "args": [],
                 "heredocs": [{"name": "EOF", "fd": 0, "expand": true, "chomp": false, "content": "hi\n"}],
                 "start_line": 4, "end_line": 6,
                 "sub": {"cmd": "run", "flags": [], "json": false, "args": ["<<EOF"], "heredocs": []}}
            ]
        })
    );
}

#[test]
fn reads_standard_input_for_dash() {
    let img = Img::new();
    let tree =
        stdout_json(&img.run_with_input(&["debug", "parse", "-"], b"FROM a\nRUN \\\n\n b\n"));
    assert_eq!(tree["instructions"][1]["args"], json!(["b"]));
    assert_eq!(
        tree["warnings"],
        json!(["Empty continuation line found in: RUN  b"])
    );
}

#[test]
fn reads_dockerfile_in_the_working_directory_by_default() {
    let img = Img::new();
    std::fs::write(img.dir().join("Dockerfile"), "FROM scratch\n").unwrap();
    let tree = stdout_json(&img.run(&["debug", "parse"]));
    assert_eq!(tree["instructions"][0]["args"], json!(["scratch"]));
}

#[test]
fn rejects_an_unparsable_dockerfile_with_file_line_and_text() {
    let img = Img::new();
    std::fs::write(img.dir().join("Dockerfile"), "FROM a\nENV PATH\n").unwrap();
    let output = img.fails(
        &["debug", "parse", "Dockerfile"],
        "Dockerfile:2: ENV must have two arguments",
    );
    assert!(output.stdout.is_empty());
    assert_stderr_contains(&output, "| ENV PATH");
}

#[test]
fn reports_a_missing_file() {
    let img = Img::new();
    let output = img.fails(
        &["debug", "parse", "nope"],
        "could not read the Dockerfile nope",
    );
    assert_stderr_contains(&output, "caused by:");
}
