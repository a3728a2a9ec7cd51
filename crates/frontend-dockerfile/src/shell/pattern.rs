//! Shell patterns of `${v#p}`, `${v%p}` and `${v/p/r}`.
//!
//! BuildKit compiles these to Go regexes and takes the leftmost-first match (`*` greedy or lazy,
//! `*` and `?` never matching a newline, as Go's `.` does not). Compiling a regex per expansion
//! is slow, so this module matches the same tokens directly with a backtracking search that
//! explores alternatives in the regex's priority order, which yields exactly the leftmost-first
//! match; failed states are remembered, so the search stays polynomial.

use std::collections::HashMap;

use super::expand::{is_decimal_digit, is_letter, Scanner};

/// Why a pattern could not be used.
pub(super) enum PatternFault {
    /// `\` followed by something other than `*`, `?`, `\`, `}` or `/` (`None`: by nothing).
    InvalidEscape(Option<char>),
    /// More than [`MAX_STARS`] separate `*`.
    TooManyStars,
    /// `${v//p/r}` would produce more than [`MAX_REPLACE_ALL_BYTES`].
    ResultTooLarge,
}

/// Bound on the result of one `${v//p/r}`. Replacing every match inserts `r` up to
/// `len(v) + 1` times, so nested replacements grow exponentially with the nesting depth (a
/// 1.4 kB word can expand to 89 MB); no real Dockerfile comes near this bound.
pub(super) const MAX_REPLACE_ALL_BYTES: usize = 4 << 20;

/// Bound on separate `*` in one pattern; the matcher recurses once per star.
pub(super) const MAX_STARS: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Literal(char),
    /// `?`: any character but a newline.
    AnyChar,
    /// `*`: any run of characters without a newline.
    AnyRun,
}

/// A parsed pattern; `greedy` decides whether `*` prefers the longest or the shortest run.
pub(super) struct ShellPattern {
    tokens: Vec<Token>,
    greedy: bool,
}

impl ShellPattern {
    /// Parses a pattern: `*`, `?`, the escapes `\*` `\?` `\\`, and `\}` `\/`, whose backslash
    /// only carried the character through the `${…}` syntax; everything else is literal.
    pub(super) fn parse(pattern: &str, greedy: bool) -> Result<ShellPattern, PatternFault> {
        let mut scanner = Scanner::new(pattern);
        let mut tokens = Vec::with_capacity(pattern.len());
        while let Some(ch) = scanner.next() {
            let token = match ch {
                // Consecutive stars match exactly what one star matches.
                '*' if tokens.last() == Some(&Token::AnyRun) => continue,
                '*' => Token::AnyRun,
                '?' => Token::AnyChar,
                '\\' => {
                    if matches!(scanner.peek(), Some('}' | '/')) {
                        continue;
                    }
                    match scanner.next() {
                        Some(escaped @ ('*' | '?' | '\\')) => Token::Literal(escaped),
                        other => return Err(PatternFault::InvalidEscape(other)),
                    }
                }
                other => Token::Literal(other),
            };
            tokens.push(token);
        }
        if tokens.iter().filter(|&&t| t == Token::AnyRun).count() > MAX_STARS {
            return Err(PatternFault::TooManyStars);
        }
        Ok(ShellPattern { tokens, greedy })
    }
}

/// One search of a pattern in a text.
///
/// Literal tokens are matched in a loop; only stars recurse, so the depth is bounded by
/// [`MAX_STARS`]. For each star the answer from a position is remembered so that every
/// (star, position) pair is settled once: a greedy star from `pos` takes the largest successful
/// end of its newline-free run if that end is at or after `pos`, and a lazy star takes the
/// smallest successful end at or after `pos`.
struct Search<'p, 't> {
    pattern: &'p ShellPattern,
    text: &'t str,
    /// Byte offsets of the newlines in `text`, which `*` cannot cross.
    newlines: Vec<usize>,
    /// Greedy stars: `(token, run end)` -> what is known about the run.
    greedy: HashMap<(usize, usize), GreedyRun>,
    /// Lazy stars: `(token, position)` -> the end of the match from there.
    lazy: HashMap<(usize, usize), Option<usize>>,
}

#[derive(Clone, Copy)]
enum GreedyRun {
    /// The largest end the star can stop at for the rest to match, and that match's end.
    Best { stop: usize, end: usize },
    /// No stop at or after this position lets the rest match.
    FailsFrom(usize),
}

impl<'p, 't> Search<'p, 't> {
    fn new(pattern: &'p ShellPattern, text: &'t str) -> Self {
        Search {
            pattern,
            text,
            newlines: text.match_indices('\n').map(|(i, _)| i).collect(),
            greedy: HashMap::new(),
            lazy: HashMap::new(),
        }
    }

    /// The end of the preferred match starting exactly at `start`, if any.
    fn match_at(&mut self, start: usize) -> Option<usize> {
        self.match_from(0, start)
    }

    fn match_from(&mut self, mut token: usize, mut pos: usize) -> Option<usize> {
        loop {
            let Some(&current) = self.pattern.tokens.get(token) else {
                return Some(pos);
            };
            let rest = &self.text[pos..];
            match current {
                Token::Literal(ch) if rest.starts_with(ch) => pos += ch.len_utf8(),
                Token::Literal(_) => return None,
                Token::AnyChar => match rest.chars().next() {
                    Some(ch) if ch != '\n' => pos += ch.len_utf8(),
                    _ => return None,
                },
                Token::AnyRun if self.pattern.greedy => return self.greedy_star(token, pos),
                Token::AnyRun => return self.lazy_star(token, pos),
            }
            token += 1;
        }
    }

    /// The end of the newline-free run that starts at `pos`.
    fn run_end(&self, pos: usize) -> usize {
        let next = self.newlines.partition_point(|&n| n < pos);
        self.newlines.get(next).copied().unwrap_or(self.text.len())
    }

    fn greedy_star(&mut self, token: usize, pos: usize) -> Option<usize> {
        let run_end = self.run_end(pos);
        // Stops at or above `upper` are known to fail (`None`: nothing is known yet).
        let upper = match self.greedy.get(&(token, run_end)) {
            Some(&GreedyRun::Best { stop, end }) => return (pos <= stop).then_some(end),
            Some(&GreedyRun::FailsFrom(lowest)) if pos >= lowest => return None,
            Some(&GreedyRun::FailsFrom(lowest)) => Some(lowest),
            None => None,
        };
        let stops: Vec<usize> = match upper {
            Some(lowest) => char_boundaries(self.text, pos, lowest).collect(),
            None => char_boundaries(self.text, pos, run_end)
                .chain(std::iter::once(run_end))
                .collect(),
        };
        for stop in stops.into_iter().rev() {
            if let Some(end) = self.match_from(token + 1, stop) {
                self.greedy
                    .insert((token, run_end), GreedyRun::Best { stop, end });
                return Some(end);
            }
        }
        self.greedy
            .insert((token, run_end), GreedyRun::FailsFrom(pos));
        None
    }

    fn lazy_star(&mut self, token: usize, pos: usize) -> Option<usize> {
        if let Some(&known) = self.lazy.get(&(token, pos)) {
            return known;
        }
        let run_end = self.run_end(pos);
        let mut tried = Vec::new();
        let mut answer = None;
        for stop in char_boundaries(self.text, pos, run_end).chain(std::iter::once(run_end)) {
            // Every stop before this one failed, so the answer from here is the answer.
            if let Some(&known) = self.lazy.get(&(token, stop)) {
                answer = known;
                break;
            }
            tried.push(stop);
            if let Some(end) = self.match_from(token + 1, stop) {
                answer = Some(end);
                break;
            }
        }
        for stop in tried {
            self.lazy.insert((token, stop), answer);
        }
        answer
    }

    /// The leftmost match at or after `from`: its start and end.
    fn find_from(&mut self, from: usize) -> Option<(usize, usize)> {
        let text = self.text;
        text[from..]
            .char_indices()
            .map(|(i, _)| from + i)
            .chain(std::iter::once(text.len()))
            .find_map(|start| self.match_at(start).map(|end| (start, end)))
    }
}

/// The byte offsets of the characters of `text[from..to]`.
fn char_boundaries(text: &str, from: usize, to: usize) -> impl Iterator<Item = usize> + '_ {
    text[from..to].char_indices().map(move |(i, _)| from + i)
}

/// `${v#p}` / `${v##p}`: `value` without the shortest / longest prefix matching `pattern`.
pub(super) fn trim_prefix(
    pattern: &str,
    value: &str,
    greedy: bool,
) -> Result<String, PatternFault> {
    let pattern = ShellPattern::parse(pattern, greedy)?;
    Ok(match Search::new(&pattern, value).match_at(0) {
        Some(end) => value[end..].to_owned(),
        None => value.to_owned(),
    })
}

/// `${v%p}` / `${v%%p}`: `value` without the shortest / longest suffix matching `pattern`.
pub(super) fn trim_suffix(
    pattern: &str,
    value: &str,
    greedy: bool,
) -> Result<String, PatternFault> {
    // A leftmost search cannot find the shortest rightmost match, so BuildKit matches the
    // reversed pattern against the reversed value; the results differ from a true suffix
    // search in corner cases, and those are reproduced too.
    let reversed = trim_prefix(
        &reverse_pattern(pattern),
        &value.chars().rev().collect::<String>(),
        greedy,
    )?;
    Ok(reversed.chars().rev().collect())
}

/// `${v/p/r}` and `${v//p/r}`: `*` is greedy, the first (or every) match is replaced.
pub(super) fn replace(
    pattern: &str,
    value: &str,
    replacement: &str,
    all: bool,
) -> Result<String, PatternFault> {
    let pattern = ShellPattern::parse(pattern, true)?;
    let mut search = Search::new(&pattern, value);
    if !all {
        // The first match is replaced by the replacement text as is.
        return Ok(match search.find_from(0) {
            Some((start, end)) => [&value[..start], replacement, &value[end..]].concat(),
            None => value.to_owned(),
        });
    }
    // Go's Regexp.ReplaceAllString: the replacement is a template, and an empty match right
    // after the previous match is not replaced.
    let mut out = String::with_capacity(value.len());
    let mut from = 0;
    let mut last_end = 0;
    while from <= value.len() {
        let Some((start, end)) = search.find_from(from) else {
            break;
        };
        out.push_str(&value[last_end..start]);
        if end > last_end || start == 0 {
            expand_go_template(&mut out, replacement, &value[start..end]);
            if out.len() > MAX_REPLACE_ALL_BYTES {
                return Err(PatternFault::ResultTooLarge);
            }
        }
        last_end = end;
        let width = value[from..].chars().next().map_or(0, char::len_utf8);
        from = if from + width > end {
            from + width
        } else if from + 1 > end {
            from + 1
        } else {
            end
        };
    }
    out.push_str(&value[last_end..]);
    Ok(out)
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

/// Expands a Go replacement template: `$0`/`${0}` is the match, `$$` is `$`, any other `$name`
/// (there are no capture groups) is empty, and a malformed `$` is literal.
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The same searches through the regex engine, whose leftmost-first semantics BuildKit
    /// relies on, must agree with the direct matcher.
    fn regex_for(pattern: &str, greedy: bool, anchored: bool) -> regex::Regex {
        let parsed = ShellPattern::parse(pattern, greedy)
            .ok()
            .expect("valid pattern");
        let mut re = String::from(if anchored { "^" } else { "" });
        for token in parsed.tokens {
            match token {
                Token::Literal(ch) => re.push_str(&regex::escape(&ch.to_string())),
                Token::AnyChar => re.push('.'),
                Token::AnyRun => re.push_str(if greedy { ".*" } else { ".*?" }),
            }
        }
        regex::Regex::new(&re).unwrap()
    }

    #[test]
    fn agrees_with_leftmost_first_regex_matching() {
        let values = [
            "", "a", "aaa", "abcabc", "a.b.c.d", "x/y/z/", "ab\ncd", "ééa", "aXbXc", "--x--",
        ];
        let patterns = [
            "", "a", "*", "?", "a*", "*a", "a*c", "*b*", "?*?", "a?c", "*.", ".*", "*/", "/*",
            "*-", "-*", "b*b", "\\*", "a**c", "*x*", "é?",
        ];
        for pattern in patterns {
            for greedy in [false, true] {
                let anchored = regex_for(pattern, greedy, true);
                let unanchored = regex_for(pattern, greedy, false);
                let parsed = ShellPattern::parse(pattern, greedy).ok().unwrap();
                for value in values {
                    assert_eq!(
                        Search::new(&parsed, value).match_at(0),
                        anchored.find(value).map(|m| m.end()),
                        "anchored {pattern:?} greedy={greedy} on {value:?}"
                    );
                    assert_eq!(
                        Search::new(&parsed, value).find_from(0),
                        unanchored.find(value).map(|m| (m.start(), m.end())),
                        "find {pattern:?} greedy={greedy} on {value:?}"
                    );
                    if greedy {
                        let expected = {
                            let mut out = String::new();
                            let mut last = 0;
                            for m in unanchored.find_iter(value) {
                                out.push_str(&value[last..m.start()]);
                                out.push('<');
                                out.push_str(m.as_str());
                                out.push('>');
                                last = m.end();
                            }
                            out.push_str(&value[last..]);
                            out
                        };
                        assert_eq!(
                            replace(pattern, value, "<$0>", true).ok().unwrap(),
                            expected,
                            "replace all {pattern:?} on {value:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn random_patterns_agree_with_regex() {
        // A small deterministic generator: the alphabet is chosen so that stars interact.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |bound: u64| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            (state >> 33) % bound
        };
        let pick = |alphabet: &[&str], len: u64, next: &mut dyn FnMut(u64) -> u64| {
            (0..len)
                .map(|_| alphabet[next(alphabet.len() as u64) as usize])
                .collect::<String>()
        };
        for _ in 0..3_000 {
            let pattern_len = next(7);
            let pattern = pick(&["a", "b", "*", "*", "?", "\\*"], pattern_len, &mut next);
            let value_len = next(9);
            let value = pick(&["a", "b", "a", "*", "\n", "é"], value_len, &mut next);
            let greedy = next(2) == 0;
            let parsed = ShellPattern::parse(&pattern, greedy).ok().unwrap();
            assert_eq!(
                Search::new(&parsed, &value).match_at(0),
                regex_for(&pattern, greedy, true)
                    .find(&value)
                    .map(|m| m.end()),
                "anchored {pattern:?} greedy={greedy} on {value:?}"
            );
            assert_eq!(
                Search::new(&parsed, &value).find_from(0),
                regex_for(&pattern, greedy, false)
                    .find(&value)
                    .map(|m| (m.start(), m.end())),
                "find {pattern:?} greedy={greedy} on {value:?}"
            );
        }
    }

    #[test]
    fn replacing_everything_is_bounded() {
        let value = "x".repeat(4096);
        let big = "y".repeat(2048);
        assert!(matches!(
            replace("", &value, &big, true),
            Err(PatternFault::ResultTooLarge)
        ));
        assert_eq!(replace("", "ab", "-", true).ok().unwrap(), "-a-b-");
    }

    #[test]
    fn many_stars_stay_fast() {
        let value = "a".repeat(2_000);
        let pattern = format!("{}b", "*a".repeat(50));
        assert_eq!(trim_prefix(&pattern, &value, true).ok().unwrap(), value);
        assert_eq!(trim_prefix(&pattern, &value, false).ok().unwrap(), value);
    }
}
