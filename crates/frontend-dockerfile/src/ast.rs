//! The raw syntax tree of a Dockerfile, as BuildKit's parser builds it.
//!
//! This is the tree *before* instructions are checked and before any variable substitution:
//! every instruction keeps its flags and arguments as strings, split the way Docker's parser
//! splits them (see [`Node::args`]). The `instructions` module turns it into typed instructions.

use serde::ser::{Serialize, SerializeMap, Serializer};

/// A parsed Dockerfile: its parser directives, the parser's warnings and its instructions.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Dockerfile {
    /// The parser directives from the leading comment block (`# escape=`, `# syntax=`, `# check=`).
    pub directives: Directives,
    /// Non-fatal findings of the parser, such as empty continuation lines.
    pub warnings: Vec<ParseWarning>,
    /// The instructions, in source order; never empty.
    pub instructions: Vec<Node>,
}

/// The parser directives of a Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Directives {
    /// The escape character: `\` (the default) or `` ` ``.
    pub escape: char,
    /// The value of `# syntax=`, if given (the parser does not interpret it).
    pub syntax: Option<String>,
    /// The value of `# check=`, if given (the parser does not interpret it).
    pub check: Option<String>,
    /// The 1-based line of each directive that was given.
    pub lines: DirectiveLines,
}

/// The 1-based line numbers of the parser directives that were given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DirectiveLines {
    /// Line of `# escape=`.
    pub escape: Option<usize>,
    /// Line of `# syntax=`.
    pub syntax: Option<usize>,
    /// Line of `# check=`.
    pub check: Option<usize>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            escape: '\\',
            syntax: None,
            check: None,
            lines: DirectiveLines::default(),
        }
    }
}

/// One instruction of the syntax tree.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Node {
    /// The instruction keyword, lowercased (`run`, `copy`, or any unknown word).
    pub keyword: String,
    /// The logical line as written: continuations joined, trimmed, keyword included.
    pub original: String,
    /// The leading `--` words, with quotes and escapes removed (`--x="a b"` is `--x=a b`).
    pub flags: Vec<String>,
    /// True when the arguments came from a JSON array (exec form); for HEALTHCHECK, the part
    /// after the type word.
    pub json: bool,
    /// The arguments, split as Docker's parser splits them:
    /// - exec form: the array's elements;
    /// - RUN, CMD, ENTRYPOINT, SHELL in shell form: one string, the rest of the line verbatim;
    /// - ADD, COPY, VOLUME, FROM, EXPOSE: whitespace-separated words, no quote handling;
    /// - ENV, LABEL: alternating key and value, quotes and escapes kept as written;
    /// - ARG: its words (`name` or `name=value`), quotes kept;
    /// - USER, WORKDIR, STOPSIGNAL, MAINTAINER: the rest of the line as one string;
    /// - HEALTHCHECK: the type word, then the command as for CMD;
    /// - ONBUILD: none (the wrapped instruction is in [`Node::sub`]);
    /// - an unknown keyword: one empty string.
    ///
    /// An instruction with nothing after its keyword (and flags) has no arguments.
    pub args: Vec<String>,
    /// The heredocs of the instruction, in order. For ONBUILD they belong to the ONBUILD node.
    pub heredocs: Vec<Heredoc>,
    /// The 1-based first physical line of the instruction.
    pub start_line: usize,
    /// The 1-based last physical line: continuation lines, comment and blank lines inside the
    /// continuation, and heredoc bodies with their terminators included.
    pub end_line: usize,
    /// For ONBUILD: the wrapped instruction (with its own flags); `None` for a bare ONBUILD
    /// and for every other instruction.
    pub sub: Option<Box<Node>>,
    /// For ENV and LABEL: true for the legacy `KEY value` form (no `=`), whose single value is
    /// everything after the key.
    pub legacy_key_value: bool,
    /// The comment lines directly before the instruction, without their `#` and trimmed.
    pub comments: Vec<String>,
}

/// A heredoc attached to an instruction (`RUN <<EOF`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Heredoc {
    /// The terminator word, with its quotes removed.
    pub name: String,
    /// The file descriptor the body is fed to (`3<<EOF` is 3; 0 by default).
    pub fd: u32,
    /// False when any part of the name was quoted (`<<'EOF'`): the body is then not expanded.
    pub expand: bool,
    /// True for the `<<-` form: leading tabs are removed from the body when it is used.
    pub chomp: bool,
    /// The body exactly as written, line endings included, terminator line excluded.
    pub content: String,
}

/// A non-fatal finding of the parser.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParseWarning {
    /// The 1-based line the warning is about.
    pub line: usize,
    /// What was found, as BuildKit words it.
    pub message: String,
    /// The lint rule this warning belongs to (`NoEmptyContinuation`), if any.
    pub rule: Option<&'static str>,
}

impl Serialize for Dockerfile {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let warnings: Vec<&str> = self.warnings.iter().map(|w| w.message.as_str()).collect();
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("directives", &self.directives)?;
        map.serialize_entry("warnings", &warnings)?;
        map.serialize_entry("instructions", &self.instructions)?;
        map.end()
    }
}

impl Serialize for Directives {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("escape", &self.escape)?;
        map.serialize_entry("syntax", &self.syntax)?;
        map.serialize_entry("check", &self.check)?;
        map.end()
    }
}

impl Serialize for Node {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        NodeJson {
            node: self,
            with_lines: true,
        }
        .serialize(serializer)
    }
}

/// A node in the debug-parse shape; the wrapped node of ONBUILD is printed without lines,
/// since it always shares the lines of its ONBUILD.
struct NodeJson<'a> {
    node: &'a Node,
    with_lines: bool,
}

impl Serialize for NodeJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let node = self.node;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("cmd", &node.keyword)?;
        map.serialize_entry("flags", &node.flags)?;
        map.serialize_entry("json", &node.json)?;
        map.serialize_entry("args", &node.args)?;
        map.serialize_entry("heredocs", &node.heredocs)?;
        if self.with_lines {
            map.serialize_entry("start_line", &node.start_line)?;
            map.serialize_entry("end_line", &node.end_line)?;
        }
        if node.keyword == "onbuild" {
            let sub = node.sub.as_deref().map(|sub| NodeJson {
                node: sub,
                with_lines: false,
            });
            map.serialize_entry("sub", &sub)?;
        }
        map.end()
    }
}
