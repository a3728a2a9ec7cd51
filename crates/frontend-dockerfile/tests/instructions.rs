//! Data-driven tests of typed instructions and build planning.
//!
//! `tests/instruction-cases/<case>/Dockerfile` is parsed and every instruction typed; the case
//! holds either `expected.json` (the typed instructions, compared as a subset: every key given
//! must match, arrays must match element by element) or `error.txt` (a substring of the error).
//!
//! `tests/plan-cases/<case>/Dockerfile` is planned with `options.json` (build args, target,
//! labels, platforms) and `images.json` (base image configs by reference); the case holds
//! `expected.json` (the plan, compared as a subset), or `error.txt`, and optionally
//! `warnings.txt` (one `Rule: message substring` per line that must be reported).
//!
//! `tests/check-cases/<case>/Dockerfile` is checked as `img build --check` checks it, with
//! `options.json`, `images.json` and the case's `dockerignore` file as the context's
//! `.dockerignore`; `findings.txt` lists every finding exactly (`FILE:LINE: Rule: message`, in
//! order), then optionally `error: <substring>` for the planning error that ended the check.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use img_frontend_dockerfile::{
    check, parse, parse_instruction, plan, BaseImageError, BuildOptions, IgnorePatterns,
    ImageConfig, Platform,
};
use serde_json::Value;

fn case_dirs(root: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(root);
    let mut dirs: Vec<PathBuf> = fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", root.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no cases in {}", root.display());
    dirs
}

fn read_optional(dir: &Path, name: &str) -> Option<String> {
    fs::read_to_string(dir.join(name)).ok()
}

/// Checks that `actual` contains `expected`: objects by key, arrays element by element (same
/// length), scalars equal. Returns the path of the first difference.
fn subset_mismatch(expected: &Value, actual: &Value, path: &str) -> Option<String> {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => e.iter().find_map(|(k, ev)| match a.get(k) {
            Some(av) => subset_mismatch(ev, av, &format!("{path}.{k}")),
            // Docker omits null and false fields (`omitempty`).
            None if ev.is_null() || *ev == Value::Bool(false) => None,
            None => Some(format!("{path}.{k}: missing")),
        }),
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                return Some(format!(
                    "{path}: expected {} items, got {}: {a:?}",
                    e.len(),
                    a.len()
                ));
            }
            e.iter()
                .zip(a)
                .enumerate()
                .find_map(|(i, (ev, av))| subset_mismatch(ev, av, &format!("{path}[{i}]")))
        }
        (e, a) if e == a => None,
        (e, a) => Some(format!("{path}: expected {e}, got {a}")),
    }
}

#[test]
fn instruction_cases() {
    let mut failures = Vec::new();
    for dir in case_dirs("instruction-cases") {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let source = fs::read_to_string(dir.join("Dockerfile")).expect("Dockerfile");
        let result = parse(&source, "Dockerfile")
            .map_err(|e| e.to_string())
            .and_then(|df| {
                df.instructions
                    .iter()
                    .map(|n| parse_instruction(n, "Dockerfile").map_err(|e| e.to_string()))
                    .collect::<Result<Vec<_>, _>>()
            });
        match (read_optional(&dir, "error.txt"), result) {
            (Some(want), Err(got)) => {
                if !got.contains(want.trim()) {
                    failures.push(format!("{name}: error {got:?} lacks {:?}", want.trim()));
                }
            }
            (Some(want), Ok(got)) => {
                failures.push(format!("{name}: expected error {want:?}, got {got:?}"))
            }
            (None, Err(got)) => failures.push(format!("{name}: unexpected error {got}")),
            (None, Ok(got)) => {
                let expected: Value = serde_json::from_str(
                    &read_optional(&dir, "expected.json").expect("expected.json or error.txt"),
                )
                .unwrap_or_else(|e| panic!("{name}/expected.json: {e}"));
                let actual = serde_json::to_value(&got).expect("serialize");
                if let Some(diff) = subset_mismatch(&expected, &actual, "") {
                    failures.push(format!("{name}: {diff}\n  actual: {actual}"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[derive(serde::Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct CaseOptions {
    build_args: BTreeMap<String, String>,
    target: Option<String>,
    labels: BTreeMap<String, String>,
    platform: Option<String>,
    build_platform: Option<String>,
}

fn options_for(dir: &Path) -> BuildOptions {
    let opts: CaseOptions = read_optional(dir, "options.json")
        .map(|s| serde_json::from_str(&s).expect("options.json"))
        .unwrap_or_default();
    let build = opts.build_platform.as_deref().unwrap_or("linux/amd64");
    let mut options = BuildOptions::new().build_platform(Platform::parse(build).expect("platform"));
    if let Some(p) = &opts.platform {
        options = options.target_platform(Platform::parse(p).expect("platform"));
    }
    if let Some(t) = opts.target {
        options = options.target(t);
    }
    for (k, v) in opts.build_args {
        options = options.build_arg(k, v);
    }
    for (k, v) in opts.labels {
        options = options.label(k, v);
    }
    options
}

#[test]
fn plan_cases() {
    let mut failures = Vec::new();
    for dir in case_dirs("plan-cases") {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let source = fs::read_to_string(dir.join("Dockerfile")).expect("Dockerfile");
        let images: BTreeMap<String, ImageConfig> = read_optional(&dir, "images.json")
            .map(|s| serde_json::from_str(&s).unwrap_or_else(|e| panic!("{name}/images.json: {e}")))
            .unwrap_or_default();
        let lookups = std::cell::RefCell::new(Vec::new());
        let resolver =
            |reference: &str, platform: &Platform| -> Result<Option<ImageConfig>, BaseImageError> {
                lookups.borrow_mut().push(format!("{reference} {platform}"));
                if reference == "broken" {
                    return Err("registry unavailable".into());
                }
                Ok(images.get(reference).cloned())
            };
        let options = options_for(&dir);
        let result = parse(&source, "Dockerfile")
            .map_err(|e| e.to_string())
            .and_then(|df| plan(&df, &options, &resolver).map_err(|e| error_chain(&e)));
        match (read_optional(&dir, "error.txt"), result) {
            (Some(want), Err(got)) => {
                if !got.contains(want.trim()) {
                    failures.push(format!("{name}: error {got:?} lacks {:?}", want.trim()));
                }
            }
            (Some(want), Ok(_)) => failures.push(format!("{name}: expected error {want:?}")),
            (None, Err(got)) => failures.push(format!("{name}: unexpected error {got}")),
            (None, Ok(got)) => {
                let mut actual = serde_json::to_value(&got).expect("serialize");
                actual["lookups"] = Value::from(lookups.borrow().clone());
                if let Some(text) = read_optional(&dir, "expected.json") {
                    let expected: Value = serde_json::from_str(&text)
                        .unwrap_or_else(|e| panic!("{name}/expected.json: {e}"));
                    if let Some(diff) = subset_mismatch(&expected, &actual, "") {
                        failures.push(format!("{name}: {diff}\n  actual: {actual}"));
                    }
                }
                for line in read_optional(&dir, "warnings.txt")
                    .unwrap_or_default()
                    .lines()
                {
                    let Some((rule, text)) = line.split_once(": ") else {
                        continue;
                    };
                    let found = got
                        .warnings
                        .iter()
                        .any(|w| w.rule == rule && w.message.contains(text.trim()));
                    if !found {
                        failures.push(format!("{name}: no warning {line:?} in {:?}", got.warnings));
                    }
                }
                if read_optional(&dir, "warnings.txt").is_some_and(|w| w.trim() == "none")
                    && !got.warnings.is_empty()
                {
                    failures.push(format!("{name}: unexpected warnings {:?}", got.warnings));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn images_of(dir: &Path) -> BTreeMap<String, ImageConfig> {
    read_optional(dir, "images.json")
        .map(|s| serde_json::from_str(&s).unwrap_or_else(|e| panic!("{dir:?}/images.json: {e}")))
        .unwrap_or_default()
}

#[test]
fn check_cases() {
    let mut failures = Vec::new();
    for dir in case_dirs("check-cases") {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let source = fs::read_to_string(dir.join("Dockerfile")).expect("Dockerfile");
        let images = images_of(&dir);
        let resolver =
            |reference: &str, _: &Platform| -> Result<Option<ImageConfig>, BaseImageError> {
                Ok(images.get(reference).cloned())
            };
        let mut options = options_for(&dir);
        if let Some(text) = read_optional(&dir, "dockerignore") {
            let patterns = IgnorePatterns::parse(&text, Path::new(".dockerignore"))
                .unwrap_or_else(|e| panic!("{name}/dockerignore: {e}"));
            options = options.dockerignore(patterns);
        }
        let want = read_optional(&dir, "findings.txt")
            .unwrap_or_else(|| panic!("{name}: findings.txt missing"));
        let mut got: Vec<String> = Vec::new();
        match parse(&source, "Dockerfile")
            .map_err(|e| e.to_string())
            .and_then(|df| check(&df, &options, &resolver).map_err(|e| error_chain(&e)))
        {
            Ok(report) => {
                got.extend(report.warnings.iter().map(|w| w.to_string()));
                if let Some(e) = &report.error {
                    got.push(format!("error: {}", error_chain(e)));
                }
                assert_eq!(report.failed(), !got.is_empty(), "{name}");
            }
            Err(e) => got.push(format!("error: {e}")),
        }
        let want: Vec<&str> = want.lines().filter(|l| !l.is_empty()).collect();
        let matches = got.len() == want.len()
            && got
                .iter()
                .zip(&want)
                .all(|(g, w)| match w.strip_prefix("error: ") {
                    Some(text) => g.starts_with("error: ") && g.contains(text),
                    None => g == w,
                });
        if !matches {
            failures.push(format!(
                "{name}:\n  want:\n    {}\n  got:\n    {}",
                want.join("\n    "),
                got.join("\n    ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The error and its sources, so that cases can match text of an inner error.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Every Dockerfile of the parser's corpus either plans or fails with an error that names the
/// file; none panics, whatever the instructions hold.
#[test]
fn parser_corpus_plans_or_fails_with_a_located_error() {
    let resolver =
        |_: &str, _: &Platform| -> Result<Option<ImageConfig>, BaseImageError> { Ok(None) };
    let options = BuildOptions::new().build_platform(Platform::parse("linux/amd64").unwrap());
    let mut planned = 0;
    let mut failures = Vec::new();
    for dir in case_dirs("parse-cases") {
        let Ok(source) = fs::read(dir.join("Dockerfile")) else {
            continue;
        };
        let Ok(dockerfile) = parse(&source, "Dockerfile") else {
            continue;
        };
        match plan(&dockerfile, &options, &resolver) {
            Ok(p) => {
                assert!(!p.stages.is_empty());
                planned += 1;
            }
            Err(e) => {
                let text = e.to_string();
                if !text.starts_with("Dockerfile") {
                    failures.push(format!("{}: {text}", dir.display()));
                }
            }
        }
    }
    assert!(planned > 0, "no corpus Dockerfile planned");
    assert!(
        failures.is_empty(),
        "errors without a location:\n{}",
        failures.join("\n")
    );
}
