//! From bytes to physical lines, and the per-line rules BuildKit applies before joining
//! continuation lines: newline trimming, comment detection and the continuation regex.

use std::borrow::Cow;

/// BuildKit reads lines with Go's `bufio.Scanner`, whose 64 KiB buffer must hold a line and
/// its newline: a longer line fails the parse.
pub(crate) const MAX_LINE_LEN: usize = 65535;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// One physical line of the file.
pub(crate) struct PhysicalLine<'a> {
    /// 1-based line number.
    pub number: usize,
    /// The text, newline included, decoded as UTF-8 (invalid bytes become U+FFFD).
    pub text: Cow<'a, str>,
}

/// Hands out the physical lines of a Dockerfile one at a time, checking each line's length as
/// it is reached (so an earlier error in the file is reported first, as BuildKit does).
pub(crate) struct LineScanner<'a> {
    rest: &'a [u8],
    number: usize,
}

/// A physical line longer than [`MAX_LINE_LEN`]; carries its 1-based line number.
pub(crate) struct LineTooLong(pub usize);

impl<'a> LineScanner<'a> {
    pub fn new(source: &'a [u8]) -> Self {
        // Only a BOM at the very start of the file is dropped.
        let rest = source.strip_prefix(UTF8_BOM).unwrap_or(source);
        LineScanner { rest, number: 0 }
    }

    /// The number of the last line handed out (0 before the first).
    pub fn current(&self) -> usize {
        self.number
    }

    pub fn next_line(&mut self) -> Result<Option<PhysicalLine<'a>>, LineTooLong> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let end = self
            .rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(self.rest.len(), |i| i + 1);
        let (raw, rest) = self.rest.split_at(end);
        self.rest = rest;
        self.number += 1;
        let content_len = raw.strip_suffix(b"\n").unwrap_or(raw).len();
        if content_len > MAX_LINE_LEN {
            return Err(LineTooLong(self.number));
        }
        Ok(Some(PhysicalLine {
            number: self.number,
            text: String::from_utf8_lossy(raw),
        }))
    }
}

/// Removes every trailing `\r` and `\n` (Go's `bytes.TrimRight(line, "\r\n")`), so CRLF files
/// parse like LF ones.
pub(crate) fn trim_newline(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

/// A line whose first non-blank character is `#`.
pub(crate) fn is_comment(line: &str) -> bool {
    trim_newline(line).trim_start().starts_with('#')
}

/// A continuation line holding only whitespace.
pub(crate) fn is_blank(line: &str) -> bool {
    trim_newline(line).trim_start().is_empty()
}

/// Applies BuildKit's continuation regex `([^E])E[ \t]*$|^E[ \t]*$` (E the escape character):
/// when the line ends in an escape character that is not itself escaped, followed only by
/// blanks, returns the line without them and `false` (the instruction continues); otherwise
/// the line unchanged and `true` (end of the instruction).
pub(crate) fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let body = line.trim_end_matches([' ', '\t']);
    if let Some(before) = body.strip_suffix(escape) {
        if !before.ends_with(escape) {
            return (before, false);
        }
    }
    (line, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_regex() {
        let cases = [
            ("echo hello\\", "echo hello", false),
            ("echo hello\\ \t ", "echo hello", false),
            ("\\", "", false),
            ("  \\  ", "  ", false),
            ("echo \\\\", "echo \\\\", true),
            ("echo \\ x", "echo \\ x", true),
            ("echo", "echo", true),
            ("", "", true),
        ];
        for (line, want, eol) in cases {
            assert_eq!(trim_continuation(line, '\\'), (want, eol), "{line:?}");
        }
        assert_eq!(trim_continuation("dir `", '`'), ("dir ", false));
        assert_eq!(trim_continuation("dir \\", '`'), ("dir \\", true));
        assert_eq!(trim_continuation("é\\", '\\'), ("é", false));
    }

    #[test]
    fn scanner_keeps_newlines_and_drops_bom() {
        let mut s = LineScanner::new(b"\xEF\xBB\xBFa\r\nb\n\nc");
        let mut got = Vec::new();
        while let Ok(Some(line)) = s.next_line() {
            got.push((line.number, line.text.into_owned()));
        }
        assert_eq!(
            got,
            [
                (1, "a\r\n".to_owned()),
                (2, "b\n".to_owned()),
                (3, "\n".to_owned()),
                (4, "c".to_owned())
            ]
        );
    }

    #[test]
    fn line_length_limit() {
        let ok = vec![b'a'; MAX_LINE_LEN];
        assert!(LineScanner::new(&ok).next_line().is_ok());
        let long = vec![b'a'; MAX_LINE_LEN + 1];
        assert!(matches!(
            LineScanner::new(&long).next_line(),
            Err(LineTooLong(1))
        ));
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let mut s = LineScanner::new(b"RUN \xff\n");
        assert_eq!(
            s.next_line().ok().flatten().map(|l| l.text.into_owned()),
            Some("RUN \u{FFFD}\n".to_owned())
        );
    }
}
