//! `img du` and `img prune` on a real store.

use crate::fixtures::store_busybox;
use crate::Img;

#[test]
fn du_attributes_blobs_to_images_and_prune_removes_them_once_unnamed() {
    let img = Img::new();
    let stored = store_busybox(&img.store(), "docker.io/library/busybox:latest");
    img.ok(&["tag", "busybox", "example.com/bb:1"]);

    let du = img.ok(&["du"]);
    let lines: Vec<&str> = du.lines().collect();
    assert!(lines[0].starts_with("ID"), "{du}");
    let layer_row = lines
        .iter()
        .find(|l| l.starts_with(&stored.layer.hex()[..25]))
        .unwrap_or_else(|| panic!("the layer is listed: {du}"));
    assert!(layer_row.contains(" false "), "{layer_row}");
    assert!(
        layer_row.ends_with("busybox:latest, example.com/bb:1"),
        "{layer_row}"
    );
    assert!(du.contains("Reclaimable: 0B\n"), "{du}");

    // One name left: nothing to collect.
    img.ok(&["rm", "busybox"]);
    assert_eq!(
        img.ok(&["prune"]),
        "Removed 0 cache records, 0 blobs, 0 snapshots\nReclaimed: 0B\n"
    );
    assert!(img.store().content().exists(&stored.layer));

    img.ok(&["rm", "example.com/bb:1"]);
    let du = img.ok(&["-d", "du"]);
    assert!(
        du.contains(&stored.layer.to_string()),
        "-d shows full ids: {du}"
    );
    assert!(du.contains("unreferenced blob"), "{du}");
    assert!(!du.contains("Reclaimable: 0B"), "{du}");

    let pruned = img.ok(&["prune"]);
    assert!(
        pruned.starts_with("Removed 0 cache records, 3 blobs, 0 snapshots\nReclaimed: "),
        "{pruned}"
    );
    for blob in [&stored.layer, &stored.config, &stored.manifest] {
        assert!(!img.store().content().exists(blob), "{blob} removed");
    }
    let du = img.ok(&["du"]);
    assert!(du.ends_with("Reclaimable: 0B\nTotal:       0B\n"), "{du}");
}

#[test]
fn prune_rejects_unreadable_limits() {
    let img = Img::new();
    img.fails(
        &["prune", "--keep-storage", "lots"],
        "invalid size \"lots\"",
    );
    img.fails(
        &["prune", "--keep-duration", "forever"],
        "invalid --keep-duration \"forever\"",
    );
    img.ok(&[
        "prune",
        "--all",
        "--keep-duration",
        "24h",
        "--keep-storage",
        "10GB",
    ]);
}

#[test]
fn state_flag_and_environment_choose_the_state_directory() {
    let img = Img::new();
    let elsewhere = img.dir().join("elsewhere");
    // --state wins over IMG_STATE (which the test command sets).
    img.ok(&["--state", "elsewhere", "ls"]);
    assert!(elsewhere.join("metadata.db").exists());
    assert!(!img.state().join("metadata.db").exists());
    img.ok(&["ls"]);
    assert!(img.state().join("metadata.db").exists());
}
