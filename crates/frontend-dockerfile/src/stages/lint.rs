//! Build-check findings (BuildKit's `linter/ruleset.go`) that planning can see cheaply.

use std::fmt;

use crate::ast::{Dockerfile, Node};
use crate::instructions::Location;

/// A non-fatal finding about the Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Warning {
    /// The BuildKit check name (`MaintainerDeprecated`), or `Syntax` for the `# syntax=`
    /// directive.
    pub rule: &'static str,
    /// What was found and what to do.
    pub message: String,
    /// The Dockerfile name and line, if the finding is about one line.
    pub file: String,
    /// The 1-based line, 0 when the finding is about the whole file.
    pub line: usize,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(
                f,
                "{}:{}: {}: {}",
                self.file, self.line, self.rule, self.message
            )
        } else {
            write!(f, "{}: {}: {}", self.file, self.rule, self.message)
        }
    }
}

/// Collects warnings, one per rule and line.
#[derive(Debug, Default)]
pub(crate) struct Warnings {
    pub(crate) list: Vec<Warning>,
}

impl Warnings {
    pub(crate) fn add(&mut self, rule: &'static str, location: &Location, message: String) {
        let w = Warning {
            rule,
            message,
            file: location.file.clone(),
            line: location.line,
        };
        if !self.list.contains(&w) {
            self.list.push(w);
        }
    }
}

/// Findings about the file as a whole: the parser's, the syntax directive, instruction casing.
pub(crate) fn file_warnings(dockerfile: &Dockerfile, file: &str, out: &mut Warnings) {
    for w in &dockerfile.warnings {
        out.list.push(Warning {
            rule: w.rule.unwrap_or("Parser"),
            message: w.message.clone(),
            file: file.to_string(),
            line: w.line,
        });
    }
    if let Some(syntax) = &dockerfile.directives.syntax {
        if !is_dockerfile_frontend(syntax) {
            out.list.push(Warning {
                rule: "Syntax",
                message: format!(
                    "the syntax directive asks for frontend {syntax:?}; img always uses its \
                     built-in Dockerfile frontend, which follows docker/dockerfile:1"
                ),
                file: file.to_string(),
                line: dockerfile.directives.lines.syntax.unwrap_or(1),
            });
        }
    }
    consistent_casing(&dockerfile.instructions, file, out);
}

/// `docker/dockerfile` with any tag or digest (also its `docker.io/` spellings) is what the
/// built-in frontend implements, so it is served silently.
fn is_dockerfile_frontend(syntax: &str) -> bool {
    let name = syntax.trim();
    let name = name
        .strip_prefix("docker.io/")
        .or_else(|| name.strip_prefix("index.docker.io/"))
        .unwrap_or(name);
    let name = name.split('@').next().unwrap_or(name);
    let repo = match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => &name[..i],
        _ => name,
    };
    repo == "docker/dockerfile" || repo == "docker/dockerfile-upstream"
}

/// `ConsistentInstructionCasing`: keywords should all be upper or all lower case, following
/// the majority.
fn consistent_casing(nodes: &[Node], file: &str, out: &mut Warnings) {
    let written: Vec<(&Node, &str)> = nodes.iter().flat_map(keywords).collect();
    let upper = written
        .iter()
        .filter(|(_, k)| *k == k.to_ascii_uppercase())
        .count();
    let lower = written
        .iter()
        .filter(|(_, k)| *k == k.to_ascii_lowercase())
        .count();
    let majority_upper = upper >= lower;
    for (node, keyword) in written {
        let ok = if majority_upper {
            keyword == keyword.to_ascii_uppercase()
        } else {
            keyword == keyword.to_ascii_lowercase()
        };
        if !ok {
            let case = if majority_upper {
                "uppercase"
            } else {
                "lowercase"
            };
            out.list.push(Warning {
                rule: "ConsistentInstructionCasing",
                message: format!(
                    "Command '{keyword}' should match the case of the command majority ({case})"
                ),
                file: file.to_string(),
                line: node.start_line,
            });
        }
    }
}

/// The keywords of a node as written: the instruction's, and for ONBUILD the trigger's.
fn keywords(node: &Node) -> Vec<(&Node, &str)> {
    let mut words = node.original.split_whitespace();
    let mut out = Vec::new();
    if let Some(first) = words.next() {
        out.push((node, first));
        if node.keyword == "onbuild" {
            if let Some(second) = words.find(|w| !w.starts_with("--")) {
                out.push((node, second));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerfile_frontends_are_recognised() {
        for ok in [
            "docker/dockerfile:1",
            "docker/dockerfile:1.7-labs",
            "docker.io/docker/dockerfile:1.4",
            "docker/dockerfile",
            "docker/dockerfile@sha256:abc",
            "docker/dockerfile:1@sha256:abc",
        ] {
            assert!(is_dockerfile_frontend(ok), "{ok}");
        }
        for other in [
            "tonistiigi/dockerfile:x",
            "example.com/frontend:1",
            "docker/dockerfilex:1",
        ] {
            assert!(!is_dockerfile_frontend(other), "{other}");
        }
    }
}
