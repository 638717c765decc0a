//! Encryption at rest in the store, on both engines: values kept in clear that begin with the
//! sealed format's magic (`FIDE`) — a stranger's refused body above all — neither stop replay
//! nor re-encryption, while a value sealed with a key we do not hold still fails loudly
//! wherever FaceID vouched for it.
//!
//! "Legacy" rows are forced into the database with SQL, byte for byte as the versions before
//! the escape wrote them (in clear, unescaped).

use std::sync::Arc;

use faceid_receiver::store::{
    CallbackKind, ConnectOptions, Keyring, NewCallback, NewImage, ReencryptCounts, Store,
    StoreError,
};
use sha2::{Digest, Sha256};

use crate::common::{
    Engine, TestDatabase, connect_migrated_with, force_journal_body, stored_journal_body,
};

use super::{NOW, biz, delivery, journal, new_job, rejected, signed_notify};

crate::store_tests! {
    test: #[tokio::test(flavor = "multi_thread", worker_threads = 2)],
    stores: [],
    engines: [
        legacy_clear_bodies_that_begin_with_the_magic_stop_neither_replay_nor_reencrypt,
        values_kept_in_clear_that_begin_with_the_magic_read_back_exactly_both_ways,
        a_body_sealed_with_a_key_we_do_not_hold_fails_loudly_unless_nobody_vouched_for_it,
    ],
}

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const OTHER_KEY: &str = "HxweHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE=";

/// The key id the sealed format gives `key` (the first byte of SHA-256 of its bytes).
fn key_id(key: &str) -> u8 {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(key)
        .unwrap();
    Sha256::digest(bytes)[0]
}

/// Bodies a stranger can send that begin with the magic: the magic alone, a version-1
/// header with junk, and a version-1 header naming [`KEY`]'s id with junk.
fn magic_bodies() -> Vec<Vec<u8>> {
    let junk = b"&data=%7B%7D&sign=not-a-sign-just-bytes-to-fill-a-nonce-and-a-tag";
    vec![
        b"FIDE".to_vec(),
        [&b"FIDE\x01"[..], junk].concat(),
        [&b"FIDE\x01"[..], &[key_id(KEY)], junk].concat(),
    ]
}

async fn store(url: &str, key: Option<&str>, previous: &[&str]) -> Arc<dyn Store> {
    let options = ConnectOptions {
        keys: Keyring::new(key, previous).unwrap(),
        ..Default::default()
    };
    connect_migrated_with(url, &options).await
}

/// An unverified delivery of `kind` whose whole body was `received`, of which `kept` is kept
/// (all of it, or a prefix when the refused-body quota capped it).
fn stranger(kind: CallbackKind, received: &[u8], kept: usize, at: i64) -> NewCallback {
    NewCallback {
        body_sha256: hex::encode(Sha256::digest(received)),
        body_len: received.len() as i64,
        body: received[..kept].to_vec(),
        ..rejected(kind, None, "malformed body", at)
    }
}

/// Replay's candidates as (journal id, body: `None` when it could not be read).
async fn candidates(store: &Arc<dyn Store>) -> Vec<(i64, Option<Vec<u8>>)> {
    store
        .refused_deliveries(0, None, 100)
        .await
        .expect("replay's candidates are read")
        .into_iter()
        .map(|d| (d.id, d.body))
        .collect()
}

fn reencrypted(journal_bodies: u64, unreadable: u64) -> ReencryptCounts {
    ReencryptCounts {
        journal_bodies,
        unreadable_journal_bodies: unreadable,
        ..Default::default()
    }
}

async fn legacy_clear_bodies_that_begin_with_the_magic_stop_neither_replay_nor_reencrypt(
    engine: Engine,
) {
    let Some(db) = TestDatabase::create(engine).await else {
        return;
    };
    let url = db.url();
    let clear = store(url, None, &[]).await;

    // A genuinely refused delivery, the stranger's whole bodies, an unsigned return GET whose
    // query begins with the magic, and a stranger's body the quota capped to a prefix: all
    // in clear, as an older version stored them.
    let genuine = clear
        .journal_rejected(&rejected(CallbackKind::Notify, None, "sign", NOW))
        .await
        .unwrap();
    let mut whole = Vec::new();
    for (i, body) in magic_bodies().into_iter().enumerate() {
        let entry = stranger(CallbackKind::Notify, &body, body.len(), NOW + 1 + i as i64);
        let id = clear.journal_rejected(&entry).await.unwrap();
        force_journal_body(url, id, &body).await;
        whole.push((id, Some(body)));
    }
    let get_biz_id = biz("legacy-get");
    let query = format!("FIDE\x01&biz_id={get_biz_id}");
    let get = NewCallback {
        biz_id: Some(get_biz_id.clone()),
        reason: None,
        ..stranger(
            CallbackKind::ReturnGet,
            query.as_bytes(),
            query.len(),
            NOW + 5,
        )
    };
    clear
        .accept_return_get(&get, &get_biz_id, new_job(NOW))
        .await
        .unwrap();
    let get_row = journal(&clear, Some(&get_biz_id)).await[0].id;
    force_journal_body(url, get_row, query.as_bytes()).await;
    let big = [&b"FIDE\x01"[..], &[key_id(KEY)], &vec![b'x'; 70_000]].concat();
    let capped = clear
        .journal_rejected(&stranger(CallbackKind::Notify, &big, 1024, NOW + 6))
        .await
        .unwrap();
    force_journal_body(url, capped, &big[..1024]).await;

    let mut expected = vec![(genuine, Some(b"data=%7B%7D&sign=00".to_vec()))];
    expected.extend(whole.iter().cloned());
    assert_eq!(
        candidates(&clear).await,
        expected,
        "read as received; the capped body is no candidate"
    );
    clear.close().await;

    // Encryption turned on: replay still reads them, and re-encryption seals every body it
    // can read (the stranger's whole ones: their sha256 says they are in clear) and reports
    // the capped prefix it cannot tell from a sealed value.
    let keyed = store(url, Some(KEY), &[]).await;
    assert_eq!(candidates(&keyed).await, expected);
    // genuine + 3 whole + the return GET; the capped prefix is reported.
    let first = reencrypted(5, 1);
    assert_eq!(keyed.reencrypt(true).await.unwrap(), first, "dry run");
    assert_eq!(keyed.reencrypt(false).await.unwrap(), first);
    assert_eq!(
        keyed.reencrypt(false).await.unwrap(),
        reencrypted(0, 1),
        "nothing left but the body it cannot read"
    );
    for (id, body) in &whole {
        assert_ne!(
            &Some(stored_journal_body(url, *id).await),
            body,
            "journal row {id} is sealed now"
        );
    }
    assert_eq!(
        stored_journal_body(url, capped).await,
        &big[..1024],
        "left as it is"
    );
    assert_eq!(candidates(&keyed).await, expected, "and read back exactly");
    keyed.close().await;
}

async fn values_kept_in_clear_that_begin_with_the_magic_read_back_exactly_both_ways(
    engine: Engine,
) {
    let Some(db) = TestDatabase::create(engine).await else {
        return;
    };
    let url = db.url();
    let clear = store(url, None, &[]).await;

    // Written by this version without a key: whole bodies, a capped prefix (its sha256 is
    // that of the whole body, so only the stored form can tell it is in clear) and an image.
    let mut whole = Vec::new();
    for (i, body) in magic_bodies().into_iter().enumerate() {
        let entry = stranger(CallbackKind::Notify, &body, body.len(), NOW + i as i64);
        whole.push((clear.journal_rejected(&entry).await.unwrap(), Some(body)));
    }
    let big = [&b"FIDE\x01"[..], &[key_id(KEY)], &vec![b'x'; 70_000]].concat();
    clear
        .journal_rejected(&stranger(CallbackKind::Notify, &big, 1024, NOW + 5))
        .await
        .unwrap();
    let id = biz("magic-image");
    let verified = delivery(CallbackKind::Notify, Some(&id), true, NOW + 6);
    clear
        .accept_signed(
            verified,
            signed_notify(&id, "OK"),
            faceid_receiver::store::JobEffect::Keep,
        )
        .await
        .unwrap();
    let jpeg = [&b"FIDE\x01"[..], &[key_id(KEY)], b"not a jpeg at all"].concat();
    let image = NewImage {
        name: "image_best".into(),
        jpeg: jpeg.clone(),
    };
    clear.save_images(&id, &[image], NOW + 7).await.unwrap();

    assert_eq!(candidates(&clear).await, whole);
    assert_eq!(
        clear.image(&id, "image_best").await.unwrap().as_deref(),
        Some(&jpeg[..])
    );
    assert_eq!(
        clear.reencrypt(false).await.unwrap(),
        ReencryptCounts::default(),
        "without a key, everything is already in its current form"
    );
    clear.close().await;

    // Encryption on: every value is read, sealed and read back.
    let keyed = store(url, Some(KEY), &[]).await;
    let all = ReencryptCounts {
        results: 1,
        images: 1,
        // 3 whole + the capped one + the signed notify's body.
        journal_bodies: 5,
        unreadable_journal_bodies: 0,
    };
    assert_eq!(keyed.reencrypt(false).await.unwrap(), all);
    assert_eq!(candidates(&keyed).await, whole);
    assert_eq!(
        keyed.image(&id, "image_best").await.unwrap().as_deref(),
        Some(&jpeg[..])
    );
    keyed.close().await;

    // And off again: back in clear, still read exactly, and nothing is left over.
    let off = store(url, None, &[KEY]).await;
    assert_eq!(off.reencrypt(false).await.unwrap(), all);
    assert_eq!(
        off.reencrypt(false).await.unwrap(),
        ReencryptCounts::default()
    );
    assert_eq!(candidates(&off).await, whole);
    assert_eq!(
        off.image(&id, "image_best").await.unwrap().as_deref(),
        Some(&jpeg[..])
    );
    off.close().await;
}

async fn a_body_sealed_with_a_key_we_do_not_hold_fails_loudly_unless_nobody_vouched_for_it(
    engine: Engine,
) {
    let Some(db) = TestDatabase::create(engine).await else {
        return;
    };
    let url = db.url();
    let keyed = store(url, Some(KEY), &[]).await;
    let refused = keyed
        .journal_rejected(&rejected(CallbackKind::Notify, None, "sign", NOW))
        .await
        .unwrap();
    keyed.close().await;

    // A stranger's refused body that does not open is counted, not fatal...
    let wrong = store(url, Some(OTHER_KEY), &[]).await;
    assert_eq!(candidates(&wrong).await, [(refused, None)]);
    assert_eq!(wrong.reencrypt(false).await.unwrap(), reencrypted(0, 1));
    wrong.close().await;

    // ...but a body FaceID signed (here: verified, then refused by the database, so a replay
    // candidate) must open: a misconfigured key is an error, not a skipped row.
    let keyed = store(url, Some(KEY), &[]).await;
    let not_stored = NewCallback {
        reason: Some("not stored".into()),
        ..delivery(CallbackKind::Notify, None, true, NOW + 1)
    };
    keyed.journal_rejected(&not_stored).await.unwrap();
    keyed.close().await;
    let wrong = store(url, Some(OTHER_KEY), &[]).await;
    assert!(matches!(
        wrong.refused_deliveries(0, None, 100).await,
        Err(StoreError::Decrypt(_))
    ));
    assert!(matches!(
        wrong.reencrypt(false).await,
        Err(StoreError::Decrypt(_))
    ));
    wrong.close().await;

    // The right key reads both.
    let keyed = store(url, Some(KEY), &[]).await;
    let read = candidates(&keyed).await;
    assert_eq!(read.len(), 2);
    assert!(read.iter().all(|(_, body)| body.is_some()), "{read:?}");
    keyed.close().await;
}
