//! Build-check findings (BuildKit's Dockerfile linter) that planning sees as it goes: about
//! the file as a whole, each instruction as written, and each instruction in its stage's state.
//! The checks of FROM lines are in `lint_from`; the rules themselves in `rules`.

use std::fmt;

use crate::ast::{Dockerfile, Node};
use crate::dockerignore::IgnorePatterns;
use crate::instructions::{CommandLine, Instruction, Location};
use crate::stages::apply::StageState;
use crate::stages::rules;
use crate::stages::PlannedInstruction;

/// A non-fatal finding about the Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Warning {
    /// The BuildKit check name (`MaintainerDeprecated`), or `Syntax` for the `# syntax=`
    /// directive.
    pub rule: &'static str,
    /// What the rule asks for, in general (empty for the `Syntax` note, which is no check).
    pub description: &'static str,
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

impl Warning {
    /// A finding of `rule` (a name from the rule list, or `Syntax`).
    pub(crate) fn new(rule: &'static str, file: &str, line: usize, message: String) -> Warning {
        Warning {
            rule,
            description: rules::find(rule).map_or("", |r| r.description),
            message,
            file: file.to_string(),
            line,
        }
    }

    /// True for a build check (a rule `# check=` controls), false for the `Syntax` note.
    pub fn is_check(&self) -> bool {
        rules::find(self.rule).is_some()
    }
}

impl Warnings {
    pub(crate) fn add(&mut self, rule: &'static str, location: &Location, message: String) {
        self.push(Warning::new(rule, &location.file, location.line, message));
    }

    pub(crate) fn push(&mut self, w: Warning) {
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
        // The parser's only findings are empty continuation lines, which BuildKit reports
        // under this rule with a short message.
        let message = match w.rule {
            Some("NoEmptyContinuation") => "Empty continuation line".to_string(),
            _ => w.message.clone(),
        };
        out.push(Warning::new(
            w.rule.unwrap_or("Parser"),
            file,
            w.line,
            message,
        ));
    }
    if let Some(syntax) = syntax_override.or(dockerfile.directives.syntax.as_ref()) {
        if !is_dockerfile_frontend(syntax) {
            out.push(Warning::new(
                "Syntax",
                file,
                dockerfile.directives.lines.syntax.unwrap_or(1),
                format!(
                    "the syntax directive asks for frontend {syntax:?}; img always uses its \
                     built-in Dockerfile frontend, which follows docker/dockerfile:1"
                ),
            ));
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

/// `ConsistentInstructionCasing`: a keyword should follow the case most keywords use (upper
/// case on a tie; only keywords all in one case count), as BuildKit's `validateCommandCasing`.
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
        let casing = if majority_lower && keyword != keyword.to_ascii_lowercase() {
            "lowercase"
        } else if !majority_lower && keyword != keyword.to_ascii_uppercase() {
            "uppercase"
        } else {
            continue;
        };
        out.push(Warning::new(
            "ConsistentInstructionCasing",
            file,
            node.start_line,
            format!("Command '{keyword}' should match the case of the command majority ({casing})"),
        ));
    }
}

/// The `# check=` directive (or the `BUILDKIT_DOCKERFILE_CHECK` build arg):
/// `skip=<rule,…|all>;error=<bool>;experimental=<rule,…|all>`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct CheckConfig {
    skip_all: bool,
    skip: Vec<String>,
    experimental_all: bool,
    experimental: Vec<String>,
    pub(crate) error: bool,
}

impl CheckConfig {
    /// Parses the directive value as BuildKit's `ParseLintOptions` does.
    pub(crate) fn parse(value: &str) -> Result<CheckConfig, String> {
        let mut config = CheckConfig::default();
        let value = value.trim();
        if value.is_empty() {
            return Ok(config);
        }
        let list = |v: &str| v.split(',').map(|r| r.trim().to_string()).collect();
        for part in value.splitn(3, ';') {
            let Some((key, v)) = part.split_once('=') else {
                return Err(format!(
                    "invalid check option {part:?} (expected skip=…, error=… or experimental=…)"
                ));
            };
            match key.trim() {
                "skip" if v.trim() == "all" => config.skip_all = true,
                "skip" => config.skip = list(v),
                "experimental" if v.trim() == "all" => config.experimental_all = true,
                "experimental" => config.experimental = list(v),
                "error" => {
                    config.error =
                        crate::instructions::parse_bool_value(v.trim()).ok_or_else(|| {
                            format!("invalid check option {part:?}: error takes true or false")
                        })?
                }
                other => {
                    return Err(format!(
                        "invalid check option {other:?} (expected skip, error or experimental)"
                    ))
                }
            }
        }
        Ok(config)
    }

    /// Whether findings of `rule` are reported: an experimental rule only when asked for (and
    /// then whatever `skip` says, as in BuildKit), any other unless skipped. What is no check
    /// (the syntax note) is always reported.
    pub(crate) fn reports(&self, rule: &str) -> bool {
        match rules::find(rule) {
            None => true,
            Some(r) if r.experimental => {
                self.experimental_all || self.experimental.iter().any(|e| e == rule)
            }
            Some(_) => !(self.skip_all || self.skip.iter().any(|s| s == rule)),
        }
    }

    /// Drops the findings of rules that are not reported.
    pub(crate) fn filter(&self, warnings: &mut Vec<Warning>) {
        warnings.retain(|w| self.reports(w.rule));
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
        Instruction::Arg(arg) => {
            let keys: Vec<&str> = arg.args.iter().map(|a| a.name.as_str()).collect();
            definition_description("ARG", &keys, node, at, warnings);
        }
        Instruction::From(from) => {
            if let Some(name) = &from.stage_name {
                definition_description("FROM", &[name], node, at, warnings);
            }
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

/// `InvalidDefinitionDescription`: the comment right above a named stage or an ARG is its
/// description, and should start with the name it describes.
fn definition_description(
    keyword: &str,
    names: &[&str],
    node: &Node,
    at: &Location,
    warnings: &mut Warnings,
) {
    let Some(last) = node.comments.last() else {
        return;
    };
    let first_word = last.split(' ').next().unwrap_or("");
    if names.is_empty() || names.contains(&first_word) {
        return;
    }
    let example = if names.len() > 1 {
        "<arg_key>"
    } else {
        names[0]
    };
    warnings.add(
        "InvalidDefinitionDescription",
        at,
        format!("Comment for {keyword} should follow the format: `# {example} <description>`"),
    );
}

/// Checks of an instruction, its words expanded, in its stage's state: `WorkdirRelativePath`
/// (a relative WORKDIR before any absolute one in this Dockerfile; base images do not count,
/// since they may change), `JSONArgsRecommended` (shell-form CMD or ENTRYPOINT with the
/// default shell), `SecretsUsedInArgOrEnv`, the EXPOSE checks and `CopyIgnoredFile`.
pub(crate) fn lint_in_context(
    warnings: &mut Warnings,
    state: &mut StageState,
    instruction: &Instruction,
    at: &Location,
    ignore: Option<&IgnorePatterns>,
) {
    match instruction {
        Instruction::Env(kv) => {
            for pair in &kv.pairs {
                secret_key("ENV", &pair.key, at, warnings);
            }
        }
        Instruction::Arg(arg) => {
            for decl in &arg.args {
                secret_key("ARG", &decl.name, at, warnings);
            }
        }
        Instruction::Expose(e) => {
            for port in &e.ports {
                expose_format(port, at, warnings);
            }
        }
        Instruction::Copy(c) if c.from.is_none() => {
            ignored_sources("Copy", &c.files.sources, ignore, at, warnings);
        }
        Instruction::Add(a) => {
            ignored_sources("Add", &a.files.sources, ignore, at, warnings);
        }
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

fn secret_key(keyword: &str, key: &str, at: &Location, warnings: &mut Warnings) {
    if rules::looks_secret(key) {
        warnings.add(
            "SecretsUsedInArgOrEnv",
            at,
            format!("Do not use ARG or ENV instructions for sensitive data ({keyword} {key:?})"),
        );
    }
}

/// `ExposeProtoCasing` and `ExposeInvalidFormat`, on a port as Docker splits it:
/// `[[ip:]host-port:]port[/proto]`.
fn expose_format(port: &str, at: &Location, warnings: &mut Warnings) {
    let parts: Vec<&str> = port.split(':').collect();
    let container = parts[parts.len() - 1];
    let proto = container.split('/').nth(1).unwrap_or("");
    if proto != proto.to_lowercase() {
        warnings.add(
            "ExposeProtoCasing",
            at,
            format!("Defined protocol '{port}' in EXPOSE instruction should be lowercase"),
        );
    }
    // An IP or a host port (the parts before the last) is only meaningful to `docker run -p`.
    if parts.len() > 1 && parts[..parts.len() - 1].iter().any(|p| !p.is_empty()) {
        warnings.add(
            "ExposeInvalidFormat",
            at,
            format!(
                "EXPOSE instruction should not define an IP address or host-port mapping, found '{port}'"
            ),
        );
    }
}

/// `CopyIgnoredFile`: a source from the build context that `.dockerignore` leaves out (URLs
/// and Git sources are not in the context).
fn ignored_sources(
    verb: &str,
    sources: &[String],
    ignore: Option<&IgnorePatterns>,
    at: &Location,
    warnings: &mut Warnings,
) {
    let Some(ignore) = ignore.filter(|i| !i.is_empty()) else {
        return;
    };
    for source in sources {
        let remote = ["http://", "https://", "git@", "git://"]
            .iter()
            .any(|p| source.starts_with(p));
        if !remote && ignore.is_excluded(source) {
            warnings.add(
                "CopyIgnoredFile",
                at,
                format!("Attempting to {verb} file {source:?} that is excluded by .dockerignore"),
            );
        }
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
        let c = CheckConfig::parse("skip=all;error=false;experimental=all").unwrap();
        assert!(c.experimental_all && c.skip_all && !c.error);
    }

    #[test]
    fn experimental_rules_run_only_when_asked_for() {
        let default = CheckConfig::default();
        assert!(default.reports("UndefinedVar"));
        assert!(!default.reports("InvalidDefinitionDescription"));
        assert!(default.reports("Syntax"));
        let skip_all =
            CheckConfig::parse("skip=all;experimental=InvalidDefinitionDescription").unwrap();
        assert!(!skip_all.reports("UndefinedVar"));
        assert!(skip_all.reports("InvalidDefinitionDescription"));
        assert!(skip_all.reports("Syntax"));
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
