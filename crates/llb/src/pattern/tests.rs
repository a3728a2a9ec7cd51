//! Table tests: Go's `filepath.Match` vectors, moby/patternmatcher's vectors and the cases
//! where the two syntaxes differ.

use super::*;

/// `Ok(matched)` or the error Go reports (`None` for `ErrBadPattern`).
type Want = Option<bool>;

/// Go's `path/filepath` `matchTests` (match_test.go), plus its later unclosed-class cases.
const GO_MATCH: &[(&str, &str, Want)] = &[
    ("abc", "abc", Some(true)),
    ("*", "abc", Some(true)),
    ("*c", "abc", Some(true)),
    ("a*", "a", Some(true)),
    ("a*", "abc", Some(true)),
    ("a*", "ab/c", Some(false)),
    ("a*/b", "abc/b", Some(true)),
    ("a*/b", "a/c/b", Some(false)),
    ("a*b*c*d*e*/f", "axbxcxdxe/f", Some(true)),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/f", Some(true)),
    ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", Some(false)),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", Some(false)),
    ("a*b?c*x", "abxbbxdbxebxczzx", Some(true)),
    ("a*b?c*x", "abxbbxdbxebxczzy", Some(false)),
    ("ab[c]", "abc", Some(true)),
    ("ab[b-d]", "abc", Some(true)),
    ("ab[e-g]", "abc", Some(false)),
    ("ab[^c]", "abc", Some(false)),
    ("ab[^b-d]", "abc", Some(false)),
    ("ab[^e-g]", "abc", Some(true)),
    ("a\\*b", "a*b", Some(true)),
    ("a\\*b", "ab", Some(false)),
    ("a?b", "a☺b", Some(true)),
    ("a[^a]b", "a☺b", Some(true)),
    ("a???b", "a☺b", Some(false)),
    ("a[^a][^a][^a]b", "a☺b", Some(false)),
    ("[a-ζ]*", "α", Some(true)),
    ("*[a-ζ]", "A", Some(false)),
    ("a?b", "a/b", Some(false)),
    ("a*b", "a/b", Some(false)),
    ("[\\]a]", "]", Some(true)),
    ("[\\-]", "-", Some(true)),
    ("[x\\-]", "x", Some(true)),
    ("[x\\-]", "-", Some(true)),
    ("[x\\-]", "z", Some(false)),
    ("[\\-x]", "x", Some(true)),
    ("[\\-x]", "-", Some(true)),
    ("[\\-x]", "a", Some(false)),
    ("[]a]", "]", None),
    ("[-]", "-", None),
    ("[x-]", "x", None),
    ("[x-]", "-", None),
    ("[x-]", "z", None),
    ("[-x]", "x", None),
    ("[-x]", "-", None),
    ("[-x]", "a", None),
    ("\\", "a", None),
    ("[a-b-c]", "a", None),
    ("[", "a", None),
    ("[^", "a", None),
    ("[^bc", "a", None),
    ("a[", "a", None),
    ("a[", "ab", None),
    ("a[", "x", None),
    ("a/b[", "x", None),
    ("*x", "xxx", Some(true)),
];

/// How a path fares in moby/patternmatcher's `TestMatches`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Pm {
    /// The pattern matches the path itself.
    Exact,
    /// Only a parent directory of the path matches.
    Inexact,
    Fail,
}
use Pm::{Exact, Fail, Inexact};

/// moby/patternmatcher's `TestMatches` table (with `**`).
const PATTERNMATCHER: &[(&str, &str, Pm)] = &[
    ("**", "file", Exact),
    ("**", "file/", Exact),
    ("**/", "file", Exact),
    ("**/", "file/", Exact),
    ("**", "/", Exact),
    ("**/", "/", Exact),
    ("**", "dir/file", Exact),
    ("**/", "dir/file", Exact),
    ("**", "dir/file/", Exact),
    ("**/", "dir/file/", Exact),
    ("**/**", "dir/file", Exact),
    ("**/**", "dir/file/", Exact),
    ("dir/**", "dir/file", Exact),
    ("dir/**", "dir/file/", Exact),
    ("dir/**", "dir/dir2/file", Exact),
    ("dir/**", "dir/dir2/file/", Exact),
    ("**/dir", "dir", Exact),
    ("**/dir", "dir/file", Inexact),
    ("**/dir2/*", "dir/dir2/file", Exact),
    ("**/dir2/*", "dir/dir2/file/", Inexact),
    ("**/dir2/**", "dir/dir2/dir3/file", Exact),
    ("**/dir2/**", "dir/dir2/dir3/file/", Exact),
    ("**file", "file", Exact),
    ("**file", "dir/file", Exact),
    ("**/file", "dir/file", Exact),
    ("**file", "dir/dir/file", Exact),
    ("**/file", "dir/dir/file", Exact),
    ("**/file*", "dir/dir/file", Exact),
    ("**/file*", "dir/dir/file.txt", Exact),
    ("**/file*txt", "dir/dir/file.txt", Exact),
    ("**/file*.txt", "dir/dir/file.txt", Exact),
    ("**/file*.txt*", "dir/dir/file.txt", Exact),
    ("**/**/*.txt", "dir/dir/file.txt", Exact),
    ("**/**/*.txt2", "dir/dir/file.txt", Fail),
    ("**/*.txt", "file.txt", Exact),
    ("**/**/*.txt", "file.txt", Exact),
    ("a**/*.txt", "a/file.txt", Exact),
    ("a**/*.txt", "a/dir/file.txt", Exact),
    ("a**/*.txt", "a/dir/dir/file.txt", Exact),
    ("a/*.txt", "a/dir/file.txt", Fail),
    ("a/*.txt", "a/file.txt", Exact),
    ("a/*.txt**", "a/file.txt", Exact),
    ("a[b-d]e", "ae", Fail),
    ("a[b-d]e", "ace", Exact),
    ("a[b-d]e", "aae", Fail),
    ("a[^b-d]e", "aze", Exact),
    (".*", ".foo", Exact),
    (".*", "foo", Fail),
    ("abc.def", "abcdef", Fail),
    ("abc.def", "abc.def", Exact),
    ("abc.def", "abcZdef", Fail),
    ("abc?def", "abcZdef", Exact),
    ("abc?def", "abcdef", Fail),
    ("**/foo/bar", "foo/bar", Exact),
    ("**/foo/bar", "dir/foo/bar", Exact),
    ("**/foo/bar", "dir/dir2/foo/bar", Exact),
    ("abc/**", "abc", Fail),
    ("abc/**", "abc/def", Exact),
    ("abc/**", "abc/def/ghi", Exact),
    ("**/.foo", ".foo", Exact),
    ("**/.foo", "bar.foo", Fail),
    ("a(b)c/def", "a(b)c/def", Exact),
    ("a(b)c/def", "a(b)c/xyz", Fail),
    ("a.|)$(}+{bc", "a.|)$(}+{bc", Exact),
    (
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        Exact,
    ),
    (
        "dist/*.whl",
        "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
        Exact,
    ),
    ("a\\\\", "a\\", Exact),
    ("a\\*b", "a*b", Exact),
];

fn check_go_table(name: &str, compile: fn(&str) -> Result<PathPattern, PatternError>) {
    let mut failures = Vec::new();
    for &(pattern, path, want) in GO_MATCH {
        let got = compile(pattern).map(|p| p.matches(path)).ok();
        if got != want {
            failures.push(format!(
                "{name}({pattern:?}).matches({path:?}) = {got:?}, want {want:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn go_filepath_match_vectors_hold_for_glob() {
    check_go_table("glob", PathPattern::glob);
}

#[test]
fn go_filepath_match_vectors_hold_with_double_star() {
    check_go_table("new", PathPattern::new);
}

#[test]
fn patternmatcher_vectors() {
    let mut failures = Vec::new();
    for &(pattern, path, want) in PATTERNMATCHER {
        let compiled = PathPattern::new(pattern).expect(pattern);
        let exact = compiled.matches(path);
        let any = compiled.matches_or_parent_matches(path);
        if exact != (want == Exact) || any != (want != Fail) {
            failures.push(format!(
                "{pattern:?} on {path:?}: matches {exact}, or a parent {any}; want {want:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Where the two syntaxes part, and Docker's two oddities of `**` patterns.
#[test]
fn double_star_only_in_the_double_star_syntax() {
    let cases: &[(&str, &str, bool, bool)] = &[
        // (pattern, path, glob matches, new matches)
        ("a/**", "a/b/c", false, true),
        ("a/**", "a/b", true, true),
        ("**/x", "x", false, true),
        ("**/x", "a/b/x", false, true),
        ("a/**/b", "a/b", false, true),
        ("a/**/b", "a/x/y/b", false, true),
        ("a**b", "ab", true, true),
        // `(.*/)?` between `a` and `b`: a run ending in `/`, or nothing.
        ("a**b", "axb", true, false),
        ("a**b", "ax/b", false, true),
        // A literal rest after a leading `**` is a plain suffix.
        ("**.txt", "a/b.txt", false, true),
        ("**.txt", "b.txt", true, true),
        ("**file", "dir/dir/profile", false, true),
        // `^` anchors in a pattern with wildcards, and is a character otherwise.
        ("a^b", "a^b", true, true),
        ("a^*", "a^b", true, false),
        ("a^**", "a^bc", true, true),
        ("^a*", "abc", false, true),
        ("^a*", "^abc", true, false),
        ("ab[^c]", "abd", true, true),
        // `!` is not a negation in Go's syntax.
        ("[!a]", "!", true, true),
        ("[!a]", "b", false, false),
        // A class may match `/`.
        ("a[^x]b", "a/b", true, true),
    ];
    let mut failures = Vec::new();
    for &(pattern, path, glob, new) in cases {
        let got_glob = PathPattern::glob(pattern).unwrap().matches(path);
        let got_new = PathPattern::new(pattern).unwrap().matches(path);
        if (got_glob, got_new) != (glob, new) {
            failures.push(format!(
                "{pattern:?} on {path:?}: glob {got_glob}, new {got_new}; want {glob}, {new}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn descending_is_pruned_to_directories_that_can_hold_a_match() {
    let cases: &[(&str, &str, bool)] = &[
        ("src/*.rs", "src", true),
        ("src/*.rs", "tests", false),
        ("src/*.rs", "src/a", false),
        ("*/x", "anything", true),
        ("*/x", "a/b", false),
        ("a/**", "a", true),
        ("a/**", "a/b/c", true),
        ("a/**", "b", false),
        ("**/x", "deep/down", true),
        ("docs/guide/index.md", "docs", true),
        ("docs/guide/index.md", "docs/guide", true),
        ("docs/guide/index.md", "doc", false),
        ("docs/guide/index.md", "docs/guide/index.md", false),
        ("do**", "docs", true),
        ("do**", "d", false),
        ("a/b**", "a", true),
        ("[ab]/c", "b", true),
        ("[ab]/c", "c", false),
    ];
    for &(pattern, dir, want) in cases {
        let compiled = PathPattern::new(pattern).unwrap();
        assert_eq!(
            compiled.may_match_below(dir),
            want,
            "{pattern:?} below {dir:?}"
        );
    }
}

#[test]
fn wildcards_are_recognised_unless_escaped() {
    for (name, want) in [
        ("plain/file.txt", false),
        ("*.txt", true),
        ("file?.txt", true),
        ("[ab].txt", true),
        ("a\\*b", false),
        ("a\\\\*b", true),
        ("a]b", false),
    ] {
        assert_eq!(PathPattern::has_wildcards(name), want, "{name}");
    }
}

#[test]
fn bad_patterns_say_what_is_wrong() {
    assert_eq!(
        PathPattern::new("abc\\"),
        Err(PatternError::TrailingBackslash {
            pattern: "abc\\".into()
        })
    );
    assert_eq!(
        PathPattern::glob("x/[ab"),
        Err(PatternError::UnclosedClass {
            pattern: "x/[ab".into(),
            position: 3
        })
    );
    let err = PathPattern::new("a[-b]").unwrap_err();
    assert_eq!(
        err,
        PatternError::BadClass {
            pattern: "a[-b]".into(),
            position: 2
        }
    );
    assert!(
        err.to_string()
            .contains("write \\- and \\] inside brackets"),
        "{err}"
    );
    // A bad class after a star is still found, as Go checks the whole pattern.
    assert!(PathPattern::glob("*a[").is_err());
}

#[test]
fn long_paths_and_many_stars_stay_linear() {
    let pattern = PathPattern::new(&"*a".repeat(200)).unwrap();
    let path = "a".repeat(5_000) + "b";
    assert!(!pattern.matches(&path));
    let deep = PathPattern::new("**/**/**/**/**/x").unwrap();
    assert!(!deep.matches(&"d/".repeat(2_000)));
}

#[test]
fn display_is_the_pattern() {
    let p = PathPattern::new("a/**/*.go").unwrap();
    assert_eq!(p.to_string(), "a/**/*.go");
    assert_eq!(p.as_str(), "a/**/*.go");
}
