//! A full disk under the enrolled-keys file (`[registry] enrolled_keys`):
//! the enrollment service's write fails (the Enroll or Renew is refused,
//! INTERNAL), the keys already enrolled stay readable as they were, no
//! temporary file is left to take the space, and the next write succeeds
//! once there is room. Driven through `store_enrolled`, the function the
//! service writes with, on a real full tmpfs.

use sealgate::enroll::service::store_enrolled;
use sealgate::identity::enrolled::{EnrolledKey, EnrolledKeys};

fn key(i: usize) -> EnrolledKey {
    EnrolledKey {
        client: format!("client-{i}"),
        id: format!("ed25519:{i:064x}"),
        public_key: "A".repeat(43) + "=",
        not_before: "2026-12-01T00:00:00Z".into(),
        not_after: "2027-01-01T00:00:00Z".into(),
    }
}

#[test]
fn a_full_disk_refuses_the_write_and_keeps_the_enrolled_keys_as_they_were() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mnt = dir.path().join("mnt");
    let Some(_guard) = crate::audit_common::mount_tmpfs(&mnt, "64k") else {
        return;
    };
    let path = mnt.join("enrolled-keys.toml");
    let mut keys = EnrolledKeys::default();
    keys.keys.push(key(0));
    store_enrolled(&keys, &path).expect("written with room");
    let before = std::fs::read(&path).expect("read");

    // Fill the filesystem, then try to add a key.
    let filler = mnt.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).expect("filler");
        let block = vec![0u8; 1024];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
    }
    let mut more = keys.clone();
    for i in 1..50 {
        more.keys.push(key(i));
    }
    let e = store_enrolled(&more, &path).expect_err("no room for the new file");
    assert!(e.contains("No space left on device"), "{e}");
    assert_eq!(std::fs::read(&path).expect("read"), before, "unchanged");
    assert_eq!(EnrolledKeys::load(&path).expect("parses"), keys);
    let left: Vec<_> = std::fs::read_dir(&mnt)
        .expect("list")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "no temporary file left: {left:?}");

    // Room again: the next write succeeds.
    std::fs::remove_file(&filler).expect("free space");
    store_enrolled(&more, &path).expect("written once there is room");
    assert_eq!(EnrolledKeys::load(&path).expect("parses"), more);
}
