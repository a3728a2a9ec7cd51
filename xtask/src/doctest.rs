//! `cargo xtask doctest`: runs the shell examples of README.md and docs/ that are marked as
//! runnable, so the user guide stays true for today's binary.
//!
//! A block is runnable when the line `<!-- test -->` stands right before its ```sh (or
//! ```bash / ```shell) fence; the comment does not show when the page is rendered. The blocks
//! of one page run in order, each in a fresh `bash` with errexit, nounset and pipefail, all in
//! the page's own work directory, as a reader following the page would type them. What a page
//! starts with is described in docs/doc-tests.md. A failing block fails the run with the file
//! and line of the command that failed; the page's later blocks are skipped (they build on it).

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{bail, Context, Result};
use pulldown_cmark::{CodeBlockKind, Event, Parser, Tag, TagEnd};

use crate::registry::Registry;

/// The comment that marks the next shell block as runnable.
pub const MARKER: &str = "<!-- test -->";

/// Languages a runnable block may be written in: all run with bash.
const SHELLS: &[&str] = &["sh", "bash", "shell"];

/// How long one block may run before it is killed (a hang guard, not a timing assertion).
const BLOCK_TIMEOUT_SECS: u32 = 600;

/// A runnable block: its first line in the file (1-based) and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The line of the block's first command.
    pub line: usize,
    /// The commands.
    pub script: String,
}

/// The runnable blocks of a Markdown text, in order. A marker that is not followed by a shell
/// block, or a comment that looks like a misspelt marker, is an error naming its line: a
/// typo must not turn a tested example into an untested one.
pub fn find_blocks(text: &str) -> std::result::Result<Vec<Block>, String> {
    let line_of = |offset: usize| text[..offset].matches('\n').count() + 1;
    let mut blocks = Vec::new();
    // The line of a marker waiting for its block.
    let mut marker: Option<usize> = None;
    // The block being read.
    let mut current: Option<Block> = None;
    for (event, range) in Parser::new(text).into_offset_iter() {
        match event {
            Event::Html(html) | Event::InlineHtml(html) => {
                for comment in comments(&html) {
                    match comment {
                        Comment::Marker => {
                            if let Some(line) = marker {
                                return Err(format!(
                                    "line {line}: {MARKER} is followed by another marker, not by a shell block"
                                ));
                            }
                            marker = Some(line_of(range.start));
                        }
                        Comment::Misspelt(text) => {
                            return Err(format!(
                                "line {}: {text:?} is not a doc-test marker; write {MARKER}",
                                line_of(range.start)
                            ))
                        }
                        Comment::Other => {}
                    }
                }
            }
            Event::Start(Tag::HtmlBlock) | Event::End(TagEnd::HtmlBlock) => {}
            Event::Start(Tag::CodeBlock(kind)) => {
                let Some(marker_line) = marker.take() else {
                    continue;
                };
                let language = match &kind {
                    CodeBlockKind::Fenced(info) => info.split_whitespace().next().unwrap_or(""),
                    CodeBlockKind::Indented => "",
                };
                if !SHELLS.contains(&language) {
                    return Err(format!(
                        "line {marker_line}: {MARKER} stands before a block that is not ```sh (found {language:?})"
                    ));
                }
                current = Some(Block {
                    line: line_of(range.start) + 1,
                    script: String::new(),
                });
            }
            Event::Text(text) if current.is_some() => {
                current.as_mut().expect("checked").script.push_str(&text);
            }
            Event::End(TagEnd::CodeBlock) => {
                if let Some(block) = current.take() {
                    blocks.push(block);
                }
            }
            _ => {
                if let Some(line) = marker {
                    return Err(format!(
                        "line {line}: {MARKER} must stand right before a ```sh block"
                    ));
                }
            }
        }
    }
    if let Some(line) = marker {
        return Err(format!(
            "line {line}: {MARKER} ends the file without a block"
        ));
    }
    Ok(blocks)
}

/// What an HTML comment is to the doc tests.
enum Comment {
    Marker,
    Misspelt(String),
    Other,
}

/// The comments of an HTML fragment.
fn comments(html: &str) -> Vec<Comment> {
    let mut found = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<!--") {
        let after = &rest[start + 4..];
        let Some(end) = after.find("-->") else {
            break;
        };
        let inner = after[..end].trim();
        found.push(if inner == "test" {
            Comment::Marker
        } else if inner.to_ascii_lowercase().starts_with("test") {
            Comment::Misspelt(rest[start..start + 4 + end + 3].to_owned())
        } else {
            Comment::Other
        });
        rest = &after[end + 3..];
    }
    found
}

/// README.md and every Markdown file under docs/, sorted.
pub fn markdown_files(root: &Path) -> Result<Vec<PathBuf>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        for entry in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                walk(&path, out)?;
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut files = vec![root.join("README.md")];
    let docs = root.join("docs");
    if docs.is_dir() {
        walk(&docs, &mut files)?;
    }
    files.sort();
    Ok(files)
}

/// What every page's blocks start with.
pub struct Fixture {
    /// Directories put first on `PATH` (the one holding the built `img`).
    pub path_prefix: Vec<PathBuf>,
    /// Files copied into each page's work directory: (source, name).
    pub files: Vec<(PathBuf, String)>,
    /// Further environment variables (`REGISTRY`, ...).
    pub vars: Vec<(String, String)>,
}

/// The counts of a run and the failures' reports.
#[derive(Debug, Default)]
pub struct Outcome {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub failures: Vec<String>,
}

/// Runs the blocks of one page (`name` is how the page is named in reports) in a fresh work
/// directory, home and state directory; stops at the first failure.
pub fn run_page(
    name: &str,
    blocks: &[Block],
    fixture: &Fixture,
    outcome: &mut Outcome,
) -> Result<()> {
    let dir = tempfile::Builder::new().prefix("img-doctest-").tempdir()?;
    let (work, home, state) = (
        dir.path().join("work"),
        dir.path().join("home"),
        dir.path().join("state"),
    );
    for d in [&work, &home, &state] {
        fs::create_dir(d)?;
    }
    for (source, file_name) in &fixture.files {
        fs::copy(source, work.join(file_name))
            .with_context(|| format!("cannot copy {} into the work directory", source.display()))?;
    }
    let mut path: Vec<PathBuf> = fixture.path_prefix.clone();
    path.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let path = std::env::join_paths(path)?;
    for (i, block) in blocks.iter().enumerate() {
        let script = dir.path().join(format!("block-{}.sh", block.line));
        fs::write(&script, &block.script)?;
        let output = Command::new("timeout")
            .args(["--kill-after=10", &BLOCK_TIMEOUT_SECS.to_string()])
            .args(["bash", "--noprofile", "--norc"])
            .args([
                "-o", "errexit", "-o", "nounset", "-o", "pipefail", "-o", "errtrace",
            ])
            .args([
                "-c",
                r#"trap 'echo "doctest-failed-at-line $LINENO" >&2' ERR; source "$1""#,
                "bash",
            ])
            .arg(&script)
            .current_dir(&work)
            .env_clear()
            .env("PATH", &path)
            .env("HOME", &home)
            .env("USER", "root")
            .env("LANG", "C.UTF-8")
            .env("IMG_STATE", &state)
            .envs(fixture.vars.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .output()
            .context("cannot run bash under timeout")?;
        if output.status.success() {
            outcome.passed += 1;
            continue;
        }
        outcome.failed += 1;
        outcome.skipped += blocks.len() - i - 1;
        let line = failed_line(&output, &script).map_or(block.line, |n| block.line + n - 1);
        outcome.failures.push(report(name, line, block, &output));
        break;
    }
    Ok(())
}

/// The failing line within the block: from the ERR trap, or from bash's own message (an unset
/// variable stops the shell without the trap).
fn failed_line(output: &Output, script: &Path) -> Option<usize> {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let from_trap = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("doctest-failed-at-line "))
        .filter_map(|n| n.trim().parse().ok())
        .next_back();
    let prefix = format!("{}: line ", script.display());
    from_trap.or_else(|| {
        stderr
            .lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .filter_map(|rest| rest.split(':').next()?.parse().ok())
            .next()
    })
}

fn report(name: &str, line: usize, block: &Block, output: &Output) -> String {
    let mut text = format!("{name}:{line}: the block failed ({})\n", output.status);
    let tail = |bytes: &[u8]| -> String {
        let s = String::from_utf8_lossy(bytes);
        // The ERR trap's line is for finding the line, not for the reader.
        let lines: Vec<&str> = s
            .lines()
            .filter(|l| !l.starts_with("doctest-failed-at-line "))
            .collect();
        lines[lines.len().saturating_sub(40)..].join("\n    ")
    };
    let _ = writeln!(text, "  the block (from line {}):", block.line);
    for l in block.script.lines() {
        let _ = writeln!(text, "    {l}");
    }
    let _ = writeln!(text, "  standard output:\n    {}", tail(&output.stdout));
    let _ = write!(text, "  standard error:\n    {}", tail(&output.stderr));
    text
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// The whole run: a registry for the pages to log in and push to, then every page of
/// README.md and docs/ with runnable blocks (or only the pages named in `only`).
pub fn run(root: &Path, img: &Path, only: &[String]) -> Result<()> {
    let mut files = markdown_files(root)?;
    if !only.is_empty() {
        let wanted: Vec<PathBuf> = only
            .iter()
            .map(|f| {
                Path::new(f)
                    .canonicalize()
                    .with_context(|| format!("no page {f}"))
            })
            .collect::<Result<_>>()?;
        files.retain(|f| f.canonicalize().is_ok_and(|f| wanted.contains(&f)));
    }
    let mut pages = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        let text =
            fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
        let name = file
            .strip_prefix(root)
            .unwrap_or(&file)
            .display()
            .to_string();
        match find_blocks(&text) {
            Ok(blocks) if blocks.is_empty() => {}
            Ok(blocks) => pages.push((name, blocks)),
            Err(e) => errors.push(format!("{name}: {e}")),
        }
    }
    if !errors.is_empty() {
        bail!("doc-test markers out of place:\n{}", errors.join("\n"));
    }
    let scratch = tempfile::Builder::new()
        .prefix("img-doctest-registry-")
        .tempdir()?;
    let (user, password) = ("doctest", "doctest-password");
    let registry = Registry::start(scratch.path(), user, password)?;
    let busybox = PathBuf::from("/bin/busybox");
    if !busybox.is_file() {
        bail!("/bin/busybox is missing (apt-get install busybox-static)");
    }
    let fixture = Fixture {
        path_prefix: vec![img.parent().context("img has no directory")?.to_path_buf()],
        files: vec![
            (root.join("examples/hello/Dockerfile"), "Dockerfile".into()),
            (busybox, "busybox".into()),
        ],
        vars: vec![
            ("REGISTRY".into(), registry.host.clone()),
            ("REGISTRY_USER".into(), user.into()),
            ("REGISTRY_PASSWORD".into(), password.into()),
        ],
    };
    let mut outcome = Outcome::default();
    for (name, blocks) in &pages {
        let before = outcome.failed;
        run_page(name, blocks, &fixture, &mut outcome)?;
        if outcome.failed == before {
            println!("doctest: {name}: {} ok", plural(blocks.len(), "block"));
        } else {
            println!("doctest: {name}: FAILED");
        }
    }
    drop(registry);
    for failure in &outcome.failures {
        eprintln!("{failure}\n");
    }
    println!(
        "doctest: {} passed, {} failed, {} skipped",
        outcome.passed, outcome.failed, outcome.skipped
    );
    if outcome.failed > 0 {
        let lines: Vec<&str> = outcome
            .failures
            .iter()
            .filter_map(|f| f.split(": the block failed").next())
            .collect();
        bail!("documentation examples failed at {}", lines.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marked_shell_blocks_are_found_with_their_first_line() {
        let text = "# Page\n\n```sh\nnot marked\n```\n\n<!-- test -->\n```sh\necho one\necho two\n```\n\nText.\n\n1. In a list:\n\n   <!-- test -->\n   ```bash {title}\n   echo three\n   ```\n";
        let blocks = find_blocks(text).unwrap();
        assert_eq!(
            blocks,
            [
                Block {
                    line: 9,
                    script: "echo one\necho two\n".into()
                },
                Block {
                    line: 19,
                    script: "echo three\n".into()
                },
            ]
        );
    }

    #[test]
    fn a_marker_out_of_place_is_an_error_naming_its_line() {
        // text | error
        let cases = [
            (
                "a\n\n<!-- test -->\n```toml\nx = 1\n```\n",
                "line 3: <!-- test --> stands before a block that is not ```sh",
            ),
            (
                "<!-- test -->\n\nSome text.\n\n```sh\ntrue\n```\n",
                "line 1: <!-- test --> must stand right before",
            ),
            (
                "text\n\n<!-- test -->\n",
                "line 3: <!-- test --> ends the file",
            ),
            (
                "<!-- tests -->\n```sh\ntrue\n```\n",
                "is not a doc-test marker",
            ),
            (
                "<!-- test: exit=1 -->\n```sh\ntrue\n```\n",
                "is not a doc-test marker",
            ),
        ];
        for (text, want) in cases {
            let err = find_blocks(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
        // Other comments are left alone.
        assert!(find_blocks("<!-- TODO: more -->\n```sh\nfalse\n```\n")
            .unwrap()
            .is_empty());
    }

    fn bare_fixture() -> Fixture {
        Fixture {
            path_prefix: Vec::new(),
            files: Vec::new(),
            vars: vec![("GREETING".into(), "hello".into())],
        }
    }

    #[test]
    fn blocks_share_the_work_directory_and_see_the_fixture_variables() {
        let blocks = find_blocks(
            "<!-- test -->\n```sh\necho \"$GREETING\" > note\n```\n\n<!-- test -->\n```sh\ngrep -q hello note\ntest \"$IMG_STATE\" != \"\"\n```\n",
        )
        .unwrap();
        let mut outcome = Outcome::default();
        run_page("page.md", &blocks, &bare_fixture(), &mut outcome).unwrap();
        assert_eq!(
            (outcome.passed, outcome.failed),
            (2, 0),
            "{:?}",
            outcome.failures
        );
    }

    #[test]
    fn a_failing_command_is_reported_at_its_file_line_and_the_rest_is_skipped() {
        let text = "# Title\n\n<!-- test -->\n```sh\necho fine\nfalse | cat\necho never\n```\n\n<!-- test -->\n```sh\ntrue\n```\n";
        let blocks = find_blocks(text).unwrap();
        let mut outcome = Outcome::default();
        run_page("docs/page.md", &blocks, &bare_fixture(), &mut outcome).unwrap();
        assert_eq!((outcome.passed, outcome.failed, outcome.skipped), (0, 1, 1));
        let report = &outcome.failures[0];
        // `false | cat` is line 6 of the file: pipefail makes the pipeline fail there.
        assert!(
            report.starts_with("docs/page.md:6: the block failed"),
            "{report}"
        );
        assert!(report.contains("    false | cat"), "{report}");
        // The commands after the failing one did not run.
        assert!(
            report.contains("standard output:\n    fine\n  standard error"),
            "{report}"
        );
    }

    #[test]
    fn an_unset_variable_fails_the_block_at_its_line() {
        let blocks =
            find_blocks("<!-- test -->\n```sh\ntrue\necho \"$NOT_SET_ANYWHERE\"\n```\n").unwrap();
        let mut outcome = Outcome::default();
        run_page("p.md", &blocks, &bare_fixture(), &mut outcome).unwrap();
        assert_eq!(outcome.failed, 1);
        assert!(
            outcome.failures[0].starts_with("p.md:4: "),
            "{}",
            outcome.failures[0]
        );
    }
}
