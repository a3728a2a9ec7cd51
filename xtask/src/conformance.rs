//! Runs the real `img` binary against BuildKit's parser test data, read in place from the
//! shared conformance folder (never copied into the repository).
//!
//! Three checks, one case each:
//! - every `buildkit-json/<case>.json`: `img debug parse` of the case's Dockerfile must print
//!   the same `instructions` (the JSON there holds ENV/LABEL arguments as key, value,
//!   separator triples; the separator is dropped before comparing);
//! - every `testfiles-negative/<case>/Dockerfile` must be rejected (non-zero exit);
//! - `testfile-line/Dockerfile` must give instructions at lines 5–5, 11–12 and 17–31 and one
//!   parser warning.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// The line ranges BuildKit's `TestParseIncludesLineNumbers` expects.
const TESTFILE_LINE_RANGES: [(u64, u64); 3] = [(5, 5), (11, 12), (17, 31)];

/// Runs every case; prints one line per failure and a summary line, and fails if any failed.
pub fn run(conformance_dir: &Path, img: &Path) -> Result<()> {
    let parser_dir = conformance_dir.join("buildkit/frontend/dockerfile/parser");
    let mut outcomes: Vec<(String, Result<()>)> = Vec::new();

    for json in files_in(&conformance_dir.join("buildkit-json"))? {
        if json.extension().is_none_or(|ext| ext != "json") {
            continue;
        }
        let case = json
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let dockerfile = parser_dir.join("testfiles").join(&case).join("Dockerfile");
        outcomes.push((
            format!("testfiles/{case}"),
            check_json_case(img, &dockerfile, &json),
        ));
    }
    for case_dir in files_in(&parser_dir.join("testfiles-negative"))? {
        let case = case_dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        outcomes.push((
            format!("testfiles-negative/{case}"),
            check_negative_case(img, &case_dir.join("Dockerfile")),
        ));
    }
    outcomes.push((
        "testfile-line".to_owned(),
        check_line_case(img, &parser_dir.join("testfile-line/Dockerfile")),
    ));

    let mut failed = 0;
    for (case, outcome) in &outcomes {
        if let Err(err) = outcome {
            failed += 1;
            println!("conformance: FAIL {case}: {err:#}");
        }
    }
    println!(
        "conformance: {} passed, {failed} failed",
        outcomes.len() - failed
    );
    if outcomes.is_empty() {
        bail!(
            "no conformance cases found in {}",
            conformance_dir.display()
        );
    }
    if failed > 0 {
        bail!("{failed} conformance case(s) failed");
    }
    Ok(())
}

/// The entries of a directory, sorted by name.
fn files_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut paths = std::fs::read_dir(dir)
        .with_context(|| format!("could not list {}", dir.display()))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<std::io::Result<Vec<_>>>()
        .with_context(|| format!("could not list {}", dir.display()))?;
    paths.sort();
    Ok(paths)
}

/// Runs `img debug parse <dockerfile>`: the printed JSON on success, else the exit status
/// and standard error.
fn debug_parse(img: &Path, dockerfile: &Path) -> Result<std::result::Result<Value, String>> {
    let output = Command::new(img)
        .args(["debug", "parse"])
        .arg(dockerfile)
        .output()
        .with_context(|| format!("could not run {}", img.display()))?;
    if !output.status.success() {
        return Ok(Err(format!(
            "{}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let json =
        serde_json::from_slice(&output.stdout).context("img debug parse printed invalid JSON")?;
    Ok(Ok(json))
}

fn parse_ok(img: &Path, dockerfile: &Path) -> Result<Value> {
    match debug_parse(img, dockerfile)? {
        Ok(json) => Ok(json),
        Err(failure) => bail!("img debug parse failed: {failure}"),
    }
}

fn check_json_case(img: &Path, dockerfile: &Path, expected: &Path) -> Result<()> {
    let text = std::fs::read(expected)
        .with_context(|| format!("could not read {}", expected.display()))?;
    let mut expected: Value = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not JSON", expected.display()))?;
    drop_key_value_separators(&mut expected);
    let got = parse_ok(img, dockerfile)?;
    let got = &got["instructions"];
    if *got == expected {
        return Ok(());
    }
    let (got_list, expected_list) = (as_list(got), as_list(&expected));
    for (i, want) in expected_list.iter().enumerate() {
        match got_list.get(i) {
            Some(have) if have == want => {}
            Some(have) => bail!("instruction {}: expected {want}, got {have}", i + 1),
            None => bail!("instruction {}: expected {want}, got nothing", i + 1),
        }
    }
    bail!(
        "expected {} instructions, got {}",
        expected_list.len(),
        got_list.len()
    )
}

fn as_list(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}

/// Turns the reference's ENV/LABEL `key, value, separator` triples into `key, value` pairs,
/// the shape `img debug parse` prints (also inside ONBUILD).
fn drop_key_value_separators(instructions: &mut Value) {
    let Some(list) = instructions.as_array_mut() else {
        return;
    };
    for node in list {
        drop_separators_in_node(node);
    }
}

fn drop_separators_in_node(node: &mut Value) {
    if let Some(sub) = node.get_mut("sub") {
        drop_separators_in_node(sub);
    }
    let is_key_value = matches!(
        node.get("cmd").and_then(Value::as_str),
        Some("env" | "label")
    );
    if !is_key_value {
        return;
    }
    if let Some(args) = node.get_mut("args").and_then(Value::as_array_mut) {
        let pairs = args
            .chunks(3)
            .flat_map(|triple| triple.iter().take(2).cloned())
            .collect();
        *args = pairs;
    }
}

fn check_negative_case(img: &Path, dockerfile: &Path) -> Result<()> {
    match debug_parse(img, dockerfile)? {
        Ok(_) => bail!("parsed, but BuildKit rejects this Dockerfile"),
        Err(_) => Ok(()),
    }
}

fn check_line_case(img: &Path, dockerfile: &Path) -> Result<()> {
    let json = parse_ok(img, dockerfile)?;
    let ranges: Vec<(u64, u64)> = as_list(&json["instructions"])
        .iter()
        .map(|node| {
            (
                node["start_line"].as_u64().unwrap_or(0),
                node["end_line"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    if ranges != TESTFILE_LINE_RANGES {
        bail!("expected line ranges {TESTFILE_LINE_RANGES:?}, got {ranges:?}");
    }
    let warnings = as_list(&json["warnings"]).len();
    if warnings != 1 {
        bail!("expected 1 parser warning, got {warnings}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_are_dropped_also_under_onbuild() {
        let mut value = serde_json::json!([
            {"cmd": "env", "args": ["a", "b", "=", "c", "d", ""]},
            {"cmd": "run", "args": ["x", "y", "z"]},
            {"cmd": "onbuild", "args": [], "sub": {"cmd": "label", "args": ["k", "v", "="]}}
        ]);
        drop_key_value_separators(&mut value);
        assert_eq!(
            value,
            serde_json::json!([
                {"cmd": "env", "args": ["a", "b", "c", "d"]},
                {"cmd": "run", "args": ["x", "y", "z"]},
                {"cmd": "onbuild", "args": [], "sub": {"cmd": "label", "args": ["k", "v"]}}
            ])
        );
    }
}
