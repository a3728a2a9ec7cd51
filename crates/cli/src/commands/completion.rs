//! `img completion SHELL`: a completion script for bash, zsh or fish, generated from the same
//! clap definition the binary parses with (as `docker completion` and `podman completion`
//! print theirs).

use std::io::Write;

use anyhow::Context;
use clap_complete::Shell;
use img_cli::flags::CompletionShell;

pub fn run(shell: CompletionShell) -> anyhow::Result<()> {
    let script = script(shell);
    let mut out = std::io::stdout().lock();
    out.write_all(&script)
        .and_then(|()| out.flush())
        .context("cannot write the completion script to standard output")
}

/// The script, whole: generated into memory so that a closed pipe is an error, not a panic.
fn script(shell: CompletionShell) -> Vec<u8> {
    let shell = match shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
    };
    let mut command = img_cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "img", &mut script);
    script
}
