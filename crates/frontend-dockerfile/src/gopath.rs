//! Go's `path.Clean` (and `filepath.Clean` on Unix), which BuildKit applies to every path a
//! Dockerfile names: `.dockerignore` patterns, mount targets, COPY sources and destinations.

/// Go's `path.Clean`: no `.`, no `..` past what they cancel, no repeated or trailing `/`, and
/// `.` for nothing.
pub(crate) fn clean(path: &str) -> String {
    let absolute = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ if absolute => {}
                _ => parts.push(".."),
            },
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (absolute, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::clean;

    #[test]
    fn cleans_like_go() {
        for (input, expected) in [
            ("", "."),
            (".", "."),
            ("/", "/"),
            ("a/./b//c/", "a/b/c"),
            ("a/../../b", "../b"),
            ("/../a/..", "/"),
            ("./x/../y/", "y"),
        ] {
            assert_eq!(clean(input), expected, "{input:?}");
        }
    }
}
