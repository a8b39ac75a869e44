//! Opening a store: one process at a time, its schema version, its journal, a file created whole.

use super::*;

#[tokio::test]
async fn a_second_open_of_the_same_file_fails_cleanly() {
    let (_dir, path) = temp();
    let _store = Store::open(&path).unwrap();
    assert!(matches!(Store::open(&path), Err(StoreError::Storage(_))));
}

#[tokio::test]
async fn a_file_of_another_schema_version_is_refused() {
    let (_dir, path) = temp();
    drop(Store::open(&path).unwrap());
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(super::tables::META)
            .unwrap()
            .insert(super::tables::SCHEMA_KEY, 99)
            .unwrap();
        txn.commit().unwrap();
    }
    assert!(matches!(Store::open(&path), Err(StoreError::Corrupt(_))));
}

#[test]
fn a_journal_from_another_copy_of_the_store_is_refused() {
    let (_dir, path) = temp();
    drop(Store::open(&path).unwrap());
    // Commit 5 cannot follow a store that holds none.
    let mut frames = Vec::new();
    journal::frame(&mut frames, 5, b"");
    std::fs::write(journal::path_for(&path), frames).unwrap();
    let Err(err) = Store::open(&path) else {
        panic!("a journal that does not follow the store was applied");
    };
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("belongs to another copy of the store") && !message.contains("  "),
        "{message}"
    );
    assert!(
        err.to_string().contains("another copy of the store"),
        "{err}"
    );
}

#[test]
fn a_journal_entry_that_cannot_be_applied_stops_the_open_naming_file_frame_and_entry() {
    let (_dir, path) = temp();
    drop(Store::open(&path).unwrap());
    // A checksummed frame that follows the store (commit 1) but starts a run it never had.
    let mut payload = Vec::new();
    let missing = RunId::from(42);
    entry::Entry::Start {
        id: missing,
        at_ms: 1,
    }
    .encode(&mut payload)
    .unwrap();
    let mut frames = Vec::new();
    journal::frame(&mut frames, 1, &payload);
    let journal_path = journal::path_for(&path);
    std::fs::write(&journal_path, &frames).unwrap();
    let Err(err) = Store::open(&path) else {
        panic!("a journal entry that cannot be applied was skipped");
    };
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    let message = err.to_string();
    for part in [
        journal_path.display().to_string(),
        "frame of commit 1 at byte 0".into(),
        format!("entry 0 (start of run {missing})"),
        "not found".into(),
    ] {
        assert!(message.contains(&part), "{part:?} missing from: {message}");
    }
    // Nothing was applied, and the next open says the same again.
    assert!(Store::open(&path).is_err());
}

#[test]
fn a_store_file_is_created_whole_beside_its_final_name() {
    let (dir, path) = temp();
    // A file left by a first start cut short is not in the way.
    std::fs::write(dir.path().join("weir.redb.new"), b"half a file").unwrap();
    drop(Store::open(&path).unwrap());
    assert!(!dir.path().join("weir.redb.new").exists());
    assert!(Store::open(&path).is_ok());
}
