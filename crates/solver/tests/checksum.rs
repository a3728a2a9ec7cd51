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
