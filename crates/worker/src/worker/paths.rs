//! Paths inside a tree that is some other filesystem's root: symlinks resolve as if the tree
//! were `/` (as they will in a container), so nothing a layer contains can make a file op read
//! or write outside it. Plus user and group names from the tree's `/etc/passwd` and
//! `/etc/group`.

use std::path::{Component, Path, PathBuf};

use img_llb::{IdOrName, Owner};

use super::WorkerError;

/// How many symlinks one resolution may follow (Linux's limit).
const MAX_LINKS: usize = 40;

/// Lexically cleaned components of `path` (absolute or not), `..` clamped at the root.
pub(crate) fn clean_components(path: &str) -> Vec<String> {
    let mut parts: Vec<String> = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    parts
}

/// The host path of `path` inside `root`, following symlinks as the container would (a link's
/// target is resolved from the root or from the link's directory, and `..` never climbs above
/// the root); the last component is followed only when `follow_last`. Components that do not
/// exist are kept as written.
pub(crate) fn resolve_in_root_checked(
    root: &Path,
    path: &str,
    follow_last: bool,
) -> Result<PathBuf, WorkerError> {
    // Components still to walk, last first, so a link's target can be pushed in its place.
    let mut pending: Vec<String> = link_components(path);
    pending.reverse();
    let mut resolved: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = root.join(resolved.iter().collect::<PathBuf>()).join(&part);
        let follow = !pending.is_empty() || follow_last;
        match std::fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() && follow => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(WorkerError::OutsideRoot {
                        path: path.to_owned(),
                    });
                }
                let target = std::fs::read_link(&candidate)
                    .map_err(WorkerError::file("reading link", &candidate))?;
                let target = target.to_string_lossy().into_owned();
                if target.starts_with('/') {
                    resolved.clear();
                }
                let mut more = link_components(&target);
                more.reverse();
                pending.extend(more);
            }
            _ => resolved.push(part),
        }
    }
    Ok(root.join(resolved.iter().collect::<PathBuf>()))
}

/// The components of a path or link target, `.` dropped, `..` kept for the walk to apply.
fn link_components(target: &str) -> Vec<String> {
    Path::new(target)
        .components()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(p.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".to_owned()),
            _ => None,
        })
        .collect()
}

/// uid and gid of `owner` in the tree at `root` (its `/etc/passwd` and `/etc/group`).
pub(crate) fn resolve_owner(root: &Path, owner: &Owner) -> Result<(u32, u32), WorkerError> {
    let (uid, primary_gid) = match &owner.user {
        IdOrName::Id(id) => (*id, None),
        IdOrName::Name(name) => {
            let entry = lookup(root, "passwd", name)?.ok_or_else(|| WorkerError::UnknownId {
                kind: "user",
                name: name.clone(),
                file: "passwd",
            })?;
            let uid = entry.get(2).and_then(|v| v.parse().ok());
            let gid = entry.get(3).and_then(|v| v.parse().ok());
            match uid {
                Some(uid) => (uid, gid),
                None => {
                    return Err(WorkerError::UnknownId {
                        kind: "user",
                        name: name.clone(),
                        file: "passwd",
                    })
                }
            }
        }
    };
    let gid = match &owner.group {
        None => primary_gid.unwrap_or(uid),
        Some(IdOrName::Id(id)) => *id,
        Some(IdOrName::Name(name)) => lookup(root, "group", name)?
            .and_then(|e| e.get(2).and_then(|v| v.parse().ok()))
            .ok_or_else(|| WorkerError::UnknownId {
                kind: "group",
                name: name.clone(),
                file: "group",
            })?,
    };
    Ok((uid, gid))
}

/// The `:`-separated fields of the line of `/etc/<file>` whose first field is `name`.
fn lookup(root: &Path, file: &str, name: &str) -> Result<Option<Vec<String>>, WorkerError> {
    let path = resolve_in_root_checked(root, &format!("/etc/{file}"), true)?;
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(WorkerError::file("reading", path)(e)),
    };
    Ok(text
        .lines()
        .map(|l| l.split(':').map(str::to_owned).collect::<Vec<_>>())
        .find(|fields| fields.first().map(String::as_str) == Some(name)))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        symlink("/usr/bin", root.join("bin")).unwrap();
        symlink("../../../../etc", root.join("usr/escape")).unwrap();
        symlink("bin/tool", root.join("usr/rel")).unwrap();
        let cases = [
            ("/bin/sh", true, "usr/bin/sh"),
            ("/bin", false, "bin"),
            ("/usr/escape/passwd", true, "etc/passwd"),
            ("/../../x", true, "x"),
            ("/usr/rel", true, "usr/bin/tool"),
        ];
        for (path, follow, want) in cases {
            assert_eq!(
                resolve_in_root_checked(root, path, follow).unwrap(),
                root.join(want),
                "{path}"
            );
        }
    }

    #[test]
    fn owners_resolve_against_the_tree() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("etc")).unwrap();
        std::fs::write(
            tmp.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(tmp.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        let owner = |user: IdOrName, group: Option<IdOrName>| Owner { user, group };
        let root = tmp.path();
        assert_eq!(
            resolve_owner(root, &owner(IdOrName::Name("app".into()), None)).unwrap(),
            (1000, 1001)
        );
        assert_eq!(
            resolve_owner(root, &owner(IdOrName::Id(7), None)).unwrap(),
            (7, 7)
        );
        assert_eq!(
            resolve_owner(
                root,
                &owner(IdOrName::Id(7), Some(IdOrName::Name("staff".into())))
            )
            .unwrap(),
            (7, 50)
        );
        assert!(resolve_owner(root, &owner(IdOrName::Name("nobody".into()), None)).is_err());
    }
}
