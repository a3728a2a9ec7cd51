//! `cargo xtask man`: a man page for `img` and for each of its commands, rendered from the clap
//! definition the binary parses with (`img_cli::command`), and checked with man-db.
//!
//! The pages are generated, never checked in, so they cannot go stale; the check renders each
//! at 80 columns with groff's warnings on and fails on any warning.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap_mangen::roff::{roman, Roff};
use clap_mangen::Man;

/// Writes every page into `dir` (made if missing; earlier `img*.1` pages removed, so a
/// command that went away leaves no page behind) and returns their paths.
pub fn generate(dir: &Path) -> Result<Vec<PathBuf>> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for entry in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with("img") && name.ends_with(".1") {
            fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
        }
    }
    // `help` is clap's own command: the pages are the help.
    let mut command = img_cli::command().disable_help_subcommand(true);
    command.build();
    let mut pages = Vec::new();
    write_pages(&command, dir, &mut pages)?;
    pages.sort();
    Ok(pages)
}

fn write_pages(command: &clap::Command, dir: &Path, pages: &mut Vec<PathBuf>) -> Result<()> {
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir, pages)?;
    }
    let man = Man::new(command.clone())
        .source(format!("img {}", env!("CARGO_PKG_VERSION")))
        .manual("img manual");
    let path = dir.join(man.get_filename());
    let page =
        render(&man, command).with_context(|| format!("cannot render {}", path.display()))?;
    fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))?;
    pages.push(path);
    Ok(())
}

/// clap_mangen's sections, then EXAMPLES and SEE ALSO of our own: clap_mangen would print the
/// examples as one filled paragraph under EXTRA.
fn render(man: &Man, command: &clap::Command) -> std::io::Result<Vec<u8>> {
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    if command.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut page)?;
    }
    if command.get_subcommands().any(|s| !s.is_hide_set()) {
        man.render_subcommands_section(&mut page)?;
    }
    let mut roff = Roff::new();
    let examples = img_cli::examples::examples_of(command);
    if !examples.is_empty() {
        roff.control("SH", ["EXAMPLES"]);
        for (what, line) in examples {
            roff.control("PP", []);
            roff.text([roman(format!("{what}:"))]);
            roff.control("PP", []);
            roff.control("RS", ["4"]);
            roff.control("nf", []);
            roff.text([roman(line)]);
            roff.control("fi", []);
            roff.control("RE", []);
        }
    }
    roff.control("SH", ["SEE ALSO"]);
    roff.text([roman(see_also(command))]);
    roff.to_writer(&mut page)?;
    Ok(page)
}

/// The pages next to this one: the parent's and the children's, else the top page's.
fn see_also(command: &clap::Command) -> String {
    let name = command.get_display_name().unwrap_or(command.get_name());
    let mut related: Vec<String> = command
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| format!("{}(1)", s.get_display_name().unwrap_or(s.get_name())))
        .collect();
    if let Some((parent, _)) = name.rsplit_once('-') {
        related.insert(0, format!("{parent}(1)"));
    }
    if related.is_empty() {
        related.push("img(1)".into());
    }
    related.join(", ")
}

/// Renders each page with man-db at 80 columns, groff's warnings on: any warning, or a page
/// man cannot render, fails with the page's name and what was said.
pub fn check(pages: &[PathBuf]) -> Result<()> {
    let mut problems = Vec::new();
    for page in pages {
        let output = Command::new("man")
            .args(["--warnings", "-l"])
            .arg(page)
            .env("MANWIDTH", "80")
            .env("MANPAGER", "cat")
            .env("LC_ALL", "C.UTF-8")
            .output()
            .context("cannot run man (apt-get install man-db)")?;
        let warnings = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() || !warnings.trim().is_empty() || output.stdout.is_empty() {
            problems.push(format!(
                "{} ({}): {}",
                page.display(),
                output.status,
                warnings.trim()
            ));
        }
    }
    if !problems.is_empty() {
        bail!("man pages with warnings:\n{}", problems.join("\n"));
    }
    println!("man: {} pages render without warnings", pages.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_with_a_groff_warning_fails_the_check() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.1");
        fs::write(&good, ".TH GOOD 1\n.SH NAME\ngood \\- fine\n").unwrap();
        check(std::slice::from_ref(&good)).unwrap();
        let bad = dir.path().join("bad.1");
        fs::write(&bad, ".TH BAD 1\n.SH NAME\nbad \\- not fine\n.XYZ oops\n").unwrap();
        let err = check(&[good, bad]).unwrap_err().to_string();
        assert!(err.contains("bad.1"), "{err}");
        assert!(err.contains("macro 'XYZ' not defined"), "{err}");
        assert!(!err.contains("good.1"), "{err}");
    }

    #[test]
    fn every_command_gets_a_page_with_its_examples() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("img-gone.1"), "stale").unwrap();
        let pages = generate(dir.path()).unwrap();
        let names: Vec<&str> = pages
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap())
            .collect();
        for want in [
            "img.1",
            "img-build.1",
            "img-completion.1",
            "img-debug.1",
            "img-debug-llb.1",
            "img-push.1",
        ] {
            assert!(names.contains(&want), "{want} in {names:?}");
        }
        assert!(!names.contains(&"img-gone.1"), "a stale page stays");
        assert!(!names.iter().any(|n| n.contains("help")), "{names:?}");

        let build = fs::read_to_string(dir.path().join("img-build.1")).unwrap();
        for section in [".SH NAME", ".SH SYNOPSIS", ".SH OPTIONS", ".SH EXAMPLES"] {
            assert!(build.contains(section), "{section} in img-build.1");
        }
        assert!(build.contains("img build \\-t app ."), "{build}");
        assert!(build.contains(".SH \"SEE ALSO\"\nimg(1)"), "{build}");
        let debug = fs::read_to_string(dir.path().join("img-debug.1")).unwrap();
        assert!(debug.contains("img(1), img\\-debug\\-parse(1)"), "{debug}");
    }
}
