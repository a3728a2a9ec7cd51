//! End-to-end tests of the `img` binary, one module per topic.

mod debug_parse;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// A fresh working directory and a way to run `img` in it.
struct Img {
    dir: tempfile::TempDir,
}

impl Img {
    fn new() -> Self {
        Img {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `img <args>` run in the working directory, without input.
    fn run(&self, args: &[&str]) -> Output {
        self.run_with_input(args, b"")
    }

    /// `img <args>` run in the working directory with `input` on standard input.
    fn run_with_input(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_img"))
            .args(args)
            .current_dir(self.dir())
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
}
