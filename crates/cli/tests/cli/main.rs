//! End-to-end tests of the `img` binary, one module per topic.

mod attest;
mod build;
mod check;
mod compat;
mod completion;
mod crash;
mod debug_llb;
mod debug_parse;
mod doctor;
mod fixtures;
mod global;
mod hostile;
mod images;
mod lazy_cache;
mod multiplatform;
mod registry;
mod remote_cache;
mod storage;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// The uid and gid of `nobody`, the ordinary user tests run img as.
const NOBODY: &str = "65534";

/// A fresh working directory, state directory and Docker config directory, and a way to run
/// `img` with them (nothing of the user's own configuration is read).
struct Img {
    dir: tempfile::TempDir,
}

impl Img {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        for sub in ["work", "state", "docker", "xdg-config", "home"] {
            std::fs::create_dir(dir.path().join(sub)).expect("a test directory");
        }
        Img { dir }
    }

    /// The working directory `img` runs in.
    fn dir(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// The state directory (`IMG_STATE`).
    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Where Docker's `config.json` goes (`DOCKER_CONFIG`).
    fn docker_config(&self) -> PathBuf {
        self.dir.path().join("docker")
    }

    /// The store behind the state directory, for setting up and checking from the test.
    fn store(&self) -> img_snapshot::Store {
        img_snapshot::Store::open(&img_snapshot::StateDir::at(self.state())).expect("the store")
    }

    /// `img` with the test's environment, ready for arguments.
    fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_img"));
        cmd.current_dir(self.dir())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("IMG_STATE", self.state())
            .env("DOCKER_CONFIG", self.docker_config())
            .env("XDG_CONFIG_HOME", self.dir.path().join("xdg-config"))
            .env("HOME", self.dir.path().join("home"));
        cmd
    }

    /// `img` run as the ordinary user `nobody` (no capabilities, no supplementary groups), with
    /// the test's environment; the test's directories are handed to that user first.
    fn command_as_nobody(&self) -> Command {
        let status = Command::new("chown")
            .args(["-R", &format!("{NOBODY}:{NOBODY}")])
            .arg(self.dir.path())
            .status()
            .expect("chown runs");
        assert!(status.success(), "chown of the test directory");
        let img = self.command();
        let mut cmd = Command::new("setpriv");
        cmd.args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
        ])
        .arg(img.get_program())
        .current_dir(self.dir())
        .env_clear()
        .envs(img.get_envs().filter_map(|(k, v)| Some((k, v?))));
        cmd
    }

    /// `img <args>` run in the working directory, without input.
    fn run(&self, args: &[&str]) -> Output {
        self.run_with_input(args, b"")
    }

    /// `img <args>` with `input` on standard input.
    fn run_with_input(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self
            .command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("img starts");
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(input)
            .expect("img reads its input");
        child.wait_with_output().expect("img finishes")
    }

    /// `img <args>`, which must fail with exit code 1 and say `message` on standard error.
    fn fails(&self, args: &[&str], message: &str) -> Output {
        assert_fails(self.run(args), message)
    }

    /// `img <args>`, which must succeed; returns its standard output.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert_success(&output, args);
        String::from_utf8(output.stdout).expect("utf-8 output")
    }
}

/// Runs another program (skopeo, umoci, tar, ...), which must succeed; returns its output.
fn tool(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn assert_success(output: &Output, args: &[&str]) {
    assert!(
        output.status.success(),
        "img {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Asserts that img exited with 1 and said `message` on standard error; returns the output.
fn assert_fails(output: Output, message: &str) -> Output {
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_stderr_contains(&output, message);
    output
}

/// Asserts that `output`'s standard error says `text`, showing all of it otherwise.
fn assert_stderr_contains(output: &Output, text: &str) {
    let err = stderr(output);
    assert!(err.contains(text), "{text:?} not in:\n{err}");
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
