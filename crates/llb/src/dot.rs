//! Graphviz rendering of a definition (`img debug llb --format dot`).

use std::fmt::Write as _;

use crate::Definition;

impl Definition {
    /// The graph in Graphviz dot syntax: one box per op labelled with its description and
    /// Dockerfile location, and an edge from each input to the op that reads it.
    pub fn to_dot(&self) -> String {
        let mut out = String::from(
            "digraph llb {\n  rankdir=TB;\n  node [shape=box, fontname=\"monospace\"];\n",
        );
        for (digest, op) in self.ops() {
            let meta = self.metadata(digest);
            let title = match meta {
                Some(m) if !m.description.is_empty() => m.description.clone(),
                _ => op.kind_name().to_owned(),
            };
            let mut label = format!("{title}\n{}", digest.short());
            if let Some(location) = meta.and_then(|m| m.location.as_ref()) {
                label.push_str(&format!("\n{location}"));
            }
            let shape = if *digest == self.output().digest {
                ", peripheries=2"
            } else {
                ""
            };
            let _ = writeln!(out, "  \"{digest}\" [label=\"{}\"{shape}];", escape(&label));
        }
        for (digest, op) in self.ops() {
            let mut seen = std::collections::BTreeSet::new();
            for input in op.inputs() {
                if seen.insert(input) {
                    let _ = writeln!(out, "  \"{}\" -> \"{digest}\";", input.digest);
                }
            }
        }
        out.push_str("}\n");
        out
    }
}

/// Escapes a label for a dot double-quoted string; newlines become dot's centred line breaks.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => escaped.push_str("\\\""),
            '\\' => escaped.push_str("\\\\"),
            '\n' => escaped.push_str("\\n"),
            '\r' => {}
            _ => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escapes_quotes_backslashes_and_newlines() {
        assert_eq!(
            escape("RUN echo \"a\\b\"\nx"),
            "RUN echo \\\"a\\\\b\\\"\\nx"
        );
    }
}
