//! The expansion itself: a scanner over the word, the expander that applies BuildKit's rules
//! for quotes, escapes and `${…}` operators, and the splitter that makes fields for
//! [`Lexer::expand_words`].

use unicode_properties::{GeneralCategory, GeneralCategoryGroup, UnicodeGeneralCategory};

use super::pattern::{replace, trim_prefix, trim_suffix, PatternFault};
use super::{Environment, Expansion, Lexer, ShellError};

/// A cursor over characters with Go `text/scanner` semantics, which BuildKit reads words with:
/// a byte-order mark at the very start is skipped.
pub(super) struct Scanner<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        let pos = if text.starts_with('\u{feff}') { 3 } else { 0 };
        Scanner { text, pos }
    }

    pub(super) fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    pub(super) fn next(&mut self) -> Option<char> {
        let ch = self.peek()?;
        self.pos += ch.len_utf8();
        Some(ch)
    }
}

/// Collects the fields of [`Lexer::expand_words`].
#[derive(Default)]
pub(super) struct WordSplitter {
    words: Vec<String>,
    current: String,
    in_word: bool,
}

impl WordSplitter {
    /// Text that may split: literal text and unquoted expansions.
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            // Go's unicode.IsSpace and Rust's is_whitespace agree on every code point.
            if self.in_word && !self.current.is_empty() {
                self.words.push(std::mem::take(&mut self.current));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.current.push(ch);
        self.in_word = true;
    }

    fn add_str(&mut self, text: &str) {
        for ch in text.chars() {
            self.add_char(ch);
        }
    }

    /// Quoted text: never splits.
    fn add_raw_str(&mut self, text: &str) {
        self.current.push_str(text);
        self.in_word = true;
    }

    pub(super) fn finish(mut self) -> Vec<String> {
        if !self.current.is_empty() {
            self.words.push(self.current);
        }
        self.words
    }
}

/// The expansion of one word.
pub(super) struct Expander<'a, 't> {
    lexer: &'a Lexer,
    word: &'a str,
    scanner: Scanner<'a>,
    env: &'a dyn Environment,
    tracking: Option<&'t mut Expansion>,
}

/// Nesting bound for `${a:-${b:-…}}`: deeper words are not Dockerfiles but attacks on the stack.
pub(super) const MAX_NESTING: usize = 256;

impl<'a, 't> Expander<'a, 't> {
    pub(super) fn new(
        lexer: &'a Lexer,
        word: &'a str,
        env: &'a dyn Environment,
        tracking: Option<&'t mut Expansion>,
    ) -> Self {
        Expander {
            lexer,
            word,
            scanner: Scanner::new(word),
            env,
            tracking,
        }
    }

    /// Expands up to `stop` (consumed) or the end of the word. `raw_escapes` keeps escape
    /// characters, as BuildKit does for the pattern and replacement of `${v#p}`, `${v/p/r}`.
    pub(super) fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
        mut words: Option<&mut WordSplitter>,
        depth: usize,
    ) -> Result<String, ShellError> {
        let mut result = String::new();
        let escape = self.lexer.escape;
        while let Some(ch) = self.scanner.peek() {
            if stop == Some(ch) {
                self.scanner.next();
                return Ok(result);
            }
            match ch {
                '$' => {
                    let value = self.process_dollar(depth)?;
                    if let Some(words) = words.as_deref_mut() {
                        words.add_str(&value);
                    }
                    result.push_str(&value);
                }
                '\'' | '"' => {
                    let value = if ch == '\'' {
                        self.process_single_quote()?
                    } else {
                        self.process_double_quote(raw_escapes, depth)?
                    };
                    if let Some(words) = words.as_deref_mut() {
                        words.add_raw_str(&value);
                    }
                    result.push_str(&value);
                }
                _ => {
                    self.scanner.next();
                    if ch == escape {
                        if raw_escapes {
                            if let Some(words) = words.as_deref_mut() {
                                words.add_raw_char(ch);
                            }
                            result.push(ch);
                        }
                        // An escape character ending the word escapes nothing and is dropped.
                        let Some(escaped) = self.scanner.next() else {
                            break;
                        };
                        if let Some(words) = words.as_deref_mut() {
                            words.add_raw_char(escaped);
                        }
                        result.push(escaped);
                    } else {
                        if let Some(words) = words.as_deref_mut() {
                            words.add_char(ch);
                        }
                        result.push(ch);
                    }
                }
            }
        }
        match stop {
            // Callers turn this into the error of the construct they were reading.
            Some(_) => Err(self.missing_brace(self.scanner.pos)),
            None => Ok(result),
        }
    }

    fn process_single_quote(&mut self) -> Result<String, ShellError> {
        // Everything up to the next single quote is literal; a single quote cannot be escaped.
        let start = self.scanner.pos;
        let mut result = String::new();
        self.scanner.next();
        if self.lexer.raw_quotes {
            result.push('\'');
        }
        loop {
            match self.scanner.next() {
                None => return Err(self.unterminated_quote(start, '\'')),
                Some('\'') => {
                    if self.lexer.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(ch) => result.push(ch),
            }
        }
    }

    fn process_double_quote(
        &mut self,
        raw_escapes: bool,
        depth: usize,
    ) -> Result<String, ShellError> {
        // Literal except `$…`; the escape character escapes only `"`, `$` and itself and is kept
        // before anything else (sh would also honour backquote and newline; Docker does not).
        let start = self.scanner.pos;
        let escape = self.lexer.escape;
        let mut result = String::new();
        self.scanner.next();
        if self.lexer.raw_quotes {
            result.push('"');
        }
        loop {
            match self.scanner.peek() {
                None => return Err(self.unterminated_quote(start, '"')),
                Some('"') => {
                    self.scanner.next();
                    if self.lexer.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let value = self.process_dollar(depth)?;
                    result.push_str(&value);
                }
                Some(mut ch) => {
                    self.scanner.next();
                    if ch == escape {
                        if raw_escapes {
                            result.push(ch);
                        }
                        match self.scanner.peek() {
                            // Leads to the unterminated-quote error on the next turn.
                            None => continue,
                            Some(next) if next == '"' || next == '$' || next == escape => {
                                self.scanner.next();
                                ch = next;
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn process_dollar(&mut self, depth: usize) -> Result<String, ShellError> {
        let start = self.scanner.pos;
        self.scanner.next();

        if self.scanner.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".to_owned());
            }
            return Ok(self.get_env(&name).unwrap_or_default().to_owned());
        }

        self.scanner.next();
        match self.scanner.peek() {
            None => return Err(self.missing_brace(start)),
            Some('{' | '}' | ':') => return Err(self.fault(start, Fault::BadSubstitution)),
            Some(_) => {}
        }
        if depth >= MAX_NESTING {
            return Err(self.fault(start, Fault::NestingTooDeep));
        }
        let name = self.process_name();
        let Some(mut modifier) = self.scanner.next() else {
            return Err(self.missing_brace(start));
        };
        let mut written = String::from(modifier);

        match modifier {
            '}' => Ok(self.get_env(&name).unwrap_or_default().to_owned()),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                let null_is_unset = modifier == ':';
                if null_is_unset {
                    // BuildKit reads the word after any `:x` before rejecting an unknown `x`, so
                    // a missing `}` is reported first.
                    match self.scanner.next() {
                        Some(ch) => {
                            modifier = ch;
                            written.push(ch);
                        }
                        None => return Err(self.missing_brace(start)),
                    }
                }
                let is_pattern = modifier == '#' || modifier == '%';
                if null_is_unset && is_pattern {
                    return Err(self.unsupported(start, written));
                }
                let word = self.nested(start, Some('}'), is_pattern, depth)?;
                let value = self.get_env(&name);
                match modifier {
                    '-' => Ok(match value {
                        Some(v) if !(null_is_unset && v.is_empty()) => v.to_owned(),
                        _ => word,
                    }),
                    '+' => Ok(match value {
                        Some(v) if !(null_is_unset && v.is_empty()) => word,
                        _ => String::new(),
                    }),
                    '?' => match value {
                        Some(v) if !(null_is_unset && v.is_empty()) => Ok(v.to_owned()),
                        _ => Err(self.fault(
                            start,
                            Fault::Required {
                                empty: value.is_some(),
                                name,
                                message: (!word.is_empty()).then_some(word),
                            },
                        )),
                    },
                    '#' | '%' => {
                        // A doubled operator (`##`, `%%`) removes the longest match.
                        let (pattern, greedy) = match word.strip_prefix(modifier) {
                            Some(rest) => (rest, true),
                            None => (word.as_str(), false),
                        };
                        let value = value.unwrap_or_default();
                        let trimmed = if modifier == '%' {
                            trim_suffix(pattern, value, greedy)
                        } else {
                            trim_prefix(pattern, value, greedy)
                        };
                        trimmed.map_err(|fault| self.pattern_fault(start, pattern, fault))
                    }
                    _ => Err(self.unsupported(start, written)),
                }
            }
            '/' => {
                let replace_all = self.scanner.peek() == Some('/');
                if replace_all {
                    self.scanner.next();
                }
                let pattern = match self.process_stop_on(Some('/'), true, None, depth + 1) {
                    Ok(pattern) => pattern,
                    Err(_) if self.scanner.peek().is_none() => {
                        return Err(self.fault(start, Fault::MissingSlash))
                    }
                    Err(err) => return Err(err),
                };
                let replacement = self.nested(start, Some('}'), true, depth)?;
                let value = self.get_env(&name).unwrap_or_default();
                replace(&pattern, value, &replacement, replace_all)
                    .map_err(|fault| self.pattern_fault(start, &pattern, fault))
            }
            _ => Err(self.unsupported(start, written)),
        }
    }

    /// Reads the word of a `${name<op>word}`; any failure at the end of input is reported, like
    /// BuildKit, as the missing `}` of the substitution that started at `start`.
    fn nested(
        &mut self,
        start: usize,
        stop: Option<char>,
        raw_escapes: bool,
        depth: usize,
    ) -> Result<String, ShellError> {
        match self.process_stop_on(stop, raw_escapes, None, depth + 1) {
            Ok(word) => Ok(word),
            Err(_) if self.scanner.peek().is_none() => Err(self.missing_brace(start)),
            Err(err) => Err(err),
        }
    }

    /// A name: letters, digits and `_`; or a run of digits (positional); or one special
    /// parameter character.
    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.scanner.peek() {
            if name.is_empty() && is_decimal_digit(ch) {
                while let Some(digit) = self.scanner.peek().filter(|&c| is_decimal_digit(c)) {
                    self.scanner.next();
                    name.push(digit);
                }
                return name;
            }
            if name.is_empty() && is_special_parameter(ch) {
                self.scanner.next();
                name.push(ch);
                return name;
            }
            if !is_letter(ch) && !is_decimal_digit(ch) && ch != '_' {
                break;
            }
            self.scanner.next();
            name.push(ch);
        }
        name
    }

    fn get_env(&mut self, name: &str) -> Option<&'a str> {
        let value = self.env.lookup(name);
        if let Some(tracking) = self.tracking.as_deref_mut() {
            if !tracking.used.contains(name) {
                tracking.used.insert(name.to_owned());
            }
            if value.is_none() && !tracking.unset.contains(name) {
                tracking.unset.insert(name.to_owned());
            }
        }
        value
    }

    fn missing_brace(&self, position: usize) -> ShellError {
        self.fault(position, Fault::MissingBrace)
    }

    fn unterminated_quote(&self, position: usize, quote: char) -> ShellError {
        self.fault(position, Fault::UnterminatedQuote(quote))
    }

    fn unsupported(&self, position: usize, modifier: String) -> ShellError {
        self.fault(position, Fault::UnsupportedModifier(modifier))
    }

    fn pattern_fault(&self, position: usize, pattern: &str, fault: PatternFault) -> ShellError {
        let word = self.word.to_owned();
        match fault {
            PatternFault::InvalidEscape(escaped) => ShellError::InvalidPatternEscape {
                word,
                position,
                pattern: pattern.to_owned(),
                escaped,
            },
            PatternFault::ResultTooLarge => ShellError::ResultTooLarge { word, position },
            PatternFault::TooManyStars => ShellError::PatternTooComplex {
                word,
                position,
                pattern: pattern.to_owned(),
            },
        }
    }

    fn fault(&self, position: usize, fault: Fault) -> ShellError {
        let word = self.word.to_owned();
        match fault {
            Fault::UnterminatedQuote(quote) => ShellError::UnterminatedQuote {
                word,
                position,
                quote,
            },
            Fault::MissingBrace => ShellError::MissingBrace { word, position },
            Fault::MissingSlash => ShellError::MissingSlash { word, position },
            Fault::BadSubstitution => ShellError::BadSubstitution { word, position },
            Fault::NestingTooDeep => ShellError::NestingTooDeep { word, position },
            Fault::UnsupportedModifier(modifier) => ShellError::UnsupportedModifier {
                word,
                position,
                modifier,
            },
            Fault::Required {
                name,
                message,
                empty,
            } => ShellError::RequiredVariable {
                word,
                position,
                name,
                message,
                empty,
            },
        }
    }
}

/// What went wrong, before the word and position are attached.
enum Fault {
    UnterminatedQuote(char),
    MissingBrace,
    MissingSlash,
    BadSubstitution,
    NestingTooDeep,
    UnsupportedModifier(String),
    Required {
        name: String,
        message: Option<String>,
        empty: bool,
    },
}

/// Go's `unicode.IsDigit`: decimal digits of any script (category Nd).
pub(super) fn is_decimal_digit(ch: char) -> bool {
    ch.is_ascii_digit()
        || (!ch.is_ascii() && ch.general_category() == GeneralCategory::DecimalNumber)
}

/// Go's `unicode.IsLetter`: category L (narrower than Rust's `is_alphabetic`).
pub(super) fn is_letter(ch: char) -> bool {
    ch.is_ascii_alphabetic()
        || (!ch.is_ascii() && ch.general_category_group() == GeneralCategoryGroup::Letter)
}

fn is_special_parameter(ch: char) -> bool {
    matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}
