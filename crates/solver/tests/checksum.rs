//! Tree checksums: what changes them, what does not, and the warm checksum cache.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use img_solver::{checksum_tree, CacheDb, ChecksumOptions, PathFilter, SelectAll};

fn tree(root: &Path) {
    fs::create_dir_all(root.join("src/lib")).unwrap();
    fs::write(root.join("src/main.c"), "int main() {}").unwrap();
    fs::write(root.join("src/lib/util.c"), "void f() {}").unwrap();
    fs::write(root.join("README"), "hello").unwrap();
    std::os::unix::fs::symlink("src/main.c", root.join("link")).unwrap();
}

fn sum(root: &Path, filter: &dyn PathFilter) -> img_llb::Digest {
    checksum_tree(root, filter, &ChecksumOptions::default(), None)
        .unwrap()
        .digest
}

#[test]
fn content_mode_names_and_link_targets_count_but_mtime_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    tree(root);
    let original = sum(root, &SelectAll);

    let other = tempfile::tempdir().unwrap();
    tree(other.path());
    assert_eq!(
        sum(other.path(), &SelectAll),
        original,
        "same tree elsewhere"
    );

    let file = fs::File::options()
        .write(true)
        .open(root.join("README"))
        .unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    assert_eq!(sum(root, &SelectAll), original, "mtime must not count");

    fs::set_permissions(root.join("README"), fs::Permissions::from_mode(0o755)).unwrap();
    let chmodded = sum(root, &SelectAll);
    assert_ne!(chmodded, original, "mode must count");

    fs::write(root.join("README"), "hellO").unwrap();
    let edited = sum(root, &SelectAll);
    assert_ne!(edited, chmodded, "content must count");

    fs::remove_file(root.join("link")).unwrap();
    std::os::unix::fs::symlink("src/lib/util.c", root.join("link")).unwrap();
    assert_ne!(sum(root, &SelectAll), edited, "link target must count");

    fs::rename(root.join("README"), root.join("README.md")).unwrap();
    assert_ne!(sum(root, &SelectAll), edited, "names must count");
}

#[test]
fn only_selected_files_count() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    tree(root);
    let src_only = |p: &str| p == "src" || p.starts_with("src/");
    let before = sum(root, &src_only);
    fs::write(root.join("README"), "unrelated edit").unwrap();
    assert_eq!(sum(root, &src_only), before);
    fs::write(root.join("src/lib/util.c"), "void g() {}").unwrap();
    assert_ne!(sum(root, &src_only), before);
}

/// Excludes `vendor` and remembers every path it was asked about.
#[derive(Default)]
struct SkipVendor {
    asked: std::sync::Mutex<Vec<String>>,
}

impl PathFilter for SkipVendor {
    fn selects(&self, path: &str, _is_dir: bool) -> bool {
        self.asked.lock().unwrap().push(path.to_owned());
        !path.starts_with("vendor")
    }
    fn may_select_under(&self, dir: &str) -> bool {
        dir != "vendor"
    }
}

#[test]
fn pruned_directories_are_not_walked() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    tree(root);
    fs::create_dir_all(root.join("vendor/deep")).unwrap();
    fs::write(root.join("vendor/deep/x"), "x").unwrap();
    let filter = SkipVendor::default();
    let result = checksum_tree(root, &filter, &ChecksumOptions::default(), None).unwrap();
    assert_eq!(result.entries, 6);
    let asked = filter.asked.lock().unwrap();
    assert!(!asked.iter().any(|p| p.starts_with("vendor")), "{asked:?}");
    assert!(asked.contains(&"src/lib/util.c".to_owned()));
}

#[test]
fn ownership_counts_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path());
    let with = checksum_tree(
        dir.path(),
        &SelectAll,
        &ChecksumOptions::with_ownership(true),
        None,
    )
    .unwrap();
    let without = checksum_tree(dir.path(), &SelectAll, &ChecksumOptions::default(), None).unwrap();
    assert_ne!(with.digest, without.digest);
}

#[test]
fn warm_checksums_read_no_unchanged_file_and_catch_same_size_edits() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ctx");
    fs::create_dir_all(&root).unwrap();
    tree(&root);
    let db = CacheDb::open(dir.path().join("cache.db")).unwrap();
    let options = ChecksumOptions::default();

    // Files written within the racy window are never trusted from the cache.
    let fresh = checksum_tree(&root, &SelectAll, &options, Some(&db)).unwrap();
    assert_eq!(fresh.files_read, 3);
    let again = checksum_tree(&root, &SelectAll, &options, Some(&db)).unwrap();
    assert_eq!(again.files_read, 3, "racily clean files must be read again");
    assert_eq!(again.digest, fresh.digest);

    std::thread::sleep(Duration::from_millis(1100));
    let settled = checksum_tree(&root, &SelectAll, &options, Some(&db)).unwrap();
    assert_eq!(settled.files_read, 3);
    let warm = checksum_tree(&root, &SelectAll, &options, Some(&db)).unwrap();
    assert_eq!(warm.files_read, 0);
    assert_eq!(warm.digest, fresh.digest);

    fs::write(root.join("src/main.c"), "int main() {1}").unwrap();
    let edited = checksum_tree(&root, &SelectAll, &options, Some(&db)).unwrap();
    assert_eq!(edited.files_read, 1);
    assert_eq!(
        edited.digest,
        checksum_tree(&root, &SelectAll, &options, None)
            .unwrap()
            .digest
    );
    assert_ne!(edited.digest, fresh.digest);
}

#[test]
fn a_missing_root_is_an_error_naming_it() {
    let err = checksum_tree(
        Path::new("/nonexistent/context"),
        &SelectAll,
        &ChecksumOptions::default(),
        None,
    )
    .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/context"), "{err}");
}

/// A file capability as `setcap cap_net_raw+ep` writes it (VFS_CAP_REVISION_2, effective).
fn capability(bit: u32) -> Vec<u8> {
    let mut value = 0x0200_0001u32.to_le_bytes().to_vec();
    for word in [1u32 << bit, 0, 0, 0] {
        value.extend_from_slice(&word.to_le_bytes());
    }
    value
}

#[test]
fn extended_attributes_count_a_setcap_included() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    tree(root);
    let options = ChecksumOptions::with_ownership(true);
    let plain = checksum_tree(root, &SelectAll, &options, None)
        .unwrap()
        .digest;
    xattr::set(root.join("README"), "security.capability", &capability(13))
        .expect("root can set a file capability");
    let raw = checksum_tree(root, &SelectAll, &options, None)
        .unwrap()
        .digest;
    assert_ne!(raw, plain, "security.capability must count");
    xattr::set(root.join("README"), "security.capability", &capability(10)).unwrap();
    let bind = checksum_tree(root, &SelectAll, &options, None)
        .unwrap()
        .digest;
    assert_ne!(bind, raw, "the capability's value must count");
    xattr::remove(root.join("README"), "security.capability").unwrap();
    assert_eq!(
        checksum_tree(root, &SelectAll, &options, None)
            .unwrap()
            .digest,
        plain
    );
    xattr::set(root.join("src"), "user.note", b"x").expect("ext4 and tmpfs take user.*");
    assert_ne!(
        checksum_tree(root, &SelectAll, &options, None)
            .unwrap()
            .digest,
        plain,
        "a directory's attributes must count"
    );
}

#[test]
fn a_cached_file_digest_still_sees_a_new_attribute() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ctx");
    fs::create_dir_all(&root).unwrap();
    tree(&root);
    let db = CacheDb::open(dir.path().join("cache.db")).unwrap();
    let options = ChecksumOptions::default();
    // Past the racy window, so the cache is trusted for unchanged stamps.
    std::thread::sleep(Duration::from_millis(1100));
    let before = checksum_tree(&root, &SelectAll, &options, Some(&db)).unwrap();
    assert_eq!(
        checksum_tree(&root, &SelectAll, &options, Some(&db))
            .unwrap()
            .files_read,
        0
    );
    // Setting an attribute changes only the ctime: the stamp check must catch it.
    xattr::set(root.join("README"), "security.capability", &capability(13)).unwrap();
    let after = checksum_tree(&root, &SelectAll, &options, Some(&db)).unwrap();
    assert_ne!(after.digest, before.digest);
    assert_eq!(
        after.digest,
        checksum_tree(&root, &SelectAll, &options, None)
            .unwrap()
            .digest
    );
}

#[test]
fn hardlinks_count_apart_from_equal_copies() {
    let linked = tempfile::tempdir().unwrap();
    fs::write(linked.path().join("a"), "same").unwrap();
    fs::hard_link(linked.path().join("a"), linked.path().join("b")).unwrap();
    let copied = tempfile::tempdir().unwrap();
    fs::write(copied.path().join("a"), "same").unwrap();
    fs::write(copied.path().join("b"), "same").unwrap();
    assert_ne!(
        sum(linked.path(), &SelectAll),
        sum(copied.path(), &SelectAll),
        "a copy relinks b to a; equal separate files are another tree"
    );
    // Selecting only one of the links leaves a plain file.
    let only_b = |p: &str| p == "b";
    assert_eq!(sum(linked.path(), &only_b), sum(copied.path(), &only_b));
}

fn mknod_char(path: &Path, major: u32, minor: u32) {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; mknod writes nothing to our memory.
    let rc = unsafe {
        libc::mknod(
            c_path.as_ptr(),
            libc::S_IFCHR | 0o666,
            libc::makedev(major, minor),
        )
    };
    assert_eq!(
        rc,
        0,
        "root can create device nodes: {}",
        std::io::Error::last_os_error()
    );
}

#[test]
fn device_numbers_count() {
    let null = tempfile::tempdir().unwrap();
    mknod_char(&null.path().join("dev"), 1, 3);
    let zero = tempfile::tempdir().unwrap();
    mknod_char(&zero.path().join("dev"), 1, 5);
    let again = tempfile::tempdir().unwrap();
    mknod_char(&again.path().join("dev"), 1, 3);
    assert_ne!(sum(null.path(), &SelectAll), sum(zero.path(), &SelectAll));
    assert_eq!(sum(null.path(), &SelectAll), sum(again.path(), &SelectAll));
}

#[test]
fn names_that_are_not_utf8_do_not_collide() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let one = tempfile::tempdir().unwrap();
    fs::write(one.path().join(OsStr::from_bytes(b"name\xff")), "x").unwrap();
    let other = tempfile::tempdir().unwrap();
    fs::write(other.path().join(OsStr::from_bytes(b"name\xfe")), "x").unwrap();
    assert_ne!(sum(one.path(), &SelectAll), sum(other.path(), &SelectAll));

    // Both in one tree, through the checksum cache: each keeps its own content.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ctx");
    fs::create_dir_all(&root).unwrap();
    fs::write(root.join(OsStr::from_bytes(b"n\xff")), "first").unwrap();
    fs::write(root.join(OsStr::from_bytes(b"n\xfe")), "second").unwrap();
    let db = CacheDb::open(dir.path().join("cache.db")).unwrap();
    let options = ChecksumOptions::default();
    std::thread::sleep(Duration::from_millis(1100));
    let cold = checksum_tree(&root, &SelectAll, &options, Some(&db)).unwrap();
    let warm = checksum_tree(&root, &SelectAll, &options, Some(&db)).unwrap();
    assert_eq!(warm.files_read, 0);
    assert_eq!(warm.digest, cold.digest);
    fs::write(root.join(OsStr::from_bytes(b"n\xfe")), "first").unwrap();
    assert_ne!(
        checksum_tree(&root, &SelectAll, &options, Some(&db))
            .unwrap()
            .digest,
        cold.digest
    );
}
