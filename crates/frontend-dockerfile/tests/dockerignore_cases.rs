//! `.dockerignore` matching against the table `dockerignore-cases.txt`: Docker's documented
//! examples, moby/patternmatcher's tests and Go's `filepath.Match` tests.

use std::path::{Path, PathBuf};

use img_frontend_dockerfile::{DockerignoreError, IgnorePatterns};

/// One `=== name` block of the table.
struct Case {
    name: String,
    /// Line of the `===` in the table file.
    line: usize,
    ignore_file: String,
    expectations: Vec<(usize, String)>,
}

/// Splits the table into cases. The ignore file of a case is kept byte for byte (CR included);
/// its expectations run to the first blank line, and text between cases is commentary.
fn read_cases() -> Vec<Case> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/dockerignore-cases.txt");
    let text = std::fs::read_to_string(&path).expect("tests/dockerignore-cases.txt");
    let mut cases: Vec<Case> = Vec::new();
    enum State {
        Between,
        IgnoreFile,
        Expectations,
    }
    let mut state = State::Between;
    for (index, line) in text.split('\n').enumerate() {
        if let Some(name) = line.strip_prefix("=== ") {
            cases.push(Case {
                name: name.to_owned(),
                line: index + 1,
                ignore_file: String::new(),
                expectations: Vec::new(),
            });
            state = State::IgnoreFile;
            continue;
        }
        let Some(case) = cases.last_mut() else {
            continue;
        };
        match state {
            State::Between => {}
            State::IgnoreFile if line == "---" => state = State::Expectations,
            State::IgnoreFile => {
                case.ignore_file.push_str(line);
                case.ignore_file.push('\n');
            }
            State::Expectations if line.is_empty() => state = State::Between,
            State::Expectations => case.expectations.push((index + 1, line.to_owned())),
        }
    }
    cases
}

fn check_case(case: &Case, failures: &mut Vec<String>) {
    let file = Path::new("ctx/.dockerignore");
    let parsed = IgnorePatterns::parse(&case.ignore_file, file);
    for (line, expectation) in &case.expectations {
        let place = format!(
            "table line {line} ({}, case at line {})",
            case.name, case.line
        );
        if let Some(want_line) = expectation.strip_prefix("error ") {
            let want_line: usize = want_line.trim().parse().expect("error LINE");
            match &parsed {
                Err(
                    DockerignoreError::InvalidPattern { line, .. }
                    | DockerignoreError::LoneExclamation { line, .. },
                ) if *line == want_line => {}
                other => failures.push(format!(
                    "{place}: expected an error at line {want_line}, got {other:?}"
                )),
            }
            continue;
        }
        let patterns = match &parsed {
            Ok(patterns) => patterns,
            Err(err) => {
                failures.push(format!("{place}: unexpected error {err}"));
                return;
            }
        };
        if let Some(list) = expectation.strip_prefix("patterns ") {
            let want: Vec<&str> = list.split(" ; ").collect();
            if patterns.patterns() != want.as_slice() {
                failures.push(format!(
                    "{place}: patterns {:?}, want {want:?}",
                    patterns.patterns()
                ));
            }
            continue;
        }
        let (path, verdict) = expectation
            .rsplit_once(" | ")
            .unwrap_or_else(|| panic!("{place}: expected `PATH | excluded|included`"));
        let want = match verdict {
            "excluded" => true,
            "included" => false,
            other => panic!("{place}: unknown verdict {other}"),
        };
        if patterns.is_excluded(path) != want {
            failures.push(format!("{place}: {path:?} should be {verdict}"));
        }
    }
}

#[test]
fn dockerignore_table() {
    let cases = read_cases();
    assert!(cases.len() > 100, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        assert!(
            !case.expectations.is_empty(),
            "case {} checks nothing",
            case.name
        );
        check_case(case, &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
