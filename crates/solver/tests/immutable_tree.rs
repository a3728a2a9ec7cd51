//! A committed tree is checksummed once per selection: the second checksum reads no file.
//!
//! The only test of this binary, so that the process-wide read counter of /proc/self/io
//! sees no other test's reads.

use std::fs;

use img_solver::{
    checksum_immutable_tree, checksum_tree, CacheDb, ChecksumError, ChecksumOptions, SelectAll,
};

/// Bytes this process has read through read(2) and friends so far.
fn rchar() -> u64 {
    let io = fs::read_to_string("/proc/self/io").expect("/proc/self/io is readable");
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("/proc/self/io has rchar")
}

#[test]
fn a_second_checksum_of_the_same_snapshot_selection_reads_no_file_content() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("snapshot");
    fs::create_dir_all(tree.join("dir")).unwrap();
    // 16 MiB of content: any re-read would show far above the database's own reads.
    let block = vec![7u8; 1 << 20];
    for i in 0..16 {
        fs::write(tree.join(format!("dir/file{i}")), &block).unwrap();
    }
    let db = CacheDb::open(dir.path().join("cache.db")).unwrap();
    let options = ChecksumOptions::with_ownership(true);
    let compute = || checksum_tree(&tree, &SelectAll, &options, None);

    let before = rchar();
    let first =
        checksum_immutable_tree::<ChecksumError>(&db, "snapshot:1:s", b"dir", &options, compute)
            .unwrap();
    let first_read = rchar() - before;
    assert_eq!(first.files_read, 16);
    assert!(first_read >= 16 << 20, "the first checksum reads the files");

    let before = rchar();
    let mut called = false;
    let second =
        checksum_immutable_tree::<ChecksumError>(&db, "snapshot:1:s", b"dir", &options, || {
            called = true;
            compute()
        })
        .unwrap();
    let second_read = rchar() - before;
    assert!(!called, "the recorded checksum is used");
    assert_eq!(second.digest, first.digest);
    assert_eq!(second.entries, first.entries);
    assert_eq!(second.files_read, 0);
    assert!(
        second_read < 1 << 20,
        "the second checksum read {second_read} bytes"
    );

    // Another selection or another snapshot is checksummed afresh.
    let other =
        checksum_immutable_tree::<ChecksumError>(&db, "snapshot:2:s", b"dir", &options, compute)
            .unwrap();
    assert_eq!(other.files_read, 16);
}
