//! Build-check findings (BuildKit's `linter/ruleset.go`) that planning can see cheaply.

use std::fmt;

use crate::ast::{Dockerfile, Node};
use crate::instructions::{CommandLine, Instruction, Location};
use crate::stages::apply::StageState;
use crate::stages::PlannedInstruction;

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
/// `syntax_override` is the `BUILDKIT_SYNTAX` build arg, which wins over the directive.
pub(crate) fn file_warnings(
    dockerfile: &Dockerfile,
    file: &str,
    syntax_override: Option<&String>,
    out: &mut Warnings,
) {
    for w in &dockerfile.warnings {
        out.list.push(Warning {
            rule: w.rule.unwrap_or("Parser"),
            message: w.message.clone(),
            file: file.to_string(),
            line: w.line,
        });
    }
    if let Some(syntax) = syntax_override.or(dockerfile.directives.syntax.as_ref()) {
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

/// `ConsistentInstructionCasing`: a keyword should be all upper or all lower case, and follow
/// the case most keywords use (upper case on a tie), as BuildKit's `validateCommandCasing`.
fn consistent_casing(nodes: &[Node], file: &str, out: &mut Warnings) {
    let written: Vec<(&Node, &str)> = nodes
        .iter()
        .filter_map(|n| n.original.split_whitespace().next().map(|k| (n, k)))
        .collect();
    let self_consistent = |k: &str| k == k.to_ascii_lowercase() || k == k.to_ascii_uppercase();
    let lower = written
        .iter()
        .filter(|(_, k)| self_consistent(k) && *k == k.to_ascii_lowercase())
        .count();
    let upper = written
        .iter()
        .filter(|(_, k)| self_consistent(k) && *k != k.to_ascii_lowercase())
        .count();
    let majority_lower = lower > upper;
    for (node, keyword) in written {
        let message = if !self_consistent(keyword) {
            format!("Command '{keyword}' should be consistently cased")
        } else if majority_lower && keyword == keyword.to_ascii_uppercase() {
            format!("Command '{keyword}' should match the case of the command majority (lowercase)")
        } else if !majority_lower && keyword == keyword.to_ascii_lowercase() {
            format!("Command '{keyword}' should match the case of the command majority (uppercase)")
        } else {
            continue;
        };
        out.list.push(Warning {
            rule: "ConsistentInstructionCasing",
            message,
            file: file.to_string(),
            line: node.start_line,
        });
    }
}

/// The `# check=` directive (or the `BUILDKIT_DOCKERFILE_CHECK` build arg):
/// `skip=<rule,…|all>;error=<bool>`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct CheckConfig {
    skip_all: bool,
    skip: Vec<String>,
    pub(crate) error: bool,
}

impl CheckConfig {
    /// Parses the directive value as BuildKit's `parseLintOptions` does.
    pub(crate) fn parse(value: &str) -> Result<CheckConfig, String> {
        let mut config = CheckConfig::default();
        let value = value.trim();
        if value.is_empty() {
            return Ok(config);
        }
        for part in value.splitn(2, ';') {
            let Some((key, v)) = part.split_once('=') else {
                return Err(format!(
                    "invalid check option {part:?} (expected skip=… or error=…)"
                ));
            };
            match key.trim() {
                "skip" if v.trim() == "all" => config.skip_all = true,
                "skip" => config.skip = v.split(',').map(|r| r.trim().to_string()).collect(),
                "error" => {
                    config.error =
                        crate::instructions::parse_bool_value(v.trim()).ok_or_else(|| {
                            format!("invalid check option {part:?}: error takes true or false")
                        })?
                }
                other => {
                    return Err(format!(
                        "invalid check option {other:?} (expected skip or error)"
                    ))
                }
            }
        }
        Ok(config)
    }

    /// Drops the skipped rules. Parser findings and the syntax note are not checks and stay.
    pub(crate) fn filter(&self, warnings: &mut Vec<Warning>) {
        warnings.retain(|w| {
            let is_check = w.rule != "Syntax";
            !(is_check && (self.skip_all || self.skip.iter().any(|r| r == w.rule)))
        });
    }
}

/// Checks that need only the typed instruction and how it was written.
pub(crate) fn lint_instruction(
    instruction: &Instruction,
    at: &Location,
    node: &crate::ast::Node,
    warnings: &mut Warnings,
) {
    match instruction {
        Instruction::Maintainer(_) => warnings.add(
            "MaintainerDeprecated",
            at,
            "Maintainer instruction is deprecated in favor of using label".into(),
        ),
        Instruction::Env(kv) | Instruction::Label(kv) if kv.legacy => {
            let keyword = instruction.keyword();
            warnings.add(
                "LegacyKeyValueFormat",
                at,
                format!(
                    "\"{keyword} key=value\" should be used instead of legacy \"{keyword} key value\" format"
                ),
            );
        }
        Instruction::From(from) => {
            if let Some(written) = &from.stage_name_as_written {
                if written.to_lowercase() != *written {
                    warnings.add(
                        "StageNameCasing",
                        at,
                        format!("Stage name '{written}' should be lowercase"),
                    );
                }
            }
            if let Some(as_word) = &from.as_keyword {
                let from_word = node.original.split_whitespace().next().unwrap_or("FROM");
                let from_upper = from_word == from_word.to_ascii_uppercase();
                let as_upper = as_word == &as_word.to_ascii_uppercase();
                let from_lower = from_word == from_word.to_ascii_lowercase();
                let as_lower = as_word == &as_word.to_ascii_lowercase();
                if (from_upper && !as_upper) || (from_lower && !as_lower) {
                    warnings.add(
                        "FromAsCasing",
                        at,
                        format!("'{as_word}' and '{from_word}' keywords' casing do not match"),
                    );
                }
            }
        }
        _ => {}
    }
}

/// Checks that depend on the stage's state: `WorkdirRelativePath` (a relative WORKDIR
/// before any absolute one in this Dockerfile; base images do not count, since they may
/// change) and `JSONArgsRecommended` (shell-form CMD or ENTRYPOINT with the default shell).
pub(crate) fn lint_in_context(
    warnings: &mut Warnings,
    state: &mut StageState,
    instruction: &Instruction,
    at: &Location,
) {
    match instruction {
        Instruction::Workdir(w) => {
            if !state.workdir_set && !w.path.starts_with('/') {
                warnings.add(
                    "WorkdirRelativePath",
                    at,
                    format!(
                        "Relative workdir {:?} can have unexpected results if the base image changes",
                        w.path
                    ),
                );
            }
            state.workdir_set = true;
        }
        Instruction::Cmd(c) | Instruction::Entrypoint(c)
            if matches!(c.command, CommandLine::Shell(_)) && state.image.config.shell.is_none() =>
        {
            warnings.add(
                "JSONArgsRecommended",
                at,
                format!(
                    "JSON arguments recommended for {} to prevent unintended behavior related to OS signals",
                    instruction.keyword()
                ),
            );
        }
        _ => {}
    }
}

/// `MultipleInstructionsDisallowed`: only the last CMD, ENTRYPOINT or HEALTHCHECK counts.
pub(crate) fn lint_repeated(warnings: &mut Warnings, planned: &[PlannedInstruction]) {
    for keyword in ["CMD", "ENTRYPOINT", "HEALTHCHECK"] {
        let matching: Vec<&PlannedInstruction> = planned
            .iter()
            .filter(|p| !p.from_trigger && p.instruction.keyword() == keyword)
            .collect();
        if let Some((_, earlier)) = matching.split_last() {
            for p in earlier {
                warnings.add(
                    "MultipleInstructionsDisallowed",
                    &p.location,
                    format!(
                        "Multiple {keyword} instructions should not be used in the same stage because only the last one will be used"
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_options() {
        assert_eq!(CheckConfig::parse("").unwrap(), CheckConfig::default());
        let c = CheckConfig::parse("skip=JSONArgsRecommended, StageNameCasing;error=true").unwrap();
        assert!(c.error);
        assert_eq!(c.skip, ["JSONArgsRecommended", "StageNameCasing"]);
        assert!(CheckConfig::parse("skip=all").unwrap().skip_all);
        assert!(CheckConfig::parse("error=maybe").is_err());
        assert!(CheckConfig::parse("nope=1").is_err());
        assert!(CheckConfig::parse("skip").is_err());
    }

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
