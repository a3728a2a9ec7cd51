//! Git references as `ADD` sources, recognised as BuildKit's `dfgitutil.ParseGitRef` does:
//! `git://`, `ssh://` and scp-like `user@host:path` remotes, and HTTP(S) URLs whose path ends in
//! `.git`. A `#ref:subdir` fragment and the `ref`, `tag`, `branch`, `subdir` and `keep-git-dir`
//! query keys select what is checked out.

/// A parsed git source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GitRef {
    /// The remote, without fragment and query.
    pub(crate) remote: String,
    /// Branch, tag or commit.
    pub(crate) reference: Option<String>,
    /// Directory inside the repository to copy, if not all of it.
    pub(crate) subdir: Option<String>,
    /// `keep-git-dir` from the query.
    pub(crate) keep_git_dir: Option<bool>,
}

/// `Ok(None)` for a source that is not a git reference; `Err(reason)` for a git reference the
/// build graph cannot express.
pub(crate) fn parse_git_ref(source: &str) -> Result<Option<GitRef>, String> {
    if source.starts_with("./") || source.starts_with("../") {
        return Ok(None);
    }
    let (without_fragment, fragment) = match source.split_once('#') {
        Some((a, b)) => (a, Some(b)),
        None => (source, None),
    };
    let (remote, query) = match without_fragment.split_once('?') {
        Some((a, b)) if is_url(a) => (a, Some(b)),
        _ => (without_fragment, None),
    };
    let is_git = if let Some(rest) = remote
        .strip_prefix("https://")
        .or_else(|| remote.strip_prefix("http://"))
    {
        // An HTTP(S) URL is a repository only when its path ends in `.git`.
        rest.split_once('/')
            .is_some_and(|(_, path)| path.trim_end_matches('/').ends_with(".git"))
    } else {
        remote.starts_with("git://") || remote.starts_with("ssh://") || is_scp_like(remote)
    };
    if !is_git {
        return Ok(None);
    }
    let mut git = GitRef {
        remote: remote.to_string(),
        reference: None,
        subdir: None,
        keep_git_dir: None,
    };
    if let Some(fragment) = fragment {
        let (reference, subdir) = match fragment.split_once(':') {
            Some((r, s)) => (r, Some(s)),
            None => (fragment, None),
        };
        git.reference = Some(reference.to_string()).filter(|r| !r.is_empty());
        git.subdir = subdir.map(str::to_string).filter(|s| !s.is_empty());
    }
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        if pair.is_empty() {
            continue;
        }
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "ref" => set_once(&mut git.reference, value.to_string(), "ref")?,
            "tag" => set_once(&mut git.reference, prefixed("refs/tags/", value), "tag")?,
            "branch" => set_once(&mut git.reference, prefixed("refs/heads/", value), "branch")?,
            "subdir" => set_once(&mut git.subdir, value.to_string(), "subdir")?,
            "keep-git-dir" => {
                git.keep_git_dir = Some(match value {
                    "" | "1" | "t" | "T" | "true" | "TRUE" | "True" => true,
                    "0" | "f" | "F" | "false" | "FALSE" | "False" => false,
                    _ => return Err(format!("invalid keep-git-dir value {value:?}")),
                })
            }
            "checksum" | "commit" => {
                return Err(
                    "pinning a commit checksum is not supported yet; pin the commit with #<sha> instead"
                        .to_string(),
                )
            }
            "submodules" => {
                return Err("the submodules option is not supported yet".to_string());
            }
            other => return Err(format!("unexpected query {other:?}")),
        }
    }
    Ok(Some(git))
}

fn is_url(s: &str) -> bool {
    s.contains("://")
}

/// `user@host:path`, the scp-like syntax git accepts for SSH.
fn is_scp_like(s: &str) -> bool {
    let Some((user, rest)) = s.split_once('@') else {
        return false;
    };
    let Some((host, path)) = rest.split_once(':') else {
        return false;
    };
    !user.is_empty()
        && !user.contains('/')
        && !host.is_empty()
        && !host.contains('/')
        && !path.is_empty()
}

fn prefixed(prefix: &str, value: &str) -> String {
    if value.starts_with(prefix) {
        value.to_string()
    } else {
        format!("{prefix}{value}")
    }
}

fn set_once(slot: &mut Option<String>, value: String, key: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("query {key:?} has no value"));
    }
    match slot {
        Some(existing) if *existing != value => {
            Err(format!("{key} conflicts: {existing:?} vs {value:?}"))
        }
        _ => {
            *slot = Some(value);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(remote: &str, reference: Option<&str>, subdir: Option<&str>) -> Option<GitRef> {
        Some(GitRef {
            remote: remote.into(),
            reference: reference.map(Into::into),
            subdir: subdir.map(Into::into),
            keep_git_dir: None,
        })
    }

    #[test]
    fn recognises_git_sources() {
        assert_eq!(
            parse_git_ref("https://github.com/foo/bar.git#v1:docs").unwrap(),
            git("https://github.com/foo/bar.git", Some("v1"), Some("docs"))
        );
        assert_eq!(
            parse_git_ref("git@github.com:foo/bar.git").unwrap(),
            git("git@github.com:foo/bar.git", None, None)
        );
        assert_eq!(
            parse_git_ref("git://host/repo").unwrap(),
            git("git://host/repo", None, None)
        );
        assert_eq!(
            parse_git_ref("https://github.com/foo/bar.git?branch=main").unwrap(),
            git(
                "https://github.com/foo/bar.git",
                Some("refs/heads/main"),
                None
            )
        );
    }

    #[test]
    fn other_sources_are_not_git() {
        for s in [
            "https://example.com/file.tar.gz",
            "src/",
            "./a@b:c",
            "*.go",
            "https://example.com/",
        ] {
            assert_eq!(parse_git_ref(s).unwrap(), None, "{s}");
        }
    }

    #[test]
    fn unsupported_queries_are_errors() {
        assert!(parse_git_ref("https://h/r.git?checksum=abc").is_err());
        assert!(parse_git_ref("https://h/r.git?nope=1").is_err());
        assert!(parse_git_ref("https://h/r.git?tag=a&branch=b").is_err());
    }
}
