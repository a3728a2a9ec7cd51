//! Instruction flags (`--from=x`, `--link`), parsed the way BuildKit's `bflag.go` does.

use std::collections::BTreeMap;

use crate::instructions::error::{suggest, InstructionErrorKind};

/// How a flag takes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlagKind {
    /// `--f` (true) or `--f=true|false`.
    Bool,
    /// `--f=v`; given once.
    String,
    /// `--f=v`; may be given several times.
    Strings,
}

/// The flags an instruction takes.
pub(crate) type FlagSpec = &'static [(&'static str, FlagKind)];

#[derive(Debug, Clone, PartialEq, Eq)]
enum FlagValue {
    Bool(bool),
    String(String),
    Strings(Vec<String>),
}

/// The flags given to one instruction, checked against its [`FlagSpec`].
#[derive(Debug, Default)]
pub(crate) struct Flags {
    values: BTreeMap<&'static str, FlagValue>,
}

impl Flags {
    /// Parses `--name[=value]` words. Flag names are case-sensitive, as in BuildKit.
    pub(crate) fn parse(raw: &[String], spec: FlagSpec) -> Result<Flags, InstructionErrorKind> {
        let mut flags = Flags::default();
        for word in raw {
            let body = word.strip_prefix("--").unwrap_or(word);
            let (name, value) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (body, None),
            };
            let Some(&(name, kind)) = spec.iter().find(|(n, _)| *n == name) else {
                return Err(InstructionErrorKind::UnknownFlag {
                    flag: name.to_string(),
                    suggestion: suggest(name, spec.iter().map(|(n, _)| *n)),
                });
            };
            if kind != FlagKind::Strings && flags.values.contains_key(name) {
                return Err(InstructionErrorKind::DuplicateFlag {
                    flag: name.to_string(),
                });
            }
            let value = match (kind, value) {
                (FlagKind::Bool, None) => FlagValue::Bool(true),
                (FlagKind::Bool, Some(v)) => FlagValue::Bool(parse_bool(v).ok_or_else(|| {
                    InstructionErrorKind::NotBoolean {
                        flag: name.to_string(),
                        value: v.to_string(),
                    }
                })?),
                (_, None) => {
                    return Err(InstructionErrorKind::MissingFlagValue {
                        flag: name.to_string(),
                    })
                }
                (FlagKind::String, Some(v)) => FlagValue::String(v.to_string()),
                (FlagKind::Strings, Some(v)) => {
                    if let Some(FlagValue::Strings(list)) = flags.values.get_mut(name) {
                        list.push(v.to_string());
                        continue;
                    }
                    FlagValue::Strings(vec![v.to_string()])
                }
            };
            flags.values.insert(name, value);
        }
        Ok(flags)
    }

    /// The value of a boolean flag, `None` when not given.
    pub(crate) fn bool(&self, name: &str) -> Option<bool> {
        match self.values.get(name) {
            Some(FlagValue::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    /// The value of a string flag, `None` when not given.
    pub(crate) fn string(&self, name: &str) -> Option<String> {
        match self.values.get(name) {
            Some(FlagValue::String(s)) => Some(s.clone()),
            _ => None,
        }
    }

    /// Every value of a repeatable flag, in order.
    pub(crate) fn strings(&self, name: &str) -> Vec<String> {
        match self.values.get(name) {
            Some(FlagValue::Strings(list)) => list.clone(),
            _ => Vec::new(),
        }
    }
}

/// Go's `strconv.ParseBool`, which BuildKit uses for flag and mount values.
pub(crate) fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: FlagSpec = &[
        ("link", FlagKind::Bool),
        ("from", FlagKind::String),
        ("exclude", FlagKind::Strings),
    ];

    fn parse(words: &[&str]) -> Result<Flags, InstructionErrorKind> {
        let words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        Flags::parse(&words, SPEC)
    }

    #[test]
    fn booleans_take_an_optional_value() {
        assert_eq!(parse(&["--link"]).unwrap().bool("link"), Some(true));
        assert_eq!(parse(&["--link=false"]).unwrap().bool("link"), Some(false));
        assert_eq!(parse(&["--link=TRUE"]).unwrap().bool("link"), Some(true));
        assert_eq!(parse(&[]).unwrap().bool("link"), None);
        let err = parse(&["--link=yes"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "expecting boolean value for flag --link, not: yes"
        );
    }

    #[test]
    fn strings_need_a_value_and_may_be_empty() {
        assert_eq!(
            parse(&["--from=build"]).unwrap().string("from").as_deref(),
            Some("build")
        );
        assert_eq!(
            parse(&["--from="]).unwrap().string("from").as_deref(),
            Some("")
        );
        let err = parse(&["--from"]).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("missing a value on flag: --from"));
    }

    #[test]
    fn repeatable_flags_collect_in_order() {
        let flags = parse(&["--exclude=a", "--exclude=b"]).unwrap();
        assert_eq!(flags.strings("exclude"), vec!["a", "b"]);
    }

    #[test]
    fn duplicates_and_unknown_flags_are_errors() {
        let err = parse(&["--from=a", "--from=b"]).unwrap_err();
        assert_eq!(err.to_string(), "duplicate flag specified: --from");
        let err = parse(&["--link", "--link"]).unwrap_err();
        assert_eq!(err.to_string(), "duplicate flag specified: --link");
        let err = parse(&["--form=a"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown flag: --form (did you mean --from?)"
        );
        let err = parse(&["--zzz"]).unwrap_err();
        assert_eq!(err.to_string(), "unknown flag: --zzz");
    }
}
