//! The effect of an expanded instruction on the stage's image config, and the history entry it
//! writes, worded as BuildKit's `dispatch*` functions word them.

use std::collections::BTreeMap;

use crate::instructions::{
    format_go_duration, ChmodFlag, CommandLine, FileSources, HealthcheckInstruction, Instruction,
    InstructionErrorKind,
};
use crate::stages::config::{Empty, HealthcheckConfig, HistoryEntry, ImageConfig};
use crate::stages::InstructionContext;

/// The default shell for Linux targets.
pub(crate) fn default_shell() -> Vec<String> {
    vec!["/bin/sh".to_string(), "-c".to_string()]
}

/// What a stage has done so far.
#[derive(Debug, Clone, Default)]
pub(crate) struct StageState {
    /// The image config so far.
    pub(crate) image: ImageConfig,
    /// The ARGs declared in this stage, in order; `None` for a declared ARG with no value.
    pub(crate) args: Vec<(String, Option<String>)>,
    /// ARG values of the parent stages. BuildKit adds ARG values to the build state's
    /// environment, which a child stage starts from, so they keep their values in RUN and in
    /// expansion, but they are not this stage's ARGs: history does not list them.
    pub(crate) inherited: Vec<(String, String)>,
    /// CMD was set in this stage (ENTRYPOINT then keeps it).
    pub(crate) cmd_set: bool,
    /// A WORKDIR of this Dockerfile ran in this stage or a parent stage.
    pub(crate) workdir_set: bool,
}

impl StageState {
    /// The state for a stage built on this one.
    pub(crate) fn for_child(&self) -> StageState {
        let mut inherited = self.inherited.clone();
        for (k, v) in &self.args {
            if let Some(v) = v {
                set_pair(&mut inherited, k, v);
            }
        }
        StageState {
            image: self.image.clone(),
            args: Vec::new(),
            inherited,
            cmd_set: false,
            workdir_set: self.workdir_set,
        }
    }

    /// ARG values in scope (inherited, then this stage's), without ENV.
    fn arg_values(&self) -> Vec<(String, String)> {
        let mut values = self.inherited.clone();
        for (k, v) in &self.args {
            if let Some(v) = v {
                set_pair(&mut values, k, v);
            }
        }
        values
    }

    /// The state an instruction sees; `proxies` are the proxy build args.
    pub(crate) fn context(&self, proxies: &BTreeMap<String, String>) -> InstructionContext {
        let config = &self.image.config;
        let mut env = config.env_pairs();
        for (k, v) in self.arg_values() {
            // ENV wins over an ARG of the same name.
            if !env.iter().any(|(ek, _)| *ek == k) {
                env.push((k, v));
            }
        }
        let args = self
            .args
            .iter()
            .map(|(k, _)| {
                let shown = env.iter().find(|(ek, _)| ek == k).map(|(_, v)| v.clone());
                (k.clone(), shown.unwrap_or_default())
            })
            .collect();
        let proxy_env = proxies
            .iter()
            .filter(|(k, _)| !self.args.iter().any(|(a, _)| a == *k))
            .filter(|(k, _)| !env.iter().any(|(e, _)| e == *k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        InstructionContext {
            env,
            proxy_env,
            args,
            shell: config.shell.clone().unwrap_or_else(default_shell),
            workdir: config
                .working_dir
                .clone()
                .filter(|w| !w.is_empty())
                .unwrap_or_else(|| "/".to_string()),
            user: config.user.clone().filter(|u| !u.is_empty()),
        }
    }

    /// The variables words are expanded with: ARGs with values, overridden by ENV.
    pub(crate) fn expansion_env(&self) -> BTreeMap<String, String> {
        let mut env: BTreeMap<String, String> = self.arg_values().into_iter().collect();
        env.extend(self.image.config.env_pairs());
        env
    }
}

fn set_pair(pairs: &mut Vec<(String, String)>, key: &str, value: &str) {
    match pairs.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value.to_string(),
        None => pairs.push((key.to_string(), value.to_string())),
    }
}

/// Applies an expanded instruction other than FROM and ARG; returns its history entry (ONBUILD
/// writes none, as in BuildKit).
pub(crate) fn apply(
    state: &mut StageState,
    instruction: &Instruction,
    ctx: &InstructionContext,
) -> Result<Option<HistoryEntry>, InstructionErrorKind> {
    let config = &mut state.image.config;
    let entry = match instruction {
        Instruction::Env(kv) => {
            let mut text = String::from("ENV");
            for pair in &kv.pairs {
                config.set_env(&pair.key, &pair.value);
                text.push_str(&format!(" {}={}", pair.key, pair.value));
            }
            HistoryEntry::new(text, true)
        }
        Instruction::Label(kv) => {
            let labels = config.labels.get_or_insert_with(BTreeMap::new);
            let mut text = String::from("LABEL");
            for pair in &kv.pairs {
                labels.insert(pair.key.clone(), pair.value.clone());
                text.push_str(&format!(" {}={}", pair.key, pair.value));
            }
            HistoryEntry::new(text, true)
        }
        Instruction::Run(run) => {
            let argv = run.argv(&ctx.shell);
            HistoryEntry::new(
                format!("RUN {} # buildkit", run_command_string(&argv, &ctx.args)),
                false,
            )
        }
        Instruction::Cmd(cmd) => {
            let argv = command_argv(&cmd.command, &ctx.shell);
            let text = format!("CMD {}", go_quote_list(&argv));
            config.cmd = Some(argv);
            // BuildKit marks every CMD as escaped (a Docker image-spec field).
            config.args_escaped = Some(true);
            state.cmd_set = true;
            HistoryEntry::new(text, true)
        }
        Instruction::Entrypoint(ep) => {
            let argv = command_argv(&ep.command, &ctx.shell);
            let text = format!("ENTRYPOINT {}", go_quote_list(&argv));
            config.entrypoint = Some(argv);
            // Docker: a new ENTRYPOINT drops the CMD inherited from the base, since it was
            // written for another entrypoint; a CMD of this stage stays.
            if !state.cmd_set {
                config.cmd = None;
            }
            HistoryEntry::new(text, true)
        }
        Instruction::Shell(sh) => {
            config.shell = Some(sh.shell.clone());
            HistoryEntry::new(format!("SHELL [{}]", sh.shell.join(" ")), true)
        }
        Instruction::Expose(e) => {
            let mut ports = Vec::new();
            for word in &e.ports {
                ports.extend(parse_port_spec(word)?);
            }
            let text = format!("EXPOSE [{}]", ports.join(" "));
            config
                .exposed_ports
                .get_or_insert_with(BTreeMap::new)
                .extend(ports.into_iter().map(|p| (p, Empty {})));
            HistoryEntry::new(text, true)
        }
        Instruction::Workdir(w) => {
            if w.path.is_empty() {
                return Err(InstructionErrorKind::EmptyValue {
                    instruction: "WORKDIR",
                });
            }
            let wd = resolve_workdir(&ctx.workdir, &w.path);
            config.working_dir = Some(wd.clone());
            // Docker creates the directory in a layer, except for `/` which always exists.
            let empty = wd == "/";
            HistoryEntry::new(format!("WORKDIR {wd}"), empty)
        }
        Instruction::User(u) => {
            config.user = Some(u.user.clone());
            HistoryEntry::new(format!("USER {}", u.user), true)
        }
        Instruction::Volume(v) => {
            let volumes = config.volumes.get_or_insert_with(BTreeMap::new);
            for p in &v.paths {
                volumes.insert(p.clone(), Empty {});
            }
            HistoryEntry::new(format!("VOLUME [{}]", v.paths.join(" ")), true)
        }
        Instruction::StopSignal(s) => {
            if !valid_signal(&s.signal) {
                return Err(InstructionErrorKind::InvalidSignal {
                    value: s.signal.clone(),
                });
            }
            config.stop_signal = Some(s.signal.clone());
            HistoryEntry::new(format!("STOPSIGNAL {}", s.signal), true)
        }
        Instruction::Healthcheck(h) => {
            let hc = match h {
                HealthcheckInstruction::Disable => HealthcheckConfig {
                    test: vec!["NONE".to_string()],
                    ..HealthcheckConfig::default()
                },
                HealthcheckInstruction::Check(c) => HealthcheckConfig {
                    test: c.test.clone(),
                    interval: c.interval.as_nanos() as u64,
                    timeout: c.timeout.as_nanos() as u64,
                    start_period: c.start_period.as_nanos() as u64,
                    start_interval: c.start_interval.as_nanos() as u64,
                    retries: c.retries,
                },
            };
            let text = healthcheck_history(&hc);
            config.healthcheck = Some(hc);
            HistoryEntry::new(text, true)
        }
        Instruction::OnBuild(o) => {
            config
                .on_build
                .get_or_insert_with(Vec::new)
                .push(o.expression.clone());
            return Ok(None);
        }
        Instruction::Copy(c) => {
            let mut flags = Vec::new();
            if c.parents {
                flags.push("--parents".to_string());
            }
            copy_flags(&mut flags, &c.chown, &c.chmod);
            HistoryEntry::new(copy_history("COPY", &flags, &c.files), false)
        }
        Instruction::Add(a) => {
            let mut flags = Vec::new();
            copy_flags(&mut flags, &a.chown, &a.chmod);
            HistoryEntry::new(copy_history("ADD", &flags, &a.files), false)
        }
        Instruction::Maintainer(m) => {
            state.image.author = Some(m.name.clone());
            HistoryEntry::new(format!("MAINTAINER {}", m.name), true)
        }
        // FROM and ARG are handled by the stage walk; a variant added later changes nothing.
        _ => HistoryEntry::new(instruction.keyword().to_string(), true),
    };
    Ok(Some(entry))
}

fn copy_flags(flags: &mut Vec<String>, chown: &Option<String>, chmod: &Option<ChmodFlag>) {
    if let Some(chown) = chown {
        flags.push(format!("--chown={chown}"));
    }
    if let Some(chmod) = chmod {
        flags.push(format!("--chmod={}", chmod.raw));
    }
}

/// The argv of CMD or ENTRYPOINT: the shell form goes through the current SHELL.
fn command_argv(command: &CommandLine, shell: &[String]) -> Vec<String> {
    match command {
        CommandLine::Exec(args) => args.clone(),
        CommandLine::Shell(s) => shell.iter().cloned().chain([s.clone()]).collect(),
    }
}

/// BuildKit's `runCommandString`: `|N k=v … argv…`, the ARGs first so that the history shows
/// what the step was built with.
fn run_command_string(argv: &[String], args: &[(String, String)]) -> String {
    let mut parts = Vec::new();
    if !args.is_empty() {
        parts.push(format!("|{}", args.len()));
        parts.extend(args.iter().map(|(k, v)| format!("{k}={v}")));
    }
    parts.extend(argv.iter().cloned());
    parts.join(" ")
}

/// `COPY [--parents] [--chown=…] [--chmod=…] src… <<heredoc… dest # buildkit`.
fn copy_history(keyword: &str, flags: &[String], files: &FileSources) -> String {
    let mut text = keyword.to_string();
    for flag in flags {
        text.push(' ');
        text.push_str(flag);
    }
    for s in &files.sources {
        text.push(' ');
        text.push_str(s);
    }
    for inline in &files.inline {
        text.push_str(" <<");
        text.push_str(&inline.name);
    }
    text.push(' ');
    text.push_str(&files.dest);
    text.push_str(" # buildkit");
    text
}

/// Go's `fmt.Sprintf("%q", []string{…})`: `["a" "b"]`.
fn go_quote_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", quoted.join(" "))
}

/// Go's `strconv.Quote`.
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            _ => push_escaped(&mut out, c),
        }
    }
    out.push('"');
    out
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\x07' => out.push_str("\\a"),
        '\x08' => out.push_str("\\b"),
        '\x0c' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\x0b' => out.push_str("\\v"),
        c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
        c if (0x80..0xa0).contains(&(c as u32)) => out.push_str(&format!("\\u{:04x}", c as u32)),
        c => out.push(c),
    }
}

/// BuildKit writes `fmt.Sprintf("HEALTHCHECK %q", config)`: the struct with each duration
/// quoted through its `String` method and the retry count quoted as a rune.
fn healthcheck_history(hc: &HealthcheckConfig) -> String {
    let rune = char::from_u32(hc.retries).unwrap_or('\u{fffd}');
    let mut retries = String::from("'");
    match rune {
        '\'' => retries.push_str("\\'"),
        '\\' => retries.push_str("\\\\"),
        c => push_escaped(&mut retries, c),
    }
    retries.push('\'');
    format!(
        "HEALTHCHECK &{{{} \"{}\" \"{}\" \"{}\" \"{}\" {}}}",
        go_quote_list(&hc.test),
        format_go_duration(hc.interval),
        format_go_duration(hc.timeout),
        format_go_duration(hc.start_period),
        format_go_duration(hc.start_interval),
        retries
    )
}

/// `80` → `80/tcp`; `53/udp`; `8000-8002` → three ports; `host:port` keeps the port, as
/// Docker's `nat.ParsePortSpecs` does.
pub(crate) fn parse_port_spec(word: &str) -> Result<Vec<String>, InstructionErrorKind> {
    let invalid = || InstructionErrorKind::InvalidPort {
        value: word.to_string(),
    };
    let (ports, proto) = match word.rsplit_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (word, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(invalid());
    }
    let ports = ports.rsplit(':').next().unwrap_or(ports);
    let parse = |p: &str| p.parse::<u16>().map_err(|_| invalid());
    let (start, end) = match ports.split_once('-') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => {
            let p = parse(ports)?;
            (p, p)
        }
    };
    if end < start {
        return Err(invalid());
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

/// A relative WORKDIR is joined to the current one; the result is cleaned like Go's
/// `path.Clean`.
pub(crate) fn resolve_workdir(current: &str, path: &str) -> String {
    let joined = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{current}/{path}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Signal names and numbers as Docker's `signal.ParseSignal` accepts them for Linux.
fn valid_signal(value: &str) -> bool {
    if let Ok(n) = value.parse::<u32>() {
        return (1..=64).contains(&n);
    }
    let upper = value.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    const NAMES: &[&str] = &[
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT",
        "KILL", "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM",
        "TRAP", "TSTP", "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ",
        "RTMIN", "RTMAX", "UNUSED",
    ];
    if NAMES.contains(&name) {
        return true;
    }
    let offset = |prefix: &str, sep: char| {
        name.strip_prefix(prefix)
            .and_then(|r| r.strip_prefix(sep))
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| (1..=15).contains(&n))
    };
    offset("RTMIN", '+') || offset("RTMAX", '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(parse_port_spec("80").unwrap(), ["80/tcp"]);
        assert_eq!(parse_port_spec("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(
            parse_port_spec("8000-8002").unwrap(),
            ["8000/tcp", "8001/tcp", "8002/tcp"]
        );
        assert_eq!(parse_port_spec("127.0.0.1:8080:80").unwrap(), ["80/tcp"]);
        for bad in ["", "http", "70000", "80/icmp", "9-3"] {
            assert!(parse_port_spec(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn workdirs() {
        assert_eq!(resolve_workdir("/", "app"), "/app");
        assert_eq!(resolve_workdir("/app", "sub/../x/"), "/app/x");
        assert_eq!(resolve_workdir("/app", "/opt/./y"), "/opt/y");
        assert_eq!(resolve_workdir("/a", ".."), "/");
    }

    #[test]
    fn signals() {
        for ok in ["SIGTERM", "term", "9", "SIGRTMIN+3", "RTMAX-1", "sigkill"] {
            assert!(valid_signal(ok), "{ok}");
        }
        for bad in ["SIGFOO", "0", "65", "", "RTMIN+16"] {
            assert!(!valid_signal(bad), "{bad}");
        }
    }

    #[test]
    fn go_quoting() {
        assert_eq!(
            go_quote_list(&["/bin/sh".into(), "-c".into(), "echo \"hi\"\n".into()]),
            r#"["/bin/sh" "-c" "echo \"hi\"\n"]"#
        );
        let hc = HealthcheckConfig {
            test: vec![
                "CMD-SHELL".into(),
                "curl -f http://localhost/ || exit 1".into(),
            ],
            interval: 30_000_000_000,
            timeout: 3_000_000_000,
            retries: 3,
            ..HealthcheckConfig::default()
        };
        assert_eq!(
            healthcheck_history(&hc),
            r#"HEALTHCHECK &{["CMD-SHELL" "curl -f http://localhost/ || exit 1"] "30s" "3s" "0s" "0s" '\x03'}"#
        );
    }

    #[test]
    fn run_history_lists_args_first() {
        let argv = vec!["/bin/sh".to_string(), "-c".to_string(), "make".to_string()];
        assert_eq!(run_command_string(&argv, &[]), "/bin/sh -c make");
        let args = vec![("V".to_string(), "1".to_string())];
        assert_eq!(run_command_string(&argv, &args), "|1 V=1 /bin/sh -c make");
    }
}
