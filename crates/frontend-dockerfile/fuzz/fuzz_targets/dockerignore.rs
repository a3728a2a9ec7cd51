//! `.dockerignore` parsing and matching never panic.
#![no_main]

use std::path::Path;

use img_frontend_dockerfile::IgnorePatterns;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // The last line doubles as a path to test, so paths get fuzzed too.
    let path = text.lines().last().unwrap_or_default();
    if let Ok(patterns) = IgnorePatterns::parse(&text, Path::new(".dockerignore")) {
        for candidate in [path, "a", "a/b/c", "dir/file.txt", ".git/config"] {
            let excluded = patterns.is_excluded(candidate);
            if excluded {
                let _ = patterns.may_include_below(candidate);
            }
        }
    }
});
