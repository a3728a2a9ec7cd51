//! Parser directives (`# escape=`, `# syntax=`, `# check=`) in the leading comment block.
//!
//! BuildKit looks at every line until the first one that is not a known directive, blank
//! lines and ordinary comments included; from then on `# escape=x` is only a comment.

use super::error::ParseErrorKind;
use crate::ast::Directives;

/// Recognises directives and accumulates them into [`Directives`].
pub(crate) struct DirectiveParser {
    done: bool,
    directives: Directives,
}

impl DirectiveParser {
    pub fn new() -> Self {
        DirectiveParser {
            done: false,
            directives: Directives::default(),
        }
    }

    pub fn escape(&self) -> char {
        self.directives.escape
    }

    pub fn into_directives(self) -> Directives {
        self.directives
    }

    /// Looks at the first line of a would-be instruction (newline and leading whitespace
    /// already removed); true when it was a directive. After the first line that is not a
    /// known directive, does nothing.
    pub fn observe(&mut self, line: &str, number: usize) -> Result<bool, ParseErrorKind> {
        if self.done {
            return Ok(false);
        }
        let Some((name, value)) = match_directive(line) else {
            self.done = true;
            return Ok(false);
        };
        let directives = &mut self.directives;
        let (slot_line, value_slot) = match name.as_str() {
            "escape" => (&mut directives.lines.escape, None),
            "syntax" => (&mut directives.lines.syntax, Some(&mut directives.syntax)),
            "check" => (&mut directives.lines.check, Some(&mut directives.check)),
            _ => {
                // An unknown name ends the directive block like any other comment.
                self.done = true;
                return Ok(false);
            }
        };
        if slot_line.is_some() {
            return Err(ParseErrorKind::RepeatedDirective { name });
        }
        *slot_line = Some(number);
        match value_slot {
            Some(slot) => *slot = Some(value.to_owned()),
            None => {
                directives.escape = match value {
                    "\\" => '\\',
                    "`" => '`',
                    _ => {
                        return Err(ParseErrorKind::InvalidEscape {
                            token: value.to_owned(),
                        })
                    }
                }
            }
        }
        Ok(true)
    }
}

/// Go's `\s` in BuildKit's directive regex: ASCII blanks only.
fn is_go_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' ')
}

/// Matches BuildKit's `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`, returning the lowercased
/// name and the value.
fn match_directive(line: &str) -> Option<(String, &str)> {
    let rest = line.strip_prefix('#')?.trim_start_matches(is_go_space);
    let name_len = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(rest.len(), |(i, _)| i);
    if name_len == 0 {
        return None;
    }
    let (name, rest) = rest.split_at(name_len);
    let rest = rest.trim_start_matches(is_go_space).strip_prefix('=')?;
    if rest.is_empty() {
        return None;
    }
    let trimmed = rest.trim_matches(is_go_space);
    let value = if trimmed.is_empty() {
        // `(.+?)` needs one character: for an all-blank value the regex takes the last blank.
        let last = rest.char_indices().last().map_or(0, |(i, _)| i);
        &rest[last..]
    } else {
        trimmed
    };
    Some((name.to_ascii_lowercase(), value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directive_regex() {
        assert_eq!(match_directive("# escape=`"), Some(("escape".into(), "`")));
        assert_eq!(
            match_directive("#  ESCAPE  =  \\  "),
            Some(("escape".into(), "\\"))
        );
        assert_eq!(
            match_directive("#syntax=docker/dockerfile:1"),
            Some(("syntax".into(), "docker/dockerfile:1"))
        );
        assert_eq!(
            match_directive("# check=skip=all;error=true"),
            Some(("check".into(), "skip=all;error=true"))
        );
        assert_eq!(
            match_directive("# foo2=bar baz"),
            Some(("foo2".into(), "bar baz"))
        );
        assert_eq!(match_directive("# escape="), None);
        assert_eq!(match_directive("# escape=  "), Some(("escape".into(), " ")));
        assert_eq!(match_directive("# 2x=y"), None);
        assert_eq!(match_directive("# es-cape=y"), None);
        assert_eq!(match_directive("# just a comment"), None);
        assert_eq!(match_directive("FROM x"), None);
    }

    #[test]
    fn block_ends_at_first_non_directive() {
        let mut p = DirectiveParser::new();
        assert_eq!(p.observe("# syntax=x", 1), Ok(true));
        assert_eq!(p.observe("# foo=bar", 2), Ok(false));
        assert_eq!(p.observe("# escape=`", 3), Ok(false));
        assert_eq!(p.escape(), '\\');
        let d = p.into_directives();
        assert_eq!(d.syntax.as_deref(), Some("x"));
        assert_eq!(d.lines.syntax, Some(1));
    }

    #[test]
    fn repeated_and_invalid() {
        let mut p = DirectiveParser::new();
        p.observe("# escape=`", 1).unwrap();
        assert_eq!(p.escape(), '`');
        assert_eq!(
            p.observe("# Escape=\\", 2),
            Err(ParseErrorKind::RepeatedDirective {
                name: "escape".into()
            })
        );
        let mut p = DirectiveParser::new();
        assert_eq!(
            p.observe("# escape=x", 1),
            Err(ParseErrorKind::InvalidEscape { token: "x".into() })
        );
    }
}
