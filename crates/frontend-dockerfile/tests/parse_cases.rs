//! Data-driven parser tests.
//!
//! `parse-cases/<case>/Dockerfile` with either `expected.json` (the whole `img debug parse`
//! document) or `expected-error.txt` (a substring of the error message). When
//! `IMG_CONFORMANCE_DIR` points at the shared conformance folder, BuildKit's own parser cases
//! are checked too, read in place.

use std::path::{Path, PathBuf};

use img_frontend_dockerfile::{parse, Dockerfile};
use serde_json::Value;

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/parse-cases")
}

fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    entries.sort();
    entries
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn to_json(dockerfile: &Dockerfile) -> Value {
    serde_json::to_value(dockerfile).expect("a syntax tree serializes")
}

#[test]
fn parse_cases() {
    let mut failures = Vec::new();
    let mut count = 0;
    for case in sorted_entries(&cases_dir()) {
        if !case.is_dir() {
            continue;
        }
        count += 1;
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let source = read(&case.join("Dockerfile"));
        let expected_json = case.join("expected.json");
        let expected_error = case.join("expected-error.txt");
        match parse(&source, "Dockerfile") {
            Ok(dockerfile) if expected_json.exists() => {
                let want: Value = serde_json::from_slice(&read(&expected_json))
                    .unwrap_or_else(|e| panic!("{name}/expected.json: {e}"));
                let got = to_json(&dockerfile);
                if got != want {
                    failures.push(format!(
                        "{name}: got\n{}\nwant\n{}",
                        serde_json::to_string_pretty(&got).unwrap(),
                        serde_json::to_string_pretty(&want).unwrap()
                    ));
                }
            }
            Ok(dockerfile) => failures.push(format!(
                "{name}: parsed but should fail: {}",
                to_json(&dockerfile)
            )),
            Err(err) if expected_error.exists() => {
                let want = String::from_utf8(read(&expected_error)).expect("UTF-8 expectation");
                let message = err.to_string();
                if !message.contains(want.trim_end_matches('\n')) {
                    failures.push(format!("{name}: error {message:?} lacks {want:?}"));
                }
            }
            Err(err) => failures.push(format!("{name}: unexpected error: {err}")),
        }
    }
    assert!(count >= 40, "only {count} parse cases found");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// BuildKit's scanner accepts a line of 65535 bytes plus its newline, and no longer.
#[test]
fn line_length_limit() {
    let longest = format!("FROM alpine\nRUN {}\nRUN next\n", "x".repeat(65535 - 4));
    assert!(parse(&longest, "Dockerfile").is_ok());
    let too_long = format!("FROM alpine\nRUN {}\nRUN next\n", "x".repeat(65536 - 4));
    let err = parse(&too_long, "Dockerfile").unwrap_err().to_string();
    assert!(
        err.contains("Dockerfile:2: dockerfile line greater than max allowed size of 65535"),
        "{err}"
    );
}

/// The parser must reject or accept, never panic or hang, whatever the bytes: every prefix
/// of every case, and the cases with bytes flipped.
#[test]
fn never_panics_on_truncated_or_corrupted_input() {
    for case in sorted_entries(&cases_dir()) {
        let dockerfile = case.join("Dockerfile");
        if !dockerfile.exists() {
            continue;
        }
        let source = read(&dockerfile);
        for end in 0..=source.len() {
            let _ = parse(&source[..end], "Dockerfile");
        }
        for (i, byte) in [
            0x00u8, 0xff, b'\\', b'`', b'"', b'\'', b'<', b'[', b'\n', b'\r', b'#',
        ]
        .into_iter()
        .enumerate()
        {
            let mut corrupted = source.clone();
            for pos in (i..corrupted.len()).step_by(7) {
                corrupted[pos] = byte;
            }
            let _ = parse(&corrupted, "Dockerfile");
        }
    }
}

/// Dockerfile-like token soup: the parser never panics, and every parse it accepts has
/// ordered, in-range line numbers.
#[test]
fn token_soup_parses_or_fails_cleanly() {
    const TOKENS: &[&str] = &[
        "RUN ",
        "COPY ",
        "ADD ",
        "ENV ",
        "LABEL ",
        "ARG ",
        "ONBUILD ",
        "HEALTHCHECK ",
        "CMD ",
        "FROM ",
        "USER ",
        "FOO ",
        "<<EOF",
        "<<-EOF",
        "3<<'EOF'",
        "<<\"A B\"",
        "EOF",
        "\tEOF",
        "\\",
        "`",
        "\"",
        "'",
        "${",
        "}",
        "$x",
        "# escape=`",
        "# syntax=x",
        "#",
        "\n",
        "\r\n",
        " ",
        "\t",
        "[",
        "]",
        "[\"a\", 1]",
        "[\"a\"]",
        "--",
        "--x=",
        "=",
        "a",
        "é",
        "\u{a0}",
        "\u{feff}",
        "<<",
        "<",
        ",",
        "{",
    ];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let len = (next() % 40) as usize;
        let text: String = (0..len)
            .map(|_| TOKENS[(next() % TOKENS.len() as u64) as usize])
            .collect();
        let Ok(dockerfile) = parse(&text, "Dockerfile") else {
            continue;
        };
        let total_lines = text.split_inclusive('\n').count();
        let mut previous_end = 0;
        for node in &dockerfile.instructions {
            assert!(
                previous_end < node.start_line
                    && node.start_line <= node.end_line
                    && node.end_line <= total_lines,
                "bad lines {}-{} in {text:?}",
                node.start_line,
                node.end_line
            );
            previous_end = node.end_line;
        }
    }
}

/// The conformance folder, when `IMG_CONFORMANCE_DIR` names it.
fn conformance_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("IMG_CONFORMANCE_DIR")?);
    Some(dir)
}

/// The reference JSON holds ENV/LABEL arguments as key, value, separator triples; the parser
/// gives key, value pairs.
fn drop_separators(node: &mut Value) {
    if let Some(sub) = node.get_mut("sub") {
        drop_separators(sub);
    }
    if matches!(node["cmd"].as_str(), Some("env" | "label")) {
        if let Some(args) = node.get_mut("args").and_then(Value::as_array_mut) {
            *args = args
                .chunks(3)
                .flat_map(|triple| triple.iter().take(2).cloned())
                .collect();
        }
    }
}

#[test]
fn buildkit_conformance() {
    let Some(dir) = conformance_dir() else {
        println!("buildkit_conformance: IMG_CONFORMANCE_DIR is not set, skipped");
        return;
    };
    let parser_dir = dir.join("buildkit/frontend/dockerfile/parser");
    let mut failures = Vec::new();
    let mut count = 0;

    for json in sorted_entries(&dir.join("buildkit-json")) {
        if json.extension().is_none_or(|e| e != "json") {
            continue;
        }
        count += 1;
        let case = json.file_stem().unwrap().to_string_lossy().into_owned();
        let mut want: Value = serde_json::from_slice(&read(&json)).expect("reference JSON");
        want.as_array_mut()
            .expect("reference is a list")
            .iter_mut()
            .for_each(drop_separators);
        let source = read(&parser_dir.join("testfiles").join(&case).join("Dockerfile"));
        match parse(&source, &case) {
            Ok(dockerfile) => {
                let got = to_json(&dockerfile)["instructions"].clone();
                if got != want {
                    failures.push(format!("{case}: got {got}\nwant {want}"));
                }
            }
            Err(err) => failures.push(format!("{case}: {err}")),
        }
    }
    for case in sorted_entries(&parser_dir.join("testfiles-negative")) {
        count += 1;
        if parse(read(&case.join("Dockerfile")), "Dockerfile").is_ok() {
            failures.push(format!("{} parsed but must fail", case.display()));
        }
    }

    count += 1;
    let line_case = parse(
        read(&parser_dir.join("testfile-line/Dockerfile")),
        "Dockerfile",
    )
    .expect("testfile-line parses");
    let ranges: Vec<(usize, usize)> = line_case
        .instructions
        .iter()
        .map(|node| (node.start_line, node.end_line))
        .collect();
    if ranges != [(5, 5), (11, 12), (17, 31)] || line_case.warnings.len() != 1 {
        failures.push(format!(
            "testfile-line: ranges {ranges:?}, {} warnings",
            line_case.warnings.len()
        ));
    }

    assert_eq!(count, 38, "expected 33 + 4 + 1 conformance cases");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
