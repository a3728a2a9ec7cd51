//! Builder flags: the leading `--` words of an instruction (`COPY --from=x a b`).
//!
//! BuildKit extracts them for every instruction, known or not; checking them is the job of
//! the instruction layer. Inside a flag, quotes are removed and the escape character keeps
//! only the character after it (`--x="a b"` is `--x=a b`). A lone `--` ends the flags.
//!
//! BuildKit's scanner walks bytes and appends each byte as a code point, which turns
//! non-ASCII text in a flag into Latin-1 mojibake (`--chown=é` becomes `--chown=Ã©`) and
//! treats the UTF-8 continuation bytes 0x85 and 0xA0 as blanks. img walks characters
//! instead, so flags keep their text.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Spaces,
    Word,
    Quote(char),
}

/// Splits `line` (the text after the keyword) into its flags and the rest of the line, which
/// is returned as written (starting at the first non-flag word).
pub(crate) fn extract_builder_flags(line: &str, escape: char) -> (Vec<String>, &str) {
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let n = chars.len();
    let mut flags = Vec::new();
    let mut word = String::new();
    // A quoted section makes an empty word (`--x=""` after removing `--x=`) still count.
    let mut blank_ok = false;
    let mut phase = Phase::Spaces;
    let mut i = 0;
    while i < n {
        let (at, mut ch) = chars[i];
        match phase {
            Phase::Spaces => {
                if ch.is_whitespace() {
                    i += 1;
                    continue;
                }
                if ch != '-' || i + 1 == n || chars[i + 1].1 != '-' {
                    return (flags, &line[at..]);
                }
                phase = Phase::Word;
                continue;
            }
            Phase::Word => {
                if ch.is_whitespace() {
                    if word == "--" {
                        return (flags, &line[at..]);
                    }
                    if blank_ok || !word.is_empty() {
                        flags.push(std::mem::take(&mut word));
                    }
                    word.clear();
                    blank_ok = false;
                    phase = Phase::Spaces;
                    i += 1;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    blank_ok = true;
                    phase = Phase::Quote(ch);
                    i += 1;
                    continue;
                }
                if ch == escape {
                    if i + 1 == n {
                        // A trailing escape character is dropped.
                        i += 1;
                        continue;
                    }
                    i += 1;
                    ch = chars[i].1;
                }
                word.push(ch);
                i += 1;
            }
            Phase::Quote(quote) => {
                if ch == quote {
                    phase = Phase::Word;
                    i += 1;
                    continue;
                }
                if ch == escape {
                    if i + 1 == n {
                        phase = Phase::Word;
                        i += 1;
                        continue;
                    }
                    i += 1;
                    ch = chars[i].1;
                }
                word.push(ch);
                i += 1;
            }
        }
    }
    if phase != Phase::Spaces && word != "--" && (blank_ok || !word.is_empty()) {
        flags.push(word);
    }
    (flags, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(line: &str) -> (Vec<String>, &str) {
        extract_builder_flags(line, '\\')
    }

    #[test]
    fn flag_table() {
        let cases: &[(&str, &[&str], &str)] = &[
            ("foo /tmp/", &[], "foo /tmp/"),
            ("--from=x a b", &["--from=x"], "a b"),
            ("-- foo /tmp/", &[], " foo /tmp/"),
            (
                "--doit=true -- --foo /tmp/",
                &["--doit=true"],
                " --foo /tmp/",
            ),
            ("--x=\"a b\" --z='e f' c", &["--x=a b", "--z=e f"], "c"),
            ("--empty=\"\" c", &["--empty="], "c"),
            ("--x=a\\ b --y=\"c\\\"d\" e", &["--x=a b", "--y=c\"d"], "e"),
            ("\\--notaflag x", &[], "\\--notaflag x"),
            ("--chown=é a", &["--chown=é"], "a"),
            ("--a --b", &["--a", "--b"], ""),
            ("--a --", &["--a"], ""),
            ("--a\\", &["--a"], ""),
            ("-x y", &[], "-x y"),
            ("-", &[], "-"),
            ("--q=\"open", &["--q=open"], ""),
            ("--q=\"esc\\", &["--q=esc"], ""),
            ("", &[], ""),
        ];
        for (line, want_flags, want_rest) in cases {
            let (got, rest) = flags(line);
            assert_eq!(got, *want_flags, "flags of {line:?}");
            assert_eq!(rest, *want_rest, "rest of {line:?}");
        }
    }

    #[test]
    fn backtick_escape() {
        let (got, rest) = extract_builder_flags("--x=a` b --y=c\\d e", '`');
        assert_eq!(got, ["--x=a b", "--y=c\\d"]);
        assert_eq!(rest, "e");
    }
}
