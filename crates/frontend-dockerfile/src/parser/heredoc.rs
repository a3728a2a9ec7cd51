//! Heredoc detection: which words of a RUN/COPY/ADD line open a heredoc (`<<EOF`, `<<-EOF`,
//! `3<<'EOF'`), and with which terminator, fd, chomp and expand settings.
//!
//! BuildKit splits the logical line with its shell lexer set to keep quotes, escapes and
//! unset variables as written, with `<<` and any blanks after it glued to the next word, then
//! matches each word against `^(\d*)<<(-?)\s*([^<]*)$`. The terminator part is lexed twice,
//! without and with quotes: if the two differ in their number of quote characters, part of
//! the name was quoted and the body is not expanded. Heredoc words are always read with `\`
//! as the escape character, whatever `# escape=` says.

use super::error::{LexError, ParseErrorKind};

/// A heredoc opened on an instruction line; its body is read by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeredocStart {
    pub name: String,
    pub fd: u32,
    pub expand: bool,
    pub chomp: bool,
}

/// The heredocs opened by `line`, in order. A line the shell lexer cannot split (an unclosed
/// quote, say) opens none, as in BuildKit.
pub(crate) fn heredocs_from_line(line: &str) -> Result<Vec<HeredocStart>, ParseErrorKind> {
    let words = Lexer::new(line, true, true).words().unwrap_or_default();
    let mut docs = Vec::new();
    for word in words {
        if let Some(doc) = parse_heredoc_word(&word)? {
            docs.push(doc);
        }
    }
    Ok(docs)
}

/// Matches one word against `^(\d*)<<(-?)\s*([^<]*)$` and reads its terminator name.
fn parse_heredoc_word(word: &str) -> Result<Option<HeredocStart>, ParseErrorKind> {
    let digits = word.len() - word.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let (fd_text, rest) = word.split_at(digits);
    let Some(rest) = rest.strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, rest),
    };
    let name_part = rest.trim_start_matches(['\t', '\n', '\x0c', '\r', ' ']);
    if name_part.contains('<') || name_part.is_empty() {
        return Ok(None);
    }
    // BuildKit ignores an fd that does not parse (too large): it becomes 0.
    let fd = fd_text.parse().unwrap_or(0);
    let invalid = |reason| ParseErrorKind::InvalidHeredocName {
        word: name_part.to_owned(),
        reason,
    };
    let words = Lexer::new(name_part, false, false)
        .words()
        .map_err(invalid)?;
    let [name] = words.as_slice() else {
        return Ok(None);
    };
    let raw = Lexer::new(name_part, true, false)
        .words()
        .map_err(invalid)?;
    let quotes = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    let expand = raw.len() == 1 && quotes(name) == quotes(&raw[0]);
    Ok(Some(HeredocStart {
        name: name.clone(),
        fd,
        expand,
        chomp,
    }))
}

/// The subset of BuildKit's shell lexer the heredoc rules use: no environment, unset
/// variables kept as written (`SkipUnsetEnv`), escape character `\`.
struct Lexer {
    chars: Vec<char>,
    pos: usize,
    raw_quotes: bool,
    raw_escapes: bool,
}

const ESCAPE: char = '\\';

/// Accumulates shell words: unquoted whitespace splits, quoted text does not.
#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }

    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

impl Lexer {
    fn new(text: &str, raw_quotes: bool, raw_escapes: bool) -> Self {
        Lexer {
            chars: text.chars().collect(),
            pos: 0,
            raw_quotes,
            raw_escapes,
        }
    }

    fn words(mut self) -> Result<Vec<String>, LexError> {
        let raw_escapes = self.raw_escapes;
        self.process_until(None, raw_escapes)
            .map(|(_, words)| words)
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek();
        if ch.is_some() {
            self.pos += 1;
        }
        ch
    }

    /// Reads up to `stop` (consumed) or the end; returns the text and its words.
    fn process_until(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), LexError> {
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let result = self.process_until_inner(stop);
        self.raw_escapes = saved;
        result
    }

    fn process_until_inner(
        &mut self,
        stop: Option<char>,
    ) -> Result<(String, Vec<String>), LexError> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            match ch {
                '$' => {
                    let text = self.process_dollar()?;
                    result.push_str(&text);
                    words.add_string(&text);
                }
                '\'' | '"' | '<' => {
                    let text = match ch {
                        '\'' => self.process_single_quote()?,
                        '"' => self.process_double_quote()?,
                        _ => self.process_possible_heredoc(),
                    };
                    result.push_str(&text);
                    words.add_raw_string(&text);
                }
                _ => {
                    self.next();
                    if ch == ESCAPE {
                        if self.raw_escapes {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        let Some(escaped) = self.next() else { break };
                        words.add_raw_char(escaped);
                        result.push(escaped);
                    } else {
                        words.add_char(ch);
                        result.push(ch);
                    }
                }
            }
        }
        match stop {
            Some('}') => Err(LexError::Unterminated("}")),
            Some(_) => Err(LexError::Unterminated("/")),
            None => Ok((result, words.finish())),
        }
    }

    fn process_single_quote(&mut self) -> Result<String, LexError> {
        let mut result = String::new();
        self.next();
        if self.raw_quotes {
            result.push('\'');
        }
        loop {
            match self.next() {
                None => return Err(LexError::Unterminated("single-quote")),
                Some('\'') => {
                    if self.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(ch) => result.push(ch),
            }
        }
    }

    fn process_double_quote(&mut self) -> Result<String, LexError> {
        let mut result = String::new();
        self.next();
        if self.raw_quotes {
            result.push('"');
        }
        loop {
            match self.peek() {
                None => return Err(LexError::Unterminated("double-quote")),
                Some('"') => {
                    self.next();
                    if self.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let text = self.process_dollar()?;
                    result.push_str(&text);
                }
                Some(_) => {
                    let mut ch = self.next().unwrap_or(ESCAPE);
                    if ch == ESCAPE {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some('"' | '$' | ESCAPE) => ch = self.next().unwrap_or(ESCAPE),
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    /// `<<` and the blanks after it stay attached to the next word, so `<< EOF` is one word.
    fn process_possible_heredoc(&mut self) -> String {
        self.next();
        if self.peek() != Some('<') {
            return "<".to_owned();
        }
        self.next();
        let mut result = "<<".to_owned();
        while let Some(ch @ (' ' | '\t' | '\r' | '\n')) = self.peek() {
            result.push(ch);
            self.next();
        }
        result
    }

    /// `$name`, `${name}`, `${name:-word}` and the like, all unset: kept as written.
    fn process_dollar(&mut self) -> Result<String, LexError> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.process_name();
            return Ok(format!("${name}"));
        }
        self.next();
        match self.peek() {
            None => return Err(LexError::MissingBrace),
            Some('{' | '}' | ':') => return Err(LexError::BadSubstitution),
            Some(_) => {}
        }
        let name = self.process_name();
        let Some(mut ch) = self.next() else {
            return Err(LexError::UnsupportedModifier(String::new()));
        };
        let mut modifier = ch.to_string();
        match ch {
            '}' => Ok(format!("${{{name}}}")),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                let null_is_unset = ch == ':';
                if null_is_unset {
                    let Some(next) = self.next() else {
                        return Err(LexError::MissingBrace);
                    };
                    ch = next;
                    modifier.push(ch);
                }
                let raw_escapes = ch == '#' || ch == '%';
                if null_is_unset && raw_escapes {
                    return Err(LexError::UnsupportedModifier(modifier));
                }
                let (word, _) = self
                    .process_until(Some('}'), raw_escapes)
                    .map_err(|e| self.missing_brace(e))?;
                Ok(format!("${{{name}{modifier}{word}}}"))
            }
            '/' => {
                if self.peek() == Some('/') {
                    self.next();
                }
                let (pattern, _) = self
                    .process_until(Some('/'), true)
                    .map_err(|e| self.missing_brace(e))?;
                let (replacement, _) = self
                    .process_until(Some('}'), true)
                    .map_err(|e| self.missing_brace(e))?;
                Ok(format!("${{{name}/{pattern}/{replacement}}}"))
            }
            _ => Err(LexError::UnsupportedModifier(modifier)),
        }
    }

    fn missing_brace(&self, error: LexError) -> LexError {
        if self.peek().is_none() {
            LexError::MissingBrace
        } else {
            error
        }
    }

    /// A variable name: a run of digits, one special parameter, or letters, digits and `_`.
    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    name.push(d);
                    self.next();
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return ch.to_string();
            }
            if !ch.is_alphanumeric() && ch != '_' {
                break;
            }
            name.push(ch);
            self.next();
        }
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(name: &str, fd: u32, expand: bool, chomp: bool) -> HeredocStart {
        HeredocStart {
            name: name.to_owned(),
            fd,
            expand,
            chomp,
        }
    }

    #[test]
    fn heredoc_words() {
        let cases: Vec<(&str, Vec<HeredocStart>)> = vec![
            ("RUN <<EOF", vec![doc("EOF", 0, true, false)]),
            ("RUN <<-EOF", vec![doc("EOF", 0, true, true)]),
            ("RUN 3<<EOF", vec![doc("EOF", 3, true, false)]),
            ("RUN <<'EOF'", vec![doc("EOF", 0, false, false)]),
            ("RUN <<\"EOF\"", vec![doc("EOF", 0, false, false)]),
            ("RUN <<eo'f'", vec![doc("eof", 0, false, false)]),
            ("RUN <<'e'o\\'f", vec![doc("eo'f", 0, false, false)]),
            ("RUN <<eo\\'f", vec![doc("eo'f", 0, true, false)]),
            ("RUN << EOF", vec![doc("EOF", 0, true, false)]),
            ("RUN <<- EOF", vec![]),
            ("RUN \"<<EOF\"", vec![]),
            ("RUN '<<EOF'", vec![]),
            ("RUN cat<<EOF", vec![]),
            ("RUN <<$EOF", vec![doc("$EOF", 0, true, false)]),
            ("RUN <<'one two'", vec![doc("one two", 0, false, false)]),
            (
                "COPY <<X <<Y /dest",
                vec![doc("X", 0, true, false), doc("Y", 0, true, false)],
            ),
            ("RUN <<EOF 'unterminated", vec![]),
            ("RUN <<EOF ${", vec![]),
            ("RUN <<", vec![]),
            ("RUN <<<EOF", vec![]),
            (
                "RUN 99999999999999999999999<<EOF",
                vec![doc("EOF", 0, true, false)],
            ),
        ];
        for (line, want) in cases {
            assert_eq!(heredocs_from_line(line).unwrap(), want, "{line:?}");
        }
    }

    /// BuildKit's `TestParseHeredocHelpers`, on single words.
    #[test]
    fn heredoc_word_helpers() {
        let valid = [
            "<<EOF",
            "<<'EOF'",
            "<<\"EOF\"",
            "<<-EOF",
            "<<-'EOF'",
            "<<-\"EOF\"",
            "<<EO\"F\"",
            "<< EOF",
            "<<- EOF",
        ];
        for word in valid {
            let doc = parse_heredoc_word(word).unwrap().unwrap();
            assert_eq!(doc.name, "EOF", "{word:?}");
        }
        for word in ["<<'EOF", "<<\"EOF", "<<EOF'", "<<EOF\""] {
            assert!(matches!(
                parse_heredoc_word(word),
                Err(ParseErrorKind::InvalidHeredocName { .. })
            ));
        }
        for word in ["", "EOF", "<<", "<<-", "<EOF", "<<<EOF", "<<EOF sh"] {
            assert_eq!(parse_heredoc_word(word).unwrap(), None, "{word:?}");
        }
        assert_eq!(
            heredocs_from_line("RUN << -EOF").unwrap(),
            vec![doc("-EOF", 0, true, false)]
        );
        assert_eq!(
            heredocs_from_line("RUN <<  EOF  > foo").unwrap(),
            vec![doc("EOF", 0, true, false)]
        );
    }

    #[test]
    fn lexer_keeps_text_as_written() {
        let words = Lexer::new("a ${x:-b c} \"d e\" f\\ g $1 ${y/z/w}", true, true)
            .words()
            .unwrap();
        assert_eq!(
            words,
            ["a", "${x:-b", "c}", "\"d e\"", "f\\ g", "$1", "${y/z/w}"]
        );
        assert_eq!(
            Lexer::new("${a.b}", true, true).words(),
            Err(LexError::UnsupportedModifier(".".into()))
        );
    }
}
