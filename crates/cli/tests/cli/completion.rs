//! `img completion`: the scripts load in their shells and complete img's commands and flags.
//! Needs bash, zsh and fish (xtask/test-packages.txt).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Img;

/// `img completion <shell>` written to a file in the test's working directory.
fn script(img: &Img, shell: &str) -> PathBuf {
    let text = img.ok(&["completion", shell]);
    assert!(!text.is_empty(), "an empty {shell} script");
    let path = img.dir().join(format!("img.{shell}"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `shell args...`, which must succeed; returns standard output.
fn shell(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs (apt-get install {program}): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// What bash's completion function offers for the words typed so far (the last one is being
/// completed), driven the way bash drives it on <TAB>.
fn bash_completes(script: &Path, words: &[&str]) -> Vec<String> {
    let cword = words.len() - 1;
    let line = words.join(" ");
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let previous = if cword > 0 { words[cword - 1] } else { "" };
    let program = format!(
        "source '{}'\nCOMP_WORDS=({})\nCOMP_CWORD={cword}\nCOMP_LINE='{line}'\nCOMP_POINT=${{#COMP_LINE}}\n_img img '{}' '{previous}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script.display(),
        quoted.join(" "),
        words[cword],
    );
    let out = shell("bash", &["--norc", "--noprofile", "-c", &program]);
    out.lines().map(str::to_owned).collect()
}

#[test]
fn the_bash_script_loads_and_completes_commands_flags_and_values() {
    let img = Img::new();
    let script = script(&img, "bash");
    shell("bash", &["-n", script.to_str().unwrap()]);
    // `complete -F _img img` must be what loading the script leaves behind.
    let registered = shell(
        "bash",
        &[
            "--norc",
            "-c",
            &format!("source '{}' && complete -p img", script.display()),
        ],
    );
    assert!(registered.contains("-F _img"), "{registered}");

    assert_eq!(bash_completes(&script, &["img", "bu"]), ["build"]);
    assert_eq!(bash_completes(&script, &["img", "debug", "ll"]), ["llb"]);
    let mut flags = bash_completes(&script, &["img", "build", "--ta"]);
    flags.sort();
    assert_eq!(flags, ["--tag", "--target"]);
    let shells = bash_completes(&script, &["img", "completion", ""]);
    for shell in ["bash", "zsh", "fish"] {
        assert!(shells.iter().any(|s| s == shell), "{shell} in {shells:?}");
    }
    assert_eq!(
        bash_completes(&script, &["img", "completion", "z"]),
        ["zsh"]
    );
}

#[test]
fn the_zsh_script_parses_and_declares_itself_for_img() {
    let img = Img::new();
    let script = script(&img, "zsh");
    shell("zsh", &["-n", script.to_str().unwrap()]);
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(text.starts_with("#compdef img\n"), "{text}");
}

#[test]
fn the_fish_script_loads_and_completes_commands_and_flags() {
    let img = Img::new();
    let script = script(&img, "fish");
    shell("fish", &["--no-execute", script.to_str().unwrap()]);
    let complete = |line: &str| -> Vec<String> {
        let program = format!("source '{}'; complete -C '{line}'", script.display());
        let out = shell("fish", &["--no-config", "-c", &program]);
        // Each line is the candidate, a tab, and its description.
        out.lines()
            .map(|l| l.split('\t').next().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(complete("img bu"), ["build"]);
    let mut flags = complete("img build --ta");
    flags.sort();
    assert_eq!(flags, ["--tag", "--target"]);
}

#[test]
fn an_unknown_shell_is_a_usage_error_naming_the_shells() {
    let img = Img::new();
    let output = img.run(&["completion", "powershell"]);
    assert_eq!(output.status.code(), Some(2));
    crate::assert_stderr_contains(&output, "[possible values: bash, zsh, fish]");
}
