//! The Dockerfile parser: text to the raw syntax tree ([`Dockerfile`]), exactly as BuildKit's
//! `parser.Parse` builds it.
//!
//! The steps, each in its own module: physical lines and continuation (`lines`), the leading
//! parser directives (`directives`), builder flags (`flags`), the per-keyword argument rules
//! (`node`, `words`) and heredocs (`heredoc`).

mod directives;
mod error;
mod flags;
mod heredoc;
mod lines;
mod node;
mod words;

pub use error::{LexError, ParseError, ParseErrorKind};

use self::directives::DirectiveParser;
use self::lines::{
    is_blank, is_comment, trim_continuation, trim_newline, LineScanner, LineTooLong, MAX_LINE_LEN,
};
use crate::ast::{Dockerfile, Heredoc, Node, ParseWarning};

/// The lint rule of the empty-continuation-line warning.
const NO_EMPTY_CONTINUATION: &str = "NoEmptyContinuation";

/// Parses a Dockerfile into its raw syntax tree.
///
/// `file_name` is only used in errors. Invalid UTF-8 is decoded lossily (U+FFFD); a UTF-8 BOM
/// and CRLF line endings are accepted.
pub fn parse(source: impl AsRef<[u8]>, file_name: &str) -> Result<Dockerfile, ParseError> {
    Parser {
        scanner: LineScanner::new(source.as_ref()),
        directives: DirectiveParser::new(),
        file: file_name,
        warnings: Vec::new(),
        instructions: Vec::new(),
        comments: Vec::new(),
    }
    .run()
}

struct Parser<'a> {
    scanner: LineScanner<'a>,
    directives: DirectiveParser,
    file: &'a str,
    warnings: Vec<ParseWarning>,
    instructions: Vec<Node>,
    /// Comment lines seen since the last instruction.
    comments: Vec<String>,
}

/// An instruction's text with its continuation lines joined, and the physical lines it spans.
struct LogicalLine {
    text: String,
    start: usize,
    end: usize,
}

impl<'a> Parser<'a> {
    fn run(mut self) -> Result<Dockerfile, ParseError> {
        while let Some(first) = self.next_line()? {
            let Some(mut line) = self.logical_line(first)? else {
                continue;
            };
            let mut node = node::node_from_line(&line.text, self.directives.escape())
                .map_err(|kind| self.error(&line, kind))?;
            if can_contain_heredoc(&node) && line.text.contains("<<") {
                node.heredocs = self.read_heredocs(&mut line)?;
            }
            node.start_line = line.start;
            node.end_line = line.end;
            if let Some(sub) = node.sub.as_deref_mut() {
                sub.start_line = line.start;
                sub.end_line = line.end;
            }
            node.comments = std::mem::take(&mut self.comments);
            self.instructions.push(node);
        }
        if self.instructions.is_empty() {
            let last = self.scanner.current();
            return Err(ParseError::new(
                self.file,
                last,
                last,
                "",
                ParseErrorKind::NoInstructions,
            ));
        }
        Ok(Dockerfile {
            directives: self.directives.into_directives(),
            warnings: self.warnings,
            instructions: self.instructions,
        })
    }

    /// Reads the instruction starting at `first`: directives and comments are noted, and
    /// continuation lines joined. `None` when `first` holds no instruction (a blank line, a
    /// comment or a directive).
    fn logical_line(
        &mut self,
        first: lines::PhysicalLine<'a>,
    ) -> Result<Option<LogicalLine>, ParseError> {
        let start = first.number;
        let text = trim_newline(&first.text).trim_start();
        let is_directive = self
            .directives
            .observe(text, start)
            .map_err(|kind| ParseError::new(self.file, start, start, text, kind))?;
        if let Some(comment) = text.strip_prefix('#').filter(|_| !is_directive) {
            let comment = comment.trim();
            // An empty `#` line separates a comment block from the next instruction.
            if comment.is_empty() {
                self.comments.clear();
            } else {
                self.comments.push(comment.to_owned());
            }
        }
        let content = if is_comment(text) { "" } else { text };
        let (first_part, mut end_of_line) = trim_continuation(content, self.directives.escape());
        if end_of_line && first_part.is_empty() {
            return Ok(None);
        }
        let mut line = LogicalLine {
            text: first_part.to_owned(),
            start,
            end: start,
        };
        let mut skipped_blank = false;
        while !end_of_line {
            let Some(next) = self.next_line()? else { break };
            line.end = next.number;
            // Comment and blank lines do not end an instruction being continued: they are
            // skipped (BuildKit warns about blank ones).
            if is_comment(&next.text) {
                continue;
            }
            if is_blank(&next.text) {
                skipped_blank = true;
                continue;
            }
            let (part, eol) = trim_continuation(trim_newline(&next.text), self.directives.escape());
            line.text.push_str(part);
            end_of_line = eol;
        }
        if skipped_blank {
            self.warnings.push(ParseWarning {
                line: line.end,
                message: format!("Empty continuation line found in: {}", line.text),
                rule: Some(NO_EMPTY_CONTINUATION),
            });
        }
        Ok(Some(line))
    }

    /// Reads the bodies of the heredocs `line` opens, one after the other, extending the
    /// line's range over them.
    fn read_heredocs(&mut self, line: &mut LogicalLine) -> Result<Vec<Heredoc>, ParseError> {
        let starts =
            heredoc::heredocs_from_line(&line.text).map_err(|kind| self.error(line, kind))?;
        let mut heredocs = Vec::with_capacity(starts.len());
        for start in starts {
            let content = self.read_heredoc_body(&start.name, start.chomp, line)?;
            heredocs.push(Heredoc {
                name: start.name,
                fd: start.fd,
                expand: start.expand,
                chomp: start.chomp,
                content,
            });
        }
        Ok(heredocs)
    }

    /// Reads one heredoc body up to its terminator line, raw (line endings kept). The
    /// terminator is compared after removing the line ending and, for `<<-`, leading tabs;
    /// the body keeps its tabs (they are removed when it is used).
    fn read_heredoc_body(
        &mut self,
        name: &str,
        chomp: bool,
        line: &mut LogicalLine,
    ) -> Result<String, ParseError> {
        let mut content = String::new();
        while let Some(next) = self.next_line()? {
            line.end = next.number;
            let mut candidate = trim_newline(&next.text);
            if chomp {
                candidate = candidate.trim_start_matches('\t');
            }
            if candidate == name {
                return Ok(content);
            }
            content.push_str(&next.text);
        }
        Err(self.error(
            line,
            ParseErrorKind::UnterminatedHeredoc {
                name: name.to_owned(),
            },
        ))
    }

    fn next_line(&mut self) -> Result<Option<lines::PhysicalLine<'a>>, ParseError> {
        self.scanner.next_line().map_err(|LineTooLong(number)| {
            ParseError::new(
                self.file,
                number,
                number,
                "",
                ParseErrorKind::LineTooLong { max: MAX_LINE_LEN },
            )
        })
    }

    fn error(&self, line: &LogicalLine, kind: ParseErrorKind) -> ParseError {
        ParseError::new(self.file, line.start, line.end, &line.text, kind)
    }
}

/// Only RUN, COPY and ADD in shell form carry heredocs, also when wrapped in ONBUILD.
fn can_contain_heredoc(node: &Node) -> bool {
    let node = match (&*node.keyword, node.sub.as_deref()) {
        ("onbuild", Some(sub)) => sub,
        _ => node,
    };
    matches!(&*node.keyword, "run" | "copy" | "add") && !node.json
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_before_an_instruction_are_kept_without_directives() {
        let df = parse(
            "# syntax=x\n# about from\nFROM a\n\n# one\n#\n# two\nRUN x \\\n# inside\n y\n",
            "Dockerfile",
        )
        .unwrap();
        assert_eq!(df.instructions[0].comments, ["about from"]);
        assert_eq!(df.instructions[1].comments, ["two"]);
        assert_eq!(df.directives.lines.syntax, Some(1));
    }

    #[test]
    fn original_is_the_joined_logical_line() {
        let df = parse("FROM a\n  RUN x \\\n   y  \nONBUILD  RUN z\n", "Dockerfile").unwrap();
        assert_eq!(df.instructions[1].original, "RUN x    y  ");
        assert_eq!(df.instructions[2].sub.as_ref().unwrap().original, "RUN z");
        assert_eq!(
            (
                df.instructions[2].sub.as_ref().unwrap().start_line,
                df.instructions[2].sub.as_ref().unwrap().end_line
            ),
            (4, 4)
        );
    }

    #[test]
    fn error_carries_file_lines_text_and_kind() {
        let err = parse("FROM a\nENV a=b \\\n  c\n", "app/Dockerfile").unwrap_err();
        assert_eq!(err.file, "app/Dockerfile");
        assert_eq!((err.line, err.end_line), (2, 3));
        assert_eq!(err.text, "ENV a=b   c");
        assert_eq!(err.kind, ParseErrorKind::MissingEquals { word: "c".into() });
    }

    #[test]
    fn warning_names_its_rule_and_last_line() {
        let df = parse("FROM a\nRUN x \\\n\n y\n", "Dockerfile").unwrap();
        assert_eq!(
            df.warnings,
            [ParseWarning {
                line: 4,
                message: "Empty continuation line found in: RUN x  y".into(),
                rule: Some("NoEmptyContinuation"),
            }]
        );
    }
}
