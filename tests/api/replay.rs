//! Replay after a secret fix, and secret rotation: what a wrong `megvii.api_secret` refused is
//! stored once the secret is right, exactly once, through `POST /api/v1/callbacks/replay` and
//! the `faceid-receiver replay` command; `megvii.previous_secrets` keeps verifying callbacks
//! signed before a rotation, and the journal names the secret by key id only.

use serde_json::{Value, json};

use crate::api_tests;
use crate::common::Engine;
use crate::helpers::*;
use crate::poison::{REFUSED_BIZ_NO, refuse_in_database};

api_tests!(
    a_delivery_the_database_refused_is_stored_by_replay_once_the_fault_is_fixed,
    replay_needs_the_admin_scope_and_checks_its_body,
);

const WRONG_SECRET: &str = "not-the-secret-faceid-signs-with";
const CALLBACKS: usize = 20;

fn biz(i: usize) -> String {
    format!("1795392000,replay-{i}")
}

/// `POST /api/v1/callbacks/replay` with `token` (none: no Authorization) and `body`.
async fn post_replay(
    app: &TestApp,
    token: Option<&str>,
    body: Option<&Value>,
) -> reqwest::Response {
    let mut request = app.client.post(app.url("/api/v1/callbacks/replay"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    request.send().await.unwrap()
}

/// A replay as an admin; its answer.
async fn replay(app: &TestApp, body: Value) -> Value {
    let response = post_replay(app, Some(ADMIN_TOKEN), Some(&body)).await;
    assert_eq!(response.status(), 200, "replay {body}");
    response.json().await.unwrap()
}

fn counts(answer: &Value) -> [u64; 5] {
    [
        "examined",
        "verified",
        "stored",
        "duplicate",
        "still_refused",
    ]
    .map(|key| {
        answer[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key} in {answer}"))
    })
}

/// The `i`-th of the [`CALLBACKS`] results FaceID delivers.
fn delivery(i: usize) -> String {
    result_data(&biz(i), &format!("order-{i}"), "OK")
}

/// A service running with the wrong secret (and `env`), which has refused every one of the
/// [`CALLBACKS`] deliveries (FaceID signs with [`SECRET`]).
async fn refused_by_a_wrong_secret(
    engine: Engine,
    env: Vec<(&'static str, String)>,
) -> Option<TestApp> {
    let options = Options {
        secret: WRONG_SECRET,
        env,
        ..Default::default()
    };
    let wrong = spawn_app(engine, options).await?;
    for i in 0..CALLBACKS {
        let response = wrong.notify(&delivery(i)).await;
        assert_eq!(response.status(), 403, "the wrong secret refuses it");
    }
    Some(wrong)
}

/// A service running with the wrong secret refuses every callback (FaceID signs with
/// [`SECRET`]); after a restart with the right one, replay stores each once.
async fn refused_then_replayed(engine: Engine, env: Vec<(&'static str, String)>) {
    let Some(wrong) = refused_by_a_wrong_secret(engine, env.clone()).await else {
        return;
    };
    let deliveries: Vec<String> = (0..CALLBACKS).map(delivery).collect();
    let app = wrong
        .restart(Options {
            env,
            ..Default::default()
        })
        .await;

    // A dry run counts and changes nothing.
    let dry = replay(&app, json!({"dry_run": true})).await;
    assert_eq!(counts(&dry), [20, 20, 0, 0, 0], "{dry}");
    assert_eq!(dry["dry_run"], true);
    assert!(app.store.get(&biz(0)).await.unwrap().is_none());

    let first = replay(&app, json!({})).await;
    assert_eq!(counts(&first), [20, 20, 20, 0, 0], "{first}");
    assert_eq!(first["next_after_id"], Value::Null);
    for (i, data) in deliveries.iter().enumerate() {
        let record = app.store.get(&biz(i)).await.unwrap().expect("stored");
        assert_eq!(record.result.as_deref(), Some(data.as_str()), "byte-exact");
        assert!(record.signed);
        assert_eq!(
            record.biz_no.as_deref(),
            Some(format!("order-{i}").as_str())
        );
        let journal = app.journal(Some(&biz(i))).await;
        assert_eq!(journal.len(), 1, "the refused row itself, now replayed");
        let row = &journal[0];
        assert_eq!(row["outcome"], "replayed");
        assert_eq!(row["verified"], true);
        assert_eq!(row["key_id"], "current");
        assert!(row["replayed_at"].is_string());
        assert!(
            row["reason"].as_str().unwrap().contains("sign"),
            "why it was refused is kept: {row}"
        );
    }

    let second = replay(&app, json!({})).await;
    assert_eq!(counts(&second), [0, 0, 0, 0, 0], "nothing new: {second}");

    // The command does the same: nothing left.
    let output = replay_command(&app, &["replay"]).await;
    assert!(output.contains("0 stored"), "{output}");
}

#[tokio::test]
async fn sqlite_after_a_secret_fix_replay_stores_every_refused_callback_exactly_once() {
    refused_then_replayed(Engine::Sqlite, Vec::new()).await;
}

#[tokio::test]
async fn postgres_after_a_secret_fix_replay_stores_every_refused_callback_exactly_once() {
    refused_then_replayed(Engine::Postgres, Vec::new()).await;
}

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const OTHER_KEY: &str = "HxweHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE=";

/// A stranger's refused notify whose body begins with the magic, sent to a service without
/// an encryption key, beside the deliveries a wrong secret refused, stops no replay: after the
/// secret fix (and, with `restart_env`, encryption turned on), replay stores the 20 and counts
/// the stranger's deliveries as still refused; so does the command.
async fn a_strangers_magic_body_stops_no_replay(
    engine: Engine,
    restart_env: Vec<(&'static str, String)>,
) {
    let Some(wrong) = refused_by_a_wrong_secret(engine, Vec::new()).await else {
        return;
    };
    for body in magic_bodies(KEY) {
        wrong.notify_refused(body).await;
    }
    let app = wrong
        .restart(Options {
            env: restart_env,
            ..Default::default()
        })
        .await;

    let dry = replay(&app, json!({"dry_run": true})).await;
    assert_eq!(counts(&dry), [23, 20, 0, 0, 3], "{dry}");
    assert_eq!(dry["unreadable"], 0, "{dry}");
    let answer = replay(&app, json!({})).await;
    assert_eq!(counts(&answer), [23, 20, 20, 0, 3], "{answer}");
    assert_eq!(answer["unreadable"], 0, "{answer}");
    for i in 0..CALLBACKS {
        assert!(app.store.get(&biz(i)).await.unwrap().is_some(), "{i}");
    }
    let output = replay_command(&app, &["replay"]).await;
    assert!(
        output.contains("0 stored") && output.contains("3 still refused"),
        "{output}"
    );
    assert!(!output.contains("unreadable"), "{output}");
}

#[tokio::test]
async fn sqlite_a_strangers_magic_body_stops_no_replay() {
    a_strangers_magic_body_stops_no_replay(Engine::Sqlite, Vec::new()).await;
}

#[tokio::test]
async fn postgres_a_strangers_magic_body_stops_no_replay() {
    a_strangers_magic_body_stops_no_replay(Engine::Postgres, Vec::new()).await;
}

#[tokio::test]
async fn sqlite_a_strangers_magic_body_stops_no_replay_when_encryption_is_turned_on() {
    let env = vec![("APP__ENCRYPTION__KEY", KEY.to_owned())];
    a_strangers_magic_body_stops_no_replay(Engine::Sqlite, env).await;
}

#[tokio::test]
async fn postgres_a_strangers_magic_body_stops_no_replay_when_encryption_is_turned_on() {
    let env = vec![("APP__ENCRYPTION__KEY", KEY.to_owned())];
    a_strangers_magic_body_stops_no_replay(Engine::Postgres, env).await;
}

/// Refused bodies sealed with a key the service no longer holds are counted (`unreadable`,
/// among `still_refused`) and named in the command's output, not skipped in silence; with the
/// key back, they are replayed.
async fn refused_bodies_sealed_with_another_key_are_counted_unreadable(engine: Engine) {
    let sealed = vec![("APP__ENCRYPTION__KEY", KEY.to_owned())];
    let Some(wrong) = refused_by_a_wrong_secret(engine, sealed.clone()).await else {
        return;
    };
    let other_key = Options {
        env: vec![("APP__ENCRYPTION__KEY", OTHER_KEY.to_owned())],
        ..Default::default()
    };
    let app = wrong.restart(other_key).await;

    let answer = replay(&app, json!({})).await;
    assert_eq!(counts(&answer), [20, 0, 0, 0, 20], "{answer}");
    assert_eq!(answer["unreadable"], 20, "{answer}");
    let output = app
        .command(&["replay"], &[("APP__ENCRYPTION__KEY", OTHER_KEY)])
        .await;
    assert!(
        output.contains("20 still refused")
            && output.contains("20 of the still refused could not be read"),
        "{output}"
    );

    let app = app
        .restart(Options {
            env: sealed,
            ..Default::default()
        })
        .await;
    let answer = replay(&app, json!({})).await;
    assert_eq!(counts(&answer), [20, 20, 20, 0, 0], "{answer}");
    assert_eq!(answer["unreadable"], 0, "{answer}");
}

#[tokio::test]
async fn sqlite_refused_bodies_sealed_with_another_key_are_counted_unreadable() {
    refused_bodies_sealed_with_another_key_are_counted_unreadable(Engine::Sqlite).await;
}

#[tokio::test]
async fn postgres_refused_bodies_sealed_with_another_key_are_counted_unreadable() {
    refused_bodies_sealed_with_another_key_are_counted_unreadable(Engine::Postgres).await;
}

/// With encryption at rest the journal bodies are sealed; replay reads them through the key.
#[tokio::test]
async fn sqlite_replay_reads_encrypted_journal_bodies() {
    let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".to_owned();
    refused_then_replayed(Engine::Sqlite, vec![("APP__ENCRYPTION__KEY", key)]).await;
}

#[tokio::test]
async fn postgres_replay_reads_encrypted_journal_bodies() {
    let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".to_owned();
    refused_then_replayed(Engine::Postgres, vec![("APP__ENCRYPTION__KEY", key)]).await;
}

/// A refused callback carrying an image (FaceID documents that callbacks carry none, but a
/// result must not hold pictures wherever it came from) is stored by replay as a live one is:
/// the image cut out of the stored result and kept as an image.
async fn a_replayed_callback_carrying_an_image_is_stored_as_a_live_one_is(engine: Engine) {
    use base64::Engine as _;
    let Some(wrong) = spawn_app(
        engine,
        Options {
            secret: WRONG_SECRET,
            ..Default::default()
        },
    )
    .await
    else {
        return;
    };
    let jpeg = b"\xff\xd8\xff\xe0JFIF-a-replayed-face\xff\xd9";
    let b64 = base64::engine::general_purpose::STANDARD.encode(jpeg);
    let with_image = |biz_id: &str| {
        json!({
            "status": "OK",
            "biz_info": {"biz_id": biz_id, "biz_no": "order-img", "biz_extra_data": ""},
            "liveness_result": {"result": "PASS"},
            "images": {"image_best": format!("data:image/jpeg;base64,{b64}")},
            "time_used": 3
        })
        .to_string()
    };
    let (replayed, live) = ("1795392000,replayed-image", "1795392000,live-image");
    assert_eq!(wrong.notify(&with_image(replayed)).await.status(), 403);
    let app = wrong.restart(Options::default()).await;
    assert_eq!(app.notify(&with_image(live)).await.status(), 200);

    let answer = replay(&app, json!({})).await;

    assert_eq!(counts(&answer), [1, 1, 1, 0, 0], "{answer}");
    let stored_as = |biz_id: &str| {
        let store = app.store.clone();
        let biz_id = biz_id.to_owned();
        async move {
            let record = store.get(&biz_id).await.unwrap().expect("stored");
            let image = store.image(&biz_id, "image_best").await.unwrap();
            let result = record
                .result
                .expect("a result")
                .replace(&biz_id, "<biz_id>");
            (result, record.images, image)
        }
    };
    let (result, images, image) = stored_as(replayed).await;
    assert!(
        !result.contains(&b64[..16]),
        "image data left in the result: {result}"
    );
    assert_eq!(images, ["image_best"]);
    assert_eq!(image.as_deref(), Some(&jpeg[..]), "kept as an image");
    assert_eq!(
        (result, images, image),
        stored_as(live).await,
        "replay stores what a live delivery stores"
    );
}

#[tokio::test]
async fn sqlite_a_replayed_callback_carrying_an_image_is_stored_as_a_live_one_is() {
    a_replayed_callback_carrying_an_image_is_stored_as_a_live_one_is(Engine::Sqlite).await;
}

#[tokio::test]
async fn postgres_a_replayed_callback_carrying_an_image_is_stored_as_a_live_one_is() {
    a_replayed_callback_carrying_an_image_is_stored_as_a_live_one_is(Engine::Postgres).await;
}

/// The `faceid-receiver replay` command over the app's database, with the app's secret.
async fn replay_command(app: &TestApp, args: &[&str]) -> String {
    app.command(args, &[]).await
}

#[tokio::test]
async fn sqlite_the_replay_command_stores_what_the_wrong_secret_refused() {
    the_replay_command_stores_what_the_wrong_secret_refused(Engine::Sqlite).await;
}

#[tokio::test]
async fn postgres_the_replay_command_stores_what_the_wrong_secret_refused() {
    the_replay_command_stores_what_the_wrong_secret_refused(Engine::Postgres).await;
}

async fn the_replay_command_stores_what_the_wrong_secret_refused(engine: Engine) {
    let wrong = Options {
        secret: WRONG_SECRET,
        ..Default::default()
    };
    let Some(app) = spawn_app(engine, wrong).await else {
        return;
    };
    for i in 0..3 {
        let data = result_data(&biz(i), "order-cli", "OK");
        assert_eq!(app.notify(&data).await.status(), 403);
    }
    // --since leaves out what came before it.
    app.clock.advance(60_000);
    let late = result_data(&biz(3), "order-cli", "OK");
    assert_eq!(app.notify(&late).await.status(), 403);
    let since = (NOW_MS + 30_000).to_string();

    let dry = replay_command(&app, &["replay", "--dry-run", "--since", &since]).await;
    assert!(dry.contains("would replay: 1 of 1"), "{dry}");
    let out = replay_command(&app, &["replay", "--since", &since]).await;
    assert!(out.contains("1 stored"), "{out}");
    assert!(app.store.get(&biz(3)).await.unwrap().is_some());
    assert!(app.store.get(&biz(0)).await.unwrap().is_none());
    let out = replay_command(&app, &["replay"]).await;
    assert!(out.contains("3 stored"), "{out}");
    let out = replay_command(&app, &["replay"]).await;
    assert!(
        out.contains("0 stored") && out.contains("of 0 examined"),
        "{out}"
    );
}

async fn a_delivery_the_database_refused_is_stored_by_replay_once_the_fault_is_fixed(app: TestApp) {
    refuse_in_database(app.db.url(), true).await;
    let id = "1795392000,refused-then-replayed";
    let data = result_data(id, REFUSED_BIZ_NO, "OK");
    assert_eq!(app.notify(&data).await.status(), 500);
    // Still refused while the fault lasts: counted, left for later.
    let answer = replay(&app, json!({})).await;
    assert_eq!(counts(&answer), [1, 1, 0, 0, 1], "{answer}");

    refuse_in_database(app.db.url(), false).await;
    let answer = replay(&app, json!({})).await;
    assert_eq!(counts(&answer), [1, 1, 1, 0, 0], "{answer}");
    let record = app.store.get(id).await.unwrap().expect("stored");
    assert_eq!(record.result.as_deref(), Some(data.as_str()));
    let journal = app.journal(Some(id)).await;
    assert_eq!(journal[0]["outcome"], "replayed");
}

async fn replay_needs_the_admin_scope_and_checks_its_body(app: TestApp) {
    for token in [TOKEN, PLAIN_TOKEN] {
        let response = post_replay(&app, Some(token), None).await;
        assert_eq!(response.status(), 403, "{token}");
        assert_eq!(error_code(response).await, "forbidden");
    }
    assert_eq!(post_replay(&app, None, None).await.status(), 401);
    // No body at all is fine; a bad one is a 400 naming the problem.
    let response = post_replay(&app, Some(ADMIN_TOKEN), None).await;
    assert_eq!(response.status(), 200);
    // Nor is JSON `null`, which the OpenAPI document allows (`oneOf` the object or null).
    let response = post_replay(&app, Some(ADMIN_TOKEN), Some(&json!(null))).await;
    assert_eq!(response.status(), 200);
    for (body, code) in [
        (json!({"limit": 0}), "invalid_limit"),
        (json!({"since": "last week"}), "invalid_since"),
        (json!([1]), "malformed_body"),
    ] {
        let response = post_replay(&app, Some(ADMIN_TOKEN), Some(&body)).await;
        assert_eq!(response.status(), 400, "{body}");
        assert_eq!(error_code(response).await, code, "{body}");
    }
}

#[tokio::test]
async fn sqlite_callbacks_signed_with_a_previous_secret_verify_and_the_journal_names_it_by_key_id()
{
    previous_secrets_verify_by_key_id(Engine::Sqlite).await;
}

#[tokio::test]
async fn postgres_callbacks_signed_with_a_previous_secret_verify_and_the_journal_names_it_by_key_id()
 {
    previous_secrets_verify_by_key_id(Engine::Postgres).await;
}

async fn previous_secrets_verify_by_key_id(engine: Engine) {
    const NEW: &str = "the-new-secret-after-rotation";
    const OLD: [&str; 2] = ["the-old-secret-one", "the-old-secret-two"];
    let options = Options {
        secret: NEW,
        env: vec![("APP__MEGVII__PREVIOUS_SECRETS", OLD.join(","))],
        ..Default::default()
    };
    let Some(app) = spawn_app(engine, options).await else {
        return;
    };
    let send = |secret: &'static str, i: usize| {
        let data = result_data(&biz(100 + i), "order-rotation", "OK");
        let body = form_body(
            &data,
            &faceid_receiver::protocol::sign(secret, data.as_bytes()),
        );
        let app = &app;
        async move { app.post_form("/faceid/notify", body).await.status() }
    };
    assert_eq!(send(NEW, 0).await, 200);
    assert_eq!(send(OLD[0], 1).await, 200);
    assert_eq!(send(OLD[1], 2).await, 200);
    assert_eq!(send("some-other-secret", 3).await, 403);

    let mut key_ids = Vec::new();
    for i in 0..4 {
        let journal = app.journal(Some(&biz(100 + i))).await;
        key_ids.push(journal[0]["key_id"].clone());
    }
    assert_eq!(
        key_ids,
        [
            json!("current"),
            json!("previous-1"),
            json!("previous-2"),
            Value::Null
        ]
    );
    let everything = app.api("/callbacks?limit=200").await.text().await.unwrap();
    for secret in [NEW, OLD[0], OLD[1]] {
        assert!(!everything.contains(secret), "the journal holds no secret");
    }
}
