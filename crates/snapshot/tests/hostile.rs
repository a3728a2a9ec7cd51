//! A corpus of hostile tar files, each built with the tar crate's low-level header API. Every
//! one must be rejected or contained: after applying, nothing outside the snapshot changed.

mod common;

use std::fs;
use std::path::Path;

use img_snapshot::{apply_layer, ApplyError, ApplyOptions};

enum Item {
    File(&'static str, &'static [u8]),
    Dir(&'static str),
    Symlink(&'static str, &'static str),
    Hardlink(&'static str, &'static str),
    CharDev(&'static str, u32, u32),
    /// A file whose name is set through a PAX `path` record.
    PaxFile(&'static str, &'static [u8]),
}

fn raw_name(header: &mut tar::Header, name: &str) {
    // Bypass the tar crate's own path checks: a hostile archive can hold any bytes.
    let field = &mut header.as_old_mut().name;
    field.fill(0);
    field[..name.len()].copy_from_slice(name.as_bytes());
}

fn raw_link(header: &mut tar::Header, target: &str) {
    let field = &mut header.as_old_mut().linkname;
    field.fill(0);
    field[..target.len()].copy_from_slice(target.as_bytes());
}

fn build(items: &[Item]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for item in items {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_mtime(1);
        h.set_uid(0);
        h.set_gid(0);
        let data: &[u8] = match item {
            Item::File(name, data) => {
                raw_name(&mut h, name);
                h.set_entry_type(tar::EntryType::Regular);
                data
            }
            Item::Dir(name) => {
                raw_name(&mut h, name);
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                b""
            }
            Item::Symlink(name, target) => {
                raw_name(&mut h, name);
                raw_link(&mut h, target);
                h.set_entry_type(tar::EntryType::Symlink);
                b""
            }
            Item::Hardlink(name, target) => {
                raw_name(&mut h, name);
                raw_link(&mut h, target);
                h.set_entry_type(tar::EntryType::Link);
                b""
            }
            Item::CharDev(name, major, minor) => {
                raw_name(&mut h, name);
                h.set_entry_type(tar::EntryType::Char);
                h.set_device_major(*major).unwrap();
                h.set_device_minor(*minor).unwrap();
                b""
            }
            Item::PaxFile(name, data) => {
                let record = format!("path={name}\n");
                let len = record.len() + 3;
                let record = format!("{len} {record}");
                assert_eq!(record.len(), len);
                let mut ph = tar::Header::new_ustar();
                raw_name(&mut ph, "pax");
                ph.set_entry_type(tar::EntryType::XHeader);
                ph.set_size(record.len() as u64);
                ph.set_cksum();
                b.append(&ph, record.as_bytes()).unwrap();
                raw_name(&mut h, "innocent");
                h.set_entry_type(tar::EntryType::Regular);
                data
            }
        };
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

/// Applies `items` into `<tmp>/root`, with a sentinel directory beside it, and checks the
/// sentinel and the files it holds are untouched.
fn check(name: &str, items: &[Item]) -> Result<(), ApplyError> {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let sentinel = tmp.path().join("sentinel");
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::create_dir(&sentinel).unwrap();
    fs::write(sentinel.join("victim"), b"original").unwrap();
    // Relative symlinks from root to the sentinel for the archives to aim at.
    let before = listing(tmp.path(), &root);
    let result = apply_layer(build(items).as_slice(), &root, &ApplyOptions::default()).map(|_| ());
    assert_eq!(
        fs::read(sentinel.join("victim")).unwrap(),
        b"original",
        "{name}: victim changed"
    );
    let after = listing(tmp.path(), &root);
    assert_eq!(
        before, after,
        "{name}: something outside the snapshot changed"
    );
    assert!(fs::metadata("/etc/passwd").unwrap().len() > 0);
    assert!(
        !Path::new("/tmp/img-escape").exists(),
        "{name}: escaped to /tmp"
    );
    result
}

/// Everything under `top` except the snapshot root, with sizes.
fn listing(top: &Path, root: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![top.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.starts_with(root) {
                continue;
            }
            let m = fs::symlink_metadata(&p).unwrap();
            out.push((p.display().to_string(), m.len()));
            if m.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn dotdot_paths_are_rejected() {
    for (name, items) in [
        (
            "parent file",
            vec![Item::File("../sentinel/victim", b"pwned")],
        ),
        (
            "nested parent",
            vec![Item::File("a/../../sentinel/victim", b"pwned")],
        ),
        (
            "pax parent",
            vec![Item::PaxFile("../sentinel/victim", b"pwned")],
        ),
        (
            "hardlink to parent",
            vec![Item::Hardlink("x", "../sentinel/victim")],
        ),
        (
            "whiteout of parent",
            vec![Item::File("../.wh.sentinel", b"")],
        ),
    ] {
        let err = check(name, &items).expect_err(name);
        assert!(
            matches!(err, ApplyError::UnsafePath { .. }),
            "{name}: {err}"
        );
    }
}

#[test]
fn absolute_paths_and_symlinks_are_contained() {
    let cases: Vec<(&str, Vec<Item>)> = vec![
        (
            "absolute path",
            vec![Item::File("/tmp/img-escape", b"pwned")],
        ),
        (
            "write through absolute dir symlink",
            vec![
                Item::Symlink("evil", "/tmp"),
                Item::File("evil/img-escape", b"pwned"),
            ],
        ),
        (
            "write through relative dir symlink",
            vec![
                Item::Symlink("evil", "../sentinel"),
                Item::File("evil/victim", b"pwned"),
            ],
        ),
        (
            "write through deep relative symlink",
            vec![
                Item::Dir("a/"),
                Item::Symlink("a/up", "../../../../../../.."),
                Item::File("a/up/tmp/img-escape", b"pwned"),
            ],
        ),
        (
            "replace symlink target file",
            vec![
                Item::Symlink("victim", "../sentinel/victim"),
                Item::File("victim", b"pwned"),
            ],
        ),
        (
            "hardlink through symlinked dir",
            vec![
                Item::Symlink("evil", "../sentinel"),
                Item::Hardlink("stolen", "evil/victim"),
            ],
        ),
        (
            "hardlink to absolute path",
            vec![Item::Hardlink("passwd", "/etc/passwd")],
        ),
        (
            "symlink then dir over it",
            vec![
                Item::Symlink("d", "../sentinel"),
                Item::Dir("d/"),
                Item::File("d/victim", b"pwned"),
            ],
        ),
        (
            "whiteout through symlink",
            vec![
                Item::Symlink("evil", "../sentinel"),
                Item::File("evil/.wh.victim", b""),
            ],
        ),
        (
            "opaque through symlink",
            vec![
                Item::Symlink("evil", "../sentinel"),
                Item::File("evil/.wh..wh..opq", b""),
            ],
        ),
        (
            "hardlink to symlink then write",
            vec![
                Item::Symlink("s", "../sentinel/victim"),
                Item::Hardlink("h", "s"),
                Item::File("h", b"pwned"),
            ],
        ),
        ("device node", vec![Item::CharDev("dev/null", 1, 3)]),
    ];
    for (name, items) in cases {
        // Contained either way: an error is fine as long as nothing escaped.
        let _ = check(name, &items);
    }
}

#[test]
fn hardlink_to_missing_target_is_an_error() {
    let err = check("missing target", &[Item::Hardlink("x", "nope")]).unwrap_err();
    assert!(matches!(err, ApplyError::MissingLinkTarget { .. }), "{err}");
}

#[test]
fn contained_writes_land_inside_the_root() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    let items = [
        Item::Symlink("evil", "/tmp"),
        Item::File("evil/img-escape", b"inside"),
        Item::File("/abs", b"a"),
    ];
    apply_layer(build(&items).as_slice(), &root, &ApplyOptions::default()).unwrap();
    // The absolute symlink resolved inside the snapshot, as it would in the container.
    assert_eq!(fs::read(root.join("tmp/img-escape")).unwrap(), b"inside");
    assert_eq!(fs::read(root.join("abs")).unwrap(), b"a");
    assert_eq!(fs::read_link(root.join("evil")).unwrap(), Path::new("/tmp"));
}
