//! Word expansion never panics, whatever the word, escape character or mode.
#![no_main]

use img_frontend_dockerfile::Lexer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(word) = std::str::from_utf8(rest) else {
        return;
    };
    let escape = if selector & 1 == 0 { '\\' } else { '`' };
    let lexer = Lexer::new(escape)
        .with_raw_quotes(selector & 8 != 0)
        .with_raw_escapes(selector & 16 != 0);
    let env: Vec<(String, String)> = [
        ("PWD", "/home"),
        ("EMPTY", ""),
        ("SPACED", " a  b "),
        ("GLOB", "*?\\[x]"),
        ("DOLLAR", "$0$$"),
        ("NL", "a\nb"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    match (selector >> 1) & 3 {
        0 => {
            let _ = lexer.expand_word(word, &env);
        }
        1 => {
            if let Ok(words) = lexer.expand_words(word, &env) {
                assert!(words.iter().all(|w| !w.is_empty()));
            }
        }
        _ => {
            if let Ok(expansion) = lexer.expand_word_tracking(word, &env) {
                assert!(expansion.unset.is_subset(&expansion.used));
                assert_eq!(
                    Ok(expansion.value),
                    lexer.expand_word(word, &env).map_err(|_| ())
                );
            }
        }
    }
});
