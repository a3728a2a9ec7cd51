//! Word expansion against BuildKit's own vectors (`envVarTest`, `wordsTest`, read from
//! `$IMG_CONFORMANCE_DIR/shell_vectors.json`) and against the one-line table `shell-cases.txt`.

use std::path::PathBuf;

use img_frontend_dockerfile::{Lexer, ShellError};
use serde_json::Value;

fn conformance_vectors() -> Option<Value> {
    let Some(dir) = std::env::var_os("IMG_CONFORMANCE_DIR") else {
        println!("IMG_CONFORMANCE_DIR is unset: skipping BuildKit's shell vectors");
        return None;
    };
    let path = PathBuf::from(dir).join("shell_vectors.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("reading {}: {err}", path.display()));
    Some(serde_json::from_str(&text).expect("shell_vectors.json is JSON"))
}

fn str_field<'v>(case: &'v Value, field: &str) -> &'v str {
    case[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} missing in {case}"))
}

#[test]
fn buildkit_env_var_test_vectors() {
    let Some(vectors) = conformance_vectors() else {
        return;
    };
    let suite = &vectors["env_var_test"];
    let env: Vec<(String, String)> = suite["env"]
        .as_object()
        .expect("env object")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("env value").to_owned()))
        .collect();
    let lexer = Lexer::new('\\');
    let mut checked = 0;
    let mut failures = Vec::new();
    for case in suite["cases"].as_array().expect("cases") {
        // W rows describe Windows, where variable names are case-insensitive.
        if str_field(case, "platform") == "W" {
            continue;
        }
        let input = str_field(case, "input");
        let line = &case["line"];
        let got = lexer.expand_word(input, &env);
        checked += 1;
        if case["error"].as_bool() == Some(true) {
            if got.is_ok() {
                failures.push(format!("line {line}: {input:?} should fail, got {got:?}"));
            }
        } else {
            let expected = str_field(case, "expected");
            match got {
                Ok(value) if value == expected => {}
                other => failures.push(format!(
                    "line {line}: {input:?} expected {expected:?}, got {other:?}"
                )),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked > 200, "only {checked} vectors ran");
}

#[test]
fn buildkit_words_test_vectors() {
    let Some(vectors) = conformance_vectors() else {
        return;
    };
    let lexer = Lexer::new('\\');
    let mut failures = Vec::new();
    let cases = vectors["words_test"]["cases"].as_array().expect("cases");
    for case in cases {
        let env: Vec<(String, String)> = case["env"]
            .as_array()
            .expect("env list")
            .iter()
            .map(|entry| {
                let entry = entry.as_str().expect("env entry");
                let (k, v) = entry.split_once('=').unwrap_or((entry, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect();
        let input = str_field(case, "input");
        let line = &case["line"];
        let got = lexer.expand_words(input, &env);
        if case["error"].as_bool() == Some(true) {
            if got.is_ok() {
                failures.push(format!("line {line}: {input:?} should fail, got {got:?}"));
            }
            continue;
        }
        let expected: Vec<&str> = case["expected"]
            .as_array()
            .expect("expected words")
            .iter()
            .map(|w| w.as_str().expect("word"))
            .collect();
        match got {
            Ok(words) if words == expected => {}
            other => failures.push(format!(
                "line {line}: {input:?} expected {expected:?}, got {other:?}"
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(cases.len() >= 24);
}

/// One case of `shell-cases.txt`.
struct TableCase {
    line: usize,
    input: String,
    expected: String,
}

/// Runs `tests/shell-cases.txt`. Format, one case a line: `INPUT | EXPECTED`, both trimmed, split
/// at the first ` | `. `EXPECTED` is the expanded word; `<empty>` is the empty string; `!Kind`
/// expects the error variant `ShellError::Kind`. In `@mode words` sections `EXPECTED` is a JSON
/// array of words. Directives: `@env NAME=VALUE` (accumulates; VALUE verbatim), `@unenv NAME`,
/// `@escape C`, `@mode word|words`. Lines starting with `#` and blank lines are skipped.
#[test]
fn one_line_table() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/shell-cases.txt");
    let text = std::fs::read_to_string(&path).expect("tests/shell-cases.txt");
    let mut env: Vec<(String, String)> = Vec::new();
    let mut lexer = Lexer::new('\\');
    let mut words_mode = false;
    let mut failures = Vec::new();
    let mut ran = 0;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        if raw.starts_with('#') || raw.trim().is_empty() {
            continue;
        }
        if let Some(assignment) = raw.strip_prefix("@env ") {
            let (name, value) = assignment.split_once('=').expect("@env NAME=VALUE");
            env.push((name.to_owned(), value.to_owned()));
            continue;
        }
        if let Some(name) = raw.strip_prefix("@unenv ") {
            env.retain(|(key, _)| key != name.trim());
            continue;
        }
        if let Some(escape) = raw.strip_prefix("@escape ") {
            let mut chars = escape.trim().chars();
            lexer = Lexer::new(chars.next().expect("@escape C"));
            continue;
        }
        if let Some(mode) = raw.strip_prefix("@mode ") {
            words_mode = match mode.trim() {
                "word" => false,
                "words" => true,
                other => panic!("line {line}: unknown mode {other}"),
            };
            continue;
        }
        let (input, expected) = raw
            .split_once(" | ")
            .unwrap_or_else(|| panic!("line {line}: expected `INPUT | EXPECTED`"));
        let case = TableCase {
            line,
            input: input.trim().to_owned(),
            expected: expected.trim().to_owned(),
        };
        ran += 1;
        let outcome = if words_mode {
            lexer
                .expand_words(&case.input, &env)
                .map(|words| serde_json::to_string(&words).expect("json"))
        } else {
            lexer.expand_word(&case.input, &env)
        };
        if let Some(failure) = check(&case, outcome, words_mode) {
            failures.push(failure);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(ran > 50, "only {ran} table cases ran");
}

fn check(case: &TableCase, outcome: Result<String, ShellError>, words: bool) -> Option<String> {
    let TableCase {
        line,
        input,
        expected,
    } = case;
    match (expected.strip_prefix('!'), outcome) {
        (Some(kind), Err(err)) => {
            let debug = format!("{err:?}");
            let got_kind = debug.split([' ', '{']).next().unwrap_or_default();
            (got_kind != kind)
                .then(|| format!("line {line}: {input:?} expected error {kind}, got {debug}"))
        }
        (Some(kind), Ok(value)) => Some(format!(
            "line {line}: {input:?} expected error {kind}, got {value:?}"
        )),
        (None, Err(err)) => Some(format!(
            "line {line}: {input:?} expected {expected:?}, got error {err}"
        )),
        (None, Ok(value)) => {
            let want = if words {
                let list: Vec<String> = serde_json::from_str(expected)
                    .unwrap_or_else(|err| panic!("line {line}: expected words as JSON: {err}"));
                serde_json::to_string(&list).expect("json")
            } else if expected == "<empty>" {
                String::new()
            } else {
                expected.clone()
            };
            (value != want)
                .then(|| format!("line {line}: {input:?} expected {want:?}, got {value:?}"))
        }
    }
}
