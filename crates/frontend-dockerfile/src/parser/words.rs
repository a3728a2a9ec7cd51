//! Word splitting used by the line parsers: BuildKit's quote-keeping word split (ENV, LABEL,
//! ARG) and its plain whitespace split (FROM, COPY, ...).

/// The whitespace of BuildKit's `reWhitespace` (`[\t\v\f\r ]+`).
pub(crate) fn is_separator(c: char) -> bool {
    matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ')
}

/// Splits on runs of [`is_separator`] with no quote handling, like Go's
/// `reWhitespace.Split(s, -1)` on a trimmed string.
pub(crate) fn split_whitespace(s: &str) -> Vec<String> {
    s.split(is_separator)
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Splits at the first run of [`is_separator`], like Go's `reWhitespace.Split(s, 2)`.
pub(crate) fn split_once_whitespace(s: &str) -> Option<(&str, &str)> {
    let start = s.find(is_separator)?;
    let rest = &s[start..];
    let after = rest.trim_start_matches(is_separator);
    Some((&s[..start], after))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Spaces,
    Word,
    Quote(char),
}

/// BuildKit's `parseWords`: splits on Unicode whitespace outside quotes; quotes stay in the
/// words; the escape character and the character after it are both kept (so an escaped blank
/// does not split), except inside single quotes where the escape character is literal; a lone
/// escape character at the very end is dropped.
pub(crate) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    let chars: Vec<char> = rest.chars().collect();
    let n = chars.len();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut blank_ok = false;
    let mut phase = Phase::Spaces;
    let mut i = 0;
    while i < n {
        let mut ch = chars[i];
        match phase {
            Phase::Spaces => {
                if ch.is_whitespace() {
                    i += 1;
                    continue;
                }
                phase = Phase::Word;
                continue;
            }
            Phase::Word => {
                if ch.is_whitespace() {
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    blank_ok = false;
                    phase = Phase::Spaces;
                    i += 1;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    blank_ok = true;
                    phase = Phase::Quote(ch);
                }
                if ch == escape {
                    if i + 1 == n {
                        i += 1;
                        continue;
                    }
                    word.push(ch);
                    i += 1;
                    ch = chars[i];
                }
                word.push(ch);
                i += 1;
            }
            Phase::Quote(quote) => {
                if ch == quote {
                    phase = Phase::Word;
                }
                if ch == escape && quote != '\'' {
                    if i + 1 == n {
                        phase = Phase::Word;
                        i += 1;
                        continue;
                    }
                    word.push(ch);
                    i += 1;
                    ch = chars[i];
                }
                word.push(ch);
                i += 1;
            }
        }
    }
    if phase != Phase::Spaces && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keep_quotes_and_escapes() {
        let cases: &[(&str, &[&str])] = &[
            ("a=b c=d", &["a=b", "c=d"]),
            ("a=\"x y\" b", &["a=\"x y\"", "b"]),
            ("a='x \\ y' b", &["a='x \\ y'", "b"]),
            ("a=x\\ y b", &["a=x\\ y", "b"]),
            ("a=\"x\\\" y\"", &["a=\"x\\\" y\""]),
            ("a=b\\", &["a=b"]),
            ("\"\"", &["\"\""]),
            ("a\u{3000}b", &["a", "b"]),
            ("", &[]),
            ("   ", &[]),
            ("a=\"open", &["a=\"open"]),
            ("àöû", &["àöû"]),
            ("föo bàr \"âbc xÿz\"", &["föo", "bàr", "\"âbc xÿz\""]),
        ];
        for (input, want) in cases {
            assert_eq!(parse_words(input, '\\'), *want, "{input:?}");
        }
        assert_eq!(parse_words("a=x` y", '`'), ["a=x` y"]);
    }

    #[test]
    fn whitespace_split() {
        assert_eq!(split_whitespace("a  b\tc"), ["a", "b", "c"]);
        assert_eq!(split_whitespace("\"a b\""), ["\"a", "b\""]);
        assert_eq!(split_whitespace("a\u{a0}b"), ["a\u{a0}b"]);
        assert_eq!(split_once_whitespace("k  v w"), Some(("k", "v w")));
        assert_eq!(split_once_whitespace("k"), None);
    }
}
