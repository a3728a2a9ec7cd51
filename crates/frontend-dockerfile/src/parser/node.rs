//! One logical line to one [`Node`]: the keyword, the flags, then the arguments split by the
//! rule BuildKit's parser applies to that keyword.

use super::error::ParseErrorKind;
use super::flags::extract_builder_flags;
use super::words::{parse_words, split_once_whitespace, split_whitespace};
use crate::ast::Node;

/// The arguments of a node, as one of BuildKit's line parsers leaves them.
#[derive(Default)]
struct Arguments {
    args: Vec<String>,
    json: bool,
    sub: Option<Box<Node>>,
    legacy_key_value: bool,
}

/// Parses a joined logical line into a node (lines numbers are set by the caller).
pub(crate) fn node_from_line(line: &str, escape: char) -> Result<Node, ParseErrorKind> {
    let (keyword, flags, rest) = split_command(line, escape);
    let keyword = keyword.to_lowercase();
    let arguments = match keyword.as_str() {
        "run" | "cmd" | "entrypoint" | "shell" => parse_maybe_json(rest)?,
        "add" | "copy" | "volume" => parse_maybe_json_to_list(rest)?,
        "from" | "expose" => Arguments {
            args: split_whitespace(rest),
            ..Arguments::default()
        },
        "env" => parse_name_value(rest, "ENV", escape)?,
        "label" => parse_name_value(rest, "LABEL", escape)?,
        "arg" => Arguments {
            args: parse_words(rest, escape),
            ..Arguments::default()
        },
        "user" | "workdir" | "stopsignal" | "maintainer" => Arguments {
            args: non_empty(rest).map(str::to_owned).into_iter().collect(),
            ..Arguments::default()
        },
        "healthcheck" => parse_healthcheck(rest)?,
        "onbuild" => match non_empty(rest) {
            None => Arguments::default(),
            Some(inner) => Arguments {
                sub: Some(Box::new(node_from_line(inner, escape)?)),
                ..Arguments::default()
            },
        },
        // BuildKit ignores the arguments of an unknown instruction, leaving one empty value;
        // the instruction layer reports the keyword.
        _ => Arguments {
            args: vec![String::new()],
            ..Arguments::default()
        },
    };
    Ok(Node {
        keyword,
        original: line.to_owned(),
        flags,
        args: arguments.args,
        json: arguments.json,
        heredocs: Vec::new(),
        start_line: 0,
        end_line: 0,
        sub: arguments.sub,
        legacy_key_value: arguments.legacy_key_value,
        comments: Vec::new(),
    })
}

/// Splits a line into its keyword (as written), its flags and the trimmed rest.
fn split_command(line: &str, escape: char) -> (&str, Vec<String>, &str) {
    let line = line.trim();
    match split_once_whitespace(line) {
        None => (line, Vec::new(), ""),
        Some((keyword, after)) => {
            let (flags, rest) = extract_builder_flags(after, escape);
            (keyword, flags, rest.trim())
        }
    }
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// The elements of `rest` when it is a JSON array of strings; `None` when it is not JSON
/// (shell form); an error for a JSON array holding anything but strings.
fn parse_json(rest: &str) -> Result<Option<Vec<String>>, ParseErrorKind> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Ok(None);
    }
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(rest) else {
        return Ok(None);
    };
    values
        .into_iter()
        .map(|value| match value {
            serde_json::Value::String(s) => Ok(s),
            _ => Err(ParseErrorKind::JsonNotStrings),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// RUN, CMD, ENTRYPOINT, SHELL: a JSON array, or the rest as one verbatim string.
fn parse_maybe_json(rest: &str) -> Result<Arguments, ParseErrorKind> {
    if rest.is_empty() {
        return Ok(Arguments::default());
    }
    Ok(match parse_json(rest)? {
        Some(args) => Arguments {
            args,
            json: true,
            ..Arguments::default()
        },
        None => Arguments {
            args: vec![rest.to_owned()],
            ..Arguments::default()
        },
    })
}

/// ADD, COPY, VOLUME: a JSON array, or the whitespace-separated words (no quote handling).
fn parse_maybe_json_to_list(rest: &str) -> Result<Arguments, ParseErrorKind> {
    Ok(match parse_json(rest)? {
        Some(args) => Arguments {
            args,
            json: true,
            ..Arguments::default()
        },
        None => Arguments {
            args: split_whitespace(rest),
            ..Arguments::default()
        },
    })
}

/// ENV and LABEL: `k=v k2=v2` (quotes kept), or the legacy `k value...`.
fn parse_name_value(rest: &str, keyword: &str, escape: char) -> Result<Arguments, ParseErrorKind> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else {
        return Ok(Arguments::default());
    };
    if !first.contains('=') {
        let Some((key, value)) = split_once_whitespace(rest) else {
            return Err(ParseErrorKind::MissingValue {
                keyword: keyword.to_owned(),
            });
        };
        return Ok(Arguments {
            args: vec![key.to_owned(), value.to_owned()],
            legacy_key_value: true,
            ..Arguments::default()
        });
    }
    let mut args = Vec::with_capacity(words.len() * 2);
    for word in words {
        let Some((key, value)) = word.split_once('=') else {
            return Err(ParseErrorKind::MissingEquals { word });
        };
        args.push(key.to_owned());
        args.push(value.to_owned());
    }
    Ok(Arguments {
        args,
        ..Arguments::default()
    })
}

/// HEALTHCHECK: the type word verbatim, then the rest parsed like CMD.
fn parse_healthcheck(rest: &str) -> Result<Arguments, ParseErrorKind> {
    let Some(kind) = rest
        .split(char::is_whitespace)
        .next()
        .filter(|k| !k.is_empty())
    else {
        return Ok(Arguments::default());
    };
    let command = rest[kind.len()..].trim_start();
    let mut arguments = parse_maybe_json(command)?;
    arguments.args.insert(0, kind.to_owned());
    Ok(arguments)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Node {
        node_from_line(line, '\\').unwrap()
    }

    #[test]
    fn argument_rules() {
        let cases: &[(&str, &[&str], bool)] = &[
            ("RUN echo \"a  b\"", &["echo \"a  b\""], false),
            ("CMD [\"a\", \"b c\"]", &["a", "b c"], true),
            ("CMD []", &[], true),
            ("CMD", &[], false),
            ("CMD [\"a\", ", &["[\"a\","], false),
            ("CMD ['a']", &["['a']"], false),
            ("COPY \"a b\" c", &["\"a", "b\"", "c"], false),
            ("COPY [\"a b\", \"c\"]", &["a b", "c"], true),
            ("FROM img AS name", &["img", "AS", "name"], false),
            ("ENV a=\"x y\" b=c", &["a", "\"x y\"", "b", "c"], false),
            ("ENV k v  w", &["k", "v  w"], false),
            ("LABEL \"a b\"=c", &["\"a b\"", "c"], false),
            (
                "ARG abc=\"123 456\" def",
                &["abc=\"123 456\"", "def"],
                false,
            ),
            ("USER  a b ", &["a b"], false),
            ("HEALTHCHECK CMD a b", &["CMD", "a b"], false),
            (
                "HEALTHCHECK CMD [\"curl\", \"-f\"]",
                &["CMD", "curl", "-f"],
                true,
            ),
            ("HEALTHCHECK NONE", &["NONE"], false),
            ("HEALTHCHECK CMD", &["CMD"], false),
            ("HEALTHCHECK", &[], false),
            ("FOO bar baz", &[""], false),
            ("Run --mount=x echo", &["echo"], false),
        ];
        for (line, args, json) in cases {
            let node = parse(line);
            assert_eq!(node.args, *args, "{line:?}");
            assert_eq!(node.json, *json, "{line:?}");
        }
        assert!(parse("ENV k v").legacy_key_value);
        assert_eq!(parse("RUN x").keyword, "run");
    }

    #[test]
    fn onbuild_wraps_a_node() {
        let node = parse("ONBUILD --flag COPY --from=x /a /b");
        assert_eq!(node.flags, ["--flag"]);
        assert!(node.args.is_empty());
        let sub = node.sub.unwrap();
        assert_eq!(
            (sub.keyword.as_str(), sub.flags.as_slice()),
            ("copy", ["--from=x".to_owned()].as_slice())
        );
        assert_eq!(sub.args, ["/a", "/b"]);
        assert!(parse("ONBUILD").sub.is_none());
    }

    #[test]
    fn argument_errors() {
        let err = |line| node_from_line(line, '\\').unwrap_err();
        assert_eq!(
            err("ENV PATH"),
            ParseErrorKind::MissingValue {
                keyword: "ENV".into()
            }
        );
        assert_eq!(
            err("LABEL a=b c"),
            ParseErrorKind::MissingEquals { word: "c".into() }
        );
        assert_eq!(err("CMD [\"a\", 1]"), ParseErrorKind::JsonNotStrings);
        assert_eq!(err("COPY [[\"a\"]]"), ParseErrorKind::JsonNotStrings);
        assert_eq!(
            err("ONBUILD ENV PATH"),
            ParseErrorKind::MissingValue {
                keyword: "ENV".into()
            }
        );
    }
}
