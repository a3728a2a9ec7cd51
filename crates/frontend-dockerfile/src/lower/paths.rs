//! Path arithmetic as BuildKit does it with Go's `path` package: COPY destinations are resolved
//! against the working directory, sources against the root of what they are copied from.

pub(crate) use crate::gopath::clean;

/// `path.Join("/", p)`: `p` made absolute and clean.
pub(crate) fn absolute(path: &str) -> String {
    clean(&format!("/{path}"))
}

/// BuildKit's `pathRelativeToWorkingDir` for a COPY or ADD destination: relative to the working
/// directory, cleaned, keeping a trailing `/` (which means "into this directory") when the
/// destination had one or was `.`.
pub(crate) fn destination(workdir: &str, dest: &str) -> String {
    let dest = if dest.is_empty() || dest == "." {
        "./"
    } else {
        dest
    };
    let joined = if dest.starts_with('/') {
        clean(dest)
    } else {
        clean(&format!("{workdir}/{dest}"))
    };
    let keep_slash = dest.ends_with('/') || dest.ends_with("/.");
    if keep_slash && !joined.ends_with('/') {
        format!("{joined}/")
    } else {
        joined
    }
}

/// The last element of a URL path for a downloaded file's name, as `ADD` names it
/// (`__unnamed__` when the path has none).
pub(crate) fn url_file_name(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let without_query = after_scheme
        .split(['?', '#'])
        .next()
        .unwrap_or(after_scheme);
    let path = without_query.find('/').map_or("", |i| &without_query[i..]);
    let base = clean(path);
    match base.rsplit('/').next() {
        Some(name) if !name.is_empty() && name != "." && name != ".." => name.to_string(),
        _ => "__unnamed__".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_table() {
        for (input, expected) in [
            ("", "."),
            ("/", "/"),
            ("a/./b/", "a/b"),
            ("/a/../../b", "/b"),
            ("../a", "../a"),
            ("//x//y", "/x/y"),
        ] {
            assert_eq!(clean(input), expected, "{input}");
        }
    }

    #[test]
    fn destination_table() {
        for (workdir, dest, expected) in [
            ("/", "/app", "/app"),
            ("/", "/app/", "/app/"),
            ("/src", "out", "/src/out"),
            ("/src", "out/", "/src/out/"),
            ("/src", ".", "/src/"),
            ("/src", "./", "/src/"),
            ("/", ".", "/"),
            ("/src", "../x", "/x"),
            ("/src", "/a/./b/.", "/a/b/"),
        ] {
            assert_eq!(destination(workdir, dest), expected, "{workdir} {dest}");
        }
    }

    #[test]
    fn url_file_names() {
        assert_eq!(
            url_file_name("https://example.com/dl/tool.tar.gz?x=1"),
            "tool.tar.gz"
        );
        assert_eq!(url_file_name("https://example.com"), "__unnamed__");
        assert_eq!(url_file_name("https://example.com/"), "__unnamed__");
        assert_eq!(url_file_name("http://h/a/b/"), "b");
    }
}
