//! What a copy reads from its source tree, decided by one piece of code used twice: for the
//! op's cache key and for the copy itself (`DESIGN.md`, "What is copied is what was keyed").
//!
//! Sources are resolved as BuildKit resolves them, inside the tree's root: a literal source is
//! followed through every link (when the copy follows links); a wildcard source has the part
//! before its first wildcard component resolved the same way, then the rest, compiled once as
//! one `filepath.Match` pattern, matched against the paths below it of a walk that never
//! follows a link, and each match is followed like a literal source. What a resolved source holds is walked without following any link: links below a
//! copied directory are copied as links.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use img_llb::{CopyAction, PathPattern};

use super::paths::clean_components;
use super::root::{rel_str, Meta, TreeRoot};
use super::WorkerError;
use img_solver::PathFilter;

/// What kind of entry a copy reads, with what it reads of it besides metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EntryKind {
    /// A regular file: its content.
    File,
    /// A directory.
    Dir,
    /// A symbolic link, copied as a link: its target.
    Symlink(OsString),
    /// A FIFO or device node, recreated with `mknod`.
    Special,
}

/// One entry a copy reads. A plan holds one per entry of a source, so it is kept small: one
/// allocation, its path, whose tail is also its destination name.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// Its canonical path in the source tree.
    pub path: Box<Path>,
    /// Where in `path` the part below the copied source starts.
    rel_start: usize,
    /// Its own metadata (a link's, never its target's).
    pub meta: Meta,
    /// What it is.
    pub kind: EntryKind,
}

impl Entry {
    /// The top entry of a source, at `path`.
    fn top(path: &Path, meta: Meta, kind: EntryKind) -> Entry {
        let path: Box<Path> = path.into();
        Entry {
            rel_start: path.as_os_str().len(),
            path,
            meta,
            kind,
        }
    }

    /// The entry at `path`, in directory `dir` (an entry of the same source).
    fn child(dir: &Entry, path: PathBuf, meta: Meta, kind: EntryKind) -> Entry {
        let path: Box<Path> = path.into();
        let (dir_len, dir_rel_start) = (dir.path.as_os_str().len(), dir.rel_start);
        // Below the top, `rel` starts after the top's path and its `/`; at the top of the tree
        // (an empty path) it is the whole path.
        let rel_start = if dir_rel_start == 0 || dir_len == 0 {
            0
        } else if dir_rel_start >= dir_len {
            dir_len + 1
        } else {
            dir_rel_start
        };
        Entry {
            path,
            rel_start,
            meta,
            kind,
        }
    }

    /// Its path below the copied source (empty for the source itself): the destination name.
    pub(crate) fn rel(&self) -> &Path {
        let bytes = self.path.as_os_str().as_bytes();
        Path::new(OsStr::from_bytes(&bytes[self.rel_start.min(bytes.len())..]))
    }
}

/// One source of a copy, resolved.
#[derive(Debug, Clone)]
pub(crate) struct PlannedSource {
    /// The path as written or matched, cleaned: its last component names the copy.
    pub name: PathBuf,
    /// The links followed to reach it: their paths and targets.
    pub links: Links,
    /// What is read, in walk order: the source itself, then (for a directory) what it holds.
    pub entries: Vec<Entry>,
}

impl PlannedSource {
    /// The resolved source itself.
    pub(crate) fn top(&self) -> &Entry {
        // Built with its top entry first, always.
        &self.entries[0]
    }
}

/// Which entries of a source tree a copy takes.
pub(crate) struct Selection<'a> {
    /// A local source's selection (`.dockerignore`), on paths of the tree.
    pub filter: Option<&'a dyn PathFilter>,
    /// `--include` patterns, on paths below the copied source.
    pub include: Vec<PathPattern>,
    /// `--exclude` patterns, on paths below the copied source.
    pub exclude: Vec<PathPattern>,
}

impl Selection<'_> {
    /// Everything.
    pub(crate) fn all() -> Selection<'static> {
        Selection {
            filter: None,
            include: Vec::new(),
            exclude: Vec::new(),
        }
    }

    /// Whether the tree's filter keeps `path` (a directory too when something below it is).
    fn keeps(&self, path: &str, is_dir: bool) -> bool {
        match self.filter {
            None => true,
            Some(_) if path.is_empty() => true,
            Some(f) if is_dir => f.selects(path, true) || f.may_select_under(path),
            Some(f) => f.selects(path, false),
        }
    }

    /// Whether `--include`/`--exclude` keep `rel` (relative to the copied source).
    fn patterns_keep(&self, rel: &str, is_dir: bool) -> bool {
        if rel.is_empty() {
            return true;
        }
        if self
            .exclude
            .iter()
            .any(|p| p.matches_or_parent_matches(rel))
        {
            return false;
        }
        self.include.is_empty()
            || self
                .include
                .iter()
                .any(|p| p.matches_or_parent_matches(rel) || (is_dir && p.may_match_below(rel)))
    }
}

fn reading(tree: &TreeRoot, rel: &Path) -> impl FnOnce(io::Error) -> WorkerError {
    WorkerError::file("reading", tree.host_path(rel))
}

fn is_missing(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR))
}

/// The sources of `copy` in `tree`, each with what it holds.
pub(crate) fn plan_copy(
    tree: &TreeRoot,
    copy: &CopyAction,
    selection: &Selection<'_>,
) -> Result<Vec<PlannedSource>, WorkerError> {
    let mut planned = Vec::new();
    for src in &copy.src {
        if copy.allow_wildcard && PathPattern::has_wildcards(src) {
            let (matches, base_links) = expand_wildcard(tree, src, copy.follow_symlinks)?;
            let mut found = 0;
            for matched in matches {
                let meta = tree.lstat(&matched).map_err(reading(tree, &matched))?;
                if !selection.keeps(&rel_str(&matched), meta.is_dir()) {
                    continue;
                }
                let shown = format!("/{}", rel_str(&matched));
                let mut source = plan_source(tree, &matched, &shown, copy, selection)?;
                source.links.splice(0..0, base_links.iter().cloned());
                planned.push(source);
                found += 1;
            }
            if found == 0 && !copy.allow_empty_wildcard {
                return Err(WorkerError::SourceNotFound { path: src.clone() });
            }
        } else {
            let written: PathBuf = clean_components(src).iter().collect();
            planned.push(plan_source(tree, &written, src, copy, selection)?);
        }
    }
    Ok(planned)
}

/// Links followed on the way to a path: each link's path and target.
pub(crate) type Links = Vec<(PathBuf, OsString)>;

/// Expands wildcard source `src` as BuildKit does: the part before its first wildcard
/// component is resolved like a literal source, then the rest is one `filepath.Match` pattern
/// on the paths below that directory (so a class may hold a `/`). Returns the matches'
/// canonical paths, sorted, and the links followed to reach the directory the walk starts
/// from (its last component only when `follow`).
pub(crate) fn expand_wildcard(
    tree: &TreeRoot,
    src: &str,
    follow: bool,
) -> Result<(Vec<PathBuf>, Links), WorkerError> {
    let parts = clean_components(src);
    let first = parts
        .iter()
        .position(|p| PathPattern::has_wildcards(p))
        .unwrap_or(parts.len());
    let base: PathBuf = parts[..first].iter().collect();
    let rest = parts[first..].join("/");
    // Compiled before anything is read, so a malformed pattern fails whatever the tree holds.
    let pattern = (!rest.is_empty())
        .then(|| PathPattern::glob(&rest))
        .transpose()
        .map_err(|source| WorkerError::Pattern {
            written: src.to_owned(),
            source,
        })?;
    // The part before the wildcards is followed as a literal source would be.
    let resolved = tree.resolve(&base, follow).map_err(reading(tree, &base))?;
    let Some(pattern) = pattern else {
        // Cleaning removed every wildcard (`*/..`): a literal path.
        return Ok((vec![resolved.path], resolved.links));
    };
    let mut found = Vec::new();
    // Below the base, only real directories are entered, as BuildKit's walk does; `pending`
    // holds them with their paths relative to the base.
    let mut pending = vec![(resolved.path, String::new())];
    while let Some((dir, dir_rel)) = pending.pop() {
        let listing = match tree.listing(&dir) {
            Ok(listing) => listing,
            // The base is not a directory (or not there): nothing below it matches.
            Err(e) if is_missing(&e) => continue,
            Err(e) => return Err(reading(tree, &dir)(e)),
        };
        for name in listing.names() {
            let rel = match dir_rel.as_str() {
                "" => name.to_string_lossy().into_owned(),
                parent => format!("{parent}/{}", name.to_string_lossy()),
            };
            let path = dir.join(name);
            if pattern.matches(&rel) {
                // A matched directory is copied whole; nothing below it is matched again.
                found.push(path);
            } else if pattern.may_match_below(&rel) {
                match listing.lstat(name) {
                    // Only real directories are entered, never a link to one.
                    Ok(meta) if meta.is_dir() => pending.push((path, rel)),
                    Ok(_) => {}
                    Err(e) if is_missing(&e) => {}
                    Err(e) => return Err(reading(tree, &path)(e)),
                }
            }
        }
    }
    found.sort();
    Ok((found, resolved.links))
}

/// Resolves one source (`path` in the tree; `shown` names it in a "not found" error) and walks
/// what it holds.
fn plan_source(
    tree: &TreeRoot,
    path: &Path,
    shown: &str,
    copy: &CopyAction,
    selection: &Selection<'_>,
) -> Result<PlannedSource, WorkerError> {
    let not_found = || WorkerError::SourceNotFound {
        path: shown.to_owned(),
    };
    let resolved = tree
        .resolve(path, copy.follow_symlinks)
        .map_err(reading(tree, path))?;
    // A link the context's selection leaves out is not there to follow, as in BuildKit's copy
    // of the context.
    if !resolved
        .links
        .iter()
        .all(|(link, _)| selection.keeps(&rel_str(link), false))
    {
        return Err(not_found());
    }
    let meta = match tree.lstat(&resolved.path) {
        Ok(meta) => meta,
        Err(e) if is_missing(&e) => return Err(not_found()),
        Err(e) => return Err(reading(tree, &resolved.path)(e)),
    };
    if !selection.keeps(&rel_str(&resolved.path), meta.is_dir()) {
        return Err(not_found());
    }
    let mut entries = Vec::new();
    let read_link = || tree.read_link(&resolved.path);
    if let Some(kind) = kind_of(&meta, read_link).map_err(reading(tree, &resolved.path))? {
        let is_dir = kind == EntryKind::Dir;
        entries.push(Entry::top(&resolved.path, meta, kind));
        if is_dir {
            walk(tree, 0, selection, &mut entries)?;
        }
    }
    Ok(PlannedSource {
        name: path.to_path_buf(),
        links: resolved.links,
        entries,
    })
}

/// Everything `start` (a canonical path of the tree) holds that `selection` keeps, `start`
/// first: what a bind mount of it shows.
pub(crate) fn plan_tree(
    tree: &TreeRoot,
    start: &Path,
    selection: &Selection<'_>,
) -> Result<Vec<Entry>, WorkerError> {
    let meta = tree.lstat(start).map_err(reading(tree, start))?;
    let mut entries = Vec::new();
    if let Some(kind) = kind_of(&meta, || tree.read_link(start)).map_err(reading(tree, start))? {
        let is_dir = kind == EntryKind::Dir;
        entries.push(Entry::top(start, meta, kind));
        if is_dir {
            walk(tree, 0, selection, &mut entries)?;
        }
    }
    Ok(entries)
}

/// What `meta` says an entry is (`read_link` reads a link's target); `None` for what a copy
/// leaves out (sockets).
fn kind_of(
    meta: &Meta,
    read_link: impl FnOnce() -> io::Result<OsString>,
) -> io::Result<Option<EntryKind>> {
    Ok(Some(if meta.is_file() {
        EntryKind::File
    } else if meta.is_dir() {
        EntryKind::Dir
    } else if meta.is_symlink() {
        EntryKind::Symlink(read_link()?)
    } else if meta.is_fifo() || meta.is_char_device() || meta.is_block_device() {
        EntryKind::Special
    } else {
        // Sockets cannot be copied into an image.
        return Ok(None);
    }))
}

/// Appends what directory `entries[dir]` holds, depth first, in name order; never follows a
/// link.
///
/// The directory is opened once, through the root, and its entries are looked at relative to
/// that descriptor (`fstatat` without following, `readlinkat`): one in-root open per directory
/// rather than an open, a stat and a close per entry. No file is opened here; reading content
/// goes through the root (`TreeRoot::open_file`). The descriptor is closed before the walk
/// goes down, so a deep tree never holds more than one open. Children are appended in place
/// and walked from there, so nothing but `entries` grows with the tree.
fn walk(
    tree: &TreeRoot,
    dir: usize,
    selection: &Selection<'_>,
    entries: &mut Vec<Entry>,
) -> Result<(), WorkerError> {
    let first_child = entries.len();
    let listing = tree
        .listing(&entries[dir].path)
        .map_err(reading(tree, &entries[dir].path))?;
    for name in listing.names() {
        let path = entries[dir].path.join(name);
        let meta = listing.lstat(name).map_err(reading(tree, &path))?;
        let is_dir = meta.is_dir();
        let child = Entry::child(&entries[dir], path, meta, EntryKind::Special);
        if !selection.keeps(&rel_str(&child.path), is_dir)
            || !selection.patterns_keep(&rel_str(child.rel()), is_dir)
        {
            continue;
        }
        let kind =
            kind_of(&child.meta, || listing.read_link(name)).map_err(reading(tree, &child.path))?;
        let Some(kind) = kind else {
            continue;
        };
        entries.push(Entry { kind, ..child });
    }
    drop(listing);
    // Depth first: a directory's contents follow it. Its children are moved out of the way
    // of what the walk below them appends, then put back in order one by one.
    let children: Vec<Entry> = entries.drain(first_child..).collect();
    for child in children {
        let is_dir = child.kind == EntryKind::Dir;
        entries.push(child);
        if is_dir {
            walk(tree, entries.len() - 1, selection, entries)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn names(planned: &[PlannedSource]) -> Vec<(String, Vec<String>)> {
        planned
            .iter()
            .map(|s| {
                (
                    rel_str(&s.name),
                    s.entries.iter().map(|e| rel_str(&e.path)).collect(),
                )
            })
            .collect()
    }

    fn copy(src: &[&str]) -> CopyAction {
        CopyAction::new(
            img_llb::OpRef::new(img_llb::Digest::of(b"x")),
            src.iter().map(|s| s.to_string()).collect(),
            "/dst/",
        )
    }

    #[test]
    fn sources_resolve_inside_the_tree() {
        let tmp = tempfile::tempdir().unwrap();
        let host = tmp.path().join("host");
        std::fs::create_dir(&host).unwrap();
        std::fs::write(host.join("secret.txt"), "host secret").unwrap();
        let root = tmp.path().join("ctx");
        std::fs::create_dir_all(root.join("real/sub")).unwrap();
        std::fs::write(root.join("real/config.txt"), "cfg").unwrap();
        std::fs::write(root.join("real/sub/deep.txt"), "deep").unwrap();
        symlink(host.join("secret.txt"), root.join("abs.txt")).unwrap();
        symlink("../host/secret.txt", root.join("rel.txt")).unwrap();
        symlink("real/config.txt", root.join("conf.txt")).unwrap();
        symlink("real", root.join("linkdir")).unwrap();
        symlink(&host, root.join("hostdir")).unwrap();
        let tree = TreeRoot::open(&root).unwrap();
        let all = Selection::all();
        // A match that is an inside link is followed; escaping ones are not found.
        let planned = plan_copy(&tree, &copy(&["/conf*"]), &all).unwrap();
        assert_eq!(
            names(&planned),
            [("conf.txt".into(), vec!["real/config.txt".into()])]
        );
        assert_eq!(
            planned[0].links,
            [(PathBuf::from("conf.txt"), OsString::from("real/config.txt"))]
        );
        for src in [
            "/*.txt",
            "/abs.txt",
            "/rel.txt",
            "/hostdir/*",
            "/hostdir/secret.txt",
        ] {
            match plan_copy(&tree, &copy(&[src]), &all) {
                Err(WorkerError::SourceNotFound { .. }) => {}
                other => panic!("{src}: {:?}", other.map(|p| names(&p))),
            }
        }
        let planned = plan_copy(&tree, &copy(&["/linkdir/*"]), &all).unwrap();
        assert_eq!(
            names(&planned),
            [
                ("real/config.txt".into(), vec!["real/config.txt".into()]),
                (
                    "real/sub".into(),
                    vec!["real/sub".into(), "real/sub/deep.txt".into()]
                ),
            ]
        );
        // A directory's links are copied as links, never followed.
        let planned = plan_copy(&tree, &copy(&["/"]), &all).unwrap();
        let abs = planned[0]
            .entries
            .iter()
            .find(|e| &*e.path == Path::new("abs.txt"))
            .unwrap();
        assert!(matches!(abs.kind, EntryKind::Symlink(_)));
    }

    #[test]
    fn the_context_filter_applies_to_resolved_paths() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("private")).unwrap();
        std::fs::write(tmp.path().join("private/key"), "k").unwrap();
        symlink("private/key", tmp.path().join("key.txt")).unwrap();
        let tree = TreeRoot::open(tmp.path()).unwrap();
        let filter = |p: &str| !p.starts_with("private");
        let selection = Selection {
            filter: Some(&filter),
            ..Selection::all()
        };
        for src in ["/key.txt", "/*.txt", "/private/key"] {
            assert!(
                matches!(
                    plan_copy(&tree, &copy(&[src]), &selection),
                    Err(WorkerError::SourceNotFound { .. })
                ),
                "{src}"
            );
        }
    }

    /// A tree of empty files at `paths` (directories made as needed).
    fn tree_of(paths: &[&str]) -> (tempfile::TempDir, TreeRoot) {
        let tmp = tempfile::tempdir().unwrap();
        for path in paths {
            let host = tmp.path().join(path);
            std::fs::create_dir_all(host.parent().unwrap()).unwrap();
            std::fs::write(host, path).unwrap();
        }
        let tree = TreeRoot::open(tmp.path()).unwrap();
        (tmp, tree)
    }

    /// The names of the sources `src` expands to.
    fn expanded(tree: &TreeRoot, src: &str) -> Vec<String> {
        let planned = plan_copy(tree, &copy(&[src]), &Selection::all()).unwrap();
        planned.iter().map(|s| rel_str(&s.name)).collect()
    }

    #[test]
    fn wildcard_sources_follow_go_filepath_match() {
        let (_tmp, tree) = tree_of(&[
            "a.txt",
            "b.txt",
            "ab.txt",
            "a*.txt",
            "x/y.txt",
            "x/z.md",
            "x/deeper/y.txt",
        ]);
        // `*` stops at `/`; results come sorted.
        assert_eq!(
            expanded(&tree, "/*.txt"),
            ["a*.txt", "a.txt", "ab.txt", "b.txt"]
        );
        // `[^a]` negates a class, as in Go.
        assert_eq!(expanded(&tree, "/[^a]*.txt"), ["b.txt"]);
        // `\*` is a literal star.
        assert_eq!(expanded(&tree, r"/?\*.txt"), ["a*.txt"]);
        // A class may match `/`: it does not split the pattern into components.
        assert_eq!(expanded(&tree, "/x[/]y.txt"), ["x/y.txt"]);
        assert_eq!(expanded(&tree, "/x/*/y.txt"), ["x/deeper/y.txt"]);
        // `**` is no more than `*` in a COPY source.
        assert_eq!(expanded(&tree, "/**/y.txt"), ["x/y.txt"]);
        // A matched directory is a source of its own, walked whole and not matched into.
        let planned = plan_copy(&tree, &copy(&["/x*"]), &Selection::all()).unwrap();
        assert_eq!(
            names(&planned),
            [(
                "x".into(),
                vec![
                    "x".into(),
                    "x/deeper".into(),
                    "x/deeper/y.txt".into(),
                    "x/y.txt".into(),
                    "x/z.md".into(),
                ]
            )]
        );
        match plan_copy(&tree, &copy(&["/x/[a"]), &Selection::all()) {
            Err(WorkerError::Pattern { written, .. }) => assert_eq!(written, "/x/[a"),
            other => panic!("{:?}", other.map(|p| names(&p))),
        }
    }

    #[test]
    fn include_and_exclude_patterns_read_double_stars() {
        let (_tmp, tree) = tree_of(&[
            "app/main.go",
            "app/README.md",
            "app/docs/guide.md",
            "app/vendor/lib/lib.go",
            "app/vendor/keep.txt",
        ]);
        let compile = |list: &[&str]| -> Vec<PathPattern> {
            list.iter()
                .map(|p| super::super::context::filter_pattern(p).unwrap())
                .collect()
        };
        let copied = |selection: &Selection<'_>| -> Vec<String> {
            let planned = plan_copy(&tree, &copy(&["/app"]), selection).unwrap();
            planned[0]
                .entries
                .iter()
                .map(|e| rel_str(e.rel()))
                .collect()
        };
        let exclude = Selection {
            exclude: compile(&["**/*.md", "/vendor/**/*.go"]),
            ..Selection::all()
        };
        assert_eq!(
            copied(&exclude),
            [
                "",
                "docs",
                "main.go",
                "vendor",
                "vendor/keep.txt",
                "vendor/lib"
            ]
        );
        let include = Selection {
            include: compile(&["./**/*.go"]),
            ..Selection::all()
        };
        assert_eq!(
            copied(&include),
            [
                "",
                "docs",
                "main.go",
                "vendor",
                "vendor/lib",
                "vendor/lib/lib.go"
            ]
        );
    }
}
