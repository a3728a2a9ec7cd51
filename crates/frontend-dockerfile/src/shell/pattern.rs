//! Shell patterns of `${v#p}`, `${v%p}` and `${v/p/r}`, matched the way BuildKit does: through
//! a regex, so leftmost-first with `*` greedy or lazy, and `*`/`?` never matching a newline.

use regex::Regex;

use super::{is_decimal_digit, is_letter, Scanner};

/// Why a pattern could not be used.
pub(super) enum PatternFault {
    InvalidEscape(Option<char>),
    TooLarge(regex::Error),
}

/// Translates a shell pattern into a regex: `*` any run (shortest unless `greedy`), `?` any one
/// character, `\*` `\?` `\\` those characters, `\}` `\/` (escaped only to get them through the
/// `${…}` syntax) those characters; everything else literal. As in Go's regexp, which BuildKit
/// uses, `*` and `?` do not match a newline.
pub(super) fn shell_pattern_regex(
    pattern: &str,
    greedy: bool,
    anchored: bool,
) -> Result<Regex, PatternFault> {
    let mut scanner = Scanner::new(pattern);
    let mut out = String::with_capacity(pattern.len() + 8);
    if anchored {
        out.push('^');
    }
    let star = if greedy { ".*" } else { ".*?" };
    let mut literal = [0u8; 4];
    while let Some(tok) = scanner.next() {
        let tok = match tok {
            '*' => {
                out.push_str(star);
                continue;
            }
            '?' => {
                out.push('.');
                continue;
            }
            '\\' => {
                if matches!(scanner.peek(), Some('}' | '/')) {
                    continue;
                }
                match scanner.next() {
                    Some(escaped @ ('*' | '?' | '\\')) => escaped,
                    other => return Err(PatternFault::InvalidEscape(other)),
                }
            }
            other => other,
        };
        out.push_str(&regex::escape(tok.encode_utf8(&mut literal)));
    }
    Regex::new(&out).map_err(PatternFault::TooLarge)
}

pub(super) fn trim_prefix(
    pattern: &str,
    value: &str,
    greedy: bool,
) -> Result<String, PatternFault> {
    let re = shell_pattern_regex(pattern, greedy, true)?;
    Ok(match re.find(value) {
        Some(m) => value[m.end()..].to_owned(),
        None => value.to_owned(),
    })
}

pub(super) fn trim_suffix(
    pattern: &str,
    value: &str,
    greedy: bool,
) -> Result<String, PatternFault> {
    // A regex finds the leftmost match, not the shortest rightmost one, so match the reversed
    // pattern against the reversed value instead.
    let reversed = trim_prefix(
        &reverse_pattern(pattern),
        &value.chars().rev().collect::<String>(),
        greedy,
    )?;
    Ok(reversed.chars().rev().collect())
}

/// Reverses a pattern but keeps each escape before the character it escapes: `a\*c` -> `c\*a`.
fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens: Vec<&[char]> = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        let len = if chars[i] == '\\' && i + 1 < chars.len() {
            2
        } else {
            1
        };
        tokens.push(&chars[i..i + len]);
        i += len;
    }
    tokens.iter().rev().flat_map(|t| t.iter()).collect()
}

/// Go's `Regexp.ReplaceAllString`, which BuildKit uses for `${v//p/r}`: the replacement is a
/// template in which `$0`/`${0}` is the match, `$$` is `$`, any other `$name` is empty and a
/// malformed `$` is literal. Empty matches right after a match are skipped, as in Go.
pub(super) fn replace_all_go(re: &Regex, value: &str, template: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut last = 0;
    for m in re.find_iter(value) {
        out.push_str(&value[last..m.start()]);
        expand_go_template(&mut out, template, m.as_str());
        last = m.end();
    }
    out.push_str(&value[last..]);
    out
}

fn expand_go_template(out: &mut String, template: &str, matched: &str) {
    let mut rest = template;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        rest = &rest[dollar + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        match go_template_reference(rest) {
            Some((name, after)) => {
                if name == "0" {
                    out.push_str(matched);
                }
                rest = after;
            }
            None => out.push('$'),
        }
    }
    out.push_str(rest);
}

/// Parses `name` or `{name}` after a `$` in a Go replacement template; `None` if malformed.
fn go_template_reference(text: &str) -> Option<(&str, &str)> {
    let (body, braced) = match text.strip_prefix('{') {
        Some(body) => (body, true),
        None => (text, false),
    };
    let end = body
        .char_indices()
        .find(|&(_, c)| !(is_letter(c) || is_decimal_digit(c) || c == '_'))
        .map_or(body.len(), |(i, _)| i);
    if end == 0 {
        return None;
    }
    let name = &body[..end];
    let rest = if braced {
        body[end..].strip_prefix('}')?
    } else {
        &body[end..]
    };
    Some((name, rest))
}
