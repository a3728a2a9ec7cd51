//! From a syntax-tree node to a typed instruction, one function per instruction, following
//! BuildKit's `instructions/parse.go`.

use std::time::Duration;

use crate::ast::Node;
use crate::instructions::duration::{parse_go_duration, DurationError};
use crate::instructions::error::{
    suggest, InstructionError, InstructionErrorKind as Kind, Location,
};
use crate::instructions::flags::{FlagKind, FlagSpec, Flags};
use crate::instructions::mount::{Mount, MountType, Values};
use crate::instructions::*;

const KEYWORDS: &[&str] = &[
    "add",
    "arg",
    "cmd",
    "copy",
    "entrypoint",
    "env",
    "expose",
    "from",
    "healthcheck",
    "label",
    "maintainer",
    "onbuild",
    "run",
    "shell",
    "stopsignal",
    "user",
    "volume",
    "workdir",
];

const NO_FLAGS: FlagSpec = &[];
const FROM_FLAGS: FlagSpec = &[("platform", FlagKind::String)];
const RUN_FLAGS: FlagSpec = &[
    ("mount", FlagKind::Strings),
    ("network", FlagKind::String),
    ("security", FlagKind::String),
    ("device", FlagKind::Strings),
];
const COPY_FLAGS: FlagSpec = &[
    ("from", FlagKind::String),
    ("chown", FlagKind::String),
    ("chmod", FlagKind::String),
    ("link", FlagKind::Bool),
    ("parents", FlagKind::Bool),
    ("exclude", FlagKind::Strings),
];
const ADD_FLAGS: FlagSpec = &[
    ("chown", FlagKind::String),
    ("chmod", FlagKind::String),
    ("link", FlagKind::Bool),
    ("exclude", FlagKind::Strings),
    ("checksum", FlagKind::String),
    ("keep-git-dir", FlagKind::Bool),
    ("unpack", FlagKind::Bool),
];
const HEALTHCHECK_FLAGS: FlagSpec = &[
    ("interval", FlagKind::String),
    ("timeout", FlagKind::String),
    ("start-period", FlagKind::String),
    ("start-interval", FlagKind::String),
    ("retries", FlagKind::String),
];

/// Where a node is, for errors.
pub(crate) fn location_of(node: &Node, file: &str) -> Location {
    Location {
        file: file.to_string(),
        line: node.start_line,
        end_line: node.end_line,
        original: node.original.clone(),
    }
}

/// Turns one syntax-tree node into a typed instruction. `file` names the Dockerfile in errors.
pub fn parse_instruction(node: &Node, file: &str) -> Result<Instruction, InstructionError> {
    parse_kind(node).map_err(|kind| InstructionError {
        location: Box::new(location_of(node, file)),
        kind,
    })
}

fn parse_kind(node: &Node) -> Result<Instruction, Kind> {
    let spec = match node.keyword.as_str() {
        "from" => FROM_FLAGS,
        "run" => RUN_FLAGS,
        "copy" => COPY_FLAGS,
        "add" => ADD_FLAGS,
        "healthcheck" => HEALTHCHECK_FLAGS,
        k if KEYWORDS.contains(&k) => NO_FLAGS,
        _ => {
            return Err(Kind::UnknownInstruction {
                keyword: keyword_as_written(node),
                suggestion: suggest(&node.keyword, KEYWORDS.iter().copied())
                    .map(|s| s.to_ascii_uppercase()),
            })
        }
    };
    let flags = Flags::parse(&node.flags, spec)?;
    let args = &node.args;
    Ok(match node.keyword.as_str() {
        "from" => Instruction::From(parse_from(args, &flags)?),
        "run" => Instruction::Run(parse_run(node, &flags)?),
        "cmd" => Instruction::Cmd(CommandInstruction {
            command: command_line(node, "CMD")?,
        }),
        "entrypoint" => Instruction::Entrypoint(CommandInstruction {
            command: command_line(node, "ENTRYPOINT")?,
        }),
        "shell" => {
            if !node.json {
                return Err(Kind::JsonFormRequired {
                    instruction: "SHELL",
                });
            }
            at_least_one(args, "SHELL")?;
            Instruction::Shell(ShellInstruction {
                shell: args.clone(),
            })
        }
        "env" => Instruction::Env(parse_key_values(node, "ENV")?),
        "label" => Instruction::Label(parse_key_values(node, "LABEL")?),
        "arg" => Instruction::Arg(parse_arg(args)?),
        "expose" => {
            at_least_one(args, "EXPOSE")?;
            // BuildKit sorts the words so that the history entry does not depend on their order.
            let mut ports = args.clone();
            ports.sort();
            Instruction::Expose(ExposeInstruction { ports })
        }
        "workdir" => Instruction::Workdir(WorkdirInstruction {
            path: exactly_one(args, "WORKDIR")?,
        }),
        "user" => Instruction::User(UserInstruction {
            user: exactly_one(args, "USER")?,
        }),
        "stopsignal" => Instruction::StopSignal(StopSignalInstruction {
            signal: exactly_one(args, "STOPSIGNAL")?,
        }),
        "maintainer" => Instruction::Maintainer(MaintainerInstruction {
            name: exactly_one(args, "MAINTAINER")?,
        }),
        "volume" => {
            at_least_one(args, "VOLUME")?;
            if args.iter().any(|v| v.trim().is_empty()) {
                return Err(Kind::EmptyVolume);
            }
            Instruction::Volume(VolumeInstruction {
                paths: args.clone(),
            })
        }
        "healthcheck" => Instruction::Healthcheck(parse_healthcheck(node, &flags)?),
        "onbuild" => Instruction::OnBuild(parse_onbuild(node)?),
        "copy" => Instruction::Copy(CopyInstruction {
            files: parse_file_sources(node, "COPY")?,
            from: flags.string("from"),
            chown: flags.string("chown"),
            chmod: chmod_flag(flags.string("chmod"))?,
            link: flags.bool("link").unwrap_or(false),
            parents: flags.bool("parents").unwrap_or(false),
            excludes: flags.strings("exclude"),
        }),
        "add" => Instruction::Add(AddInstruction {
            files: parse_file_sources(node, "ADD")?,
            chown: flags.string("chown"),
            chmod: chmod_flag(flags.string("chmod"))?,
            link: flags.bool("link").unwrap_or(false),
            excludes: flags.strings("exclude"),
            checksum: flags.string("checksum"),
            keep_git_dir: flags.bool("keep-git-dir").unwrap_or(false),
            unpack: flags.bool("unpack"),
        }),
        other => unreachable_keyword(other)?,
    })
}

/// Every keyword of [`KEYWORDS`] is matched above; this keeps the match total without a panic.
fn unreachable_keyword(keyword: &str) -> Result<Instruction, Kind> {
    Err(Kind::UnknownInstruction {
        keyword: keyword.to_ascii_uppercase(),
        suggestion: None,
    })
}

fn keyword_as_written(node: &Node) -> String {
    node.original
        .split_whitespace()
        .next()
        .unwrap_or(&node.keyword)
        .to_string()
}

fn at_least_one(args: &[String], instruction: &'static str) -> Result<(), Kind> {
    if args.is_empty() {
        return Err(Kind::ArgumentCount {
            instruction,
            expected: "at least one argument",
        });
    }
    Ok(())
}

fn exactly_one(args: &[String], instruction: &'static str) -> Result<String, Kind> {
    match args {
        [one] => Ok(one.clone()),
        _ => Err(Kind::ArgumentCount {
            instruction,
            expected: "exactly one argument",
        }),
    }
}

fn parse_from(args: &[String], flags: &Flags) -> Result<FromInstruction, Kind> {
    let (stage_name, as_keyword) = match args {
        [_] => (None, None),
        [_, as_word, name] if as_word.eq_ignore_ascii_case("as") => {
            (Some(name.clone()), Some(as_word.clone()))
        }
        _ => {
            return Err(Kind::ArgumentCount {
                instruction: "FROM",
                expected: "either one or three arguments (FROM <image> [AS <name>])",
            })
        }
    };
    let lowered = stage_name.as_ref().map(|n| n.to_lowercase());
    if let Some(name) = &lowered {
        if !valid_stage_name(name) {
            return Err(Kind::InvalidStageName {
                name: stage_name.clone().unwrap_or_default(),
            });
        }
    }
    Ok(FromInstruction {
        image: args[0].clone(),
        platform: flags.string("platform"),
        stage_name: lowered,
        stage_name_as_written: stage_name,
        as_keyword,
    })
}

/// `^[a-z][a-z0-9-_.]*$`, BuildKit's rule for stage names.
fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

fn command_line(node: &Node, instruction: &'static str) -> Result<CommandLine, Kind> {
    if node.json {
        return Ok(CommandLine::Exec(node.args.clone()));
    }
    match node.args.as_slice() {
        [line] if !line.trim().is_empty() => Ok(CommandLine::Shell(line.clone())),
        _ => Err(Kind::ArgumentCount {
            instruction,
            expected: "at least one argument",
        }),
    }
}

fn parse_run(node: &Node, flags: &Flags) -> Result<RunInstruction, Kind> {
    if !flags.strings("device").is_empty() {
        return Err(Kind::LabsOnly {
            feature: "the --device flag of RUN",
        });
    }
    let command = command_line(node, "RUN")?;
    let mut mounts = Vec::new();
    let mut ssh_count = 0;
    for spec in flags.strings("mount") {
        let mount = Mount::parse(&spec, ssh_count, Values::Deferred)?;
        if mount.kind == MountType::Ssh {
            ssh_count += 1;
        }
        mounts.push(mount);
    }
    let network = match flags.string("network").as_deref() {
        None | Some("default") => NetworkMode::Default,
        Some("none") => NetworkMode::None,
        Some("host") => NetworkMode::Host,
        Some(other) => {
            return Err(Kind::InvalidFlagValue {
                flag: "network".into(),
                value: other.into(),
                expected: "default, none or host",
            })
        }
    };
    let security = match flags.string("security").as_deref() {
        None | Some("sandbox") => SecurityMode::Sandbox,
        Some("insecure") => SecurityMode::Insecure,
        Some(other) => {
            return Err(Kind::InvalidFlagValue {
                flag: "security".into(),
                value: other.into(),
                expected: "sandbox or insecure",
            })
        }
    };
    Ok(RunInstruction {
        command,
        heredocs: node.heredocs.clone(),
        mounts,
        network,
        security,
    })
}

fn parse_key_values(node: &Node, instruction: &'static str) -> Result<KeyValueInstruction, Kind> {
    at_least_one(&node.args, instruction)?;
    let mut pairs = Vec::new();
    for chunk in node.args.chunks(2) {
        let [key, value] = chunk else {
            return Err(Kind::ArgumentCount {
                instruction,
                expected: "a value for every key (KEY=value)",
            });
        };
        if key.is_empty() {
            return Err(Kind::BlankName { instruction });
        }
        pairs.push(KeyValue {
            key: key.clone(),
            value: value.clone(),
        });
    }
    Ok(KeyValueInstruction {
        pairs,
        legacy: node.legacy_key_value,
    })
}

fn parse_arg(args: &[String]) -> Result<ArgInstruction, Kind> {
    at_least_one(args, "ARG")?;
    let mut out = Vec::new();
    for word in args {
        let (name, default) = match word.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (word.as_str(), None),
        };
        if name.is_empty() {
            return Err(Kind::BlankName { instruction: "ARG" });
        }
        out.push(ArgDeclaration {
            name: name.to_string(),
            default,
        });
    }
    Ok(ArgInstruction { args: out })
}

fn parse_healthcheck(node: &Node, flags: &Flags) -> Result<HealthcheckInstruction, Kind> {
    let Some(kind) = node.args.first() else {
        return Err(Kind::ArgumentCount {
            instruction: "HEALTHCHECK",
            expected: "at least one argument (CMD <command> or NONE)",
        });
    };
    match kind.to_ascii_uppercase().as_str() {
        "NONE" => {
            if node.args.len() != 1 {
                return Err(Kind::HealthcheckNoneArguments);
            }
            Ok(HealthcheckInstruction::Disable)
        }
        "CMD" => {
            let rest = &node.args[1..];
            let test = if node.json {
                if rest.is_empty() {
                    return Err(Kind::MissingHealthcheckCommand);
                }
                std::iter::once("CMD".to_string())
                    .chain(rest.iter().cloned())
                    .collect()
            } else {
                match rest {
                    [line] if !line.trim().is_empty() => {
                        vec!["CMD-SHELL".to_string(), line.clone()]
                    }
                    _ => return Err(Kind::MissingHealthcheckCommand),
                }
            };
            let retries = match flags.string("retries").as_deref() {
                None | Some("") => 0,
                Some(v) => v
                    .parse::<i64>()
                    .ok()
                    .filter(|r| (0..=i32::MAX as i64).contains(r))
                    .map(|r| r as u32)
                    .ok_or_else(|| Kind::InvalidRetries { value: v.into() })?,
            };
            Ok(HealthcheckInstruction::Check(HealthCheck {
                test,
                interval: health_duration(flags, "interval")?,
                timeout: health_duration(flags, "timeout")?,
                start_period: health_duration(flags, "start-period")?,
                start_interval: health_duration(flags, "start-interval")?,
                retries,
            }))
        }
        _ => Err(Kind::UnknownHealthcheckType { kind: kind.clone() }),
    }
}

/// A HEALTHCHECK duration: empty or 0 means the default; otherwise at least 1ms, as Docker's
/// `container.MinimumDuration` requires.
fn health_duration(flags: &Flags, flag: &'static str) -> Result<Duration, Kind> {
    let Some(value) = flags.string(flag) else {
        return Ok(Duration::ZERO);
    };
    if value.is_empty() {
        return Ok(Duration::ZERO);
    }
    let invalid = |reason| Kind::InvalidDuration {
        flag,
        value: value.clone(),
        reason,
    };
    let nanos = match parse_go_duration(&value) {
        Ok(n) => n,
        Err(DurationError::Syntax) => {
            return Err(invalid("expected a Go duration such as 30s or 1m30s"))
        }
        Err(DurationError::Negative) => return Err(invalid("cannot be less than 1ms")),
        Err(DurationError::Overflow) => return Err(invalid("too large")),
    };
    if nanos != 0 && nanos < 1_000_000 {
        return Err(invalid("cannot be less than 1ms"));
    }
    Ok(Duration::from_nanos(nanos))
}

fn parse_onbuild(node: &Node) -> Result<OnBuildInstruction, Kind> {
    let Some(sub) = node.sub.as_deref() else {
        return Err(Kind::ArgumentCount {
            instruction: "ONBUILD",
            expected: "at least one argument (the trigger instruction)",
        });
    };
    match sub.keyword.as_str() {
        "onbuild" => {
            return Err(Kind::ForbiddenTrigger {
                trigger: "ONBUILD (chaining ONBUILD via `ONBUILD ONBUILD`)".into(),
            })
        }
        "from" | "maintainer" => {
            return Err(Kind::ForbiddenTrigger {
                trigger: sub.keyword.to_ascii_uppercase(),
            })
        }
        _ => {}
    }
    // The parser attaches heredocs to the ONBUILD node; the trigger needs them.
    let mut sub = sub.clone();
    if sub.heredocs.is_empty() {
        sub.heredocs = node.heredocs.clone();
    }
    let trigger = parse_kind(&sub)?;
    // BuildKit stores the text after ONBUILD with the heredoc bodies appended, so that the
    // downstream build can parse the trigger again on its own.
    let mut expression = strip_keyword(&node.original, "onbuild").to_string();
    for doc in &node.heredocs {
        expression.push('\n');
        expression.push_str(&doc.content);
        expression.push_str(&doc.name);
    }
    Ok(OnBuildInstruction {
        expression,
        trigger: Box::new(trigger),
    })
}

/// The text after a leading keyword (case-insensitive) and the blanks that follow it.
fn strip_keyword<'a>(original: &'a str, keyword: &str) -> &'a str {
    let trimmed = original.trim_start();
    match trimmed.get(..keyword.len()) {
        Some(head) if head.eq_ignore_ascii_case(keyword) => trimmed[keyword.len()..].trim_start(),
        _ => trimmed,
    }
}

fn chmod_flag(raw: Option<String>) -> Result<Option<ChmodFlag>, Kind> {
    let Some(raw) = raw else { return Ok(None) };
    if raw.contains('$') {
        return Ok(Some(ChmodFlag { raw, mode: None }));
    }
    parse_chmod(raw).map(Some)
}

/// Parses a `--chmod` value that has no variables left.
pub(crate) fn parse_chmod(raw: String) -> Result<ChmodFlag, Kind> {
    match Chmod::parse(&raw) {
        Some(mode) => Ok(ChmodFlag {
            raw,
            mode: Some(mode),
        }),
        None => Err(Kind::InvalidChmod { value: raw }),
    }
}

fn parse_file_sources(node: &Node, instruction: &'static str) -> Result<FileSources, Kind> {
    let args = &node.args;
    if args.len() < 2 {
        return Err(Kind::ArgumentCount {
            instruction,
            expected: "at least two arguments: one or more sources, then the destination",
        });
    }
    let (srcs, dest) = args.split_at(args.len() - 1);
    let dest = &dest[0];
    if !node.json && heredoc_word(dest).is_some() {
        return Err(Kind::HeredocNotAllowed {
            instruction,
            position: "a destination",
        });
    }
    let mut sources = Vec::new();
    let mut inline = Vec::new();
    for src in srcs {
        match heredoc_word(src).filter(|_| !node.json) {
            Some((name, chomp)) => {
                let doc = node.heredocs.iter().find(|d| d.name == name);
                let content = doc.map(|d| d.content.clone()).unwrap_or_default();
                let chomp = chomp || doc.is_some_and(|d| d.chomp);
                inline.push(InlineSource {
                    data: if chomp {
                        strip_leading_tabs(&content)
                    } else {
                        content
                    },
                    expand: doc.is_none_or(|d| d.expand),
                    name,
                });
            }
            None => sources.push(src.clone()),
        }
    }
    Ok(FileSources {
        sources,
        inline,
        dest: dest.clone(),
        json: node.json,
    })
}

/// A word that is a heredoc marker (`<<EOF`, `<<-EOF`, `3<<"EOF"`): its name without quotes,
/// and whether it strips tabs.
pub(crate) fn heredoc_word(word: &str) -> Option<(String, bool)> {
    let rest = word.trim_start_matches(|c: char| c.is_ascii_digit());
    let rest = rest.strip_prefix("<<")?;
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let rest = rest.trim_start();
    if rest.is_empty() || rest.contains('<') || rest.contains(char::is_whitespace) {
        return None;
    }
    let name: String = rest.chars().filter(|c| *c != '\'' && *c != '"').collect();
    if name.is_empty() {
        return None;
    }
    Some((name, chomp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heredoc_words() {
        assert_eq!(heredoc_word("<<EOF"), Some(("EOF".into(), false)));
        assert_eq!(heredoc_word("<<-EOF"), Some(("EOF".into(), true)));
        assert_eq!(heredoc_word("3<<'E O'"), None);
        assert_eq!(heredoc_word("<<\"EOF\""), Some(("EOF".into(), false)));
        assert_eq!(heredoc_word("<<E\"OF\""), Some(("EOF".into(), false)));
        assert_eq!(heredoc_word("file"), None);
        assert_eq!(heredoc_word("<<"), None);
    }

    #[test]
    fn stage_names() {
        for ok in ["a", "build", "a-b_c.d1"] {
            assert!(valid_stage_name(ok), "{ok}");
        }
        for bad in ["", "1a", "-a", "a b", "a/b", "a:b"] {
            assert!(!valid_stage_name(bad), "{bad}");
        }
    }

    #[test]
    fn keyword_stripping() {
        assert_eq!(strip_keyword("ONBUILD RUN x", "onbuild"), "RUN x");
        assert_eq!(strip_keyword("  onbuild   COPY a b", "onbuild"), "COPY a b");
    }
}
