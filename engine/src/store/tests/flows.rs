//! What the store keeps per flow: URL tokens and flow versions with their plugins.

use super::*;

#[tokio::test]
async fn tokens_are_random_url_safe_and_stable_across_reopen() {
    let (_dir, path) = temp();
    let store = Store::open(&path).unwrap();
    assert_eq!(store.token("github").unwrap(), None);
    let github = store.token_for("github").await.unwrap();
    let stripe = store.token_for("stripe").await.unwrap();
    assert_eq!(github.len(), 22);
    assert!(
        github
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    );
    assert_ne!(github, stripe);
    assert_eq!(store.token_for("github").await.unwrap(), github);
    drop(store);

    let store = Store::open(&path).unwrap();
    assert_eq!(store.token_for("github").await.unwrap(), github);
    assert_eq!(store.token("stripe").unwrap(), Some(stripe));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_tokens_agree() {
    let (_dir, path) = temp();
    let store = Store::open(&path).unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.token_for("race").await.unwrap() })
        })
        .collect();
    let mut tokens = Vec::new();
    for task in tasks {
        tokens.push(task.await.unwrap());
    }
    tokens.dedup();
    assert_eq!(tokens.len(), 1);
}

#[tokio::test]
async fn flow_versions_are_kept_once() {
    let (_dir, path) = temp();
    let store = Store::open(&path).unwrap();
    store
        .put_flow_version("f", "abc", "name = 'x'", Vec::new())
        .await
        .unwrap();
    store
        .put_flow_version("f", "abc", "name = 'x'", Vec::new())
        .await
        .unwrap();
    store
        .put_flow_version("f", "def", "name = 'y'", Vec::new())
        .await
        .unwrap();
    assert!(matches!(
        store
            .put_flow_version("f", "abc", "other", Vec::new())
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.flow_version("f", "abc").unwrap().as_deref(),
        Some("name = 'x'")
    );
    assert_eq!(
        store.flow_version("f", "def").unwrap().as_deref(),
        Some("name = 'y'")
    );
    assert_eq!(store.flow_version("g", "abc").unwrap(), None);
}

#[tokio::test]
async fn flow_versions_keep_their_plugins_by_content_hash() {
    let (_dir, path) = temp();
    let blob = |hash: &str, bytes: &[u8]| PluginBlob {
        hash: hash.to_owned(),
        bytes: bytes.into(),
    };
    {
        let store = Store::open(&path).unwrap();
        store
            .put_flow_version(
                "f",
                "v1",
                "name = 'x'",
                vec![blob("aa", b"old"), blob("bb", b"b")],
            )
            .await
            .unwrap();
        // A second version sharing one plugin: the shared blob is kept once.
        store
            .put_flow_version(
                "f",
                "v2",
                "name = 'x'",
                vec![blob("cc", b"new"), blob("bb", b"b")],
            )
            .await
            .unwrap();
        assert!(matches!(
            store
                .put_flow_version("f", "v1", "name = 'x'", vec![blob("cc", b"new")])
                .await,
            Err(StoreError::Conflict(_))
        ));
        store.sync().await.unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(
        store.flow_version_plugins("f", "v1").unwrap(),
        Some(vec!["aa".to_owned(), "bb".to_owned()])
    );
    assert_eq!(
        store.flow_version_plugins("f", "v2").unwrap(),
        Some(vec!["cc".to_owned(), "bb".to_owned()])
    );
    assert_eq!(
        store.plugin_blob("aa").unwrap().as_deref(),
        Some(&b"old"[..])
    );
    assert_eq!(
        store.plugin_blob("cc").unwrap().as_deref(),
        Some(&b"new"[..])
    );
    assert_eq!(store.plugin_blob("zz").unwrap(), None);
    assert_eq!(store.flow_version_plugins("g", "v1").unwrap(), None);
}
