//! Typed instructions: the second step of the frontend, from a syntax-tree [`Node`] to an
//! [`Instruction`] whose flags are checked and whose arguments are split into their meaning.
//!
//! Words are kept as written here (variables unexpanded); the `stages` step expands them with the
//! environment each instruction sees, and parses again the values that only make sense once
//! expanded (`--chmod`, `RUN --mount`).
//!
//! [`Node`]: crate::ast::Node

mod duration;
mod error;
mod flags;
mod mount;
mod parse;

use std::time::Duration;

use serde::Serialize;

use crate::ast::Heredoc;

pub(crate) use duration::format_go_duration;
pub(crate) use error::suggest;
pub use error::{InstructionError, InstructionErrorKind, Location};
pub(crate) use flags::parse_bool as parse_bool_value;
pub use img_llb::{Chmod, SymbolicClause, SymbolicOp, SymbolicPerms};
pub(crate) use mount::Values as MountValues;
pub use mount::{CacheSharing, Mount, MountError, MountType};
pub use parse::parse_instruction;
pub(crate) use parse::{heredoc_word, location_of, parse_chmod as parse_chmod_flag};

/// One typed Dockerfile instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "instruction", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Instruction {
    /// `FROM`.
    From(FromInstruction),
    /// `RUN`.
    Run(RunInstruction),
    /// `CMD`.
    Cmd(CommandInstruction),
    /// `ENTRYPOINT`.
    Entrypoint(CommandInstruction),
    /// `SHELL`.
    Shell(ShellInstruction),
    /// `ENV`.
    Env(KeyValueInstruction),
    /// `ARG`.
    Arg(ArgInstruction),
    /// `LABEL`.
    Label(KeyValueInstruction),
    /// `EXPOSE`.
    Expose(ExposeInstruction),
    /// `WORKDIR`.
    Workdir(WorkdirInstruction),
    /// `USER`.
    User(UserInstruction),
    /// `VOLUME`.
    Volume(VolumeInstruction),
    /// `STOPSIGNAL`.
    StopSignal(StopSignalInstruction),
    /// `HEALTHCHECK`.
    Healthcheck(HealthcheckInstruction),
    /// `ONBUILD`.
    OnBuild(OnBuildInstruction),
    /// `COPY`.
    Copy(CopyInstruction),
    /// `ADD`.
    Add(AddInstruction),
    /// `MAINTAINER` (deprecated; sets the image author).
    Maintainer(MaintainerInstruction),
}

impl Instruction {
    /// The instruction keyword in upper case (`RUN`).
    pub fn keyword(&self) -> &'static str {
        match self {
            Instruction::From(_) => "FROM",
            Instruction::Run(_) => "RUN",
            Instruction::Cmd(_) => "CMD",
            Instruction::Entrypoint(_) => "ENTRYPOINT",
            Instruction::Shell(_) => "SHELL",
            Instruction::Env(_) => "ENV",
            Instruction::Arg(_) => "ARG",
            Instruction::Label(_) => "LABEL",
            Instruction::Expose(_) => "EXPOSE",
            Instruction::Workdir(_) => "WORKDIR",
            Instruction::User(_) => "USER",
            Instruction::Volume(_) => "VOLUME",
            Instruction::StopSignal(_) => "STOPSIGNAL",
            Instruction::Healthcheck(_) => "HEALTHCHECK",
            Instruction::OnBuild(_) => "ONBUILD",
            Instruction::Copy(_) => "COPY",
            Instruction::Add(_) => "ADD",
            Instruction::Maintainer(_) => "MAINTAINER",
        }
    }
}

/// A command in shell form (run through the SHELL) or exec form (a JSON array).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandLine {
    /// `RUN echo hi`: the text, passed to the shell as one argument, never expanded by img.
    Shell(String),
    /// `RUN ["echo", "hi"]`: the arguments, used as they are.
    Exec(Vec<String>),
}

/// `FROM [--platform=<p>] <image> [AS <name>]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct FromInstruction {
    /// The base: an image reference, `scratch`, or an earlier stage's name.
    pub image: String,
    /// `--platform`.
    pub platform: Option<String>,
    /// The stage name, lower-cased.
    pub stage_name: Option<String>,
    /// The stage name as written (for the casing lint).
    pub stage_name_as_written: Option<String>,
    /// The `AS` keyword as written (for the casing lint).
    pub as_keyword: Option<String>,
}

/// `RUN`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RunInstruction {
    /// The command. With heredocs, the shell form holds the line as written (`<<EOF` markers).
    pub command: CommandLine,
    /// The heredocs, bodies as written.
    pub heredocs: Vec<Heredoc>,
    /// `--mount`, in order.
    pub mounts: Vec<Mount>,
    /// `--network`.
    pub network: NetworkMode,
    /// `--security`.
    pub security: SecurityMode,
}

/// What a RUN with heredocs executes, following BuildKit's `dispatchRun`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RunScript {
    /// No heredoc: the command as given.
    Command(CommandLine),
    /// A single heredoc starting with `#!`: written to a file with mode 0755 and executed.
    /// BuildKit mounts it read-only under `/dev/pipes/` and runs `/dev/pipes/<name>` through
    /// the shell, like any shell-form RUN.
    Executable {
        /// The file name (the heredoc's name).
        name: String,
        /// The body, leading tabs already removed for `<<-`.
        content: String,
    },
    /// A single plain heredoc: its body (tabs removed for `<<-`) is the shell command.
    ShellBody(String),
    /// A command combined with heredocs: the line and each `body + terminator` joined with
    /// newlines, passed to the shell, which handles the heredocs (and `<<-`) itself.
    Reconstituted(String),
}

impl RunInstruction {
    /// The process arguments: the shell prefix for the shell form (heredocs resolved as
    /// [`RunInstruction::script`] says), or the exec-form arguments.
    pub fn argv(&self, shell: &[String]) -> Vec<String> {
        let with_shell = |s: String| shell.iter().cloned().chain([s]).collect();
        match self.script() {
            RunScript::Command(CommandLine::Exec(args)) => args,
            RunScript::Command(CommandLine::Shell(s)) => with_shell(s),
            RunScript::Executable { name, .. } => with_shell(format!("/dev/pipes/{name}")),
            RunScript::ShellBody(s) | RunScript::Reconstituted(s) => with_shell(s),
        }
    }

    /// What this RUN executes once its heredocs are resolved.
    pub fn script(&self) -> RunScript {
        let CommandLine::Shell(line) = &self.command else {
            return RunScript::Command(self.command.clone());
        };
        if self.heredocs.is_empty() {
            return RunScript::Command(self.command.clone());
        }
        if let (Some((_, chomp)), [doc]) = (heredoc_word(line.trim()), self.heredocs.as_slice()) {
            let content = if chomp || doc.chomp {
                strip_leading_tabs(&doc.content)
            } else {
                doc.content.clone()
            };
            if doc.content.starts_with("#!") {
                return RunScript::Executable {
                    name: doc.name.clone(),
                    content,
                };
            }
            return RunScript::ShellBody(content);
        }
        let mut full = line.clone();
        for doc in &self.heredocs {
            full.push('\n');
            full.push_str(&doc.content);
            full.push_str(&doc.name);
        }
        RunScript::Reconstituted(full)
    }
}

/// Removes leading tabs from every line, as `<<-` does.
pub(crate) fn strip_leading_tabs(content: &str) -> String {
    content
        .split_inclusive('\n')
        .map(|line| line.trim_start_matches('\t'))
        .collect()
}

/// `RUN --network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// The builder's default network.
    #[default]
    Default,
    /// No network.
    None,
    /// The host's network (needs the `network.host` entitlement).
    Host,
}

/// `RUN --security`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityMode {
    /// The normal sandbox.
    #[default]
    Sandbox,
    /// Full privileges (needs the `security.insecure` entitlement).
    Insecure,
}

/// `CMD` or `ENTRYPOINT`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CommandInstruction {
    /// The command.
    pub command: CommandLine,
}

/// `SHELL ["exe", "arg"]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ShellInstruction {
    /// The new shell prefix; never empty.
    pub shell: Vec<String>,
}

/// A key and its value, as in `ENV k=v` or `LABEL k=v`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value (quotes kept until expansion).
    pub value: String,
}

/// `ENV` or `LABEL`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct KeyValueInstruction {
    /// The pairs, in order; never empty.
    pub pairs: Vec<KeyValue>,
    /// True for the legacy `KEY value` form.
    pub legacy: bool,
}

/// One `ARG` declaration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgDeclaration {
    /// The name.
    pub name: String,
    /// The default, if given (quotes kept until expansion).
    pub default: Option<String>,
}

/// `ARG name[=default] ...`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ArgInstruction {
    /// The declarations, in order; never empty.
    pub args: Vec<ArgDeclaration>,
}

/// `EXPOSE port[/proto] ...`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ExposeInstruction {
    /// The port words.
    pub ports: Vec<String>,
}

/// `WORKDIR path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct WorkdirInstruction {
    /// The path; relative paths are resolved against the previous WORKDIR.
    pub path: String,
}

/// `USER user[:group]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct UserInstruction {
    /// The user, with the group if given.
    pub user: String,
}

impl UserInstruction {
    /// The user and the group, split at the first `:`.
    pub fn user_and_group(&self) -> (&str, Option<&str>) {
        match self.user.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (&self.user, None),
        }
    }
}

/// `VOLUME`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct VolumeInstruction {
    /// The paths; none is empty.
    pub paths: Vec<String>,
}

/// `STOPSIGNAL`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct StopSignalInstruction {
    /// The signal name or number.
    pub signal: String,
}

/// `HEALTHCHECK`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HealthcheckInstruction {
    /// `HEALTHCHECK NONE`: disables an inherited check.
    Disable,
    /// `HEALTHCHECK [opts] CMD ...`.
    Check(HealthCheck),
}

/// A health check, as the image config stores it (zero durations and retries mean the
/// runtime's default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct HealthCheck {
    /// `["CMD-SHELL", cmd]` for the shell form, `["CMD", exe, args...]` for the exec form.
    pub test: Vec<String>,
    /// `--interval`.
    pub interval: Duration,
    /// `--timeout`.
    pub timeout: Duration,
    /// `--start-period`.
    pub start_period: Duration,
    /// `--start-interval`.
    pub start_interval: Duration,
    /// `--retries`.
    pub retries: u32,
}

/// `ONBUILD <instruction>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct OnBuildInstruction {
    /// The trigger's text as written (heredoc bodies appended), stored in the image config.
    pub expression: String,
    /// The trigger, typed.
    pub trigger: Box<Instruction>,
}

/// A `--chmod` value: as written, and parsed once it has no variables left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChmodFlag {
    /// The value as written (expanded, in a build plan).
    pub raw: String,
    /// The mode; `None` only before planning, when `raw` still holds a variable.
    pub mode: Option<Chmod>,
}

/// A heredoc used as a COPY or ADD source: a file named after its delimiter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InlineSource {
    /// The file name (the delimiter).
    pub name: String,
    /// The content (tabs removed for `<<-`; expanded in a build plan unless quoted).
    pub data: String,
    /// Whether variables in the content are expanded (the delimiter was not quoted).
    pub expand: bool,
}

/// The sources and destination of COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct FileSources {
    /// Source paths, URLs or Git references, in order.
    pub sources: Vec<String>,
    /// Heredoc sources, in order.
    pub inline: Vec<InlineSource>,
    /// The destination; a trailing `/` means a directory.
    pub dest: String,
    /// True for the JSON array form.
    pub json: bool,
}

impl FileSources {
    /// True when a source path has a `filepath.Match` wildcard: then the destination must be
    /// a directory if the pattern matches several files (known only once the sources are read).
    pub fn has_wildcard(&self) -> bool {
        self.sources.iter().any(|s| s.contains(['*', '?', '[']))
    }
}

/// `COPY`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CopyInstruction {
    /// Sources and destination.
    pub files: FileSources,
    /// `--from`: a stage name or index, a named context, or an image reference.
    pub from: Option<String>,
    /// `--chown`.
    pub chown: Option<String>,
    /// `--chmod`.
    pub chmod: Option<ChmodFlag>,
    /// `--link`.
    pub link: bool,
    /// `--parents`.
    pub parents: bool,
    /// `--exclude`, in order.
    pub excludes: Vec<String>,
}

/// `ADD`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct AddInstruction {
    /// Sources and destination.
    pub files: FileSources,
    /// `--chown`.
    pub chown: Option<String>,
    /// `--chmod`.
    pub chmod: Option<ChmodFlag>,
    /// `--link`.
    pub link: bool,
    /// `--exclude`, in order.
    pub excludes: Vec<String>,
    /// `--checksum`.
    pub checksum: Option<String>,
    /// `--keep-git-dir`.
    pub keep_git_dir: bool,
    /// `--unpack`; `None` keeps the default (local archives unpacked, URLs not).
    pub unpack: Option<bool>,
}

/// `MAINTAINER`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct MaintainerInstruction {
    /// The author.
    pub name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(name: &str, content: &str, chomp: bool) -> Heredoc {
        Heredoc {
            name: name.to_string(),
            fd: 0,
            expand: true,
            chomp,
            content: content.to_string(),
        }
    }

    fn run(line: &str, heredocs: Vec<Heredoc>) -> RunInstruction {
        RunInstruction {
            command: CommandLine::Shell(line.to_string()),
            heredocs,
            mounts: Vec::new(),
            network: NetworkMode::Default,
            security: SecurityMode::Sandbox,
        }
    }

    fn shell() -> Vec<String> {
        vec!["/bin/sh".to_string(), "-c".to_string()]
    }

    #[test]
    fn plain_commands_go_through_the_shell() {
        let r = run("echo hi", Vec::new());
        assert_eq!(r.argv(&shell()), ["/bin/sh", "-c", "echo hi"]);
        let mut exec = run("", Vec::new());
        exec.command = CommandLine::Exec(vec!["echo".into(), "hi".into()]);
        assert_eq!(exec.argv(&shell()), ["echo", "hi"]);
    }

    #[test]
    fn a_shebang_heredoc_is_executed_as_a_file() {
        let r = run(
            "<<EOF",
            vec![doc("EOF", "#!/usr/bin/env python3\nprint(1)\n", false)],
        );
        assert_eq!(
            r.script(),
            RunScript::Executable {
                name: "EOF".into(),
                content: "#!/usr/bin/env python3\nprint(1)\n".into()
            }
        );
        assert_eq!(r.argv(&shell()), ["/bin/sh", "-c", "/dev/pipes/EOF"]);
    }

    #[test]
    fn a_plain_heredoc_is_the_shell_script_with_tabs_stripped_for_chomp() {
        let r = run("<<-EOF", vec![doc("EOF", "\techo a\n\t\techo b\n", true)]);
        assert_eq!(r.script(), RunScript::ShellBody("echo a\necho b\n".into()));
        assert_eq!(r.argv(&shell()), ["/bin/sh", "-c", "echo a\necho b\n"]);
    }

    #[test]
    fn a_command_with_heredocs_is_reconstituted_for_the_shell() {
        let r = run(
            "<<A cat > /a && <<-B cat > /b",
            vec![doc("A", "a\n", false), doc("B", "\tb\n", true)],
        );
        assert_eq!(
            r.script(),
            RunScript::Reconstituted("<<A cat > /a && <<-B cat > /b\na\nA\n\tb\nB".into())
        );
    }

    #[test]
    fn leading_tabs_only() {
        assert_eq!(strip_leading_tabs("\t\ta\tb\n \tc\n\t"), "a\tb\n \tc\n");
    }

    #[test]
    fn user_and_group() {
        let u = UserInstruction {
            user: "app:staff".into(),
        };
        assert_eq!(u.user_and_group(), ("app", Some("staff")));
        let u = UserInstruction {
            user: "1000".into(),
        };
        assert_eq!(u.user_and_group(), ("1000", None));
    }
}
