//! `img debug parse [FILE|-]`: prints the raw syntax tree of a Dockerfile as JSON.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::Context;

/// Where the Dockerfile comes from.
#[derive(Debug, PartialEq, Eq)]
pub enum Input {
    Stdin,
    File(PathBuf),
}

/// The checked configuration of `img debug parse`.
#[derive(Debug)]
pub struct Config {
    pub input: Input,
}

impl Config {
    /// `-` means standard input, anything else a path.
    pub fn from_flag(file: PathBuf) -> Self {
        let input = if file.as_os_str() == "-" {
            Input::Stdin
        } else {
            Input::File(file)
        };
        Config { input }
    }
}

pub fn run(config: &Config) -> anyhow::Result<()> {
    let (name, source) = match &config.input {
        Input::Stdin => {
            let mut source = Vec::new();
            std::io::stdin()
                .read_to_end(&mut source)
                .context("could not read the Dockerfile from standard input")?;
            ("<stdin>".to_owned(), source)
        }
        Input::File(path) => {
            let source = std::fs::read(path).with_context(|| {
                format!(
                    "could not read the Dockerfile {} (give its path, or - for standard input)",
                    path.display()
                )
            })?;
            (path.display().to_string(), source)
        }
    };
    let dockerfile = img_frontend_dockerfile::parse(&source, &name)?;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &dockerfile)
        .context("could not write the syntax tree")?;
    writeln!(out).context("could not write the syntax tree")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dash_means_stdin() {
        assert_eq!(Config::from_flag("-".into()).input, Input::Stdin);
        assert_eq!(
            Config::from_flag("a/Dockerfile".into()).input,
            Input::File("a/Dockerfile".into())
        );
    }
}
